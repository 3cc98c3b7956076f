//! Fusion: ops that can run as one tensor program become one `fused` node, so the values
//! between them never go to memory. A value is fused into its reader only when nothing else
//! reads it (`uses == 1` in the analysis), so fusion never computes anything twice; the cost
//! model then prefers the fused form because it moves fewer bytes.
//!
//! Activation fusion (conv + bias + relu / clip / hardswish / hardsigmoid / sigmoid), the
//! residual add and the squeeze-excite scale all come out of the two rules below, applied
//! repeatedly: each application adds one step.

use egg::Id;
use ir::{Fused, FusedRef, FusedStep, Op, TensorType};

use super::{custom, Custom, GRewrite};
use crate::egraph::{add_op, ops_in, GEGraph};

pub fn rules() -> Vec<GRewrite> {
    vec![
        // body(p, a..) = fused[producer(p); body(y_last, a..)]   when `body`, elementwise ops (or
        //   reshapes by unit axes after a convolution or matrix product), holds every read of p,
        //   and p is a fused op, a convolution, a matrix product or an elementwise op of the
        //   shape the body computes over (h_swish reads its input twice: both reads join)
        custom("fuse-epilogue", Custom { rewrite: |g, id| add(g, epilogue(g, id)), applies: |g, id| epilogue(g, id).is_some() }),
        // conv(e(a..), w, b) = fused[e(a..); conv(y0, w, b)]   when conv has no padding, e is
        //   elementwise and read only by the convolution, and e cannot join its own producer
        custom("fuse-prologue", Custom { rewrite: |g, id| add(g, prologue(g, id)), applies: |g, id| prologue(g, id).is_some() }),
    ]
}

fn add(g: &mut GEGraph, fused: Option<(Fused, Vec<Id>)>) -> Option<Id> {
    let (f, children) = fused?;
    add_op(g, Op::Fused(Box::new(f)), children)
}

fn elementwise(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Clip { .. } | Op::Where | Op::Cast { .. })
}

fn dense(op: &Op) -> bool {
    op.is_dense()
}

/// The extents other than 1: a reshape between shapes that agree on them moves no data.
fn non_unit(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// A class's value as the start of a fused body: its op nodes that a reader may extend,
/// fused ones first and longest first, so that a chain grows one step per iteration.
fn producers(g: &GEGraph, id: Id) -> Vec<(Fused, Vec<Id>)> {
    let mut out: Vec<(Fused, Vec<Id>)> = ops_in(g, id)
        .into_iter()
        .filter_map(|(op, children)| match op {
            Op::Fused(f) => Some((*f, children)),
            op if dense(&op) || elementwise(&op) => Some((Fused::single(op, children.len()), children)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|(f, _)| (std::cmp::Reverse(f.dense_step().is_some()), std::cmp::Reverse(f.steps.len())));
    out
}

/// How many reads of child `k` a body makes: one per step operand, as each step stands for
/// one node of the source graph and each operand for one of its reads.
fn reads_of(body: &Fused, k: usize) -> usize {
    body.steps.iter().flat_map(|s| &s.operands).filter(|r| **r == FusedRef::Input(k)).count()
}

/// The bodies of class `id` that a producer may be put in front of: its fused elementwise
/// bodies, and its elementwise ops and reshapes as one-step bodies.
fn readers(g: &GEGraph, id: Id) -> Vec<(Fused, Vec<Id>)> {
    ops_in(g, id)
        .into_iter()
        .filter_map(|(op, children)| match op {
            Op::Fused(f) if f.dense_step().is_none() => Some((*f, children)),
            op if elementwise(&op) || matches!(op, Op::Reshape { .. }) => Some((Fused::single(op, children.len()), children)),
            _ => None,
        })
        .collect()
}

/// Class `id` with the producer of one of its operands put in front of its body, when that
/// body holds every read of the operand and the result keeps the producer's shape; None if
/// nothing qualifies or the form is in the class already.
fn epilogue(g: &GEGraph, id: Id) -> Option<(Fused, Vec<Id>)> {
    if g[id].data.ty.dtype != ir::DType::F32 {
        return None;
    }
    let existing = ops_in(g, id);
    for (body, children) in readers(g, id) {
        for (k, &p) in children.iter().enumerate() {
            let p = g.find(p);
            let reads = reads_of(&body, k);
            if g[p].data.uses != reads || g[p].data.ty.dtype != ir::DType::F32 {
                continue;
            }
            let Some((producer, mut operands)) = producers(g, p).into_iter().next() else {
                continue;
            };
            let Some(merged) = merge(g, &producer, &mut operands, &body, &children, p) else {
                continue;
            };
            let candidate = Op::Fused(Box::new(merged.clone()));
            if existing.iter().any(|(o, c)| *o == candidate && *c == operands) {
                continue;
            }
            return Some((merged, operands));
        }
    }
    None
}

/// The producer's steps, then the reader's with its reads of `p` taken from the producer's
/// last step; `operands` (the producer's) gain the reader's other operands. None when a
/// reader step would change the shape the program computes over.
fn merge(g: &GEGraph, producer: &Fused, operands: &mut Vec<Id>, reader: &Fused, reader_operands: &[Id], p: Id) -> Option<Fused> {
    let dense_anchor = producer.dense_step().is_some();
    let shape = &g[p].data.ty.shape;
    let base = producer.steps.len();
    let mut merged = producer.clone();
    let mut input_map = Vec::with_capacity(reader_operands.len());
    for &c in reader_operands {
        let c = g.find(c);
        input_map.push(if c == p {
            FusedRef::Step(base - 1)
        } else {
            let k = operands.iter().position(|&x| g.find(x) == c).unwrap_or_else(|| {
                operands.push(c);
                operands.len() - 1
            });
            FusedRef::Input(k)
        });
    }
    for step in &reader.steps {
        let is_reshape = matches!(step.op, Op::Reshape { .. });
        if is_reshape && !dense_anchor {
            return None;
        }
        let refs = step
            .operands
            .iter()
            .map(|r| match *r {
                FusedRef::Input(k) => input_map[k],
                FusedRef::Step(j) => FusedRef::Step(base + j),
            })
            .collect();
        merged.steps.push(FusedStep { op: step.op.clone(), operands: refs });
    }
    // Every step's result must index like the producer's: the same extents (reshapes by unit
    // axes after a dense anchor, whose epilogue maps indices).
    let types: Vec<&TensorType> = operands.iter().map(|&c| &g[c].data.ty).collect();
    let step_types = merged.step_types(&types).ok()?;
    let fits = step_types[base..]
        .iter()
        .all(|t| t.dtype == ir::DType::F32 && if dense_anchor { non_unit(&t.shape) == non_unit(shape) } else { t.shape == *shape });
    fits.then_some(merged)
}

/// The convolution of class `id` with its input's elementwise op as a prologue, if the input
/// qualifies and that form is not in the class yet.
fn prologue(g: &GEGraph, id: Id) -> Option<(Fused, Vec<Id>)> {
    let existing = ops_in(g, id);
    for (op, operands) in &existing {
        if !op.is_unpadded_conv() {
            continue;
        }
        let x = g.find(operands[0]);
        if g[x].data.uses != 1 || g[x].data.ty.dtype != ir::DType::F32 || epilogue(g, x).is_some() {
            continue;
        }
        let inner = ops_in(g, x);
        // A value that is already the end of a fused body is better computed there, once,
        // than once per load in the convolution.
        if inner.iter().any(|(o, _)| matches!(o, Op::Fused(_))) {
            continue;
        }
        let Some((e, e_operands)) = inner.into_iter().find(|(o, _)| elementwise(o)) else {
            continue;
        };
        let mut children = e_operands.clone();
        let mut body = Fused::single(e, e_operands.len());
        let mut conv_operands = vec![FusedRef::Step(0)];
        for &c in &operands[1..] {
            children.push(c);
            conv_operands.push(FusedRef::Input(children.len() - 1));
        }
        body.steps.push(FusedStep { op: op.clone(), operands: conv_operands });
        let candidate = Op::Fused(Box::new(body.clone()));
        if existing.iter().any(|(o, c)| *o == candidate && *c == children) {
            continue;
        }
        return Some((body, children));
    }
    None
}

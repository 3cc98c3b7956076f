//! Folds constant pads into the program that produces their input: the producer writes its
//! result straight into the interior of the padded tensor, and the border is filled once,
//! when the model is created, so the unpadded tensor is never written and copied.

use std::collections::HashSet;

use ir::graph::PadMode;
use ir::loops::{BufId, Expr, Func, Stmt};
use ir::{Graph, Op, TensorType, ValueId};

use super::{add, constant, int, store, vars_expr, Builder, Program, Step};

pub(super) fn fold_pads(g: &Graph, mut steps: Vec<Step>) -> Vec<Step> {
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut staged = Vec::new();
    for q in 0..steps.len() {
        let Step::Run(pad) = &steps[q] else { continue };
        let [node] = pad.nodes.as_slice() else { continue };
        let Op::Pad { pads, mode: PadMode::Constant, value } = &g.node(*node).op else { continue };
        let (input, padded) = (pad.args[0], pad.args[1]);
        let readers = steps.iter().filter(|s| reads(s, input)).count();
        if outputs.contains(&padded) {
            continue;
        }
        // A graph input padded on its last two axes is copied into the padded tensor as the
        // run starts, instead of by a program.
        let spatial_only = pads.len() == 8 && [0, 1, 4, 5].iter().all(|&a| pads[a] == 0);
        if matches!(g.value(input).def, ir::ValueDef::Input(_)) && readers == 1 && spatial_only {
            let Some(border) = border_fill(&format!("pad_border_{}", padded.0), g.ty(input), g.ty(padded), pads, *value) else { continue };
            let pad_nodes = pad.nodes.clone();
            steps[q] = Step::Once(Program { func: border, args: vec![padded], nodes: pad_nodes });
            staged.push((q, Step::StageInput { input, into: padded, pads: pads.clone() }));
            continue;
        }
        let Some(p) = steps.iter().position(|s| matches!(s, Step::Run(r) if r.args.last() == Some(&input))) else { continue };
        let Step::Run(producer) = &steps[p] else { continue };
        let Some(border) = border_fill(&format!("pad_border_{}", padded.0), g.ty(input), g.ty(padded), pads, *value) else { continue };
        let mut args = producer.args.clone();
        let shifted = if readers == 1 && !outputs.contains(&input) {
            // The pad is the only reader: the producer writes the padded tensor instead.
            let Some(f) = write_shifted(&producer.func, g.ty(input), g.ty(padded), pads) else { continue };
            *args.last_mut().expect("programs have a result") = padded;
            f
        } else {
            // Others read the unpadded tensor too: the producer writes both.
            let Some(f) = write_both(&producer.func, g.ty(input), g.ty(padded), pads) else { continue };
            args.insert(args.len() - 1, padded);
            f
        };
        let nodes = producer.nodes.clone();
        let pad_nodes = pad.nodes.clone();
        steps[p] = Step::Run(Program { func: shifted, args, nodes });
        steps[q] = Step::Once(Program { func: border, args: vec![padded], nodes: pad_nodes });
    }
    // Staging steps go where their pads were, latest first so positions stay valid.
    for (q, step) in staged.into_iter().rev() {
        steps.insert(q, step);
    }
    steps
}

fn reads(s: &Step, v: ValueId) -> bool {
    match s {
        Step::Run(p) | Step::Once(p) => p.args[..p.args.len() - 1].contains(&v),
        Step::Alias { from, .. } => *from == v,
        Step::StageInput { input, .. } => *input == v,
    }
}

/// The producer writing into the padded tensor: its result buffer takes the padded shape and
/// every index into it moves by the leading pads. Only for programs whose result buffer has
/// the tensor's own shape (not a collapsed view).
fn write_shifted(f: &Func, unpadded: &TensorType, padded: &TensorType, pads: &[usize]) -> Option<Func> {
    let y: BufId = *f.params().last()?;
    if f.buffer(y).shape != unpadded.shape {
        return None;
    }
    let rank = unpadded.rank();
    let shift = |index: Vec<Expr>| -> Vec<Expr> {
        index.into_iter().enumerate().map(|(a, e)| if pads[a] == 0 { e } else { add(e, int(pads[a] as i64)) }).collect()
    };
    let mut f = f.clone();
    f.buffers[y.index()].shape = padded.shape.clone();
    let body = std::mem::take(&mut f.body);
    f.body = body.into_iter().map(|s| shift_stmt(s, y, &shift)).collect();
    debug_assert_eq!(pads.len(), 2 * rank);
    ir::loops::verify::verify(&f).ok()?;
    Some(f)
}

/// The producer also storing its final result into the interior of the padded tensor (a
/// new parameter before its result): after the last store of a convolution's or matrix
/// product's output element, `padded[i + pads] = y[i]`.
fn write_both(f: &Func, unpadded: &TensorType, padded: &TensorType, pads: &[usize]) -> Option<Func> {
    let y: BufId = *f.params().last()?;
    if f.buffer(y).shape != unpadded.shape {
        return None;
    }
    let mut f = f.clone();
    // The new parameter goes before the result: it takes the result's id, and the result
    // and every later buffer move up by one.
    let yp = y;
    let mut buffers = f.buffers.clone();
    let buf = ir::loops::Buffer { name: "ypad".into(), dtype: padded.dtype, shape: padded.shape.clone(), kind: ir::loops::BufKind::Param, layout: None };
    buffers.insert(yp.index(), buf);
    let bump = |b: BufId| if b.index() >= yp.index() { BufId(b.0 + 1) } else { b };
    let body = std::mem::take(&mut f.body);
    let mut body: Vec<Stmt> = body
        .into_iter()
        .map(|s| {
            let s = s.map_exprs(&mut |e| match e {
                Expr::Load { buf, index } => Expr::Load { buf: bump(buf), index },
                other => other,
            });
            s.map_stores(&mut |buf, index| (bump(buf), index))
        })
        .collect();
    f.buffers = buffers;
    let y = bump(y);
    let spatial = final_store_body(&mut body, y)?;
    let Some(Stmt::Store { index, .. }) = spatial.last() else { return None };
    let index = index.clone();
    let shifted: Vec<Expr> = index.iter().enumerate().map(|(a, e)| if pads[a] == 0 { e.clone() } else { add(e.clone(), int(pads[a] as i64)) }).collect();
    spatial.push(store(yp, shifted, Expr::load(y, index)));
    f.body = body;
    ir::loops::verify::verify(&f).ok()?;
    Some(f)
}

/// The statement list whose last statement is the final store to `y`: the innermost spatial
/// body of a dense op, [init, reduction loop, epilogue stores...], or the only store of a
/// single loop nest (an elementwise op or a layout change).
fn final_store_body(body: &mut Vec<Stmt>, y: BufId) -> Option<&mut Vec<Stmt>> {
    let is_final = matches!(body.as_slice(), [Stmt::Store { buf, .. }, Stmt::For(_), ..] if *buf == y);
    if is_final {
        return matches!(body.last(), Some(Stmt::Store { buf, .. }) if *buf == y).then_some(body);
    }
    if matches!(body.as_slice(), [Stmt::Store { buf, .. }] if *buf == y) {
        return Some(body);
    }
    match body.as_mut_slice() {
        [Stmt::For(l)] => final_store_body(&mut l.body, y),
        _ => None,
    }
}

fn shift_stmt(s: Stmt, y: BufId, shift: &dyn Fn(Vec<Expr>) -> Vec<Expr>) -> Stmt {
    // Loads anywhere in the statement (map_exprs reaches nested ones), then the stores.
    let s = s.map_exprs(&mut |e| match e {
        Expr::Load { buf, index } if buf == y => Expr::Load { buf, index: shift(index) },
        other => other,
    });
    s.map_stores(&mut |buf, index| if buf == y { (buf, shift(index)) } else { (buf, index) })
}


/// A program that writes `value` to the border of the padded tensor and leaves its interior:
/// for each axis, the slabs before and after the interior along it, with the axes before it
/// restricted to the interior so that no element is written twice.
fn border_fill(name: &str, unpadded: &TensorType, padded: &TensorType, pads: &[usize], value: f32) -> Option<Func> {
    let rank = unpadded.rank();
    let mut b = Builder::new(name.to_string());
    let y = b.param("y", padded);
    for a in 0..rank {
        let (lead, trail) = (pads[a], pads[rank + a]);
        for (start, extent) in [(0, lead), (lead + unpadded.shape[a], trail)] {
            if extent == 0 {
                continue;
            }
            // (offset, extent) of every axis in this slab.
            let ranges: Vec<(usize, usize)> = (0..rank)
                .map(|k| match k.cmp(&a) {
                    std::cmp::Ordering::Less => (pads[k], unpadded.shape[k]),
                    std::cmp::Ordering::Equal => (start, extent),
                    std::cmp::Ordering::Greater => (0, padded.shape[k]),
                })
                .collect();
            if ranges.iter().any(|r| r.1 == 0) {
                continue;
            }
            let vars = b.vars(&ranges.iter().map(|r| r.1).collect::<Vec<_>>(), |k| format!("b{a}_{k}"));
            let index = vars_expr(&vars).into_iter().zip(&ranges).map(|(e, r)| if r.0 == 0 { e } else { add(e, int(r.0 as i64)) }).collect();
            let nest = b.nest(&vars, vec![store(y, index, constant(padded.dtype, value))]);
            b.push(nest);
        }
    }
    ir::loops::verify::verify(&b.f).ok()?;
    Some(b.f)
}

//! Layout propagation: convolutions run on channel-blocked tensors (NCHW16c: a vector of 16
//! channels of one pixel is contiguous, so a convolution's vector lanes are always full and
//! its loads unit-stride), and the layout changes move through elementwise ops and pooling
//! until they meet and cancel, so a chain of convolutions keeps the blocked layout and
//! reorders remain only at its edges. The cost model charges a layout change its copy.

use egg::Id;
use ir::graph::{BinaryOp, ReduceKind};
use ir::{Op, Tensor, TensorType};

use super::{custom, Custom, GRewrite};
use crate::egraph::{add_const, add_op, ops_in, GEGraph, GNode};

/// Channels per block: the f32 lanes of an AVX-512 register, or half of them where the
/// channel counts are multiples of 8 only (MobileNets' 24, 40, 72, 120 channels). Narrower
/// targets split a block into several vectors, so these sizes serve every target.
pub const BLOCKS: [usize; 2] = [16, 8];

pub fn rules() -> Vec<GRewrite> {
    vec![
        // conv(x, w, b) = from_nchwc(conv_nchwc(x, w, b))   for dense convolutions with whole
        //   blocks of output channels, = from_nchwc(conv_nchwc(to_nchwc(x), w, b)) for depthwise
        //   ones with whole blocks of channels; with a constant weight and more than one pixel
        //   (a 1x1 image is a matrix-vector product, in any layout)
        custom(
            "conv-to-nchwc",
            Custom { rewrite: |g, id| build(g, id, conv_to_nchwc(g, id)), applies: |g, id| conv_to_nchwc(g, id).is_some() },
        ),
        // conv_nchwc(x, w, b) = conv_nchwc(z, w, b)   when x = from_nchwc(z), z of any block
        custom(
            "conv-input-layout",
            Custom { rewrite: |g, id| build(g, id, conv_input_layout(g, id)), applies: |g, id| conv_input_layout(g, id).is_some() },
        ),
        // to_nchwc(from_nchwc(y)) = y
        custom("to-from-nchwc", Custom { rewrite: |g, id| to_from(g, id), applies: |g, id| to_from(g, id).is_some() }),
        // from_nchwc(to_nchwc(x)) = x
        custom("from-to-nchwc", Custom { rewrite: |g, id| from_to(g, id), applies: |g, id| from_to(g, id).is_some() }),
        // f(from_nchwc(y)) = from_nchwc(f(y))   for f unary, clip or a 2-D pool (which pools the
        //   spatial axes of either layout)
        custom(
            "unary-through-nchwc",
            Custom { rewrite: |g, id| build(g, id, unary_through(g, id)), applies: |g, id| unary_through(g, id).is_some() },
        ),
        // from_nchwc(a) op from_nchwc(b) = from_nchwc(a op b), and with a scalar or a per-channel
        //   operand (a constant, blocked at compile time; or an [N,C,1,1] value, whose blocked
        //   form is the same memory), or an NCHW operand b as to_nchwc(b)
        custom(
            "binary-through-nchwc",
            Custom { rewrite: |g, id| build(g, id, binary_through(g, id)), applies: |g, id| binary_through(g, id).is_some() },
        ),
        // reduce(from_nchwc(y), axes [2,3], keep) = from_nchwc(reduce(y, axes [2,3], keep))
        custom(
            "pool-through-nchwc",
            Custom { rewrite: |g, id| build(g, id, pool_through(g, id)), applies: |g, id| pool_through(g, id).is_some() },
        ),
        // from_nchwc(z) = reshape(z, [N,C,1,1])   when z is one pixel: the same memory
        custom(
            "one-pixel-from-nchwc",
            Custom { rewrite: |g, id| build(g, id, one_pixel(g, id)), applies: |g, id| one_pixel(g, id).is_some() },
        ),
    ]
}

/// An equivalent form to build: a closure over the e-graph that adds it and returns its class.
type Plan = Box<dyn FnOnce(&mut GEGraph) -> Option<Id>>;

/// Builds a plan's form of class `id`. The blocked value inside a layout change is the same
/// value, so it takes the class's name (programs and errors are named after source nodes).
fn build(g: &mut GEGraph, id: Id, plan: Option<Plan>) -> Option<Id> {
    let new = plan?(g)?;
    if let Some(name) = g[id].data.name.clone() {
        for (op, ch) in ops_in(g, new) {
            let z = g.find(ch[0]);
            if matches!(op, Op::FromNchwc { .. }) && g[z].data.name.is_none() {
                g[z].data.name = Some(name.clone());
            }
        }
    }
    Some(new)
}

/// Every blocked value `z`, with its block, such that class `id` holds `from_nchwc(z)`.
fn blocked_forms(g: &GEGraph, id: Id) -> Vec<(Id, usize)> {
    ops_in(g, id)
        .into_iter()
        .filter_map(|(op, ch)| match op {
            Op::FromNchwc { block } => Some((ch[0], block)),
            _ => None,
        })
        .collect()
}

/// The blocked form of class `id` with the given block.
fn blocked_as(g: &GEGraph, id: Id, block: usize) -> Option<Id> {
    blocked_forms(g, id).into_iter().find_map(|(z, b)| (b == block).then_some(z))
}

/// Whether class `id` already holds a node of this kind (the rule has fired on it).
fn holds(g: &GEGraph, id: Id, kind: impl Fn(&Op) -> bool) -> bool {
    ops_in(g, id).iter().any(|(op, _)| kind(op))
}

fn unblock(g: &mut GEGraph, z: Id, block: usize) -> Option<Id> {
    add_op(g, Op::FromNchwc { block }, vec![z])
}

/// Whether class `id` holds from_nchwc(conv2d_nchwc{block}(..)).
fn holds_blocked_conv(g: &GEGraph, id: Id, block: usize) -> bool {
    ops_in(g, id).into_iter().any(|(op, ch)| {
        op == Op::FromNchwc { block } && holds(g, ch[0], |inner| matches!(inner, Op::Conv2dNchwc { block: b, .. } if *b == block))
    })
}

/// Every block size that fits is offered: which one a tensor should have depends on all the
/// convolutions that read and write it, which extraction weighs. A dense convolution reads
/// its input as it is (NCHW here; `conv-input-layout` offers its blocked forms), a depthwise
/// one needs its input blocked like its result.
fn conv_to_nchwc(g: &GEGraph, id: Id) -> Option<Plan> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        let Op::Conv2d { strides, pads, dilations, groups } = op else { return None };
        let (x, w) = (&g[ch[0]].data.ty, &g[ch[1]].data.ty);
        let (c, o) = (x.shape[1], w.shape[0]);
        let depthwise = groups > 1 && groups == c && o == c;
        let block = BLOCKS.into_iter().find(|&b| o % b == 0 && (!depthwise || c % b == 0) && !holds_blocked_conv(g, id, b))?;
        let shapes_ok = x.rank() == 4 && x.shape[2] * x.shape[3] > 1;
        let weight_is_constant = g[ch[1]].nodes.iter().any(|n| matches!(n, GNode::Const(_)));
        if !((groups == 1 || depthwise) && shapes_ok && weight_is_constant) {
            return None;
        }
        let plan: Plan = Box::new(move |g: &mut GEGraph| {
            let x = if depthwise { add_op(g, Op::ToNchwc { block }, vec![ch[0]])? } else { ch[0] };
            let mut operands = vec![x];
            operands.extend(&ch[1..]);
            let yb = add_op(g, Op::Conv2dNchwc { strides, pads, dilations, groups, block }, operands)?;
            unblock(g, yb, block)
        });
        Some(plan)
    })
}

/// A dense blocked convolution of an NCHW value reads one of the value's blocked forms
/// instead, whatever its block: the reduction follows the input's layout.
fn conv_input_layout(g: &GEGraph, id: Id) -> Option<Plan> {
    let existing = ops_in(g, id);
    existing.iter().find_map(|(op, ch)| {
        if !matches!(op, Op::Conv2dNchwc { groups: 1, .. }) || g[ch[0]].data.ty.rank() != 4 {
            return None;
        }
        let present = |z: Id| existing.iter().any(|(o, c)| o == op && g.find(c[0]) == g.find(z) && c[1..] == ch[1..]);
        let (z, _) = blocked_forms(g, ch[0]).into_iter().find(|&(z, _)| !present(z))?;
        let (op, mut operands) = (op.clone(), ch.clone());
        operands[0] = z;
        let plan: Plan = Box::new(move |g: &mut GEGraph| add_op(g, op, operands));
        Some(plan)
    })
}

fn to_from(g: &GEGraph, id: Id) -> Option<Id> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| match op {
        Op::ToNchwc { block } => blocked_as(g, ch[0], block).filter(|&z| g.find(z) != g.find(id)),
        _ => None,
    })
}

fn from_to(g: &GEGraph, id: Id) -> Option<Id> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| match op {
        Op::FromNchwc { block } => ops_in(g, ch[0])
            .into_iter()
            .find_map(|(inner, ich)| (inner == Op::ToNchwc { block }).then(|| ich[0]))
            .filter(|&x| g.find(x) != g.find(id)),
        _ => None,
    })
}

fn unary_through(g: &GEGraph, id: Id) -> Option<Plan> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        if !matches!(op, Op::Unary(_) | Op::Clip { .. } | Op::Pool2d { .. }) {
            return None;
        }
        let (z, block) = blocked_forms(g, ch[0]).into_iter().find(|&(z, _)| !already_moved(g, id, &op, &[Some(z)]))?;
        let plan: Plan = Box::new(move |g: &mut GEGraph| {
            let y = add_op(g, op, vec![z])?;
            unblock(g, y, block)
        });
        Some(plan)
    })
}

/// Whether class `id` already holds from_nchwc(op(..)) with the given operands where they are
/// known (a constant blocked at compile time is a new class each time, so it is not compared).
fn already_moved(g: &GEGraph, id: Id, op: &Op, operands: &[Option<Id>]) -> bool {
    ops_in(g, id).into_iter().any(|(o, ch)| {
        matches!(o, Op::FromNchwc { .. })
            && ops_in(g, ch[0]).iter().any(|(inner, ich)| {
                inner == op
                    && ich.len() == operands.len()
                    && ich.iter().zip(operands).all(|(&c, want)| want.is_none_or(|w| g.find(c) == g.find(w)))
            })
    })
}

/// How one operand of a binary op over NCHW16c tensors is read: as a blocked value, as it is
/// (a scalar), as a constant blocked at compile time, reshaped (an [N,C,1,1] value), or
/// changed to the blocked layout (a value computed in NCHW, like a residual from a layer that
/// cannot be blocked).
enum Operand {
    Blocked(Id),
    Same(Id),
    Constant(Tensor),
    Reshaped(Id, Vec<usize>),
    Reordered(Id, usize),
}

fn operand(g: &GEGraph, id: Id, out: &TensorType, block: usize) -> Option<Operand> {
    if g[id].data.ty.shape == out.shape {
        let whole_blocks = out.shape[1] % block == 0;
        return blocked_as(g, id, block).map(Operand::Blocked).or(whole_blocks.then_some(Operand::Reordered(id, block)));
    }
    let t = &g[id].data.ty;
    if t.numel() == 1 {
        return Some(Operand::Same(id));
    }
    let c = out.shape[1];
    // Right-aligned against [N, C, H, W], only the channel axis may be more than 1.
    let offset = 4usize.checked_sub(t.rank())?;
    let per_channel = t.numel() == c && t.shape.iter().enumerate().all(|(i, &d)| d == 1 || i + offset == 1);
    if !per_channel {
        return None;
    }
    let blocked_shape = vec![1, c / block, 1, 1, block];
    match &g[id].data.value {
        // Per-channel data in channel order is already in blocked order when H = W = 1.
        Some(v) => Tensor::new(blocked_shape, v.data.clone()).ok().map(Operand::Constant),
        None => Some(Operand::Reshaped(id, blocked_shape)),
    }
}

fn binary_through(g: &GEGraph, id: Id) -> Option<Plan> {
    let out = g[id].data.ty.clone();
    if out.rank() != 4 {
        return None;
    }
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        let Op::Binary(b) = op else { return None };
        if b.is_comparison()
            || b.is_logical()
            || !matches!(b, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Max | BinaryOp::Min)
        {
            return None;
        }
        // Each block one of the operands has already, with the other operand in that block.
        let mut blocks: Vec<usize> = blocked_forms(g, ch[0]).into_iter().chain(blocked_forms(g, ch[1])).map(|(_, b)| b).collect();
        blocks.sort_unstable();
        blocks.dedup();
        let (block, a, c) = blocks.into_iter().find_map(|block| {
            let (a, c) = (operand(g, ch[0], &out, block)?, operand(g, ch[1], &out, block)?);
            let moved = already_moved(g, id, &op, &[existing(&a), existing(&c)]);
            (!moved && (matches!(a, Operand::Blocked(_)) || matches!(c, Operand::Blocked(_)))).then_some((block, a, c))
        })?;
        let plan: Plan = Box::new(move |g: &mut GEGraph| {
            let x = materialize(g, a)?;
            let y = materialize(g, c)?;
            let r = add_op(g, Op::Binary(b), vec![x, y])?;
            unblock(g, r, block)
        });
        Some(plan)
    })
}

/// The class of an operand that needs no new node.
fn existing(o: &Operand) -> Option<Id> {
    match o {
        Operand::Blocked(z) | Operand::Same(z) => Some(*z),
        _ => None,
    }
}

fn materialize(g: &mut GEGraph, o: Operand) -> Option<Id> {
    match o {
        Operand::Blocked(z) | Operand::Same(z) => Some(z),
        Operand::Constant(t) => Some(add_const(g, t)),
        Operand::Reshaped(x, shape) => add_op(g, Op::Reshape { shape }, vec![x]),
        Operand::Reordered(x, block) => add_op(g, Op::ToNchwc { block }, vec![x]),
    }
}

fn pool_through(g: &GEGraph, id: Id) -> Option<Plan> {
    ops_in(g, id).into_iter().find_map(|(op, ch)| {
        let Op::Reduce { kind: kind @ (ReduceKind::Mean | ReduceKind::Max), axes, keep_dims: true } = op.clone() else { return None };
        if axes != [2, 3] {
            return None;
        }
        let (z, block) = blocked_forms(g, ch[0]).into_iter().find(|&(z, _)| !already_moved(g, id, &op, &[Some(z)]))?;
        let plan: Plan = Box::new(move |g: &mut GEGraph| {
            let r = add_op(g, Op::Reduce { kind, axes: vec![2, 3], keep_dims: true }, vec![z])?;
            unblock(g, r, block)
        });
        Some(plan)
    })
}

fn one_pixel(g: &GEGraph, id: Id) -> Option<Plan> {
    let t = g[id].data.ty.clone();
    if t.rank() != 4 || t.shape[2] != 1 || t.shape[3] != 1 {
        return None;
    }
    let reshaped = |z: Id| ops_in(g, id).into_iter().any(|(op, ch)| matches!(op, Op::Reshape { .. }) && g.find(ch[0]) == g.find(z));
    let (z, _) = blocked_forms(g, id).into_iter().find(|&(z, _)| !reshaped(z))?;
    let plan: Plan = Box::new(move |g: &mut GEGraph| add_op(g, Op::Reshape { shape: t.shape.clone() }, vec![z]));
    Some(plan)
}

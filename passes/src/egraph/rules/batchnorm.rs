//! Batch normalization folded into the convolution or matrix product before it. The importer
//! turns inference batch norm into `x * s + t` with per-channel constants; these rules move
//! `s` into the weights and `t` into the bias.

use egg::Id;
use ir::graph::BinaryOp;
use ir::{Op, Tensor};

use super::{custom, Custom, GRewrite};
use crate::egraph::{add_const, add_op, ops_in, GEGraph};

pub fn rules() -> Vec<GRewrite> {
    vec![
        // conv(x, w, b) * s = conv(x, w * s[o], b * s)   (s per output channel)
        custom("fold-scale-into-conv", Custom { rewrite: fold_scale_into_conv, applies: |g, id| scale_of_conv(g, id).is_some() }),
        // conv(x, w, b) + t = conv(x, w, b + t)   (t per output channel)
        custom("fold-shift-into-conv-bias", Custom { rewrite: fold_shift_into_conv, applies: |g, id| shift_of_conv(g, id).is_some() }),
        // matmul(x, W) * s = matmul(x, W * s[n])   (s per column)
        custom("fold-scale-into-matmul", Custom { rewrite: fold_scale_into_matmul, applies: |g, id| scale_of_matmul(g, id).is_some() }),
    ]
}

/// The per-channel values of constant class `c` broadcast along axis `axis` of a result of
/// rank `rank` with `n` channels: one value per channel (a single value repeats).
fn per_channel(g: &GEGraph, c: Id, rank: usize, axis: usize, n: usize) -> Option<Vec<f32>> {
    let t = g[c].data.value.as_deref()?;
    let v = t.as_f32()?;
    let s = &t.shape;
    if s.len() > rank {
        return None;
    }
    // Right-aligned, every axis but `axis` must be 1.
    let offset = rank - s.len();
    let only_channel = s.iter().enumerate().all(|(i, &d)| d == 1 || i + offset == axis);
    // A single value (hard-swish's 1/6, say) is not batch norm: folding it would copy a
    // convolution whose result is also used unscaled.
    (v.len() == n && only_channel).then(|| v.to_vec())
}

/// (conv operands, other operand) when class `id` holds `op(a, k)` or `op(k, a)` with `a` a
/// convolution whose weight is a constant and the result keeps the conv's type.
fn conv_with(g: &GEGraph, id: Id, op: BinaryOp) -> Option<(Op, Vec<Id>, Id)> {
    let ops = ops_in(g, id);
    // Folded already: the class holds the convolution.
    if ops.iter().any(|(o, _)| matches!(o, Op::Conv2d { .. })) {
        return None;
    }
    for (o, ch) in ops {
        if o != Op::Binary(op) {
            continue;
        }
        for (a, k) in [(ch[0], ch[1]), (ch[1], ch[0])] {
            if g[a].data.ty != g[id].data.ty || g[k].data.value.is_none() {
                continue;
            }
            for (co, cch) in ops_in(g, a) {
                if matches!(co, Op::Conv2d { .. }) && g[cch[1]].data.value.is_some() {
                    return Some((co, cch, k));
                }
            }
        }
    }
    None
}

fn scale_of_conv(g: &GEGraph, id: Id) -> Option<(Op, Vec<Id>, Vec<f32>)> {
    let (conv, ch, k) = conv_with(g, id, BinaryOp::Mul)?;
    let oc = g[ch[1]].data.ty.shape[0];
    let s = per_channel(g, k, 4, 1, oc)?;
    Some((conv, ch, s))
}

fn fold_scale_into_conv(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (conv, ch, s) = scale_of_conv(g, id)?;
    let w = g[ch[1]].data.value.clone()?;
    let per_oc = w.numel() / s.len();
    let scaled: Vec<f32> = w.as_f32()?.iter().enumerate().map(|(i, &x)| x * s[i / per_oc]).collect();
    let w2 = add_const(g, Tensor::f32(w.shape.clone(), scaled).ok()?);
    let mut inputs = vec![ch[0], w2];
    if let Some(&b) = ch.get(2) {
        let bias = g[b].data.value.clone()?;
        let scaled: Vec<f32> = bias.as_f32()?.iter().zip(&s).map(|(x, y)| x * y).collect();
        inputs.push(add_const(g, Tensor::f32(bias.shape.clone(), scaled).ok()?));
    }
    add_op(g, conv, inputs)
}

fn shift_of_conv(g: &GEGraph, id: Id) -> Option<(Op, Vec<Id>, Vec<f32>)> {
    let (conv, ch, k) = conv_with(g, id, BinaryOp::Add)?;
    let oc = g[ch[1]].data.ty.shape[0];
    if ch.len() == 3 && g[ch[2]].data.value.is_none() {
        return None;
    }
    let t = per_channel(g, k, 4, 1, oc)?;
    Some((conv, ch, t))
}

fn fold_shift_into_conv(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (conv, ch, t) = shift_of_conv(g, id)?;
    let bias: Vec<f32> = match ch.get(2) {
        Some(&b) => g[b].data.value.clone()?.as_f32()?.iter().zip(&t).map(|(x, y)| x + y).collect(),
        None => t.clone(),
    };
    let b2 = add_const(g, Tensor::f32(vec![t.len()], bias).ok()?);
    add_op(g, conv, vec![ch[0], ch[1], b2])
}

/// (x, weight, column scales) when class `id` holds matmul(x, W) * s with W a constant matrix.
fn scale_of_matmul(g: &GEGraph, id: Id) -> Option<(Id, Id, Vec<f32>)> {
    let ops = ops_in(g, id);
    if ops.iter().any(|(o, _)| *o == Op::MatMul) {
        return None;
    }
    for (o, ch) in ops {
        if o != Op::Binary(BinaryOp::Mul) {
            continue;
        }
        for (a, k) in [(ch[0], ch[1]), (ch[1], ch[0])] {
            if g[a].data.ty != g[id].data.ty || g[k].data.value.is_none() {
                continue;
            }
            for (mo, mch) in ops_in(g, a) {
                if mo != Op::MatMul {
                    continue;
                }
                let w = &g[mch[1]].data;
                if w.value.is_some() && w.ty.rank() == 2 {
                    let rank = g[a].data.ty.rank();
                    let s = per_channel(g, k, rank, rank - 1, w.ty.shape[1])?;
                    return Some((mch[0], mch[1], s));
                }
            }
        }
    }
    None
}

fn fold_scale_into_matmul(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (x, w, s) = scale_of_matmul(g, id)?;
    let wt = g[w].data.value.clone()?;
    let n = s.len();
    let scaled: Vec<f32> = wt.as_f32()?.iter().enumerate().map(|(i, &v)| v * s[i % n]).collect();
    let w2 = add_const(g, Tensor::f32(wt.shape.clone(), scaled).ok()?);
    add_op(g, Op::MatMul, vec![x, w2])
}

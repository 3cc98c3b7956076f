//! Neural-network ONNX ops: convolution, pooling, gemm/matmul, batch norm and softmax.

use ir::graph::{BinaryOp, PoolKind, ReduceKind, UnaryOp, Window};
use ir::{Op, ValueId};

use super::{bin, bin_scalar, norm_axis, reshape, un};
use crate::import::{fail, CResult, NodeCx};

/// Window geometry of a Conv or pool node over `spatial` (1 or 2 dims), as 2-D attributes.
/// 1-D windows get a leading unit dimension so that they run as 2-D ones.
fn window(cx: &NodeCx, input: &[usize], kernel: &[usize]) -> CResult<Window> {
    let n = kernel.len();
    let ones = || vec![1i64; n];
    let strides = cx.attr_ints("strides").unwrap_or_else(ones);
    let dilations = cx.attr_ints("dilations").unwrap_or_else(ones);
    if strides.len() != n || dilations.len() != n || strides.iter().chain(&dilations).any(|&s| s < 1) {
        return fail("strides and dilations need one positive entry per spatial axis");
    }
    if kernel.contains(&0) || input.contains(&0) {
        return fail("empty kernels and empty inputs are not supported");
    }
    let auto_pad = cx.attr_string("auto_pad", "NOTSET");
    let mut pads = vec![0usize; 2 * n];
    match auto_pad.as_str() {
        "NOTSET" => {
            if let Some(p) = cx.attr_ints("pads") {
                if p.len() != 2 * n || p.iter().any(|&x| x < 0) {
                    return fail(format!("pads {p:?} must be {} non-negative values", 2 * n));
                }
                pads = p.iter().map(|&x| x as usize).collect();
            }
        }
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..n {
                let (s, d) = (strides[i] as usize, dilations[i] as usize);
                let out = input[i].div_ceil(s);
                let span = (kernel[i] - 1) * d + 1;
                let total = ((out - 1) * s + span).saturating_sub(input[i]);
                let small = total / 2;
                let (begin, end) = if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                pads[i] = begin;
                pads[n + i] = end;
            }
        }
        other => return fail(format!("unknown auto_pad {other}")),
    }
    let u = |v: &[i64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
    let (strides, dilations) = (u(&strides), u(&dilations));
    Ok(match n {
        1 => Window {
            kernel: [1, kernel[0]],
            strides: [1, strides[0]],
            pads: [0, pads[0], 0, pads[1]],
            dilations: [1, dilations[0]],
        },
        2 => Window {
            kernel: [kernel[0], kernel[1]],
            strides: [strides[0], strides[1]],
            pads: [pads[0], pads[1], pads[2], pads[3]],
            dilations: [dilations[0], dilations[1]],
        },
        _ => return fail(format!("{n}-D windows are not supported (only 1-D and 2-D)")),
    })
}

/// Inserts a unit height into an N,C,L tensor so it can take the 2-D path.
fn as_2d(cx: &mut NodeCx, x: ValueId) -> CResult<ValueId> {
    let s = cx.shape(x);
    if s.len() == 3 {
        reshape(cx, x, vec![s[0], s[1], 1, s[2]])
    } else {
        Ok(x)
    }
}

/// Removes the unit height `as_2d` inserted, when the original rank was 3.
fn from_2d(cx: &mut NodeCx, y: ValueId, rank: usize) -> CResult<ValueId> {
    let s = cx.shape(y);
    if rank == 3 {
        reshape(cx, y, vec![s[0], s[1], s[3]])
    } else {
        Ok(y)
    }
}

pub(crate) fn conv(cx: &mut NodeCx) -> CResult<ValueId> {
    let (x, w, bias) = (cx.req(0)?, cx.req(1)?, cx.input(2)?);
    let (xs, ws) = (cx.shape(x), cx.shape(w));
    if !(3..=4).contains(&xs.len()) || ws.len() != xs.len() {
        return fail(format!("only 1-D and 2-D convolutions are supported; input {}, weight {}", cx.ty(x), cx.ty(w)));
    }
    if let Some(k) = cx.attr_ints("kernel_shape") {
        if k.iter().map(|&v| v as usize).ne(ws[2..].iter().copied()) {
            return fail(format!("kernel_shape {k:?} disagrees with the weight {}", cx.ty(w)));
        }
    }
    let win = window(cx, &xs[2..], &ws[2..])?;
    let groups = cx.attr_int("group", 1);
    if groups < 1 {
        return fail(format!("group {groups} must be positive"));
    }
    let (x2, w2) = (as_2d(cx, x)?, as_2d(cx, w)?);
    let mut inputs = vec![x2, w2];
    inputs.extend(bias);
    let op = Op::Conv2d { strides: win.strides, pads: win.pads, dilations: win.dilations, groups: groups as usize };
    let y = cx.emit(op, inputs)?;
    from_2d(cx, y, xs.len())
}

pub(crate) fn pool(cx: &mut NodeCx) -> CResult<Vec<ValueId>> {
    let x = cx.req(0)?;
    if cx.node.output.get(1).is_some_and(|o| !o.is_empty()) {
        return fail("the Indices output of MaxPool is not supported");
    }
    let xs = cx.shape(x);
    let Some(kernel) = cx.attr_ints("kernel_shape") else { return fail("kernel_shape is required") };
    if kernel.len() + 2 != xs.len() || kernel.iter().any(|&k| k < 1) {
        return fail(format!("kernel_shape {kernel:?} does not fit input {}", cx.ty(x)));
    }
    let kernel: Vec<usize> = kernel.iter().map(|&k| k as usize).collect();
    let window = window(cx, &xs[2..], &kernel)?;
    let kind = if cx.op_type() == "MaxPool" { PoolKind::Max } else { PoolKind::Avg };
    let op = Op::Pool2d {
        kind,
        window,
        ceil_mode: cx.attr_int("ceil_mode", 0) != 0,
        count_include_pad: cx.attr_int("count_include_pad", 0) != 0,
    };
    let x2 = as_2d(cx, x)?;
    let y = cx.emit(op, vec![x2])?;
    Ok(vec![from_2d(cx, y, xs.len())?])
}

pub(crate) fn global_pool(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let rank = cx.shape(x).len();
    if rank < 3 {
        return fail(format!("input {} needs spatial axes", cx.ty(x)));
    }
    let kind = if cx.op_type() == "GlobalMaxPool" { ReduceKind::Max } else { ReduceKind::Mean };
    cx.emit(Op::Reduce { kind, axes: (2..rank).collect(), keep_dims: true }, vec![x])
}

fn transpose_last2(cx: &mut NodeCx, x: ValueId) -> CResult<ValueId> {
    let r = cx.shape(x).len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    cx.emit(Op::Transpose { perm }, vec![x])
}

/// Y = alpha * A' B' + beta * C
pub(crate) fn gemm(cx: &mut NodeCx) -> CResult<ValueId> {
    let (mut a, mut b, c) = (cx.req(0)?, cx.req(1)?, cx.input(2)?);
    if cx.shape(a).len() != 2 || cx.shape(b).len() != 2 {
        return fail(format!("A and B must be matrices, are {} and {}", cx.ty(a), cx.ty(b)));
    }
    if cx.attr_int("transA", 0) != 0 {
        a = transpose_last2(cx, a)?;
    }
    if cx.attr_int("transB", 0) != 0 {
        b = transpose_last2(cx, b)?;
    }
    let mut y = cx.emit(Op::MatMul, vec![a, b])?;
    let alpha = cx.attr_float("alpha", 1.0);
    if alpha != 1.0 {
        y = bin_scalar(cx, BinaryOp::Mul, y, alpha as f64)?;
    }
    if let Some(mut c) = c {
        let beta = cx.attr_float("beta", 1.0);
        if beta != 1.0 {
            c = bin_scalar(cx, BinaryOp::Mul, c, beta as f64)?;
        }
        y = bin(cx, BinaryOp::Add, y, c)?;
    }
    Ok(y)
}

/// Numpy matmul, including 1-D operands (promoted to matrices, the unit axis removed after).
pub(crate) fn matmul(cx: &mut NodeCx) -> CResult<ValueId> {
    let (mut a, mut b) = (cx.req(0)?, cx.req(1)?);
    let (sa, sb) = (cx.shape(a), cx.shape(b));
    if sa.is_empty() || sb.is_empty() {
        return fail("operands must have rank >= 1");
    }
    if sa.len() == 1 {
        a = reshape(cx, a, vec![1, sa[0]])?;
    }
    if sb.len() == 1 {
        b = reshape(cx, b, vec![sb[0], 1])?;
    }
    let y = cx.emit(Op::MatMul, vec![a, b])?;
    let mut s = cx.shape(y);
    if sb.len() == 1 {
        s.pop();
    }
    if sa.len() == 1 {
        s.remove(s.len() - 1 - (sb.len() != 1) as usize);
    }
    reshape(cx, y, s)
}

/// Inference batch norm as x * s + t with s = scale / sqrt(var + eps), t = B - mean * s,
/// both folded to constants when the parameters are.
pub(crate) fn batch_norm(cx: &mut NodeCx) -> CResult<ValueId> {
    if cx.attr_int("training_mode", 0) != 0 || cx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return fail("training mode is not supported");
    }
    if cx.attr_int("spatial", 1) == 0 {
        return fail("spatial=0 (opset 7-8 per-activation statistics) is not supported");
    }
    let x = cx.req(0)?;
    let (scale, bias, mean, var) = (cx.req(1)?, cx.req(2)?, cx.req(3)?, cx.req(4)?);
    let xs = cx.shape(x);
    if xs.len() < 2 {
        return fail(format!("input {} needs a channel axis", cx.ty(x)));
    }
    let eps = cx.attr_float("epsilon", 1e-5) as f64;
    let ve = bin_scalar(cx, BinaryOp::Add, var, eps)?;
    let sd = un(cx, UnaryOp::Sqrt, ve)?;
    let s = bin(cx, BinaryOp::Div, scale, sd)?;
    let ms = bin(cx, BinaryOp::Mul, mean, s)?;
    let t = bin(cx, BinaryOp::Sub, bias, ms)?;
    let mut per_channel = vec![xs[1]];
    per_channel.resize(xs.len() - 1, 1);
    let s = reshape(cx, s, per_channel.clone())?;
    let t = reshape(cx, t, per_channel)?;
    let xs_ = bin(cx, BinaryOp::Mul, x, s)?;
    bin(cx, BinaryOp::Add, xs_, t)
}

/// softmax(x) = exp(x - max) / sum(exp(x - max)) along one axis (opset >= 13), or over the
/// flattened trailing axes from `axis` (older opsets).
pub(crate) fn softmax(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let shape = cx.shape(x);
    let log = cx.op_type() == "LogSoftmax";
    let new_semantics = cx.opset() >= 13;
    let axis = norm_axis(cx.attr_int("axis", if new_semantics { -1 } else { 1 }), shape.len())?;
    let (input, axes) = if new_semantics {
        (x, vec![axis])
    } else {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis..].iter().product();
        (reshape(cx, x, vec![outer, inner])?, vec![1])
    };
    let m = cx.emit(Op::Reduce { kind: ReduceKind::Max, axes: axes.clone(), keep_dims: true }, vec![input])?;
    let shifted = bin(cx, BinaryOp::Sub, input, m)?;
    let e = un(cx, UnaryOp::Exp, shifted)?;
    let s = cx.emit(Op::Reduce { kind: ReduceKind::Sum, axes, keep_dims: true }, vec![e])?;
    let y = if log {
        let ls = un(cx, UnaryOp::Log, s)?;
        bin(cx, BinaryOp::Sub, shifted, ls)?
    } else {
        bin(cx, BinaryOp::Div, e, s)?
    };
    reshape(cx, y, shape)
}

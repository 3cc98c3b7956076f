//! Lowering of the dense ops: grouped 2-D convolution, batched matmul and 2-D pooling, each an
//! output loop nest with an init store followed by a reduction nest that accumulates.

use ir::graph::{PoolKind, Window};
use ir::loops::{BinOp, BufId, Expr, Layout, Stmt, VarId};
use ir::{DType, Op, TensorType};

use super::{add, all, axis_name, broadcast_index, constant, div, int, mul, store, sub, vars_expr, Builder};

/// `weight_is_constant`: the conv's weight is known at compile time, so it may be read in
/// another layout.
pub(super) fn lower(b: &mut Builder, op: &Op, ins: &[&TensorType], out: &TensorType, weight_is_constant: bool) -> Result<(), String> {
    match op {
        Op::Conv2d { strides, pads, dilations, groups } => {
            let w = &ins[1].shape;
            let win = Window { kernel: [w[2], w[3]], strides: *strides, pads: *pads, dilations: *dilations };
            // On narrow images a row of output pixels fills few vector lanes; blocks of 16
            // output channels fill them all, with the weight stored block by block.
            let blocked = weight_is_constant && *groups == 1 && out.shape[3] <= 14 && out.shape[1] % CHANNEL_BLOCK == 0;
            if blocked {
                conv2d_channel_blocked(b, ins, out, &win)
            } else {
                conv2d(b, ins, out, &win, *groups)
            }
        }
        Op::Conv2dNchwc { strides, pads, dilations, groups, block } => {
            let w = &ins[1].shape;
            let win = Window { kernel: [w[2], w[3]], strides: *strides, pads: *pads, dilations: *dilations };
            conv2d_nchwc(b, ins, out, &win, *groups > 1, *block, weight_is_constant)
        }
        Op::MatMul => matmul(b, ins, out),
        Op::Pool2d { kind, window, count_include_pad, .. } => pool2d(b, ins[0], out, *kind, window, *count_include_pad),
        _ => Err("not a dense op".into()),
    }
}

fn require_f32(what: &str, types: &[&TensorType]) -> Result<(), String> {
    match types.iter().find(|t| t.dtype != DType::F32) {
        Some(t) => Err(format!("{what} is only defined on f32, not {t}")),
        None => Ok(()),
    }
}

/// The input row (or column) read by output position `o` at kernel tap `k` of window axis
/// `axis`: `o * stride + k * dilation - leading pad`; outside `0..extent` it is padding.
fn tap(o: VarId, k: VarId, win: &Window, axis: usize) -> Expr {
    let at = add(mul(Expr::Var(o), int(win.strides[axis] as i64)), mul(Expr::Var(k), int(win.dilations[axis] as i64)));
    sub(at, int(win.pads[axis] as i64))
}

/// A load of `x[n, c, ih, iw]` that yields `fill` where (ih, iw) is padding. The indices are
/// clamped into the buffer, so the load itself (even a vector one) never leaves it.
fn padded_load(b: &Builder, x: BufId, shape: &[usize], mut index: Vec<Expr>, fill: Expr) -> Expr {
    let mut conds = Vec::new();
    for axis in [2, 3] {
        b.in_bounds(&index[axis], shape[axis], &mut conds);
        index[axis] = b.clamp(index[axis].clone(), shape[axis]);
    }
    let load = Expr::load(x, index);
    match all(conds) {
        Some(cond) => Expr::select(cond, load, fill),
        None => load,
    }
}

/// y[n, oc, oh, ow] = bias[oc] + sum over (ic, kh, kw) of x[n, g * C/groups + ic, ih, iw] *
/// w[oc, ic, kh, kw], where g = oc / (O/groups) is the output channel's group.
fn conv2d(b: &mut Builder, ins: &[&TensorType], out: &TensorType, win: &Window, groups: usize) -> Result<(), String> {
    require_f32("conv2d", ins)?;
    let x = b.param("x", ins[0]);
    let w = b.param("w", ins[1]);
    let bias = ins.get(2).map(|t| b.param("b", t));
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let (xs, ws) = (&ins[0].shape, &ins[1].shape);
    let (cg, og) = (ws[1], ws[0] / groups);
    let outer = b.vars(&out.shape, |a| ["n", "oc", "oh", "ow"][a].to_string());
    let [n, oc, oh, ow] = [outer[0], outer[1], outer[2], outer[3]];
    let (ic, kh, kw) = (b.var("ic", cg), b.var("kh", ws[2]), b.var("kw", ws[3]));
    let yi = vars_expr(&outer);
    let init = match bias {
        Some(bb) => Expr::load(bb, vec![Expr::Var(oc)]),
        None => Expr::Float(0.0),
    };
    let channel = if groups == 1 { Expr::Var(ic) } else { add(mul(div(Expr::Var(oc), og as i64), int(cg as i64)), Expr::Var(ic)) };
    let (ih, iw) = (tap(oh, kh, win, 0), tap(ow, kw, win, 1));
    let xv = padded_load(b, x, xs, vec![Expr::Var(n), channel, ih, iw], Expr::Float(0.0));
    let wv = Expr::load(w, vars_expr(&[oc, ic, kh, kw]));
    push_accumulation(b, &outer, &[ic, kh, kw], y, yi, init, Expr::bin(BinOp::Mul, xv, wv));
    Ok(())
}

/// The loop nest of a reduction: over `outer`, `y[yi] = init`, then over `reduce`,
/// `y[yi] = y[yi] + term`.
fn push_accumulation(b: &mut Builder, outer: &[VarId], reduce: &[VarId], y: BufId, yi: Vec<Expr>, init: Expr, term: Expr) {
    let acc = Expr::bin(BinOp::Add, Expr::load(y, yi.clone()), term);
    let mut body = vec![store(y, yi.clone(), init)];
    body.extend(b.nest(reduce, vec![store(y, yi, acc)]));
    let nest = b.nest(outer, body);
    b.push(nest);
}

/// Output channels per block of a channel-blocked convolution.
const CHANNEL_BLOCK: usize = 16;

/// The convolution of `conv2d` (groups 1) with output channels in blocks: loops n, block,
/// oh, ow, channel-in-block, and the weight read as [O/16, I, KH, KW, 16] (a layout the caller
/// provides), so that a block's weights are one contiguous stream and a vector of output
/// channels is one load.
fn conv2d_channel_blocked(b: &mut Builder, ins: &[&TensorType], out: &TensorType, win: &Window) -> Result<(), String> {
    require_f32("conv2d", ins)?;
    let (xs, ws) = (&ins[0].shape, &ins[1].shape);
    let (o, i, kh_n, kw_n) = (ws[0], ws[1], ws[2], ws[3]);
    let blocks = o / CHANNEL_BLOCK;
    let x = b.param("x", ins[0]);
    let w = b.param("w", &TensorType::new(ins[1].dtype, vec![blocks, i, kh_n, kw_n, CHANNEL_BLOCK]));
    b.f.buffers[w.index()].layout = Some(Layout { view: vec![blocks, CHANNEL_BLOCK, i, kh_n, kw_n], perm: vec![0, 2, 3, 4, 1] });
    let bias = ins.get(2).map(|t| b.param("b", t));
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let s = &out.shape;
    let outer = b.vars(&[s[0], blocks, s[2], s[3], CHANNEL_BLOCK], |a| ["n", "ob", "oh", "ow", "oi"][a].to_string());
    let [n, ob, oh, ow, oi] = [outer[0], outer[1], outer[2], outer[3], outer[4]];
    let (ic, kh, kw) = (b.var("ic", i), b.var("kh", kh_n), b.var("kw", kw_n));
    let oc = add(mul(Expr::Var(ob), int(CHANNEL_BLOCK as i64)), Expr::Var(oi));
    let yi = vec![Expr::Var(n), oc.clone(), Expr::Var(oh), Expr::Var(ow)];
    let init = match bias {
        Some(bb) => Expr::load(bb, vec![oc]),
        None => Expr::Float(0.0),
    };
    let (ih, iw) = (tap(oh, kh, win, 0), tap(ow, kw, win, 1));
    let xv = padded_load(b, x, xs, vec![Expr::Var(n), Expr::Var(ic), ih, iw], Expr::Float(0.0));
    let wv = Expr::load(w, vars_expr(&[ob, ic, kh, kw, oi]));
    push_accumulation(b, &outer, &[ic, kh, kw], y, yi, init, Expr::bin(BinOp::Mul, xv, wv));
    Ok(())
}

/// The convolution of `conv2d` with its result in NCHW[b]c, dense or depthwise: loops n,
/// output block, oh, ow, channel-in-block, so that the innermost output loop is a contiguous
/// vector of channels. The dense reduction follows the input's layout: over its blocks, the
/// kernel, then the channels of a block (contiguous), or over channels then the kernel for a
/// plain NCHW input. A constant weight is read as [O/b, I, KH, KW, b], a block's weights for
/// one input channel and tap being one vector.
fn conv2d_nchwc(
    b: &mut Builder,
    ins: &[&TensorType],
    out: &TensorType,
    win: &Window,
    depthwise: bool,
    block: usize,
    weight_is_constant: bool,
) -> Result<(), String> {
    require_f32("conv2d_nchwc", ins)?;
    let (xs, ws) = (&ins[0].shape, &ins[1].shape);
    let (o, i, kh_n, kw_n) = (ws[0], ws[1], ws[2], ws[3]);
    let x = b.param("x", ins[0]);
    let w = if weight_is_constant {
        let w = b.param("w", &TensorType::new(ins[1].dtype, vec![o / block, i, kh_n, kw_n, block]));
        b.f.buffers[w.index()].layout = Some(Layout { view: vec![o / block, block, i, kh_n, kw_n], perm: vec![0, 2, 3, 4, 1] });
        w
    } else {
        b.param("w", ins[1])
    };
    let bias = ins.get(2).map(|t| b.param("b", t));
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let s = &out.shape;
    let outer = b.vars(s, |a| ["n", "ob", "oh", "ow", "oi"][a].to_string());
    let [n, ob, oh, ow, oi] = [outer[0], outer[1], outer[2], outer[3], outer[4]];
    let oc = add(mul(Expr::Var(ob), int(block as i64)), Expr::Var(oi));
    let (kh, kw);
    let reduce;
    // The input's channel, as (block, lane) of a blocked input or alone for a plain one.
    let (input_channel, ic): (Vec<Expr>, Expr);
    if depthwise {
        (kh, kw) = (b.var("kh", kh_n), b.var("kw", kw_n));
        reduce = vec![kh, kw];
        (input_channel, ic) = (vec![Expr::Var(ob), Expr::Var(oi)], int(0));
    } else if xs.len() == 5 {
        let input_block = xs[4];
        let icb = b.var("icb", xs[1]);
        (kh, kw) = (b.var("kh", kh_n), b.var("kw", kw_n));
        let ii = b.var("ii", input_block);
        reduce = vec![icb, kh, kw, ii];
        (input_channel, ic) = (vec![Expr::Var(icb), Expr::Var(ii)], add(mul(Expr::Var(icb), int(input_block as i64)), Expr::Var(ii)));
    } else {
        let c = b.var("ic", xs[1]);
        (kh, kw) = (b.var("kh", kh_n), b.var("kw", kw_n));
        reduce = vec![c, kh, kw];
        (input_channel, ic) = (vec![Expr::Var(c)], Expr::Var(c));
    }
    let (ih, iw) = (tap(oh, kh, win, 0), tap(ow, kw, win, 1));
    let mut conds = Vec::new();
    b.in_bounds(&ih, xs[2], &mut conds);
    b.in_bounds(&iw, xs[3], &mut conds);
    let (ih, iw) = (b.clamp(ih, xs[2]), b.clamp(iw, xs[3]));
    let index = match input_channel.as_slice() {
        [block, lane] => vec![Expr::Var(n), block.clone(), ih, iw, lane.clone()],
        _ => vec![Expr::Var(n), input_channel[0].clone(), ih, iw],
    };
    let load = Expr::load(x, index);
    let xv = match all(conds) {
        Some(cond) => Expr::select(cond, load, Expr::Float(0.0)),
        None => load,
    };
    let wv = if weight_is_constant {
        Expr::load(w, vec![Expr::Var(ob), ic, Expr::Var(kh), Expr::Var(kw), Expr::Var(oi)])
    } else {
        Expr::load(w, vec![oc.clone(), ic, Expr::Var(kh), Expr::Var(kw)])
    };
    let init = match bias {
        Some(bb) => Expr::load(bb, vec![oc]),
        None => Expr::Float(0.0),
    };
    push_accumulation(b, &outer, &reduce, y, vars_expr(&outer), init, Expr::bin(BinOp::Mul, xv, wv));
    Ok(())
}

/// y[batch.., m, n] = sum over k of a[batch.., m, k] * b[batch.., k, n], the batch axes of
/// each operand broadcast onto the result's.
fn matmul(b: &mut Builder, ins: &[&TensorType], out: &TensorType) -> Result<(), String> {
    let dtype = ins[0].dtype;
    if !matches!(dtype, DType::F32 | DType::I64) {
        return Err(format!("matmul is not defined on {dtype}"));
    }
    let (at, bt) = (ins[0], ins[1]);
    let a = b.param("a", at);
    let bb = b.param("b", bt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let r = out.rank();
    let batch = b.vars(&out.shape[..r - 2], axis_name);
    let m = b.var("m", out.shape[r - 2]);
    let n = b.var("n", out.shape[r - 1]);
    let k = b.var("k", at.shape[at.rank() - 1]);
    let operand = |t: &TensorType, rows: VarId, cols: VarId| {
        let mut index = broadcast_index(&batch, &t.shape[..t.rank() - 2]);
        index.extend([Expr::Var(rows), Expr::Var(cols)]);
        index
    };
    let mut yi = vars_expr(&batch);
    yi.extend([Expr::Var(m), Expr::Var(n)]);
    let product = Expr::bin(BinOp::Mul, Expr::load(a, operand(at, m, k)), Expr::load(bb, operand(bt, k, n)));
    let acc = Expr::bin(BinOp::Add, Expr::load(y, yi.clone()), product);
    let mut body = vec![store(y, yi.clone(), constant(dtype, 0.0))];
    body.extend(b.nest(&[k], vec![store(y, yi, acc)]));
    let mut outer = batch;
    outer.extend([m, n]);
    let nest = b.nest(&outer, body);
    b.push(nest);
    Ok(())
}

/// Max pooling takes the max over the taps inside the input (padding is -inf); average
/// pooling sums them and divides by the tap count, which `count_include_pad` extends to the
/// taps in the padding (but never those beyond it, which ceil_mode can create).
fn pool2d(b: &mut Builder, xt: &TensorType, out: &TensorType, kind: PoolKind, win: &Window, include_pad: bool) -> Result<(), String> {
    require_f32(if kind == PoolKind::Max { "max_pool2d" } else { "avg_pool2d" }, &[xt])?;
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    // NCHW, or NCHWc ([N, C/b, H, W, b]: the block axis is one more outer loop).
    let outer = b.vars(&out.shape, |a| ["n", "c", "oh", "ow", "cb"][a].to_string());
    let [n, c, oh, ow] = [outer[0], outer[1], outer[2], outer[3]];
    let (kh, kw) = (b.var("kh", win.kernel[0]), b.var("kw", win.kernel[1]));
    let yi = vars_expr(&outer);
    let yv = Expr::load(y, yi.clone());
    let (ih, iw) = (tap(oh, kh, win, 0), tap(ow, kw, win, 1));
    let mut index = vec![Expr::Var(n), Expr::Var(c), ih, iw];
    index.extend(outer.get(4).map(|&cb| Expr::Var(cb)));
    let padded_load = |b: &Builder, fill: Expr| padded_load(b, x, &xt.shape, index.clone(), fill);
    let (init, acc) = match kind {
        PoolKind::Max => {
            let xv = padded_load(b, Expr::Float(f32::NEG_INFINITY));
            (Expr::Float(f32::NEG_INFINITY), Expr::bin(BinOp::Max, yv.clone(), xv))
        }
        PoolKind::Avg => {
            let xv = padded_load(b, Expr::Float(0.0));
            (Expr::Float(0.0), Expr::bin(BinOp::Add, yv.clone(), xv))
        }
    };
    let mut body = vec![store(y, yi.clone(), init)];
    body.extend(b.nest(&[kh, kw], vec![store(y, yi.clone(), acc)]));
    if kind == PoolKind::Avg {
        let count = mul(tap_count(b, oh, win, 0, xt.shape[2], include_pad), tap_count(b, ow, win, 1, xt.shape[3], include_pad));
        let count = match count {
            Expr::Int(v) => Expr::Float(v as f32),
            e => Expr::cast(DType::F32, e),
        };
        body.push(store(y, yi, Expr::bin(BinOp::Div, yv, count)));
    }
    let nest: Vec<Stmt> = b.nest(&outer, body);
    b.push(nest);
    Ok(())
}

/// How many taps of the window of output `o` along `axis` land in `lo..hi` (the input, or
/// with `include_pad` the padded input): the taps `k` in `0..kernel` with
/// `lo <= o * s + k * d - pad < hi`, i.e. from ceil((lo + pad - o * s) / d) to
/// floor((hi - 1 + pad - o * s) / d), clamped to the kernel.
fn tap_count(b: &Builder, o: VarId, win: &Window, axis: usize, extent: usize, include_pad: bool) -> Expr {
    let (lead, trail) = (win.pads[axis] as i64, win.pads[axis + 2] as i64);
    let (lo, hi) = if include_pad { (-lead, extent as i64 + trail) } else { (0, extent as i64) };
    let (s, d, k) = (win.strides[axis] as i64, win.dilations[axis] as i64, win.kernel[axis] as i64);
    let start = mul(Expr::Var(o), int(s));
    let first = div(add(sub(int(lo + lead), start.clone()), int(d - 1)), d);
    let first = b.at_least(first, 0);
    let last = b.at_most(div(sub(int(hi - 1 + lead), start), d), k - 1);
    b.at_least(add(sub(last, first), int(1)), 0)
}

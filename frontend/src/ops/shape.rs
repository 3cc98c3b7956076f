//! Data-movement and shape ONNX ops. Shape arguments must be constants (after folding):
//! chanasc compiles static shapes.

use ir::graph::PadMode;
use ir::types::broadcast_shapes;
use ir::{DType, Op, Tensor, TensorData, ValueId};

use super::{norm_axis, reshape as emit_reshape};
use crate::import::{fail, CResult, NodeCx};

fn to_usize(v: &[i64], what: &str) -> CResult<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| crate::import::ConvertError::Message(format!("{what} {v:?} has a negative entry"))))
        .collect()
}

fn required_ints(cx: &NodeCx, i: usize, what: &str) -> CResult<Vec<i64>> {
    cx.const_ints(i)?.ok_or_else(|| crate::import::ConvertError::Message(format!("the {what} input is required")))
}

pub(crate) fn reshape(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let src = cx.shape(x);
    let spec = required_ints(cx, 1, "shape")?;
    let allow_zero = cx.attr_int("allowzero", 0) != 0;
    let mut shape = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => shape.push(*src.get(i).ok_or_else(|| format!("shape {spec:?}: no dimension {i} to copy"))?),
            d if d >= 0 => shape.push(d as usize),
            _ => return fail(format!("shape {spec:?} is invalid")),
        }
    }
    let total: usize = src.iter().product();
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || total % known != 0 {
            return fail(format!("cannot reshape {} to {spec:?}", cx.ty(x)));
        }
        shape[i] = total / known;
    }
    emit_reshape(cx, x, shape)
}

pub(crate) fn flatten(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let axis = cx.attr_int("axis", 1);
    let axis = if axis == s.len() as i64 { s.len() } else { norm_axis(axis, s.len())? };
    let shape = vec![s[..axis].iter().product(), s[axis..].iter().product()];
    emit_reshape(cx, x, shape)
}

fn axes_arg(cx: &NodeCx) -> CResult<Option<Vec<i64>>> {
    if cx.opset() >= 13 {
        cx.const_ints(1)
    } else {
        Ok(cx.attr_ints("axes"))
    }
}

pub(crate) fn squeeze(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let axes: Vec<usize> = match axes_arg(cx)? {
        Some(a) => a.iter().map(|&a| norm_axis(a, s.len())).collect::<CResult<_>>()?,
        None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| s[a] != 1) {
        return fail(format!("cannot squeeze axis {a} of {}", cx.ty(x)));
    }
    let shape = (0..s.len()).filter(|i| !axes.contains(i)).map(|i| s[i]).collect();
    emit_reshape(cx, x, shape)
}

pub(crate) fn unsqueeze(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let Some(axes) = axes_arg(cx)? else { return fail("axes are required") };
    let rank = s.len() + axes.len();
    let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<CResult<_>>()?;
    axes.sort_unstable();
    let mut src = s.iter();
    let shape = (0..rank).map(|i| if axes.contains(&i) { 1 } else { *src.next().unwrap_or(&1) }).collect();
    emit_reshape(cx, x, shape)
}

pub(crate) fn transpose(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let r = cx.shape(x).len();
    let perm = match cx.attr_ints("perm") {
        Some(p) => to_usize(&p, "perm")?,
        None => (0..r).rev().collect(),
    };
    cx.emit(Op::Transpose { perm }, vec![x])
}

pub(crate) fn concat(cx: &mut NodeCx) -> CResult<ValueId> {
    let inputs: Vec<ValueId> = (0..cx.num_inputs()).map(|i| cx.input(i)).collect::<CResult<Vec<_>>>()?.into_iter().flatten().collect();
    let Some(&first) = inputs.first() else { return fail("needs at least one input") };
    let axis = norm_axis(cx.attr_int("axis", 0), cx.shape(first).len())?;
    // Empty pieces add nothing; dropping them keeps every op free of zero-size operands.
    let pieces: Vec<ValueId> = inputs.iter().copied().filter(|&v| cx.shape(v)[axis] != 0).collect();
    match pieces.len() {
        0 => Ok(first),
        1 if pieces[0] == first && inputs.len() == 1 => Ok(first),
        _ => cx.emit(Op::Concat { axis }, pieces),
    }
}

/// A strided slice along one axis, every other axis whole.
fn slice_axis(cx: &mut NodeCx, x: ValueId, axis: usize, start: usize, end: usize) -> CResult<ValueId> {
    let s = cx.shape(x);
    let mut starts = vec![0i64; s.len()];
    let mut ends: Vec<i64> = s.iter().map(|&d| d as i64).collect();
    starts[axis] = start as i64;
    ends[axis] = end as i64;
    cx.emit(Op::Slice { starts, ends, steps: vec![1; s.len()] }, vec![x])
}

pub(crate) fn split(cx: &mut NodeCx) -> CResult<Vec<ValueId>> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let axis = norm_axis(cx.attr_int("axis", 0), s.len())?;
    let n_out = cx.node.output.len();
    let sizes = if cx.opset() >= 13 { cx.const_ints(1)? } else { cx.attr_ints("split") };
    let sizes: Vec<usize> = match sizes {
        Some(v) => to_usize(&v, "split")?,
        None => {
            let n = if cx.has_attr("num_outputs") { cx.attr_int("num_outputs", 1) as usize } else { n_out };
            if n == 0 {
                return fail("no outputs");
            }
            // Equal parts; the last is smaller when the axis does not divide (opset 18).
            let part = s[axis].div_ceil(n);
            (0..n).map(|i| part.min(s[axis].saturating_sub(i * part))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != s[axis] || sizes.len() != n_out {
        return fail(format!("split {sizes:?} does not cover axis {axis} of {} in {n_out} outputs", cx.ty(x)));
    }
    let mut outs = Vec::new();
    let mut start = 0;
    for size in sizes {
        outs.push(slice_axis(cx, x, axis, start, start + size)?);
        start += size;
    }
    Ok(outs)
}

pub(crate) fn slice(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let r = s.len();
    let (starts_in, ends_in) = if cx.opset() >= 10 {
        (required_ints(cx, 1, "starts")?, required_ints(cx, 2, "ends")?)
    } else {
        (cx.attr_ints("starts").unwrap_or_default(), cx.attr_ints("ends").unwrap_or_default())
    };
    let axes = match cx.const_ints(3)? {
        Some(a) => a,
        None => (0..starts_in.len() as i64).collect(),
    };
    let steps_in = cx.const_ints(4)?.unwrap_or_else(|| vec![1; starts_in.len()]);
    if ends_in.len() != starts_in.len() || axes.len() != starts_in.len() || steps_in.len() != starts_in.len() {
        return fail("starts, ends, axes and steps must have the same length");
    }
    let mut starts = vec![0i64; r];
    let mut ends: Vec<i64> = s.iter().map(|&d| d as i64).collect();
    let mut steps = vec![1i64; r];
    for i in 0..axes.len() {
        let a = norm_axis(axes[i], r)?;
        let d = s[a] as i64;
        let step = steps_in[i];
        if step == 0 {
            return fail("a step is zero");
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (st, en) = (norm(starts_in[i]), norm(ends_in[i]));
        // ONNX clamps starts and ends into the axis; a negative step may end before index 0.
        let (st, en) = if step > 0 { (st.clamp(0, d), en.clamp(0, d)) } else { (st.clamp(0, (d - 1).max(0)), en.clamp(-1, d - 1)) };
        // An empty axis stays empty whichever way the slice walks.
        let (st, en, step) = if d == 0 { (0, 0, 1) } else { (st, en, step) };
        starts[a] = st;
        ends[a] = en;
        steps[a] = step;
    }
    cx.emit(Op::Slice { starts, ends, steps }, vec![x])
}

pub(crate) fn pad(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let r = cx.shape(x).len();
    let mode = match cx.attr_string("mode", "constant").as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => return fail(format!("pad mode {other} is not supported")),
    };
    let (raw, value) = if cx.opset() >= 11 {
        let value = cx.const_input(2)?.and_then(|t| t.to_f32_vec().first().copied()).unwrap_or(0.0);
        (required_ints(cx, 1, "pads")?, value)
    } else {
        (cx.attr_ints("pads").unwrap_or_default(), cx.attr_float("value", 0.0))
    };
    let axes: Vec<usize> = match cx.const_ints(3)? {
        Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect::<CResult<_>>()?,
        None => (0..r).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return fail(format!("pads {raw:?} need 2 entries per padded axis"));
    }
    let raw = to_usize(&raw, "pads")?;
    let mut pads = vec![0usize; 2 * r];
    for (i, &a) in axes.iter().enumerate() {
        pads[a] = raw[i];
        pads[r + a] = raw[axes.len() + i];
    }
    if pads.iter().all(|&p| p == 0) {
        return Ok(x);
    }
    cx.emit(Op::Pad { pads, mode, value }, vec![x])
}

pub(crate) fn expand(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let spec = to_usize(&required_ints(cx, 1, "shape")?, "shape")?;
    // ONNX Expand broadcasts both ways: a 1 in the requested shape keeps x's dimension.
    let Some(shape) = broadcast_shapes(&cx.shape(x), &spec) else {
        return fail(format!("cannot expand {} to {spec:?}", cx.ty(x)));
    };
    if shape == cx.shape(x) {
        return Ok(x);
    }
    cx.emit(Op::Expand { shape }, vec![x])
}

pub(crate) fn tile(cx: &mut NodeCx) -> CResult<ValueId> {
    let mut y = cx.req(0)?;
    let repeats = to_usize(&required_ints(cx, 1, "repeats")?, "repeats")?;
    if repeats.len() != cx.shape(y).len() {
        return fail("repeats needs one entry per axis");
    }
    for (axis, &n) in repeats.iter().enumerate() {
        if n != 1 {
            y = cx.emit(Op::Concat { axis }, vec![y; n])?;
        }
    }
    Ok(y)
}

pub(crate) fn gather(cx: &mut NodeCx) -> CResult<ValueId> {
    let (x, idx) = (cx.req(0)?, cx.req(1)?);
    let axis = norm_axis(cx.attr_int("axis", 0), cx.shape(x).len())?;
    cx.emit(Op::Gather { axis }, vec![x, idx])
}

pub(crate) fn shape_of(cx: &mut NodeCx) -> CResult<ValueId> {
    let s: Vec<i64> = cx.shape(cx.req(0)?).iter().map(|&d| d as i64).collect();
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (start, end) = (clamp(cx.attr_int("start", 0)), clamp(cx.attr_int("end", r)));
    let part = s[start..end.max(start)].to_vec();
    Ok(cx.constant(Tensor::i64(vec![part.len()], part)?))
}

pub(crate) fn size_of(cx: &mut NodeCx) -> CResult<ValueId> {
    let n = cx.ty(cx.req(0)?).numel() as i64;
    Ok(cx.constant(Tensor::i64(vec![], vec![n])?))
}

pub(crate) fn constant(cx: &mut NodeCx) -> CResult<ValueId> {
    let t = if let Some(t) = cx.attr_tensor("value")? {
        t
    } else if cx.has_attr("value_float") {
        Tensor::scalar_f32(cx.attr_float("value_float", 0.0))
    } else if let Some(v) = cx.attr_floats("value_floats").filter(|_| cx.has_attr("value_floats")) {
        Tensor::f32(vec![v.len()], v)?
    } else if cx.has_attr("value_int") {
        Tensor::i64(vec![], vec![cx.attr_int("value_int", 0)])?
    } else if let Some(v) = cx.attr_ints("value_ints") {
        Tensor::i64(vec![v.len()], v)?
    } else {
        return fail("only value, value_float(s) and value_int(s) constants are supported");
    };
    Ok(cx.constant(t))
}

pub(crate) fn constant_of_shape(cx: &mut NodeCx) -> CResult<ValueId> {
    let shape = to_usize(&required_ints(cx, 0, "shape")?, "shape")?;
    let n: usize = shape.iter().product();
    let value = cx.attr_tensor("value")?.unwrap_or_else(|| Tensor::scalar_f32(0.0));
    let data = match &value.data {
        TensorData::F32(v) => TensorData::F32(vec![v.first().copied().unwrap_or(0.0); n]),
        TensorData::F16(v) => TensorData::F16(vec![v.first().copied().unwrap_or(ir::f16::ZERO); n]),
        TensorData::I64(v) => TensorData::I64(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::Bool(v) => TensorData::Bool(vec![v.first().copied().unwrap_or(false); n]),
    };
    Ok(cx.constant(Tensor::new(shape, data)?))
}

pub(crate) fn range(cx: &mut NodeCx) -> CResult<ValueId> {
    let args: Vec<Tensor> = (0..3)
        .map(|i| cx.const_input(i)?.ok_or_else(|| format!("input {i} is required").into()))
        .collect::<CResult<_>>()?;
    let t = match args[0].dtype() {
        DType::I64 => {
            let [start, limit, delta] = [0, 1, 2].map(|i| args[i].to_i64_vec().first().copied().unwrap_or(0));
            if delta == 0 {
                return fail("delta is zero");
            }
            let n = ((limit - start) as f64 / delta as f64).ceil().max(0.0) as usize;
            Tensor::i64(vec![n], (0..n as i64).map(|i| start + i * delta).collect())?
        }
        _ => {
            let [start, limit, delta] = [0, 1, 2].map(|i| args[i].to_f32_vec().first().copied().unwrap_or(0.0));
            if delta == 0.0 {
                return fail("delta is zero");
            }
            let n = ((limit - start) / delta).ceil().max(0.0) as usize;
            Tensor::f32(vec![n], (0..n).map(|i| start + i as f32 * delta).collect())?
        }
    };
    Ok(cx.constant(t))
}

/// DepthToSpace and SpaceToDepth as reshape, transpose, reshape.
pub(crate) fn depth_space(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let s = cx.shape(x);
    let b = cx.attr_int("blocksize", 0);
    if s.len() != 4 || b < 1 {
        return fail(format!("needs a 4-D input and a positive blocksize, got {} and {b}", cx.ty(x)));
    }
    let b = b as usize;
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let (split, perm, out) = if cx.op_type() == "DepthToSpace" {
        if c % (b * b) != 0 {
            return fail(format!("channels {c} are not divisible by blocksize^2"));
        }
        let co = c / (b * b);
        if cx.attr_string("mode", "DCR") == "CRD" {
            (vec![n, co, b, b, h, w], vec![0, 1, 4, 2, 5, 3], vec![n, co, h * b, w * b])
        } else {
            (vec![n, b, b, co, h, w], vec![0, 3, 4, 1, 5, 2], vec![n, co, h * b, w * b])
        }
    } else {
        if h % b != 0 || w % b != 0 {
            return fail(format!("spatial size {h}x{w} is not divisible by blocksize {b}"));
        }
        let perm = if cx.attr_string("mode", "DCR") == "CRD" { vec![0, 1, 3, 5, 2, 4] } else { vec![0, 3, 5, 1, 2, 4] };
        (vec![n, c, h / b, b, w / b, b], perm, vec![n, c * b * b, h / b, w / b])
    };
    let y = emit_reshape(cx, x, split)?;
    let y = cx.emit(Op::Transpose { perm }, vec![y])?;
    emit_reshape(cx, y, out)
}

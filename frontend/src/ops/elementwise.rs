//! Elementwise ONNX ops: binary arithmetic, clip, cast, and activations built from primitives.

use ir::graph::{BinaryOp, UnaryOp};
use ir::{DType, Op, Tensor, TensorData, ValueId};

use super::{bin, bin_scalar, un};
use crate::import::{dtype_of, fail, CResult, ConvertError, NodeCx};

pub(crate) fn binary(cx: &mut NodeCx, b: BinaryOp) -> CResult<ValueId> {
    let (x, mut y) = (cx.req(0)?, cx.req(1)?);
    // Pow alone may mix dtypes (a float base with an integer exponent).
    if b == BinaryOp::Pow && cx.ty(x).dtype != cx.ty(y).dtype {
        y = cx.emit(Op::Cast { to: cx.ty(x).dtype }, vec![y])?;
    }
    bin(cx, b, x, y)
}

pub(crate) fn dropout(cx: &mut NodeCx) -> CResult<Vec<ValueId>> {
    // Inference: the data passes through and the mask is all ones.
    let x = cx.req(0)?;
    if cx.attr_int("training_mode", 0) != 0 || cx.const_ints(2)?.is_some_and(|t| t.first() == Some(&1)) {
        return fail("training mode is not supported");
    }
    let shape = cx.shape(x);
    let n = shape.iter().product();
    let mask = cx.constant(Tensor::new(shape, TensorData::Bool(vec![true; n]))?);
    Ok(vec![x, mask])
}

pub(crate) fn clip(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    if cx.opset() < 11 {
        let (min, max) = (cx.attr_float("min", f32::NEG_INFINITY), cx.attr_float("max", f32::INFINITY));
        return cx.emit(Op::Clip { min, max }, vec![x]);
    }
    let bound = |cx: &NodeCx, i: usize| -> CResult<Option<Result<f32, ValueId>>> {
        Ok(match cx.input(i)? {
            None => None,
            Some(v) => Some(match cx.imp.g.const_data(v) {
                Some(t) => Ok(t.to_f32_vec().first().copied().unwrap_or(f32::NAN)),
                None => Err(v),
            }),
        })
    };
    match (bound(cx, 1)?, bound(cx, 2)?) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            // Bounds computed at run time: min(max(x, lo), hi) with broadcasting scalars.
            let mut y = x;
            if let Some(lo) = cx.input(1)? {
                y = bin(cx, BinaryOp::Max, y, lo)?;
            }
            if let Some(hi) = cx.input(2)? {
                y = bin(cx, BinaryOp::Min, y, hi)?;
            }
            Ok(y)
        }
        (lo, hi) => {
            let min = lo.and_then(Result::ok).unwrap_or(f32::NEG_INFINITY);
            let max = hi.and_then(Result::ok).unwrap_or(f32::INFINITY);
            if cx.ty(x).dtype == DType::F32 {
                cx.emit(Op::Clip { min, max }, vec![x])
            } else {
                // Integer clip: the bounds as exact integers.
                let mut y = x;
                if min.is_finite() {
                    y = bin_scalar(cx, BinaryOp::Max, y, min as f64)?;
                }
                if max.is_finite() {
                    y = bin_scalar(cx, BinaryOp::Min, y, max as f64)?;
                }
                Ok(y)
            }
        }
    }
}

pub(crate) fn cast(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let to = if cx.op_type() == "CastLike" {
        cx.ty(cx.req(1)?).dtype
    } else {
        dtype_of(cx.attr_int("to", 0) as i32)?
    };
    if cx.ty(x).dtype == to {
        return Ok(x);
    }
    cx.emit(Op::Cast { to }, vec![x])
}

/// Max, Min, Sum and Mean of any number of operands, folded pairwise.
pub(crate) fn variadic(cx: &mut NodeCx) -> CResult<ValueId> {
    let b = match cx.op_type() {
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    };
    let mut acc = cx.req(0)?;
    for i in 1..cx.num_inputs() {
        let y = cx.req(i)?;
        acc = bin(cx, b, acc, y)?;
    }
    if cx.op_type() == "Mean" {
        acc = bin_scalar(cx, BinaryOp::Div, acc, cx.num_inputs() as f64)?;
    }
    Ok(acc)
}

/// Activations that ONNX defines as functions of primitives.
pub(crate) fn composite_activation(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    if cx.ty(x).dtype != DType::F32 {
        return fail(format!("expects f32, got {}", cx.ty(x)));
    }
    let op_type = cx.op_type().to_string();
    let alpha = |cx: &NodeCx, d: f32| cx.attr_float("alpha", d) as f64;
    match op_type.as_str() {
        "HardSigmoid" => {
            let (a, b) = (alpha(cx, 0.2), cx.attr_float("beta", 0.5) as f64);
            hard_sigmoid(cx, x, a, b)
        }
        "HardSwish" => {
            let hs = hard_sigmoid(cx, x, 1.0 / 6.0, 0.5)?;
            bin(cx, BinaryOp::Mul, x, hs)
        }
        "LeakyRelu" => {
            let a = alpha(cx, 0.01);
            let neg = bin_scalar(cx, BinaryOp::Mul, x, a)?;
            select_negative(cx, x, neg)
        }
        "PRelu" => {
            let slope = cx.req(1)?;
            let neg = bin(cx, BinaryOp::Mul, x, slope)?;
            select_negative(cx, x, neg)
        }
        "Elu" => {
            let a = alpha(cx, 1.0);
            let e = expm1_scaled(cx, x, a)?;
            select_negative(cx, x, e)
        }
        "Selu" => {
            let a = alpha(cx, 1.673_263_2);
            let gamma = cx.attr_float("gamma", 1.050_701) as f64;
            let e = expm1_scaled(cx, x, a)?;
            let y = select_negative(cx, x, e)?;
            bin_scalar(cx, BinaryOp::Mul, y, gamma)
        }
        "Celu" => {
            // max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
            let a = alpha(cx, 1.0);
            let xa = bin_scalar(cx, BinaryOp::Div, x, a)?;
            let e = expm1_scaled(cx, xa, a)?;
            let neg = bin_scalar(cx, BinaryOp::Min, e, 0.0)?;
            let pos = un(cx, UnaryOp::Relu, x)?;
            bin(cx, BinaryOp::Add, pos, neg)
        }
        "ThresholdedRelu" => {
            let a = alpha(cx, 1.0);
            let above = bin_scalar(cx, BinaryOp::Greater, x, a)?;
            let zero = cx.scalar_like(x, 0.0)?;
            cx.emit(Op::Where, vec![above, x, zero])
        }
        "Softplus" => softplus(cx, x),
        "Softsign" => {
            let ax = un(cx, UnaryOp::Abs, x)?;
            let d = bin_scalar(cx, BinaryOp::Add, ax, 1.0)?;
            bin(cx, BinaryOp::Div, x, d)
        }
        "Mish" => {
            let sp = softplus(cx, x)?;
            let t = un(cx, UnaryOp::Tanh, sp)?;
            bin(cx, BinaryOp::Mul, x, t)
        }
        "Gelu" => {
            let inner = if cx.attr_string("approximate", "none") == "tanh" {
                // tanh(sqrt(2/pi) * (x + 0.044715 x^3))
                let x3 = bin_scalar(cx, BinaryOp::Pow, x, 3.0)?;
                let c = bin_scalar(cx, BinaryOp::Mul, x3, 0.044715)?;
                let s = bin(cx, BinaryOp::Add, x, c)?;
                let s = bin_scalar(cx, BinaryOp::Mul, s, (2.0 / std::f64::consts::PI).sqrt())?;
                un(cx, UnaryOp::Tanh, s)?
            } else {
                let s = bin_scalar(cx, BinaryOp::Mul, x, std::f64::consts::FRAC_1_SQRT_2)?;
                un(cx, UnaryOp::Erf, s)?
            };
            let one_plus = bin_scalar(cx, BinaryOp::Add, inner, 1.0)?;
            let half_x = bin_scalar(cx, BinaryOp::Mul, x, 0.5)?;
            bin(cx, BinaryOp::Mul, half_x, one_plus)
        }
        "Tan" => {
            let s = un(cx, UnaryOp::Sin, x)?;
            let c = un(cx, UnaryOp::Cos, x)?;
            bin(cx, BinaryOp::Div, s, c)
        }
        _ => Err(ConvertError::Unsupported),
    }
}

/// clip(alpha * x + beta, 0, 1)
fn hard_sigmoid(cx: &mut NodeCx, x: ValueId, alpha: f64, beta: f64) -> CResult<ValueId> {
    let ax = bin_scalar(cx, BinaryOp::Mul, x, alpha)?;
    let axb = bin_scalar(cx, BinaryOp::Add, ax, beta)?;
    cx.emit(Op::Clip { min: 0.0, max: 1.0 }, vec![axb])
}

/// where(x < 0, neg, x)
fn select_negative(cx: &mut NodeCx, x: ValueId, neg: ValueId) -> CResult<ValueId> {
    let is_neg = bin_scalar(cx, BinaryOp::Less, x, 0.0)?;
    cx.emit(Op::Where, vec![is_neg, neg, x])
}

/// alpha * (exp(x) - 1)
fn expm1_scaled(cx: &mut NodeCx, x: ValueId, alpha: f64) -> CResult<ValueId> {
    let e = un(cx, UnaryOp::Exp, x)?;
    let em1 = bin_scalar(cx, BinaryOp::Sub, e, 1.0)?;
    bin_scalar(cx, BinaryOp::Mul, em1, alpha)
}

/// log(exp(x) + 1)
fn softplus(cx: &mut NodeCx, x: ValueId) -> CResult<ValueId> {
    let e = un(cx, UnaryOp::Exp, x)?;
    let e1 = bin_scalar(cx, BinaryOp::Add, e, 1.0)?;
    un(cx, UnaryOp::Log, e1)
}

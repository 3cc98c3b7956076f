//! ONNX op converters: each ONNX node becomes one or more primitive IR ops.

mod elementwise;
mod nn;
mod reduce;
mod shape;

use ir::graph::{BinaryOp, UnaryOp};
use ir::{Op, ValueId};

use crate::import::{CResult, ConvertError, NodeCx};

/// Converts the current node; returns the IR values of its outputs, in order.
pub(crate) fn convert(cx: &mut NodeCx) -> CResult<Vec<ValueId>> {
    let op_type = cx.op_type().to_string();
    let one = |v: CResult<ValueId>| v.map(|v| vec![v]);
    if let Some(u) = unary_of(&op_type) {
        let x = cx.req(0)?;
        return one(cx.emit(Op::Unary(u), vec![x]));
    }
    if let Some(b) = binary_of(&op_type) {
        return one(elementwise::binary(cx, b));
    }
    match op_type.as_str() {
        "Identity" => one(cx.req(0)),
        "Dropout" => elementwise::dropout(cx),
        "Clip" => one(elementwise::clip(cx)),
        "LeakyRelu" | "Elu" | "Selu" | "Celu" | "ThresholdedRelu" | "PRelu" | "HardSigmoid" | "HardSwish" | "Softplus"
        | "Softsign" | "Mish" | "Gelu" | "Tan" => one(elementwise::composite_activation(cx)),
        "Max" | "Min" | "Sum" | "Mean" => one(elementwise::variadic(cx)),
        "Where" => {
            let (c, a, b) = (cx.req(0)?, cx.req(1)?, cx.req(2)?);
            one(cx.emit(Op::Where, vec![c, a, b]))
        }
        "Cast" | "CastLike" => one(elementwise::cast(cx)),
        "Conv" => one(nn::conv(cx)),
        "MaxPool" | "AveragePool" => nn::pool(cx),
        "GlobalAveragePool" | "GlobalMaxPool" => one(nn::global_pool(cx)),
        "Gemm" => one(nn::gemm(cx)),
        "MatMul" => one(nn::matmul(cx)),
        "BatchNormalization" => one(nn::batch_norm(cx)),
        "Softmax" | "LogSoftmax" => one(nn::softmax(cx)),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceSumSquare" | "ReduceLogSum" | "ReduceLogSumExp" => one(reduce::reduce(cx)),
        "ArgMax" | "ArgMin" => one(reduce::arg_reduce(cx)),
        "Reshape" => one(shape::reshape(cx)),
        "Flatten" => one(shape::flatten(cx)),
        "Squeeze" => one(shape::squeeze(cx)),
        "Unsqueeze" => one(shape::unsqueeze(cx)),
        "Transpose" => one(shape::transpose(cx)),
        "Concat" => one(shape::concat(cx)),
        "Split" => shape::split(cx),
        "Slice" => one(shape::slice(cx)),
        "Pad" => one(shape::pad(cx)),
        "Expand" => one(shape::expand(cx)),
        "Tile" => one(shape::tile(cx)),
        "Gather" => one(shape::gather(cx)),
        "Shape" => one(shape::shape_of(cx)),
        "Size" => one(shape::size_of(cx)),
        "Constant" => one(shape::constant(cx)),
        "ConstantOfShape" => one(shape::constant_of_shape(cx)),
        "Range" => one(shape::range(cx)),
        "DepthToSpace" | "SpaceToDepth" => one(shape::depth_space(cx)),
        _ => Err(ConvertError::Unsupported),
    }
}

fn unary_of(op_type: &str) -> Option<UnaryOp> {
    Some(match op_type {
        "Relu" => UnaryOp::Relu,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Erf" => UnaryOp::Erf,
        "Sign" => UnaryOp::Sign,
        "Not" => UnaryOp::Not,
        _ => return None,
    })
}

fn binary_of(op_type: &str) -> Option<BinaryOp> {
    Some(match op_type {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "Greater" => BinaryOp::Greater,
        "LessOrEqual" => BinaryOp::LessEqual,
        "GreaterOrEqual" => BinaryOp::GreaterEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        _ => return None,
    })
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> CResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(ConvertError::Message(format!("axis {axis} is out of range for rank {rank}")))
    }
}

/// Shorthands for emitting elementwise ops.
pub(crate) fn un(cx: &mut NodeCx, u: UnaryOp, x: ValueId) -> CResult<ValueId> {
    cx.emit(Op::Unary(u), vec![x])
}

pub(crate) fn bin(cx: &mut NodeCx, b: BinaryOp, x: ValueId, y: ValueId) -> CResult<ValueId> {
    cx.emit(Op::Binary(b), vec![x, y])
}

/// `x <b> c` for a scalar constant c of x's dtype.
pub(crate) fn bin_scalar(cx: &mut NodeCx, b: BinaryOp, x: ValueId, c: f64) -> CResult<ValueId> {
    let s = cx.scalar_like(x, c)?;
    bin(cx, b, x, s)
}

pub(crate) fn reshape(cx: &mut NodeCx, x: ValueId, shape: Vec<usize>) -> CResult<ValueId> {
    if cx.shape(x) == shape {
        return Ok(x);
    }
    cx.emit(Op::Reshape { shape }, vec![x])
}

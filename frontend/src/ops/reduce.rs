//! Reductions: ReduceX (axes as attribute or input, by opset), the norm variants, ArgMax/ArgMin.

use ir::graph::{BinaryOp, ReduceKind, UnaryOp};
use ir::{Op, ValueId};

use super::{bin, norm_axis, un};
use crate::import::{CResult, NodeCx};

pub(crate) fn reduce(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let rank = cx.shape(x).len();
    let op_type = cx.op_type().to_string();
    // ReduceSum took axes as an input from opset 13, the others from opset 18.
    let axes_from_input = if op_type == "ReduceSum" { cx.opset() >= 13 } else { cx.opset() >= 18 };
    let axes = if axes_from_input { cx.const_ints(1)? } else { cx.attr_ints("axes") };
    let axes = axes.unwrap_or_default();
    if axes.is_empty() && cx.attr_int("noop_with_empty_axes", 0) != 0 {
        return Ok(x);
    }
    let mut axes: Vec<usize> = if axes.is_empty() {
        (0..rank).collect()
    } else {
        axes.iter().map(|&a| norm_axis(a, rank)).collect::<CResult<_>>()?
    };
    axes.sort_unstable();
    axes.dedup();
    let keep_dims = cx.attr_int("keepdims", 1) != 0;
    let sum = |cx: &mut NodeCx, v: ValueId| cx.emit(Op::Reduce { kind: ReduceKind::Sum, axes: axes.clone(), keep_dims }, vec![v]);
    match op_type.as_str() {
        "ReduceL1" => {
            let a = un(cx, UnaryOp::Abs, x)?;
            sum(cx, a)
        }
        "ReduceL2" => {
            let sq = bin(cx, BinaryOp::Mul, x, x)?;
            let s = sum(cx, sq)?;
            un(cx, UnaryOp::Sqrt, s)
        }
        "ReduceSumSquare" => {
            let sq = bin(cx, BinaryOp::Mul, x, x)?;
            sum(cx, sq)
        }
        "ReduceLogSum" => {
            let s = sum(cx, x)?;
            un(cx, UnaryOp::Log, s)
        }
        "ReduceLogSumExp" => {
            let e = un(cx, UnaryOp::Exp, x)?;
            let s = sum(cx, e)?;
            un(cx, UnaryOp::Log, s)
        }
        _ => {
            let kind = match op_type.as_str() {
                "ReduceMean" => ReduceKind::Mean,
                "ReduceMax" => ReduceKind::Max,
                "ReduceMin" => ReduceKind::Min,
                "ReduceProd" => ReduceKind::Prod,
                _ => ReduceKind::Sum,
            };
            cx.emit(Op::Reduce { kind, axes, keep_dims }, vec![x])
        }
    }
}

pub(crate) fn arg_reduce(cx: &mut NodeCx) -> CResult<ValueId> {
    let x = cx.req(0)?;
    let axis = norm_axis(cx.attr_int("axis", 0), cx.shape(x).len())?;
    let op = Op::ArgReduce {
        max: cx.op_type() == "ArgMax",
        axis,
        keep_dims: cx.attr_int("keepdims", 1) != 0,
        select_last: cx.attr_int("select_last_index", 0) != 0,
    };
    cx.emit(op, vec![x])
}

//! Lowering of reductions (sum, mean, max, min, prod over axes) and of argmax/argmin: an
//! output loop nest, an init store, a reduction nest that accumulates, then any finalize.

use ir::graph::ReduceKind;
use ir::loops::{BinOp, Expr};
use ir::{DType, Op, TensorType};

use super::{axis_name, int, store, Builder};

pub(super) fn lower(b: &mut Builder, op: &Op, ins: &[&TensorType], out: &TensorType) -> Result<(), String> {
    match op {
        Op::Reduce { kind, axes, keep_dims } => reduce(b, ins[0], out, *kind, axes, *keep_dims),
        Op::ArgReduce { max, axis, keep_dims, select_last } => {
            arg_reduce(b, ins[0], out, *max, *axis, *keep_dims, *select_last)
        }
        _ => Err("not a reduction".into()),
    }
}

/// The output index of the element an input index reduces to: the kept axes' variables, with
/// a 0 for each reduced axis the result keeps as extent 1.
fn output_index(vars: &[Expr], reduced: impl Fn(usize) -> bool, keep_dims: bool) -> Vec<Expr> {
    let mut index = Vec::new();
    for (a, v) in vars.iter().enumerate() {
        if !reduced(a) {
            index.push(v.clone());
        } else if keep_dims {
            index.push(int(0));
        }
    }
    index
}

fn reduce(
    b: &mut Builder,
    xt: &TensorType,
    out: &TensorType,
    kind: ReduceKind,
    axes: &[usize],
    keep_dims: bool,
) -> Result<(), String> {
    let dtype = xt.dtype;
    // The identity of each reduction, as the interpreter starts from.
    let init = match (kind, dtype) {
        (ReduceKind::Sum | ReduceKind::Mean, DType::F32) => Expr::Float(0.0),
        (ReduceKind::Prod, DType::F32) => Expr::Float(1.0),
        (ReduceKind::Max, DType::F32) => Expr::Float(f32::NEG_INFINITY),
        (ReduceKind::Min, DType::F32) => Expr::Float(f32::INFINITY),
        (ReduceKind::Sum, DType::I64) => int(0),
        (ReduceKind::Prod, DType::I64) => int(1),
        (ReduceKind::Max, DType::I64) => int(i64::MIN),
        (ReduceKind::Min, DType::I64) => int(i64::MAX),
        _ => return Err(format!("this reduction is not defined on {dtype}")),
    };
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    let reduced = |a: usize| axes.contains(&a);
    let (mut outer, mut inner) = (Vec::new(), Vec::new());
    let mut xi = Vec::new();
    for (a, &d) in xt.shape.iter().enumerate() {
        let v = if reduced(a) { b.var(&format!("r{a}"), d) } else { b.var(&axis_name(a), d) };
        if reduced(a) {
            inner.push(v)
        } else {
            outer.push(v)
        }
        xi.push(Expr::Var(v));
    }
    let yi = output_index(&xi, reduced, keep_dims);
    let (yv, xv) = (Expr::load(y, yi.clone()), Expr::load(x, xi));
    let acc = match kind {
        ReduceKind::Sum | ReduceKind::Mean => Expr::bin(BinOp::Add, yv.clone(), xv),
        ReduceKind::Prod => Expr::bin(BinOp::Mul, yv.clone(), xv),
        ReduceKind::Max => Expr::bin(BinOp::Max, yv.clone(), xv),
        ReduceKind::Min => Expr::bin(BinOp::Min, yv.clone(), xv),
    };
    let mut body = vec![store(y, yi.clone(), init)];
    body.extend(b.nest(&inner, vec![store(y, yi.clone(), acc)]));
    if kind == ReduceKind::Mean {
        // An empty reduction divides 0 by 0, giving NaN as the interpreter does.
        let count: usize = axes.iter().map(|&a| xt.shape[a]).product();
        body.push(store(y, yi, Expr::bin(BinOp::Div, yv, Expr::Float(count as f32))));
    }
    let nest = b.nest(&outer, body);
    b.push(nest);
    Ok(())
}

/// The first (or, with `select_last`, the last) index of the extreme along `axis`: a temp
/// `%v` holds the best value so far and `%y` its index; a strictly better element (or, for
/// select_last, an equal one) replaces both. NaN never compares better, as in the interpreter.
fn arg_reduce(
    b: &mut Builder,
    xt: &TensorType,
    out: &TensorType,
    max: bool,
    axis: usize,
    keep_dims: bool,
    select_last: bool,
) -> Result<(), String> {
    let x = b.param("x", xt);
    let y = b.param("y", out);
    if out.numel() == 0 {
        return Ok(());
    }
    if xt.shape[axis] == 0 {
        return Err(format!("the axis {axis} of {xt} is empty, so there is no element to pick"));
    }
    let best = b.temp("v", xt.dtype, out.shape.clone());
    let mut outer = Vec::new();
    let mut xi = Vec::new();
    let mut j = None;
    for (a, &d) in xt.shape.iter().enumerate() {
        if a == axis {
            let v = b.var(&format!("r{a}"), d);
            j = Some(v);
            xi.push(Expr::Var(v));
        } else {
            let v = b.var(&axis_name(a), d);
            outer.push(v);
            xi.push(Expr::Var(v));
        }
    }
    let j = j.ok_or("the axis is out of range")?;
    let yi = output_index(&xi, |a| a == axis, keep_dims);
    let mut first = xi.clone();
    first[axis] = int(0);
    let xv = Expr::load(x, xi);
    let bv = Expr::load(best, yi.clone());
    let op = match (max, select_last) {
        (true, false) => BinOp::Gt,
        (true, true) => BinOp::Ge,
        (false, false) => BinOp::Lt,
        (false, true) => BinOp::Le,
    };
    let better = Expr::bin(op, xv.clone(), bv.clone());
    // The index is updated first, while %v still holds the best value before this element.
    let step = vec![
        store(y, yi.clone(), Expr::select(better.clone(), Expr::Var(j), Expr::load(y, yi.clone()))),
        store(best, yi.clone(), Expr::select(better, xv, bv)),
    ];
    let mut body = vec![store(best, yi.clone(), Expr::load(x, first)), store(y, yi, int(0))];
    body.extend(b.nest(&[j], step));
    let nest = b.nest(&outer, body);
    b.push(nest);
    Ok(())
}

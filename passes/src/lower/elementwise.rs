//! Lowering of elementwise ops (unary, binary with numpy broadcasting, clip, where, cast, and
//! expand, a broadcast copy): one loop per output axis around one store.

use ir::graph::{BinaryOp, UnaryOp};
use ir::loops::{BinOp, Expr, Intrinsic};
use ir::{DType, Op, TensorType};

use super::{axis_name, broadcast_index, int, store, vars_expr, Builder};

pub(super) fn lower(b: &mut Builder, op: &Op, ins: &[&TensorType], out: &TensorType) -> Result<(), String> {
    // Every operand gets its buffer before the result, in operand order.
    let names: &[&str] = match op {
        Op::Binary(_) => &["a", "b"],
        Op::Where => &["cond", "a", "b"],
        _ => &["x"],
    };
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    lower_with(b, &names, ins, out, |loads| apply(op, ins, loads.to_vec()))
}

/// Lowers an elementwise computation to one loop nest over the result's collapsed axes:
/// `value` gets one load per parameter (broadcast onto the result) and gives the result.
pub(super) fn lower_with(
    b: &mut Builder,
    names: &[String],
    ins: &[&TensorType],
    out: &TensorType,
    value: impl FnOnce(&[Expr]) -> Result<Expr, String>,
) -> Result<(), String> {
    // The buffers view the tensors with collapsed axes (the same dense memory).
    let in_shapes: Vec<Vec<usize>> = ins.iter().map(|t| t.shape.clone()).collect();
    let (out_shape, shapes) = collapse(&out.shape, &in_shapes);
    let bufs: Vec<_> = ins
        .iter()
        .zip(names)
        .zip(&shapes)
        .map(|((t, name), s)| b.param(name, &TensorType::new(t.dtype, s.clone())))
        .collect();
    let y = b.param("y", &TensorType::new(out.dtype, out_shape.clone()));
    if out.numel() == 0 {
        return Ok(());
    }
    let vars = b.vars(&out_shape, axis_name);
    let loads: Vec<Expr> = bufs.iter().zip(&shapes).map(|(&buf, s)| Expr::load(buf, broadcast_index(&vars, s))).collect();
    let body = vec![store(y, vars_expr(&vars), value(&loads)?)];
    let nest = b.nest(&vars, body);
    b.push(nest);
    Ok(())
}

/// The value of an elementwise op applied to operand expressions of types `ins`.
pub(super) fn apply(op: &Op, ins: &[&TensorType], operands: Vec<Expr>) -> Result<Expr, String> {
    let x = operands.first().cloned().ok_or("no operands")?;
    Ok(match op {
        Op::Unary(u) => unary(*u, ins[0].dtype, x)?,
        Op::Binary(bin) => binary(*bin, ins[0].dtype, x, operands[1].clone())?,
        Op::Clip { min, max } => clip(ins[0].dtype, x, *min, *max)?,
        Op::Where => Expr::select(x, operands[1].clone(), operands[2].clone()),
        Op::Expand { .. } => x,
        Op::Cast { to } if *to == ins[0].dtype => x,
        Op::Cast { to } => Expr::cast(*to, x),
        _ => return Err("not an elementwise op".into()),
    })
}

/// Collapses the output's axes for an elementwise op: axes of extent 1 are dropped, and
/// neighbouring axes are merged when every operand either has both or broadcasts both, so
/// that same-shape operands take one flat loop and a per-channel operand two. Returns the
/// output's and each operand's shape over the collapsed axes (operands padded with 1s).
fn collapse(out: &[usize], ins: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let rank = out.len();
    // Whether operand k has axis a (rather than broadcasting it), axes aligned to the right.
    let has = |k: usize, a: usize| {
        let s = &ins[k];
        a + s.len() >= rank && s[a + s.len() - rank] == out[a]
    };
    let mut groups: Vec<(usize, Vec<bool>)> = Vec::new();
    for a in 0..rank {
        if out[a] == 1 {
            continue;
        }
        let pattern: Vec<bool> = (0..ins.len()).map(|k| has(k, a)).collect();
        match groups.last_mut() {
            Some((extent, p)) if *p == pattern => *extent *= out[a],
            _ => groups.push((out[a], pattern)),
        }
    }
    let out_shape = groups.iter().map(|g| g.0).collect();
    let shapes = (0..ins.len()).map(|k| groups.iter().map(|(e, p)| if p[k] { *e } else { 1 }).collect()).collect();
    (out_shape, shapes)
}

fn call(f: Intrinsic, x: Expr) -> Expr {
    Expr::call(f, vec![x])
}

fn unsupported(name: &str, dtype: DType) -> String {
    format!("{name} is not defined on {dtype}")
}

/// The graph's unary ops on f32 map to intrinsics; on i64 only the sign-related ones exist
/// (as in the interpreter), and on bool only `not`.
fn unary(u: UnaryOp, dtype: DType, x: Expr) -> Result<Expr, String> {
    let f = match (u, dtype) {
        (UnaryOp::Not, DType::Bool) => Intrinsic::Not,
        (UnaryOp::Neg, DType::F32 | DType::I64) => Intrinsic::Neg,
        (UnaryOp::Abs, DType::F32 | DType::I64) => Intrinsic::Abs,
        (UnaryOp::Sign, DType::F32 | DType::I64) => Intrinsic::Sign,
        (UnaryOp::Relu, DType::F32) => return Ok(Expr::bin(BinOp::Max, x, Expr::Float(0.0))),
        (UnaryOp::Reciprocal, DType::F32) => return Ok(Expr::bin(BinOp::Div, Expr::Float(1.0), x)),
        (UnaryOp::Sigmoid, DType::F32) => Intrinsic::Sigmoid,
        (UnaryOp::Tanh, DType::F32) => Intrinsic::Tanh,
        (UnaryOp::Exp, DType::F32) => Intrinsic::Exp,
        (UnaryOp::Log, DType::F32) => Intrinsic::Log,
        (UnaryOp::Sqrt, DType::F32) => Intrinsic::Sqrt,
        (UnaryOp::Floor, DType::F32) => Intrinsic::Floor,
        (UnaryOp::Ceil, DType::F32) => Intrinsic::Ceil,
        (UnaryOp::Round, DType::F32) => Intrinsic::Round,
        (UnaryOp::Sin, DType::F32) => Intrinsic::Sin,
        (UnaryOp::Cos, DType::F32) => Intrinsic::Cos,
        (UnaryOp::Erf, DType::F32) => Intrinsic::Erf,
        _ => return Err(unsupported(u.name(), dtype)),
    };
    Ok(call(f, x))
}

fn binary(op: BinaryOp, dtype: DType, a: Expr, b: Expr) -> Result<Expr, String> {
    let bin = |o: BinOp| Ok(Expr::bin(o, a.clone(), b.clone()));
    match (op, dtype) {
        (BinaryOp::Equal, _) => bin(BinOp::Eq),
        (BinaryOp::Less, DType::F32 | DType::I64) => bin(BinOp::Lt),
        (BinaryOp::Greater, DType::F32 | DType::I64) => bin(BinOp::Gt),
        (BinaryOp::LessEqual, DType::F32 | DType::I64) => bin(BinOp::Le),
        (BinaryOp::GreaterEqual, DType::F32 | DType::I64) => bin(BinOp::Ge),
        (BinaryOp::And, DType::Bool) => bin(BinOp::And),
        (BinaryOp::Or, DType::Bool) => bin(BinOp::Or),
        (BinaryOp::Xor, DType::Bool) => bin(BinOp::Xor),
        (BinaryOp::Add, DType::F32 | DType::I64) => bin(BinOp::Add),
        (BinaryOp::Sub, DType::F32 | DType::I64) => bin(BinOp::Sub),
        (BinaryOp::Mul, DType::F32 | DType::I64) => bin(BinOp::Mul),
        (BinaryOp::Max, DType::F32 | DType::I64) => bin(BinOp::Max),
        (BinaryOp::Min, DType::F32 | DType::I64) => bin(BinOp::Min),
        (BinaryOp::Div, DType::F32) => bin(BinOp::Div),
        (BinaryOp::Pow, DType::F32) => bin(BinOp::Pow),
        (BinaryOp::Div, DType::I64) => Ok(truncating_div(a, b)),
        // Loop IR's pow is f32 only: an integer power goes through f32 and truncates back,
        // which is exact while the result stays within f32's 24-bit mantissa.
        (BinaryOp::Pow, DType::I64) => {
            let p = Expr::bin(BinOp::Pow, Expr::cast(DType::F32, a), Expr::cast(DType::F32, b));
            Ok(Expr::cast(DType::I64, p))
        }
        _ => Err(unsupported(op.name(), dtype)),
    }
}

/// The graph's integer division truncates toward zero, loop IR's `/` floors: the floor is
/// one below the truncation exactly when the division is inexact and the signs differ.
fn truncating_div(a: Expr, b: Expr) -> Expr {
    let floor = Expr::bin(BinOp::Div, a.clone(), b.clone());
    let inexact = Expr::bin(BinOp::Ne, Expr::bin(BinOp::Rem, a.clone(), b.clone()), int(0));
    let signs_differ = Expr::bin(BinOp::Xor, Expr::bin(BinOp::Lt, a, int(0)), Expr::bin(BinOp::Lt, b, int(0)));
    let adjust = Expr::bin(BinOp::And, inexact, signs_differ);
    Expr::select(adjust, Expr::bin(BinOp::Add, floor.clone(), int(1)), floor)
}

/// min(max(x, lo), hi); an infinite bound (saturated to the i64 range for integers) clips
/// nothing and is left out.
fn clip(dtype: DType, x: Expr, lo: f32, hi: f32) -> Result<Expr, String> {
    let (lo_c, hi_c) = match dtype {
        DType::F32 => {
            ((lo != f32::NEG_INFINITY).then_some(Expr::Float(lo)), (hi != f32::INFINITY).then_some(Expr::Float(hi)))
        }
        DType::I64 => {
            let (l, h) = (lo as i64, hi as i64);
            ((l != i64::MIN).then_some(int(l)), (h != i64::MAX).then_some(int(h)))
        }
        _ => return Err(unsupported("clip", dtype)),
    };
    let x = match lo_c {
        Some(l) => Expr::bin(BinOp::Max, x, l),
        None => x,
    };
    Ok(match hi_c {
        Some(h) => Expr::bin(BinOp::Min, x, h),
        None => x,
    })
}

//! f16 storage of a scheduled tensor program. Lowering and scheduling see a program of f32
//! buffers (the graph's compute view, `graph::half::compute_view`); this pass then makes the
//! parameters bound to f16 tensors f16 buffers: every load of one is widened to f32 and
//! every store into one narrowed to f16, so arithmetic, and the accumulators a schedule
//! keeps in temporaries, stay f32 (what x86-64 does with F16C: f16 in memory, f32 in
//! registers). [`narrow_arithmetic`] then moves the elementwise arithmetic of values stored
//! as f16 into f16, for targets that compute in half (aarch64 `+fullfp16`).

use ir::loops::{BinOp, BufId, Expr, Func, Intrinsic, Stmt};
use ir::DType;

/// `f` with parameter `i` (in calling order) stored as f16 where `half[i]` (an f32 program
/// comes back as it is).
pub fn store_params_in_f16(mut f: Func, half: &[bool]) -> Func {
    let halves: Vec<BufId> = f.params().iter().zip(half).filter(|(_, &h)| h).map(|(&b, _)| b).collect();
    for &b in &halves {
        f.buffers[b.index()].dtype = DType::F16;
    }
    if !halves.is_empty() {
        f.body = std::mem::take(&mut f.body).into_iter().map(|s| through_casts(s, &halves)).collect();
    }
    f
}

fn through_casts(s: Stmt, halves: &[BufId]) -> Stmt {
    let widen = &mut |e: Expr| match e {
        Expr::Load { buf, .. } if halves.contains(&buf) => Expr::cast(DType::F32, e),
        other => other,
    };
    match s {
        Stmt::Store { buf, index, value } => {
            let index = index.into_iter().map(|e| e.map(widen)).collect();
            let value = value.map(widen);
            let value = if halves.contains(&buf) { narrowed(value, halves) } else { value };
            Stmt::Store { buf, index, value }
        }
        Stmt::For(mut l) => {
            l.body = l.body.into_iter().map(|s| through_casts(s, halves)).collect();
            Stmt::For(l)
        }
        Stmt::If { cond, then } => Stmt::If { cond: cond.map(widen), then: then.into_iter().map(|s| through_casts(s, halves)).collect() },
        Stmt::Prefetch { buf, index } => Stmt::Prefetch { buf, index: index.into_iter().map(|e| e.map(widen)).collect() },
    }
}

/// `f16(value)`, without the round trip when the value is an f16 widened (a copy).
fn narrowed(value: Expr, halves: &[BufId]) -> Expr {
    match value {
        Expr::Cast { to: DType::F32, x } if matches!(&*x, Expr::Load { buf, .. } if halves.contains(buf)) => *x,
        other => Expr::cast(DType::F16, other),
    }
}

/// Computes in f16 the elementwise arithmetic (+ - * / min max, neg, abs, select) of the
/// values `f` stores into f16 buffers, instead of in f32: the f16 loads it reads stay f16,
/// constants and other f32 operands (an accumulator, a transcendental) are narrowed where
/// they enter. Accumulations into f32 temporaries are left in f32. A program without f16
/// buffers comes back as it is.
pub fn narrow_arithmetic(mut f: Func) -> Func {
    if f.buffers.iter().any(|b| b.dtype == DType::F16) {
        let body: Vec<Stmt> = std::mem::take(&mut f.body);
        let narrowed = body.into_iter().map(|s| narrow_stmt(&f, s)).collect();
        f.body = narrowed;
    }
    f
}

fn narrow_stmt(f: &Func, s: Stmt) -> Stmt {
    match s {
        Stmt::Store { buf, index, value: Expr::Cast { to: DType::F16, x } } if f.buffer(buf).dtype == DType::F16 && arithmetic(&x) => {
            Stmt::Store { buf, index, value: in_half(f, *x) }
        }
        Stmt::For(mut l) => {
            l.body = l.body.into_iter().map(|s| narrow_stmt(f, s)).collect();
            Stmt::For(l)
        }
        Stmt::If { cond, then } => Stmt::If { cond, then: then.into_iter().map(|s| narrow_stmt(f, s)).collect() },
        other => other,
    }
}

fn half_arithmetic(op: BinOp) -> bool {
    matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max)
}

/// Whether the top of an f32 expression is arithmetic that can run in f16.
fn arithmetic(e: &Expr) -> bool {
    match e {
        Expr::Binary { op, .. } => half_arithmetic(*op),
        Expr::Call { f, .. } => matches!(f, Intrinsic::Neg | Intrinsic::Abs),
        Expr::Select { .. } => true,
        _ => false,
    }
}

/// An f32 expression rewritten to give its value in f16.
fn in_half(f: &Func, e: Expr) -> Expr {
    match e {
        Expr::Cast { to: DType::F32, x } if is_half(f, &x) => *x,
        Expr::Binary { op, a, b } if half_arithmetic(op) => Expr::bin(op, in_half(f, *a), in_half(f, *b)),
        Expr::Call { f: func @ (Intrinsic::Neg | Intrinsic::Abs), args } => {
            Expr::call(func, args.into_iter().map(|a| in_half(f, a)).collect())
        }
        Expr::Select { cond, a, b } => Expr::select(*cond, in_half(f, *a), in_half(f, *b)),
        other => Expr::cast(DType::F16, other),
    }
}

fn is_half(f: &Func, e: &Expr) -> bool {
    match e {
        Expr::Load { buf, .. } => f.buffer(*buf).dtype == DType::F16,
        Expr::Cast { to, .. } => *to == DType::F16,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::loops::{parse_func, print_func, verify::verify};

    const ADD_RELU: &str = "func \"f\" {\n  param %x: f32[8]\n  param %b: f32[8]\n  param %y: f32[8]\n  for i in 0..8 vectorized {\n    %y[i] = max(%x[i] + %b[i], 0.0)\n  }\n}";

    #[test]
    fn half_params_are_read_widened_and_written_narrowed() {
        let f = store_params_in_f16(parse_func(ADD_RELU).unwrap(), &[true, false, true]);
        verify(&f).unwrap();
        let text = print_func(&f);
        assert!(text.contains("param %x: f16[8]") && text.contains("param %b: f32[8]") && text.contains("param %y: f16[8]"), "{text}");
        assert!(text.contains("%y[i] = f16(max(f32(%x[i]) + %b[i], 0.0))"), "{text}");
        // Round trip through text.
        assert_eq!(print_func(&parse_func(&text).unwrap()), text);
    }

    #[test]
    fn copies_move_halves_without_converting() {
        let f = parse_func("func \"c\" {\n  param %x: f32[4]\n  param %y: f32[4]\n  for i in 0..4 {\n    %y[i] = %x[i]\n  }\n}").unwrap();
        let text = print_func(&store_params_in_f16(f, &[true, true]));
        assert!(text.contains("%y[i] = %x[i]"), "{text}");
    }

    #[test]
    fn narrowing_computes_elementwise_arithmetic_in_half() {
        let f = store_params_in_f16(parse_func(ADD_RELU).unwrap(), &[true, true, true]);
        let g = narrow_arithmetic(f);
        verify(&g).unwrap();
        let text = print_func(&g);
        assert!(text.contains("%y[i] = max(%x[i] + %b[i], f16(0.0))"), "{text}");
    }
}

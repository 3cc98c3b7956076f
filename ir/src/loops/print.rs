//! Prints loop IR as text.

use std::fmt::Write;

use super::{BinOp, BufKind, Expr, Func, LoopKind, Stmt};
use crate::text::lexer::escape;

pub fn print_func(f: &Func) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "func {} {{", escape(&f.name));
    for b in &f.buffers {
        let kind = match b.kind {
            BufKind::Param => "param",
            BufKind::Temp => "temp",
        };
        let ty = crate::TensorType::new(b.dtype, b.shape.clone());
        let list = |v: &[usize]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",");
        let layout = match &b.layout {
            Some(l) => format!(" view=[{}] perm=[{}]", list(&l.view), list(&l.perm)),
            None => String::new(),
        };
        let _ = writeln!(out, "  {kind} %{}: {ty}{layout}", b.name);
    }
    for s in &f.body {
        print_stmt(f, s, 1, &mut out);
    }
    out.push_str("}\n");
    out
}

fn print_stmt(f: &Func, s: &Stmt, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match s {
        Stmt::For(l) => {
            let kind = if l.kind == LoopKind::Serial { String::new() } else { format!(" {}", l.kind.name()) };
            let _ = writeln!(out, "{pad}for {} in 0..{}{kind} {{", f.vars[l.var.index()], l.extent);
            for s in &l.body {
                print_stmt(f, s, depth + 1, out);
            }
            let _ = writeln!(out, "{pad}}}");
        }
        Stmt::Store { buf, index, value } => {
            let _ = writeln!(out, "{pad}%{}[{}] = {}", f.buffer(*buf).name, list(f, index), expr(f, value));
        }
        Stmt::Prefetch { buf, index } => {
            let _ = writeln!(out, "{pad}prefetch %{}[{}]", f.buffer(*buf).name, list(f, index));
        }
        Stmt::If { cond, then } => {
            let _ = writeln!(out, "{pad}if {} {{", expr(f, cond));
            for s in then {
                print_stmt(f, s, depth + 1, out);
            }
            let _ = writeln!(out, "{pad}}}");
        }
    }
}

fn list(f: &Func, es: &[Expr]) -> String {
    es.iter().map(|e| expr(f, e)).collect::<Vec<_>>().join(", ")
}

/// Binding strength of the infix operators; everything else prints as a call.
pub(super) fn precedence(op: BinOp) -> Option<u8> {
    match op {
        BinOp::Add | BinOp::Sub => Some(1),
        BinOp::Mul | BinOp::Div | BinOp::Rem => Some(2),
        _ => None,
    }
}

pub fn expr(f: &Func, e: &Expr) -> String {
    match e {
        Expr::Int(v) => v.to_string(),
        Expr::Float(v) => crate::text::printer_f32(*v),
        Expr::Bool(v) => v.to_string(),
        Expr::Var(v) => f.vars[v.index()].clone(),
        Expr::Load { buf, index } => format!("%{}[{}]", f.buffer(*buf).name, list(f, index)),
        Expr::Binary { op, a, b } => match (op.symbol(), precedence(*op)) {
            (Some(sym), Some(p)) => {
                // Left-associative: the left operand needs parentheses only when it binds
                // looser, the right one also when it binds equally, so the tree comes back.
                let side = |x: &Expr, strict: bool| {
                    let inner = match x {
                        Expr::Binary { op, .. } => precedence(*op),
                        _ => None,
                    };
                    let s = expr(f, x);
                    match inner {
                        Some(q) if q < p || (strict && q == p) => format!("({s})"),
                        _ => s,
                    }
                };
                format!("{} {sym} {}", side(a, false), side(b, true))
            }
            _ => format!("{}({}, {})", op.name(), expr(f, a), expr(f, b)),
        },
        Expr::Call { f: func, args } => format!("{}({})", func.name(), list(f, args)),
        Expr::Select { cond, a, b } => format!("select({}, {}, {})", expr(f, cond), expr(f, a), expr(f, b)),
        Expr::Cast { to, x } => format!("{}({})", to.name(), expr(f, x)),
    }
}

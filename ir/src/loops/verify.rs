//! The loop IR verifier: well-formed references, types, loop kinds, and index bounds.

use super::{BinOp, Expr, Func, Intrinsic, LoopKind, Stmt, VarId};
use crate::error::{IrError, Result};
use crate::types::DType;

/// Checks that buffers and variables are in range and in scope, expressions are well typed,
/// parallel loops are outermost, vectorized loops are not nested, and every index whose
/// range can be bounded statically stays inside its buffer (a guard `if e < n` bounds `e`).
pub fn verify(f: &Func) -> Result<()> {
    for b in &f.buffers {
        if let Some(layout) = &b.layout {
            let mut seen = vec![false; layout.view.len()];
            let permutation = layout.perm.len() == layout.view.len()
                && layout.perm.iter().all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
            if !permutation || b.kind != super::BufKind::Param || layout.shape() != b.shape {
                return bad(f, format!("layout {layout:?} of %{} does not rearrange a parameter into its shape", b.name));
            }
        }
    }
    checked(f).map(|_| ())
}

/// Whether `f` verifies and every index of it was bounded statically (and so is proven
/// inside its buffer): a backend may then drop run-time bounds checks.
pub fn indices_bounded(f: &Func) -> bool {
    checked(f).is_ok_and(|v| !v.unbounded)
}

fn checked(f: &Func) -> Result<Verifier<'_>> {
    let mut v = Verifier { f, scope: Vec::new(), bound: vec![false; f.vars.len()], guards: Vec::new(), in_vector: false, thread_ok: false, cooperative_ok: false, unbounded: false };
    for s in &f.body {
        v.stmt(s, true)?;
    }
    Ok(v)
}

fn bad<T>(f: &Func, msg: String) -> Result<T> {
    Err(IrError::Invalid(format!("func \"{}\": {msg}", f.name)))
}

struct Verifier<'a> {
    f: &'a Func,
    /// Loop variables in scope with their extents.
    scope: Vec<(VarId, i64)>,
    bound: Vec<bool>,
    /// Upper bounds (exclusive) that enclosing `if e < n` guards put on expressions.
    guards: Vec<(Expr, i64)>,
    in_vector: bool,
    /// Directly inside a workgroup loop, where an invocation loop may be.
    thread_ok: bool,
    /// Inside an invocation loop, in control flow every invocation of the workgroup takes
    /// alike (no guard, no cooperative or vectorized loop in between), where the barriers
    /// around a cooperative loop may be.
    cooperative_ok: bool,
    /// Some index could not be bounded statically.
    unbounded: bool,
}

impl Verifier<'_> {
    fn stmt(&mut self, s: &Stmt, top_level: bool) -> Result<()> {
        let f = self.f;
        match s {
            Stmt::For(l) => {
                let name = f.vars.get(l.var.index()).cloned().unwrap_or_else(|| format!("var{}", l.var.0));
                if l.var.index() >= f.vars.len() || std::mem::replace(&mut self.bound[l.var.index()], true) {
                    return bad(f, format!("loop variable {name} is undefined or bound twice"));
                }
                if l.extent < 1 {
                    return bad(f, format!("loop {name} has extent {}", l.extent));
                }
                if l.kind == LoopKind::Parallel && !top_level {
                    return bad(f, format!("parallel loop {name} is not outermost"));
                }
                // A GPU nest is a dispatch: a workgroup loop, a statement of the program's body,
                // whose only statement is the invocation loop (the workgroup size).
                if l.kind == LoopKind::GpuBlock && !(top_level && matches!(l.body.as_slice(), [Stmt::For(t)] if t.kind == LoopKind::GpuThread)) {
                    return bad(f, format!("workgroup loop {name} is not outermost or does not hold exactly one invocation loop"));
                }
                if l.kind == LoopKind::GpuThread && !self.thread_ok {
                    return bad(f, format!("invocation loop {name} is not the only statement of a workgroup loop"));
                }
                if l.kind == LoopKind::GpuCooperative && !self.cooperative_ok {
                    return bad(f, format!("cooperative loop {name} is not inside an invocation loop, outside guards and other cooperative or vectorized loops"));
                }
                if l.kind == LoopKind::Vectorized && self.in_vector {
                    return bad(f, format!("vectorized loop {name} is nested in another vectorized loop"));
                }
                let was_vector = self.in_vector;
                self.in_vector |= l.kind == LoopKind::Vectorized;
                self.scope.push((l.var, l.extent));
                let thread_ok = std::mem::replace(&mut self.thread_ok, l.kind == LoopKind::GpuBlock);
                let uniform = match l.kind {
                    LoopKind::GpuThread => true,
                    LoopKind::GpuCooperative | LoopKind::Vectorized => false,
                    _ => self.cooperative_ok,
                };
                let cooperative_ok = std::mem::replace(&mut self.cooperative_ok, uniform);
                for s in &l.body {
                    self.stmt(s, false)?;
                }
                self.cooperative_ok = cooperative_ok;
                self.thread_ok = thread_ok;
                self.scope.pop();
                self.in_vector = was_vector;
            }
            Stmt::Store { buf, index, value } => {
                let Some(b) = f.buffers.get(buf.index()) else { return bad(f, format!("store to missing buffer {}", buf.0)) };
                self.index(&b.name, &b.shape, index)?;
                let t = self.ty(value)?;
                if t != b.dtype {
                    return bad(f, format!("store of {t} into %{} of {}", b.name, b.dtype));
                }
            }
            Stmt::Prefetch { buf, index } => {
                // A hint: typed like a load, but not bounded (it may look past the end).
                let Some(b) = f.buffers.get(buf.index()) else { return bad(f, format!("prefetch of missing buffer {}", buf.0)) };
                if index.len() != b.shape.len() {
                    return bad(f, format!("%{} has rank {} but is prefetched with {} indices", b.name, b.shape.len(), index.len()));
                }
                for (axis, e) in index.iter().enumerate() {
                    if self.ty(e)? != DType::I64 {
                        return bad(f, format!("index {axis} of the prefetch of %{} is not an integer", b.name));
                    }
                }
            }
            Stmt::If { cond, then } => {
                if self.ty(cond)? != DType::Bool {
                    return bad(f, "if condition is not bool".into());
                }
                let n = self.guards.len();
                collect_guards(cond, &mut self.guards);
                let cooperative_ok = std::mem::replace(&mut self.cooperative_ok, false);
                for s in then {
                    self.stmt(s, false)?;
                }
                self.cooperative_ok = cooperative_ok;
                self.guards.truncate(n);
            }
        }
        Ok(())
    }

    fn index(&mut self, name: &str, shape: &[usize], index: &[Expr]) -> Result<()> {
        let f = self.f;
        if index.len() != shape.len() {
            return bad(f, format!("%{name} has rank {} but is indexed with {} indices", shape.len(), index.len()));
        }
        for (axis, (e, &dim)) in index.iter().zip(shape).enumerate() {
            if self.ty(e)? != DType::I64 {
                return bad(f, format!("index {axis} of %{name} is not an integer"));
            }
            match self.range(e) {
                Some((lo, hi)) if lo < 0 || hi >= dim as i64 => {
                    let text = super::print::expr(f, e);
                    return bad(f, format!("index {axis} of %{name} ({text}) ranges over [{lo}, {hi}], outside [0, {dim})"));
                }
                Some(_) => {}
                None => self.unbounded = true,
            }
        }
        Ok(())
    }

    /// The static type of an expression.
    fn ty(&mut self, e: &Expr) -> Result<DType> {
        let f = self.f;
        Ok(match e {
            Expr::Int(_) => DType::I64,
            Expr::Float(_) => DType::F32,
            Expr::Bool(_) => DType::Bool,
            Expr::Var(v) => {
                if !self.scope.iter().any(|(s, _)| s == v) {
                    let name = f.vars.get(v.index()).cloned().unwrap_or_default();
                    return bad(f, format!("variable {name} is used outside its loop"));
                }
                DType::I64
            }
            Expr::Load { buf, index } => {
                let Some(b) = f.buffers.get(buf.index()) else { return bad(f, format!("load from missing buffer {}", buf.0)) };
                self.index(&b.name, &b.shape, index)?;
                b.dtype
            }
            Expr::Binary { op, a, b } => {
                let (ta, tb) = (self.ty(a)?, self.ty(b)?);
                if ta != tb {
                    return bad(f, format!("{} of {ta} and {tb}", op.name()));
                }
                if op.is_logical() {
                    if ta != DType::Bool {
                        return bad(f, format!("{} of {ta}", op.name()));
                    }
                    DType::Bool
                } else if op.is_comparison() {
                    DType::Bool
                } else {
                    if ta == DType::Bool {
                        return bad(f, format!("{} of bool", op.name()));
                    }
                    ta
                }
            }
            Expr::Call { f: func, args } => {
                if args.len() != func.arity() {
                    return bad(f, format!("{} takes {} operands", func.name(), func.arity()));
                }
                let types: Vec<DType> = args.iter().map(|a| self.ty(a)).collect::<Result<_>>()?;
                let ok = match func {
                    Intrinsic::Not => types[0] == DType::Bool,
                    Intrinsic::Neg | Intrinsic::Abs | Intrinsic::Sign => types[0] != DType::Bool,
                    _ => types.iter().all(|&t| t == DType::F32),
                };
                if !ok {
                    return bad(f, format!("{} does not apply to {:?}", func.name(), types));
                }
                types[0]
            }
            Expr::Select { cond, a, b } => {
                let (tc, ta, tb) = (self.ty(cond)?, self.ty(a)?, self.ty(b)?);
                if tc != DType::Bool || ta != tb {
                    return bad(f, format!("select of ({tc}, {ta}, {tb})"));
                }
                ta
            }
            Expr::Cast { to, x } => {
                self.ty(x)?;
                *to
            }
        })
    }

    /// The inclusive range of an integer expression, when loop extents bound it.
    fn range(&self, e: &Expr) -> Option<(i64, i64)> {
        let r = match e {
            Expr::Int(v) => (*v, *v),
            Expr::Var(v) => (0, self.scope.iter().find(|(s, _)| s == v)?.1 - 1),
            Expr::Binary { op, a, b } => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                match op {
                    BinOp::Add => (a.0 + b.0, a.1 + b.1),
                    BinOp::Sub => (a.0 - b.1, a.1 - b.0),
                    BinOp::Mul => {
                        let p = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
                        (*p.iter().min()?, *p.iter().max()?)
                    }
                    BinOp::Div if b.0 > 0 => (a.0.div_euclid(b.1).min(a.0.div_euclid(b.0)), a.1.div_euclid(b.0).max(a.1.div_euclid(b.1))),
                    BinOp::Rem if b.0 > 0 && a.0 >= 0 => (0, (b.1 - 1).min(a.1)),
                    BinOp::Min => (a.0.min(b.0), a.1.min(b.1)),
                    BinOp::Max => (a.0.max(b.0), a.1.max(b.1)),
                    _ => return None,
                }
            }
            Expr::Select { a, b, .. } => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                (a.0.min(b.0), a.1.max(b.1))
            }
            _ => return None,
        };
        // A guard may cap the top of exactly this expression.
        let cap = self.guards.iter().filter(|(g, _)| g == e).map(|(_, n)| n - 1).min();
        Some(match cap {
            Some(c) => (r.0, r.1.min(c)),
            None => r,
        })
    }
}

/// Records the `e < n` conjuncts of a guard condition.
fn collect_guards(cond: &Expr, out: &mut Vec<(Expr, i64)>) {
    if let Expr::Binary { op, a, b } = cond {
        match (op, b.as_ref()) {
            (BinOp::Lt, Expr::Int(n)) => out.push(((**a).clone(), *n)),
            (BinOp::Le, Expr::Int(n)) => out.push(((**a).clone(), n + 1)),
            (BinOp::And, _) => {
                collect_guards(a, out);
                collect_guards(b, out);
            }
            _ => {}
        }
    }
}


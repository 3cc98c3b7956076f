//! Traversals and rewrites of loop IR shared by the verifier, the schedule primitives and
//! the backends.

use super::{BufId, Expr, Loop, Stmt, VarId};

impl Expr {
    /// Calls `f` on this expression and every sub-expression, parents first.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) | Expr::Var(_) => {}
            Expr::Load { index, .. } => index.iter().for_each(|e| e.walk(f)),
            Expr::Binary { a, b, .. } => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Call { args, .. } => args.iter().for_each(|e| e.walk(f)),
            Expr::Select { cond, a, b } => {
                cond.walk(f);
                a.walk(f);
                b.walk(f);
            }
            Expr::Cast { x, .. } => x.walk(f),
        }
    }

    /// Rebuilds the expression bottom-up, letting `f` replace each node after its children.
    pub fn map(self, f: &mut impl FnMut(Expr) -> Expr) -> Expr {
        let e = match self {
            Expr::Load { buf, index } => Expr::Load { buf, index: index.into_iter().map(|e| e.map(f)).collect() },
            Expr::Binary { op, a, b } => Expr::Binary { op, a: Box::new(a.map(f)), b: Box::new(b.map(f)) },
            Expr::Call { f: func, args } => Expr::Call { f: func, args: args.into_iter().map(|e| e.map(f)).collect() },
            Expr::Select { cond, a, b } => {
                Expr::Select { cond: Box::new(cond.map(f)), a: Box::new(a.map(f)), b: Box::new(b.map(f)) }
            }
            Expr::Cast { to, x } => Expr::Cast { to, x: Box::new(x.map(f)) },
            leaf => leaf,
        };
        f(e)
    }

    /// Replaces every use of `var` by `with`.
    pub fn substitute(self, var: VarId, with: &Expr) -> Expr {
        self.map(&mut |e| match e {
            Expr::Var(v) if v == var => with.clone(),
            other => other,
        })
    }

    pub fn uses_var(&self, var: VarId) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= *e == Expr::Var(var));
        found
    }

    pub fn reads(&self, buf: BufId) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e, Expr::Load { buf: b, .. } if *b == buf));
        found
    }
}

impl Stmt {
    /// Calls `f` on this statement and every nested one, parents first.
    pub fn walk(&self, f: &mut impl FnMut(&Stmt)) {
        f(self);
        match self {
            Stmt::For(l) => l.body.iter().for_each(|s| s.walk(f)),
            Stmt::If { then, .. } => then.iter().for_each(|s| s.walk(f)),
            Stmt::Store { .. } | Stmt::Prefetch { .. } => {}
        }
    }

    /// Calls `f` on every expression of this statement and the nested ones.
    pub fn walk_exprs(&self, f: &mut impl FnMut(&Expr)) {
        self.walk(&mut |s| match s {
            Stmt::Store { index, value, .. } => {
                index.iter().for_each(|e| e.walk(f));
                value.walk(f);
            }
            Stmt::If { cond, .. } => cond.walk(f),
            Stmt::Prefetch { index, .. } => index.iter().for_each(|e| e.walk(f)),
            Stmt::For(_) => {}
        });
    }

    /// Rewrites every expression of this statement and the nested ones with `f` (see
    /// [`Expr::map`]).
    pub fn map_exprs(self, f: &mut impl FnMut(Expr) -> Expr) -> Stmt {
        match self {
            Stmt::For(l) => Stmt::For(Loop { body: l.body.into_iter().map(|s| s.map_exprs(f)).collect(), ..l }),
            Stmt::Store { buf, index, value } => {
                Stmt::Store { buf, index: index.into_iter().map(|e| e.map(f)).collect(), value: value.map(f) }
            }
            Stmt::If { cond, then } => Stmt::If { cond: cond.map(f), then: then.into_iter().map(|s| s.map_exprs(f)).collect() },
            Stmt::Prefetch { buf, index } => Stmt::Prefetch { buf, index: index.into_iter().map(|e| e.map(f)).collect() },
        }
    }

    /// Rewrites the target (buffer and index) of every store in this statement and the nested
    /// ones; the stored values are left as they are.
    pub fn map_stores(self, f: &mut impl FnMut(BufId, Vec<Expr>) -> (BufId, Vec<Expr>)) -> Stmt {
        match self {
            Stmt::Store { buf, index, value } => {
                let (buf, index) = f(buf, index);
                Stmt::Store { buf, index, value }
            }
            Stmt::For(l) => Stmt::For(Loop { body: l.body.into_iter().map(|s| s.map_stores(f)).collect(), ..l }),
            Stmt::If { cond, then } => Stmt::If { cond, then: then.into_iter().map(|s| s.map_stores(f)).collect() },
            p @ Stmt::Prefetch { .. } => p,
        }
    }

    pub fn substitute(self, var: VarId, with: &Expr) -> Stmt {
        self.map_exprs(&mut |e| match e {
            Expr::Var(v) if v == var => with.clone(),
            other => other,
        })
    }
}

/// The loop of variable `var` in `body`, searched depth-first.
pub fn find_loop(body: &[Stmt], var: VarId) -> Option<&Loop> {
    for s in body {
        match s {
            Stmt::For(l) if l.var == var => return Some(l),
            Stmt::For(l) => {
                if let Some(found) = find_loop(&l.body, var) {
                    return Some(found);
                }
            }
            Stmt::If { then, .. } => {
                if let Some(found) = find_loop(then, var) {
                    return Some(found);
                }
            }
            Stmt::Store { .. } | Stmt::Prefetch { .. } => {}
        }
    }
    None
}

/// Replaces the statement `Stmt::For` of loop `var` in `body` by what `f` returns for it.
/// Returns false when no such loop exists.
pub fn replace_loop(body: &mut Vec<Stmt>, var: VarId, f: &mut dyn FnMut(Loop) -> Vec<Stmt>) -> bool {
    for i in 0..body.len() {
        let hit = matches!(&body[i], Stmt::For(l) if l.var == var);
        if hit {
            let Stmt::For(l) = body.remove(i) else { unreachable!("matched a loop above") };
            let new = f(l);
            for (k, s) in new.into_iter().enumerate() {
                body.insert(i + k, s);
            }
            return true;
        }
        let found = match &mut body[i] {
            Stmt::For(l) => replace_loop(&mut l.body, var, f),
            Stmt::If { then, .. } => replace_loop(then, var, f),
            Stmt::Store { .. } | Stmt::Prefetch { .. } => false,
        };
        if found {
            return true;
        }
    }
    false
}

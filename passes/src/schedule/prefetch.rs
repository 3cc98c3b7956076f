//! `prefetch`: while one iteration of a loop runs, fetch what the next iteration will read
//! of a buffer, so that its cache misses overlap this iteration's arithmetic.
//!
//! Why: a convolution whose weights do not fit the second-level cache (resnet18's last
//! stage: 9.4 MB per convolution) reads one block of output channels' weights in a burst
//! while it computes the first row of outputs, then reuses it from the cache for the other
//! rows. The burst waits on memory and the reuse does not: the core idles for about half the
//! program. Prefetching the next block's weights during every row spreads the transfer over
//! the whole block's compute.
//!
//! Each load of `buffer` inside loop `loop` gets a `prefetch` of the element it will read
//! when `loop`'s variable is one larger, placed at the start of the body of the innermost
//! loop whose variable that element depends on (the vector lane counted as lane 0, one cache
//! line of a 16-lane f32 vector), so that it is issued once per line and not once per use.
//!
//! When a loop between `loop` and the load re-reads the same elements (the rows of outputs
//! that reuse a block's weights), the look-ahead is spread over it: the prefetches of its
//! iteration `s` (of `S`) cover the `s`-th `S`-th of the next block, by indexing the
//! outermost loop the element depends on below it, `r` (of `R`), with `(s * R + r) / S`.
//! Without that, the first reuse iteration would request the whole next block at once, more
//! than the core has outstanding misses for, and the others none.
//!
//! The last iteration's look-ahead points past the block the loop reads, or past the buffer:
//! a hint that fetches nothing useful, never a fault. Apply it last: the prefetches make the
//! nests they enter imperfect for `reorder` and `fuse`.

use ir::loops::visit::find_loop;
use ir::loops::{BinOp, BufId, Expr, Func, LoopKind, Stmt, VarId};

type Result<T> = std::result::Result<T, String>;

pub(super) fn prefetch(f: &mut Func, buffer: &str, loop_name: &str) -> Result<()> {
    let buf = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let outer = f.var_named(loop_name).and_then(|v| find_loop(&f.body, v)).ok_or_else(|| format!("no loop named {loop_name}"))?;
    let var = outer.var;
    if !matches!(outer.kind, LoopKind::Serial | LoopKind::Parallel) {
        return Err(format!("loop {loop_name} is {}: prefetch looks ahead along a serial or parallel loop", outer.kind.name()));
    }
    let next = Expr::bin(BinOp::Add, Expr::Var(var), Expr::Int(1));
    let mut placed: Vec<(VarId, Vec<Expr>)> = Vec::new();
    let mut stack = vec![(var, outer.extent, outer.kind)];
    collect(&outer.body, buf, &next, var, &mut stack, &mut placed);
    if placed.is_empty() {
        return Err(format!("loop {loop_name} does not read %{buffer}"));
    }
    for (at, index) in placed {
        insert(&mut f.body, at, &Stmt::Prefetch { buf, index });
    }
    Ok(())
}

/// The loops from the look-ahead loop down to a statement: variable, extent, kind.
type Stack = Vec<(VarId, i64, LoopKind)>;

/// Finds every load of `buf` in `body` and where its look-ahead goes: (loop, index).
fn collect(body: &[Stmt], buf: BufId, next: &Expr, var: VarId, stack: &mut Stack, out: &mut Vec<(VarId, Vec<Expr>)>) {
    for s in body {
        match s {
            Stmt::For(l) => {
                stack.push((l.var, l.extent, l.kind));
                collect(&l.body, buf, next, var, stack, out);
                stack.pop();
            }
            Stmt::If { cond, then } => {
                loads(cond, buf, next, var, stack, out);
                collect(then, buf, next, var, stack, out);
            }
            Stmt::Store { index, value, .. } => {
                index.iter().for_each(|e| loads(e, buf, next, var, stack, out));
                loads(value, buf, next, var, stack, out);
            }
            Stmt::Prefetch { .. } => {}
        }
    }
}

fn loads(e: &Expr, buf: BufId, next: &Expr, var: VarId, stack: &Stack, out: &mut Vec<(VarId, Vec<Expr>)>) {
    e.walk(&mut |x| {
        let Expr::Load { buf: b, index } = x else { return };
        if *b != buf {
            return;
        }
        let mut index: Vec<Expr> = index.clone();
        for &(v, _, kind) in stack {
            if kind == LoopKind::Vectorized {
                index = index.into_iter().map(|e| e.substitute(v, &Expr::Int(0))).collect();
            }
        }
        let uses = |v: VarId| index.iter().any(|e| e.uses_var(v));
        let inner = &stack[1..];
        // The reuse loop S and, below it, the outermost loop R the element depends on.
        let spread = inner.iter().position(|&(v, _, kind)| kind != LoopKind::Vectorized && !uses(v)).and_then(|s| {
            let r = inner[s + 1..].iter().find(|&&(v, _, kind)| kind != LoopKind::Vectorized && uses(v))?;
            Some((inner[s], *r))
        });
        let mut index: Vec<Expr> = index.into_iter().map(|e| e.substitute(var, next)).collect();
        if let Some(((s, s_extent, _), (r, r_extent, _))) = spread {
            let t = Expr::bin(BinOp::Add, Expr::bin(BinOp::Mul, Expr::Var(s), Expr::Int(r_extent)), Expr::Var(r));
            let spread_r = Expr::bin(BinOp::Div, t, Expr::Int(s_extent));
            index = index.into_iter().map(|e| e.substitute(r, &spread_r)).collect();
        }
        // The innermost loop the element depends on (the look-ahead loop itself at least).
        let at = stack
            .iter()
            .rev()
            .find(|(v, _, kind)| *kind != LoopKind::Vectorized && index.iter().any(|e| e.uses_var(*v)))
            .map_or(var, |&(v, _, _)| v);
        if !out.iter().any(|(a, i)| *a == at && *i == index) {
            out.push((at, index));
        }
    });
}

/// Puts `s` first in the body of loop `at`.
fn insert(body: &mut [Stmt], at: VarId, s: &Stmt) -> bool {
    for st in body.iter_mut() {
        let found = match st {
            Stmt::For(l) if l.var == at => {
                l.body.insert(0, s.clone());
                true
            }
            Stmt::For(l) => insert(&mut l.body, at, s),
            Stmt::If { then, .. } => insert(then, at, s),
            Stmt::Store { .. } | Stmt::Prefetch { .. } => false,
        };
        if found {
            return true;
        }
    }
    false
}

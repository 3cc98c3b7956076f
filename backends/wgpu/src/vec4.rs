//! vec4 accesses: a vectorized loop of 4 lanes whose accesses are 4 consecutive, aligned
//! elements (element offset `4 * q + lane`) loads and stores them as one `vec4` each, the
//! buffer being declared as an array of vec4 (its other accesses pick a component). The
//! lanes' arithmetic stays scalar: what the wide access saves is memory transactions.

use std::collections::HashSet;

use ir::loops::index::{flatten, lane_form, Lane};
use ir::loops::{BinOp, BufId, Expr, Func, Loop, LoopKind, Stmt};
use ir::DType;

/// The accesses of one vectorized loop that go through vec4: (buffer, index) pairs.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub loads: Vec<(BufId, Vec<Expr>)>,
    pub stores: Vec<(BufId, Vec<Expr>)>,
}

/// Whether `e` is a multiple of `m` by its form (constants, sums of multiples, products
/// with a multiple).
fn multiple_of(e: &Expr, m: i64) -> bool {
    match e {
        Expr::Int(k) => k % m == 0,
        Expr::Binary { op: BinOp::Add | BinOp::Sub, a, b } => multiple_of(a, m) && multiple_of(b, m),
        Expr::Binary { op: BinOp::Mul, a, b } => multiple_of(a, m) || multiple_of(b, m),
        _ => false,
    }
}

/// A float buffer of whole vec4s.
fn widenable(f: &Func, b: BufId) -> bool {
    let buf = f.buffer(b);
    matches!(buf.dtype, DType::F32 | DType::F16) && buf.shape.iter().product::<usize>() % 4 == 0
}

/// Whether `index` into `b` is element `4 * q + lane` of the loop `l`.
fn aligned(f: &Func, b: BufId, index: &[Expr], l: &Loop) -> bool {
    if !widenable(f, b) {
        return false;
    }
    let offset = flatten(index, &f.buffer(b).shape);
    lane_form(&offset, l.var) == Lane::Linear(1) && multiple_of(&offset.substitute(l.var, &Expr::Int(0)), 4)
}

/// The vec4 plan of loop `l`: a vectorized loop of 4 lanes whose body is stores only, each
/// aligned, to buffers it does not read (so the loads can be hoisted before all lanes);
/// its aligned loads go wide too. None when `l` is not such a loop.
pub(crate) fn plan(f: &Func, l: &Loop) -> Option<Plan> {
    if l.kind != LoopKind::Vectorized || l.extent != 4 {
        return None;
    }
    let mut out = Plan::default();
    for s in &l.body {
        let Stmt::Store { buf, index, .. } = s else { return None };
        if !aligned(f, *buf, index, l) || out.stores.iter().any(|(b, _)| b == buf) {
            return None;
        }
        out.stores.push((*buf, index.clone()));
    }
    let mut reads_stored = false;
    for s in &l.body {
        s.walk_exprs(&mut |e| {
            if let Expr::Load { buf, index } = e {
                reads_stored |= out.stores.iter().any(|(b, _)| b == buf);
                let key = (*buf, index.clone());
                if aligned(f, *buf, index, l) && !out.loads.contains(&key) {
                    out.loads.push(key);
                }
            }
        });
    }
    (!reads_stored).then_some(out)
}

/// The buffers some vectorized loop of `f` accesses as vec4 (declared as arrays of vec4).
pub(crate) fn wide_buffers(f: &Func) -> HashSet<BufId> {
    let mut out = HashSet::new();
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::For(l) = s {
                if let Some(p) = plan(f, l) {
                    out.extend(p.loads.iter().chain(&p.stores).map(|(b, _)| *b));
                }
            }
        });
    }
    out
}

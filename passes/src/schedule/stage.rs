//! `stage`: a workgroup reads an operand's tile from workgroup memory instead of each
//! invocation reading it from the buffer.
//!
//! At the start of every iteration of loop `at` (inside an invocation loop), a cooperative
//! loop nest copies the box of the operand that the whole workgroup reads during that
//! iteration (every invocation, every loop inside `at`) into a temporary; the reads inside
//! `at` then index the temporary. The box is found from the reads' indices, which must be
//! affine with non-negative constant coefficients in the varying variables (the invocation
//! loop's and those of the loops inside `at`); what stays fixed (the workgroup, the loops
//! above `at`) may be any expression. Box elements past the operand's end (a reduction chunk
//! that does not divide, an output tail) are not loaded: the copy is guarded, and nothing
//! reads them. Guards between the invocation loop and `at` (an output tail) are moved into
//! the statements below them, so that every invocation reaches the copy's barriers.

use ir::loops::index::{range, Ranges};
use ir::loops::visit::find_loop;
use ir::loops::{BinOp, BufId, BufKind, Expr, Func, Loop, LoopKind, Stmt, VarId};

type Result<T> = std::result::Result<T, String>;

/// An index dimension as fixed part + sum of coefficient * varying variable.
struct Affine {
    fixed: Expr,
    coefs: Vec<(VarId, i64)>,
}

fn add(a: Expr, b: Expr) -> Expr {
    match (&a, &b) {
        (Expr::Int(0), _) => b,
        (_, Expr::Int(0)) => a,
        _ => Expr::bin(BinOp::Add, a, b),
    }
}

fn merge(mut a: Vec<(VarId, i64)>, b: Vec<(VarId, i64)>, sign: i64) -> Vec<(VarId, i64)> {
    for (v, c) in b {
        match a.iter_mut().find(|(w, _)| *w == v) {
            Some(slot) => slot.1 += sign * c,
            None => a.push((v, sign * c)),
        }
    }
    a.retain(|(_, c)| *c != 0);
    a
}

/// `e` split into its fixed part and its varying terms, when it is affine in `varying`.
fn affine(e: &Expr, varying: &[VarId]) -> Option<Affine> {
    if !varying.iter().any(|&v| e.uses_var(v)) {
        return Some(Affine { fixed: e.clone(), coefs: Vec::new() });
    }
    match e {
        Expr::Var(v) => Some(Affine { fixed: Expr::Int(0), coefs: vec![(*v, 1)] }),
        Expr::Binary { op: op @ (BinOp::Add | BinOp::Sub), a, b } => {
            let (x, y) = (affine(a, varying)?, affine(b, varying)?);
            let sign = if *op == BinOp::Add { 1 } else { -1 };
            let fixed = match (sign, &y.fixed) {
                (_, Expr::Int(0)) => x.fixed,
                (1, _) => add(x.fixed, y.fixed),
                _ => Expr::bin(BinOp::Sub, x.fixed, y.fixed),
            };
            Some(Affine { fixed, coefs: merge(x.coefs, y.coefs, sign) })
        }
        Expr::Binary { op: BinOp::Mul, a, b } => {
            let (k, x) = match (&**a, &**b) {
                (x, Expr::Int(k)) | (Expr::Int(k), x) => (*k, x),
                _ => return None,
            };
            let x = affine(x, varying)?;
            let fixed = if x.fixed == Expr::Int(0) { Expr::Int(0) } else { Expr::bin(BinOp::Mul, x.fixed, Expr::Int(k)) };
            Some(Affine { fixed, coefs: x.coefs.into_iter().map(|(v, c)| (v, c * k)).filter(|(_, c)| *c != 0).collect() })
        }
        _ => None,
    }
}

/// The loops and guards from the program's body down to loop `at` (excluded).
enum Frame {
    Loop(VarId, i64, LoopKind),
    Guard(Expr),
}

fn path_to(body: &[Stmt], at: VarId, out: &mut Vec<Frame>) -> bool {
    for s in body {
        match s {
            Stmt::For(l) if l.var == at => return true,
            Stmt::For(l) => {
                out.push(Frame::Loop(l.var, l.extent, l.kind));
                if path_to(&l.body, at, out) {
                    return true;
                }
                out.pop();
            }
            Stmt::If { cond, then } => {
                out.push(Frame::Guard(cond.clone()));
                if path_to(then, at, out) {
                    return true;
                }
                out.pop();
            }
            Stmt::Store { .. } | Stmt::Prefetch { .. } => {}
        }
    }
    false
}

/// The variables and extents of `l`'s inner loops.
fn inner_loops(l: &Loop) -> Vec<(VarId, i64)> {
    let mut out = Vec::new();
    for s in &l.body {
        s.walk(&mut |s| {
            if let Stmt::For(x) = s {
                out.push((x.var, x.extent));
            }
        });
    }
    out
}

fn loads_of(l: &Loop, b: BufId) -> Vec<Vec<Expr>> {
    let mut out = Vec::new();
    for s in &l.body {
        s.walk_exprs(&mut |e| {
            if let Expr::Load { buf, index } = e {
                if *buf == b && !out.contains(index) {
                    out.push(index.clone());
                }
            }
        });
    }
    out
}

fn stores_to(s: &Stmt, b: BufId) -> bool {
    let mut found = false;
    s.walk(&mut |s| found |= matches!(s, Stmt::Store { buf, .. } if *buf == b));
    found
}

/// The staged box: per dimension of the operand, the fixed start and the extent.
struct Box_ {
    start: Vec<Expr>,
    extent: Vec<i64>,
}

/// The box of `b` that the reads `loads` cover while the `varying` variables (with their
/// extents) run through their ranges.
fn footprint(loads: &[Vec<Expr>], varying: &[(VarId, i64)], name: &str) -> Result<Box_> {
    let vars: Vec<VarId> = varying.iter().map(|v| v.0).collect();
    let rank = loads[0].len();
    let mut start = Vec::new();
    let mut extent = Vec::new();
    for d in 0..rank {
        let mut fixed: Option<Expr> = None;
        let mut span = 1;
        for index in loads {
            let a = affine(&index[d], &vars).ok_or_else(|| format!("index {d} of %{name} is not affine in the loops inside the stage"))?;
            if fixed.as_ref().is_some_and(|f| *f != a.fixed) {
                return Err(format!("the reads of %{name} start at different places in dimension {d}"));
            }
            fixed = Some(a.fixed);
            let mut reach = 0;
            for (v, c) in a.coefs {
                if c < 0 {
                    return Err(format!("index {d} of %{name} decreases along a loop inside the stage"));
                }
                reach += c * (varying.iter().find(|w| w.0 == v).map_or(1, |w| w.1) - 1);
            }
            span = span.max(reach + 1);
        }
        start.push(fixed.unwrap_or(Expr::Int(0)));
        extent.push(span);
    }
    Ok(Box_ { start, extent })
}

/// A fresh buffer name `base`, `base1`, ...
fn fresh_buffer_name(f: &Func, base: &str) -> String {
    (0..).map(|i| if i == 0 { base.to_string() } else { format!("{base}{i}") }).find(|n| f.buffer_named(n).is_none()).expect("a free name")
}

/// The copy of the box into `staged`: one loop per dimension longer than 1, the outermost
/// cooperative, each read guarded where it may pass the operand's end.
fn copy_nest(f: &mut Func, b: BufId, staged: BufId, bx: &Box_, ranges: &Ranges, name: &str) -> Vec<Stmt> {
    let shape = f.buffer(b).shape.clone();
    let mut dims: Vec<usize> = (0..bx.extent.len()).filter(|&d| bx.extent[d] > 1).collect();
    if dims.is_empty() {
        dims.push(bx.extent.len() - 1);
    }
    let vars: Vec<VarId> = dims.iter().map(|d| f.add_var(&format!("{name}_{d}"))).collect();
    let offset = |d: usize| dims.iter().position(|&x| x == d).map_or(Expr::Int(0), |k| Expr::Var(vars[k]));
    let src: Vec<Expr> = (0..shape.len()).map(|d| add(bx.start[d].clone(), offset(d))).collect();
    let dst: Vec<Expr> = (0..shape.len()).map(offset).collect();
    let mut ranges = ranges.to_vec();
    ranges.resize(f.vars.len(), None);
    for (k, &d) in dims.iter().enumerate() {
        ranges[vars[k].index()] = Some((0, bx.extent[d] - 1));
    }
    let mut guard: Option<Expr> = None;
    for (d, e) in src.iter().enumerate() {
        if range(e, &ranges).is_none_or(|(_, hi)| hi >= shape[d] as i64) {
            let c = Expr::bin(BinOp::Lt, e.clone(), Expr::Int(shape[d] as i64));
            guard = Some(match guard {
                None => c,
                Some(g) => Expr::bin(BinOp::And, g, c),
            });
        }
    }
    let store = Stmt::Store { buf: staged, index: dst, value: Expr::load(b, src) };
    let mut nest = vec![match guard {
        Some(cond) => Stmt::If { cond, then: vec![store] },
        None => store,
    }];
    for (k, &d) in dims.iter().enumerate().rev() {
        let kind = if k == 0 { LoopKind::GpuCooperative } else { LoopKind::Serial };
        nest = vec![Stmt::For(Loop { var: vars[k], extent: bx.extent[d], kind, body: nest })];
    }
    nest
}

fn wrap(conds: &[Expr], body: Vec<Stmt>) -> Vec<Stmt> {
    match conds.iter().cloned().reduce(|a, b| Expr::bin(BinOp::And, a, b)) {
        Some(cond) if !body.is_empty() => vec![Stmt::If { cond, then: body }],
        _ => body,
    }
}

fn contains_loop(s: &Stmt, v: VarId) -> bool {
    find_loop(std::slice::from_ref(s), v).is_some()
}

/// `body` with `copy` first in loop `at` and the guards `conds` (and those met on the way
/// to `at`) moved down around every statement that is not on the way.
fn rebuild(body: Vec<Stmt>, at: VarId, conds: &[Expr], copy: &mut Option<Vec<Stmt>>, rewrite: &dyn Fn(Stmt) -> Stmt) -> Vec<Stmt> {
    let mut out = Vec::new();
    for s in body {
        if !contains_loop(&s, at) {
            out.extend(wrap(conds, vec![s]));
            continue;
        }
        match s {
            Stmt::For(l) if l.var == at => {
                let inner: Vec<Stmt> = l.body.into_iter().map(rewrite).collect();
                let mut new_body = copy.take().unwrap_or_default();
                new_body.extend(wrap(conds, inner));
                out.push(Stmt::For(Loop { body: new_body, ..l }));
            }
            Stmt::For(l) => {
                let new_body = rebuild(l.body, at, conds, copy, rewrite);
                out.push(Stmt::For(Loop { body: new_body, ..l }));
            }
            Stmt::If { cond, then } => {
                let mut more = conds.to_vec();
                more.push(cond);
                out.extend(rebuild(then, at, &more, copy, rewrite));
            }
            store => out.push(store),
        }
    }
    out
}

pub(super) fn stage(f: &mut Func, buffer: &str, at: &str) -> Result<()> {
    let b = f.buffer_named(buffer).ok_or_else(|| format!("no buffer named {buffer}"))?;
    let v = f.var_named(at).filter(|&v| find_loop(&f.body, v).is_some()).ok_or_else(|| format!("no loop named {at}"))?;
    let mut path = Vec::new();
    path_to(&f.body, v, &mut path);
    let thread = path.iter().position(|fr| matches!(fr, Frame::Loop(_, _, LoopKind::GpuThread)));
    let Some(thread) = thread else { return Err(format!("{at} is not inside an invocation loop")) };
    for fr in &path[thread + 1..] {
        match fr {
            Frame::Loop(_, _, LoopKind::Serial | LoopKind::Unrolled) => {}
            Frame::Loop(w, _, kind) => return Err(format!("{at} is inside {} loop {}", kind.name(), f.vars[w.index()])),
            Frame::Guard(c) if reads_memory(c) => return Err(format!("a guard above {at} reads memory")),
            Frame::Guard(_) => {}
        }
    }
    let top = f.body.iter().find(|s| contains_loop(s, v)).expect("the path found it");
    if stores_to(top, b) {
        return Err(format!("%{buffer} is written in the loop nest of {at}"));
    }
    let Frame::Loop(tv, textent, _) = path[thread] else { unreachable!("a loop frame") };
    let l = find_loop(&f.body, v).expect("found").clone();
    let loads = loads_of(&l, b);
    if loads.is_empty() {
        return Err(format!("%{buffer} is not read inside {at}"));
    }
    let mut varying = inner_loops(&l);
    varying.push((tv, textent));
    let bx = footprint(&loads, &varying, buffer)?;
    // Ranges of the fixed variables (the loops around `at`, `at` itself).
    let mut ranges: Vec<Option<(i64, i64)>> = vec![None; f.vars.len()];
    for fr in &path {
        if let Frame::Loop(w, e, _) = fr {
            ranges[w.index()] = Some((0, e - 1));
        }
    }
    ranges[tv.index()] = None;
    ranges[v.index()] = Some((0, l.extent - 1));
    for (d, s) in bx.start.iter().enumerate() {
        if !range(s, &ranges).is_some_and(|(lo, _)| lo >= 0) {
            return Err(format!("the start of dimension {d} of the box of %{buffer} is not known to be non-negative"));
        }
    }
    let name = fresh_buffer_name(f, &format!("{buffer}_wg"));
    let dtype = f.buffer(b).dtype;
    let staged = f.add_buffer(name.clone(), dtype, bx.extent.iter().map(|&e| e as usize).collect(), BufKind::Temp);
    let copy = copy_nest(f, b, staged, &bx, &ranges, &name);
    let vars: Vec<VarId> = varying.iter().map(|w| w.0).collect();
    let rewrite = move |s: Stmt| {
        s.map_exprs(&mut |e| match e {
            Expr::Load { buf, index } if buf == b => {
                let index = index.iter().map(|e| relative(e, &vars)).collect();
                Expr::Load { buf: staged, index }
            }
            other => other,
        })
    };
    let body = std::mem::take(&mut f.body);
    let mut copy = Some(copy);
    f.body = rebuild(body, v, &[], &mut copy, &rewrite);
    Ok(())
}

/// The varying terms of `e` (its offset from the box's start), rebuilt.
fn relative(e: &Expr, varying: &[VarId]) -> Expr {
    let a = affine(e, varying).expect("footprint checked the index");
    a.coefs.into_iter().fold(Expr::Int(0), |acc, (v, c)| {
        let term = if c == 1 { Expr::Var(v) } else { Expr::bin(BinOp::Mul, Expr::Var(v), Expr::Int(c)) };
        add(acc, term)
    })
}

fn reads_memory(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= matches!(x, Expr::Load { .. }));
    found
}

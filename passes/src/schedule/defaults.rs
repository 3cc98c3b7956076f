//! Default schedules: good-without-tuning traces chosen from a program's loop structure and
//! the target's vector width.

use ir::loops::{Func, Loop, Stmt};

use super::{Primitive, Trace};

/// The default schedule of `func` for a target with `vector_width` f32 lanes. The trace is
/// checked by applying it; when a richer schedule does not fit the program it falls back to
/// a simpler one, down to the empty trace.
pub fn default_schedule(func: &Func, vector_width: usize) -> Trace {
    let candidates = [reduction_tiled(func, vector_width), spatial(func, vector_width), outer_parallel(func)];
    candidates.into_iter().flatten().find(|t| t.apply(func).is_ok()).unwrap_or_default()
}

fn name(f: &Func, l: &Loop) -> String {
    f.vars[l.var.index()].clone()
}

/// The perfectly nested loops from the top of the body, when the body is one loop.
fn top_chain(f: &Func) -> Vec<&Loop> {
    let mut out = Vec::new();
    let mut body = &f.body;
    while let [Stmt::For(l)] = body.as_slice() {
        out.push(l);
        body = &l.body;
    }
    out
}

/// The largest divisor of `n` that is at most `limit`.
fn divisor_at_most(n: i64, limit: i64) -> i64 {
    (1..=limit.min(n)).rev().find(|d| n % d == 0).unwrap_or(1)
}

/// Fuses `loops` (outermost first) pairwise, returning the fused name.
fn fuse_all(steps: &mut Vec<Primitive>, loops: &[String]) -> Option<String> {
    let mut it = loops.iter();
    let mut acc = it.next()?.clone();
    for l in it {
        steps.push(Primitive::Fuse { outer: acc.clone(), inner: l.clone() });
        acc = format!("{acc}_{l}");
    }
    Some(acc)
}

/// A loop nest ending in one store (elementwise and data movement): the innermost loop is
/// vectorized when a vector width divides it, the loops above are fused and run in parallel.
fn spatial(f: &Func, vw: usize) -> Option<Trace> {
    let chain = top_chain(f);
    let last = chain.last()?;
    if !matches!(last.body.as_slice(), [Stmt::Store { .. }]) {
        return None;
    }
    let names: Vec<String> = chain.iter().map(|l| name(f, l)).collect();
    let mut steps = Vec::new();
    let width = divisor_at_most(last.extent, vw as i64);
    let mut outer: Vec<String> = names[..names.len() - 1].to_vec();
    if width >= 4 {
        let inner = names.last()?.clone();
        steps.push(Primitive::Split { loop_: inner.clone(), factor: width });
        steps.push(Primitive::Vectorize { loop_: format!("{inner}_i") });
        outer.push(format!("{inner}_o"));
    } else {
        outer.push(names.last()?.clone());
    }
    let fused = fuse_all(&mut steps, &outer)?;
    steps.push(Primitive::Parallel { loop_: fused });
    Some(Trace(steps))
}

/// A reduction (conv, matmul) written as spatial loops over [init store; reduction loops]:
/// a register tile of `tile_rows` x one vector of the innermost spatial loop accumulates in
/// a temporary, the reduction loops run outside the tile, and the outer loops run in parallel.
fn reduction_tiled(f: &Func, vw: usize) -> Option<Trace> {
    let chain = top_chain(f);
    let last = chain.last()?;
    let [Stmt::Store { buf, .. }, Stmt::For(_)] = last.body.as_slice() else { return None };
    if chain.len() < 2 {
        return None;
    }
    let names: Vec<String> = chain.iter().map(|l| name(f, l)).collect();
    let buffer = f.buffer(*buf).name.clone();
    let n = names.len();
    // The innermost spatial loop is vectorized, the second innermost (or the output channel
    // loop for NCHW convs: loop 1 of 4) is tiled across registers.
    let cols = &names[n - 1];
    let rows_at = if n == 4 { 1 } else { n - 2 };
    let rows = &names[rows_at];
    let width = divisor_at_most(chain[n - 1].extent, vw as i64);
    let tile_rows = divisor_at_most(chain[rows_at].extent, if width > 1 { 8 } else { 1 });
    let mut steps = vec![
        Primitive::Split { loop_: cols.clone(), factor: width },
        Primitive::Split { loop_: rows.clone(), factor: tile_rows },
    ];
    // Order: loops above the tile (rows_o in place of rows), then the tile rows x cols.
    let mut order: Vec<String> = Vec::new();
    for (i, l) in names.iter().enumerate() {
        if i == rows_at {
            order.push(format!("{rows}_o"));
        } else if i == n - 1 {
            order.push(format!("{cols}_o"));
        } else {
            order.push(l.clone());
        }
    }
    let tile_at = order.last()?.clone();
    order.push(format!("{rows}_i"));
    order.push(format!("{cols}_i"));
    steps.push(Primitive::Reorder { loops: order.clone() });
    steps.push(Primitive::Unroll { loop_: format!("{rows}_i") });
    if width > 1 {
        steps.push(Primitive::Vectorize { loop_: format!("{cols}_i") });
    }
    steps.push(Primitive::CacheWrite { buffer, at: tile_at });
    // Everything above the tile except its innermost loop runs in parallel.
    let above: Vec<String> = order[..order.len() - 3].to_vec();
    if let Some(fused) = fuse_all(&mut steps, &above) {
        steps.push(Primitive::Parallel { loop_: fused });
    }
    Some(Trace(steps))
}

/// The fallback: the outermost loop in parallel, when the body is one loop.
fn outer_parallel(f: &Func) -> Option<Trace> {
    match f.body.as_slice() {
        [Stmt::For(l)] if l.extent > 1 => Some(Trace(vec![Primitive::Parallel { loop_: name(f, l) }])),
        _ => None,
    }
}

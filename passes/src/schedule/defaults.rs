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

/// Loop nests ending in one store each (elementwise ops, data movement, a pad's fill and
/// copy): in each nest the innermost loop of more than one iteration is vectorized when a
/// vector width divides it; a single nest also gets its outer loops fused and parallel.
fn spatial(f: &Func, vw: usize) -> Option<Trace> {
    let mut nests = Vec::new();
    for s in &f.body {
        let Stmt::For(top) = s else { return None };
        let mut chain = vec![top];
        while let [Stmt::For(next)] = chain[chain.len() - 1].body.as_slice() {
            chain.push(next);
        }
        if !matches!(chain[chain.len() - 1].body.as_slice(), [Stmt::Store { .. }]) {
            return None;
        }
        nests.push(chain);
    }
    let single = nests.len() == 1;
    let mut steps = Vec::new();
    for chain in nests {
        let names: Vec<String> = chain.iter().map(|l| name(f, l)).collect();
        // Loops of one iteration below the vector loop stay inside it.
        let v = chain.iter().rposition(|l| l.extent > 1).unwrap_or(chain.len() - 1);
        // A width that divides the extent needs no guard; when the best divisor wastes over
        // half the vector, a full vector with a guarded tail is better.
        let extent = chain[v].extent;
        let divisor = divisor_at_most(extent, vw as i64);
        let width = if divisor * 2 <= (vw as i64).min(extent) { (vw as i64).min(extent) } else { divisor };
        let mut outer: Vec<String> = names[..v].to_vec();
        if width >= 4 {
            steps.push(Primitive::Split { loop_: names[v].clone(), factor: width });
            steps.push(Primitive::Vectorize { loop_: format!("{}_i", names[v]) });
            outer.push(format!("{}_o", names[v]));
        } else {
            outer.push(names[v].clone());
        }
        if single {
            let fused = fuse_all(&mut steps, &outer)?;
            steps.push(Primitive::Parallel { loop_: fused });
        }
    }
    Some(Trace(steps))
}

/// A reduction (conv, matmul) written as spatial loops over [init store; reduction loops]:
/// a register tile of `tile_rows` x one vector of the innermost spatial loop accumulates in
/// a temporary, the reduction loops run outside the tile, and the outer loops run in parallel.
fn reduction_tiled(f: &Func, vw: usize) -> Option<Trace> {
    let chain = top_chain(f);
    let last = chain.last()?;
    let [Stmt::Store { buf, .. }, Stmt::For(reduction), ..] = last.body.as_slice() else { return None };
    if chain.len() < 2 {
        return None;
    }
    let names: Vec<String> = chain.iter().map(|l| name(f, l)).collect();
    let buffer = f.buffer(*buf).name.clone();
    let n = names.len();
    // The innermost spatial loop is vectorized, the second innermost (or the output channel
    // loop for NCHW convs: loop 1 of 4) is tiled across registers.
    let cols = names[n - 1].clone();
    let rows_at = if n == 4 { 1 } else { n - 2 };
    let width = divisor_at_most(chain[n - 1].extent, vw as i64);
    let tile_rows = divisor_at_most(chain[rows_at].extent, if width > 1 { 8 } else { 1 });
    let mut steps = Vec::new();
    let mut order: Vec<String> = Vec::new();
    let tile: Vec<String>;
    let matrix_vector = !(tile_rows > 1 || width == 1);
    if !matrix_vector {
        // rows_i x cols_i: tile_rows accumulators of one vector each; for a channel-blocked
        // convolution (loop 1 the output-channel block) whose input does not depend on that
        // block, a few blocks too (blocks_i x rows_i x cols_i, about 16 accumulators), so
        // that each input value loaded feeds several vectors.
        let rows = names[rows_at].clone();
        let blocks =
            if n == 5 && reuses_across(last, chain[1]) { divisor_at_most(chain[1].extent, (16 / tile_rows).clamp(1, 4)) } else { 1 };
        steps.push(Primitive::Split { loop_: cols.clone(), factor: width });
        steps.push(Primitive::Split { loop_: rows.clone(), factor: tile_rows });
        if blocks > 1 {
            steps.push(Primitive::Split { loop_: names[1].clone(), factor: blocks });
        }
        for (i, l) in names.iter().enumerate() {
            let split = i == rows_at || i == n - 1 || (i == 1 && blocks > 1);
            order.push(if split { format!("{l}_o") } else { l.clone() });
        }
        tile = if blocks > 1 {
            vec![format!("{}_i", names[1]), format!("{rows}_i"), format!("{cols}_i")]
        } else {
            vec![format!("{rows}_i"), format!("{cols}_i")]
        };
    } else {
        // Nothing to tile across rows (a matrix-vector product): the whole row of results is
        // the tile, so the reduction streams each row of the matrix once, in order.
        if chain[n - 1].extent > 16384 {
            return None;
        }
        steps.push(Primitive::Split { loop_: cols.clone(), factor: width });
        steps.push(Primitive::Vectorize { loop_: format!("{cols}_i") });
        steps.push(Primitive::CacheWrite { buffer, at: names[n - 2].clone() });
        let above: Vec<String> = names[..n - 1].to_vec();
        if let Some(fused) = fuse_all(&mut steps, &above) {
            steps.push(Primitive::Parallel { loop_: fused });
        }
        return Some(Trace(steps));
    }
    let tile_at = order.last()?.clone();
    order.extend(tile.iter().cloned());
    steps.push(Primitive::Reorder { loops: order.clone() });
    for l in &tile[..tile.len() - 1] {
        steps.push(Primitive::Unroll { loop_: l.clone() });
    }
    if width > 1 {
        steps.push(Primitive::Vectorize { loop_: tile[tile.len() - 1].clone() });
    }
    steps.push(Primitive::CacheWrite { buffer, at: tile_at });
    // A short innermost reduction loop (a kernel row) is unrolled: its loop overhead would
    // otherwise rival the tile's few FMAs.
    let mut innermost = reduction;
    while let [Stmt::For(next)] = innermost.body.as_slice() {
        innermost = next;
    }
    if (2..=8).contains(&innermost.extent) {
        steps.push(Primitive::Unroll { loop_: name(f, innermost) });
    }
    // Everything above the tile's loop runs in parallel.
    let above: Vec<String> = order[..order.len() - tile.len() - 1].to_vec();
    if let Some(fused) = fuse_all(&mut steps, &above) {
        steps.push(Primitive::Parallel { loop_: fused });
    }
    Some(Trace(steps))
}

/// Whether the reduction loop under `nest` (its second statement) loads a tensor element
/// that does not depend on `axis`: tiling `axis` in registers then reuses that load (a dense
/// convolution's input across output-channel blocks, not a depthwise one's).
pub(super) fn reuses_across(nest: &Loop, axis: &Loop) -> bool {
    let mut reused = false;
    if let Some(reduction) = nest.body.get(1) {
        reduction.walk_exprs(&mut |e| {
            if let ir::loops::Expr::Load { index, .. } = e {
                reused |= !index.is_empty() && !index.iter().any(|i| i.uses_var(axis.var));
            }
        });
    }
    reused
}

/// The fallback: the outermost loop in parallel, when the body is one loop.
fn outer_parallel(f: &Func) -> Option<Trace> {
    match f.body.as_slice() {
        [Stmt::For(l)] if l.extent > 1 => Some(Trace(vec![Primitive::Parallel { loop_: name(f, l) }])),
        _ => None,
    }
}

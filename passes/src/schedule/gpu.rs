//! The GPU default schedule: in each loop nest of the program, the outer loops whose
//! iterations write distinct elements are fused into one, split into workgroups of
//! [`WORKGROUP`] invocations and bound (`workgroup`, `invocation`); a reduction keeps its
//! accumulator in a register (cache_write at the invocation loop) when it can. Each nest
//! becomes one dispatch; a nest with no such loop runs in one invocation.

use ir::loops::{BufId, Expr, Func, Loop, Stmt};

use super::{Primitive, Trace};

/// Invocations per workgroup: a multiple of every GPU's SIMD width (32 or 64), small
/// enough that small tensors still fill several workgroups.
pub const WORKGROUP: i64 = 64;

/// The GPU default schedule of `func` (the vector width is ignored: GPUs vectorize across
/// invocations). Falls back from per-invocation register tiles to one accumulator per
/// invocation, to the plain binding, then to the empty trace (every nest in one invocation).
pub fn gpu_default_schedule(func: &Func, _vector_width: usize) -> Trace {
    let candidates = [bound(func, Tile::Block(TILE), WORKGROUP), bound(func, Tile::One, WORKGROUP), bound(func, Tile::None, WORKGROUP)];
    candidates.into_iter().flatten().find(|t| t.apply(func).is_ok()).unwrap_or_default()
}

/// The GPU schedules the tuner measures: workgroups of 32 to 256 invocations, each with
/// register tiles of 1, 2 or 4 outputs per invocation (and accumulation in memory), the
/// default schedule first; each applies to `func`, and no two are the same trace.
pub fn gpu_schedule_candidates(func: &Func) -> Vec<Trace> {
    let mut out = vec![gpu_default_schedule(func, 0)];
    for size in [64, 128, 256, 32] {
        for tile in [Tile::Block([4, 2]), Tile::Block([4, 0]), Tile::Block([2, 0]), Tile::One, Tile::None] {
            if let Some(t) = bound(func, tile, size) {
                if !out.contains(&t) && t.apply(func).is_ok() {
                    out.push(t);
                }
            }
        }
    }
    out
}

/// How a reduction's accumulators are kept.
#[derive(Clone, Copy, PartialEq)]
enum Tile {
    /// In memory (the output element itself).
    None,
    /// One register per invocation.
    One,
    /// Registers per invocation along up to two output loops other than the innermost (at
    /// most these factors; 0: none): the loops are split and their inner parts computed by
    /// one invocation, so each load of an operand that does not depend on them (a
    /// convolution's weight, a matrix product's column) feeds several outputs.
    Block([i64; 2]),
}

/// The default register tile: up to 4 outputs along one loop. (Two-dimensional tiles, 4 x 2,
/// are among the tuner's candidates: on lavapipe they ran mobilenet_v3_large 1.7x slower.)
const TILE: [i64; 2] = [4, 0];

fn name(f: &Func, l: &Loop) -> String {
    f.vars[l.var.index()].clone()
}

/// Invocations per workgroup for `extent` invocations: `preferred`, or a size near it that
/// divides the extent (no guarded tail, so that a reduction can take a register tile).
fn workgroup_size(extent: i64, preferred: i64) -> i64 {
    if extent <= preferred {
        return extent;
    }
    let near = (preferred / 4).max(16)..=(preferred * 2);
    [preferred, preferred * 2, preferred / 2].into_iter().chain(near.rev()).find(|d| *d > 0 && extent % d == 0).unwrap_or(preferred)
}

fn bound(f: &Func, tile: Tile, preferred: i64) -> Option<Trace> {
    let mut steps = Vec::new();
    for s in &f.body {
        let Stmt::For(top) = s else { continue };
        let mut chain = vec![top];
        while let [Stmt::For(next)] = chain[chain.len() - 1].body.as_slice() {
            chain.push(next);
        }
        let parallel = parallel_prefix(top, &chain);
        if parallel == 0 {
            continue;
        }
        let below = &chain[parallel - 1].body;
        let reduction = below.iter().any(|s| matches!(s, Stmt::For(_)));
        let mut names: Vec<String> = chain[..parallel].iter().map(|l| name(f, l)).collect();
        // The register tile: output loops other than the innermost split by small factors,
        // their inner parts moved innermost (below the invocation). The first is the innermost
        // but the last that a factor divides (a 7x7 feature map's channel blocks, say, when its
        // rows and columns do not); a second, further out, makes the tile two-dimensional.
        let mut factor = 1;
        if let (Tile::Block(most), true, true) = (tile, reduction, parallel >= 2) {
            let mut tiles: Vec<String> = Vec::new();
            let mut limit = parallel - 1;
            for most in most.into_iter().filter(|&m| m >= 2) {
                let pick = (0..limit).rev().find_map(|t| (2..=most).rev().find(|d| chain[t].extent % d == 0).map(|d| (t, d)));
                let Some((t, d)) = pick else { break };
                let n = names[t].clone();
                steps.push(Primitive::Split { loop_: n.clone(), factor: d });
                let mut order: Vec<String> = vec![format!("{n}_o")];
                order.extend(names[t + 1..].iter().cloned());
                order.extend(tiles.iter().cloned());
                order.push(format!("{n}_i"));
                steps.push(Primitive::Reorder { loops: order });
                names[t] = format!("{n}_o");
                tiles.push(format!("{n}_i"));
                factor *= d;
                limit = t;
            }
        }
        let extent: i64 = chain[..parallel].iter().map(|l| l.extent).product::<i64>() / factor;
        let mut fused = names[0].clone();
        for n in &names[1..] {
            steps.push(Primitive::Fuse { outer: fused.clone(), inner: n.clone() });
            fused = format!("{fused}_{n}");
        }
        let size = workgroup_size(extent, preferred);
        steps.push(Primitive::Split { loop_: fused.clone(), factor: size });
        let (block, thread) = (format!("{fused}_o"), format!("{fused}_i"));
        steps.push(Primitive::Bind { loop_: block, to: "workgroup".into() });
        steps.push(Primitive::Bind { loop_: thread.clone(), to: "invocation".into() });
        // A reduction under the invocation loop accumulates in registers, not in memory.
        if tile != Tile::None && extent % size == 0 && reduction {
            if let Some(Stmt::Store { buf, .. }) = below.first() {
                steps.push(Primitive::CacheWrite { buffer: f.buffer(*buf).name.clone(), at: thread });
            }
        }
    }
    Some(Trace(steps))
}

/// How many loops of `chain` (from the top) can run as independent invocations: each is
/// used by every store's index in the nest, so its iterations write distinct elements; and
/// every load of a buffer the nest writes reads an element the same iteration writes (no
/// scan or in-place shift reads a neighbour's result). 0 when the nest has none.
fn parallel_prefix(top: &Loop, chain: &[&Loop]) -> usize {
    let nest = Stmt::For(top.clone());
    let mut stores: Vec<(BufId, Vec<Expr>)> = Vec::new();
    nest.walk(&mut |s| {
        if let Stmt::Store { buf, index, .. } = s {
            stores.push((*buf, index.clone()));
        }
    });
    let mut own_reads = true;
    nest.walk_exprs(&mut |e| {
        if let Expr::Load { buf, index } = e {
            let written = stores.iter().any(|(b, _)| b == buf);
            if written && !stores.iter().any(|(b, i)| b == buf && i == index) {
                own_reads = false;
            }
        }
    });
    if !own_reads || stores.is_empty() {
        return 0;
    }
    chain.iter().take_while(|l| stores.iter().all(|(_, index)| index.iter().any(|e| e.uses_var(l.var)))).count()
}

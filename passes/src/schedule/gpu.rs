//! The GPU default schedule: in each loop nest of the program, the outer loops whose
//! iterations write distinct elements are fused into one, split into workgroups of
//! [`WORKGROUP`] invocations and bound (`workgroup`, `invocation`); a reduction keeps its
//! accumulator in a register (cache_write at the invocation loop) when it can; an
//! elementwise nest computes 4 consecutive elements per invocation in a vectorized loop
//! (vec4 accesses). Each nest becomes one dispatch; a nest with no such loop runs in one
//! invocation. The tuner's candidates also tile reductions through workgroup memory: the
//! operand most of a workgroup's outputs share is staged (`stage`) chunk by chunk of the
//! reduction, which the default does not do (see [`STAGED_BY_DEFAULT`]).

use ir::loops::{BufId, Expr, Func, Loop, Stmt};

use super::{Primitive, Trace};

/// Invocations per workgroup: a multiple of every GPU's SIMD width (32 or 64), small
/// enough that small tensors still fill several workgroups.
pub const WORKGROUP: i64 = 64;

/// The GPU default schedule of `func` (the vector width is ignored: GPUs vectorize across
/// invocations). Falls back from per-invocation register tiles (and vec4 elementwise
/// nests) to the same without vec4, to one accumulator per invocation, to the plain
/// binding, then to the empty trace (every nest in one invocation).
pub fn gpu_default_schedule(func: &Func, _vector_width: usize) -> Trace {
    let best = Choice { tile: Tile::Block(TILE), preferred: WORKGROUP, staged: STAGED_BY_DEFAULT, vec4: true };
    let candidates = [
        bound_with(func, best),
        bound(func, Tile::Block(TILE), WORKGROUP),
        bound(func, Tile::One, WORKGROUP),
        bound(func, Tile::None, WORKGROUP),
    ];
    candidates.into_iter().flatten().find(|t| t.apply(func).is_ok()).unwrap_or_default()
}

/// The GPU schedules the tuner measures: workgroups of 32 to 256 invocations, each with
/// reductions tiled through workgroup memory, or register tiles of 1, 2 or 4 outputs per
/// invocation (and accumulation in memory), the default schedule first; each applies to
/// `func`, and no two are the same trace.
pub fn gpu_schedule_candidates(func: &Func) -> Vec<Trace> {
    let mut out = vec![gpu_default_schedule(func, 0)];
    for size in [64, 128, 256, 32] {
        let staged = bound_with(func, Choice { tile: Tile::Block(TILE), preferred: size, staged: true, vec4: true });
        if let Some(t) = staged {
            if !out.contains(&t) && t.apply(func).is_ok() {
                out.push(t);
            }
        }
    }
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
    bound_with(f, Choice { tile, preferred, staged: false, vec4: false })
}

/// One GPU schedule of every loop nest of a program.
#[derive(Clone, Copy)]
struct Choice {
    tile: Tile,
    preferred: i64,
    /// Reductions read their most reused operand from workgroup memory (see [`staged_nest`]).
    staged: bool,
    /// Elementwise nests whose innermost loop is a multiple of 4 run 4 elements per
    /// invocation in a vectorized loop (vec4 loads and stores where aligned).
    vec4: bool,
}

fn bound_with(f: &Func, choice: Choice) -> Option<Trace> {
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
        if choice.staged {
            if let Some(nest) = staged_nest(f, &chain, parallel, choice.preferred, &steps) {
                steps.extend(nest);
                continue;
            }
        }
        bound_nest(f, &chain, parallel, choice, &mut steps);
    }
    Some(Trace(steps))
}

/// The steps that fuse, tile and bind one nest's `parallel` outer loops.
fn bound_nest(f: &Func, chain: &[&Loop], parallel: usize, choice: Choice, steps: &mut Vec<Primitive>) {
    let (tile, preferred) = (choice.tile, choice.preferred);
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
    // Four consecutive elements per invocation, in a vectorized loop that codegen turns into
    // vec4 accesses (fewer, wider loads and stores).
    let innermost = chain[parallel - 1];
    let mut lanes = None;
    if choice.vec4 && !reduction && innermost.extent % 4 == 0 && innermost.extent >= 8 {
        let n = names[parallel - 1].clone();
        steps.push(Primitive::Split { loop_: n.clone(), factor: 4 });
        names[parallel - 1] = format!("{n}_o");
        lanes = Some(format!("{n}_i"));
        factor *= 4;
    }
    let extent: i64 = chain[..parallel].iter().map(|l| l.extent).product::<i64>() / factor;
    let fused = fuse_all(&names, steps);
    let size = workgroup_size(extent, preferred);
    let thread = bind_split(&fused, size, steps);
    if let Some(lanes) = lanes {
        steps.push(Primitive::Vectorize { loop_: lanes });
    }
    // A reduction under the invocation loop accumulates in registers, not in memory.
    if tile != Tile::None && extent % size == 0 && reduction {
        if let Some(Stmt::Store { buf, .. }) = below.first() {
            steps.push(Primitive::CacheWrite { buffer: f.buffer(*buf).name.clone(), at: thread });
        }
    }
}

/// Fuses the loops `names` (perfectly nested, outermost first) into one; its name.
fn fuse_all(names: &[String], steps: &mut Vec<Primitive>) -> String {
    let mut fused = names[0].clone();
    for n in &names[1..] {
        steps.push(Primitive::Fuse { outer: fused.clone(), inner: n.clone() });
        fused = format!("{fused}_{n}");
    }
    fused
}

/// Splits `fused` into workgroups of `size` invocations and binds it; the invocation loop.
fn bind_split(fused: &str, size: i64, steps: &mut Vec<Primitive>) -> String {
    steps.push(Primitive::Split { loop_: fused.to_string(), factor: size });
    let (block, thread) = (format!("{fused}_o"), format!("{fused}_i"));
    steps.push(Primitive::Bind { loop_: block, to: "workgroup".into() });
    steps.push(Primitive::Bind { loop_: thread.clone(), to: "invocation".into() });
    thread
}

/// The operand of a reduction nest most worth staging: a buffer the nest only reads, read
/// in the reduction with an index that uses a reduction loop, and used by the fewest output
/// elements' loops, so that the most outputs (the loops its index does not use) share each
/// element. Its name and which of the `parallel` loops its index uses.
fn staging_operand(f: &Func, chain: &[&Loop], parallel: usize) -> Option<(String, Vec<bool>)> {
    let nest = Stmt::For(chain[0].clone());
    let reduction_vars: Vec<_> = chain[parallel..].iter().map(|l| l.var).collect();
    let Some(Stmt::For(r)) = chain[parallel - 1].body.iter().find(|s| matches!(s, Stmt::For(_))) else { return None };
    let mut best: Option<(i64, String, Vec<bool>)> = None;
    Stmt::For(r.clone()).walk_exprs(&mut |e| {
        let Expr::Load { buf, index } = e else { return };
        let mut written = false;
        nest.walk(&mut |s| written |= matches!(s, Stmt::Store { buf: b, .. } if b == buf));
        let reduced = index.iter().any(|i| reduction_vars.iter().any(|&v| i.uses_var(v)) || i.uses_var(r.var));
        if written || !reduced {
            return;
        }
        let used: Vec<bool> = chain[..parallel].iter().map(|l| index.iter().any(|i| i.uses_var(l.var))).collect();
        let reuse: i64 = chain[..parallel].iter().zip(&used).filter(|(_, u)| !**u).map(|(l, _)| l.extent).product();
        if best.as_ref().is_none_or(|b| reuse > b.0) {
            best = Some((reuse, f.buffer(*buf).name.clone(), used));
        }
    });
    best.filter(|b| b.0 >= MIN_STAGE_REUSE).map(|b| (b.1, b.2))
}

/// Whether the default schedule stages reductions' shared operands in workgroup memory. Not
/// on lavapipe's evidence: there every barrier and workgroup-memory read costs more than the
/// buffer reads it saves (mobilenet_v3_small 2.5x slower), so staging is one of the tuner's
/// candidates (measured on the adapter) instead.
const STAGED_BY_DEFAULT: bool = false;

/// Staging pays when at least this many invocations share each staged element.
const MIN_STAGE_REUSE: i64 = 32;

/// At most this many elements are staged at once (8 KiB of f32: WebGPU guarantees 16 KiB
/// of workgroup memory).
const MAX_STAGED: i64 = 2048;

/// A reduction nest tiled through workgroup memory: each workgroup computes outputs that
/// share one tile of the staged operand (the loops its index uses are outside the
/// invocation loop, the others are fused and split into invocations), each invocation up
/// to 4 outputs along the operand's innermost used loop in registers; the outermost
/// reduction loop is split into chunks and each chunk's tile of the operand is staged. None
/// when the nest has no operand worth it or the steps (replayed after `before`) fail.
fn staged_nest(f: &Func, chain: &[&Loop], parallel: usize, preferred: i64, before: &[Primitive]) -> Option<Vec<Primitive>> {
    let (operand, used) = staging_operand(f, chain, parallel)?;
    let mut steps = Vec::new();
    let mut names: Vec<String> = chain[..parallel].iter().map(|l| name(f, l)).collect();
    let mut tile_extent = 1;
    let mut tile = None;
    if let Some(u) = (0..parallel).rev().find(|&u| used[u]) {
        if let Some(d) = (2..=4).rev().find(|d| chain[u].extent % d == 0) {
            steps.push(Primitive::Split { loop_: names[u].clone(), factor: d });
            tile = Some(format!("{}_i", names[u]));
            names[u] = format!("{}_o", names[u]);
            tile_extent = d;
        }
    }
    let outer: Vec<String> = (0..parallel).filter(|&p| used[p]).map(|p| names[p].clone()).collect();
    let shared: Vec<String> = (0..parallel).filter(|&p| !used[p]).map(|p| names[p].clone()).collect();
    let mut order = [outer.clone(), shared.clone()].concat();
    order.extend(tile.iter().cloned());
    steps.push(Primitive::Reorder { loops: order });
    let extent: i64 = chain[..parallel].iter().zip(&used).filter(|(_, u)| !**u).map(|(l, _)| l.extent).product();
    let fused = fuse_all(&shared, &mut steps);
    let size = workgroup_size(extent, preferred);
    steps.push(Primitive::Split { loop_: fused.clone(), factor: size });
    let block = fuse_all(&[outer, vec![format!("{fused}_o")]].concat(), &mut steps);
    let thread = format!("{fused}_i");
    steps.push(Primitive::Bind { loop_: block, to: "workgroup".into() });
    steps.push(Primitive::Bind { loop_: thread.clone(), to: "invocation".into() });
    let below = &chain[parallel - 1].body;
    if extent % size == 0 {
        if let Some(Stmt::Store { buf, .. }) = below.first() {
            steps.push(Primitive::CacheWrite { buffer: f.buffer(*buf).name.clone(), at: thread });
        }
    }
    let Some(Stmt::For(r)) = below.iter().find(|s| matches!(s, Stmt::For(_))) else { return None };
    let chunk = reduction_chunk(r, tile_extent, size);
    let r_name = name(f, r);
    steps.push(Primitive::Split { loop_: r_name.clone(), factor: chunk });
    steps.push(Primitive::Stage { buffer: operand.clone(), at: format!("{r_name}_o") });
    let replay = |steps: &[Primitive]| Trace([before, steps].concat()).apply(f).ok();
    let staged = replay(&steps)?;
    steps.extend(vectorized_copy(&staged, &format!("{operand}_wg")));
    replay(&steps)?;
    Some(steps)
}

/// The reduction chunk: enough iterations of the outermost reduction loop `r` that the
/// staged tile is about 4 elements per invocation (at most [`MAX_STAGED`]), a divisor of
/// its extent when one is near (no guarded tail), a multiple of 4 when large (vec4 copies).
fn reduction_chunk(r: &Loop, tile: i64, size: i64) -> i64 {
    let mut per_iteration = tile;
    for s in &r.body {
        s.walk(&mut |s| {
            if let Stmt::For(l) = s {
                per_iteration *= l.extent;
            }
        });
    }
    let most = ((4 * size).min(MAX_STAGED) / per_iteration.max(1)).clamp(1, r.extent);
    let most = if most >= 8 { most / 4 * 4 } else { most };
    (most / 2..=most).rev().find(|c| *c > 0 && r.extent % c == 0).unwrap_or(most)
}

/// Splits the innermost loop of the copy into `staged` by 4 and vectorizes it, when its
/// extent is a multiple of 4 (codegen makes the copy vec4 where both sides are aligned).
fn vectorized_copy(f: &Func, staged: &str) -> Vec<Primitive> {
    let Some(b) = f.buffer_named(staged) else { return Vec::new() };
    let shape = &f.buffer(b).shape;
    let Some(d) = (0..shape.len()).rev().find(|&d| shape[d] > 1) else { return Vec::new() };
    if shape[d] % 4 != 0 {
        return Vec::new();
    }
    // Split even when the extent is 4: the copy's outermost loop must stay cooperative.
    let copy = format!("{staged}_{d}");
    vec![Primitive::Split { loop_: copy.clone(), factor: 4 }, Primitive::Vectorize { loop_: format!("{copy}_i") }]
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

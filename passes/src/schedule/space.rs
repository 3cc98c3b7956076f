//! Schedule spaces: the choices a tuner may make for one program, read off its loop structure
//! and the target's vector width.
//!
//! A space is a list of knobs, each with a fixed list of integer choices; a point picks one
//! choice per knob and deterministically produces a trace. Choices are fixed per knob (not
//! conditional on other knobs), so that mutation and crossover are simple; combinations
//! that make no sense (the same loop as both the vector and the register-row axis, a factor
//! that does not divide its loop) produce no trace, and traces that the primitives refuse or
//! that fail verification are discarded by [`Space::schedule`].
//!
//! Three templates, by loop structure:
//! - reduction nests (conv, matmul, pooling sums): spatial loops over [init store; reduction
//!   loops; epilogue stores]. Knobs: the vectorized axis and its width, the register-tiled
//!   axis and its factor, a second register-tiled axis (2-4 output-channel blocks: each
//!   loaded input value then feeds several vectors, as in ORT's NCHWc kernels), the order
//!   of the tile's outer loops, where the accumulator tile is cached (cache_write placement), unrolling of the reduction loops, how many outer loops
//!   are fused into the parallel loop, and blocking a constant operand's layout along the
//!   vector axis;
//! - store-only nests (elementwise, data movement, pad borders): per nest the vector width
//!   and an unroll factor, and for a single nest the parallel fusion depth;
//! - anything else: the outermost loop parallel or not.

use ir::loops::{Expr, Func, Loop, Stmt};

use super::{Primitive, Trace};

/// One tunable parameter and the values it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knob {
    pub name: String,
    pub choices: Vec<i64>,
}

/// The schedule space of one program.
#[derive(Debug, Clone)]
pub struct Space {
    pub knobs: Vec<Knob>,
    template: Template,
    vector_width: i64,
}

/// A point of a space: for each knob, the index of its choice.
pub type Point = Vec<usize>;

#[derive(Debug, Clone)]
enum Template {
    Reduction(ReductionNest),
    Spatial(Vec<StoreNest>),
    Outer(Option<String>),
}

/// A perfect nest of spatial loops whose innermost body is [init store; reduction; ...].
#[derive(Debug, Clone)]
struct ReductionNest {
    names: Vec<String>,
    extents: Vec<i64>,
    buffer: String,
    /// The reduction loops, outermost first.
    reduction: Vec<(String, i64)>,
    /// Constant parameters with a dimension indexed by exactly one spatial loop (not their
    /// last dimension): (buffer, dimension, spatial loop index), candidates for layout_block.
    blockable: Vec<(String, usize, usize)>,
    /// The reduction loads a value that does not depend on loop 1 (a dense channel-blocked
    /// convolution's input): the default schedule tiles loop 1 in registers too.
    reuses_axis1: bool,
    /// The largest constant parameter when it holds at least [`BIG_WEIGHT_BYTES`]: a
    /// candidate for `prefetch`.
    big_weight: Option<String>,
}

/// Weights of at least this many bytes do not stay in the caches between inferences: the
/// tuner times their programs with the weights evicted, and their schedules may prefetch.
pub const BIG_WEIGHT_BYTES: usize = 1 << 20;

/// A perfect nest ending in one store.
#[derive(Debug, Clone)]
struct StoreNest {
    names: Vec<String>,
    extents: Vec<i64>,
}

fn name(f: &Func, l: &Loop) -> String {
    f.vars[l.var.index()].clone()
}

/// The loops of the perfect nest that starts at `top`, outermost first.
fn chain(top: &Loop) -> Vec<&Loop> {
    let mut out = vec![top];
    while let [Stmt::For(next)] = out[out.len() - 1].body.as_slice() {
        out.push(next);
    }
    out
}

/// The largest divisor of `n` that is at most `limit`.
fn divisor_at_most(n: i64, limit: i64) -> i64 {
    (1..=limit.min(n)).rev().find(|d| n % d == 0).unwrap_or(1)
}

/// Divisors of `n` in `lo..=hi`.
fn divisors(n: i64, lo: i64, hi: i64) -> Vec<i64> {
    (lo.max(1)..=hi.min(n)).filter(|d| n % d == 0).collect()
}

fn sorted_unique(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v.dedup();
    v
}

fn factorial(n: usize) -> usize {
    (1..=n).product()
}

/// The `k`-th permutation (in lexicographic order) of `items`.
fn permutation<T: Clone>(items: &[T], mut k: usize) -> Vec<T> {
    let mut pool: Vec<T> = items.to_vec();
    let mut out = Vec::with_capacity(pool.len());
    while !pool.is_empty() {
        let block = factorial(pool.len() - 1);
        out.push(pool.remove((k / block).min(pool.len() - 1)));
        k %= block;
    }
    out
}

/// At most this many outer loops are permuted (the innermost ones); 5! orders.
const MAX_PERMUTED: usize = 5;

impl Space {
    /// The space of `func` (unscheduled) for a target with `vector_width` f32 lanes;
    /// `constants[i]` says whether parameter i is a constant (its layout may change).
    pub fn new(func: &Func, vector_width: usize, constants: &[bool]) -> Space {
        let vw = vector_width.max(1) as i64;
        if let Some(r) = reduction_nest(func, constants) {
            return reduction_space(r, vw);
        }
        if let Some(nests) = store_nests(func) {
            return spatial_space(nests, vw);
        }
        let outer = match func.body.as_slice() {
            [Stmt::For(l)] if l.extent > 1 => Some(name(func, l)),
            _ => None,
        };
        let knobs = if outer.is_some() { vec![Knob { name: "parallel".into(), choices: vec![0, 1] }] } else { Vec::new() };
        Space { knobs, template: Template::Outer(outer), vector_width: vw }
    }

    /// The template's name, for reports.
    pub fn kind(&self) -> &'static str {
        match self.template {
            Template::Reduction(_) => "reduction",
            Template::Spatial(_) => "spatial",
            Template::Outer(_) => "outer",
        }
    }

    /// The number of points (saturating).
    pub fn size(&self) -> u128 {
        self.knobs.iter().fold(1u128, |n, k| n.saturating_mul(k.choices.len() as u128))
    }

    /// The value each knob takes at `point`, as `name=value` pairs.
    pub fn describe(&self, point: &[usize]) -> String {
        self.knobs.iter().zip(point).map(|(k, &i)| format!("{}={}", k.name, k.choices[i])).collect::<Vec<_>>().join(" ")
    }

    /// The point closest to the default schedule (see `defaults.rs`): the search starts
    /// from it, so that it explores around a good schedule rather than from scratch.
    pub fn default_point(&self) -> Point {
        let mut point = vec![0; self.knobs.len()];
        let mut set = |name: &str, want: i64| {
            if let Some(k) = self.knobs.iter().position(|k| k.name == name) {
                // The choice nearest to what the default takes.
                let c = &self.knobs[k].choices;
                point[k] = (0..c.len()).min_by_key(|&i| (c[i] - want).abs()).unwrap_or(0);
            }
        };
        match &self.template {
            Template::Reduction(r) => {
                let n = r.names.len();
                let width = divisor_at_most(r.extents[n - 1], self.vector_width);
                let rows_at = if n == 4 { 1 } else { n.saturating_sub(2) };
                let rows = if width > 1 { divisor_at_most(r.extents[rows_at], 8) } else { 1 };
                set("vec_axis", n as i64 - 1);
                set("vec_width", width);
                set("row_axis", if rows > 1 { rows_at as i64 } else { -1 });
                set("row_factor", rows);
                // As defaults.rs: a few output-channel blocks of a dense blocked convolution.
                let blocks = if n == 5 && rows > 1 && r.reuses_axis1 { divisor_at_most(r.extents[1], (16 / rows).clamp(1, 4)) } else { 1 };
                set("tile2", if blocks > 1 { 1000 + blocks } else { -1 });
                set("order", 0);
                set("block", -1);
                set("cache_at", 0);
                let short = r.reduction.last().is_some_and(|(_, e)| (2..=8).contains(e));
                set("unroll_inner_reduction", short as i64);
                set("reduction_split", 1);
                set("parallel_depth", n as i64);
                set("layout_block", 0);
                set("prefetch", 0);
            }
            Template::Spatial(nests) => {
                for (i, n) in nests.iter().enumerate() {
                    let extent = n.extents[vector_loop(n)];
                    let divisor = divisor_at_most(extent, self.vector_width);
                    let full = self.vector_width.min(extent);
                    set(&format!("vec{i}"), if divisor * 2 <= full { full } else { divisor });
                    set(&format!("unroll{i}"), 1);
                }
                set("parallel_depth", nests.first().map(|n| n.names.len() as i64).unwrap_or(1));
            }
            Template::Outer(_) => set("parallel", 1),
        }
        point
    }

    /// The trace `point` stands for, or None when its choices contradict each other. The
    /// trace may still be refused by the primitives: see [`Space::schedule`].
    pub fn trace(&self, point: &[usize]) -> Option<Trace> {
        if point.len() != self.knobs.len() || point.iter().zip(&self.knobs).any(|(&i, k)| i >= k.choices.len()) {
            return None;
        }
        let value = |name: &str| -> i64 {
            let k = self.knobs.iter().position(|k| k.name == name).unwrap_or_else(|| panic!("templates read only their own knobs: {name}"));
            self.knobs[k].choices[point[k]]
        };
        match &self.template {
            Template::Reduction(r) => reduction_trace(r, &value),
            Template::Spatial(nests) => spatial_trace(nests, &value),
            // Without an outer loop the space has no knob: its one point is the empty trace.
            Template::Outer(Some(l)) if value("parallel") == 1 => Some(Trace(vec![Primitive::Parallel { loop_: l.clone() }])),
            Template::Outer(_) => Some(Trace::default()),
        }
    }

    /// The trace of `point` and the scheduled function, when the point is valid: its trace
    /// exists, every primitive applies and the result verifies.
    pub fn schedule(&self, func: &Func, point: &[usize]) -> Option<(Trace, Func)> {
        let trace = self.trace(point)?;
        let scheduled = trace.apply(func).ok()?;
        Some((trace, scheduled))
    }
}

// ---- reduction nests ----

fn reduction_nest(f: &Func, constants: &[bool]) -> Option<ReductionNest> {
    let [Stmt::For(top)] = f.body.as_slice() else { return None };
    let nest = chain(top);
    let last = nest[nest.len() - 1];
    let [Stmt::Store { buf, .. }, Stmt::For(red), ..] = last.body.as_slice() else { return None };
    let reduction: Vec<(String, i64)> = chain(red).iter().map(|l| (name(f, l), l.extent)).collect();
    let names: Vec<String> = nest.iter().map(|l| name(f, l)).collect();
    let extents: Vec<i64> = nest.iter().map(|l| l.extent).collect();
    // Constant parameters indexed by a spatial loop alone in some dimension.
    let mut blockable = Vec::new();
    for (p, &b) in f.params().iter().enumerate() {
        let buffer = f.buffer(b);
        if !constants.get(p).copied().unwrap_or(false) || buffer.layout.is_some() {
            continue;
        }
        let mut dims: Vec<(usize, usize)> = Vec::new();
        for s in &f.body {
            s.walk_exprs(&mut |e| {
                if let Expr::Load { buf, index } = e {
                    if *buf != b {
                        return;
                    }
                    for (d, ix) in index.iter().enumerate() {
                        if let Some(s) = nest.iter().position(|l| *ix == Expr::Var(l.var)) {
                            if d + 1 < index.len() && nest[s].extent > 1 && !dims.contains(&(d, s)) {
                                dims.push((d, s));
                            }
                        }
                    }
                }
            });
        }
        blockable.extend(dims.into_iter().map(|(d, s)| (buffer.name.clone(), d, s)));
    }
    let reuses_axis1 = nest.len() > 1 && super::defaults::reuses_across(last, nest[1]);
    let big_weight = f
        .params()
        .iter()
        .enumerate()
        .filter(|&(p, _)| constants.get(p).copied().unwrap_or(false))
        .map(|(_, &b)| f.buffer(b))
        .map(|b| (b.bytes(), b.name.clone()))
        .filter(|(bytes, _)| *bytes >= BIG_WEIGHT_BYTES)
        .max()
        .map(|(_, name)| name);
    Some(ReductionNest { names, extents, buffer: f.buffer(*buf).name.clone(), reduction, blockable, reuses_axis1, big_weight })
}

fn reduction_space(r: ReductionNest, vw: i64) -> Space {
    let axes: Vec<i64> = (0..r.names.len() as i64).filter(|&i| r.extents[i as usize] > 1).collect();
    let mut widths = vec![1];
    let mut rows = vec![1];
    let mut blocks = vec![-1];
    let mut tiles2 = vec![-1];
    for &a in &axes {
        tiles2.extend(divisors(r.extents[a as usize], 2, 4).into_iter().map(|f| a * 1000 + f));
        blocks.extend(divisors(r.extents[a as usize], 2, 16).into_iter().map(|f| a * 1000 + f));
        // Vectors of fewer than 4 lanes waste most of the register.
        widths.extend(divisors(r.extents[a as usize], 4, 64));
        rows.extend(divisors(r.extents[a as usize], 2, 16));
    }
    // Whole vectors with a guarded tail, for extents no good width divides.
    widths.extend([vw, 2 * vw].into_iter().filter(|&w| w <= 64));
    // The split axes' outer loops and a cache-blocking split can add two outer loops.
    let permuted = (axes.len() + 1).min(MAX_PERMUTED);
    let mut knobs = vec![
        Knob { name: "vec_axis".into(), choices: if axes.is_empty() { vec![-1] } else { axes.clone() } },
        Knob { name: "vec_width".into(), choices: sorted_unique(widths) },
        Knob { name: "row_axis".into(), choices: [vec![-1], axes.clone()].concat() },
        Knob { name: "row_factor".into(), choices: sorted_unique(rows) },
        // A second register-tiled axis (a few output-channel blocks): the tile is then
        // blocks x rows x vector, each input value loaded once for several blocks' vectors.
        // axis * 1000 + factor, or -1 for none (one knob, so that one mutation adds it).
        Knob { name: "tile2".into(), choices: tiles2 },
        // Outer loops: the split outer loops of the vector and row axes can be among them.
        // A second level of tiling: one outer loop split again (a cache block), its two parts
        // ordered by `order` like the others; axis * 1000 + factor, or -1 for none.
        Knob { name: "block".into(), choices: blocks },
        Knob { name: "order".into(), choices: (0..factorial(permuted) as i64).collect() },
        // 0: the tile is rows x vector; 1: it also spans the innermost outer loop; 2: none.
        Knob { name: "cache_at".into(), choices: vec![0, 1, 2] },
        Knob { name: "unroll_inner_reduction".into(), choices: vec![0, 1] },
        Knob { name: "reduction_split".into(), choices: vec![1, 2, 4, 8] },
        Knob { name: "parallel_depth".into(), choices: (1..=r.names.len() as i64 + 2).collect() },
    ];
    if !r.blockable.is_empty() {
        knobs.push(Knob { name: "layout_block".into(), choices: vec![0, 1] });
    }
    if r.big_weight.is_some() {
        // 0: none; k: prefetch the big weight one iteration ahead along the k-th outer loop
        // left after the parallel fusion (the parallel loop first).
        knobs.push(Knob { name: "prefetch".into(), choices: vec![0, 1, 2, 3] });
    }
    Space { knobs, template: Template::Reduction(r), vector_width: vw }
}

fn reduction_trace(r: &ReductionNest, value: &dyn Fn(&str) -> i64) -> Option<Trace> {
    let n = r.names.len();
    let (vec_axis, width) = (value("vec_axis"), value("vec_width"));
    let (row_axis, rows) = (value("row_axis"), value("row_factor"));
    let vectorized = vec_axis >= 0 && width > 1;
    let tiled = row_axis >= 0 && rows > 1;
    if (vec_axis < 0 && width > 1) || (row_axis < 0 && rows > 1) || (row_axis >= 0 && rows == 1) {
        return None;
    }
    if vectorized && tiled && vec_axis == row_axis {
        return None;
    }
    let (tile2_axis, tile2) = match value("tile2") {
        -1 => (-1, 1),
        t => (t / 1000, t % 1000),
    };
    let tiled2 = tile2_axis >= 0;
    // The second tiled axis is neither the vector nor the row axis.
    if tiled2 && ((vectorized && tile2_axis == vec_axis) || (tiled && tile2_axis == row_axis)) {
        return None;
    }
    let mut steps = Vec::new();
    if vectorized {
        let a = vec_axis as usize;
        let extent = r.extents[a];
        // Exact divisors, or a whole number of target vectors with a guarded tail.
        if width > extent || (extent % width != 0 && width % 8 != 0) {
            return None;
        }
        if r.blockable.iter().any(|b| b.2 == a) && value_or(value, "layout_block", r) == 1 {
            let mut blocked = false;
            for (buffer, dim, s) in &r.blockable {
                if *s == a {
                    steps.push(Primitive::LayoutBlock { buffer: buffer.clone(), axis: *dim, factor: width as usize });
                    blocked = true;
                }
            }
            if !blocked {
                return None;
            }
        } else if value_or(value, "layout_block", r) == 1 {
            // Blocking is only meaningful along the vector axis: one trace per meaning.
            return None;
        }
        steps.push(Primitive::Split { loop_: r.names[a].clone(), factor: width });
    } else if value_or(value, "layout_block", r) == 1 {
        return None;
    }
    if tiled {
        let a = row_axis as usize;
        if r.extents[a] % rows != 0 {
            return None;
        }
        steps.push(Primitive::Split { loop_: r.names[a].clone(), factor: rows });
    }
    if tiled2 {
        let a = tile2_axis as usize;
        steps.push(Primitive::Split { loop_: r.names[a].clone(), factor: tile2 });
    }
    let (block_axis, block) = match value("block") {
        -1 => (-1, 1),
        b => (b / 1000, b % 1000),
    };
    // The outer loops in their original order, split loops standing for their axis.
    let mut trivial = Vec::new();
    let mut outer = Vec::new();
    let mut extent_of = std::collections::HashMap::new();
    for i in 0..n {
        let l = if (vectorized && i as i64 == vec_axis) || (tiled && i as i64 == row_axis) || (tiled2 && i as i64 == tile2_axis) {
            format!("{}_o", r.names[i])
        } else {
            r.names[i].clone()
        };
        let split_extent = if vectorized && i as i64 == vec_axis {
            (r.extents[i] + width - 1) / width
        } else if tiled && i as i64 == row_axis {
            r.extents[i] / rows
        } else if tiled2 && i as i64 == tile2_axis {
            r.extents[i] / tile2
        } else {
            r.extents[i]
        };
        if i as i64 == block_axis {
            if split_extent % block != 0 || split_extent == block {
                return None;
            }
            steps.push(Primitive::Split { loop_: l.clone(), factor: block });
            for (part, e) in [(format!("{l}_o"), split_extent / block), (format!("{l}_i"), block)] {
                extent_of.insert(part.clone(), e);
                outer.push(part);
            }
            continue;
        }
        extent_of.insert(l.clone(), split_extent);
        if split_extent == 1 {
            trivial.push(l)
        } else {
            outer.push(l)
        }
    }
    // Permute the innermost MAX_PERMUTED non-trivial outer loops.
    let keep = outer.len().saturating_sub(MAX_PERMUTED);
    let order_k = value("order") as usize;
    if order_k >= factorial(outer.len() - keep) {
        return None;
    }
    let permuted = permutation(&outer[keep..], order_k);
    let mut order: Vec<String> = trivial.iter().chain(&outer[..keep]).chain(&permuted).cloned().collect();
    let mut tile = Vec::new();
    if tiled2 {
        tile.push(format!("{}_i", r.names[tile2_axis as usize]));
    }
    if tiled {
        tile.push(format!("{}_i", r.names[row_axis as usize]));
    }
    if vectorized {
        tile.push(format!("{}_i", r.names[vec_axis as usize]));
    }
    let full: Vec<String> = order.iter().chain(&tile).cloned().collect();
    if full.len() > 1 {
        steps.push(Primitive::Reorder { loops: full });
    }
    // Every tile loop but the vector one is unrolled into registers.
    for l in &tile[..tile.len() - vectorized as usize] {
        steps.push(Primitive::Unroll { loop_: l.clone() });
    }
    if vectorized {
        steps.push(Primitive::Vectorize { loop_: tile[tile.len() - 1].clone() });
    }
    match value("cache_at") {
        0 => steps.push(Primitive::CacheWrite { buffer: r.buffer.clone(), at: order.last()?.clone() }),
        1 if order.len() >= 2 => {
            steps.push(Primitive::CacheWrite { buffer: r.buffer.clone(), at: order[order.len() - 2].clone() });
            // The spanned loop is now part of the tile, not of the parallel outer loops.
            order.pop();
        }
        2 => {}
        _ => return None,
    }
    // Unroll the innermost reduction loop when it is short (a kernel row), and split a long
    // reduction loop (input channels) to unroll a few of its iterations.
    if value("unroll_inner_reduction") == 1 {
        let (l, e) = r.reduction.iter().rev().find(|(_, e)| *e > 1)?;
        if *e > 16 {
            return None;
        }
        steps.push(Primitive::Unroll { loop_: l.clone() });
    }
    let split = value("reduction_split");
    if split > 1 {
        let (l, e) = r.reduction.iter().find(|(_, e)| *e > 16)?;
        if e % split != 0 {
            return None;
        }
        steps.push(Primitive::Split { loop_: l.clone(), factor: split });
        steps.push(Primitive::Unroll { loop_: format!("{l}_i") });
    }
    let loops: Vec<(String, i64)> = order.iter().map(|l| (l.clone(), extent_of[l])).collect();
    let depth = value("parallel_depth") as usize;
    let fused = parallel(&mut steps, &loops, depth)?;
    if let Some(weight) = &r.big_weight {
        let ahead = value("prefetch");
        if ahead > 0 {
            let outer: Vec<String> = std::iter::once(fused).chain(loops[depth..].iter().map(|l| l.0.clone())).collect();
            let l = outer.get(ahead as usize - 1)?;
            steps.push(Primitive::Prefetch { buffer: weight.clone(), loop_: l.clone() });
        }
    }
    Some(Trace(steps))
}

/// The parallel loop must have at least this many iterations when the outer loops have
/// them: tuning measures one thread, which would not see the cost of too few.
const MIN_PARALLEL: i64 = 16;

/// Fuses the first `depth` of the outer `loops` (name, extent) into the parallel loop; its
/// name.
fn parallel(steps: &mut Vec<Primitive>, loops: &[(String, i64)], depth: usize) -> Option<String> {
    if depth == 0 || depth > loops.len() {
        return None;
    }
    let total: i64 = loops.iter().map(|l| l.1).product();
    let fused_extent: i64 = loops[..depth].iter().map(|l| l.1).product();
    if fused_extent < MIN_PARALLEL.min(total) {
        return None;
    }
    let mut fused = loops[0].0.clone();
    for (l, _) in &loops[1..depth] {
        steps.push(Primitive::Fuse { outer: fused.clone(), inner: l.clone() });
        fused = format!("{fused}_{l}");
    }
    steps.push(Primitive::Parallel { loop_: fused.clone() });
    Some(fused)
}

/// The layout knob's value; 0 when the space has none.
fn value_or(value: &dyn Fn(&str) -> i64, knob: &str, r: &ReductionNest) -> i64 {
    if r.blockable.is_empty() {
        0
    } else {
        value(knob)
    }
}

// ---- store-only nests ----

fn store_nests(f: &Func) -> Option<Vec<StoreNest>> {
    let mut nests = Vec::new();
    for s in &f.body {
        let Stmt::For(top) = s else { return None };
        let c = chain(top);
        if !matches!(c[c.len() - 1].body.as_slice(), [Stmt::Store { .. }]) {
            return None;
        }
        nests.push(StoreNest { names: c.iter().map(|l| name(f, l)).collect(), extents: c.iter().map(|l| l.extent).collect() });
    }
    if nests.is_empty() {
        None
    } else {
        Some(nests)
    }
}

/// The loop a nest vectorizes: its innermost with more than one iteration.
fn vector_loop(n: &StoreNest) -> usize {
    n.extents.iter().rposition(|&e| e > 1).unwrap_or(n.extents.len() - 1)
}

fn spatial_space(nests: Vec<StoreNest>, vw: i64) -> Space {
    let mut knobs = Vec::new();
    for (i, n) in nests.iter().enumerate() {
        let extent = n.extents[vector_loop(n)];
        let mut widths = vec![1];
        widths.extend(divisors(extent, 4, 64));
        widths.extend([vw, 2 * vw].into_iter().filter(|&w| w <= 64 && w <= extent));
        knobs.push(Knob { name: format!("vec{i}"), choices: sorted_unique(widths) });
        knobs.push(Knob { name: format!("unroll{i}"), choices: vec![1, 2, 4, 8] });
    }
    if nests.len() == 1 {
        knobs.push(Knob { name: "parallel_depth".into(), choices: (1..=nests[0].names.len() as i64 + 1).collect() });
    }
    Space { knobs, template: Template::Spatial(nests), vector_width: vw }
}

fn spatial_trace(nests: &[StoreNest], value: &dyn Fn(&str) -> i64) -> Option<Trace> {
    let mut steps = Vec::new();
    for (i, n) in nests.iter().enumerate() {
        let v = vector_loop(n);
        let (width, unroll) = (value(&format!("vec{i}")), value(&format!("unroll{i}")));
        let mut outer: Vec<(String, i64)> = n.names[..v].iter().cloned().zip(n.extents[..v].iter().copied()).collect();
        // The loop that is unrolled: the one just outside the vector, or the innermost.
        let (unrolled, unrolled_extent) = if width > 1 {
            if width > n.extents[v] || (n.extents[v] % width != 0 && width % 8 != 0) {
                return None;
            }
            steps.push(Primitive::Split { loop_: n.names[v].clone(), factor: width });
            steps.push(Primitive::Vectorize { loop_: format!("{}_i", n.names[v]) });
            (format!("{}_o", n.names[v]), (n.extents[v] + width - 1) / width)
        } else {
            (n.names[v].clone(), n.extents[v])
        };
        if unroll > 1 {
            if unrolled_extent % unroll != 0 {
                return None;
            }
            steps.push(Primitive::Split { loop_: unrolled.clone(), factor: unroll });
            steps.push(Primitive::Unroll { loop_: format!("{unrolled}_i") });
            outer.push((format!("{unrolled}_o"), unrolled_extent / unroll));
        } else {
            outer.push((unrolled, unrolled_extent));
        }
        if nests.len() == 1 {
            parallel(&mut steps, &outer, value("parallel_depth") as usize)?;
        }
    }
    Some(Trace(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that is neither a reduction nor store nests under one loop (here two loops
    /// side by side with a reduction among them) has a space of one point: the empty trace.
    #[test]
    fn programs_without_an_outer_loop_have_one_point() {
        let text = r#"func "two" {
  param %x: f32[4]
  param %y: f32[4]
  for i in 0..4 {
    %y[i] = 0.0
    for k in 0..4 {
      %y[i] = %y[i] + %x[k]
    }
  }
  for j in 0..4 {
    %y[j] = %y[j] * 2.0
  }
}
"#;
        let f = ir::loops::parse_func(text).unwrap();
        let space = Space::new(&f, 16, &[false, false]);
        let point = space.default_point();
        assert_eq!(space.trace(&point), Some(Trace::default()), "{}", space.describe(&point));
    }

    /// A uniform sampler of points (splitmix64).
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (*state ^ (*state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn func(text: &str) -> Func {
        ir::loops::parse_func(text).expect("test function parses")
    }

    const MATMUL: &str = r#"func "matmul" {
  param %a: f32[8,32]
  param %b: f32[48,32]
  param %y: f32[8,48]
  for m in 0..8 {
    for n in 0..48 {
      %y[m, n] = 0.0
      for k in 0..32 {
        %y[m, n] = %y[m, n] + %a[m, k] * %b[n, k]
      }
    }
  }
}"#;

    const BLOCKED_CONV: &str = r#"func "conv" {
  param %x: f32[1,4,10,10,16]
  param %w: f32[64,64,3,3]
  param %y: f32[1,4,8,8,16]
  for n in 0..1 {
    for ob in 0..4 {
      for oh in 0..8 {
        for ow in 0..8 {
          for oi in 0..16 {
            %y[n, ob, oh, ow, oi] = 0.0
            for icb in 0..4 {
              for kh in 0..3 {
                for kw in 0..3 {
                  for ii in 0..16 {
                    %y[n, ob, oh, ow, oi] = %y[n, ob, oh, ow, oi] + %x[n, icb, oh + kh, ow + kw, ii] * %w[ob * 16 + oi, icb * 16 + ii, kh, kw]
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}"#;

    /// A dense channel-blocked convolution: the default schedule's register tile spans two
    /// output-channel blocks (8 rows x 2 blocks x 16 lanes), the space's default point is
    /// that tile, and every point with a second tiled axis computes the same result.
    #[test]
    fn blocked_conv_tiles_output_channel_blocks() {
        let f = func(BLOCKED_CONV);
        let default = super::super::default_schedule(&f, 16).to_json();
        assert!(default.contains(r#"{"op":"split","loop":"ob","factor":2}"#), "{default}");
        assert!(default.contains(r#"{"op":"unroll","loop":"ob_i"}"#), "{default}");
        let space = Space::new(&f, 16, &[false, true, false]);
        let point = space.default_point();
        assert!(space.describe(&point).contains("tile2=1002"), "{}", space.describe(&point));
        let (trace, _) = space.schedule(&f, &point).expect("the default point is valid");
        assert!(trace.to_json().contains(r#"{"op":"unroll","loop":"ob_i"}"#), "{}", trace.to_json());
        // Points with the second tiled axis: the tile's results match the unscheduled loops.
        let x: Vec<f32> = (0..4 * 10 * 10 * 16).map(|i| (i % 11) as f32 * 0.25 - 1.0).collect();
        let w: Vec<f32> = (0..64 * 64 * 9).map(|i| (i % 7) as f32 * 0.125 - 0.375).collect();
        let run = |g: &Func| {
            let mut args = vec![
                ir::Tensor::new(vec![1, 4, 10, 10, 16], ir::TensorData::F32(x.clone())).unwrap(),
                ir::Tensor::new(vec![64, 64, 3, 3], ir::TensorData::F32(w.clone())).unwrap(),
                ir::Tensor::new(vec![1, 4, 8, 8, 16], ir::TensorData::F32(vec![0.0; 4 * 8 * 8 * 16])).unwrap(),
            ];
            interp::loops::run_func(g, &mut args).unwrap();
            args.pop().unwrap()
        };
        let want = run(&f);
        let tile2 = space.knobs.iter().position(|k| k.name == "tile2").unwrap();
        let mut state = 7u64;
        let mut checked = 0;
        for _ in 0..100 {
            if checked == 3 {
                break;
            }
            let mut p = point.clone();
            p[tile2] = 1 + (splitmix(&mut state) % (space.knobs[tile2].choices.len() as u64 - 1)) as usize;
            if let Some((_, g)) = space.schedule(&f, &p) {
                assert_eq!(run(&g), want, "point {}", space.describe(&p));
                checked += 1;
            }
        }
        assert_eq!(checked, 3, "second-axis tiles of the default point were refused");
    }

    /// Weights of a megabyte or more add the prefetch knob: its points look ahead along one
    /// of the outer loops left after the parallel fusion, and apply.
    #[test]
    fn big_weights_add_a_prefetch_knob() {
        let small = Space::new(&func(BLOCKED_CONV), 16, &[false, true, false]);
        assert!(!small.knobs.iter().any(|k| k.name == "prefetch"), "147 KB of weights stay in the caches");
        let big = func(&BLOCKED_CONV.replace("f32[64,64,3,3]", "f32[64,512,3,3]").replace("f32[1,4,10,10,16]", "f32[1,32,10,10,16]").replace("icb in 0..4", "icb in 0..32"));
        let space = Space::new(&big, 16, &[false, true, false]);
        let k = space.knobs.iter().position(|k| k.name == "prefetch").expect("1.2 MB of weights");
        let mut point = space.default_point();
        assert_eq!(space.knobs[k].choices[point[k]], 0, "the default point does not prefetch");
        let (plain, _) = space.schedule(&big, &point).expect("the default point is valid");
        let fused = plain.0.iter().find_map(|p| if let Primitive::Parallel { loop_ } = p { Some(loop_.clone()) } else { None }).unwrap();
        point[k] = 1;
        let (trace, g) = space.schedule(&big, &point).expect("prefetch along the parallel loop");
        assert_eq!(trace.0[..plain.0.len()], plain.0[..], "the same schedule, then the prefetch");
        assert_eq!(trace.0.last(), Some(&Primitive::Prefetch { buffer: "w".into(), loop_: fused.clone() }), "{}", trace.to_json());
        assert!(ir::loops::print_func(&g).contains("prefetch %w["));
        point[k] = 2;
        if let Some((trace, _)) = space.schedule(&big, &point) {
            assert!(matches!(trace.0.last(), Some(Primitive::Prefetch { loop_, .. }) if *loop_ != fused), "{}", trace.to_json());
        }
    }

    #[test]
    fn permutations_are_distinct_and_complete() {
        let items = [1, 2, 3, 4];
        let mut all: Vec<Vec<i32>> = (0..24).map(|k| permutation(&items, k)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 24);
    }

    #[test]
    fn reduction_space_has_many_valid_distinct_traces() {
        let f = func(MATMUL);
        let space = Space::new(&f, 16, &[false, true, false]);
        assert_eq!(space.kind(), "reduction");
        assert!(space.knobs.iter().any(|k| k.name == "layout_block"), "b is constant and indexed by n in its first dimension");
        // A uniform sample of points: many must be valid, and every valid one verifies.
        let mut valid = std::collections::HashSet::new();
        let mut state = 3u64;
        for _ in 0..80000 {
            let point: Vec<usize> = space.knobs.iter().map(|k| (splitmix(&mut state) % k.choices.len() as u64) as usize).collect();
            if let Some((trace, scheduled)) = space.schedule(&f, &point) {
                ir::loops::verify::verify(&scheduled).expect("schedule verifies");
                valid.insert(trace.to_json());
            }
        }
        assert!(valid.len() > 50, "only {} valid traces", valid.len());
        // The search starts from the point nearest the default schedule: it must be valid,
        // and here it is the default's register tile (8 rows of n, a vector of 16 of it).
        let (trace, _) = space.schedule(&f, &space.default_point()).expect("the default point is valid");
        assert!(
            space.describe(&space.default_point()).starts_with("vec_axis=1 vec_width=16 row_axis=0 row_factor=8"),
            "{}",
            space.describe(&space.default_point())
        );
        assert!(trace.to_json().contains(r#"{"op":"cache_write","buffer":"y","at":"n_o"}"#), "{}", trace.to_json());
    }

    #[test]
    fn scheduled_points_compute_the_same_result() {
        let f = func(MATMUL);
        let space = Space::new(&f, 16, &[false, true, false]);
        let a: Vec<f32> = (0..8 * 32).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..48 * 32).map(|i| (i % 5) as f32 * 0.5).collect();
        let run = |g: &Func| {
            // The evaluator rearranges a blocked parameter's argument itself.
            let mut args = vec![
                ir::Tensor::new(vec![8, 32], ir::TensorData::F32(a.clone())).unwrap(),
                ir::Tensor::new(vec![48, 32], ir::TensorData::F32(b.clone())).unwrap(),
                ir::Tensor::new(vec![8, 48], ir::TensorData::F32(vec![0.0; 8 * 48])).unwrap(),
            ];
            interp::loops::run_func(g, &mut args).unwrap();
            args.pop().unwrap()
        };
        let want = run(&f);
        let mut checked = 0;
        let mut state = 1u64;
        for _ in 0..8000 {
            let point: Vec<usize> = space.knobs.iter().map(|k| (splitmix(&mut state) % k.choices.len() as u64) as usize).collect();
            if let Some((_, g)) = space.schedule(&f, &point) {
                assert_eq!(run(&g), want, "point {}", space.describe(&point));
                checked += 1;
            }
        }
        assert!(checked > 5);
    }

    #[test]
    fn store_nests_get_vector_unroll_and_parallel_knobs() {
        let f = func(
            r#"func "relu" {
  param %x: f32[4,64]
  param %y: f32[4,64]
  for i in 0..4 {
    for j in 0..64 {
      %y[i, j] = max(%x[i, j], 0.0)
    }
  }
}"#,
        );
        let space = Space::new(&f, 16, &[false, false]);
        assert_eq!(space.kind(), "spatial");
        let names: Vec<&str> = space.knobs.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["vec0", "unroll0", "parallel_depth"]);
        let pick = |name: &str, v: i64| space.knobs.iter().find(|k| k.name == name).unwrap().choices.iter().position(|&c| c == v).unwrap();
        // Only i in parallel: 4 iterations, too few for threads when 8 are available.
        assert!(space.schedule(&f, &[pick("vec0", 16), pick("unroll0", 2), pick("parallel_depth", 1)]).is_none());
        let point = vec![pick("vec0", 16), pick("unroll0", 2), pick("parallel_depth", 2)];
        let (trace, _) = space.schedule(&f, &point).expect("valid point");
        assert_eq!(
            trace.to_json(),
            r#"[{"op":"split","loop":"j","factor":16},{"op":"vectorize","loop":"j_i"},{"op":"split","loop":"j_o","factor":2},{"op":"unroll","loop":"j_o_i"},{"op":"fuse","outer":"i","inner":"j_o_o"},{"op":"parallel","loop":"i_j_o_o"}]"#
        );
    }
}

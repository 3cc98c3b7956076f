//! Features of a scheduled program for the cost model, read from its loop IR.
//!
//! Per store statement: how often it runs, the vector and unroll lengths around it, the
//! stride of each access along the vector (or innermost) loop, its arithmetic; aggregated
//! over the program weighted by execution counts. Per loop: its footprint (bytes touched by
//! one execution, from interval arithmetic on the indices), which gives an estimate of the
//! traffic into L1 and L2: a loop whose footprint fits a cache brings it in once per
//! execution, a larger loop costs its iterations' traffic.

use ir::loops::{BinOp, BufKind, Expr, Func, LoopKind, Stmt, VarId};

/// The feature names, in vector order.
pub const NAMES: [&str; 28] = [
    "log_stores",
    "log_vector_stores",
    "log_loads",
    "log_vector_ops",
    "vector_len",
    "unroll_len",
    "loads_contiguous",
    "loads_broadcast",
    "loads_strided",
    "stores_contiguous",
    "stores_strided",
    "guarded",
    "stores_to_temps",
    "log_parallel_extent",
    "log_loop_iterations",
    "log_inner_serial_extent",
    "log_l1_traffic",
    "log_l2_traffic",
    "log_footprint",
    "log_temp_bytes",
    "temp_registers",
    "loops",
    "depth",
    "top_statements",
    "log_intensity",
    "log_vector_parent_extent",
    "vector_not_innermost",
    "log_prefetches",
];

/// Data cache sizes in bytes, per core.
#[derive(Debug, Clone, Copy)]
pub struct Caches {
    pub l1: f64,
    pub l2: f64,
}

impl Caches {
    /// This machine's L1 data and L2 sizes (Linux sysfs), or 32 KiB and 1 MiB.
    pub fn host() -> Caches {
        let mut caches = Caches { l1: 32768.0, l2: 1048576.0 };
        for i in 0..6 {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).map(|s| s.trim().to_string()).unwrap_or_default();
            let size = read("size");
            let bytes = match size.strip_suffix('K') {
                Some(k) => k.parse::<f64>().unwrap_or(0.0) * 1024.0,
                None => size.strip_suffix('M').and_then(|m| m.parse::<f64>().ok()).unwrap_or(0.0) * 1048576.0,
            };
            match (read("level").as_str(), read("type").as_str()) {
                ("1", "Data") if bytes > 0.0 => caches.l1 = bytes,
                ("2", _) if bytes > 0.0 => caches.l2 = bytes,
                _ => {}
            }
        }
        caches
    }
}

#[derive(Clone, Copy)]
struct Frame {
    var: VarId,
    extent: i64,
    kind: LoopKind,
}

#[derive(Default)]
struct Acc {
    stores: f64,
    vector_stores: f64,
    loads: f64,
    vector_ops: f64,
    vector_len: f64,
    unroll_len: f64,
    loads_contiguous: f64,
    loads_broadcast: f64,
    loads_strided: f64,
    stores_contiguous: f64,
    stores_strided: f64,
    guarded: f64,
    temps: f64,
    iterations: f64,
    inner_serial: f64,
    flops: f64,
    vector_parent: f64,
    vector_not_innermost: f64,
    prefetches: f64,
}

fn log2(x: f64) -> f64 {
    (1.0 + x.max(0.0)).log2()
}

/// The feature vector of a scheduled program (see [`NAMES`]); `vector_width` is the
/// target's f32 lanes.
pub fn features(f: &Func, caches: Caches, vector_width: usize) -> Vec<f64> {
    let mut acc = Acc::default();
    let mut stack = Vec::new();
    let (mut loops, mut depth) = (0usize, 0usize);
    walk(f, &f.body, &mut stack, false, &mut acc, &mut loops, &mut depth);
    let w = acc.stores.max(1.0);
    let loads = acc.loads.max(1.0);
    let parallel = match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => l.extent as f64,
        _ => 1.0,
    };
    let l1 = traffic(f, &f.body, &[], caches.l1);
    let l2 = traffic(f, &f.body, &[], caches.l2);
    let footprint: f64 = f.body.iter().map(|s| stmt_footprint(f, s, &[])).sum();
    let temp_bytes: f64 =
        f.buffers.iter().filter(|b| b.kind == BufKind::Temp).map(|b| b.shape.iter().product::<usize>() as f64 * 4.0).sum();
    let register_bytes = (vector_width.max(1) * 4 * 32) as f64;
    vec![
        log2(acc.stores),
        log2(acc.vector_stores),
        log2(acc.loads),
        log2(acc.vector_ops),
        acc.vector_len / w,
        acc.unroll_len / w,
        acc.loads_contiguous / loads,
        acc.loads_broadcast / loads,
        acc.loads_strided / loads,
        acc.stores_contiguous / w,
        acc.stores_strided / w,
        acc.guarded / w,
        acc.temps / w,
        log2(parallel),
        log2(acc.iterations),
        acc.inner_serial / w,
        log2(l1),
        log2(l2),
        log2(footprint),
        log2(temp_bytes),
        temp_bytes / register_bytes,
        loops as f64,
        depth as f64,
        f.body.len() as f64,
        log2(acc.flops) - log2(l1),
        acc.vector_parent / w,
        acc.vector_not_innermost / w,
        log2(acc.prefetches),
    ]
}

fn walk(f: &Func, body: &[Stmt], stack: &mut Vec<Frame>, guarded: bool, acc: &mut Acc, loops: &mut usize, depth: &mut usize) {
    for s in body {
        match s {
            Stmt::For(l) => {
                *loops += 1;
                stack.push(Frame { var: l.var, extent: l.extent, kind: l.kind });
                *depth = (*depth).max(stack.len());
                walk(f, &l.body, stack, guarded, acc, loops, depth);
                stack.pop();
            }
            Stmt::If { then, .. } => walk(f, then, stack, true, acc, loops, depth),
            Stmt::Store { buf, index, value } => store(f, *buf, index, value, stack, guarded, acc),
            Stmt::Prefetch { .. } => acc.prefetches += stack.iter().map(|l| l.extent as f64).product::<f64>(),
        }
    }
}

fn store(f: &Func, buf: ir::loops::BufId, index: &[Expr], value: &Expr, stack: &[Frame], guarded: bool, acc: &mut Acc) {
    let exec: f64 = stack.iter().map(|l| l.extent as f64).product();
    let vector = stack.iter().rposition(|l| l.kind == LoopKind::Vectorized);
    let vec_len = vector.map(|i| stack[i].extent as f64).unwrap_or(1.0);
    let unroll: f64 = stack.iter().filter(|l| l.kind == LoopKind::Unrolled).map(|l| l.extent as f64).product();
    // The loop whose consecutive iterations matter: the vector loop, else the innermost.
    let along = vector.or_else(|| stack.iter().rposition(|l| l.extent > 1));
    let inner_serial = stack.iter().rev().find(|l| l.kind == LoopKind::Serial || l.kind == LoopKind::Parallel).map(|l| l.extent);
    let mut n_loads = 0.0;
    let mut ops = 0.0;
    count(value, &mut n_loads, &mut ops);
    let classify = |b: ir::loops::BufId, idx: &[Expr]| -> u8 {
        match along {
            Some(i) => match stride(f, b, idx, stack[i].var) {
                Some(0) => 0,
                Some(1) | Some(-1) => 1,
                _ => 2,
            },
            None => 0,
        }
    };
    let mut classes = [0.0f64; 3];
    value.walk(&mut |e| {
        if let Expr::Load { buf, index } = e {
            classes[classify(*buf, index) as usize] += exec;
        }
    });
    let store_class = classify(buf, index);
    acc.stores += exec;
    acc.vector_stores += exec / vec_len;
    acc.loads += exec * n_loads;
    acc.vector_ops += exec * ops / vec_len;
    acc.vector_len += exec * vec_len.log2();
    acc.unroll_len += exec * unroll.log2();
    acc.loads_broadcast += classes[0];
    acc.loads_contiguous += classes[1];
    acc.loads_strided += classes[2];
    acc.stores_contiguous += if store_class == 1 { exec } else { 0.0 };
    acc.stores_strided += if store_class == 2 { exec } else { 0.0 };
    acc.guarded += if guarded { exec } else { 0.0 };
    acc.temps += if f.buffer(buf).kind == BufKind::Temp { exec } else { 0.0 };
    acc.iterations += exec / (vec_len * unroll);
    acc.inner_serial += exec * log2(inner_serial.unwrap_or(1) as f64);
    acc.flops += exec * ops;
    if let Some(i) = vector {
        let parent = stack[..i].iter().rev().find(|l| l.kind != LoopKind::Unrolled).map(|l| l.extent).unwrap_or(1);
        acc.vector_parent += exec * log2(parent as f64);
        acc.vector_not_innermost += if i + 1 < stack.len() { exec } else { 0.0 };
    }
}

/// Loads and arithmetic operations of a value (index arithmetic not counted).
fn count(e: &Expr, loads: &mut f64, ops: &mut f64) {
    match e {
        Expr::Load { .. } => *loads += 1.0,
        Expr::Binary { a, b, .. } => {
            *ops += 1.0;
            count(a, loads, ops);
            count(b, loads, ops);
        }
        Expr::Call { args, .. } => {
            *ops += 1.0;
            args.iter().for_each(|a| count(a, loads, ops));
        }
        Expr::Select { cond, a, b } => {
            *ops += 1.0;
            count(cond, loads, ops);
            count(a, loads, ops);
            count(b, loads, ops);
        }
        Expr::Cast { x, .. } => count(x, loads, ops),
        _ => {}
    }
}

/// Integer value of an index expression with `var` = `at` and every other variable 0.
fn eval(e: &Expr, var: VarId, at: i64) -> Option<i64> {
    Some(match e {
        Expr::Int(i) => *i,
        Expr::Var(v) => {
            if *v == var {
                at
            } else {
                0
            }
        }
        Expr::Binary { op, a, b } => {
            let (a, b) = (eval(a, var, at)?, eval(b, var, at)?);
            match op {
                BinOp::Add => a.wrapping_add(b),
                BinOp::Sub => a.wrapping_sub(b),
                BinOp::Mul => a.wrapping_mul(b),
                BinOp::Div if b != 0 => a.div_euclid(b),
                BinOp::Rem if b != 0 => a.rem_euclid(b),
                BinOp::Min => a.min(b),
                BinOp::Max => a.max(b),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// The distance in elements between the accesses of consecutive iterations of `var`.
fn stride(f: &Func, b: ir::loops::BufId, index: &[Expr], var: VarId) -> Option<i64> {
    let shape = &f.buffer(b).shape;
    let mut strides = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as i64;
    }
    let offset = |at: i64| -> Option<i64> { index.iter().zip(&strides).try_fold(0i64, |o, (e, s)| Some(o + eval(e, var, at)? * s)) };
    Some(offset(1)? - offset(0)?)
}

/// The range of an index expression when the variables in `ranges` take their ranges and
/// the others are 0; None when unknown (a loaded index).
fn interval(e: &Expr, ranges: &[(VarId, i64)]) -> Option<(i64, i64)> {
    Some(match e {
        Expr::Int(i) => (*i, *i),
        Expr::Var(v) => match ranges.iter().find(|r| r.0 == *v) {
            Some(&(_, extent)) => (0, extent - 1),
            None => (0, 0),
        },
        Expr::Binary { op, a, b } => {
            let (a, b) = (interval(a, ranges)?, interval(b, ranges)?);
            match op {
                BinOp::Add => (a.0 + b.0, a.1 + b.1),
                BinOp::Sub => (a.0 - b.1, a.1 - b.0),
                BinOp::Mul => {
                    let p = [a.0 * b.0, a.0 * b.1, a.1 * b.0, a.1 * b.1];
                    (*p.iter().min()?, *p.iter().max()?)
                }
                BinOp::Div if b.0 == b.1 && b.0 > 0 => (a.0.div_euclid(b.0), a.1.div_euclid(b.0)),
                BinOp::Rem if b.0 == b.1 && b.0 > 0 => {
                    if a.0.div_euclid(b.0) == a.1.div_euclid(b.0) {
                        (a.0.rem_euclid(b.0), a.1.rem_euclid(b.0))
                    } else {
                        (0, b.0 - 1)
                    }
                }
                BinOp::Min => (a.0.min(b.0), a.1.min(b.1)),
                BinOp::Max => (a.0.max(b.0), a.1.max(b.1)),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// Bytes a statement touches in one execution, the loops in `ranges` (and those inside it)
/// running over their extents: per buffer the largest box any one access covers.
fn stmt_footprint(f: &Func, s: &Stmt, ranges: &[(VarId, i64)]) -> f64 {
    let mut inner = ranges.to_vec();
    s.walk(&mut |s| {
        if let Stmt::For(l) = s {
            inner.push((l.var, l.extent));
        }
    });
    let mut per_buffer = vec![0.0f64; f.buffers.len()];
    let mut visit = |b: ir::loops::BufId, index: &[Expr]| {
        let shape = &f.buffer(b).shape;
        let bytes: f64 = index
            .iter()
            .zip(shape)
            .map(|(e, &n)| match interval(e, &inner) {
                Some((lo, hi)) => ((hi - lo + 1).max(1) as f64).min(n as f64),
                None => n as f64,
            })
            .product::<f64>()
            * f.buffer(b).dtype.size_bytes() as f64;
        per_buffer[b.index()] = per_buffer[b.index()].max(bytes);
    };
    s.walk(&mut |s| {
        if let Stmt::Store { buf, index, .. } = s {
            visit(*buf, index);
        }
    });
    s.walk_exprs(&mut |e| {
        if let Expr::Load { buf, index } = e {
            visit(*buf, index);
        }
    });
    per_buffer.iter().sum()
}

/// Estimated bytes moved into a cache of `size` bytes by one execution of `body`.
fn traffic(f: &Func, body: &[Stmt], ranges: &[(VarId, i64)], size: f64) -> f64 {
    body.iter()
        .map(|s| match s {
            Stmt::For(l) => {
                let fp = stmt_footprint(f, s, ranges);
                if fp <= size {
                    fp
                } else {
                    // Each iteration brings its own working set: the loop's variable is fixed
                    // within an iteration.
                    l.extent as f64 * traffic(f, &l.body, ranges, size)
                }
            }
            Stmt::If { then, .. } => traffic(f, then, ranges, size),
            Stmt::Store { .. } => stmt_footprint(f, s, ranges),
            // What a prefetch brings in, the load it serves counts.
            Stmt::Prefetch { .. } => 0.0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use passes::schedule::Trace;

    const MATMUL: &str = r#"func "matmul" {
  param %a: f32[64,256]
  param %b: f32[256,64]
  param %y: f32[64,64]
  for m in 0..64 {
    for n in 0..64 {
      %y[m, n] = 0.0
      for k in 0..256 {
        %y[m, n] = %y[m, n] + %a[m, k] * %b[k, n]
      }
    }
  }
}"#;

    fn get(v: &[f64], name: &str) -> f64 {
        v[NAMES.iter().position(|n| *n == name).unwrap()]
    }

    #[test]
    fn vectorizing_changes_lengths_and_strides() {
        let f = ir::loops::parse_func(MATMUL).unwrap();
        let caches = Caches { l1: 32768.0, l2: 1048576.0 };
        let plain = features(&f, caches, 16);
        assert_eq!(plain.len(), NAMES.len());
        let trace = Trace::from_json(r#"[{"op":"split","loop":"n","factor":16},{"op":"reorder","loops":["m","n_o","n_i"]},{"op":"vectorize","loop":"n_i"},{"op":"cache_write","buffer":"y","at":"n_o"},{"op":"fuse","outer":"m","inner":"n_o"},{"op":"parallel","loop":"m_n_o"}]"#).unwrap();
        let g = trace.apply(&f).unwrap();
        let tuned = features(&g, caches, 16);
        assert_eq!(get(&plain, "vector_len"), 0.0);
        assert!((get(&tuned, "vector_len") - 4.0).abs() < 1e-9, "log2 16");
        // Unvectorized, the innermost loop is k: a[m, k] is contiguous, b[k, n] strided.
        assert!(get(&plain, "loads_strided") > 0.0);
        // Vectorized along n: b[k, n] is contiguous and a[m, k] a broadcast.
        assert_eq!(get(&tuned, "loads_strided"), 0.0);
        assert!(get(&tuned, "loads_broadcast") > 0.0);
        assert_eq!(get(&tuned, "log_parallel_extent"), (1.0 + 256.0f64).log2());
        assert!(get(&tuned, "log_vector_stores") < get(&plain, "log_vector_stores"));
        // 64 KiB of a and b each: the whole program does not fit a 32 KiB L1.
        assert!(get(&plain, "log_l1_traffic") > get(&plain, "log_footprint"));
        assert!(get(&plain, "log_l2_traffic") <= get(&plain, "log_footprint") + 1e-9);
    }
}

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
/// invocations). Falls back from the register-tiled schedule to the plain one, then to the
/// empty trace (every nest in one invocation).
pub fn gpu_default_schedule(func: &Func, _vector_width: usize) -> Trace {
    let candidates = [bound(func, true), bound(func, false)];
    candidates.into_iter().flatten().find(|t| t.apply(func).is_ok()).unwrap_or_default()
}

fn name(f: &Func, l: &Loop) -> String {
    f.vars[l.var.index()].clone()
}

fn bound(f: &Func, register_tile: bool) -> Option<Trace> {
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
        let names: Vec<String> = chain[..parallel].iter().map(|l| name(f, l)).collect();
        let extent: i64 = chain[..parallel].iter().map(|l| l.extent).product();
        let mut fused = names[0].clone();
        for n in &names[1..] {
            steps.push(Primitive::Fuse { outer: fused.clone(), inner: n.clone() });
            fused = format!("{fused}_{n}");
        }
        let size = WORKGROUP.min(extent);
        steps.push(Primitive::Split { loop_: fused.clone(), factor: size });
        let (block, thread) = (format!("{fused}_o"), format!("{fused}_i"));
        steps.push(Primitive::Bind { loop_: block, to: "workgroup".into() });
        steps.push(Primitive::Bind { loop_: thread.clone(), to: "invocation".into() });
        // A reduction under the invocation loop accumulates in a register, not in memory.
        let below = &chain[parallel - 1].body;
        if register_tile && extent % size == 0 && below.iter().any(|s| matches!(s, Stmt::For(_))) {
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

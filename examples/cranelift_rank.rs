//! Does cranelift rank the tuner's schedule candidates as LLVM does? For a few tasks of a
//! model, random candidates of the tuner's space are built with both backends and timed in
//! this process on the same arguments, one thread; prints each task's Spearman rank
//! correlation of the run times, whether LLVM's best candidate is among cranelift's best
//! three, and the slowdown of picking cranelift's best instead of LLVM's.
//!
//!   cargo run --release --example cranelift_rank -- MODEL.onnx [TASKS] [CANDIDATES] [SEED]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::path::Path;
use std::time::Instant;

use ir::loops::{Func, LoopKind, Stmt};

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64);

/// Median seconds of `runs` calls after two warm-up calls.
fn time(kernel: KernelFn, args: &[*mut u8], end: i64, runs: usize) -> f64 {
    let call = || unsafe { kernel(args.as_ptr(), 0, end) };
    call();
    call();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            call();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    for (rank, &i) in idx.iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// 64-byte aligned, zeroed argument buffers for `f`'s parameters, filled with small values.
fn arguments(f: &Func) -> Vec<(*mut u8, Layout)> {
    f.params()
        .iter()
        .map(|&p| {
            let b = f.buffer(p);
            let bytes = b.shape.iter().product::<usize>().max(1) * b.dtype.size_bytes();
            let layout = Layout::from_size_align(bytes.next_multiple_of(64) + 64, 64).expect("a valid layout");
            let ptr = unsafe { alloc_zeroed(layout) };
            if b.dtype == ir::DType::F32 {
                let xs = unsafe { std::slice::from_raw_parts_mut(ptr as *mut f32, bytes / 4) };
                for (i, x) in xs.iter_mut().enumerate() {
                    *x = ((i * 7919) % 101) as f32 / 101.0 - 0.5;
                }
            }
            (ptr, layout)
        })
        .collect()
}

fn extent(f: &Func) -> i64 {
    match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => l.extent,
        _ => 1,
    }
}

fn main() -> Result<(), String> {
    let a: Vec<String> = std::env::args().collect();
    let model = a.get(1).ok_or("usage: cranelift_rank MODEL.onnx [TASKS] [CANDIDATES] [SEED]")?;
    let n_tasks: usize = a.get(2).map_or(Ok(4), |s| s.parse()).map_err(|e| format!("TASKS: {e}"))?;
    let n_cand: usize = a.get(3).map_or(Ok(20), |s| s.parse()).map_err(|e| format!("CANDIDATES: {e}"))?;
    let seed: u64 = a.get(4).map_or(Ok(1), |s| s.parse()).map_err(|e| format!("SEED: {e}"))?;
    let g = frontend::load_onnx(Path::new(model)).map_err(|e| e.to_string())?;
    let target = llvm_backend::Target::host();
    let mut tasks = tune::extract_tasks(&g, &target, true).map_err(|e| e.to_string())?;
    // The tasks that weigh most in the model's run time, by flops.
    tasks.sort_by_key(|t| std::cmp::Reverse(t.flops * t.weight as u64));
    let dir = std::env::temp_dir().join(format!("chanasc-rank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut rng = tune::rng::Rng::new(seed);
    let mut rhos = Vec::new();
    println!("task | candidates | Spearman rho | LLVM's best in cranelift's top 3 | LLVM time of cranelift's pick / LLVM's best");
    for task in tasks.iter().take(n_tasks) {
        let mut search = tune::search::TaskSearch::new(&task.func, &task.constants, target.vector_width(), tune::features::Caches::host());
        let cands = search.propose(None, &mut rng, n_cand, 1.0);
        let (mut t_llvm, mut t_cl) = (Vec::new(), Vec::new());
        for (i, c) in cands.iter().enumerate() {
            let Ok(f) = c.trace.apply(&task.func) else { continue };
            let args = arguments(&f);
            let ptrs: Vec<*mut u8> = args.iter().map(|a| a.0).collect();
            let lib = tune::measure::build::build_library(&f, &target, &dir, &format!("c{i}"))?;
            let path = std::ffi::CString::new(lib.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
            let sym = std::ffi::CString::new(tune::measure::build::SYMBOL).map_err(|e| e.to_string())?;
            let (l, c) = unsafe {
                let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if h.is_null() {
                    return Err(format!("dlopen {}", lib.display()));
                }
                let k: KernelFn = std::mem::transmute(libc::dlsym(h, sym.as_ptr()));
                let jit =
                    cranelift_backend::compile(&[cranelift_backend::Kernel { symbol: "k".into(), func: &f }]).map_err(|e| e.to_string())?;
                let ck = jit.entry(0).ok_or("no kernel")?;
                // Interleaved, so that a slow spell of the machine falls on both alike.
                let (mut l, mut c) = (Vec::new(), Vec::new());
                for _ in 0..3 {
                    l.push(time(k, &ptrs, extent(&f), 5));
                    c.push(time(ck, &ptrs, extent(&f), 5));
                }
                libc::dlclose(h);
                l.sort_by(f64::total_cmp);
                c.sort_by(f64::total_cmp);
                (l[1], c[1])
            };
            let _ = std::fs::remove_file(&lib);
            for (p, layout) in args {
                unsafe { dealloc(p, layout) };
            }
            t_llvm.push(l);
            t_cl.push(c);
        }
        if t_llvm.len() < 3 {
            continue;
        }
        let rho = spearman(&t_llvm, &t_cl);
        let best_llvm = ranks(&t_llvm).iter().position(|&r| r == 0.0).unwrap_or(0);
        let cl_ranks = ranks(&t_cl);
        let cl_pick = cl_ranks.iter().position(|&r| r == 0.0).unwrap_or(0);
        let in_top3 = cl_ranks[best_llvm] < 3.0;
        println!(
            "{} | {} | {rho:.3} | {} | {:.2}",
            task.name,
            t_llvm.len(),
            if in_top3 { "yes" } else { "no" },
            t_llvm[cl_pick] / t_llvm[best_llvm]
        );
        rhos.push(rho);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !rhos.is_empty() {
        println!("mean Spearman rho over {} tasks: {:.3}", rhos.len(), rhos.iter().sum::<f64>() / rhos.len() as f64);
    }
    Ok(())
}

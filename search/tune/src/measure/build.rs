//! Builds one scheduled program into a shared library for a worker to load: LLVM to an
//! object, then the target's C compiler links it (with libm, which kernels may call).

use std::path::{Path, PathBuf};

use ir::loops::Func;
use llvm_backend::{Kernel, Target};

use super::job::{Job, Outputs, Timing};
use super::parallel_extent;
use crate::inputs::param_specs;

/// The kernel's symbol in every library the tuner builds.
pub const SYMBOL: &str = "chanasc_tune_kernel";

/// Builds `func` as `dir/{name}.so`.
pub fn build_library(func: &Func, target: &Target, dir: &Path, name: &str) -> Result<PathBuf, String> {
    let kernels = [Kernel { symbol: SYMBOL.into(), func }];
    let object = llvm_backend::compile_object(&kernels, &[], target).map_err(|e| format!("llvm: {e}"))?;
    let (obj, lib) = (format!("{name}.o"), format!("{name}.so"));
    std::fs::write(dir.join(&obj), object).map_err(|e| format!("{}: {e}", dir.join(&obj).display()))?;
    let linked = runtime::link::link_shared(target.arch, dir, &lib, &[&obj]).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(dir.join(&obj));
    linked.map(|_| dir.join(lib))
}

/// The job that runs `func` from `library` (a path on the worker's machine), with the
/// parameters `cold` evicted before each timed run.
pub fn job(func: &Func, library: &str, seed: u64, timing: &Timing, outputs: Option<Outputs>, cold: &[usize]) -> Job {
    Job {
        library: library.to_string(),
        symbol: SYMBOL.into(),
        params: param_specs(func),
        parallel_extent: parallel_extent(func),
        seed,
        timing: timing.clone(),
        cold: cold.to_vec(),
        outputs,
        fault: None,
    }
}

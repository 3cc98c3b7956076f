//! Runs a (training or evaluation) graph: on the reference interpreter, or compiled by the
//! LLVM backend for this machine and loaded into the process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ir::{Graph, Tensor};

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Interp,
    Llvm { threads: usize },
}

impl Backend {
    /// `interp` or `llvm`; `threads` applies to llvm.
    pub fn parse(name: &str, threads: usize) -> Result<Backend> {
        match name {
            "interp" => Ok(Backend::Interp),
            "llvm" => Ok(Backend::Llvm { threads: threads.max(1) }),
            other => Err(TrainError::Invalid(format!("unknown backend {other:?}; available: interp, llvm"))),
        }
    }
}

/// A graph ready to run many times.
pub enum Engine {
    Interp(Graph),
    Native(runtime::LoadedModel),
}

static BUILDS: AtomicUsize = AtomicUsize::new(0);

impl Engine {
    pub fn build(g: &Graph, backend: Backend) -> Result<Engine> {
        match backend {
            Backend::Interp => Ok(Engine::Interp(g.clone())),
            Backend::Llvm { threads } => {
                let dir: PathBuf =
                    std::env::temp_dir().join(format!("chanasc-train-{}-{}", std::process::id(), BUILDS.fetch_add(1, Ordering::Relaxed)));
                let opts = runtime::CompileOptions {
                    target: llvm_backend::Target::host(),
                    threads,
                    prefix: "model".into(),
                    shared_library: true,
                    optimize: true,
                    dtype: ir::DType::F32,
                    f16_activations: false,
                };
                let built = runtime::compile(g, &opts, &dir);
                let loaded = built.and_then(|_| {
                    let types = |vs: &[ir::ValueId]| vs.iter().map(|&v| g.ty(v).clone()).collect::<Vec<_>>();
                    runtime::LoadedModel::load(&dir.join("libmodel.so"), "model", threads, types(&g.inputs), types(&g.outputs))
                });
                // The library stays mapped after its file is gone.
                let _ = std::fs::remove_dir_all(&dir);
                Ok(Engine::Native(loaded?))
            }
        }
    }

    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        match self {
            Engine::Interp(g) => Ok(interp::run(g, inputs)?),
            Engine::Native(m) => Ok(m.run(inputs)?),
        }
    }
}

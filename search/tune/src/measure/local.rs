//! Runs candidates in worker processes on this machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ir::loops::Func;
use llvm_backend::Target;

use super::build::{build_library, job};
use super::job::{Fault, Outputs, Reply, Timing};
use super::{reply, run_with_timeout, timed, Measurer, Stats};
use crate::inputs::written_params;
use crate::task::{cold_params, Task};

pub struct LocalMeasurer {
    pub target: Target,
    /// The worker command: a program and its arguments (`chanasc tune-worker`).
    pub worker: Vec<String>,
    /// Wall-clock limit of one worker run.
    pub timeout: Duration,
    pub timing: Timing,
    /// Test hook: called with the number of each timing job (from 0; output checks are not
    /// counted), may make that job's worker crash, hang or fail.
    pub inject: Option<Box<dyn FnMut(usize) -> Option<Fault>>>,
    dir: PathBuf,
    jobs: usize,
    timings: usize,
}

impl LocalMeasurer {
    /// A measurer with a scratch folder of its own under the system's temporary folder.
    pub fn new(target: Target, worker: Vec<String>) -> Result<LocalMeasurer, String> {
        if worker.is_empty() {
            return Err("no worker command".into());
        }
        let dir = std::env::temp_dir().join(format!("chanasc-tune-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(LocalMeasurer { target, worker, timeout: Duration::from_secs(10), timing: Timing::default(), inject: None, dir, jobs: 0, timings: 0 })
    }

    fn run(&mut self, func: &Func, seed: u64, outputs_wanted: bool, cold: &[usize]) -> Result<Reply, String> {
        let n = self.jobs;
        self.jobs += 1;
        let name = format!("k{n}");
        let library = build_library(func, &self.target, &self.dir, &name)?;
        let out_path = self.dir.join(format!("{name}.out"));
        let outputs = outputs_wanted.then(|| Outputs { path: out_path.display().to_string(), written: written_params(func) });
        let mut job = job(func, &library.display().to_string(), seed, &self.timing, outputs, cold);
        if !outputs_wanted {
            job.fault = self.inject.as_mut().and_then(|f| f(self.timings));
            self.timings += 1;
        }
        let text = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.worker[0]);
        cmd.args(&self.worker[1..]);
        let result = run_with_timeout(&mut cmd, &text, self.timeout).and_then(reply);
        let _ = std::fs::remove_file(&library);
        result
    }
}

/// A number distinguishing measurers made by one process.
pub(crate) fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Measurer for LocalMeasurer {
    fn measure(&mut self, task: &Task, scheduled: &Func) -> Result<Stats, String> {
        timed(self.run(scheduled, 1, false, &cold_params(&task.func, &task.constants)))
    }

    fn outputs(&mut self, _task: &Task, scheduled: &Func, seed: u64) -> Result<Vec<u8>, String> {
        let n = self.jobs;
        self.run(scheduled, seed, true, &[])?;
        let path = self.dir.join(format!("k{n}.out"));
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()));
        let _ = std::fs::remove_file(&path);
        bytes
    }
}

impl Drop for LocalMeasurer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

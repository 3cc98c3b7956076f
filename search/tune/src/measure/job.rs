//! What the parent sends a worker (one JSON object on stdin) and what the worker answers (one
//! JSON line on stdout).

use serde::{Deserialize, Serialize};

use crate::inputs::ParamSpec;

/// Run one compiled kernel: time it, or run it once and save what it writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The shared library holding the kernel, as a path on the machine that runs the job.
    pub library: String,
    pub symbol: String,
    pub params: Vec<ParamSpec>,
    /// The extent of the kernel's outermost parallel loop; run whole, on one thread.
    pub parallel_extent: Option<i64>,
    /// Seed of the arguments (see `inputs`).
    pub seed: u64,
    pub timing: Timing,
    /// Parameters evicted from every cache level before each timed run (a task's big
    /// weights, see `task::cold_params`); each run is then timed alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cold: Vec<usize>,
    /// When set, run once and write the written parameters' bytes (in parameter order) to
    /// `path` instead of timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    /// Test hook: make the worker crash, hang or fail after loading the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Each sample repeats the kernel until it has run this long, so that short kernels are
    /// not timed below the clock's resolution.
    pub min_repeat_s: f64,
    /// Samples; the median is the result.
    pub repeats: usize,
    /// Runs before timing (caches, page faults, frequency).
    pub warmup_s: f64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing { min_repeat_s: 0.002, repeats: 15, warmup_s: 0.01 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outputs {
    pub path: String,
    pub written: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// abort(): the worker dies of SIGABRT.
    Abort,
    /// Sleeps forever: the parent's time limit must end it.
    Hang,
    /// Answers an error.
    Fail,
}

/// Latency statistics of one candidate, in seconds per run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub median_s: f64,
    pub mean_s: f64,
    pub std_s: f64,
    pub runs: usize,
}

/// The worker's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    Timed(Stats),
    Written { written_bytes: usize },
    Error { error: String },
}

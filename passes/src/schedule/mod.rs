//! Schedules: a schedule is a trace of primitives (split, reorder, fuse, unroll, vectorize,
//! parallel, cache_write, bind, stage, prefetch, ...) that replays deterministically on the unscheduled program.
//!
//! A trace is JSON, one object per step: `[{"op": "split", "loop": "ow", "factor": 16},
//! {"op": "vectorize", "loop": "ow_i"}]`. Each primitive checks that it applies and refuses
//! with an error naming the step, the primitive and the reason.

mod defaults;
mod gpu;
mod primitives;
mod prefetch;
pub mod space;
mod stage;

use ir::loops::Func;
use serde::{Deserialize, Serialize};

use crate::error::PassError;

pub use defaults::default_schedule;
pub use gpu::{gpu_default_schedule, gpu_schedule_candidates};
pub use space::{Knob, Point, Space};

/// One schedule primitive with its arguments. Loops are named by their variables; new
/// loops get derived names (`split` of `ow` makes `ow_o` and `ow_i`, `fuse` of `a` and `b`
/// makes `a_b`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Primitive {
    /// `loop` becomes `loop_o` (outer) and `loop_i` (inner, extent `factor`); a factor that
    /// does not divide the extent adds a guard.
    Split {
        #[serde(rename = "loop")]
        loop_: String,
        factor: i64,
    },
    /// Permutes perfectly nested loops into the given order (outermost first).
    Reorder { loops: Vec<String> },
    /// Merges `outer` and the loop `inner` that is its only statement into `outer_inner`.
    Fuse { outer: String, inner: String },
    Unroll {
        #[serde(rename = "loop")]
        loop_: String,
    },
    Vectorize {
        #[serde(rename = "loop")]
        loop_: String,
    },
    /// Runs the loop's iterations on threads; the loop must be the program's outermost.
    Parallel {
        #[serde(rename = "loop")]
        loop_: String,
    },
    /// Accumulates a reduction into `buffer` in a temporary tile held inside loop `at`: the
    /// loops between `at` and the initial store become the tile, the reduction loops move
    /// outside the tile, and the tile is written back once at the end (applying any stores
    /// that follow the reduction, a fused epilogue).
    CacheWrite { buffer: String, at: String },
    /// Splits two perfectly nested loops (`outer` by `outer_factor`, `inner` by
    /// `inner_factor`) and orders them outer_o, inner_o, outer_i, inner_i.
    Tile { outer: String, inner: String, outer_factor: i64, inner_factor: i64 },
    /// Moves the loop nest that computes temporary `buffer` into loop `at` of the nest that
    /// reads it (as its first statement), so that it is computed where it is used.
    ComputeAt { buffer: String, at: String },
    /// Replaces every read of temporary `buffer` by the expression stored into it and drops
    /// the loop nest that computed it.
    Inline { buffer: String },
    /// Stores parameter `buffer`'s axis `axis` in blocks of `factor` (NCHW to NCHW[x]c): the
    /// axis becomes the block index, and the index within a block becomes the innermost axis.
    /// The argument is rearranged before the program runs (weights: at compile time).
    LayoutBlock { buffer: String, axis: usize, factor: usize },
    /// Binds a loop to the GPU: `to` is `workgroup` (one workgroup per iteration; a
    /// statement of the program's body) or `invocation` (one invocation per iteration: the
    /// workgroup size; the only statement of a workgroup loop).
    Bind {
        #[serde(rename = "loop")]
        loop_: String,
        to: String,
    },
    /// Stages the box of read-only operand `buffer` that a workgroup reads in one iteration
    /// of loop `at` (inside an invocation loop) in workgroup memory: a cooperative loop nest
    /// copies it into a temporary `buffer_wg` at the start of each iteration (guarded past the
    /// operand's end), and the reads inside `at` index the copy.
    Stage { buffer: String, at: String },
    /// Inside loop `loop`, fetches what the next iteration will read of `buffer` into the
    /// cache while this one runs (weights too big for the caches); see `prefetch.rs`.
    Prefetch {
        buffer: String,
        #[serde(rename = "loop")]
        loop_: String,
    },
}

impl Primitive {
    pub fn name(&self) -> &'static str {
        match self {
            Primitive::Split { .. } => "split",
            Primitive::Reorder { .. } => "reorder",
            Primitive::Fuse { .. } => "fuse",
            Primitive::Unroll { .. } => "unroll",
            Primitive::Vectorize { .. } => "vectorize",
            Primitive::Parallel { .. } => "parallel",
            Primitive::CacheWrite { .. } => "cache_write",
            Primitive::Tile { .. } => "tile",
            Primitive::ComputeAt { .. } => "compute_at",
            Primitive::Inline { .. } => "inline",
            Primitive::LayoutBlock { .. } => "layout_block",
            Primitive::Bind { .. } => "bind",
            Primitive::Stage { .. } => "stage",
            Primitive::Prefetch { .. } => "prefetch",
        }
    }
}

/// A schedule: the primitives in the order they apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Trace(pub Vec<Primitive>);

impl Trace {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
    }

    pub fn from_json(text: &str) -> Result<Trace, PassError> {
        serde_json::from_str(text).map_err(|e| PassError::Schedule { step: 0, primitive: "trace".into(), message: e.to_string() })
    }

    /// Applies every step to a copy of `func`; the result is verified.
    pub fn apply(&self, func: &Func) -> Result<Func, PassError> {
        let mut f = func.clone();
        for (i, p) in self.0.iter().enumerate() {
            primitives::apply(&mut f, p).map_err(|message| PassError::Schedule { step: i, primitive: p.name().into(), message })?;
        }
        ir::loops::verify::verify(&f)?;
        Ok(f)
    }
}

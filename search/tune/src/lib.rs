//! Schedule search (auto-tuning): finds each tensor program's schedule by measurement on
//! the target.
//!
//! - [`task`]: one task per distinct tensor program (structure, shapes, target), weighted by
//!   how often the model runs it;
//! - the space of schedules of a task is `passes::schedule::Space` (knobs read off the loop
//!   structure; a point gives a trace);
//! - [`search`]: evolutionary search over a task's space guided by [`model`], a cost model
//!   (gradient-boosted trees over [`features`] of the scheduled loop IR) retrained as
//!   measurements arrive, with epsilon-greedy exploration, seeded by [`rng`];
//! - [`measure`]: candidates are compiled here and run by a worker process (this machine or
//!   a remote one over SSH) with a time limit, so a crash or a hang fails one candidate only;
//! - [`records`]: every measurement as a JSON line, append-only, reused across models and
//!   runs, which makes tuning resumable and gives `compile --records` its schedules;
//! - [`tuner`]: the loop over tasks and trials; [`progress`] and [`plot`] report it;
//! - [`gpu`]: the wgpu target's schedules, measured on the GPU adapter in this process.

pub mod error;
pub mod features;
pub mod gpu;
pub mod inputs;
pub mod measure;
pub mod model;
pub mod plot;
pub mod progress;
pub mod records;
pub mod rng;
pub mod search;
pub mod task;
pub mod tuner;
pub mod worker;

pub use error::TuneError;
pub use measure::{LocalMeasurer, Measurer, SshMeasurer, Stats};
pub use records::{RecordFile, RecordSchedules};
pub use task::{extract_tasks, Task};
pub use tuner::{tune, TuneOptions, TuneReport};

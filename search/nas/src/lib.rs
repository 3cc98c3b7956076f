//! The Once-for-All MobileNetV3 search space and what the architecture search needs around
//! it: architecture configs, the network builder (ONNX, then graph IR through the frontend),
//! the decomposition of a network into the blocks of a latency table, latency tables in
//! OFA's YAML format, and accuracy oracles; measuring block and network latencies on this
//! machine, building latency tables, and the schedule-blind baseline search (OFA's
//! evolutionary search).
//!
//! `../shared/design/PAPER.md` defines the space; every channel count, key string and
//! encoding here follows it (and OFA's sources where it is silent).

pub mod blocks;
pub mod cosearch;
pub mod build;
pub mod error;
pub mod evolution;
pub mod gpu_measure;
pub mod lut;
pub mod lut_build;
pub mod measure;
pub mod oracle;
pub mod preschedule;
pub mod report;
pub mod rng;
pub mod space;

pub use blocks::{decompose, Block, MbConv};
pub use build::{build_block, build_graph, build_network, MapWeights, RandomWeights, WeightSource};
pub use error::{NasError, Result};
pub use gpu_measure::GpuMeasurer;
pub use lut::{LatencyEntry, LatencyTable};
pub use measure::{BlockMeasurement, BlockMeasurer, HostMeasurer, MeasureOptions, Stats};
pub use oracle::{parse_oracle, Accuracy, AccuracyOracle, OracleOptions};
pub use space::{make_divisible, ArchConfig, Widths};

//! chanasc's transformations of the IR: lowering of graph ops to loop IR tensor programs,
//! the schedule primitives that rewrite them, and the default schedules.

pub mod egraph;
pub mod error;
pub mod graph;
pub mod lower;
pub mod pipeline;
pub mod schedule;

pub use error::PassError;

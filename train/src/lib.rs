//! Training with chanasc's own kernels: reverse-mode autodiff on the graph IR ([`autodiff`]),
//! layers as graph-op compositions ([`layers`]), and running graphs on the interpreter or as
//! native code ([`engine`]).

pub mod autodiff;
pub mod engine;
pub mod error;
pub mod layers;

pub use error::{Result, TrainError};

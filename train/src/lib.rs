//! Training with chanasc's own kernels: reverse-mode autodiff on the graph IR ([`autodiff`]),
//! layers as graph-op compositions ([`layers`]), running graphs on the interpreter or as
//! native code ([`engine`]), and datasets with augmentation ([`data`]).

pub mod autodiff;
pub mod data;
pub mod engine;
pub mod error;
pub mod layers;
pub mod rng;

pub use error::{Result, TrainError};

//! Training with chanasc's own kernels: reverse-mode autodiff on the graph IR ([`autodiff`]),
//! layers as graph-op compositions ([`layers`]), networks that build their training and
//! evaluation graphs ([`model`]), running graphs on the interpreter or as native code
//! ([`engine`]), datasets with augmentation ([`data`]), SGD with a cosine schedule ([`optim`]),
//! safetensors checkpoints ([`checkpoint`]) and the resumable training loop ([`trainer`]).

pub mod autodiff;
pub mod checkpoint;
pub mod data;
pub mod engine;
pub mod error;
pub mod layers;
pub mod model;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod supernet;
pub mod trainer;

pub use error::{Result, TrainError};

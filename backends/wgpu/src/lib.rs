//! chanasc's GPU backend: WGSL compute shaders generated from scheduled loop IR ([`wgsl`]),
//! a model bundle format ([`bundle`]: shaders, weights, a JSON manifest of buffers and
//! dispatches) and its executor on a wgpu device ([`exec`]), which both `chanasc run
//! --backend wgpu` and the standalone runner `chanasc-wgpu-run` use.

pub mod bundle;
pub mod exec;
mod expr;
mod vec4;
pub mod wgsl;

pub use bundle::{Bundle, Manifest};
pub use exec::{Executor, NO_ADAPTER};
pub use wgsl::{compile, Shader};

#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// The program uses something the GPU backend cannot compile.
    #[error("wgpu: program {program}: {message}")]
    Unsupported { program: String, message: String },
    #[error("{0}")]
    NoAdapter(String),
    #[error("wgpu device: {0}")]
    Device(String),
    #[error("{0}")]
    Bundle(String),
    #[error("{0}")]
    Input(String),
}

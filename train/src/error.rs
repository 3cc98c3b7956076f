//! The error type of the training crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Ir(#[from] ir::IrError),
    #[error("interpreter: {0}")]
    Interp(#[from] interp::InterpError),
    #[error("runtime: {0}")]
    Runtime(#[from] runtime::RuntimeError),
    /// Autodiff met an op (or an op configuration) it has no gradient rule for.
    #[error("autodiff: node {node} ({op}): {message}")]
    Unsupported { node: String, op: String, message: String },
    #[error("{0}")]
    Invalid(String),
    /// A data or checkpoint file that is missing or malformed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn file_err(path: &std::path::Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::File { path: path.display().to_string(), message: message.to_string() }
}

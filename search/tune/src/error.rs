//! Errors of tuning: one line each, naming the file or the step at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TuneError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Pass(#[from] passes::PassError),
    #[error("{0}")]
    Measure(String),
}

pub type Result<T> = std::result::Result<T, TuneError>;

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> TuneError {
    TuneError::Io { path: path.display().to_string(), message: e.to_string() }
}

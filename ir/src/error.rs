//! The error type of the IR crate.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// An op was given inputs its shape rule rejects.
    #[error("{op}: {message}")]
    Shape { op: String, message: String },
    /// The graph breaks one of the verifier's invariants.
    #[error("invalid graph: {0}")]
    Invalid(String),
    /// The text could not be parsed.
    #[error("line {line}, column {column}: {message}")]
    Parse { line: usize, column: usize, message: String },
    /// Tensor data does not fit its declared type.
    #[error("tensor: {0}")]
    Tensor(String),
}

pub type Result<T> = std::result::Result<T, IrError>;

/// Shorthand for a shape-rule failure of op `op`.
pub(crate) fn shape_err<T>(op: &str, message: impl Into<String>) -> Result<T> {
    Err(IrError::Shape { op: op.to_string(), message: message.into() })
}

//! The error type of the frontend: every message names the file, node or input at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FrontendError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    #[error("unsupported op {op_type} (node \"{node}\", opset {opset})")]
    Unsupported { op_type: String, node: String, opset: i64 },
    #[error("node \"{node}\" ({op_type}): {message}")]
    Node { node: String, op_type: String, message: String },
    #[error("model: {0}")]
    Model(String),
    #[error("npy: {0}")]
    Npy(String),
}

pub type Result<T> = std::result::Result<T, FrontendError>;

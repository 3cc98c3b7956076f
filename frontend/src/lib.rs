//! ONNX import into the graph IR, and `.npy` reading and writing.
//!
//! The importer folds every computation on constants (ONNX shape subgraphs, batch-norm
//! parameters, transposed gemm weights), so the graph it returns has static shapes and only
//! the ops that depend on the model's inputs.

pub mod error;
mod import;
pub mod examples;
pub mod npy;
pub mod onnx_builder;
mod ops;
pub mod proto;

pub use error::{FrontendError, Result};
pub use import::{import_model, import_model_with, load_onnx, ImportOptions, summarize_onnx, tensor_from_proto, OnnxSummary, MAX_OPSET, MIN_OPSET};

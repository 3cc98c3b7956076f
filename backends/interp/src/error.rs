//! The error type of the interpreter.

use ir::{DType, IrError, TensorType};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum InterpError {
    /// A graph input was given a tensor of another type.
    #[error("input \"{name}\": expected {expected}, got {got}")]
    InputMismatch {
        name: String,
        expected: TensorType,
        got: TensorType,
    },
    /// `run` was given the wrong number of inputs.
    #[error("the graph takes {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    /// A constant the graph needs has no data (it was left external).
    #[error("weight {0} has no data")]
    MissingWeight(String),
    /// An error while evaluating a node; `node` is its name, or its result's id (`%N`).
    #[error("node {node} ({op}): {source}")]
    Node {
        node: String,
        op: String,
        source: Box<InterpError>,
    },
    /// The op is not evaluated on this element type.
    #[error("{op} is not evaluated on {dtype}")]
    Unsupported { op: String, dtype: DType },
    /// The op's shape rule rejects the operands.
    #[error(transparent)]
    Shape(#[from] IrError),
    /// The caller's result type is not the one the op's shape rule gives for these operands.
    #[error("result type given as {got}, but the operands give {expected}")]
    OutputMismatch {
        expected: TensorType,
        got: TensorType,
    },
    /// A tensor whose data does not fill its shape.
    #[error("a tensor of shape {shape:?} holds {len} elements")]
    MalformedTensor { shape: Vec<usize>, len: usize },
    /// A gather index outside its axis.
    #[error("index {index} is out of range for axis {axis} of extent {extent}")]
    IndexOutOfRange {
        index: i64,
        axis: usize,
        extent: usize,
    },
    /// Integer division (or a negative integer power) of zero.
    #[error("integer division by zero")]
    DivisionByZero,
    /// Anything else that makes an op or a graph impossible to evaluate: attributes too
    /// large to compute with, a reduction with no element to pick, an ill-formed graph.
    #[error("{0}")]
    Invalid(String),
}

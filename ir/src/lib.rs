//! chanasc's intermediate representations.
//!
//! The graph IR ([`graph`]) is a dataflow graph of primitive tensor ops with static shapes;
//! every graph prints to text and parses back to the same text ([`text`]).

pub mod error;
pub mod graph;
pub mod loops;
pub mod tensor;
pub mod text;
pub mod types;

pub use error::IrError;
pub use graph::{Fused, FusedRef, FusedStep, Graph, Node, NodeId, Op, ValueDef, ValueId, ValueInfo, WeightId};
pub use tensor::{f16, Tensor, TensorData};
pub use types::{DType, TensorType};

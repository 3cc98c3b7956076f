//! The error type of the passes.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PassError {
    /// A graph op that has no lowering (names the node and the op).
    #[error("cannot lower {op} (at \"{node}\"): {message}")]
    Lowering { node: String, op: String, message: String },
    /// A schedule primitive that does not apply (names the primitive and the reason).
    #[error("schedule step {step} ({primitive}): {message}")]
    Schedule { step: usize, primitive: String, message: String },
    #[error(transparent)]
    Ir(#[from] ir::IrError),
}

//! Errors of the LLVM backend, each naming the kernel, buffer or symbol at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LlvmError {
    /// The requested target cannot be built by the linked LLVM.
    #[error("target {target}: {msg}")]
    Target { target: String, msg: String },
    /// Two kernels or constants were given the same symbol.
    #[error("symbol {0} is defined twice")]
    DuplicateSymbol(String),
    /// A symbol that is empty or names a function the generated code calls.
    #[error("symbol {symbol:?} cannot be used: {why}")]
    BadSymbol { symbol: String, why: &'static str },
    /// A construct the backend does not generate code for.
    #[error("kernel {symbol} (func \"{func}\"): {what}")]
    Unsupported { symbol: String, func: String, what: String },
    /// LLVM rejected the IR built for a kernel: a bug in this backend.
    #[error("kernel {symbol} (func \"{func}\"): LLVM IR builder failed: {msg}")]
    Builder { symbol: String, func: String, msg: String },
    /// The module failed LLVM's verifier: a bug in this backend.
    #[error("LLVM module does not verify: {0}")]
    Verify(String),
    /// Optimization or object emission failed.
    #[error("LLVM {stage} failed: {msg}")]
    Emit { stage: &'static str, msg: String },
}

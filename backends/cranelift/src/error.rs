use thiserror::Error;

#[derive(Debug, Error)]
pub enum CraneliftError {
    #[error("cranelift set-up: {0}")]
    Setup(String),
    #[error("kernel symbol {symbol:?} is not allowed: {why}")]
    BadSymbol { symbol: String, why: &'static str },
    #[error("kernel symbol {0:?} is given twice")]
    DuplicateSymbol(String),
    #[error("{symbol} ({func}): unsupported by the cranelift backend: {what}")]
    Unsupported { symbol: String, func: String, what: String },
    #[error("{symbol} ({func}): code generation failed: {msg}")]
    Gen { symbol: String, func: String, msg: String },
    #[error("{symbol}: cranelift: {msg}")]
    Module { symbol: String, msg: String },
}

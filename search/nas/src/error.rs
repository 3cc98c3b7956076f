//! The error type of the NAS crate: every message names the file, line, key or field at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NasError {
    /// An architecture config outside the search space.
    #[error("invalid architecture: {0}")]
    Arch(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Malformed input in a file (`line` is 1-based; 0 when the file as a whole is at fault,
    /// and then it is not printed).
    #[error("{path}{}: {message}", if *line > 0 { format!(":{line}") } else { String::new() })]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
    /// A block whose key the latency table lacks.
    #[error("the latency table has no entry {key}")]
    MissingKey { key: String },
    #[error("accuracy oracle: {0}")]
    Oracle(String),
    #[error("building the network: {0}")]
    Build(String),
    /// Compiling, loading or running a graph to measure its latency.
    #[error("measuring: {0}")]
    Measure(String),
}

pub type Result<T> = std::result::Result<T, NasError>;

impl NasError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> NasError {
        NasError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn parse(path: &str, line: usize, message: impl Into<String>) -> NasError {
        NasError::Parse {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}

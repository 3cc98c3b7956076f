//! Accuracy oracles: what the search asks for an architecture's accuracy, behind one trait.
//! A spec string picks one:
//!
//! - `predictor:PATH`: OFA's MLP accuracy predictor in safetensors ([`predictor`]);
//! - `table:PATH`: a CSV table of measured accuracies ([`table`]);
//! - `command:CMD`: an external program, run with the arch on stdin ([`command`]).
//!
//! Accuracies are fractions in [0, 1] (top-1 0.76, not 76); an oracle that gives anything
//! else is an error, so that a table in percent is caught rather than silently mis-ranked.

pub mod command;
pub mod predictor;
pub mod table;

use std::path::Path;
use std::time::Duration;

use crate::error::{NasError, Result};
use crate::space::ArchConfig;

/// An architecture's accuracy: on validation data, and on training data when the oracle
/// knows it (for the generalization-gap term of the search's score).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    pub val: f64,
    pub train: Option<f64>,
}

impl Accuracy {
    /// The generalization gap `train - val`, when the training accuracy is known.
    pub fn gap(&self) -> Option<f64> {
        self.train.map(|t| t - self.val)
    }

    /// Checks that both values are fractions; the error says which is not.
    pub(crate) fn checked(self) -> std::result::Result<Accuracy, String> {
        for (name, v) in [("val_acc", Some(self.val)), ("train_acc", self.train)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name} {v} is not a fraction in [0, 1]"));
                }
            }
        }
        Ok(self)
    }
}

pub trait AccuracyOracle {
    fn evaluate(&mut self, arch: &ArchConfig) -> Result<Accuracy>;
}

/// Settings of oracles that need them.
#[derive(Debug, Clone)]
pub struct OracleOptions {
    /// Time limit of one `command:` evaluation.
    pub timeout: Duration,
}

impl Default for OracleOptions {
    fn default() -> Self {
        OracleOptions {
            timeout: Duration::from_secs(60),
        }
    }
}

/// The oracle a spec string names (see the module docs).
pub fn parse_oracle(spec: &str, options: &OracleOptions) -> Result<Box<dyn AccuracyOracle>> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    if arg.is_empty() {
        return Err(NasError::Oracle(format!(
            "{spec:?} is not an oracle spec; expected predictor:PATH, table:PATH or command:CMD"
        )));
    }
    Ok(match kind {
        "predictor" => Box::new(predictor::Predictor::load(Path::new(arg))?),
        "table" => Box::new(table::AccuracyTable::load(Path::new(arg))?),
        "command" => Box::new(command::CommandOracle::new(arg, options.timeout)),
        other => {
            return Err(NasError::Oracle(format!(
                "unknown oracle kind {other:?}; expected predictor:PATH, table:PATH or command:CMD"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_specs() {
        let o = OracleOptions::default();
        for (spec, want) in [
            ("predictor", "not an oracle spec"),
            ("magic:x", "unknown oracle kind \"magic\""),
            ("table:", "not an oracle spec"),
            ("table:/no/such.csv", "/no/such.csv"),
        ] {
            let e = parse_oracle(spec, &o).err().unwrap().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn fractions_only() {
        assert!(Accuracy {
            val: 76.2,
            train: None
        }
        .checked()
        .is_err());
        assert!(Accuracy {
            val: 0.7,
            train: Some(1.2)
        }
        .checked()
        .is_err());
        let a = Accuracy {
            val: 0.7,
            train: Some(0.75),
        }
        .checked()
        .unwrap();
        assert!((a.gap().unwrap() - 0.05).abs() < 1e-12);
    }
}

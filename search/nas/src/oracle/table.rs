//! Accuracies looked up in a CSV table, e.g. measured once for a set of subnets.
//!
//! Format: `#` comment lines and blank lines are skipped; the first other line is the header,
//! `arch,val_acc` or `arch,val_acc,train_acc`; each row then has the arch in its compact form
//! ([`ArchConfig::to_compact`]: `k<20 digits>-e<20 digits>-d<5 digits>-r<resolution>`) and
//! the accuracies as fractions in [0, 1]; `train_acc` may be left empty in a row. Fields are
//! trimmed; no quoting is needed (compact archs hold no commas).
//!
//! ```text
//! arch,val_acc,train_acc
//! k77777777777777777777-e66666666666666666666-d44444-r224,0.8359,0.8812
//! k33333333333333333333-e33333333333333333333-d22222-r160,0.7531,
//! ```
//!
//! Rows match archs with entries of blocks cut by depth ignored; two rows for the same
//! network are an error.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{NasError, Result};
use crate::oracle::{Accuracy, AccuracyOracle};
use crate::space::ArchConfig;

#[derive(Debug, Clone)]
pub struct AccuracyTable {
    origin: String,
    /// Normalized arch to accuracy.
    rows: HashMap<ArchConfig, Accuracy>,
}

impl AccuracyTable {
    pub fn load(path: &Path) -> Result<AccuracyTable> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        AccuracyTable::parse(&text, &path.display().to_string())
    }

    /// Parses the CSV text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<AccuracyTable> {
        let err = |line: usize, m: String| NasError::parse(origin, line, m);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (n, header) = lines.next().ok_or_else(|| {
            err(
                0,
                "empty table: expected the header arch,val_acc[,train_acc]".into(),
            )
        })?;
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let has_train = match columns[..] {
            ["arch", "val_acc"] => false,
            ["arch", "val_acc", "train_acc"] => true,
            _ => {
                return Err(err(
                    n,
                    format!("header {header:?}: expected arch,val_acc or arch,val_acc,train_acc"),
                ))
            }
        };
        let mut rows = HashMap::new();
        let mut first_line: HashMap<ArchConfig, usize> = HashMap::new();
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != columns.len() {
                return Err(err(
                    n,
                    format!("{} fields, the header has {}", fields.len(), columns.len()),
                ));
            }
            let arch = ArchConfig::from_compact(fields[0])
                .map_err(|e| err(n, e.to_string()))?
                .normalized();
            let number = |name: &str, v: &str| {
                v.parse::<f64>()
                    .map_err(|_| err(n, format!("{name} {v:?} is not a number")))
            };
            let val = number("val_acc", fields[1])?;
            let train = if has_train && !fields[2].is_empty() {
                Some(number("train_acc", fields[2])?)
            } else {
                None
            };
            let acc = Accuracy { val, train }.checked().map_err(|m| err(n, m))?;
            if let Some(prev) = first_line.insert(arch.clone(), n) {
                return Err(err(n, format!("the same network as line {prev}")));
            }
            rows.insert(arch, acc);
        }
        Ok(AccuracyTable {
            origin: origin.to_string(),
            rows,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as CSV text, in the format [`parse`](Self::parse) reads (rows sorted).
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<(String, &Accuracy)> = self
            .rows
            .iter()
            .map(|(a, acc)| (a.to_compact(), acc))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut s = String::from("arch,val_acc,train_acc\n");
        for (arch, acc) in rows {
            let train = acc.train.map(|t| format!("{t:?}")).unwrap_or_default();
            s.push_str(&format!("{arch},{:?},{train}\n", acc.val));
        }
        s
    }
}

impl AccuracyOracle for AccuracyTable {
    fn evaluate(&mut self, arch: &ArchConfig) -> Result<Accuracy> {
        self.rows.get(&arch.normalized()).copied().ok_or_else(|| {
            NasError::Oracle(format!(
                "{} has no row for {} ({} rows)",
                self.origin,
                arch.to_compact(),
                self.rows.len()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: &str = "k77777777777777777777-e66666666666666666666-d44444-r224";
    const MIN: &str = "k33333333333333333333-e33333333333333333333-d22222-r160";

    #[test]
    fn lookup_with_and_without_train() {
        let text = format!(
            "# measured\narch,val_acc,train_acc\n\n{MAX},0.8359,0.8812\n {MIN} , 0.7531 ,\n"
        );
        let mut t = AccuracyTable::parse(&text, "acc.csv").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.evaluate(&ArchConfig::max(224)).unwrap(),
            Accuracy {
                val: 0.8359,
                train: Some(0.8812)
            }
        );
        // A cut block's entries do not matter.
        let mut min = ArchConfig::min(160);
        min.ks[2] = 7;
        assert_eq!(
            t.evaluate(&min).unwrap(),
            Accuracy {
                val: 0.7531,
                train: None
            }
        );
        let e = t.evaluate(&ArchConfig::max(160)).unwrap_err().to_string();
        assert!(
            e.contains(
                "acc.csv has no row for k77777777777777777777-e66666666666666666666-d44444-r160"
            ),
            "{e}"
        );
        let again = AccuracyTable::parse(&t.to_csv(), "again").unwrap();
        assert_eq!(again.rows, t.rows);
        let two = AccuracyTable::parse(&format!("arch,val_acc\n{MAX},0.5\n"), "two").unwrap();
        assert_eq!(two.rows[&ArchConfig::max(224)].train, None);
    }

    #[test]
    fn bad_tables_name_the_line() {
        let cases = [
            (String::new(), "t.csv: empty table"),
            ("arch,acc\n".to_string(), "t.csv:1: header"),
            (
                format!("arch,val_acc\n{MAX},0.5,0.6\n"),
                "t.csv:2: 3 fields",
            ),
            (
                format!("arch,val_acc\n{MAX},high\n"),
                "t.csv:2: val_acc \"high\"",
            ),
            (
                format!("arch,val_acc\n{MAX},76.2\n"),
                "t.csv:2: val_acc 76.2 is not a fraction",
            ),
            (
                "arch,val_acc\nk7-e6-d4-r224,0.5\n".to_string(),
                "t.csv:2: invalid architecture",
            ),
            (
                format!("arch,val_acc\n{MAX},0.5\n{MAX},0.6\n"),
                "t.csv:3: the same network as line 2",
            ),
        ];
        for (text, want) in cases {
            let e = AccuracyTable::parse(&text, "t.csv")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }
}

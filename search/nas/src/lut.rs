//! Latency lookup tables in OFA's YAML format: one entry per block key, each with the
//! measurement count and the mean and standard deviation in milliseconds:
//!
//! ```text
//! Conv-input:224x224x3-output:112x112x24:
//!   count: 500
//!   mean: 0.994418
//!   std: 0.01726798413249215
//! ```
//!
//! Only this shape of YAML is read (a key line at column 0 ending in `:`, then exactly the
//! three indented fields, in any order; blank lines and `#` comments are skipped), so a
//! hand-written reader gives exact line-numbered errors and no YAML library is needed.
//! A network's predicted latency is the sum of its blocks' means.
//!
//! OFA keeps one file per input resolution. Keys name the input size, so one file can hold
//! several resolutions (as `chanasc lut build` writes it), and several files can be read
//! together ([`LatencyTable::load_many`]): a key in more than one file (the 1x1 head layers
//! are the same at every resolution) gets the pooled statistics of all its measurements.
//! Comment lines before the first key are kept as the table's [`header`](LatencyTable::header)
//! (how it was measured); YAML readers skip them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::blocks::Block;
use crate::error::{NasError, Result};

/// One block's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyEntry {
    pub count: u64,
    /// Milliseconds.
    pub mean: f64,
    pub std: f64,
}

/// A latency table: block key to measurement, in key order (the order OFA's files use).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyTable {
    pub entries: BTreeMap<String, LatencyEntry>,
    /// Comment lines at the top of the file, without their `# `.
    pub header: Vec<String>,
}

impl LatencyTable {
    /// Reads a table from a file.
    pub fn load(path: &Path) -> Result<LatencyTable> {
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        LatencyTable::parse(&text, &path.display().to_string())
    }

    /// Reads several tables as one (see the module docs for keys in more than one).
    pub fn load_many(paths: &[impl AsRef<Path>]) -> Result<LatencyTable> {
        let mut table = LatencyTable::default();
        for p in paths {
            table.merge(&LatencyTable::load(p.as_ref())?);
        }
        Ok(table)
    }

    /// Adds `other`'s entries; a key both have gets the pooled count, mean and (population)
    /// standard deviation of both sets of measurements.
    pub fn merge(&mut self, other: &LatencyTable) {
        for (key, b) in &other.entries {
            let Some(a) = self.entries.get(key).copied() else {
                self.entries.insert(key.clone(), *b);
                continue;
            };
            let (na, nb) = (a.count.max(1) as f64, b.count.max(1) as f64);
            let n = na + nb;
            let mean = (na * a.mean + nb * b.mean) / n;
            let second = |e: &LatencyEntry| e.std * e.std + e.mean * e.mean;
            let var = ((na * second(&a) + nb * second(b)) / n - mean * mean).max(0.0);
            self.entries.insert(
                key.clone(),
                LatencyEntry {
                    count: a.count + b.count,
                    mean,
                    std: var.sqrt(),
                },
            );
        }
        for h in &other.header {
            if !self.header.contains(h) {
                self.header.push(h.clone());
            }
        }
    }

    /// Parses the text of a table; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<LatencyTable> {
        let err = |line: usize, msg: String| NasError::parse(origin, line, msg);
        let mut entries = BTreeMap::new();
        let mut header = Vec::new();
        // The entry being read: its key, the line it starts on and the fields seen so far.
        let mut current: Option<(String, usize, [Option<f64>; 3])> = None;
        let finish = |cur: Option<(String, usize, [Option<f64>; 3])>,
                      entries: &mut BTreeMap<String, LatencyEntry>|
         -> Result<()> {
            let Some((key, line, fields)) = cur else {
                return Ok(());
            };
            let missing: Vec<&str> = ["count", "mean", "std"]
                .iter()
                .zip(&fields)
                .filter(|(_, f)| f.is_none())
                .map(|(n, _)| *n)
                .collect();
            if !missing.is_empty() {
                return Err(err(
                    line,
                    format!("entry {key} lacks {}", missing.join(", ")),
                ));
            }
            let [count, mean, std] = fields.map(|f| f.unwrap_or_default());
            entries.insert(
                key,
                LatencyEntry {
                    count: count as u64,
                    mean,
                    std,
                },
            );
            Ok(())
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                if current.is_none() && entries.is_empty() {
                    if let Some(c) = line.trim_start().strip_prefix('#') {
                        header.push(c.strip_prefix(' ').unwrap_or(c).to_string());
                    }
                }
                continue;
            }
            if !line.starts_with(' ') {
                // A key line: `KEY:` with nothing after the colon.
                let key = line.strip_suffix(':').ok_or_else(|| {
                    err(
                        n,
                        format!("expected a block key ending in ':', got {line:?}"),
                    )
                })?;
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(err(n, format!("{key:?} is not a block key")));
                }
                finish(current.take(), &mut entries)?;
                if entries.contains_key(key) {
                    return Err(err(n, format!("entry {key} repeats")));
                }
                current = Some((key.to_string(), n, [None; 3]));
                continue;
            }
            let Some((_, _, fields)) = current.as_mut() else {
                return Err(err(n, "an indented field before any block key".into()));
            };
            let (name, value) = line
                .trim()
                .split_once(':')
                .ok_or_else(|| err(n, format!("expected `name: value`, got {:?}", line.trim())))?;
            let slot = match name {
                "count" => 0,
                "mean" => 1,
                "std" => 2,
                other => {
                    return Err(err(
                        n,
                        format!("unknown field {other:?} (expected count, mean or std)"),
                    ))
                }
            };
            let value = value.trim();
            let parsed = if slot == 0 {
                value.parse::<u64>().ok().map(|c| c as f64)
            } else {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
            };
            let v = parsed.ok_or_else(|| {
                err(
                    n,
                    format!(
                        "{name}: {value:?} is not a {}",
                        if slot == 0 {
                            "count"
                        } else {
                            "non-negative number"
                        }
                    ),
                )
            })?;
            if fields[slot].replace(v).is_some() {
                return Err(err(n, format!("field {name} repeats")));
            }
        }
        finish(current, &mut entries)?;
        Ok(LatencyTable { entries, header })
    }

    /// The table as text, in the format [`parse`](Self::parse) reads.
    pub fn to_yaml(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            s.push_str(&format!("# {h}\n").replace("# \n", "#\n"));
        }
        for (key, e) in &self.entries {
            // `{:?}` prints the shortest text that reads back to the same f64.
            s.push_str(&format!(
                "{key}:\n  count: {}\n  mean: {:?}\n  std: {:?}\n",
                e.count, e.mean, e.std
            ));
        }
        s
    }

    /// Writes the table to a file (through a temporary file, so a reader never sees half).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_yaml().as_bytes())
    }

    pub fn get(&self, block: &Block) -> Option<&LatencyEntry> {
        self.entries.get(&block.key())
    }

    /// The predicted latency of a network in milliseconds: the sum of its blocks' means, plus
    /// the network's run overhead ([`overhead_key`]) when the table has it (OFA's tables do
    /// not). A block missing from the table is an error naming its key.
    pub fn predict(&self, blocks: &[Block]) -> Result<f64> {
        let sum: f64 = blocks
            .iter()
            .map(|b| {
                self.get(b)
                    .map(|e| e.mean)
                    .ok_or_else(|| NasError::MissingKey { key: b.key() })
            })
            .sum::<Result<f64>>()?;
        let overhead = match blocks {
            [Block::Stem { size, .. }, .., Block::Logits { classes, .. }] => {
                self.entries.get(&overhead_key(*size, *classes)).map_or(0.0, |e| e.mean)
            }
            _ => 0.0,
        };
        Ok(sum + overhead)
    }
}

/// The key of a whole network's run overhead at input resolution `r`: the time a run takes
/// beyond its tensor programs (copying the image in and the result out, the call), which no
/// block's latency holds. `chanasc lut build` measures it on the smallest network of each
/// resolution. OFA's readers look up only block keys, so the entry does not disturb them.
pub fn overhead_key(r: u32, classes: u32) -> String {
    format!("Overhead-input:{r}x{r}x3-output:{classes}")
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so that a
/// reader (or a run killed halfway) never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            NasError::io(path, e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Conv-input:224x224x3-output:112x112x24:\n  count: 500\n  mean: 0.994418\n  std: 0.01726798413249215\nLogits-input:1x1x1536-output:1000:\n  count: 3\n  mean: 0.5\n  std: 0.0\n";

    #[test]
    fn reads_and_writes_the_format() {
        let t = LatencyTable::parse(SAMPLE, "t.yaml").unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(
            t.entries["Conv-input:224x224x3-output:112x112x24"],
            LatencyEntry {
                count: 500,
                mean: 0.994418,
                std: 0.01726798413249215
            }
        );
        let again = LatencyTable::parse(&t.to_yaml(), "again").unwrap();
        assert_eq!(again, t);
        assert_eq!(t.to_yaml(), SAMPLE);
        // Fields in another order, comments and blank lines are fine.
        let t2 = LatencyTable::parse(
            "# a table\n\nA:\n  std: 1\n  mean: 2e-3\n  count: 1\n",
            "t2",
        )
        .unwrap();
        assert_eq!(
            t2.entries["A"],
            LatencyEntry {
                count: 1,
                mean: 0.002,
                std: 1.0
            }
        );
        // The leading comments are the header, and are written back.
        assert_eq!(t2.header, vec!["a table".to_string()]);
        assert!(t2.to_yaml().starts_with("# a table\nA:\n"));
        assert_eq!(LatencyTable::parse(&t2.to_yaml(), "t3").unwrap(), t2);
    }

    #[test]
    fn merging_pools_repeated_keys() {
        let a = LatencyTable::parse("K:\n  count: 2\n  mean: 1\n  std: 0\nA:\n  count: 1\n  mean: 5\n  std: 0\n", "a").unwrap();
        let b = LatencyTable::parse("K:\n  count: 2\n  mean: 3\n  std: 0\nB:\n  count: 1\n  mean: 7\n  std: 0\n", "b").unwrap();
        let mut t = a.clone();
        t.merge(&b);
        assert_eq!(t.entries.len(), 3);
        // Measurements {1, 1, 3, 3}: mean 2, population std 1.
        let k = t.entries["K"];
        assert_eq!((k.count, k.mean, k.std), (4, 2.0, 1.0));
        assert_eq!(t.entries["A"].mean, 5.0);
        assert_eq!(t.entries["B"].mean, 7.0);
    }

    #[test]
    fn corrupt_input_names_the_line() {
        let cases = [
            (
                "A:\n  count: 1\n  mean: x\n  std: 0\n",
                "t.yaml:3: mean: \"x\"",
            ),
            ("A:\n  count: 1\n  mean: 1\n", "t.yaml:1: entry A lacks std"),
            (
                "A:\n  count: 1\n  mean: 1\n  std: 0\nA:\n",
                "t.yaml:5: entry A repeats",
            ),
            (
                "  count: 1\n",
                "t.yaml:1: an indented field before any block key",
            ),
            ("A\n", "t.yaml:1: expected a block key"),
            (
                "A:\n  count: 1\n  mean: 1\n  std: 0\n  mean: 2\n",
                "t.yaml:5: field mean repeats",
            ),
            ("A:\n  cnt: 1\n", "t.yaml:2: unknown field \"cnt\""),
            ("A:\n  count: -1\n", "t.yaml:2: count"),
            ("A:\n  count: 1\n  mean: -1\n", "t.yaml:3: mean"),
            ("A:\n  count 1\n", "t.yaml:2: expected `name: value`"),
        ];
        for (text, want) in cases {
            let e = LatencyTable::parse(text, "t.yaml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn predict_sums_means_and_names_missing_keys() {
        let t = LatencyTable::parse(SAMPLE, "t.yaml").unwrap();
        let stem = Block::Stem {
            size: 224,
            cin: 3,
            cout: 24,
        };
        let logits = Block::Logits {
            cin: 1536,
            classes: 1000,
        };
        assert!((t.predict(&[stem, logits]).unwrap() - 1.494418).abs() < 1e-12);
        let other = Block::Logits {
            cin: 1280,
            classes: 1000,
        };
        let e = t.predict(&[stem, other]).unwrap_err().to_string();
        assert!(e.contains("Logits-input:1x1x1280-output:1000"), "{e}");
        // A network's overhead entry is added to whole networks' predictions.
        let mut t2 = t.clone();
        t2.entries.insert(overhead_key(224, 1000), LatencyEntry { count: 1, mean: 0.25, std: 0.0 });
        assert!((t2.predict(&[stem, logits]).unwrap() - 1.744418).abs() < 1e-12);
        assert!((t2.predict(&[logits]).unwrap() - 0.5).abs() < 1e-12);
    }
}

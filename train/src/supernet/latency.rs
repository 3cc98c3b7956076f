//! The block latency table of a supernet space on this machine (CHaNAS's block-based latency
//! model): every piece of the space ([`Piece`]: the stem, each block position with each kernel
//! and expand ratio, the head) compiled alone with the default schedules and timed; a subnet's
//! predicted latency is the sum of the pieces it runs. The networks of the 28x28 space are
//! small enough that their weights stay in the caches, so pieces are timed warm.

use std::collections::BTreeMap;
use std::path::Path;

use nas::measure::{measure_graph, MeasureOptions};
use serde::{Deserialize, Serialize};

use super::{Piece, Space, Subnet};
use crate::error::{file_err, Result, TrainError};

/// Milliseconds per piece key, for one space on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockTable {
    pub space: String,
    /// The machine the pieces were timed on.
    pub cpu: String,
    /// Timed runs per piece (median kept).
    pub runs: usize,
    pub entries: BTreeMap<String, f64>,
}

impl BlockTable {
    pub fn new(space: &Space, cpu: &str, runs: usize) -> BlockTable {
        BlockTable { space: space.name.clone(), cpu: cpu.into(), runs, entries: BTreeMap::new() }
    }

    /// Reads a table written by [`BlockTable::save`].
    pub fn load(path: &Path) -> Result<BlockTable> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        serde_json::from_str(&text).map_err(|e| file_err(path, format!("not a block latency table: {e}")))
    }

    /// Writes the table atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a table serializes");
        std::fs::write(&tmp, text + "\n").map_err(|e| file_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
    }

    /// The pieces of `space` the table does not hold yet.
    pub fn missing(&self, space: &Space) -> Vec<Piece> {
        space.pieces().into_iter().filter(|p| !self.entries.contains_key(&p.key())).collect()
    }

    /// Times `piece` alone (seeded random weights) and records its median.
    pub fn measure(&mut self, space: &Space, piece: Piece, options: &MeasureOptions, retries: usize) -> Result<f64> {
        let graph = space.piece_graph(piece, options.seed)?;
        let m = measure_graph(&graph, options, retries).map_err(|e| TrainError::Invalid(format!("measuring {}: {e}", piece.key())))?;
        self.entries.insert(piece.key(), m.wall.median);
        Ok(m.wall.median)
    }

    /// The predicted latency of `sub`: the sum of its pieces' latencies.
    pub fn predict(&self, space: &Space, sub: &Subnet) -> Result<f64> {
        if space.name != self.space {
            return Err(TrainError::Invalid(format!("the latency table is of space {}, not {}", self.space, space.name)));
        }
        space
            .pieces_of(sub)
            .iter()
            .map(|p| {
                self.entries.get(&p.key()).copied().ok_or_else(|| {
                    TrainError::Invalid(format!("the latency table has no entry {} (build it again to complete it)", p.key()))
                })
            })
            .sum()
    }
}

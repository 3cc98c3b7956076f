//! Building a latency table: every block of a list measured once, written in OFA's YAML
//! format, with the schedule traces of each block's tensor programs in a side file beside
//! it (`TABLE.schedules.jsonl`, one JSON object per line: `{"key": .., "programs": [..], ..}`),
//! so the YAML stays exactly OFA's format.
//!
//! Building is resumable: an existing table is read first and its keys are not measured
//! again; both files are saved (atomically) after every few new blocks, so stopping the
//! build loses at most those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::blocks::Block;
use crate::error::{NasError, Result};
use crate::lut::{overhead_key, write_atomic, LatencyTable};
use crate::measure::BlockMeasurer;
use crate::space::NUM_CLASSES;

/// The side file of a table: `PATH.schedules.jsonl`.
pub fn schedules_path(table: &Path) -> PathBuf {
    let mut p = table.as_os_str().to_owned();
    p.push(".schedules.jsonl");
    PathBuf::from(p)
}

/// The side file's lines by key (each line a JSON object with a `key` field).
pub fn load_schedules(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut lines = BTreeMap::new();
    if !path.exists() {
        return Ok(lines);
    }
    let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
    let origin = path.display().to_string();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| NasError::parse(&origin, i + 1, format!("not JSON: {e}")))?;
        let key = v["key"].as_str().ok_or_else(|| NasError::parse(&origin, i + 1, "no \"key\" string"))?;
        lines.insert(key.to_string(), line.to_string());
    }
    Ok(lines)
}

/// Where a build is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct BuildProgress<'a> {
    /// Blocks done (already in the table, or measured) and the total.
    pub done: usize,
    pub total: usize,
    /// Blocks measured in this run, and those still to measure.
    pub measured: usize,
    pub remaining: usize,
    /// The block about to be measured (None once finished).
    pub current: Option<&'a str>,
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// Blocks found in the existing table and not measured again.
    pub reused: usize,
    pub measured: usize,
    /// With `remeasure`: entries replaced by a faster measurement.
    pub replaced: usize,
    /// Blocks still to measure (when `max_new` stopped the build early).
    pub missing: usize,
    /// Entries in the table when done.
    pub entries: usize,
}

/// How a table is built.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Save the table (and its side file) after this many measured blocks.
    pub save_every: usize,
    /// Measure at most this many blocks in this run (a build can be done in parts).
    pub max_new: Option<usize>,
    /// Measure the blocks already in the table again, and keep, for each, the measurement
    /// with the lower mean: other processes only ever add time, so of two measurements the
    /// faster is the less disturbed one.
    pub remeasure: bool,
    /// Also measure the run overhead of whole networks of this width
    /// ([`crate::lut::overhead_key`]) at each resolution of the blocks.
    pub network_overhead: Option<f64>,
}

/// One thing to measure.
enum Item<'a> {
    Block(&'a Block),
    /// A network's run overhead at this resolution.
    Overhead(u32),
}

/// Measures every block of `blocks` that the table at `path` (if it exists) lacks (all of
/// them with `remeasure`), saving the table and its side file as `options` says and at the
/// end. `header` becomes the table's header comments when the table is new.
pub fn build_table(
    path: &Path,
    blocks: &[Block],
    measurer: &mut dyn BlockMeasurer,
    options: &BuildOptions,
    header: &[String],
    on_progress: &mut dyn FnMut(BuildProgress),
) -> Result<BuildReport> {
    let mut table = if path.exists() {
        LatencyTable::load(path)
            .map_err(|e| NasError::Measure(format!("cannot resume from the existing table: {e} (remove it or choose another output)")))?
    } else {
        LatencyTable::default()
    };
    if table.entries.is_empty() && table.header.is_empty() {
        table.header = header.to_vec();
    }
    const REMEASURED: &str = "measured again (--remeasure): each block keeps its faster measurement";
    // A table made before its overhead entries gets their explanation with them.
    if options.network_overhead.is_some() && !table.header.iter().any(|h| h.starts_with("Overhead-input:")) {
        table.header.extend(header.iter().filter(|h| h.starts_with("Overhead-input:")).cloned());
    }
    if options.remeasure && !table.header.iter().any(|h| h == REMEASURED) {
        table.header.push(REMEASURED.to_string());
    }
    let side = schedules_path(path);
    let mut schedules = load_schedules(&side)
        .map_err(|e| NasError::Measure(format!("cannot resume from the existing schedules: {e} (remove it or choose another output)")))?;
    let mut todo: Vec<(String, Item)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for b in blocks {
        if seen.insert(b.key()) && (options.remeasure || !table.entries.contains_key(&b.key())) {
            todo.push((b.key(), Item::Block(b)));
        }
    }
    if options.network_overhead.is_some() {
        let sizes: std::collections::BTreeSet<u32> =
            blocks.iter().filter_map(|b| if let Block::Stem { size, .. } = b { Some(*size) } else { None }).collect();
        for r in sizes {
            let key = overhead_key(r, NUM_CLASSES);
            if seen.insert(key.clone()) && (options.remeasure || !table.entries.contains_key(&key)) {
                todo.push((key, Item::Overhead(r)));
            }
        }
    }
    let total = seen.len();
    let reused = total - todo.len();
    if let Some(m) = options.max_new {
        todo.truncate(m);
    }
    let mut replaced = 0;
    let save = |table: &LatencyTable, schedules: &BTreeMap<String, String>| -> Result<()> {
        let mut text = String::new();
        for line in schedules.values() {
            text.push_str(line);
            text.push('\n');
        }
        // The side file first: the table is what a resumed build trusts.
        write_atomic(&side, text.as_bytes())?;
        table.save(path)
    };
    let mut unsaved = 0;
    for (i, (key, item)) in todo.iter().enumerate() {
        let key = key.clone();
        on_progress(BuildProgress { done: reused + i, total, measured: i, remaining: todo.len() - i, current: Some(&key) });
        let m = match item {
            Item::Block(block) => measurer.measure(block),
            Item::Overhead(r) => match measurer.measure_overhead(options.network_overhead.unwrap_or(1.2), *r) {
                Ok(Some(m)) => Ok(m),
                Ok(None) => continue,
                Err(e) => Err(e),
            },
        }
        .map_err(|e| NasError::Measure(format!("{key}: {e}")))?;
        match table.entries.get(&key) {
            Some(old) if old.mean <= m.entry.mean => continue,
            Some(_) => replaced += 1,
            None => {}
        }
        table.entries.insert(key.clone(), m.entry);
        let mut line = serde_json::json!({
            "key": key,
            "mean_ms": m.entry.mean,
            "median_ms": m.median,
            "programs": m.programs,
        });
        if let Some(extra) = m.extra.as_object() {
            for (k, v) in extra {
                line[k] = v.clone();
            }
        }
        schedules.insert(key, line.to_string());
        unsaved += 1;
        if unsaved >= options.save_every.max(1) {
            save(&table, &schedules)?;
            unsaved = 0;
        }
    }
    if unsaved > 0 || !path.exists() {
        save(&table, &schedules)?;
    }
    on_progress(BuildProgress {
        done: reused + todo.len(),
        total,
        measured: todo.len(),
        remaining: total - reused - todo.len(),
        current: None,
    });
    Ok(BuildReport { reused, measured: todo.len(), replaced, missing: total - reused - todo.len(), entries: table.entries.len() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::space_blocks;
    use crate::lut::LatencyEntry;
    use crate::measure::BlockMeasurement;

    /// A measurer that makes up a latency from the block's MACs and counts its calls.
    struct Fake {
        calls: Vec<String>,
        fail_on: Option<usize>,
        factor: f64,
    }

    impl BlockMeasurer for Fake {
        fn measure(&mut self, block: &Block) -> Result<BlockMeasurement> {
            if self.fail_on == Some(self.calls.len()) {
                return Err(NasError::Measure("the fake measurer fails here".into()));
            }
            self.calls.push(block.key());
            let ms = (1e-3 + block.macs() as f64 * 1e-8) * self.factor;
            Ok(BlockMeasurement {
                entry: LatencyEntry { count: 5, mean: ms, std: 0.0 },
                median: ms,
                programs: serde_json::json!([{"name": "p", "schedule": []}]),
                extra: serde_json::Value::Null,
            })
        }
    }

    fn opts(max_new: Option<usize>, remeasure: bool) -> BuildOptions {
        BuildOptions { save_every: 8, max_new, remeasure, network_overhead: None }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chanasc-lutbuild-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn resumes_without_measuring_present_keys() {
        let dir = tempdir("resume");
        let path = dir.join("lut.yaml");
        let blocks = space_blocks(1.2, 160).unwrap();
        // A first run that dies after 30 blocks (saving every 8: 24 are on disk).
        let mut fake = Fake { calls: vec![], fail_on: Some(30), factor: 1.0 };
        let header = vec!["test header".to_string()];
        let e = build_table(&path, &blocks, &mut fake, &opts(None, false), &header, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("the fake measurer fails here"), "{e}");
        let partial = LatencyTable::load(&path).unwrap();
        assert_eq!(partial.entries.len(), 24);
        assert_eq!(partial.header, header);
        assert_eq!(load_schedules(&schedules_path(&path)).unwrap().len(), 24);
        // The second run measures only the 72 missing blocks.
        let mut fake2 = Fake { calls: vec![], fail_on: None, factor: 1.0 };
        let mut last = None;
        let report =
            build_table(&path, &blocks, &mut fake2, &opts(None, false), &[], &mut |p| last = Some((p.done, p.total, p.current.is_none())))
                .unwrap();
        assert_eq!((report.reused, report.measured, report.entries), (24, 72, 96));
        assert_eq!(fake2.calls.len(), 72);
        assert!(fake2.calls.iter().all(|k| !partial.entries.contains_key(k)));
        assert_eq!(last, Some((96, 96, true)));
        let full = LatencyTable::load(&path).unwrap();
        assert_eq!(full.entries.len(), 96);
        assert_eq!(full.header, header);
        for b in &blocks {
            assert!(full.get(b).is_some());
        }
        let side = load_schedules(&schedules_path(&path)).unwrap();
        assert_eq!(side.len(), 96);
        let line: serde_json::Value = serde_json::from_str(side.values().next().unwrap()).unwrap();
        assert_eq!(line["programs"][0]["name"], "p");
        // A run limited to a few blocks measures only those.
        let path2 = dir.join("part.yaml");
        let mut fake4 = Fake { calls: vec![], fail_on: None, factor: 1.0 };
        let r = build_table(&path2, &blocks, &mut fake4, &opts(Some(5), false), &[], &mut |_| {}).unwrap();
        assert_eq!((r.measured, r.missing, r.entries), (5, 91, 5));
        assert_eq!(LatencyTable::load(&path2).unwrap().entries.len(), 5);
        let _ = std::fs::remove_file(&path2);
        let _ = std::fs::remove_file(schedules_path(&path2));
        // A third run has nothing to do.
        let mut fake3 = Fake { calls: vec![], fail_on: None, factor: 1.0 };
        let report = build_table(&path, &blocks, &mut fake3, &opts(None, false), &[], &mut |_| {}).unwrap();
        assert_eq!((report.reused, report.measured), (96, 0));
        assert!(fake3.calls.is_empty());
        // Measuring again keeps the faster of the two measurements of each block.
        let before = LatencyTable::load(&path).unwrap();
        let mut slower = Fake { calls: vec![], fail_on: None, factor: 2.0 };
        let r = build_table(&path, &blocks, &mut slower, &opts(None, true), &[], &mut |_| {}).unwrap();
        assert_eq!((r.measured, r.replaced, slower.calls.len()), (96, 0, 96));
        assert_eq!(LatencyTable::load(&path).unwrap().entries, before.entries);
        let mut faster = Fake { calls: vec![], fail_on: None, factor: 0.5 };
        let r = build_table(&path, &blocks, &mut faster, &opts(Some(10), true), &[], &mut |_| {}).unwrap();
        assert_eq!((r.measured, r.replaced), (10, 10));
        let after = LatencyTable::load(&path).unwrap();
        let halved = before.entries.iter().filter(|(k, e)| (after.entries[*k].mean - e.mean * 0.5).abs() < 1e-15).count();
        assert_eq!(halved, 10);
        assert_eq!(after.header[0], before.header[0]);
        assert!(after.header.last().unwrap().contains("--remeasure"));
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn network_overheads_are_measured_once_per_resolution() {
        struct WithOverhead(usize);
        impl BlockMeasurer for WithOverhead {
            fn measure(&mut self, _: &Block) -> Result<BlockMeasurement> {
                Ok(BlockMeasurement {
                    entry: LatencyEntry { count: 1, mean: 1.0, std: 0.0 },
                    median: 1.0,
                    programs: serde_json::Value::Null,
                    extra: serde_json::Value::Null,
                })
            }
            fn measure_overhead(&mut self, width: f64, r: u32) -> Result<Option<BlockMeasurement>> {
                assert_eq!(width, 1.2);
                self.0 += 1;
                let ms = r as f64 * 1e-3;
                Ok(Some(BlockMeasurement {
                    entry: LatencyEntry { count: 1, mean: ms, std: 0.0 },
                    median: ms,
                    programs: serde_json::Value::Null,
                    extra: serde_json::Value::Null,
                }))
            }
        }
        let dir = tempdir("overhead");
        let path = dir.join("lut.yaml");
        let mut blocks = space_blocks(1.2, 160).unwrap();
        blocks.extend(space_blocks(1.2, 176).unwrap());
        let options = BuildOptions { save_every: 50, max_new: None, remeasure: false, network_overhead: Some(1.2) };
        let mut m = WithOverhead(0);
        let r = build_table(&path, &blocks, &mut m, &options, &[], &mut |_| {}).unwrap();
        assert_eq!(m.0, 2);
        let t = LatencyTable::load(&path).unwrap();
        assert_eq!(r.entries, t.entries.len());
        assert_eq!(t.entries[&overhead_key(160, 1000)].mean, 0.16);
        assert_eq!(t.entries[&overhead_key(176, 1000)].mean, 0.176);
        // Predictions of whole networks include it.
        let blocks160 = crate::blocks::decompose(&crate::space::ArchConfig::min(160), 1.2).unwrap();
        assert!((t.predict(&blocks160).unwrap() - (blocks160.len() as f64 + 0.16)).abs() < 1e-12);
        // Present: not measured again.
        build_table(&path, &blocks, &mut m, &options, &[], &mut |_| {}).unwrap();
        assert_eq!(m.0, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_table_is_an_error_not_a_restart() {
        let dir = tempdir("corrupt");
        let path = dir.join("lut.yaml");
        std::fs::write(&path, "Conv-input:160x160x3-output:80x80x24:\n  count: 3\n  mean: oops\n  std: 0\n").unwrap();
        let mut fake = Fake { calls: vec![], fail_on: None, factor: 1.0 };
        let blocks = space_blocks(1.2, 160).unwrap();
        let e = build_table(&path, &blocks, &mut fake, &opts(None, false), &[], &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("lut.yaml:3") && e.contains("cannot resume"), "{e}");
        assert!(fake.calls.is_empty());
        // The file is left as it was.
        assert!(std::fs::read_to_string(&path).unwrap().contains("oops"));
        std::fs::write(&path, "").unwrap();
        std::fs::write(schedules_path(&path), "{not json\n").unwrap();
        let e = build_table(&path, &blocks, &mut fake, &opts(None, false), &[], &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("schedules.jsonl:1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

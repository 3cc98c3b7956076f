//! Tuning records: one JSON line per measured candidate (task key, target, trace, latency
//! statistics or the error, whether its output was checked, date), append-only, shared by
//! every model and run that uses the file.
//!
//! Each append is one `write(2)` of the whole line on a file opened with `O_APPEND`, followed
//! by `fsync`. Appends from several tuners sharing a file then never lose each other's lines
//! (a rewrite-to-temp-and-rename would: the last rename wins), and a reader sees either a
//! whole line or, after a crash in the middle of a write, a torn last line, which it reports
//! and skips like any corrupt line. The next append starts on a fresh line when the file
//! does not end with one, so a torn line never corrupts the record after it.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ir::loops::Func;
use llvm_backend::Target;
use passes::schedule::Trace;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result};
use crate::measure::Stats;
use crate::task::{target_id, task_key};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    /// The task's name when it was measured (for people reading the file).
    pub task: String,
    pub target: String,
    pub trace: Trace,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std_s: Option<f64>,
    #[serde(default)]
    pub runs: usize,
    /// Why the candidate failed (build, crash, time limit, wrong output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its output matched the unscheduled program's (checked when it became the task's best).
    #[serde(default)]
    pub checked: bool,
    /// UTC, RFC 3339.
    pub date: String,
}

impl Record {
    pub fn new(key: &str, task: &str, target: &str, trace: &Trace, result: &std::result::Result<Stats, String>, checked: bool) -> Record {
        let (stats, error) = match result {
            Ok(s) => (Some(*s), None),
            Err(e) => (None, Some(e.clone())),
        };
        Record {
            key: key.into(),
            task: task.into(),
            target: target.into(),
            trace: trace.clone(),
            median_s: stats.map(|s| s.median_s),
            mean_s: stats.map(|s| s.mean_s),
            std_s: stats.map(|s| s.std_s),
            runs: stats.map(|s| s.runs).unwrap_or(0),
            error,
            checked,
            date: now_rfc3339(),
        }
    }

    /// A successful, checked measurement: one a compiler may use.
    pub fn usable(&self) -> bool {
        self.error.is_none() && self.checked && self.median_s.is_some_and(|m| m.is_finite() && m > 0.0)
    }
}

/// The records of one file, as read when it was opened plus those appended since.
pub struct RecordFile {
    path: PathBuf,
    pub records: Vec<Record>,
    /// One line per corrupt line skipped (file:line: why).
    pub warnings: Vec<String>,
}

impl RecordFile {
    /// Reads `path` (a missing file is an empty one). Corrupt lines are reported in
    /// `warnings` and skipped.
    pub fn open(path: &Path) -> Result<RecordFile> {
        let mut records = Vec::new();
        let mut warnings = Vec::new();
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(path, e)),
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => records.push(r),
                Err(e) => warnings.push(format!("{}:{}: corrupt record skipped ({e})", path.display(), i + 1)),
            }
        }
        Ok(RecordFile { path: path.to_path_buf(), records, warnings })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `r` to the file (one write and an fsync) and to `records`.
    pub fn append(&mut self, r: Record) -> Result<()> {
        let mut line = serde_json::to_string(&r).map_err(|e| io_err(&self.path, e))?;
        line.push('\n');
        let mut file =
            std::fs::OpenOptions::new().read(true).append(true).create(true).open(&self.path).map_err(|e| io_err(&self.path, e))?;
        // Start on a fresh line after a torn last line.
        let len = file.metadata().map_err(|e| io_err(&self.path, e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).and_then(|_| file.read_exact(&mut last)).map_err(|e| io_err(&self.path, e))?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        file.write_all(line.as_bytes()).and_then(|_| file.sync_data()).map_err(|e| io_err(&self.path, e))?;
        self.records.push(r);
        Ok(())
    }

    /// The records of a task on a target.
    pub fn of_task<'a>(&'a self, key: &str, target: &str) -> impl Iterator<Item = &'a Record> + 'a {
        let (key, target) = (key.to_string(), target.to_string());
        self.records.iter().filter(move |r| r.key == key && r.target == target)
    }

    /// The fastest usable record of a task on a target.
    pub fn best(&self, key: &str, target: &str) -> Option<&Record> {
        self.of_task(key, target)
            .filter(|r| r.usable())
            .min_by(|a, b| a.median_s.unwrap_or(f64::MAX).total_cmp(&b.median_s.unwrap_or(f64::MAX)))
    }
}

/// The best recorded trace of each task: the schedules `compile --records` uses.
pub struct RecordSchedules {
    best: HashMap<(String, String), Trace>,
}

impl RecordSchedules {
    pub fn new(file: &RecordFile) -> RecordSchedules {
        let mut best: HashMap<(String, String), (f64, Trace)> = HashMap::new();
        for r in file.records.iter().filter(|r| r.usable()) {
            let m = r.median_s.unwrap_or(f64::MAX);
            let k = (r.key.clone(), r.target.clone());
            if best.get(&k).is_none_or(|b| m < b.0) {
                best.insert(k, (m, r.trace.clone()));
            }
        }
        RecordSchedules { best: best.into_iter().map(|(k, v)| (k, v.1)).collect() }
    }

    pub fn len(&self) -> usize {
        self.best.len()
    }

    /// The best trace of the unscheduled `func` on the target named `target` (a target id, or
    /// `wgpu`).
    pub fn best_for(&self, func: &Func, constants: &[bool], target: &str) -> Option<Trace> {
        self.best.get(&(task_key(func, constants, target), target.to_string())).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.best.is_empty()
    }
}

impl runtime::ScheduleSource for RecordSchedules {
    fn trace_for(&self, func: &Func, constants: &[bool], target: &Target) -> Option<Trace> {
        let t = target_id(target);
        self.best.get(&(task_key(func, constants, &t), t)).cloned()
    }
}

/// The current time as `2026-11-26T22:35:22Z`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chanasc-records-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("records.jsonl")
    }

    fn stats(m: f64) -> std::result::Result<Stats, String> {
        Ok(Stats { median_s: m, mean_s: m, std_s: 0.0, runs: 5 })
    }

    #[test]
    fn corrupt_lines_are_reported_and_skipped() {
        let path = temp("corrupt");
        let mut f = RecordFile::open(&path).unwrap();
        assert!(f.records.is_empty());
        let trace = Trace::from_json(r#"[{"op":"parallel","loop":"i"}]"#).unwrap();
        f.append(Record::new("k1", "relu", "t", &trace, &stats(2e-6), true)).unwrap();
        // A torn write: half a line, no newline.
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{good}{{\"key\": \"k1\", \"tra")).unwrap();
        // The next append starts on its own line.
        let mut f = RecordFile::open(&path).unwrap();
        f.append(Record::new("k1", "relu", "t", &Trace::default(), &stats(1e-6), true)).unwrap();
        f.append(Record::new("k2", "conv", "t", &Trace::default(), &Err("timed out".into()), false)).unwrap();
        // And a line that is JSON but not a record.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}[1, 2, 3]\n\n")).unwrap();
        let f = RecordFile::open(&path).unwrap();
        assert_eq!(f.records.len(), 3);
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        assert!(f.warnings[0].contains("records.jsonl:2: corrupt record skipped"), "{}", f.warnings[0]);
        assert!(f.warnings[1].contains("records.jsonl:5: corrupt record skipped"), "{}", f.warnings[1]);
        assert_eq!(f.best("k1", "t").unwrap().median_s, Some(1e-6));
        assert!(f.best("k2", "t").is_none(), "a failed candidate is never the best");
        assert_eq!(RecordSchedules::new(&f).len(), 1);
    }

    #[test]
    fn unchecked_records_are_not_used() {
        let path = temp("unchecked");
        let mut f = RecordFile::open(&path).unwrap();
        f.append(Record::new("k", "x", "t", &Trace::default(), &stats(1e-6), false)).unwrap();
        f.append(Record::new("k", "x", "t", &Trace(vec![]), &stats(3e-6), true)).unwrap();
        assert_eq!(f.best("k", "t").unwrap().median_s, Some(3e-6));
    }

    #[test]
    fn dates_are_rfc3339() {
        let d = now_rfc3339();
        assert_eq!(d.len(), 20);
        assert!(d.starts_with("20") && d.ends_with('Z') && d.as_bytes()[10] == b'T', "{d}");
    }
}

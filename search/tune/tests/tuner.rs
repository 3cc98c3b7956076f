//! The tuning loop with a fake measurer: resuming from records without re-measuring,
//! replaying a run from its seed, failing candidates, and the default as the baseline.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ir::loops::Func;
use tune::measure::{Measurer, Stats};
use tune::progress::Silent;
use tune::records::RecordFile;
use tune::task::{task_key, Task};
use tune::tuner::{interp_outputs, tune, TuneOptions};

const MATMUL: &str = r#"func "matmul_1" {
  param %a: f32[4,32]
  param %b: f32[32,48]
  param %y: f32[4,48]
  for m in 0..4 {
    for n in 0..48 {
      %y[m, n] = 0.0
      for k in 0..32 {
        %y[m, n] = %y[m, n] + %a[m, k] * %b[k, n]
      }
    }
  }
}"#;

const RELU: &str = r#"func "relu_2" {
  param %x: f32[8,64]
  param %y: f32[8,64]
  for i in 0..8 {
    for j in 0..64 {
      %y[i, j] = max(%x[i, j], 0.0)
    }
  }
}"#;

fn task(text: &str, weight: usize) -> Task {
    let func = ir::loops::parse_func(text).unwrap();
    let constants = vec![false; func.params().len()];
    let target = "fake-target v16".to_string();
    Task { key: task_key(&func, &constants, &target), name: func.name.clone(), target, func, constants, weight, flops: 1000 }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Latency is a fixed function of the scheduled program's text; one in `fail_every`
/// candidates fails. Output checks run the scheduled program on the evaluator, which must
/// agree with the unscheduled one. Every measured program text is logged.
struct Fake {
    log: Rc<RefCell<Vec<String>>>,
    checks: usize,
    fail_every: u64,
}

impl Measurer for Fake {
    fn measure(&mut self, _task: &Task, scheduled: &Func) -> Result<Stats, String> {
        let text = ir::loops::print_func(scheduled);
        self.log.borrow_mut().push(text.clone());
        let h = fnv(&text);
        if self.fail_every > 0 && h % self.fail_every == 0 {
            return Err("injected crash".into());
        }
        let m = 1e-6 * (1.0 + (h % 1000) as f64 / 1000.0);
        Ok(Stats { median_s: m, mean_s: m, std_s: 0.0, runs: 3 })
    }

    fn outputs(&mut self, _task: &Task, scheduled: &Func, _seed: u64) -> Result<Vec<u8>, String> {
        self.checks += 1;
        interp_outputs(scheduled)
    }
}

fn temp_records(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chanasc-tuner-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("records.jsonl")
}

fn run(tasks: &[Task], path: &Path, trials: usize, seed: u64, fail_every: u64) -> (Vec<String>, tune::TuneReport) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut fake = Fake { log: log.clone(), checks: 0, fail_every };
    let mut records = RecordFile::open(path).unwrap();
    let mut opts = TuneOptions::new(trials, 16);
    opts.seed = seed;
    let report = tune(tasks, &mut records, &mut fake, &opts, &mut Silent).unwrap();
    let measured = log.borrow().clone();
    (measured, report)
}

fn recorded(path: &Path) -> Vec<(String, String)> {
    RecordFile::open(path).unwrap().records.iter().map(|r| (r.key.clone(), r.trace.to_json())).collect()
}

#[test]
fn resuming_never_measures_a_recorded_candidate_again() {
    let tasks = [task(MATMUL, 2), task(RELU, 1)];
    let path = temp_records("resume");
    let (first, report) = run(&tasks, &path, 12, 1, 0);
    assert_eq!(first.len(), 12);
    assert_eq!(report.trials, 12);
    let after_first = recorded(&path);
    assert_eq!(after_first.len(), 12, "one record per measurement");
    // The defaults come first: both tasks have a baseline.
    assert!(report.tasks.iter().all(|t| t.default_s.is_some() && t.best_s.is_some()));

    // Run again on the same records with the same seed: a search that did not know the
    // records would propose the same candidates again.
    let (second, report) = run(&tasks, &path, 12, 1, 0);
    assert_eq!(second.len(), 12);
    assert_eq!(report.tasks.iter().map(|t| t.recorded).sum::<usize>(), 12);
    let first_texts: HashSet<&String> = first.iter().collect();
    for text in &second {
        assert!(!first_texts.contains(text), "re-measured a recorded candidate:\n{text}");
    }
    let all = recorded(&path);
    assert_eq!(all.len(), 24);
    let unique: HashSet<&(String, String)> = all.iter().collect();
    assert_eq!(unique.len(), 24, "no (task, trace) is measured twice");
    // Tuning never ends worse than the default: the best is at most the default.
    for t in &report.tasks {
        assert!(t.best_s.unwrap() <= t.default_s.unwrap());
    }
}

#[test]
fn an_interrupted_run_resumes_after_a_torn_record() {
    let tasks = [task(MATMUL, 1)];
    let path = temp_records("torn");
    run(&tasks, &path, 6, 3, 0);
    // Killed in the middle of an append: half a line at the end.
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.trim_end().rsplit('\n').next().unwrap().to_string();
    std::fs::write(&path, format!("{text}{}", &last[..last.len() / 2])).unwrap();
    let file = RecordFile::open(&path).unwrap();
    assert_eq!(file.warnings.len(), 1, "the torn line is reported");
    assert!(file.warnings[0].contains(":7: corrupt record skipped"), "{}", file.warnings[0]);
    let (second, _) = run(&tasks, &path, 6, 3, 0);
    assert_eq!(second.len(), 6);
    let file = RecordFile::open(&path).unwrap();
    assert_eq!(file.records.len(), 12);
    assert_eq!(file.warnings.len(), 1, "later appends start on a fresh line");
}

#[test]
fn the_same_seed_replays_the_same_search() {
    let tasks = [task(MATMUL, 1), task(RELU, 3)];
    let (a, _) = run(&tasks, &temp_records("replay-a"), 20, 42, 0);
    let (b, _) = run(&tasks, &temp_records("replay-b"), 20, 42, 0);
    assert_eq!(a, b);
    let (c, _) = run(&tasks, &temp_records("replay-c"), 20, 43, 0);
    assert_ne!(a, c, "another seed searches differently");
}

#[test]
fn failing_candidates_are_recorded_and_the_search_goes_on() {
    let tasks = [task(MATMUL, 1), task(RELU, 1)];
    let path = temp_records("failures");
    let (measured, report) = run(&tasks, &path, 30, 5, 3);
    assert_eq!(measured.len(), 30, "every trial was spent despite failures");
    assert!(report.failures > 0);
    let file = RecordFile::open(&path).unwrap();
    let failed = file.records.iter().filter(|r| r.error.as_deref() == Some("injected crash")).count();
    assert_eq!(failed, report.failures);
    assert!(file.records.iter().any(|r| r.usable()));
    // A failed record is never a schedule compile would use.
    for t in &tasks {
        if let Some(best) = file.best(&t.key, &t.target) {
            assert!(best.error.is_none() && best.checked);
        }
    }
}

#[test]
fn the_curve_only_improves_and_ends_at_the_best_total() {
    let tasks = [task(MATMUL, 2), task(RELU, 1)];
    let (_, report) = run(&tasks, &temp_records("curve"), 25, 9, 0);
    assert!(!report.curve.is_empty());
    for w in report.curve.windows(2) {
        assert!(w[1].0 > w[0].0 && w[1].1 <= w[0].1 + 1e-15);
    }
    let last = report.curve.last().unwrap();
    assert_eq!(last.0, 25);
    assert!((last.1 - report.best_total_s.unwrap()).abs() < 1e-15);
    assert!(report.best_total_s.unwrap() <= report.default_total_s.unwrap());
}

//! `chanasc tune` end to end on the built-in example: the task list, measurement in worker
//! processes, the records file and the tuning curve, resuming, and `compile --records` /
//! `bench --records` using the tuned schedules with outputs that match the interpreter.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use ir::Tensor;

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}\n{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tempdir(name: &str) -> support::TempDir {
    support::TempDir::new(&format!("tune-{name}"))
}

/// (key, trace) of every record.
fn records(path: &Path) -> Vec<(String, String)> {
    let file = tune::RecordFile::open(path).unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    file.records.iter().map(|r| (r.key.clone(), r.trace.to_json())).collect()
}

#[test]
fn tune_resume_and_compile_with_the_records() {
    let dir = tempdir("e2e");
    let model = dir.join("tiny.onnx");
    ok(&chanasc(&["example", "tiny-cnn", "-o", model.to_str().unwrap()]));
    let m = model.to_str().unwrap();
    let rec = dir.join("records.jsonl");
    let r = rec.to_str().unwrap();

    let out = ok(&chanasc(&["tune", m, "--trials", "24", "--records", r, "--seed", "1"]));
    // "N tasks (P tensor programs) of MODEL on TARGET:", then one line per task.
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    let (tasks, programs): (usize, usize) = (head[0].parse().unwrap(), head[2].trim_start_matches('(').parse().unwrap());
    assert!(tasks >= 5 && programs >= tasks, "{out}");
    let listed = out
        .lines()
        .filter(|l| l.split_whitespace().next().is_some_and(|k| k.len() == 16 && k.chars().all(|c| c.is_ascii_hexdigit())))
        .count();
    assert_eq!(listed, tasks, "{out}");
    assert!(out.contains("stem_act"), "the task list names the programs: {out}");
    assert!(out.contains("tuned 24 trials"), "{out}");
    let first = records(&rec);
    assert_eq!(first.len(), 24);
    let svg = std::fs::read_to_string(dir.join("records.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");

    // Resume: new candidates only.
    let out = ok(&chanasc(&["tune", m, "--trials", "8", "--records", r, "--seed", "1", "--plot", dir.join("curve.svg").to_str().unwrap()]));
    assert!(out.contains("tuned 8 trials"), "{out}");
    let all = records(&rec);
    assert_eq!(all.len(), 32);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 32, "a recorded candidate was measured again");
    assert!(dir.join("curve.svg").exists());

    // `--trials 0` lists the tasks only.
    let out = ok(&chanasc(&["tune", m, "--trials", "0", "--records", r]));
    assert!(out.contains(&format!("{tasks} tasks")) && !out.contains("trials in"), "{out}");

    // The compiled model uses the records and still computes the model.
    let compiled = dir.join("out");
    let out = ok(&chanasc(&["compile", m, "--records", r, "-o", compiled.to_str().unwrap()]));
    assert!(out.contains(&format!("{programs} of {programs} tensor programs use tuned schedules")), "{out}");
    let x: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let x = Tensor::f32(vec![1, 3, 32, 32], x).unwrap();
    let xp = dir.join("x.npy");
    frontend::npy::write_npy(&xp, &x).unwrap();
    let want = interp::run(&frontend::load_onnx(&model).unwrap(), &[x]).unwrap().remove(0);
    let y = dir.join("y.npy");
    ok(&Command::new(compiled.join("model"))
        .args(["--input", &format!("input={}", xp.display()), "-o", y.to_str().unwrap()])
        .output()
        .unwrap());
    support::compare(&frontend::npy::read_npy(&y).unwrap(), &want, 1e-4).unwrap();
    let manifest = std::fs::read_to_string(compiled.join("model.json")).unwrap();
    assert!(manifest.contains("\"tuned\": true"), "{manifest}");

    let out = ok(&chanasc(&["bench", m, "--records", r, "--runs", "3"]));
    assert!(out.contains(&format!("{programs} tensor programs use tuned schedules")), "{out}");

    // A corrupt line is reported with its line number and skipped.
    let text = std::fs::read_to_string(&rec).unwrap();
    std::fs::write(&rec, format!("{text}not json\n")).unwrap();
    let o = chanasc(&["compile", m, "--records", r, "-o", compiled.to_str().unwrap()]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("records.jsonl:33: corrupt record skipped"), "{err}");
}

#[test]
fn tune_errors_are_one_line() {
    let dir = tempdir("errors");
    let o = chanasc(&["tune", dir.join("missing.onnx").to_str().unwrap(), "--records", dir.join("r").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("missing.onnx"), "{err}");
}

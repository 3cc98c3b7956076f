//! Pre-scheduling and the co-search end to end through the `chanasc` binary: `lut merge` of
//! tables and records; the co-search on synthetic block tables with a deterministic
//! `command:` oracle that gives train and validation accuracy (the budget holds on the
//! predicted latency, the same seed gives the same partition and arch, a larger gap weight
//! moves the choice to a smaller gap); and a small real pre-scheduling run whose records
//! compile the co-search's winner.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

fn tempdir(name: &str) -> support::TempDir {
    support::TempDir::new(&format!("cosearch-{name}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// A failed run: exit status 1, no panic, one `error:` line holding each of `want`.
fn assert_clean_error(o: &Output, want: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stdout: {} stderr: {err}", stdout(o));
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning")).collect();
    assert_eq!(lines.len(), 1, "want one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {err}");
    }
}

/// `name=value` (or `name: value`) from a command's stdout.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).or_else(|| l.strip_prefix(&format!("{name}: "))))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
        .to_string()
}

/// A synthetic table of every block of the space at `resolutions`: latency from MACs
/// (`scale` ms per GMAC plus a fixed cost per block).
fn synthetic_table(resolutions: &[u32], scale: f64) -> nas::LatencyTable {
    let mut t = nas::LatencyTable::default();
    for &r in resolutions {
        for b in nas::blocks::space_blocks(1.2, r).unwrap() {
            let ms = 0.02 + b.macs() as f64 * 1e-9 * scale;
            t.entries.insert(b.key(), nas::LatencyEntry { count: 5, mean: ms, std: 0.0 });
        }
    }
    t
}

/// The deterministic oracle of `tests/support/gap_oracle.sh` (sh and awk).
fn gap_oracle() -> String {
    format!("command:sh {}", support::root().join("tests/support/gap_oracle.sh").display())
}

#[test]
fn lut_merge_joins_tables_companions_and_records() {
    let dir = tempdir("merge");
    let keys = nas::blocks::space_blocks(1.2, 32).unwrap();
    // Two "shards": halves of the blocks, each with a default table, records and a report.
    let mut paths = Vec::new();
    for (i, half) in keys.chunks(keys.len() / 2 + 1).enumerate() {
        let mut t = nas::LatencyTable { header: vec!["a test table".into()], ..Default::default() };
        let mut d = t.clone();
        for b in half {
            let ms = 0.01 + b.macs() as f64 * 1e-9;
            t.entries.insert(b.key(), nas::LatencyEntry { count: 3, mean: ms, std: 0.0 });
            d.entries.insert(b.key(), nas::LatencyEntry { count: 3, mean: ms * 1.5, std: 0.0 });
        }
        let p = dir.join(format!("shard{i}.yaml"));
        t.save(&p).unwrap();
        d.save(&nas::preschedule::default_table_path(&p)).unwrap();
        let rec = format!(
            "{{\"key\":\"k{i}\",\"task\":\"t\",\"target\":\"x\",\"trace\":[],\"median_s\":1e-6,\"mean_s\":1e-6,\"std_s\":0.0,\"runs\":5,\"checked\":true,\"date\":\"2026-11-26T00:00:00Z\"}}\n"
        );
        std::fs::write(nas::preschedule::records_path(&p), rec.repeat(2)).unwrap();
        paths.push(p);
    }
    let out = dir.join("all.yaml");
    let args: Vec<&str> =
        ["lut", "merge"].into_iter().chain(paths.iter().map(|p| p.to_str().unwrap())).chain(["-o", out.to_str().unwrap()]).collect();
    let printed = ok(chanasc(&args));
    assert!(printed.contains(&format!("{} entries from 2 tables", keys.len())), "{printed}");
    let merged = nas::LatencyTable::load(&out).unwrap();
    assert_eq!(merged.entries.len(), keys.len());
    assert_eq!(merged.header, vec!["a test table".to_string()]);
    let d = nas::LatencyTable::load(&dir.join("all.default.yaml")).unwrap();
    for (k, e) in &merged.entries {
        assert!((d.entries[k].mean - 1.5 * e.mean).abs() < 1e-12);
    }
    // Records: each shard's (a verbatim repeat kept once).
    let records = std::fs::read_to_string(dir.join("all.records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 2, "{records}");
    // Records files alone merge into one.
    let r = dir.join("r.jsonl");
    let (r0, r1) = (dir.join("shard0.records.jsonl"), dir.join("shard1.records.jsonl"));
    let rec_args = ["lut", "merge", r0.to_str().unwrap(), r1.to_str().unwrap(), "-o", r.to_str().unwrap()];
    assert!(ok(chanasc(&rec_args)).contains("2 records from 2 files"));
    // Mixing both kinds is an error, and so is writing over an input.
    assert_clean_error(
        &chanasc(&["lut", "merge", paths[0].to_str().unwrap(), r.to_str().unwrap(), "-o", out.to_str().unwrap()]),
        &["not both"],
    );
    assert_clean_error(&chanasc(&["lut", "merge", paths[0].to_str().unwrap(), "-o", paths[0].to_str().unwrap()]), &["one of the inputs"]);
}

/// A co-search with the synthetic tables and the gap oracle, search only; its stdout.
fn cosearch(dir: &Path, name: &str, budget: &str, gap_weight: &str, seed: &str, extra: &[&str]) -> String {
    let out = dir.join(name);
    let oracle = gap_oracle();
    let lut = dir.join("tuned.yaml");
    let mut args = vec![
        "search",
        "--latency-ms",
        budget,
        "--accuracy",
        oracle.as_str(),
        "--lut",
        lut.to_str().unwrap(),
        "--gap-weight",
        gap_weight,
        "--seed",
        seed,
        "--population",
        "12",
        "--generations",
        "8",
        "--partition-samples",
        "24",
        "--search-only",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(chanasc(&args))
}

#[test]
fn cosearch_budget_determinism_and_gap_weight_with_a_command_oracle() {
    let dir = tempdir("gap");
    synthetic_table(&[160, 176], 1.0).save(&dir.join("tuned.yaml")).unwrap();
    // The default schedules: 1.4x slower on the depthwise convolutions of large kernels.
    let mut default = synthetic_table(&[160, 176], 1.0);
    for (k, e) in default.entries.iter_mut() {
        if k.contains("kernel:7") || k.contains("kernel:5") {
            e.mean *= 1.4;
        }
    }
    default.save(&dir.join("tuned.default.yaml")).unwrap();
    let (lo, hi) = {
        let t = nas::LatencyTable::load(&dir.join("tuned.yaml")).unwrap();
        let p = |a: nas::ArchConfig| t.predict(&nas::decompose(&a, 1.2).unwrap()).unwrap();
        (p(nas::ArchConfig::min(160)), p(nas::ArchConfig::max(176)))
    };
    let budget = format!("{:.3}", lo + 0.45 * (hi - lo));
    let b: f64 = budget.parse().unwrap();

    // The budget holds on the predicted latency, for the winner and every evaluated arch.
    let plain = cosearch(&dir, "plain", &budget, "0", "3", &[]);
    assert!(field(&plain, "predicted_latency_ms").parse::<f64>().unwrap() <= b, "{plain}");
    let csv = std::fs::read_to_string(dir.join("plain/pareto.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(rows.len() > 12, "{csv}");
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f[0], "cosearch");
        assert!(f[5].parse::<f64>().unwrap() <= b, "{r}");
    }
    let chosen = nas::ArchConfig::load(&dir.join("plain/arch.json")).unwrap();
    let partition = field(&plain, "partition");
    assert!(partition.ends_with(&format!("r{}", chosen.r)), "{plain}");
    let parts = std::fs::read_to_string(dir.join("plain/partitions.csv")).unwrap();
    assert_eq!(parts.lines().count(), 3, "{parts}");
    assert_eq!(parts.lines().filter(|l| l.ends_with(",1")).count(), 1);
    let log = std::fs::read_to_string(dir.join("plain/search_log.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"phase\":\"partition\"")).count(), 2);
    assert_eq!(log.lines().filter(|l| l.contains("\"phase\":\"cosearch\"")).count(), 9);
    assert!(std::fs::read_to_string(dir.join("plain/pareto.svg")).unwrap().starts_with("<svg"));
    let summary = std::fs::read_to_string(dir.join("plain/summary.md")).unwrap();
    assert!(summary.contains(&chosen.to_compact()) && summary.contains("not measured (--search-only)"), "{summary}");

    // The same seed: the same partitions, the same arch.
    let again = cosearch(&dir, "again", &budget, "0", "3", &[]);
    assert_eq!(field(&again, "chosen"), field(&plain, "chosen"));
    assert_eq!(std::fs::read_to_string(dir.join("again/partitions.csv")).unwrap(), parts);

    // A larger gap weight: a smaller generalization gap.
    let gap = |out: &str| field(out, "gap").parse::<f64>().unwrap();
    let weighted = cosearch(&dir, "weighted", &budget, "3", "3", &[]);
    assert!(gap(&weighted) < gap(&plain), "gap {} with weight 3, {} with 0", gap(&weighted), gap(&plain));
    assert!(field(&weighted, "score").parse::<f64>().unwrap() < field(&weighted, "val_acc").parse::<f64>().unwrap());

    // Against the baseline (default table beside the tuned one), search only.
    let both = cosearch(&dir, "both", &budget, "0", "3", &["--compare-baseline", "--iso-steps", "2"]);
    let base_acc: f64 = field(&both, "baseline_val_acc").parse().unwrap();
    assert!(field(&both, "baseline_predicted_latency_ms").parse::<f64>().unwrap() <= b);
    // The co-search's arch at the baseline's accuracy, when it found one, is that accurate.
    if let Some(iso) = both.lines().find_map(|l| l.strip_prefix("iso_val_acc=")) {
        assert!(iso.parse::<f64>().unwrap() >= base_acc, "{both}");
        assert!(field(&both, "iso_budget_ms").parse::<f64>().unwrap() <= 2.0 * b);
    }
    let csv = std::fs::read_to_string(dir.join("both/pareto.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("baseline,")) && csv.lines().any(|l| l.starts_with("cosearch,")));
    let svg = std::fs::read_to_string(dir.join("both/pareto.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert!(dir.join("both/baseline/arch.json").is_file());

    // Errors: one line.
    let lut = dir.join("tuned.yaml");
    let o = dir.join("err");
    let base = ["search", "--latency-ms", budget.as_str(), "--accuracy", "command:true", "-o", o.to_str().unwrap()];
    let with = |more: &[&str]| {
        let mut a = base.to_vec();
        a.extend(more);
        chanasc(&a)
    };
    assert_clean_error(&with(&[]), &["--lut TUNED.yaml is needed"]);
    assert_clean_error(&with(&["--lut", lut.to_str().unwrap()]), &["--records FILE is needed"]);
    assert_clean_error(&with(&["--lut", lut.to_str().unwrap(), "--records", "/no/such.jsonl"]), &["/no/such.jsonl"]);
    assert_clean_error(&with(&["--lut", lut.to_str().unwrap(), "--search-only", "--gap-weight=-1"]), &["--gap-weight"]);
    assert_clean_error(
        &with(&["--lut", lut.to_str().unwrap(), "--search-only", "--compare-baseline", "--default-lut", "/no/d.yaml"]),
        &["/no/d.yaml", "--default-lut"],
    );
    assert_clean_error(&with(&["--lut", lut.to_str().unwrap(), "--baseline", "--compare-baseline"]), &["options of the co-search"]);
    // An unknown partition ranking is a usage error (clap's exit code 2) naming the choices.
    let bad = with(&["--lut", lut.to_str().unwrap(), "--search-only", "--rank-partitions", "bogus"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("expected samples or probe") && !stderr(&bad).contains("panicked"), "{}", stderr(&bad));
}

/// Quick timing settings for tests.
const QUICK: [&str; 8] = ["--runs", "3", "--warmup", "1", "--flush-mb", "0", "--retries", "0"];

#[test]
fn prescheduling_tunes_measures_and_its_records_compile_the_winner() {
    let dir = tempdir("presched");
    let lut = dir.join("lut.yaml");
    let o = lut.to_str().unwrap();
    // The distinct blocks and tasks of the space, without building anything.
    let dry = ok(chanasc(&["lut", "build", "--tune-trials", "1", "--resolutions", "32,48", "--dry-run", "--shard", "1/3", "-o", o]));
    assert!(dry.contains("190 distinct blocks in 36 covering networks") && dry.contains("r=32: 96 blocks"), "{dry}");
    assert!(dry.contains("shard 1/3: tunes"), "{dry}");
    assert!(!lut.exists());
    // A small pre-scheduling run: every task of resolution 32 once (its default schedule),
    // then 6 of its 18 covering networks into each table.
    let mut args = vec!["lut", "build", "--tune-trials", "1", "--resolutions", "32", "--max-blocks", "6", "--time-budget", "120", "-o", o];
    args.extend(QUICK);
    let out = ok(chanasc(&args));
    assert!(out.contains("96 distinct blocks"), "{out}");
    assert!(out.contains("tuning: ") && out.contains("pre-scheduling cost"), "{out}");
    let tuned = nas::LatencyTable::load(&lut).unwrap();
    let default = nas::LatencyTable::load(&dir.join("lut.default.yaml")).unwrap();
    // The blocks of 6 networks, and the resolution's run overhead.
    assert_eq!(tuned.entries.keys().collect::<Vec<_>>(), default.entries.keys().collect::<Vec<_>>());
    assert!(tuned.entries.len() > 10 && tuned.entries.len() <= 97, "{}", tuned.entries.len());
    assert!(tuned.entries.contains_key(&nas::lut::overhead_key(32, 1000)));
    assert!(tuned.header.iter().any(|h| h.starts_with("tuned:")), "{:?}", tuned.header);
    let side = std::fs::read_to_string(dir.join("lut.yaml.schedules.jsonl")).unwrap();
    assert_eq!(side.lines().count(), 6);
    for line in side.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(nas::ArchConfig::from_compact(v["key"].as_str().unwrap()).is_ok(), "{line}");
        assert!(v["tuned_programs"].as_u64().unwrap() > 0, "{line}");
        assert!(!v["entries"].as_object().unwrap().is_empty());
        assert!(v["programs"].as_array().unwrap().iter().all(|p| p["block"].is_string()), "{line}");
    }
    let records = tune::RecordFile::open(&dir.join("lut.records.jsonl")).unwrap();
    assert!(!records.records.is_empty());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("lut.preschedule.json")).unwrap()).unwrap();
    assert_eq!(report["space_blocks"], 96);
    assert_eq!(report["runs"][0]["phase"], "all");
    let tasks = report["space_tasks"].as_u64().unwrap() as usize;
    // Resuming: nothing more to tune (1 trial per task is recorded when tuning finished).
    let recorded = report["trials_recorded"].as_u64().unwrap() as usize;
    if recorded >= tasks {
        let out = ok(chanasc(&args));
        assert!(out.contains("tuning: ") && out.contains(" 0 trials in this run"), "{out}");
        let side = std::fs::read_to_string(dir.join("lut.yaml.schedules.jsonl")).unwrap();
        assert_eq!(side.lines().count(), 12);
    }

    // The co-search on a synthetic table of resolution 32 with these records: the winner is
    // compiled with the recorded schedules of its tasks and measured.
    let syn = dir.join("syn.yaml");
    synthetic_table(&[32], 10.0).save(&syn).unwrap();
    let mut d = synthetic_table(&[32], 10.0);
    for e in d.entries.values_mut() {
        e.mean *= 1.2;
    }
    d.save(&dir.join("syn.default.yaml")).unwrap();
    let t = nas::LatencyTable::load(&syn).unwrap();
    let p = |a: nas::ArchConfig| t.predict(&nas::decompose(&a, 1.2).unwrap()).unwrap();
    let budget = format!("{:.4}", (p(nas::ArchConfig::min(32)) + p(nas::ArchConfig::max(32))) / 2.0);
    let oracle = gap_oracle();
    let out_dir = dir.join("search");
    let recs = dir.join("lut.records.jsonl");
    let mut args = vec![
        "search",
        "--latency-ms",
        budget.as_str(),
        "--accuracy",
        oracle.as_str(),
        "--lut",
        syn.to_str().unwrap(),
        "--records",
        recs.to_str().unwrap(),
        "--compare-baseline",
        "--population",
        "8",
        "--generations",
        "3",
        "--partition-samples",
        "16",
        "--resolutions",
        "32",
        "--iso-steps",
        "2",
        "-o",
        out_dir.to_str().unwrap(),
    ];
    args.extend(QUICK);
    let out = ok(chanasc(&args));
    for name in ["measured_latency_ms", "baseline_measured_latency_ms", "ratio_same_budget", "baseline_tuned_measured_latency_ms"] {
        assert!(field(&out, name).parse::<f64>().unwrap() > 0.0, "{name}: {out}");
    }
    assert!(out_dir.join("compiled/model").is_file() && out_dir.join("baseline/compiled/model").is_file());
    assert!(frontend::load_onnx(&out_dir.join("net.onnx")).is_ok());
    // The winner's schedules: the best record of each of its tasks that has one.
    let sched = tune::RecordFile::open(&out_dir.join("schedules.jsonl")).unwrap();
    assert!(!sched.records.is_empty() && sched.records.iter().all(|r| r.usable()));
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("compiled/model.json")).unwrap()).unwrap();
    assert!(manifest["programs"].as_array().unwrap().len() >= sched.records.len());
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(summary.contains("Same budget") && summary.contains("baseline / co-design measured latency"), "{summary}");
}

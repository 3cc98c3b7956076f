//! End to end through the `chanasc` binary: an architecture of the OFA space exported as
//! ONNX runs on the interpreter and agrees with ONNX Runtime (when the test venv has it);
//! `chanasc info` reports its parameters and MACs; `nas eval` and `nas blocks` answer, and
//! fail with one clear line on bad input.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc"))
        .args(args)
        .output()
        .expect("chanasc runs")
}

fn tempdir(name: &str) -> support::TempDir {
    support::TempDir::new(&format!("nas-{name}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Printed even when the harness captures test output.
fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// A failed run: exit status 1, no panic, one `error:` line holding each of `want`.
fn assert_clean_error(o: &Output, want: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {} stderr: {err}",
        stdout(o)
    );
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {err}");
    }
    assert!(
        stdout(o).is_empty(),
        "partial answer on stdout: {}",
        stdout(o)
    );
}

fn write_arch(dir: &Path, name: &str, arch: &nas::ArchConfig) -> String {
    let p = dir.join(name);
    std::fs::write(&p, arch.to_json()).unwrap();
    p.to_str().unwrap().to_string()
}

/// A mixed architecture: every kernel, expand ratio and depth of the space occurs.
fn mixed(r: u32) -> nas::ArchConfig {
    let ks = (0..20).map(|i| [3, 5, 7][i % 3]).collect();
    let e = (0..20).map(|i| [6, 3, 4][i % 3]).collect();
    nas::ArchConfig {
        ks,
        e,
        d: vec![4, 2, 3, 4, 3],
        r,
    }
}

/// ONNX Runtime's output for `model` on input `x`, through the test venv, or None without it.
fn ort(model: &Path, x: &Path, y: &Path) -> Option<ir::Tensor> {
    let python = support::root().join(".venv/bin/python");
    let has_ort = Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ort {
        return None;
    }
    let script = "import sys, numpy as np, onnxruntime as ort\n\
                  s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n\
                  np.save(sys.argv[3], s.run(None, {'input': np.load(sys.argv[2])})[0])";
    let o = Command::new(&python)
        .args(["-c", script])
        .arg(model)
        .arg(x)
        .arg(y)
        .output()
        .unwrap();
    assert!(o.status.success(), "onnxruntime: {}", stderr(&o));
    Some(frontend::npy::read_npy(y).unwrap())
}

#[test]
fn exported_network_runs_and_matches_onnx_runtime() {
    let dir = tempdir("e2e");
    for (width, arch) in [(1.2, mixed(192)), (1.0, nas::ArchConfig::min(160))] {
        let a = write_arch(&dir, "arch.json", &arch);
        let model = dir.join("net.onnx");
        let m = model.to_str().unwrap();
        let out = ok(chanasc(&[
            "export-arch",
            &a,
            "--width",
            &width.to_string(),
            "--seed",
            "7",
            "-o",
            m,
        ]));
        assert!(out.contains(&arch.to_compact()), "{out}");
        // A seeded input in [0, 1), given to both runtimes.
        let mut rng = nas::rng::SplitMix64::new(3);
        let r = arch.r as usize;
        let x = ir::Tensor::f32(
            vec![1, 3, r, r],
            (0..3 * r * r).map(|_| rng.next_f64() as f32).collect(),
        )
        .unwrap();
        let xp = dir.join("x.npy");
        frontend::npy::write_npy(&xp, &x).unwrap();
        let y = dir.join("y.npy");
        let input = format!("input={}", xp.display());
        let out = ok(chanasc(&[
            "run",
            m,
            "--backend",
            "interp",
            "--input",
            &input,
            "-o",
            y.to_str().unwrap(),
        ]));
        assert!(
            out.contains("output: f32[1,1000]") && out.contains("top-5"),
            "{out}"
        );
        let got = frontend::npy::read_npy(&y).unwrap();
        assert!(got.as_f32().unwrap().iter().all(|v| v.is_finite()));
        match ort(&model, &xp, &dir.join("ort.npy")) {
            Some(want) => {
                let rel = support::compare(&got, &want, 1e-4).unwrap_or_else(|e| panic!("w{width:?} {}: {e}", arch.to_compact()));
                note(&format!("nas e2e: w{width:?} {} interp vs onnxruntime: max|a-b|/max|b| = {rel:.2e}", arch.to_compact()));
            }
            None => note("nas e2e: SKIPPED the onnxruntime comparison: no .venv with onnxruntime (bash scripts/setup.sh makes it)"),
        }
        // The same seed gives the same model; another seed other weights.
        let again = dir.join("again.onnx");
        ok(chanasc(&[
            "export-arch",
            &a,
            "--width",
            &width.to_string(),
            "--seed",
            "7",
            "-o",
            again.to_str().unwrap(),
        ]));
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&model).unwrap()
        );
        ok(chanasc(&[
            "export-arch",
            &a,
            "--width",
            &width.to_string(),
            "--seed",
            "8",
            "-o",
            again.to_str().unwrap(),
        ]));
        assert_ne!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&model).unwrap()
        );
    }
}

/// `chanasc info` on the largest and smallest w1.2 networks: MACs as the block list counts
/// them; parameters as the block list counts them plus the two scalar constants (1/6 and 0.5)
/// the importer makes of each h_swish and h_sigmoid (39 in the largest net, 21 in the smallest).
#[test]
fn info_reports_params_and_macs_of_the_extremes() {
    let dir = tempdir("info");
    for (arch, params, macs, hard_acts) in [
        (
            nas::ArchConfig::max(224),
            10_701_632u64,
            843_101_040u64,
            39u64,
        ),
        (nas::ArchConfig::min(160), 4_602_456, 100_320_888, 21),
    ] {
        let blocks = nas::decompose(&arch, 1.2).unwrap();
        assert_eq!(blocks.iter().map(nas::Block::params).sum::<u64>(), params);
        assert_eq!(blocks.iter().map(nas::Block::macs).sum::<u64>(), macs);
        let a = write_arch(&dir, "arch.json", &arch);
        let model = dir.join("net.onnx");
        ok(chanasc(&["export-arch", &a, "-o", model.to_str().unwrap()]));
        let info = ok(chanasc(&["info", model.to_str().unwrap()]));
        assert!(info.contains(&format!("MACs: {macs} ")), "{info}");
        assert!(
            info.contains(&format!("parameters: {} ", params + 2 * hard_acts)),
            "{info}"
        );
        assert!(
            info.contains("f32[1,3,") && info.contains("f32[1,1000]"),
            "{info}"
        );
    }
}

#[test]
fn nas_blocks_lists_keys() {
    let dir = tempdir("blocks");
    let a = write_arch(&dir, "max.json", &nas::ArchConfig::max(224));
    let out = ok(chanasc(&["nas", "blocks", &a, "--width", "1.2"]));
    assert!(out.contains("26 blocks"), "{out}");
    for key in [
        "Conv-input:224x224x3-output:112x112x24",
        "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:7-stride:2-idskip:0-se:0-hs:0",
        "Conv_1-input:7x7x192-output:7x7x1152",
        "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    ] {
        assert!(out.contains(key), "{key} not in {out}");
    }
    let out = ok(chanasc(&["nas", "blocks", &a, "--width", "1.0"]));
    assert!(
        out.contains("Conv-input:224x224x3-output:112x112x16"),
        "{out}"
    );
}

#[test]
fn nas_eval_with_table_and_command_oracles() {
    let dir = tempdir("eval");
    let a = write_arch(&dir, "max.json", &nas::ArchConfig::max(224));
    let csv = dir.join("acc.csv");
    std::fs::write(
        &csv,
        format!(
            "arch,val_acc,train_acc\n{},0.81,0.86\n",
            nas::ArchConfig::max(224).to_compact()
        ),
    )
    .unwrap();
    let out = ok(chanasc(&[
        "nas",
        "eval",
        &a,
        "--width",
        "1.2",
        "--accuracy",
        &format!("table:{}", csv.display()),
    ]));
    assert_eq!(out, "val_acc=0.810000\ntrain_acc=0.860000\ngap=0.050000\n");
    let out = ok(chanasc(&[
        "nas",
        "eval",
        &a,
        "--accuracy",
        r#"command:grep -q '"r":224' && echo '{"val_acc": 0.5}'"#,
    ]));
    assert_eq!(out, "val_acc=0.500000\n");
    // A small latency table of this arch's blocks: the sum of their means, a block that
    // occurs several times (later blocks of a stage alike) counted each time.
    let blocks = nas::decompose(&nas::ArchConfig::max(224), 1.2).unwrap();
    let mean = |b: &nas::Block| 0.25 * (b.key().len() % 5) as f64;
    let mut table = nas::LatencyTable::default();
    for b in &blocks {
        table.entries.insert(
            b.key(),
            nas::LatencyEntry {
                count: 1,
                mean: mean(b),
                std: 0.0,
            },
        );
    }
    assert!(table.entries.len() < blocks.len());
    let lut = dir.join("lut.yaml");
    table.save(&lut).unwrap();
    let want: f64 = blocks.iter().map(mean).sum();
    let out = ok(chanasc(&[
        "nas",
        "eval",
        &a,
        "--lut",
        lut.to_str().unwrap(),
    ]));
    assert_eq!(out, format!("latency_ms={want:.6}\n"));

    // Errors: one line, exit 1, nothing on stdout.
    let min = write_arch(&dir, "min.json", &nas::ArchConfig::min(160));
    assert_clean_error(
        &chanasc(&["nas", "eval", &min, "--lut", lut.to_str().unwrap()]),
        &["lut.yaml", "no entry Conv-input:160x160x3-output:80x80x24"],
    );
    assert_clean_error(
        &chanasc(&[
            "nas",
            "eval",
            &min,
            "--accuracy",
            &format!("table:{}", csv.display()),
        ]),
        &["no row for k33333333333333333333"],
    );
    assert_clean_error(
        &chanasc(&[
            "nas",
            "eval",
            &a,
            "--accuracy",
            "command:sleep 5",
            "--oracle-timeout",
            "0.2",
        ]),
        &["did not answer within 0.2 s"],
    );
    assert_clean_error(
        &chanasc(&["nas", "eval", &a, "--accuracy", "command:echo nonsense"]),
        &["printed \"nonsense\""],
    );
    assert_clean_error(
        &chanasc(&["nas", "eval", &a, "--accuracy", "oracle:x"]),
        &["unknown oracle kind"],
    );
    assert_clean_error(&chanasc(&["nas", "eval", &a]), &["--accuracy", "--lut"]);
    assert_clean_error(
        &chanasc(&[
            "nas",
            "eval",
            &a,
            "--width",
            "1.1",
            "--lut",
            lut.to_str().unwrap(),
        ]),
        &["width 1.1"],
    );
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"ks": [3], "e": [3], "d": [2], "r": 224}"#).unwrap();
    assert_clean_error(
        &chanasc(&["nas", "blocks", bad.to_str().unwrap()]),
        &["bad.json", "ks has 1 entries, expected 20"],
    );
    std::fs::write(&bad, "{not json").unwrap();
    assert_clean_error(
        &chanasc(&[
            "export-arch",
            bad.to_str().unwrap(),
            "-o",
            dir.join("x.onnx").to_str().unwrap(),
        ]),
        &["bad.json", "not an arch config"],
    );
    assert_clean_error(
        &chanasc(&["nas", "blocks", dir.join("missing.json").to_str().unwrap()]),
        &["missing.json"],
    );
    std::fs::write(&lut, "Conv-input:1x1x1-output:1x1x1:\n  count: x\n").unwrap();
    assert_clean_error(
        &chanasc(&["nas", "eval", &a, "--lut", lut.to_str().unwrap()]),
        &["lut.yaml:2", "count"],
    );
}

#[test]
fn nas_eval_with_ofa_data() {
    let Some(shared) = support::shared_dir() else {
        note("nas eval: SKIPPED: ../shared is not present (set CHANASC_SHARED to its path)");
        return;
    };
    let ofa = shared.join("data/ofa");
    let dir = tempdir("ofa");
    let predictor = format!(
        "predictor:{}",
        ofa.join("ofa_mbv3_w12_acc_predictor.safetensors").display()
    );
    let a = write_arch(&dir, "max.json", &nas::ArchConfig::max(224));
    let lut = ofa.join("note10_lut_224.yaml");
    let out = ok(chanasc(&[
        "nas",
        "eval",
        &a,
        "--width",
        "1.2",
        "--accuracy",
        &predictor,
        "--lut",
        lut.to_str().unwrap(),
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "val_acc=0.835928", "{out}");
    let ms: f64 = lines[1]
        .strip_prefix("latency_ms=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 10.0 && ms < 1000.0, "{out}");
    let min = write_arch(&dir, "min.json", &nas::ArchConfig::min(160));
    let out = ok(chanasc(&["nas", "eval", &min, "--accuracy", &predictor]));
    assert_eq!(out, "val_acc=0.753119\n");
    let low = write_arch(&dir, "low.json", &nas::ArchConfig::min(128));
    assert_clean_error(
        &chanasc(&["nas", "eval", &low, "--accuracy", &predictor]),
        &["r = 128", "predictor"],
    );
    assert_clean_error(
        &chanasc(&[
            "nas",
            "eval",
            &min,
            "--width",
            "1.0",
            "--accuracy",
            &predictor,
        ]),
        &["w1.2"],
    );
}

/// Fast timing settings for tests: a few runs, no cache flush.
const QUICK: [&str; 8] = [
    "--runs",
    "3",
    "--warmup",
    "1",
    "--flush-mb",
    "0",
    "--retries",
    "0",
];

#[test]
fn lut_build_refuses_what_it_cannot_do_and_resumes_a_partial_table() {
    let dir = tempdir("lutbuild");
    let out = dir.join("lut.yaml");
    let o = out.to_str().unwrap();
    assert_clean_error(
        &chanasc(&["lut", "build", "--tune-trials", "5", "--shard", "4/4", "-o", o]),
        &["--shard \"4/4\"", "out of range"],
    );
    assert_clean_error(
        &chanasc(&["lut", "build", "--tune-trials", "5", "--shard", "0/2", "-o", o]),
        &["--phase tune", "--phase measure", "lut merge"],
    );
    assert_clean_error(&chanasc(&["lut", "build", "--shard", "0/2", "--phase", "tune", "-o", o]), &["--tune-trials N"]);
    assert_clean_error(
        &chanasc(&["lut", "build", "--arch", "aarch64", "-o", o]),
        &["--arch \"aarch64\"", "only host"],
    );
    assert_clean_error(
        &chanasc(&["lut", "build", "--space", "darts", "-o", o]),
        &["unknown --space \"darts\""],
    );
    assert_clean_error(
        &chanasc(&["lut", "build", "--width", "1.1", "-o", o]),
        &["width 1.1"],
    );
    assert!(!out.exists());
    // Three blocks of the tiny resolution 32, then three more: the first three are kept.
    let build = |max: &str| {
        let mut args = vec!["lut", "build", "--resolutions", "32", "--max-blocks", max, "-o", o];
        args.extend(QUICK);
        chanasc(&args)
    };
    let first = ok(build("3"));
    assert!(first.contains("3 entries (3 measured now, 0 already there, 94 still to measure"), "{first}");
    let t1 = nas::LatencyTable::load(&out).unwrap();
    assert_eq!(t1.entries.len(), 3);
    assert!(t1.header[0].starts_with("chanasc lut build: ofa-mbv3 w1.2"), "{:?}", t1.header);
    let second = ok(build("3"));
    assert!(second.contains("6 entries (3 measured now, 3 already there"), "{second}");
    let t2 = nas::LatencyTable::load(&out).unwrap();
    for (k, e) in &t1.entries {
        assert_eq!(t2.entries[k], *e, "{k} was measured again");
    }
    let side = std::fs::read_to_string(dir.join("lut.yaml.schedules.jsonl")).unwrap();
    assert_eq!(side.lines().count(), 6);
    for line in side.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(t2.entries.contains_key(v["key"].as_str().unwrap()));
        assert!(!v["programs"].as_array().unwrap().is_empty(), "{line}");
        assert!(v["programs"][0]["schedule"].is_array(), "{line}");
    }
    for e in t2.entries.values() {
        assert_eq!(e.count, 3);
        assert!(e.mean > 0.0 && e.mean < 100.0);
    }
    // A corrupt table is not silently replaced.
    std::fs::write(&out, "Conv-input:32x32x3-output:16x16x24:\n  count: x\n").unwrap();
    assert_clean_error(&build("3"), &["lut.yaml:2", "cannot resume"]);
}

#[test]
fn lut_show_check_and_baseline_search_with_ofa_tables() {
    let Some(shared) = support::shared_dir() else {
        note("lut check / search: SKIPPED: ../shared is not present (set CHANASC_SHARED to its path)");
        return;
    };
    let ofa = shared.join("data/ofa");
    let tables: Vec<String> = [160, 176, 192, 208, 224]
        .iter()
        .map(|r| ofa.join(format!("note10_lut_{r}.yaml")).display().to_string())
        .collect();
    let all = tables.join(",");
    let dir = tempdir("search");
    // Several tables read as one, comma-separated or repeated.
    let shown = ok(chanasc(&["lut", "show", &all]));
    assert!(shown.contains("450 entries"), "{shown}");
    for r in ["160", "176", "192", "208", "224"] {
        assert!(shown.lines().any(|l| l.trim_start().starts_with(r) && l.contains("96/96")), "{shown}");
    }
    let a = write_arch(&dir, "a.json", &nas::ArchConfig::max(208));
    let joined = ok(chanasc(&["nas", "eval", &a, "--lut", &all]));
    let mut repeated = vec!["nas", "eval", a.as_str()];
    for t in &tables {
        repeated.extend(["--lut", t.as_str()]);
    }
    assert_eq!(ok(chanasc(&repeated)), joined);
    let alone = ok(chanasc(&["nas", "eval", &a, "--lut", &tables[3]]));
    let ms = |s: &str| s.trim().strip_prefix("latency_ms=").unwrap().parse::<f64>().unwrap();
    // Only the head layers are shared between resolutions: pooled, they move a little.
    assert!((ms(&joined) - ms(&alone)).abs() / ms(&alone) < 0.05, "{joined} {alone}");

    // lut check on two sampled networks (Note10 predictions against this machine: the
    // errors mean nothing here, the command's output does).
    let mut args = vec!["lut", "check", "--lut", &all, "--samples", "2", "--resolutions", "160", "--passes", "1"];
    args.extend(QUICK);
    let checked = ok(chanasc(&args));
    let lines: Vec<&str> = checked.lines().collect();
    assert!(lines[0].starts_with("arch") && lines[0].contains("error_%"), "{checked}");
    for l in &lines[1..3] {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(nas::ArchConfig::from_compact(f[0]).is_ok(), "{l}");
        let (p, m, e): (f64, f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
        assert!(p > 0.0 && m > 0.0);
        assert!((e - (p - m) / m * 100.0).abs() < 0.02, "{l}");
    }
    assert!(checked.contains("2 archs (resolutions [160], seed 0): median |error|"), "{checked}");

    let predictor = format!("predictor:{}", ofa.join("ofa_mbv3_w12_acc_predictor.safetensors").display());
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let base = ["search", "--latency-ms", "20", "--accuracy", predictor.as_str(), "--lut", all.as_str()];
    let mut no_baseline = base.to_vec();
    no_baseline.extend(["-o", o]);
    assert_clean_error(&chanasc(&no_baseline), &["--records FILE is needed", "note10_lut_160.records.jsonl"]);
    assert_clean_error(
        &chanasc(&["search", "--latency-ms", "20", "--accuracy", &predictor, "--baseline", "-o", o]),
        &["--lut"],
    );
    let mut tight = base.to_vec();
    tight[2] = "1";
    tight.extend(["--baseline", "-o", o]);
    assert_clean_error(&chanasc(&tight), &["below the smallest network"]);
    let mut args = base.to_vec();
    args.extend(["--baseline", "--resolutions", "160,176", "--population", "8", "--generations", "3", "--seed", "5", "-o", o]);
    args.extend(QUICK);
    let res = chanasc(&args);
    let stdout = ok(res);
    let field = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .to_string()
    };
    let predicted: f64 = field("predicted_latency_ms").parse().unwrap();
    assert!(predicted <= 20.0, "{stdout}");
    let measured: f64 = field("measured_latency_ms").parse().unwrap();
    assert!(measured > 0.0);
    let chosen = nas::ArchConfig::load(&out.join("arch.json")).unwrap();
    assert!(stdout.contains(&format!("chosen: {}", chosen.to_compact())), "{stdout}");
    assert!([160, 176].contains(&chosen.r));
    let acc: f64 = field("val_acc").parse().unwrap();
    assert!(acc > 0.7 && acc < 0.9);
    // The ONNX imports, and the compiled runner is there.
    assert!(frontend::load_onnx(&out.join("net.onnx")).is_ok());
    assert!(out.join("compiled/model").is_file() && out.join("compiled/model.json").is_file());
    let csv = std::fs::read_to_string(out.join("population.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "arch,val_acc,latency_ms,on_pareto_front");
    assert!(rows.len() > 8, "{csv}");
    assert!(rows[1..].iter().all(|r| r.split(',').nth(2).unwrap().parse::<f64>().unwrap() <= 20.0));
    assert!(rows[1..].iter().any(|r| r.ends_with(",1")));
    assert!(rows.iter().any(|r| r.starts_with(&chosen.to_compact())));
    let log = std::fs::read_to_string(out.join("search_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["generation"], 3);
    assert_eq!(last["best_arch"], chosen.to_compact());
    let svg = std::fs::read_to_string(out.join("pareto.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("budget 20 ms"));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains(&chosen.to_compact()) && summary.contains("| latency budget | 20 ms |"), "{summary}");
    assert!(summary.contains("measured latency (compiled winner, median)"), "{summary}");
}

//! The wgpu backend through the CLI: `run --backend wgpu` gives the interpreter's output,
//! `compile --arch wgpu` writes a bundle, `tune --arch wgpu` records schedules that `bench
//! --backend wgpu --records` and `compile --arch wgpu --records` use. On a machine without a
//! GPU adapter, `run --backend wgpu` fails with one line saying so, and the rest is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

fn ok(args: &[&str]) -> String {
    let out = chanasc(args);
    assert!(out.status.success(), "chanasc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn floats(path: &Path) -> Vec<f32> {
    match frontend::npy::read_npy(path).unwrap().data {
        ir::TensorData::F32(v) => v,
        other => panic!("{:?}", other.dtype()),
    }
}

#[test]
fn run_compile_tune_and_bench_on_wgpu() {
    let dir: PathBuf = std::env::temp_dir().join(format!("chanasc-wgpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ok(&["example", "tiny-cnn", "-o", &p("tiny.onnx")]);
    ok(&["run", &p("tiny.onnx"), "-o", &p("want.npy")]);
    let gpu = chanasc(&["run", &p("tiny.onnx"), "--backend", "wgpu", "-o", &p("got.npy")]);
    if !wgpu_backend::Executor::available() {
        println!("skipping: {}", wgpu_backend::NO_ADAPTER);
        assert_eq!(gpu.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&gpu.stderr).contains("no GPU adapter"));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert!(gpu.status.success(), "{}", String::from_utf8_lossy(&gpu.stderr));
    let (got, want) = (floats(&dir.join("got.npy")), floats(&dir.join("want.npy")));
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-3 * scale), "{got:?} against {want:?}");

    let out = ok(&["compile", &p("tiny.onnx"), "--arch", "wgpu", "-o", &p("bundle")]);
    assert!(out.contains("chanasc-wgpu-run"), "{out}");
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("bundle/model.json")).unwrap()).unwrap();
    let programs = manifest["programs"].as_array().unwrap();
    assert!(programs.iter().all(|p| dir.join("bundle").join(p["shader"].as_str().unwrap()).is_file()));

    let out = ok(&["tune", &p("tiny.onnx"), "--arch", "wgpu", "--trials", "20", "--records", &p("records.jsonl")]);
    assert!(out.contains("total weighted latency"), "{out}");
    let out = ok(&["bench", &p("tiny.onnx"), "--backend", "wgpu", "--runs", "3", "--records", &p("records.jsonl")]);
    assert!(out.contains("with tuned schedules") && out.contains("median"), "{out}");
    assert!(!out.contains("(0 with tuned schedules)"), "{out}");
    let out = ok(&["compile", &p("tiny.onnx"), "--arch", "wgpu", "--records", &p("records.jsonl"), "-o", &p("tuned")]);
    assert!(out.contains("use tuned schedules"), "{out}");
    // Bad arguments are one-line errors.
    let bad = chanasc(&["run", &p("tiny.onnx"), "--backend", "vulkan"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("wgpu"));
    let _ = std::fs::remove_dir_all(&dir);
}

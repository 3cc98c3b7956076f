//! The native path end to end on the built-in example: `chanasc compile` for x86-64 (and
//! aarch64 under qemu), the runner, the C API from a C program, and `run --backend llvm`,
//! each checked against the reference interpreter.

mod support;

use std::path::{Path, PathBuf};
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
    support::TempDir::new(&format!("native-{name}"))
}

/// The example model, an input for it, and the interpreter's output.
fn example(dir: &Path) -> (PathBuf, PathBuf, Tensor) {
    let model = dir.join("tiny.onnx");
    ok(&chanasc(&["example", "tiny-cnn", "-o", model.to_str().unwrap()]));
    let x: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let x = Tensor::f32(vec![1, 3, 32, 32], x).unwrap();
    let xp = dir.join("x.npy");
    frontend::npy::write_npy(&xp, &x).unwrap();
    let g = frontend::load_onnx(&model).unwrap();
    let want = interp::run(&g, &[x]).unwrap().remove(0);
    (model, xp, want)
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn compile_x86_64_runner_matches_the_interpreter() {
    let dir = tempdir("x86");
    let (model, x, want) = example(&dir);
    let out = dir.join("out");
    ok(&chanasc(&["compile", model.to_str().unwrap(), "--arch", "x86-64", "-o", out.to_str().unwrap()]));
    for f in ["model.o", "libmodel.a", "model.h", "model", "model.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let y = dir.join("y.npy");
    ok(&Command::new(out.join("model")).args(["--input", &format!("input={}", x.display()), "-o", y.to_str().unwrap()]).output().unwrap());
    let got = frontend::npy::read_npy(&y).unwrap();
    support::compare(&got, &want, 1e-4).unwrap();
    // Three inputs stacked along the first axis: one run each, the outputs stacked the same way.
    let g = frontend::load_onnx(&model).unwrap();
    let x1 = Tensor::f32(vec![1, 3, 32, 32], (0..3 * 32 * 32).map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0).collect()).unwrap();
    let x0 = frontend::npy::read_npy(&x).unwrap();
    let mut data = x0.as_f32().unwrap().to_vec();
    data.extend_from_slice(x1.as_f32().unwrap());
    data.extend_from_slice(x0.as_f32().unwrap());
    let xs = dir.join("xs.npy");
    frontend::npy::write_npy(&xs, &Tensor::f32(vec![3, 3, 32, 32], data).unwrap()).unwrap();
    let ys = dir.join("ys.npy");
    ok(&Command::new(out.join("model")).args(["--input", xs.to_str().unwrap(), "-o", ys.to_str().unwrap()]).output().unwrap());
    let stacked = frontend::npy::read_npy(&ys).unwrap();
    let want1 = interp::run(&g, &[x1]).unwrap().remove(0);
    assert_eq!(stacked.shape[0], 3 * want.shape[0]);
    let n = want.numel();
    for (k, w) in [&want, &want1, &want].into_iter().enumerate() {
        let slice = Tensor::f32(w.shape.clone(), stacked.as_f32().unwrap()[k * n..(k + 1) * n].to_vec()).unwrap();
        support::compare(&slice, w, 1e-4).unwrap();
    }
    let bad = dir.join("bad.npy");
    frontend::npy::write_npy(&bad, &Tensor::f32(vec![2, 3, 32, 31], vec![0.0; 2 * 3 * 32 * 31]).unwrap()).unwrap();
    let o = Command::new(out.join("model")).args(["--input", bad.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("shape differs"), "{o:?}");
    let bench = ok(&Command::new(out.join("model")).args(["--bench", "5", "--threads", "2"]).output().unwrap());
    assert!(bench.lines().any(|l| l.starts_with("median ")), "{bench}");
    let manifest: String = std::fs::read_to_string(out.join("model.json")).unwrap();
    assert!(manifest.contains("\"schedule\"") && manifest.contains("\"inputs\""), "{manifest}");
}

#[test]
fn a_c_program_uses_the_library() {
    let dir = tempdir("capi");
    let (model, _, _) = example(&dir);
    let out = dir.join("out");
    ok(&chanasc(&["compile", model.to_str().unwrap(), "-o", out.to_str().unwrap()]));
    let main = r#"
#include <stdio.h>
#include <stdlib.h>
#include "model.h"
int main(void) {
    if (model_num_inputs() != 1 || model_input_rank(0) != 4 || model_input_shape(0)[3] != 32) return 2;
    static float x[1 * 3 * 32 * 32], y[10];
    for (int i = 0; i < 3 * 32 * 32; i++) x[i] = (float)((i * 37 % 101) / 50.0 - 1.0);
    model_model *m = model_create(2);
    const void *in[] = {x};
    void *out[] = {y};
    if (model_run(m, in, out) != 0) return 3;
    for (int i = 0; i < 10; i++) printf("%.7g\n", y[i]);
    model_destroy(m);
    return 0;
}
"#;
    std::fs::write(out.join("main.c"), main).unwrap();
    ok(&Command::new("cc").current_dir(&out).args(["main.c", "libmodel.a", "-lpthread", "-lm", "-o", "capi"]).output().unwrap());
    let printed = ok(&Command::new(out.join("capi")).output().unwrap());
    let got: Vec<f32> = printed.lines().map(|l| l.parse().unwrap()).collect();
    let (_, _, want) = example(&dir);
    support::compare(&Tensor::f32(vec![1, 10], got).unwrap(), &want, 1e-4).unwrap();
}

#[test]
fn compile_aarch64_runs_under_qemu() {
    if !have("qemu-aarch64") || !have("aarch64-linux-gnu-gcc") {
        println!("SKIPPED: qemu-aarch64 or aarch64-linux-gnu-gcc is not installed (scripts/setup.sh installs them)");
        return;
    }
    let dir = tempdir("a64");
    let (model, x, want) = example(&dir);
    let out = dir.join("out");
    ok(&chanasc(&["compile", model.to_str().unwrap(), "--arch", "aarch64", "-o", out.to_str().unwrap()]));
    let y = dir.join("y.npy");
    let run = Command::new("qemu-aarch64")
        .args(["-L", "/usr/aarch64-linux-gnu", out.join("model").to_str().unwrap()])
        .args(["--input", &format!("input={}", x.display()), "-o", y.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&run);
    support::compare(&frontend::npy::read_npy(&y).unwrap(), &want, 1e-4).unwrap();
}

#[test]
fn run_with_the_llvm_backend_matches_the_interpreter() {
    let dir = tempdir("jit");
    let (model, x, want) = example(&dir);
    let y = dir.join("y.npy");
    let spec = format!("input={}", x.display());
    ok(&chanasc(&["run", model.to_str().unwrap(), "--backend", "llvm", "--input", &spec, "-o", y.to_str().unwrap()]));
    support::compare(&frontend::npy::read_npy(&y).unwrap(), &want, 1e-4).unwrap();
    let bench = ok(&chanasc(&["bench", model.to_str().unwrap(), "--runs", "3", "--warmup", "1"]));
    assert!(bench.contains("median") && bench.contains("GFLOP/s") && bench.contains("conv2d"), "{bench}");
}

//! The torchvision fixture models of `../shared/fixtures/models`: each imports, its graph IR
//! text parses back to the same text, and the interpreter, the x86-64 build (`chanasc
//! compile` and its runner), the aarch64 build (under qemu) and the cranelift JIT (`chanasc
//! run --backend cranelift`) reproduce ONNX Runtime's output (max|a-b| / max|b| <= 1e-4), the
//! f16 builds (`--dtype f16`, x86-64 and aarch64) keep its top-1 class within 1e-2 (2e-2
//! with f16 activations), and
//! the wgpu backend (`chanasc run --backend wgpu`, lavapipe in CI) reproduces it within 1e-3
//! (skipped, saying so, on a machine without a GPU adapter). Without `../shared` this test
//! says so and passes.

mod support;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn check(model: &std::path::Path) -> Result<String, String> {
    let stem = model.with_extension("");
    let g = frontend::load_onnx(model).map_err(|e| e.to_string())?;
    let text = ir::text::print_graph(&g);
    let reparsed = ir::text::parse_graph(&text).map_err(|e| format!("printed IR does not parse: {e}"))?;
    if ir::text::print_graph(&reparsed) != text {
        return Err("printed IR does not parse back to the same text".into());
    }
    let input = frontend::npy::read_npy(&stem.with_extension("input.npy")).map_err(|e| e.to_string())?;
    let want = frontend::npy::read_npy(&stem.with_extension("output.npy")).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let got = interp::run(&g, &[input.clone()]).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    let rel = support::compare(&got[0], &want, 1e-4)?;
    let mut report = format!("{} nodes, IR round-trip ok, interp rel error {rel:.2e} ({secs:.2} s)", g.nodes.len());
    // After graph optimization every batch norm, activation, residual add and squeeze-excite
    // multiply of mobilenet_v3_large is fused into a neighbour: at most one tensor program
    // per Conv, Gemm and global pool of the model (reported for the others).
    let summary = frontend::summarize_onnx(&std::fs::read(model).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let budget: usize = ["Conv", "Gemm", "GlobalAveragePool"].iter().map(|op| summary.op_histogram.get(*op).copied().unwrap_or(0)).sum();
    let optimized = passes::pipeline::prepare_graph(&g, true).map_err(|e| e.to_string())?;
    // The optimized graph (fused ops included) prints and parses too, and the interpreter
    // gives the model's output on it.
    let text = ir::text::print_graph(&optimized);
    let reparsed = ir::text::parse_graph(&text).map_err(|e| format!("printed optimized IR does not parse: {e}"))?;
    if ir::text::print_graph(&reparsed) != text {
        return Err("printed optimized IR does not parse back to the same text".into());
    }
    let got_optimized = interp::run(&optimized, &[input]).map_err(|e| format!("optimized graph: {e}"))?;
    let rel_optimized = support::compare(&got_optimized[0], &want, 1e-4).map_err(|e| format!("optimized graph: {e}"))?;
    let moved = support::compare(&got_optimized[0], &got[0], 1e-4).map_err(|e| format!("optimized graph: {e}"))?;
    report.push_str(&format!(", optimized graph {rel_optimized:.2e} ({moved:.1e} from the unoptimized)"));
    let steps = passes::lower::lower_graph(&optimized).map_err(|e| e.to_string())?;
    // Every program counts against the budget, layout changes (NCHW to NCHWc and back)
    // included; they are reported apart too.
    let mut programs = 0;
    let mut layout_changes = 0;
    for step in &steps {
        let passes::lower::Step::Run(p) = step else { continue };
        programs += 1;
        if p.nodes.iter().all(|&n| matches!(optimized.node(n).op, ir::Op::ToNchwc { .. } | ir::Op::FromNchwc { .. })) {
            layout_changes += 1;
        }
    }
    if programs > budget && model.ends_with("mobilenet_v3_large.onnx") {
        return Err(format!("{programs} tensor programs after fusion, more than the {budget} Conv + Gemm + global pools"));
    }
    report.push_str(&format!(", {programs} tensor programs (budget {budget}, {layout_changes} of them layout changes)"));
    for arch in ["x86-64", "aarch64"] {
        match native(model, arch, F32, &want)? {
            Some(rel) => report.push_str(&format!(", {arch} {rel:.2e}")),
            None => report.push_str(&format!(", {arch} SKIPPED (no cross toolchain or qemu)")),
        }
    }
    for (arch, build) in [("x86-64", F16), ("aarch64", F16), ("aarch64", F16_ACTIVATIONS)] {
        if let Some(rel) = native(model, arch, build, &want)? {
            report.push_str(&format!(", {arch} {} {rel:.2e} (top-1 same)", build.name));
        }
    }
    let rel = in_process(model, "cranelift", &[], &want, 1e-4)?;
    report.push_str(&format!(", cranelift {rel:.2e}"));
    if wgpu_backend::Executor::available() {
        let start = Instant::now();
        let rel = in_process(model, "wgpu", &[], &want, 1e-3)?;
        report.push_str(&format!(", wgpu {rel:.2e} ({:.1} s)", start.elapsed().as_secs_f64()));
        // f16 where the adapter has shader-f16 (lavapipe does); f32 otherwise.
        let rel = in_process(model, "wgpu", &["--dtype", "f16"], &want, 1e-2)?;
        let dtype = if wgpu_backend::Executor::supports_f16() { "f16" } else { "f16 asked, f32 run (no shader-f16)" };
        report.push_str(&format!(", wgpu {dtype} {rel:.2e}"));
    } else {
        report.push_str(&format!(", wgpu skipping: {}", wgpu_backend::NO_ADAPTER));
    }
    Ok(report)
}

/// Runs the model on an in-process backend (`chanasc run --backend cranelift|wgpu`) and
/// compares its output at relative tolerance `tol`.
fn in_process(model: &Path, backend: &str, flags: &[&str], want: &ir::Tensor, tol: f64) -> Result<f64, String> {
    let stem = model.with_extension("");
    let name = stem.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let y = std::env::temp_dir().join(format!("chanasc-fixture-{}-{name}-{backend}.npy", std::process::id()));
    let input = format!("input={}", stem.with_extension("input.npy").display());
    let ran = Command::new(env!("CARGO_BIN_EXE_chanasc"))
        .args(["run", model.to_str().unwrap_or_default(), "--backend", backend, "--input", &input, "-o", y.to_str().unwrap_or_default()])
        .args(flags)
        .output()
        .map_err(|e| e.to_string())?;
    if !ran.status.success() {
        return Err(format!("run {backend}: {}", String::from_utf8_lossy(&ran.stderr)));
    }
    let got = frontend::npy::read_npy(&y).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&y);
    support::compare(&got, want, tol).map_err(|e| format!("{backend}: {e}"))
}

/// A build of a model: its dtype, the compile flags that give it, and how close to ONNX
/// Runtime's f32 output it must be (max|a-b| / max|b|, and the same top-1 class).
#[derive(Clone, Copy)]
struct Build {
    name: &'static str,
    dtype: ir::DType,
    flags: &'static [&'static str],
    tolerance: f64,
}

const F32: Build = Build { name: "f32", dtype: ir::DType::F32, flags: &[], tolerance: 1e-4 };
/// f16 weights, inputs and outputs.
const F16: Build = Build { name: "f16", dtype: ir::DType::F16, flags: &["--dtype", "f16"], tolerance: 1e-2 };
/// f16 activations too (elementwise arithmetic in f16 on aarch64 `+fullfp16`): mobilenet_v2
/// comes to about 1.1e-2, as ONNX Runtime's own f16 conversion of it does (1.2e-2).
const F16_ACTIVATIONS: Build =
    Build { name: "f16 with f16 activations", dtype: ir::DType::F16, flags: &["--dtype", "f16", "--f16-activations"], tolerance: 2e-2 };

/// Compiles `build` for `arch`, runs the runner (under qemu for aarch64) on the input (as
/// f16 for an f16 model) and compares its output with the build's tolerance.
fn native(model: &Path, arch: &str, build: Build, want: &ir::Tensor) -> Result<Option<f64>, String> {
    let dtype = build.dtype;
    let have = |tool: &str| Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success());
    if arch == "aarch64" && !(have("qemu-aarch64") && have("aarch64-linux-gnu-gcc")) {
        return Ok(None);
    }
    let stem = model.with_extension("");
    let name = stem.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let out = std::env::temp_dir().join(format!("chanasc-fixture-{}-{name}-{arch}-{}", std::process::id(), build.flags.len()));
    let compiled = Command::new(env!("CARGO_BIN_EXE_chanasc"))
        .args(["compile", model.to_str().unwrap_or_default(), "--arch", arch, "-o", out.to_str().unwrap_or_default()])
        .args(build.flags)
        .output()
        .map_err(|e| e.to_string())?;
    if !compiled.status.success() {
        return Err(format!("compile {arch} {}: {}", build.name, String::from_utf8_lossy(&compiled.stderr)));
    }
    let y = out.join("y.npy");
    let mut x = stem.with_extension("input.npy");
    if dtype == ir::DType::F16 {
        let input = frontend::npy::read_npy(&x).map_err(|e| e.to_string())?;
        x = out.join("x16.npy");
        frontend::npy::write_npy(&x, &input.with_float_dtype(dtype)).map_err(|e| e.to_string())?;
    }
    let input = format!("input={}", x.display());
    let runner = out.join("model");
    let mut cmd = if arch == "aarch64" {
        let mut c = Command::new("qemu-aarch64");
        c.args(["-L", "/usr/aarch64-linux-gnu"]).arg(&runner);
        c
    } else {
        Command::new(&runner)
    };
    let ran = cmd.args(["--input", &input, "-o", y.to_str().unwrap_or_default()]).output().map_err(|e| e.to_string())?;
    if !ran.status.success() {
        return Err(format!("run {arch}: {}", String::from_utf8_lossy(&ran.stderr)));
    }
    let got = frontend::npy::read_npy(&y).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&out);
    if got.dtype() != dtype {
        return Err(format!("{arch}: the {dtype} model's output is {}", got.dtype()));
    }
    let rel = support::compare(&got, want, build.tolerance).map_err(|e| format!("{arch} {}: {e}", build.name))?;
    if support::argmax(&got) != support::argmax(want) {
        return Err(format!("{arch} {}: top-1 class {} but ONNX Runtime's is {}", build.name, support::argmax(&got), support::argmax(want)));
    }
    Ok(Some(rel))
}

fn main() -> ExitCode {
    let Some(shared) = support::shared_dir() else {
        println!("fixtures: SKIPPED: ../shared is not present (set CHANASC_SHARED to its path to run the fixture models)");
        return ExitCode::SUCCESS;
    };
    let dir = shared.join("fixtures/models");
    let mut models: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect())
        .unwrap_or_default();
    models.sort();
    let mut failed = 0;
    for m in &models {
        let name = m.file_stem().unwrap_or_default().to_string_lossy();
        match check(m) {
            Ok(msg) => println!("fixture {name}: ok ({msg})"),
            Err(e) => {
                failed += 1;
                println!("fixture {name}: FAILED: {e}");
            }
        }
    }
    if models.is_empty() {
        println!("fixtures: FAILED: no models in {}", dir.display());
        return ExitCode::FAILURE;
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

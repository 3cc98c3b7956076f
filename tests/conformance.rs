//! The ONNX backend node tests, run on the reference interpreter, on the llvm backend
//! (native code built for this machine and loaded into the process), on the cranelift
//! backend (compiled in the process) and on the wgpu backend (WGSL on the first GPU adapter,
//! lavapipe in CI; skipped, saying so, when the machine has none).
//!
//! `tests/conformance/node.txt` lists the cases chanasc claims (one per line); every claimed
//! case must pass. The cases come from `../shared/tools/gen_onnx_node_tests.py`, generated
//! into `target/onnx-node-tests` (or `$CHANASC_ONNX_NODE_TESTS`) by `.ci/run`; without them
//! this test says so and passes. `CHANASC_CONFORMANCE=all` runs every case instead and writes
//! the passing names to `target/conformance-passing.txt` (and the others, with the reason, to
//! `target/conformance-failing.txt`), to grow the manifest.

mod support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ir::Tensor;
use prost::Message;

/// Node tests compare at this relative tolerance, like ONNX's own backend tests (1e-3 rtol
/// there); the interpreter is held tighter.
const TOLERANCE: f64 = 1e-4;
/// GPU arithmetic (its exp, tanh, division and fused multiply-adds) is held to ONNX's own
/// 1e-3.
const GPU_TOLERANCE: f64 = 1e-3;

fn node_tests_dir() -> PathBuf {
    std::env::var_os("CHANASC_ONNX_NODE_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::root().join("target/onnx-node-tests/node"))
}

fn read_pb(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = frontend::proto::TensorProto::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))?;
    frontend::tensor_from_proto(&t)
}

fn numbered(dir: &Path, prefix: &str) -> Result<Vec<Tensor>, String> {
    let mut out = Vec::new();
    while dir.join(format!("{prefix}_{}.pb", out.len())).exists() {
        out.push(read_pb(&dir.join(format!("{prefix}_{}.pb", out.len())))?);
    }
    Ok(out)
}

/// Imports, runs and checks one case.
///
/// The node tests pass shape arguments (axes, pads, target shapes, clip bounds) as graph
/// inputs. chanasc compiles static shapes, so, as a user of a static-shape compiler would,
/// the harness binds integer inputs and scalar operands after the first to their test
/// values; the importer folds them and the interpreter computes the rest.
fn run_case(case: &Path, backend: Backend) -> Result<(), String> {
    let bytes = std::fs::read(case.join("model.onnx")).map_err(|e| e.to_string())?;
    let model = frontend::proto::ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let graph = model.graph.unwrap_or_default();
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    let input_names: Vec<&str> = graph.input.iter().map(|i| i.name()).filter(|n| !initializers.contains(n)).collect();
    let data = case.join("test_data_set_0");
    let inputs = numbered(&data, "input")?;
    let expected = numbered(&data, "output")?;
    let mut options = frontend::ImportOptions::default();
    let mut runtime_inputs = Vec::new();
    for (pos, (name, t)) in input_names.iter().zip(inputs).enumerate() {
        let shape_like = t.dtype() == ir::DType::I64 || (pos > 0 && t.numel() <= 1);
        if shape_like {
            options.constant_inputs.insert(name.to_string(), t);
        } else {
            runtime_inputs.push(t);
        }
    }
    let g = frontend::import_model_with(&bytes, &options).map_err(|e| e.to_string())?;
    let outputs = match backend {
        Backend::Interp => interp::run(&g, &runtime_inputs).map_err(|e| e.to_string())?,
        Backend::Llvm => run_native(&g, &runtime_inputs, case)?,
        Backend::Cranelift => {
            let (m, _) = runtime::JitModel::build(&g, 1, &runtime::DefaultSchedules).map_err(|e| e.to_string())?;
            m.run(&runtime_inputs).map_err(|e| e.to_string())?
        }
        Backend::Wgpu => {
            let (m, _) = runtime::GpuModel::build(&g, &runtime::DefaultSchedules).map_err(|e| e.to_string())?;
            m.run(&runtime_inputs).map_err(|e| e.to_string())?
        }
    };
    let tolerance = if backend == Backend::Wgpu { GPU_TOLERANCE } else { TOLERANCE };
    if outputs.len() != expected.len() {
        return Err(format!("{} outputs, expected {}", outputs.len(), expected.len()));
    }
    for (i, (got, want)) in outputs.iter().zip(&expected).enumerate() {
        support::compare(got, want, tolerance).map_err(|e| format!("output {i}: {e}"))?;
    }
    Ok(())
}

/// Compiles the graph for this machine, loads it and runs it.
fn run_native(g: &ir::Graph, inputs: &[Tensor], case: &Path) -> Result<Vec<Tensor>, String> {
    let name = case.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("chanasc-conformance-{}-{name}", std::process::id()));
    let opts = runtime::CompileOptions { target: llvm_backend::Target::host(), threads: 1, prefix: "model".into(), shared_library: true, optimize: true, dtype: ir::DType::F32, f16_activations: false };
    let result = runtime::compile(g, &opts, &dir).map_err(|e| e.to_string()).and_then(|_| {
        let types = |vs: &[ir::ValueId]| vs.iter().map(|&v| g.ty(v).clone()).collect::<Vec<_>>();
        let m = runtime::LoadedModel::load(&dir.join("libmodel.so"), "model", 1, types(&g.inputs), types(&g.outputs)).map_err(|e| e.to_string())?;
        m.run(inputs).map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Backend {
    Interp,
    Llvm,
    Cranelift,
    Wgpu,
}

fn run_guarded(case: &Path, backend: Backend) -> Result<(), String> {
    std::panic::catch_unwind(|| run_case(case, backend)).unwrap_or_else(|_| Err("PANICKED".into()))
}

fn main() -> ExitCode {
    let dir = node_tests_dir();
    if !dir.is_dir() {
        println!(
            "conformance: SKIPPED: no ONNX node tests at {} (generate them with `python ../shared/tools/gen_onnx_node_tests.py target/onnx-node-tests` from a venv with onnx==1.23.2; .ci/run does)",
            dir.display()
        );
        return ExitCode::SUCCESS;
    }
    let mut all: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    all.sort();
    std::panic::set_hook(Box::new(|_| {}));

    let only = match std::env::var("CHANASC_CONFORMANCE_BACKEND").as_deref() {
        Ok("llvm") => Some(Backend::Llvm),
        Ok("cranelift") => Some(Backend::Cranelift),
        Ok("wgpu") => Some(Backend::Wgpu),
        Ok("interp") => Some(Backend::Interp),
        _ => None,
    };
    if std::env::var("CHANASC_CONFORMANCE").as_deref() == Ok("all") {
        let backend = only.unwrap_or(Backend::Interp);
        let (mut passing, mut failing) = (Vec::new(), String::new());
        for c in &all {
            match run_guarded(&dir.join(c), backend) {
                Ok(()) => passing.push(c),
                Err(e) => failing.push_str(&format!("{c}: {e}\n")),
            }
        }
        let list: String = passing.iter().map(|c| format!("{c}\n")).collect();
        let out = support::root().join("target/conformance-passing.txt");
        std::fs::write(&out, list).expect("write the passing list");
        std::fs::write(support::root().join("target/conformance-failing.txt"), failing).expect("write the failing list");
        println!("conformance ({backend:?}, all cases): {} pass / {} total; names in {}", passing.len(), all.len(), out.display());
        return ExitCode::SUCCESS;
    }

    let manifest_path = support::root().join("tests/conformance/node.txt");
    let manifest = std::fs::read_to_string(&manifest_path).expect("tests/conformance/node.txt is readable");
    let claimed: Vec<&str> = manifest.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
    let mut ok = true;
    // CHANASC_CONFORMANCE_BACKEND=NAME runs the manifest on that backend only.
    let backends = match only {
        Some(b) => vec![b],
        None => vec![Backend::Interp, Backend::Llvm, Backend::Cranelift, Backend::Wgpu],
    };
    for backend in backends {
        if backend == Backend::Wgpu && !wgpu_backend::Executor::available() {
            println!("conformance (wgpu): skipping: {}", wgpu_backend::NO_ADAPTER);
            continue;
        }
        let mut failures = Vec::new();
        for case in &claimed {
            let path = dir.join(case);
            let result = if path.is_dir() { run_guarded(&path, backend) } else { Err("no such case".into()) };
            if let Err(e) = result {
                failures.push(format!("  {case}: {e}"));
            }
        }
        let passed = claimed.len() - failures.len();
        let name = format!("{backend:?}").to_lowercase();
        println!("conformance ({name}): {passed} passed / {} claimed / {} total", claimed.len(), all.len());
        if !failures.is_empty() {
            println!("claimed cases that fail on {name}:\n{}", failures.join("\n"));
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

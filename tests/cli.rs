//! End-to-end tests of the `chanasc` command line on the built-in example, and its answers
//! to bad input: one clear line on stderr and a non-zero exit, never a panic.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use frontend::onnx_builder::{AttrValue, OnnxBuilder};

fn chanasc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chanasc")).args(args).output().expect("chanasc runs")
}

fn tempdir(name: &str) -> support::TempDir {
    support::TempDir::new(&format!("cli-{name}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run: non-zero exit, no panic, and a single `error:` line naming the problem.
fn assert_clean_error(o: &Output, must_contain: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stdout: {}", stdout(o));
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for s in must_contain {
        assert!(lines[0].contains(s), "{s:?} not in {err}");
    }
}

fn write_example(dir: &Path) -> PathBuf {
    let model = dir.join("tiny.onnx");
    let o = chanasc(&["example", "tiny-cnn", "-o", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    model
}

#[test]
fn run_ir_and_info_on_the_example() {
    let dir = tempdir("example");
    let model = write_example(&dir);
    let m = model.to_str().unwrap();
    let y = dir.join("y.npy");
    let o = chanasc(&["run", m, "-o", y.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("output: f32[1,10]"), "{}", stdout(&o));
    let out = frontend::npy::read_npy(&y).unwrap();
    assert_eq!(out.shape, vec![1, 10]);
    assert!(out.as_f32().unwrap().iter().all(|x| x.is_finite()));
    // The same seed gives the same random input, so the same output.
    let y2 = dir.join("y2.npy");
    chanasc(&["run", m, "-o", y2.to_str().unwrap()]);
    assert_eq!(frontend::npy::read_npy(&y2).unwrap(), out);
    // An explicit input file is used: all zeros gives a different output than random.
    let x = dir.join("x.npy");
    frontend::npy::write_npy(&x, &ir::Tensor::f32(vec![1, 3, 32, 32], vec![0.0; 3 * 32 * 32]).unwrap()).unwrap();
    let y3 = dir.join("y3.npy");
    let o = chanasc(&["run", m, "--input", &format!("input={}", x.display()), "-o", y3.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(frontend::npy::read_npy(&y3).unwrap(), out);

    let o = chanasc(&["ir", m]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("conv2d(") && text.contains("output %"), "{text}");
    assert_eq!(ir::text::print_graph(&ir::text::parse_graph(&text).unwrap()), text);

    let o = chanasc(&["info", m]);
    let info = stdout(&o);
    assert!(o.status.success());
    // stem 16*3*9*256 + expand 48*16*256 + dw 48*9*256 + se 16*48 + 48*16 + project 16*48*256 + fc 160
    let macs = 16 * 3 * 9 * 256 + 48 * 16 * 256 + 48 * 9 * 256 + 16 * 48 + 48 * 16 + 16 * 48 * 256 + 160;
    assert!(info.contains(&format!("MACs: {macs} ")), "{info}");
    assert!(info.contains("BatchNormalization") && info.contains("input ") && info.contains("f32[1,3,32,32]"), "{info}");
}

#[test]
fn truncated_and_garbage_files_are_clean_errors() {
    let dir = tempdir("trunc");
    let model = write_example(&dir);
    let bytes = std::fs::read(&model).unwrap();
    for cut in [bytes.len() / 2, 3000.min(bytes.len() - 1), 7] {
        let t = dir.join(format!("trunc{cut}.onnx"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        assert_clean_error(&chanasc(&["run", t.to_str().unwrap()]), &["not a valid ONNX model"]);
    }
    let g = dir.join("garbage.onnx");
    std::fs::write(&g, b"this is not a protobuf \xff\xfe\x00\x01").unwrap();
    assert_clean_error(&chanasc(&["info", g.to_str().unwrap()]), &["garbage.onnx"]);
    assert_clean_error(&chanasc(&["run", dir.join("missing.onnx").to_str().unwrap()]), &["missing.onnx"]);
}

#[test]
fn unknown_op_names_op_node_and_opset() {
    let dir = tempdir("unknown");
    let mut b = OnnxBuilder::new("g", 17);
    b.input("x", &[1, 4]).output("y", &[1, 4]);
    b.node("Relu", "first", &["x"], &["r"], vec![]);
    b.node("FrobnicateV2", "the_bad_node", &["r"], &["y"], vec![("gain", AttrValue::Float(2.0))]);
    let p = dir.join("unknown.onnx");
    std::fs::write(&p, b.to_bytes()).unwrap();
    assert_clean_error(&chanasc(&["run", p.to_str().unwrap()]), &["unsupported op FrobnicateV2", "the_bad_node", "opset 17"]);
}

#[test]
fn wrong_input_shape_and_dtype_are_clean_errors() {
    let dir = tempdir("shape");
    let model = write_example(&dir);
    let x = dir.join("x.npy");
    frontend::npy::write_npy(&x, &ir::Tensor::f32(vec![1, 3, 16, 16], vec![0.5; 768]).unwrap()).unwrap();
    let o = chanasc(&["run", model.to_str().unwrap(), "--input", &format!("input={}", x.display())]);
    assert_clean_error(&o, &["input", "f32[1,3,32,32]", "f32[1,3,16,16]"]);
    let xi = dir.join("xi.npy");
    frontend::npy::write_npy(&xi, &ir::Tensor::i64(vec![1, 3, 32, 32], vec![1; 3072]).unwrap()).unwrap();
    let o = chanasc(&["run", model.to_str().unwrap(), "--input", &format!("input={}", xi.display())]);
    assert_clean_error(&o, &["i64[1,3,32,32]"]);
    let o = chanasc(&["run", model.to_str().unwrap(), "--input", &format!("nosuch={}", x.display())]);
    assert_clean_error(&o, &["no input \"nosuch\""]);
}

#[test]
fn shape_errors_name_the_node() {
    let dir = tempdir("badshape");
    let mut b = OnnxBuilder::new("g", 17);
    b.input("x", &[1, 3, 8, 8]).output("y", &[1, 4, 8, 8]);
    b.initializer("w", &[4, 5, 3, 3], &[0.0; 180]);
    b.node("Conv", "conv_with_wrong_weight", &["x", "w"], &["y"], vec![("pads", AttrValue::Ints(vec![1; 4]))]);
    let p = dir.join("bad.onnx");
    std::fs::write(&p, b.to_bytes()).unwrap();
    assert_clean_error(&chanasc(&["info", p.to_str().unwrap()]), &["conv_with_wrong_weight", "Conv", "groups"]);
}

/// A property test over mutated model bytes: the importer returns a model or an error, and
/// never panics, whatever bytes it is given.
#[test]
fn importer_survives_mutated_bytes() {
    let original = frontend::examples::tiny_cnn(1);
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut imported = 0;
    for _ in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % bytes.len();
            match next() % 4 {
                0 => bytes[pos] = next() as u8,
                1 => bytes[pos] ^= 1 << (next() % 8),
                2 => bytes.truncate(pos.max(1)),
                _ => bytes.insert(pos, next() as u8),
            }
        }
        let result = std::panic::catch_unwind(|| frontend::import_model(&bytes).is_ok());
        match result {
            Ok(ok) => imported += ok as usize,
            Err(_) => panic!("the importer panicked on mutated bytes: {:?}", bytes),
        }
    }
    // Some mutations (in weight bytes) leave a valid model; most break it.
    assert!(imported > 0 && imported < 3000, "imported {imported}");
}

/// `run --backend cranelift` gives the interpreter's output; `bench` on cranelift reports its
/// compile time and profile; an unknown backend is a clean error naming the choices.
#[test]
fn cranelift_backend_runs_benches_and_unknown_backends_are_errors() {
    let dir = tempdir("cranelift");
    let model = write_example(&dir);
    let m = model.to_str().unwrap();
    let (want, got) = (dir.join("interp.npy"), dir.join("cranelift.npy"));
    let o = chanasc(&["run", m, "--backend", "interp", "-o", want.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = chanasc(&["run", m, "--backend", "cranelift", "--threads", "2", "-o", got.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ran on cranelift"), "{}", stderr(&o));
    let (want, got) = (frontend::npy::read_npy(&want).unwrap(), frontend::npy::read_npy(&got).unwrap());
    let (ir::TensorData::F32(a), ir::TensorData::F32(b)) = (&want.data, &got.data) else { panic!("f32 outputs") };
    let scale = a.iter().fold(1f32, |m, x| m.max(x.abs()));
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * scale), "cranelift {b:?} vs interp {a:?}");
    let o = chanasc(&["bench", m, "--backend", "cranelift", "--runs", "3", "--warmup", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("compiled in") && out.contains("on cranelift, 1 thread(s), 3 runs") && out.contains("per-program profile"), "{out}");
    assert_clean_error(&chanasc(&["run", m, "--backend", "tvm"]), &["unknown backend \"tvm\"", "cranelift"]);
}

/// `--dtype f16`: the example runs in half precision on the interpreter, LLVM, cranelift and wgpu,
/// close to its f32 output; the compiled runner reads and writes f16 `.npy` files (and says
/// so when given f32); unknown dtypes are clean errors.
#[test]
fn half_precision_runs_compiles_and_reads_f16_npy() {
    let dir = tempdir("f16");
    let model = write_example(&dir);
    let m = model.to_str().unwrap();
    let x = dir.join("x.npy");
    let mut rng = 7u64;
    let values: Vec<f32> = (0..3 * 32 * 32)
        .map(|_| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    let input = ir::Tensor::f32(vec![1, 3, 32, 32], values).unwrap();
    frontend::npy::write_npy(&x, &input).unwrap();
    let output = |backend: &str, dtype: &str| {
        let y = dir.join(format!("y-{backend}-{dtype}.npy"));
        let o = chanasc(&["run", m, "--input", x.to_str().unwrap(), "--backend", backend, "--dtype", dtype, "-o", y.to_str().unwrap()]);
        assert!(o.status.success(), "{backend} {dtype}: {}", stderr(&o));
        frontend::npy::read_npy(&y).unwrap()
    };
    let reference = output("interp", "f32");
    // wgpu runs f16 where the adapter has shader-f16 (lavapipe does), f32 otherwise (said).
    let gpu = if wgpu_backend::Executor::available() {
        vec!["wgpu"]
    } else {
        println!("f16 on wgpu skipped: {}", wgpu_backend::NO_ADAPTER);
        vec![]
    };
    for backend in ["interp", "llvm", "cranelift"].into_iter().chain(gpu) {
        if backend == "wgpu" && !wgpu_backend::Executor::supports_f16() {
            assert_eq!(output(backend, "f16").dtype(), ir::DType::F32);
            continue;
        }
        let y = output(backend, "f16");
        assert_eq!(y.dtype(), ir::DType::F16, "{backend}");
        let rel = compare_f32(&y.with_float_dtype(ir::DType::F32), &reference);
        assert!(rel > 0.0 && rel <= 1e-2, "{backend} f16 differs from f32 by {rel:e}");
    }

    let out = dir.join("compiled16");
    let o = chanasc(&["compile", m, "--dtype", "f16", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest = std::fs::read_to_string(out.join("model.json")).unwrap();
    assert!(manifest.contains("\"dtype\": \"f16\""), "{manifest}");
    let x16 = dir.join("x16.npy");
    frontend::npy::write_npy(&x16, &input.with_float_dtype(ir::DType::F16)).unwrap();
    let y16 = dir.join("y16.npy");
    let ran = Command::new(out.join("model")).args(["--input", x16.to_str().unwrap(), "-o", y16.to_str().unwrap()]).output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    let y = frontend::npy::read_npy(&y16).unwrap();
    assert_eq!(y.dtype(), ir::DType::F16);
    assert!(compare_f32(&y.with_float_dtype(ir::DType::F32), &reference) <= 1e-2);
    // With f16 activations too: half the working memory, still close.
    let out2 = dir.join("compiled16a");
    let o2 = chanasc(&["compile", m, "--dtype", "f16", "--f16-activations", "-o", out2.to_str().unwrap()]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let arena = |dir: &Path| {
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
        manifest["arena_bytes"].as_u64().unwrap()
    };
    assert!(arena(&out2) < arena(&out), "{} {}", arena(&out2), arena(&out));
    let ran = Command::new(out2.join("model")).args(["--input", x16.to_str().unwrap(), "-o", y16.to_str().unwrap()]).output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(compare_f32(&frontend::npy::read_npy(&y16).unwrap().with_float_dtype(ir::DType::F32), &reference) <= 2e-2);
    // The runner wants the model's dtype.
    let wrong = Command::new(out.join("model")).args(["--input", x.to_str().unwrap(), "-o", y16.to_str().unwrap()]).output().unwrap();
    assert!(!wrong.status.success() && stderr(&wrong).contains("dtype differs"), "{}", stderr(&wrong));

    assert_clean_error(&chanasc(&["run", m, "--dtype", "f8"]), &["--dtype", "f8"]);
}

/// max|a-b| / max|b| of two f32 tensors of the same shape.
fn compare_f32(a: &ir::Tensor, b: &ir::Tensor) -> f64 {
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    let scale = b.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs())) / scale
}

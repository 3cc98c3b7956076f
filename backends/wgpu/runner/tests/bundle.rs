//! A bundle of the built-in tiny-cnn, copied with the runner binary alone into a clean
//! folder, runs there (no chanasc, no cargo, an empty environment) and gives the reference
//! interpreter's output; bad arguments, a broken bundle and a machine without an adapter are
//! one-line errors.

use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_bundle_runs_in_a_clean_folder() {
    let g = frontend::import_model(&frontend::examples::tiny_cnn(7)).unwrap();
    let (bundle, report) = runtime::gpu::gpu_bundle(&g, &runtime::DefaultSchedules).unwrap();
    assert!(report.programs > 0);
    let tmp = std::env::temp_dir().join(format!("chanasc-wgpu-bundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let built = tmp.join("built");
    bundle.write(&built).unwrap();
    // The clean folder: the bundle and the runner, nothing else.
    let clean = tmp.join("clean");
    copy_dir(&built, &clean.join("model"));
    let runner = clean.join("chanasc-wgpu-run");
    std::fs::copy(env!("CARGO_BIN_EXE_chanasc-wgpu-run"), &runner).unwrap();
    let ty = g.ty(g.inputs[0]).clone();
    let x = ir::Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|i| ((i * 13 % 17) as f32) / 17.0 - 0.4).collect()).unwrap();
    frontend::npy::write_npy(&clean.join("x.npy"), &x).unwrap();
    let want = interp::run(&g, std::slice::from_ref(&x)).unwrap();

    let ran = Command::new(&runner)
        .current_dir(&clean)
        .env_clear()
        .args(["model", "--input", "x.npy", "-o", "y.npy", "--bench", "2", "--profile"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    if !wgpu_backend::Executor::available() {
        println!("skipping: {}", wgpu_backend::NO_ADAPTER);
        assert!(!ran.status.success() && stderr.contains("no GPU adapter"), "{stderr}");
        let _ = std::fs::remove_dir_all(&tmp);
        return;
    }
    assert!(ran.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(stdout.contains("2 runs: median") && stdout.contains("per-program profile"), "{stdout}");
    let got = frontend::npy::read_npy(&clean.join("y.npy")).unwrap();
    let (ir::TensorData::F32(a), ir::TensorData::F32(b)) = (&got.data, &want[0].data) else { panic!("not f32") };
    assert_eq!(got.shape, want[0].shape);
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(worst <= 1e-3 * scale, "max|a-b| {worst} against max|b| {scale}");

    // Errors: a missing bundle, a bad input, bad arguments (exit code 2).
    let missing = Command::new(&runner).current_dir(&clean).arg("nowhere").output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere/model.json"));
    let wrong = ir::Tensor::f32([3], vec![0.0; 3]).unwrap();
    frontend::npy::write_npy(&clean.join("bad.npy"), &wrong).unwrap();
    let bad = Command::new(&runner).current_dir(&clean).args(["model", "--input", "bad.npy"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad.npy"), "{}", String::from_utf8_lossy(&bad.stderr));
    let usage = Command::new(&runner).arg("--frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    // No adapter (wgpu offered Metal only, which this machine has not): one line saying so.
    let none = Command::new(&runner).current_dir(&clean).env_clear().env("WGPU_BACKEND", "metal").args(["model"]).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    let text = String::from_utf8_lossy(&none.stderr);
    assert!(text.contains("no GPU adapter (install mesa-vulkan-drivers)"), "{text}");
    let _ = std::fs::remove_dir_all(&tmp);
}

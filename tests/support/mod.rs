//! Helpers shared by the integration tests: where the shared data lives, and comparisons
//! relative to the reference's scale.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ir::{Tensor, TensorData};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the checkout (or `$CHANASC_SHARED`), when it exists.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CHANASC_SHARED").map(PathBuf::from).unwrap_or_else(|| root().join("../shared"));
    dir.is_dir().then_some(dir)
}

/// Checks `got` against `want`: same shape; f32 (or f16 against f32) within `tol` of
/// max|want| (NaN where NaN); other dtypes exactly.
pub fn compare(got: &Tensor, want: &Tensor, tol: f64) -> Result<f64, String> {
    if got.dtype() == ir::DType::F16 {
        return compare(&got.with_float_dtype(ir::DType::F32), want, tol);
    }
    if got.shape != want.shape {
        return Err(format!("shape {:?}, expected {:?}", got.shape, want.shape));
    }
    match (&got.data, &want.data) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            let scale = b.iter().filter(|x| x.is_finite()).fold(0f64, |m, &x| m.max((x as f64).abs())).max(1e-30);
            let mut worst = 0f64;
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let d = if x.is_nan() && y.is_nan() || x == y {
                    0.0
                } else if x.is_nan() || y.is_nan() || x.is_infinite() || y.is_infinite() {
                    return Err(format!("element {i}: got {x}, expected {y}"));
                } else {
                    (x as f64 - y as f64).abs() / scale
                };
                worst = worst.max(d);
            }
            if worst <= tol {
                Ok(worst)
            } else {
                Err(format!("max|a-b|/max|b| = {worst:.3e} > {tol:.0e}"))
            }
        }
        (a, b) if a == b => Ok(0.0),
        (a, b) if a.dtype() != b.dtype() => Err(format!("dtype {}, expected {}", a.dtype(), b.dtype())),
        _ => Err("values differ".into()),
    }
}

/// The position of the largest element (the top-1 class of a classifier's output).
pub fn argmax(t: &Tensor) -> usize {
    let v = t.to_f32_vec();
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0)
}

/// A fresh, empty temporary folder for one test (`chanasc-{tag}-{pid}`).
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chanasc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An IDX file of unsigned bytes (MNIST's format) with dimensions `dims`.
pub fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

/// Runs `chanasc` with `args` and kills it (SIGKILL) as soon as `checkpoint` exists, at
/// whatever point the run is; fails when no checkpoint appears within `limit_s` seconds.
pub fn kill_after_checkpoint(args: &[&str], checkpoint: &Path, limit_s: u64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chanasc"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !checkpoint.exists() && start.elapsed().as_secs() < limit_s {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(checkpoint.exists(), "no checkpoint within {limit_s} s");
}

/// A fresh folder for one test under the system's temp folder
/// (`chanasc-NAME-PID`), removed when dropped, unless the test is failing (panicking):
/// a failure's files stay there to look at.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("chanasc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

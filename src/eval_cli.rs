//! `chanasc eval OUT/`: the test accuracy and latency of a search's deployable classifier,
//! measured on the compiled binary itself (`OUT/compiled/model`): the test images go to it as
//! one stacked .npy, its logits come back, and its own `--bench` gives the latency.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use ir::Tensor;

use crate::supernet_search_cli::DEPLOY_MANIFEST;
use crate::train_cli::{first, load_dataset};
use crate::CliResult;

#[derive(Args)]
pub struct EvalArgs {
    /// The output folder of `chanasc search --space fmnist-mbv3` (deploy.json, compiled/).
    dir: PathBuf,
    /// The dataset whose test split is classified: fashion-mnist (Debian's
    /// dataset-fashion-mnist, or --data-dir) or mnist (--data-dir).
    #[arg(long, default_value = "fashion-mnist")]
    dataset: String,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Classify the first N test images only (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Timed runs of the binary for its latency.
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

/// What the binary prints for `--bench`: "median X ms ...".
fn median_ms(bench_output: &str) -> Option<f64> {
    let line = bench_output.lines().find(|l| l.starts_with("median "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_binary(model: &Path, args: &[&str]) -> CliResult<String> {
    let o = Command::new(model).args(args).output().map_err(|e| format!("running {}: {e}", model.display()))?;
    if !o.status.success() {
        return Err(format!("{} failed: {}", model.display(), String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

pub fn eval(args: EvalArgs) -> CliResult<()> {
    let manifest_path = args.dir.join(DEPLOY_MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        format!("{}: {e} (chanasc eval takes the output folder of chanasc search --space fmnist-mbv3)", manifest_path.display())
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let shape: Vec<usize> = manifest["input"]["shape"]
        .as_array()
        .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or_else(|| format!("{}: no input shape", manifest_path.display()))?;
    let model = args.dir.join("compiled").join("model");
    if !model.exists() {
        return Err(format!("{}: the compiled classifier is missing", model.display()));
    }
    let (_, test) = load_dataset(&args.dataset, args.data_dir.as_deref())?;
    let test = first(test, args.limit);
    let image = [test.channels, test.height, test.width];
    if shape.len() != 4 || shape[0] != 1 || shape[1..] != image {
        return Err(format!("the classifier takes {shape:?} images, {} has {:?}", args.dataset, image));
    }
    let tmp = std::env::temp_dir().join(format!("chanasc-eval-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let result = classify(&model, &test, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let (correct, classes) = result?;
    let acc = correct as f64 / test.len().max(1) as f64;
    let bench = run_binary(&model, &["--bench", &args.runs.max(1).to_string(), "--threads", "1"])?;
    let latency = median_ms(&bench).ok_or_else(|| format!("{} --bench printed no median: {bench}", model.display()))?;
    println!("images={} classes={classes}", test.len());
    println!("test_acc={acc:.6}");
    if let Some(pred) = manifest["oracle_val_acc"].as_f64() {
        println!("oracle_val_acc={pred:.6} difference_points={:+.3}", (acc - pred) * 100.0);
    }
    println!("latency_ms={latency:.6} (median of {} runs, 1 thread)", args.runs.max(1));
    if let Some(pred) = manifest["predicted_latency_ms"].as_f64() {
        println!("predicted_latency_ms={pred:.6}");
    }
    Ok(())
}

/// Runs the test images through the binary; returns how many it classified right and the
/// number of classes it outputs.
fn classify(model: &Path, test: &train::data::Dataset, tmp: &Path) -> CliResult<(usize, usize)> {
    let [c, h, w] = [test.channels, test.height, test.width];
    let pixels: Vec<f32> = test.images.iter().map(|&p| p as f32 / 255.0).collect();
    let x = Tensor::f32(vec![test.len(), c, h, w], pixels).map_err(|e| e.to_string())?;
    let (xp, yp) = (tmp.join("x.npy"), tmp.join("logits.npy"));
    frontend::npy::write_npy(&xp, &x).map_err(|e| e.to_string())?;
    run_binary(model, &["--input", &xp.to_string_lossy(), "-o", &yp.to_string_lossy(), "--threads", "1"])?;
    let logits = frontend::npy::read_npy(&yp).map_err(|e| e.to_string())?;
    if logits.as_f32().is_none() {
        return Err("the classifier's logits are not f32".into());
    }
    if logits.shape.len() != 2 || logits.shape[0] != test.len() {
        return Err(format!("the classifier returned logits of shape {:?} for {} images", logits.shape, test.len()));
    }
    let labels: Vec<i64> = test.labels.iter().map(|&l| l as i64).collect();
    let correct = train::supernet::argmax_hits(&logits, &labels, test.len());
    let k = logits.shape[1];
    Ok((correct, k))
}

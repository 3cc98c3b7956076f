//! chanasc-wgpu-run: executes a bundle that `chanasc compile --arch wgpu -o DIR` wrote, on
//! the first GPU adapter (Vulkan, Metal or DX12), with no chanasc installed.
//!
//! ```text
//! chanasc-wgpu-run DIR [--input [NAME=]x.npy ...] [-o y.npy] [--bench N] [--profile]
//! ```
//! Inputs not given are seeded uniform random values in [0, 1); with several outputs, each
//! output's name is appended to the stem of `-o`.

mod npy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use wgpu_backend::{Bundle, Executor};

const USAGE: &str = "usage: chanasc-wgpu-run DIR [--input [NAME=]x.npy ...] [-o y.npy] [--bench N] [--profile]";

struct Args {
    dir: PathBuf,
    inputs: Vec<String>,
    output: Option<PathBuf>,
    bench: usize,
    /// Print each program's time in the last run (GPU timestamps where the adapter has them).
    profile: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut dir, mut inputs, mut output, mut bench, mut profile) = (None, Vec::new(), None, 0, false);
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--input" | "-i" => inputs.push(value(&a)?),
            "-o" | "--output" => output = Some(PathBuf::from(value(&a)?)),
            "--bench" => bench = value(&a)?.parse().map_err(|_| "--bench takes a count".to_string())?,
            "--profile" => profile = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    let dir = dir.ok_or("no bundle folder given")?;
    Ok(Args { dir, inputs, output, bench, profile })
}

/// Uniform [0, 1) values from a fixed seed (SplitMix64), for inputs not given.
fn random_input(io: &wgpu_backend::bundle::IoSpec, seed: &mut u64) -> npy::Array {
    let mut next = || {
        *seed = seed.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let n = io.numel();
    let bytes = match io.dtype.as_str() {
        "f32" => (0..n).flat_map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32).to_le_bytes()).collect(),
        "i64" => vec![0; n * 8],
        _ => vec![0; n],
    };
    npy::Array { dtype: io.dtype.clone(), shape: io.shape.clone(), bytes }
}

fn suffixed(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    path.with_file_name(format!("{stem}_{clean}.npy"))
}

fn run(args: Args) -> Result<(), String> {
    let bundle = Bundle::read(&args.dir).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let exec = Executor::new(&bundle).map_err(|e| e.to_string())?;
    eprintln!("loaded {} on {} in {:.2} s", args.dir.display(), exec.adapter_name(), start.elapsed().as_secs_f64());
    let specs = exec.inputs().to_vec();
    let mut given: Vec<Option<npy::Array>> = specs.iter().map(|_| None).collect();
    for b in &args.inputs {
        let (pos, file) = match b.split_once('=') {
            Some((name, file)) => {
                let pos = specs.iter().position(|s| s.name == name).ok_or_else(|| {
                    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                    format!("the model has no input {name:?} (inputs: {})", names.join(", "))
                })?;
                (pos, file)
            }
            None => (0, b.as_str()),
        };
        let a = npy::read(Path::new(file))?;
        let want = &specs[pos];
        if a.dtype != want.dtype || a.shape != want.shape {
            return Err(format!("{file}: {} {:?}, but input {} is {} {:?}", a.dtype, a.shape, want.name, want.dtype, want.shape));
        }
        given[pos] = Some(a);
    }
    let mut seed = 0u64;
    let inputs: Vec<npy::Array> = specs.iter().zip(given).map(|(s, g)| g.unwrap_or_else(|| random_input(s, &mut seed))).collect();
    let host: Vec<&[u8]> = inputs.iter().map(|a| a.bytes.as_slice()).collect();
    let start = Instant::now();
    let outputs = exec.run(&host).map_err(|e| e.to_string())?;
    eprintln!("ran in {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
    for (spec, bytes) in exec.outputs().iter().zip(outputs) {
        println!("{}: {} {:?}", spec.name, spec.dtype, spec.shape);
        if spec.dtype == "f32" && !bytes.is_empty() {
            let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            println!("  min {lo:.6}  max {hi:.6}  mean {mean:.6}");
        }
        if let Some(path) = &args.output {
            let path = if exec.outputs().len() == 1 { path.clone() } else { suffixed(path, &spec.name) };
            npy::write(&path, &npy::Array { dtype: spec.dtype.clone(), shape: spec.shape.clone(), bytes })?;
            println!("  written to {}", path.display());
        }
    }
    if args.bench > 0 {
        let mut times = Vec::new();
        for _ in 0..args.bench {
            let t = Instant::now();
            exec.run(&host).map_err(|e| e.to_string())?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!("{} runs: median {:.3} ms  p90 {:.3} ms  min {:.3} ms", times.len(), pick(0.5), pick(0.9), times[0]);
    }
    if args.profile {
        let mut profile = exec.profile();
        let total: f64 = profile.iter().map(|p| p.1).sum();
        profile.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("per-program profile of the last run (slowest first):");
        println!("  {:>9} {:>6} {:>9}  program", "ms", "share", "GFLOP/s");
        for (name, secs, flops) in &profile {
            let gflops = if *secs > 0.0 { flops / secs * 1e-9 } else { 0.0 };
            println!("  {:>9.4} {:>5.1}% {:>9.2}  {name}", secs * 1e3, 100.0 * secs / total.max(1e-12), gflops);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

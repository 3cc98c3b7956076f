//! The `export-arch` and `nas` commands: architectures of the Once-for-All MobileNetV3 space
//! as ONNX models, their blocks, and their accuracy and table latency.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use nas::{ArchConfig, Block};

use crate::search_cli::{load_tables, names};

#[derive(Subcommand)]
pub enum NasCommand {
    /// Evaluate one architecture: accuracy from an oracle, latency as the sum of its blocks'
    /// means in a latency table.
    Eval {
        /// Arch config JSON: {"ks": [20], "e": [20], "d": [5], "r": int}.
        arch: PathBuf,
        /// Width multiplier of the space: 1.0 or 1.2.
        #[arg(long, default_value_t = 1.2)]
        width: f64,
        /// Accuracy oracle: predictor:FILE.safetensors, table:FILE.csv or command:CMD.
        #[arg(long)]
        accuracy: Option<String>,
        /// Latency tables (OFA's YAML format) to predict the latency from: comma-separated or
        /// repeated (e.g. OFA's five note10_lut_*.yaml).
        #[arg(long, value_delimiter = ',')]
        lut: Vec<PathBuf>,
        /// Time limit of a command: oracle, in seconds.
        #[arg(long, default_value_t = 60.0)]
        oracle_timeout: f64,
    },
    /// List an architecture's blocks with their latency-table keys.
    Blocks {
        arch: PathBuf,
        #[arg(long, default_value_t = 1.2)]
        width: f64,
    },
}

type CliResult<T> = Result<T, String>;

fn load_arch(path: &Path) -> CliResult<ArchConfig> {
    ArchConfig::load(path).map_err(|e| e.to_string())
}

/// Writes the ONNX model of an architecture, with seeded random weights.
pub fn export_arch(arch: &Path, width: f64, seed: u64, output: &Path) -> CliResult<()> {
    let a = load_arch(arch)?;
    let blocks = nas::decompose(&a, width).map_err(|e| e.to_string())?;
    let bytes = nas::build_network(&a, width, &mut nas::RandomWeights::new(seed))
        .map_err(|e| e.to_string())?;
    let tmp = output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, output))
        .map_err(|e| format!("{}: {e}", output.display()))?;
    let params: u64 = blocks.iter().map(Block::params).sum();
    let macs: u64 = blocks.iter().map(Block::macs).sum();
    println!(
        "wrote {} ({} bytes): w{width:?} {}, {} blocks, {params} parameters, {macs} MACs",
        output.display(),
        bytes.len(),
        a.to_compact(),
        blocks.len()
    );
    Ok(())
}

pub fn run(command: NasCommand) -> CliResult<()> {
    match command {
        NasCommand::Eval {
            arch,
            width,
            accuracy,
            lut,
            oracle_timeout,
        } => eval(&arch, width, accuracy.as_deref(), &lut, oracle_timeout),
        NasCommand::Blocks { arch, width } => blocks(&arch, width),
    }
}

fn eval(
    arch: &Path,
    width: f64,
    accuracy: Option<&str>,
    lut: &[PathBuf],
    timeout: f64,
) -> CliResult<()> {
    if accuracy.is_none() && lut.is_empty() {
        return Err("nothing to evaluate: give --accuracy ORACLE and/or --lut TABLE".into());
    }
    if !(timeout > 0.0 && timeout.is_finite()) {
        return Err(format!(
            "--oracle-timeout {timeout}: must be a positive number of seconds"
        ));
    }
    let a = load_arch(arch)?;
    // Decompose first: it checks the width, whatever is asked. Print only once everything
    // is known, so that a failure leaves no partial answer on stdout.
    let blocks = nas::decompose(&a, width).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    if let Some(spec) = accuracy {
        if spec.starts_with("predictor:") && width != 1.2 {
            return Err(format!(
                "OFA's accuracy predictor is for the w1.2 space; --width is {width}"
            ));
        }
        let options = nas::OracleOptions {
            timeout: Duration::from_secs_f64(timeout),
        };
        let mut oracle = crate::supernet_cli::parse_oracle(spec, &options)?;
        let acc = oracle.evaluate(&a).map_err(|e| e.to_string())?;
        lines.push(format!("val_acc={:.6}", acc.val));
        if let (Some(train), Some(gap)) = (acc.train, acc.gap()) {
            lines.push(format!("train_acc={train:.6}"));
            lines.push(format!("gap={gap:.6}"));
        }
    }
    if !lut.is_empty() {
        let table = load_tables(lut)?;
        let ms = table
            .predict(&blocks)
            .map_err(|e| format!("{}: {e}", names(lut)))?;
        lines.push(format!("latency_ms={ms:.6}"));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

fn blocks(arch: &Path, width: f64) -> CliResult<()> {
    let a = load_arch(arch)?;
    let blocks = nas::decompose(&a, width).map_err(|e| e.to_string())?;
    println!("w{width:?} {}: {} blocks", a.to_compact(), blocks.len());
    println!("{:>3} {:>10} {:>12}  key", "#", "params", "MACs");
    for (i, b) in blocks.iter().enumerate() {
        println!("{i:>3} {:>10} {:>12}  {}", b.params(), b.macs(), b.key());
    }
    let params: u64 = blocks.iter().map(Block::params).sum();
    let macs: u64 = blocks.iter().map(Block::macs).sum();
    println!(
        "total {params} parameters ({:.2} M), {macs} MACs ({:.1} M)",
        params as f64 / 1e6,
        macs as f64 / 1e6
    );
    Ok(())
}

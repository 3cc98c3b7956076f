//! The `chanasc` command line: parses arguments and wires the library crates together.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ir::{DType, Graph, Tensor, TensorData};

#[derive(Parser)]
#[command(name = "chanasc", version, about = "DNN compiler toolchain and compiler-aware neural architecture search")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model once and print or save its outputs.
    Run {
        /// An ONNX model, or a graph IR text file (.ir) whose weights are all inline.
        model: PathBuf,
        /// Input binding NAME=FILE.npy (or just FILE.npy for the first input); repeatable.
        /// Inputs not given are filled with seeded uniform random values in [0, 1).
        #[arg(long = "input", short = 'i')]
        inputs: Vec<String>,
        /// Where to write the output (.npy); with several outputs, NAME is appended to the stem.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Backend that executes the graph.
        #[arg(long, default_value = "interp")]
        backend: String,
    },
    /// Print the graph IR of a model as text.
    Ir {
        model: PathBuf,
        /// Constants with at most this many elements are printed inline.
        #[arg(long, default_value_t = 16)]
        inline_limit: usize,
    },
    /// Summarize a model: inputs, outputs, op histogram, parameters, MACs.
    Info { model: PathBuf },
    /// Write a built-in example network as ONNX (tiny-cnn: a MobileNetV3-style CNN, 3x32x32 -> 10).
    Example {
        #[arg(default_value = "tiny-cnn")]
        name: String,
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of stdout goes away (`| head`).
    // SAFETY: restoring the default disposition of a signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { model, inputs, output, seed, backend } => run(&model, &inputs, output.as_deref(), seed, &backend),
        Command::Ir { model, inline_limit } => {
            load(&model).map(|g| print!("{}", ir::text::print_graph_with(&g, ir::text::PrintOptions { inline_limit })))
        }
        Command::Info { model } => info(&model),
        Command::Example { name, output, seed } => example(&name, &output, seed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult<T> = Result<T, String>;

/// Loads an ONNX model, or a text IR file when the name ends in `.ir`.
fn load(path: &Path) -> CliResult<Graph> {
    if path.extension().is_some_and(|e| e == "ir") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return ir::text::parse_graph(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    frontend::load_onnx(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(model: &Path, bindings: &[String], output: Option<&Path>, seed: u64, backend: &str) -> CliResult<()> {
    if backend != "interp" {
        return Err(format!("unknown backend {backend:?}; available: interp"));
    }
    let g = load(model)?;
    let mut given: Vec<Option<Tensor>> = vec![None; g.inputs.len()];
    for b in bindings {
        let (pos, file) = match b.split_once('=') {
            Some((name, file)) => {
                let v = g.input_named(name).ok_or_else(|| {
                    let names: Vec<String> = g.inputs.iter().filter_map(|&v| g.value(v).name.clone()).collect();
                    format!("the model has no input {name:?} (inputs: {})", names.join(", "))
                })?;
                (g.inputs.iter().position(|&i| i == v).unwrap_or(0), file)
            }
            None => (0, b.as_str()),
        };
        given[pos] = Some(frontend::npy::read_npy(Path::new(file)).map_err(|e| e.to_string())?);
    }
    let mut rng = SplitMix64(seed);
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .zip(given)
        .map(|(&v, t)| t.map(Ok).unwrap_or_else(|| random_tensor(g.ty(v), &mut rng)))
        .collect::<CliResult<_>>()?;
    let start = Instant::now();
    let outputs = interp::run(&g, &inputs).map_err(|e| e.to_string())?;
    eprintln!("ran {} nodes on {backend} in {:.1} ms", g.nodes.len(), start.elapsed().as_secs_f64() * 1e3);
    for (i, (&v, t)) in g.outputs.iter().zip(&outputs).enumerate() {
        let name = g.value(v).name.clone().unwrap_or_else(|| format!("output{i}"));
        println!("{name}: {}", t.ty());
        print_summary(t);
        if let Some(path) = output {
            let path = if outputs.len() == 1 { path.to_path_buf() } else { suffixed(path, &name) };
            frontend::npy::write_npy(&path, t).map_err(|e| e.to_string())?;
            println!("  written to {}", path.display());
        }
    }
    Ok(())
}

/// `out.npy` with output `logits` becomes `out_logits.npy`.
fn suffixed(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    path.with_file_name(format!("{stem}_{clean}.npy"))
}

/// The top-5 classes of a classifier's 1000-way output, or a few statistics otherwise.
fn print_summary(t: &Tensor) {
    match &t.data {
        TensorData::F32(v) if v.len() == 1000 => {
            let mut idx: Vec<usize> = (0..v.len()).collect();
            idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
            println!("  top-5:");
            for (rank, &i) in idx.iter().take(5).enumerate() {
                println!("    {}. class {i:4}  {:.6}", rank + 1, v[i]);
            }
        }
        TensorData::F32(v) if !v.is_empty() => {
            let min = v.iter().copied().fold(f32::INFINITY, f32::min);
            let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:.6}")).collect();
            println!("  min {min:.6}  max {max:.6}  mean {mean:.6}  first [{}]", head.join(", "));
        }
        TensorData::I64(v) => println!("  {:?}", &v[..v.len().min(16)]),
        TensorData::Bool(v) => println!("  {:?}", &v[..v.len().min(16)]),
        _ => {}
    }
}

fn example(name: &str, output: &Path, seed: u64) -> CliResult<()> {
    let bytes = frontend::examples::example_model(name, seed)
        .ok_or_else(|| format!("no example {name:?}; examples: {}", frontend::examples::EXAMPLES.join(", ")))?;
    let tmp = output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|_| std::fs::rename(&tmp, output))
        .map_err(|e| format!("{}: {e}", output.display()))?;
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    Ok(())
}

fn info(model: &Path) -> CliResult<()> {
    let g = load(model)?;
    println!("model: {}", model.display());
    if model.extension().is_none_or(|e| e != "ir") {
        let bytes = std::fs::read(model).map_err(|e| e.to_string())?;
        let s = frontend::summarize_onnx(&bytes).map_err(|e| e.to_string())?;
        println!("producer: {}  opset: {}  onnx nodes: {}", s.producer, s.opset, s.node_count);
        println!("onnx ops:");
        for (op, n) in &s.op_histogram {
            println!("  {op:24} {n}");
        }
    }
    println!("inputs:");
    for &v in &g.inputs {
        println!("  {:24} {}", g.value(v).name.as_deref().unwrap_or("?"), g.ty(v));
    }
    println!("outputs:");
    for &v in &g.outputs {
        println!("  {:24} {}", g.value(v).name.as_deref().unwrap_or("?"), g.ty(v));
    }
    println!("graph IR ops ({} nodes):", g.nodes.len());
    for (op, n) in g.op_histogram() {
        println!("  {op:24} {n}");
    }
    let params = g.parameter_count();
    println!("parameters: {params} ({:.2} M, {:.1} MiB as f32)", params as f64 / 1e6, params as f64 * 4.0 / (1 << 20) as f64);
    let macs = g.macs();
    println!("MACs: {macs} ({:.3} G)", macs as f64 / 1e9);
    Ok(())
}

/// A small deterministic generator, so that random inputs are reproducible from `--seed`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn random_tensor(ty: &ir::TensorType, rng: &mut SplitMix64) -> CliResult<Tensor> {
    let n = ty.numel();
    let data = match ty.dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| rng.next_f32()).collect()),
        DType::I64 => TensorData::I64((0..n).map(|_| (rng.next_u64() % 10) as i64).collect()),
        DType::Bool => TensorData::Bool((0..n).map(|_| rng.next_u64() & 1 == 1).collect()),
        DType::F16 => return Err("f16 inputs are not supported yet".into()),
    };
    Tensor::new(ty.shape.clone(), data).map_err(|e| e.to_string())
}

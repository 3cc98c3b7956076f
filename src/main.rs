//! The `chanasc` command line: parses arguments and wires the library crates together.

mod cosearch_cli;
mod eval_cli;
mod nas_cli;
mod presched_cli;
mod search_cli;
mod supernet_cli;
mod supernet_search_cli;
mod train_cli;
mod tune_cli;

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
        /// Backend that executes the graph: interp (the reference interpreter), llvm
        /// (native code built for this machine and loaded into the process) or cranelift
        /// (native code compiled in the process, in milliseconds) or wgpu (WGSL compute
        /// shaders on the first GPU adapter).
        #[arg(long, default_value = "interp")]
        backend: String,
        /// Threads of the llvm and cranelift backends.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Element type of the model's tensors: f32, or f16 (weights, inputs and outputs in
        /// half precision, computed in f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Compile a model ahead of time into a static library, a C header and a runner.
    Compile {
        model: PathBuf,
        /// Target architecture: x86-64, aarch64, or wgpu (a bundle of WGSL shaders, weights and a
        /// manifest that chanasc-wgpu-run executes).
        #[arg(long, default_value = "x86-64")]
        arch: String,
        /// LLVM CPU name (x86-64 default: this machine's CPU; aarch64 default: generic).
        #[arg(long)]
        cpu: Option<String>,
        /// Threads the runner uses by default.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Output folder.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Skip the graph optimizations (e-graph rewrites and fusion): one tensor program per
        /// graph node, to measure what they bring.
        #[arg(long)]
        no_graph_opt: bool,
        /// Tuning records (from `chanasc tune`): each program takes its task's best recorded
        /// schedule, when there is one, instead of the default.
        #[arg(long)]
        records: Option<PathBuf>,
        /// Element type of the model's tensors: f32, or f16 (weights, inputs and outputs in
        /// half precision, computed in f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// With --dtype f16: activations in f16 too (half the working memory, but slower:
        /// convolutions accumulate in f32, so every load of their inner loops converts; their
        /// elementwise arithmetic is f16 where the target has it, aarch64 +fullfp16).
        #[arg(long)]
        f16_activations: bool,
    },
    /// Measure latency (median and p90 of repeated runs) and print a per-program profile.
    Bench {
        model: PathBuf,
        /// llvm, cranelift, wgpu or interp.
        #[arg(long, default_value = "llvm")]
        backend: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs, after the warm-up runs.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Tuning records: use each task's best recorded schedule (llvm and cranelift backends).
        #[arg(long)]
        records: Option<PathBuf>,
        /// llvm backend: the schedules the cranelift tier uses (its f32x4 register tiles), to
        /// compare the two code generators with the same schedules.
        #[arg(long)]
        cranelift_schedules: bool,
        /// Element type of the model's tensors: f32, or f16 (weights, inputs and outputs in
        /// half precision, computed in f32).
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Tune the schedules of a model's tensor programs by measurement (see `--records`).
    Tune(tune_cli::TuneArgs),
    /// Serve one tuning measurement job on stdin (run by `chanasc tune`).
    #[command(hide = true)]
    TuneWorker,
    /// Print the graph IR of a model as text.
    Ir {
        model: PathBuf,
        /// Print the IR after this stage instead of after import: a graph pass
        /// (egraph, explicit-padding, matvec-convs, fuse), lower (loop IR of every program) or
        /// schedule (scheduled).
        #[arg(long)]
        print_after: Option<String>,
        /// Constants with at most this many elements are printed inline.
        #[arg(long, default_value_t = 16)]
        inline_limit: usize,
    },
    /// Summarize a model: inputs, outputs, op histogram, parameters, MACs.
    Info {
        model: PathBuf,
        /// Also run the graph optimizations and report what they did and the tensor
        /// programs (fused groups) the model compiles to.
        #[arg(long)]
        optimized: bool,
    },
    /// Write an architecture of the Once-for-All MobileNetV3 space as ONNX (random weights).
    ExportArch {
        /// Arch config JSON: {"ks": [20], "e": [20], "d": [5], "r": int}.
        arch: PathBuf,
        /// Width multiplier of the space: 1.0 or 1.2.
        #[arg(long, default_value_t = 1.2)]
        width: f64,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Architecture search tools: evaluate an architecture, list its blocks.
    Nas {
        #[command(subcommand)]
        command: nas_cli::NasCommand,
    },
    /// Latency tables of the search space's blocks: build one on this machine, check its
    /// predictions against measured networks, summarize one.
    Lut {
        #[command(subcommand)]
        command: search_cli::LutCommand,
    },
    /// Architecture search under a latency budget (--baseline: OFA's schedule-blind
    /// evolutionary search); writes the chosen network, compiled, and the search's records.
    Search(search_cli::SearchArgs),
    /// Train a network on an image dataset (Fashion-MNIST by default) with chanasc's own
    /// kernels; writes a resumable safetensors checkpoint and a training-curve SVG.
    Train(train_cli::TrainArgs),
    /// Train the elastic weight-sharing supernet of a search space (sandwich rule, batch-norm
    /// recalibration); its checkpoint is the `supernet:PATH` accuracy oracle.
    Supernet {
        #[command(subcommand)]
        command: supernet_cli::SupernetCommand,
    },
    /// The test accuracy and latency of a searched classifier (the output folder of `search
    /// --space fmnist-mbv3`), measured by running its compiled binary on the test images.
    Eval(eval_cli::EvalArgs),
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
        Command::Run { model, inputs, output, seed, backend, threads, dtype } => {
            parse_dtype(&dtype).and_then(|dtype| run(&model, &inputs, output.as_deref(), seed, &backend, threads, dtype))
        }
        Command::Compile { model, arch, cpu, threads, output, no_graph_opt, records, dtype, f16_activations } => parse_dtype(&dtype)
            .and_then(|dtype| {
                let graph = runtime::GraphOptions { optimize: !no_graph_opt, dtype, f16_activations };
                compile(&model, &arch, cpu.as_deref(), threads, &output, graph, records.as_deref())
            }),
        Command::Bench { model, backend, threads, runs, warmup, records, cranelift_schedules, dtype } => {
            parse_dtype(&dtype).and_then(|dtype| {
                if cranelift_schedules && (backend != "llvm" || records.is_some()) {
                    return Err("--cranelift-schedules goes with --backend llvm and no --records".into());
                }
                let records = if cranelift_schedules { Schedules::Cranelift } else { Schedules::Records(records.as_deref()) };
                bench(&model, &backend, threads, runs, warmup, records, dtype)
            })
        }
        Command::Tune(args) => tune_cli::tune(args),
        Command::TuneWorker => return tune_cli::worker(),
        Command::Ir { model, print_after, inline_limit } => print_ir(&model, print_after.as_deref(), inline_limit),
        Command::Info { model, optimized } => info(&model, optimized),
        Command::Example { name, output, seed } => example(&name, &output, seed),
        Command::ExportArch { arch, width, seed, output } => nas_cli::export_arch(&arch, width, seed, &output),
        Command::Nas { command } => nas_cli::run(command),
        Command::Lut { command } => search_cli::run_lut(command),
        Command::Search(args) => search_cli::search(args),
        Command::Train(args) => train_cli::train(args),
        Command::Supernet { command } => supernet_cli::run(command),
        Command::Eval(args) => eval_cli::eval(args),
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

/// `--dtype`: the element type models are compiled for.
fn parse_dtype(name: &str) -> CliResult<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        other => Err(format!("unknown --dtype {other:?}; available: f32, f16")),
    }
}

/// The dtype a model runs in on the GPU: f16 only where the adapter has shader-f16 (and the
/// fall back to f32 is said).
fn gpu_dtype(dtype: DType) -> DType {
    if dtype == DType::F16 && !runtime::GpuModel::supports_f16() {
        eprintln!("the GPU adapter has no shader-f16: running in f32");
        return DType::F32;
    }
    dtype
}

/// A model's inputs in the element type it was compiled for (f32 inputs of an f16 model are
/// rounded to half; f16 ones of an f32 model widened).
fn inputs_as(inputs: Vec<Tensor>, dtype: DType) -> Vec<Tensor> {
    inputs.into_iter().map(|t| t.with_float_dtype(dtype)).collect()
}

/// Loads an ONNX model, or a text IR file when the name ends in `.ir`.
fn load(path: &Path) -> CliResult<Graph> {
    if path.extension().is_some_and(|e| e == "ir") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return ir::text::parse_graph(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    frontend::load_onnx(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(model: &Path, bindings: &[String], output: Option<&Path>, seed: u64, backend: &str, threads: usize, dtype: DType) -> CliResult<()> {
    let backend = Backend::parse(backend)?;
    let g = load(model)?;
    let dtype = if backend == Backend::Wgpu { gpu_dtype(dtype) } else { dtype };
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
    let inputs = inputs_as(inputs, dtype);
    let start = Instant::now();
    let outputs = match backend {
        Backend::Interp => {
            let g = if dtype == DType::F16 { passes::graph::half::to_f16(&g, false).map_err(|e| e.to_string())? } else { g.clone() };
            let inputs: Vec<Tensor> = inputs.iter().zip(&g.inputs).map(|(t, &v)| t.with_float_dtype(g.ty(v).dtype)).collect();
            let outputs = interp::run(&g, &inputs).map_err(|e| e.to_string())?;
            eprintln!("ran {} nodes on interp in {:.1} ms", g.nodes.len(), start.elapsed().as_secs_f64() * 1e3);
            outputs
        }
        Backend::Llvm => {
            let (loaded, _) = load_native(&g, threads, &runtime::DefaultSchedules, dtype)?;
            let compiled = start.elapsed().as_secs_f64();
            let run_start = Instant::now();
            let outputs = loaded.run(&inputs).map_err(|e| e.to_string())?;
            eprintln!("compiled in {:.2} s, ran on llvm in {:.2} ms", compiled, run_start.elapsed().as_secs_f64() * 1e3);
            outputs
        }
        Backend::Cranelift => {
            let graph = runtime::GraphOptions { optimize: true, dtype, f16_activations: false };
            let (model, report) =
                runtime::JitModel::build_with(&g, threads, &runtime::DefaultSchedules, graph).map_err(|e| e.to_string())?;
            let compiled = start.elapsed().as_secs_f64();
            let run_start = Instant::now();
            let outputs = model.run(&inputs).map_err(|e| e.to_string())?;
            eprintln!(
                "compiled in {:.3} s ({:.3} s lowering and schedules, {:.3} s cranelift code generation of {} programs), ran on cranelift in {:.2} ms",
                compiled,
                report.lower.as_secs_f64(),
                report.codegen.as_secs_f64(),
                report.programs,
                run_start.elapsed().as_secs_f64() * 1e3
            );
            outputs
        }
        Backend::Wgpu => {
            let graph = runtime::GraphOptions { optimize: true, dtype, f16_activations: false };
            let (model, report) = runtime::GpuModel::build_with(&g, &runtime::DefaultSchedules, graph).map_err(|e| e.to_string())?;
            let compiled = start.elapsed().as_secs_f64();
            let run_start = Instant::now();
            let outputs = model.run(&inputs).map_err(|e| e.to_string())?;
            eprintln!(
                "compiled in {:.3} s ({:.3} s lowering and schedules, {:.3} s WGSL of {} programs, pipelines on {}), ran in {:.2} ms",
                compiled,
                report.lower.as_secs_f64(),
                report.codegen.as_secs_f64(),
                report.programs,
                model.adapter(),
                run_start.elapsed().as_secs_f64() * 1e3
            );
            outputs
        }
    };
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

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Interp,
    Llvm,
    Cranelift,
    Wgpu,
}

impl Backend {
    fn parse(name: &str) -> CliResult<Backend> {
        match name {
            "interp" => Ok(Backend::Interp),
            "llvm" => Ok(Backend::Llvm),
            "cranelift" => Ok(Backend::Cranelift),
            "wgpu" => Ok(Backend::Wgpu),
            _ => Err(format!("unknown backend {name:?}; available: interp, llvm, cranelift, wgpu")),
        }
    }
}

fn parse_target(arch: &str, cpu: Option<&str>) -> CliResult<llvm_backend::Target> {
    let arch = match arch {
        "x86-64" | "x86_64" | "host" => llvm_backend::Arch::X86_64,
        "aarch64" | "arm64" => llvm_backend::Arch::Aarch64,
        other => return Err(format!("unknown --arch {other:?}; available: x86-64, aarch64")),
    };
    llvm_backend::Target::new(arch, cpu).map_err(|e| e.to_string())
}

/// Compiles `g` for this machine into a temporary folder and loads it into the process; also
/// says how many programs took their schedule from `schedules`.
fn load_native(
    g: &Graph,
    threads: usize,
    schedules: &dyn runtime::ScheduleSource,
    dtype: DType,
) -> CliResult<(runtime::LoadedModel, usize)> {
    let dir = std::env::temp_dir().join(format!("chanasc-native-{}", std::process::id()));
    let opts = runtime::CompileOptions {
        target: llvm_backend::Target::host(),
        threads,
        prefix: "model".into(),
        shared_library: true,
        optimize: true,
        dtype,
        f16_activations: false,
    };
    let report = runtime::compile_with(g, &opts, &dir, schedules).map_err(|e| e.to_string())?;
    let loaded = runtime::LoadedModel::load(&dir.join("libmodel.so"), "model", threads, report.inputs.clone(), report.outputs.clone());
    // The library stays mapped after its file is gone.
    let _ = std::fs::remove_dir_all(&dir);
    loaded.map(|m| (m, report.tuned_programs)).map_err(|e| e.to_string())
}

fn compile(
    model: &Path,
    arch: &str,
    cpu: Option<&str>,
    threads: usize,
    output: &Path,
    graph: runtime::GraphOptions,
    records: Option<&Path>,
) -> CliResult<()> {
    let start = Instant::now();
    let g = load(model)?;
    if arch == "wgpu" {
        return compile_wgpu(&g, model, output, start, records, graph);
    }
    let target = parse_target(arch, cpu)?;
    let (optimize, dtype, f16_activations) = (graph.optimize, graph.dtype, graph.f16_activations);
    let opts = runtime::CompileOptions { target, threads, prefix: "model".into(), shared_library: false, optimize, dtype, f16_activations };
    let r = match records {
        Some(path) => runtime::compile_with(&g, &opts, output, &tune_cli::load_records(path)?),
        None => runtime::compile(&g, &opts, output),
    }
    .map_err(|e| e.to_string())?;
    if records.is_some() {
        println!("{} of {} tensor programs use tuned schedules", r.tuned_programs, r.programs);
    }
    println!(
        "compiled {} for {} ({}) in {:.2} s: {} tensor programs (and {} run once at creation), {:.1} MiB weights, {:.1} MiB working memory",
        model.display(),
        arch,
        opts.target.cpu,
        start.elapsed().as_secs_f64(),
        r.programs,
        r.once_programs,
        r.weight_bytes as f64 / (1 << 20) as f64,
        r.arena_bytes as f64 / (1 << 20) as f64
    );
    println!("wrote {}/: model.o libmodel.a model.h model (runner) model.json", r.dir.display());
    Ok(())
}

/// The wgpu target's schedules of a records file, or the GPU default schedules.
fn gpu_schedules(records: Option<&Path>) -> CliResult<Box<dyn runtime::ScheduleSource>> {
    Ok(match records {
        Some(path) => Box::new(tune::gpu::GpuRecordSchedules(tune_cli::load_records(path)?)),
        None => Box::new(runtime::DefaultSchedules),
    })
}

/// `compile --arch wgpu`: the bundle (WGSL shaders, weights, manifest) that
/// `chanasc-wgpu-run` executes.
/// With `--dtype f16` the bundle's shaders use f16 (`enable f16`): the device that runs it
/// needs shader-f16.
fn compile_wgpu(
    g: &Graph,
    model: &Path,
    output: &Path,
    start: Instant,
    records: Option<&Path>,
    graph: runtime::GraphOptions,
) -> CliResult<()> {
    let (bundle, r) = runtime::gpu::gpu_bundle_with(g, gpu_schedules(records)?.as_ref(), graph).map_err(|e| e.to_string())?;
    if records.is_some() {
        println!("{} of {} tensor programs use tuned schedules", r.tuned_programs, r.programs);
    }
    bundle.write(output).map_err(|e| e.to_string())?;
    println!(
        "compiled {} for wgpu in {:.2} s: {} tensor programs (and {} run once at creation), {:.1} MiB weights, {:.1} MiB GPU buffers",
        model.display(),
        start.elapsed().as_secs_f64(),
        r.programs,
        r.once_programs,
        r.weight_bytes as f64 / (1 << 20) as f64,
        r.buffer_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "wrote {}/: model.json weights.bin shaders/ (run with chanasc-wgpu-run {} --input x.npy -o y.npy)",
        output.display(),
        output.display()
    );
    Ok(())
}

/// Where `chanasc bench` takes its schedules from.
enum Schedules<'a> {
    /// Tuning records where they have a task's schedule (None: the defaults).
    Records(Option<&'a Path>),
    /// The cranelift tier's default schedules.
    Cranelift,
}

fn bench(model: &Path, backend: &str, threads: usize, runs: usize, warmup: usize, schedules: Schedules, dtype: DType) -> CliResult<()> {
    let (records, cranelift_schedules) = match schedules {
        Schedules::Records(r) => (r, false),
        Schedules::Cranelift => (None, true),
    };
    let backend = Backend::parse(backend)?;
    if dtype == DType::F16 && backend == Backend::Interp {
        return Err("--dtype f16 is benchmarked on the llvm, cranelift and wgpu backends".into());
    }
    let dtype = if backend == Backend::Wgpu { gpu_dtype(dtype) } else { dtype };
    // Compile time is counted from the model file: import, graph passes, lowering,
    // schedules, code generation and (llvm) linking and loading.
    let start = Instant::now();
    let g = load(model)?;
    let mut rng = SplitMix64(0);
    let inputs: Vec<Tensor> = g.inputs.iter().map(|&v| random_tensor(g.ty(v), &mut rng)).collect::<CliResult<_>>()?;
    let inputs = inputs_as(inputs, dtype);
    let schedules: Box<dyn runtime::ScheduleSource> = match records {
        Some(path) if backend != Backend::Interp => Box::new(tune_cli::load_records(path)?),
        _ if cranelift_schedules => Box::new(runtime::jit_schedule::JitSchedules),
        _ => Box::new(runtime::DefaultSchedules),
    };
    let loaded: Option<Box<dyn runtime::InProcessModel>> = match backend {
        Backend::Llvm => {
            let (m, tuned) = load_native(&g, threads, schedules.as_ref(), dtype)?;
            if let Some(path) = records {
                println!("{tuned} tensor programs use tuned schedules from {}", path.display());
            }
            if cranelift_schedules {
                println!("{tuned} tensor programs use the cranelift tier's schedules");
            }
            Some(Box::new(m))
        }
        Backend::Cranelift => {
            let graph = runtime::GraphOptions { optimize: true, dtype, f16_activations: false };
            let (m, report) = runtime::JitModel::build_with(&g, threads, schedules.as_ref(), graph).map_err(|e| e.to_string())?;
            if let Some(path) = records {
                println!("{} tensor programs use tuned schedules from {}", report.tuned_programs, path.display());
            }
            Some(Box::new(m))
        }
        // The records' wgpu schedules (`tune --arch wgpu`), not the CPU's.
        Backend::Wgpu => {
            let graph = runtime::GraphOptions { optimize: true, dtype, f16_activations: false };
            let (m, report) = runtime::GpuModel::build_with(&g, gpu_schedules(records)?.as_ref(), graph).map_err(|e| e.to_string())?;
            println!("{} tensor programs on {} ({} with tuned schedules)", report.programs, m.adapter(), report.tuned_programs);
            Some(Box::new(m))
        }
        Backend::Interp => None,
    };
    if loaded.is_some() {
        println!("compiled in {:.3} s (model file to runnable code)", start.elapsed().as_secs_f64());
    }
    let run_once = || -> CliResult<()> {
        match &loaded {
            Some(m) => m.run(&inputs).map(|_| ()).map_err(|e| e.to_string()),
            None => interp::run(&g, &inputs).map(|_| ()).map_err(|e| e.to_string()),
        }
    };
    for _ in 0..warmup {
        run_once()?;
    }
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        run_once()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let name = match backend {
        Backend::Interp => "interp",
        Backend::Llvm => "llvm",
        Backend::Cranelift => "cranelift",
        Backend::Wgpu => "wgpu",
    };
    println!("{} on {name}, {} thread(s), {} runs", model.display(), threads, times.len());
    println!("median {:.4} ms  p90 {:.4} ms  min {:.4} ms", pick(0.5), pick(0.9), times[0]);
    if let Some(m) = &loaded {
        let mut profile = m.profile();
        let total: f64 = profile.iter().map(|p| p.1).sum();
        profile.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("per-program profile of the last run (slowest first):");
        println!("  {:>9} {:>6} {:>9}  program", "ms", "share", "GFLOP/s");
        for (name, secs, flops) in profile.iter().take(25) {
            let gflops = if *secs > 0.0 { flops / secs * 1e-9 } else { 0.0 };
            println!("  {:>9.4} {:>5.1}% {:>9.2}  {name}", secs * 1e3, 100.0 * secs / total.max(1e-12), gflops);
        }
        if profile.len() > 25 {
            println!("  ... {} more programs", profile.len() - 25);
        }
    }
    Ok(())
}

fn print_ir(model: &Path, print_after: Option<&str>, inline_limit: usize) -> CliResult<()> {
    let g = load(model)?;
    let opts = ir::text::PrintOptions { inline_limit };
    let stage = print_after.unwrap_or("import");
    if stage == "import" {
        print!("{}", ir::text::print_graph_with(&g, opts));
        return Ok(());
    }
    let mut current = g.clone();
    for (name, pass) in passes::pipeline::GRAPH_PASSES {
        current = pass(&current).map_err(|e| e.to_string())?;
        if *name == stage {
            print!("{}", ir::text::print_graph_with(&current, opts));
            return Ok(());
        }
    }
    match stage {
        "lower" => {
            for step in passes::lower::lower_graph(&current).map_err(|e| e.to_string())? {
                match step {
                    passes::lower::Step::Run(p) => println!("{}", ir::loops::print_func(&p.func)),
                    passes::lower::Step::Once(p) => println!("# runs once, at creation\n{}", ir::loops::print_func(&p.func)),
                    passes::lower::Step::Alias { .. } | passes::lower::Step::StageInput { .. } => {}
                }
            }
            Ok(())
        }
        "schedule" => {
            let lowered = runtime::lower_and_schedule(&g, &llvm_backend::Target::host(), "model", true).map_err(|e| e.to_string())?;
            for p in &lowered.programs {
                println!("# schedule: {}", p.trace.to_json());
                println!("{}", ir::loops::print_func(&p.func));
            }
            Ok(())
        }
        other => {
            let names: Vec<&str> = passes::pipeline::GRAPH_PASSES.iter().map(|p| p.0).collect();
            Err(format!("unknown stage {other:?}; stages: import, {}, lower, schedule", names.join(", ")))
        }
    }
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
        TensorData::F16(_) => print_summary(&t.with_float_dtype(DType::F32)),
        TensorData::I64(v) => println!("  {:?}", &v[..v.len().min(16)]),
        TensorData::Bool(v) => println!("  {:?}", &v[..v.len().min(16)]),
        _ => {}
    }
}

fn example(name: &str, output: &Path, seed: u64) -> CliResult<()> {
    let bytes = frontend::examples::example_model(name, seed)
        .ok_or_else(|| format!("no example {name:?}; examples: {}", frontend::examples::EXAMPLES.join(", ")))?;
    let tmp = output.with_extension("onnx.tmp");
    std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, output)).map_err(|e| format!("{}: {e}", output.display()))?;
    println!("wrote {} ({} bytes)", output.display(), bytes.len());
    Ok(())
}

fn info(model: &Path, optimized: bool) -> CliResult<()> {
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
    if optimized {
        let (after_egraph, report) = passes::egraph::optimize_with_report(&g).map_err(|e| e.to_string())?;
        println!("{report}");
        let mut current = after_egraph;
        for (name, pass) in passes::pipeline::GRAPH_PASSES.iter().skip(1) {
            if *name == "fuse" {
                let (fused, report) = passes::egraph::fuse_with_report(&current).map_err(|e| format!("{name}: {e}"))?;
                println!("fusion {report}");
                current = fused;
                continue;
            }
            current = pass(&current).map_err(|e| format!("{name}: {e}"))?;
        }
        let steps = passes::lower::lower_graph(&current).map_err(|e| e.to_string())?;
        let programs: Vec<&passes::lower::Program> = steps
            .iter()
            .filter_map(|s| match s {
                passes::lower::Step::Run(p) => Some(p),
                _ => None,
            })
            .collect();
        let steps_of = |p: &passes::lower::Program| -> Vec<&'static str> {
            p.nodes
                .iter()
                .flat_map(|&n| match &current.node(n).op {
                    ir::Op::Fused(f) => f.steps.iter().map(|s| s.op.name()).collect(),
                    op => vec![op.name()],
                })
                .collect()
        };
        let fused = programs.iter().filter(|p| steps_of(p).len() > 1).count();
        println!("optimized graph: {} nodes; tensor programs: {} ({fused} fused)", current.nodes.len(), programs.len());
        let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
        for p in &programs {
            *kinds.entry(steps_of(p).join("+")).or_insert(0) += 1;
        }
        for (k, n) in kinds {
            println!("  {k:40} {n}");
        }
    }
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
        DType::F16 => TensorData::F16((0..n).map(|_| ir::f16::from_f32(rng.next_f32())).collect()),
    };
    Tensor::new(ty.shape.clone(), data).map_err(|e| e.to_string())
}

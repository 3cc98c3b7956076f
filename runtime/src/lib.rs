//! Turns a graph into a deployable native model and runs it: lowering, default schedules,
//! LLVM code generation, the static memory plan, the C glue and thread pool, linking, and
//! loading the result into this process.

mod glue;
pub mod gpu;
pub mod jit;
pub mod jit_schedule;
pub mod link;
pub mod load;
pub mod plan;
mod pool;

use std::path::{Path, PathBuf};

use ir::loops::{Func, LoopKind, Stmt};
use ir::{Graph, ValueId};
use llvm_backend::{ConstBlob, Kernel, Target};
use passes::lower::Step;
pub use passes::pipeline::GraphOptions;
use passes::schedule::{default_schedule, Trace};
use thiserror::Error;

pub use gpu::GpuModel;
pub use jit::JitModel;
pub use load::LoadedModel;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Pass(#[from] passes::PassError),
    #[error("llvm: {0}")]
    Llvm(String),
    #[error("cranelift: {0}")]
    Cranelift(String),
    #[error("{0}")]
    Tool(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("loading the compiled model: {0}")]
    Load(String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Model(String),
}

fn io_err(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// A model ready to run in this process, whichever backend built it.
pub trait InProcessModel {
    /// Runs one inference.
    fn run(&self, inputs: &[ir::Tensor]) -> Result<Vec<ir::Tensor>, RuntimeError>;
    /// (program name, seconds in the last run, flops) of every tensor program.
    fn profile(&self) -> Vec<(String, f64, f64)>;
}

/// One tensor program as it is compiled: its scheduled function and how it is called.
#[derive(Debug, Clone)]
pub struct CompiledProgram {
    /// The graph node it computes (its name in the source model, or its op and value).
    pub name: String,
    pub symbol: String,
    pub func: Func,
    pub trace: Trace,
    /// Graph values bound to the function's parameters; the last is the result.
    pub args: Vec<ValueId>,
    /// The extent of the outermost parallel loop, when the program has one.
    pub parallel_extent: Option<i64>,
    /// Floating-point operations of one run (2 per multiply-accumulate, 1 per element
    /// otherwise), for profiles.
    pub flops: u64,
    /// Runs once, when the model is created (see `Step::Once`).
    pub once: bool,
    /// The schedule came from a [`ScheduleSource`] (tuning records), not the defaults.
    pub tuned: bool,
}

/// What `compile` needs besides the graph.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    pub target: Target,
    /// The thread count the runner and `{prefix}_create(0)` callers get by default.
    pub threads: usize,
    /// Prefix of the C API's symbols and of the file names (`model` gives `model.h`).
    pub prefix: String,
    /// Also build `lib{prefix}.so` to load into this process.
    pub shared_library: bool,
    /// Run the graph optimizations (e-graph rewrites, fusion); off, every graph node is its
    /// own tensor program, to measure what they bring.
    pub optimize: bool,
    /// f32, or f16 (`--dtype f16`): weights, inputs and outputs in half precision, computed
    /// in f32 (see passes::graph::half).
    pub dtype: ir::DType,
    /// With f16: activations in f16 too (half the working memory, slower); their elementwise
    /// arithmetic is then f16 where the target has it.
    pub f16_activations: bool,
}

impl CompileOptions {
    fn graph_options(&self) -> GraphOptions {
        GraphOptions { optimize: self.optimize, dtype: self.dtype, f16_activations: self.f16_activations }
    }
}

/// The lowered, scheduled programs of a graph and the graph they were made from (after the
/// graph passes).
pub struct Lowered {
    pub graph: Graph,
    pub steps: Vec<Step>,
    pub programs: Vec<CompiledProgram>,
}

fn parallel_extent(f: &Func) -> Option<i64> {
    match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => Some(l.extent),
        _ => None,
    }
}

/// Where each program's schedule comes from: [`lower_and_schedule_with`] and [`compile_with`]
/// ask it for every program and fall back to the default schedule when it has none (or when
/// its trace does not apply, as a record made for another version of the lowering may not).
pub trait ScheduleSource {
    /// A trace for the unscheduled `func` on `target`, or None for the default schedule;
    /// `constants[i]` says whether parameter i is bound to a constant (a weight).
    fn trace_for(&self, func: &Func, constants: &[bool], target: &Target) -> Option<Trace>;
}

/// The default schedule for every program.
pub struct DefaultSchedules;

impl ScheduleSource for DefaultSchedules {
    fn trace_for(&self, _: &Func, _: &[bool], _: &Target) -> Option<Trace> {
        None
    }
}

/// Floating-point operations of one run of a program computing graph nodes `nodes`: 2 per
/// multiply-accumulate of the dense ops, 1 per element of the others.
pub fn program_flops(graph: &Graph, nodes: &[ir::NodeId]) -> u64 {
    nodes
        .iter()
        .map(|&n| {
            let n = graph.node(n);
            let ins: Vec<&ir::TensorType> = n.inputs.iter().map(|&v| graph.ty(v)).collect();
            let macs = n.op.macs(&ins, graph.ty(n.output));
            if macs > 0 { 2 * macs } else { graph.ty(n.output).numel() as u64 }
        })
        .sum()
}

/// Runs the graph passes, lowers every node and applies the default schedules.
pub fn lower_and_schedule(g: &Graph, target: &Target, prefix: &str, optimize: impl Into<GraphOptions>) -> Result<Lowered, RuntimeError> {
    lower_and_schedule_with(g, target, prefix, optimize, &DefaultSchedules)
}

/// Runs the graph passes, lowers every node and schedules each program with the trace
/// `schedules` gives, or the default schedule.
pub fn lower_and_schedule_with(
    g: &Graph,
    target: &Target,
    prefix: &str,
    optimize: impl Into<GraphOptions>,
    schedules: &dyn ScheduleSource,
) -> Result<Lowered, RuntimeError> {
    lower_and_schedule_defaults(g, target, prefix, optimize, schedules, default_schedule)
}

/// [`lower_and_schedule_with`] with the default schedules `defaults(func, vector width)` (a
/// backend's own: see [`jit_schedule`]).
pub fn lower_and_schedule_defaults(
    g: &Graph,
    target: &Target,
    prefix: &str,
    optimize: impl Into<GraphOptions>,
    schedules: &dyn ScheduleSource,
    defaults: fn(&Func, usize) -> Trace,
) -> Result<Lowered, RuntimeError> {
    let graph = passes::pipeline::prepare_graph(g, optimize)?;
    let steps = passes::lower::lower_graph(&graph)?;
    let mut programs = Vec::new();
    for step in &steps {
        let (p, once) = match step {
            Step::Run(p) => (p, false),
            Step::Once(p) => (p, true),
            Step::Alias { .. } | Step::StageInput { .. } => continue,
        };
        let constants: Vec<bool> = p.args.iter().map(|&v| graph.const_data(v).is_some()).collect();
        let chosen = if once { None } else { schedules.trace_for(&p.func, &constants, target) };
        let chosen = chosen.and_then(|t| t.apply(&p.func).ok().map(|f| (t, f)));
        let tuned = chosen.is_some();
        let (trace, func) = match chosen {
            Some(c) => c,
            None => {
                let trace = defaults(&p.func, target.vector_width());
                let func = trace.apply(&p.func)?;
                (trace, func)
            }
        };
        // Programs are lowered and scheduled in f32; f16 tensors are then read and written
        // through casts (see passes::lower::half).
        let half: Vec<bool> = p.args.iter().map(|&v| graph.ty(v).dtype == ir::DType::F16).collect();
        let func = passes::lower::half::store_params_in_f16(func, &half);
        let func = if target.has_f16_arithmetic() { passes::lower::half::narrow_arithmetic(func) } else { func };
        let flops = program_flops(&graph, &p.nodes);
        let first = p.nodes.first().map(|&n| graph.node(n));
        let name = match first.and_then(|n| n.name.clone()) {
            Some(n) => format!("{} {n}", p.func.name),
            None => p.func.name.clone(),
        };
        programs.push(CompiledProgram {
            name,
            symbol: format!("{prefix}_k{}", programs.len()),
            parallel_extent: parallel_extent(&func),
            func,
            trace,
            args: p.args.clone(),
            flops,
            once,
            tuned,
        });
    }
    Ok(Lowered { graph, steps, programs })
}

/// Bytes of a tensor rearranged by `layout` (elements of `elem` bytes).
fn rearranged_bytes(src: &[u8], layout: &ir::loops::Layout, elem: usize) -> Result<Vec<u8>, RuntimeError> {
    let offsets = layout.source_offsets().filter(|o| o.len() * elem == src.len());
    let offsets = offsets.ok_or_else(|| RuntimeError::Model(format!("layout {layout:?} does not fit a weight of {} bytes", src.len())))?;
    let mut out = Vec::with_capacity(src.len());
    match elem {
        4 => {
            for &o in &offsets {
                out.extend_from_slice(&src[o * 4..o * 4 + 4]);
            }
        }
        _ => {
            for &o in &offsets {
                out.extend_from_slice(&src[o * elem..(o + 1) * elem]);
            }
        }
    }
    Ok(out)
}

fn weight_bytes(g: &Graph, v: ValueId) -> Result<Vec<u8>, RuntimeError> {
    let t = g.const_data(v).ok_or_else(|| {
        let name = g.value(v).name.clone().unwrap_or_else(|| v.to_string());
        RuntimeError::Model(format!("weight {name} has no data (a text IR file with external weights cannot be compiled)"))
    })?;
    Ok(t.data.to_le_bytes())
}

/// The weight blobs of a model: blob i holds the plan's weight i (empty when every program
/// reads it in another layout), then one more blob per parameter that reads a weight in
/// another layout, rearranged; the second result maps (program, parameter) to its blob.
pub fn weight_blobs(lowered: &Lowered, plan: &plan::MemoryPlan) -> Result<(Vec<Vec<u8>>, std::collections::HashMap<(usize, usize), usize>), RuntimeError> {
    let graph = &lowered.graph;
    // Parameters that read a weight in another layout get their own rearranged copy; a weight
    // read only so is not emitted as it was.
    let rearranged: std::collections::HashSet<(usize, usize)> = lowered
        .programs
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.func.params().iter().enumerate().filter(|(_, &b)| p.func.buffer(b).layout.is_some()).map(move |(i, _)| (k, i)).collect::<Vec<_>>())
        .collect();
    let mut read_as_is = std::collections::HashSet::new();
    for (k, p) in lowered.programs.iter().enumerate() {
        for (i, &v) in p.args.iter().enumerate() {
            if !rearranged.contains(&(k, i)) {
                read_as_is.insert(v);
            }
        }
    }
    read_as_is.extend(plan.output_copies.iter().map(|&(_, v)| v));
    let mut blobs: Vec<Vec<u8>> = plan
        .weights
        .iter()
        .map(|&v| if read_as_is.contains(&v) { weight_bytes(graph, v) } else { Ok(Vec::new()) })
        .collect::<Result<_, _>>()?;
    let mut overrides = std::collections::HashMap::new();
    for (k, p) in lowered.programs.iter().enumerate() {
        for (i, &param) in p.func.params().iter().enumerate() {
            let Some(layout) = &p.func.buffer(param).layout else { continue };
            let v = p.args[i];
            if graph.const_data(v).is_none() {
                return Err(RuntimeError::Model(format!("{} reads {} in another layout, but it is not a constant", p.name, v)));
            }
            let bytes = weight_bytes(graph, v)?;
            overrides.insert((k, i), blobs.len());
            blobs.push(rearranged_bytes(&bytes, layout, graph.ty(v).dtype.size_bytes())?);
        }
    }
    Ok((blobs, overrides))
}

/// Inputs copied into the interior of a padded tensor rather than read as they are: (input
/// position, the padded value, its pads).
pub fn staged_inputs(lowered: &Lowered) -> Vec<(usize, ValueId, Vec<usize>)> {
    lowered
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::StageInput { input, into, pads } => {
                let pos = lowered.graph.inputs.iter().position(|v| v == input)?;
                Some((pos, *into, pads.clone()))
            }
            _ => None,
        })
        .collect()
}

const RUNTIME_C: &str = include_str!("../c/chanasc_runtime.c");
const RUNTIME_H: &str = include_str!("../c/chanasc_runtime.h");
const RUNNER_C: &str = include_str!("../c/runner.c");

/// A summary of what `compile` wrote.
pub struct CompileReport {
    pub dir: PathBuf,
    /// Programs of each run, and those that run once at creation.
    pub programs: usize,
    pub once_programs: usize,
    /// Programs scheduled by the [`ScheduleSource`] rather than the defaults.
    pub tuned_programs: usize,
    pub arena_bytes: usize,
    pub weight_bytes: usize,
    pub object_bytes: usize,
    pub inputs: Vec<ir::TensorType>,
    pub outputs: Vec<ir::TensorType>,
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).map_err(|e| io_err(&p, e))
}

/// Compiles `g` into `out`: `{prefix}.o` (tensor programs and weights), `lib{prefix}.a`,
/// `{prefix}.h`, the runner `{prefix}`, `{prefix}.json`, and the C sources. Everything is
/// built in a sibling folder first and moved into place at the end, so an interrupted build
/// leaves no half-written output.
pub fn compile(g: &Graph, opts: &CompileOptions, out: &Path) -> Result<CompileReport, RuntimeError> {
    compile_with(g, opts, out, &DefaultSchedules)
}

/// [`compile`] with each program's schedule taken from `schedules` when it has one.
pub fn compile_with(g: &Graph, opts: &CompileOptions, out: &Path, schedules: &dyn ScheduleSource) -> Result<CompileReport, RuntimeError> {
    let prefix = opts.prefix.as_str();
    let lowered = lower_and_schedule_with(g, &opts.target, prefix, opts.graph_options(), schedules)?;
    let graph = &lowered.graph;
    let plan = plan::plan(graph, &lowered.steps);
    let (blobs, overrides) = weight_blobs(&lowered, &plan)?;
    let overrides: std::collections::HashMap<(usize, usize), String> = overrides.into_iter().map(|(k, i)| (k, format!("{prefix}_w{i}"))).collect();
    let consts: Vec<ConstBlob> = blobs.iter().enumerate().map(|(i, b)| ConstBlob { symbol: format!("{prefix}_w{i}"), bytes: b }).collect();
    let kernels: Vec<Kernel> = lowered.programs.iter().map(|p| Kernel { symbol: p.symbol.clone(), func: &p.func }).collect();
    let object = llvm_backend::compile_object(&kernels, &consts, &opts.target).map_err(|e| RuntimeError::Llvm(e.to_string()))?;

    let staging = out.with_file_name(format!(
        "{}.partial-{}",
        out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into()),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    let arch = opts.target.arch;
    write(&staging, &format!("{prefix}.o"), &object)?;
    write(&staging, &format!("{prefix}.h"), glue::header(graph, prefix, opts.threads).as_bytes())?;
    let staged = staged_inputs(&lowered);
    let glue = glue::source(graph, &lowered.programs, &plan, &overrides, &staged, blobs.len(), prefix);
    write(&staging, &format!("{prefix}_glue.c"), glue.as_bytes())?;
    write(&staging, "chanasc_runtime.c", RUNTIME_C.as_bytes())?;
    write(&staging, "chanasc_runtime.h", RUNTIME_H.as_bytes())?;
    // The runner is written against `model.h`; other prefixes rename the API with macros.
    let runner = runner_source(prefix);
    write(&staging, "runner.c", runner.as_bytes())?;
    link::compile_c(arch, &staging, &format!("{prefix}_glue.c"), &format!("{prefix}_glue.o"))?;
    link::compile_c(arch, &staging, "chanasc_runtime.c", "chanasc_runtime.o")?;
    link::compile_c(arch, &staging, "runner.c", "runner.o")?;
    let objects = [format!("{prefix}.o"), format!("{prefix}_glue.o"), "chanasc_runtime.o".to_string()];
    let objects: Vec<&str> = objects.iter().map(String::as_str).collect();
    link::archive(arch, &staging, &format!("lib{prefix}.a"), &objects)?;
    link::link_executable(arch, &staging, prefix, &["runner.o", &format!("lib{prefix}.a")])?;
    if opts.shared_library {
        link::link_shared(arch, &staging, &format!("lib{prefix}.so"), &objects)?;
    }
    let _ = std::fs::remove_file(staging.join("runner.o"));
    write(&staging, &format!("{prefix}.json"), manifest(graph, &lowered.programs, &plan, opts).as_bytes())?;

    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| io_err(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| io_err(out, e))?;
    Ok(CompileReport {
        dir: out.to_path_buf(),
        programs: lowered.programs.iter().filter(|p| !p.once).count(),
        once_programs: lowered.programs.iter().filter(|p| p.once).count(),
        tuned_programs: lowered.programs.iter().filter(|p| p.tuned).count(),
        arena_bytes: plan.arena_bytes,
        weight_bytes: blobs.iter().map(Vec::len).sum(),
        object_bytes: object.len(),
        inputs: graph.inputs.iter().map(|&v| graph.ty(v).clone()).collect(),
        outputs: graph.outputs.iter().map(|&v| graph.ty(v).clone()).collect(),
    })
}

fn runner_source(prefix: &str) -> String {
    if prefix == "model" {
        return RUNNER_C.to_string();
    }
    let api = [
        "model_create", "model_destroy", "model_run", "model_num_inputs", "model_num_outputs", "model_input_name",
        "model_output_name", "model_input_rank", "model_output_rank", "model_input_shape", "model_output_shape",
        "model_input_dtype", "model_output_dtype", "model_num_programs", "model_program_name",
        "model_program_seconds", "model_program_flops",
    ];
    let mut s = String::new();
    for name in api {
        s.push_str(&format!("#define {name} {prefix}{}\n", &name[5..]));
    }
    s.push_str(&format!("#define model_model {prefix}_model\n#define MODEL_DEFAULT_THREADS {}_DEFAULT_THREADS\n", prefix.to_uppercase()));
    s + &RUNNER_C.replace("#include \"model.h\"", &format!("#include \"{prefix}.h\""))
}

fn manifest(g: &Graph, programs: &[CompiledProgram], plan: &plan::MemoryPlan, opts: &CompileOptions) -> String {
    use serde_json::json;
    let io = |vs: &[ValueId]| {
        vs.iter()
            .map(|&v| json!({"name": g.value(v).name, "dtype": g.ty(v).dtype.name(), "shape": g.ty(v).shape}))
            .collect::<Vec<_>>()
    };
    let programs: Vec<_> = programs
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "symbol": p.symbol,
                "func": p.func.name,
                "flops": p.flops,
                "parallel_extent": p.parallel_extent,
                "schedule": serde_json::from_str::<serde_json::Value>(&p.trace.to_json()).unwrap_or_default(),
                "tuned": p.tuned,
            })
        })
        .collect();
    let doc = json!({
        "generator": format!("chanasc {}", env!("CARGO_PKG_VERSION")),
        "target": {"arch": format!("{:?}", opts.target.arch), "cpu": opts.target.cpu, "features": opts.target.features, "vector_width": opts.target.vector_width()},
        "threads": opts.threads,
        "inputs": io(&g.inputs),
        "outputs": io(&g.outputs),
        "arena_bytes": plan.arena_bytes,
        "programs": programs,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

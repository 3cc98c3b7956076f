//! Latency measurement on this machine: a graph (one block of the space, or a whole network)
//! is compiled with chanasc's own compiler (LLVM backend, default schedules, one thread) into
//! a shared library in a temporary folder, loaded into the process, run a few times to warm
//! up and then timed. The compile artifacts are removed afterwards; the schedule of every
//! tensor program (the replayable trace the compiler recorded in its manifest) is kept.
//!
//! Measuring is behind [`BlockMeasurer`], so that building a latency table can be tested
//! without a compiler (a fake measurer that counts its calls).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ir::{Graph, Tensor, TensorData};

use crate::blocks::Block;
use crate::build::{build_block, build_graph, RandomWeights};
use crate::error::{NasError, Result};
use crate::lut::LatencyEntry;
use crate::rng::SplitMix64;
use crate::space::ArchConfig;

/// Summary statistics of timed runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub count: u64,
    pub mean: f64,
    /// Population standard deviation (numpy's default, as OFA's tables have it).
    pub std: f64,
    pub median: f64,
    pub min: f64,
}

impl Stats {
    /// Statistics of a non-empty list of times.
    pub fn of(times: &[f64]) -> Stats {
        assert!(!times.is_empty(), "statistics of no runs");
        let n = times.len() as f64;
        let mean = times.iter().sum::<f64>() / n;
        let var = times.iter().map(|t| (t - mean) * (t - mean)).sum::<f64>() / n;
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
        Stats { count: times.len() as u64, mean, std: var.sqrt(), median, min: sorted[0] }
    }

    /// The entry of a latency table (OFA's count, mean, std).
    pub fn entry(&self) -> LatencyEntry {
        LatencyEntry { count: self.count, mean: self.mean, std: self.std }
    }
}

/// The default cache flush: larger than the last-level cache share this process gets here.
pub const DEFAULT_FLUSH_BYTES: usize = 128 << 20;

/// How a graph is measured.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// Timed runs (at least 1).
    pub runs: usize,
    /// Untimed runs before them.
    pub warmup: usize,
    /// Seed of the random weights and input.
    pub seed: u64,
    /// Bytes of a buffer read before each run (0: none), to evict the model's weights and
    /// activations from the private caches as the rest of a network would.
    pub flush_bytes: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions { runs: 20, warmup: 3, seed: 0, flush_bytes: DEFAULT_FLUSH_BYTES }
    }
}

/// What measuring one graph gives.
#[derive(Debug, Clone)]
pub struct GraphMeasurement {
    /// See [`Timing`].
    pub wall: Stats,
    pub kernels: Stats,
    /// Each tensor program's name and schedule trace: `[{"name": .., "schedule": ..}, ..]`.
    pub programs: serde_json::Value,
    pub program_ms: Vec<(String, f64)>,
    pub other_load: Option<f64>,
    /// Timings made (more than one when disturbed).
    pub attempts: usize,
    /// Seconds spent compiling.
    pub compile_seconds: f64,
}

/// A temporary folder, removed when dropped (also when measuring fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("chanasc-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| NasError::io(&dir, e))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn measure_err(what: &str, e: impl std::fmt::Display) -> NasError {
    NasError::Measure(format!("{what}: {e}"))
}

/// The compile options of every measurement: this machine, one thread, graph optimizations
/// on, a shared library to load.
fn host_options(shared_library: bool) -> Result<runtime::CompileOptions> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(NasError::Measure(format!("measuring on the host needs x86-64; this machine is {}", std::env::consts::ARCH)));
    }
    Ok(runtime::CompileOptions { target: llvm_backend::Target::host(), threads: 1, prefix: "model".into(), shared_library, optimize: true, dtype: ir::DType::F32, f16_activations: false })
}

/// Compiles `graph` for this machine into `out` (the runner `out/model`, `libmodel.a`,
/// `model.h`, `model.json`), as the deployable result of a search.
pub fn compile_for_host(graph: &Graph, out: &Path) -> Result<runtime::CompileReport> {
    compile_for_host_with(graph, out, &runtime::DefaultSchedules)
}

/// [`compile_for_host`] with each tensor program's schedule from `schedules` when it has one
/// (tuning records), the default schedule otherwise.
pub fn compile_for_host_with(graph: &Graph, out: &Path, schedules: &dyn runtime::ScheduleSource) -> Result<runtime::CompileReport> {
    let opts = host_options(false)?;
    runtime::compile_with(graph, &opts, out, schedules).map_err(|e| measure_err("compiling", e))
}

/// Seeded uniform random inputs of a graph (f32 inputs only: the space's networks and blocks
/// take one image-like tensor).
pub(crate) fn random_inputs(graph: &Graph, seed: u64) -> Result<Vec<Tensor>> {
    let mut rng = SplitMix64::new(seed ^ 0x1a7e_c0de);
    graph
        .inputs
        .iter()
        .map(|&v| {
            let ty = graph.ty(v);
            if ty.dtype != ir::DType::F32 {
                return Err(NasError::Measure(format!("input {v} is {}, only f32 inputs are measured", ty.dtype.name())));
            }
            let data = (0..ty.numel()).map(|_| rng.next_f64() as f32).collect();
            Tensor::new(ty.shape.clone(), TensorData::F32(data)).map_err(|e| measure_err("input", e))
        })
        .collect()
}

/// A buffer read before each timed run, larger than the caches, so that a model's weights
/// and activations start cold, as they do inside a network whose working set is larger than
/// the caches (the latency of one block is then the one it has within a network).
pub struct CacheFlush(Vec<u8>);

impl CacheFlush {
    pub fn new(bytes: usize) -> CacheFlush {
        CacheFlush(vec![1u8; bytes])
    }

    pub fn run(&self) {
        if !self.0.is_empty() {
            let sum = self.0.iter().step_by(64).fold(0u64, |a, &b| a.wrapping_add(b as u64));
            std::hint::black_box(sum);
        }
    }
}

/// Times of a loaded model's runs.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wall time of whole runs (the call into the model, input and output copies included).
    pub wall: Stats,
    /// The sum of the model's per-run tensor programs' own times in each run (its profile):
    /// the run without the copies of its inputs and outputs.
    pub kernels: Stats,
    /// Each per-run tensor program's name and median time (ms).
    pub program_ms: Vec<(String, f64)>,
    /// Each per-run tensor program's name and time in every run (ms), in run order.
    pub program_runs: Vec<(String, Vec<f64>)>,
    /// Wall time less the tensor programs' time, run by run: the copies of the inputs and
    /// outputs and the call.
    pub overhead: Stats,
    /// CPU cores other processes kept busy, on average, while the runs were timed (from
    /// /proc/stat; None where it cannot be read).
    pub other_load: Option<f64>,
}

impl Timing {
    /// Whether other processes likely disturbed the timing: they needed more than the
    /// machine's other cores (so they took turns on this one), or outliers pulled the mean
    /// above 1.1 times the median.
    pub fn disturbed(&self) -> bool {
        self.other_load.is_some_and(too_busy) || self.kernels.mean > 1.1 * self.kernels.median || self.wall.mean > 1.1 * self.wall.median
    }

    /// Lower is quieter: the other processes' load, then the spread of the kernel times.
    fn noise(&self) -> (f64, f64) {
        (self.other_load.unwrap_or(0.0), self.kernels.std / self.kernels.mean.max(1e-12))
    }
}

/// Whether other processes' load (in cores) is more than the machine's other cores.
fn too_busy(load: f64) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    load > cores - 1.0 + 0.2
}

/// Waits, up to `max`, until other processes leave this process a core (their load over
/// the last half second is not [`too_busy`]). Returns whether they did.
pub fn wait_for_quiet(max: std::time::Duration) -> bool {
    let start = Instant::now();
    loop {
        let (Some((b0, o0)), t0) = (cpu_ticks(), Instant::now()) else {
            return true;
        };
        std::thread::sleep(std::time::Duration::from_millis(500));
        let Some((b1, o1)) = cpu_ticks() else {
            return true;
        };
        let others = b1.saturating_sub(b0).saturating_sub(o1.saturating_sub(o0));
        let load = others as f64 / ticks_per_second() / t0.elapsed().as_secs_f64();
        if !too_busy(load) {
            return true;
        }
        if start.elapsed() >= max {
            return false;
        }
    }
}

/// CPU time (clock ticks) of the whole machine's busy states and of this process.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let busy = v.get(0..3)?.iter().sum::<u64>() + v.get(5..8)?.iter().sum::<u64>();
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = own.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

/// Clock ticks per second of /proc/stat.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// A graph compiled for this machine and loaded into the process, with seeded random inputs.
pub struct HostModel {
    // Declared before the folder: the library is closed before its files are removed.
    model: runtime::LoadedModel,
    _dir: TempDir,
    per_run: Vec<bool>,
    inputs: Vec<Tensor>,
    /// Each tensor program's name and schedule trace: `[{"name": .., "schedule": ..}, ..]`.
    pub programs: serde_json::Value,
    pub compile_seconds: f64,
    /// Tensor programs whose schedule came from the schedule source (tuning records).
    pub tuned_programs: usize,
}

impl HostModel {
    /// Compiles `graph` (default schedules, one thread) into a temporary folder and loads it.
    pub fn compile(graph: &Graph, seed: u64) -> Result<HostModel> {
        HostModel::compile_with(graph, seed, &runtime::DefaultSchedules)
    }

    /// [`compile`](Self::compile) with each program's schedule from `schedules` when it has
    /// one (tuning records), the default schedule otherwise.
    pub fn compile_with(graph: &Graph, seed: u64, schedules: &dyn runtime::ScheduleSource) -> Result<HostModel> {
        let copts = host_options(true)?;
        let dir = TempDir::new("measure")?;
        let out = dir.0.join("model");
        let start = Instant::now();
        let report = runtime::compile_with(graph, &copts, &out, schedules).map_err(|e| measure_err("compiling", e))?;
        let compile_seconds = start.elapsed().as_secs_f64();
        let manifest_path = out.join("model.json");
        let manifest: serde_json::Value = std::fs::read_to_string(&manifest_path)
            .map_err(|e| NasError::io(&manifest_path, e))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| measure_err("the compiler's manifest", e)))?;
        let programs: Vec<serde_json::Value> = manifest["programs"]
            .as_array()
            .map(|ps| ps.iter().map(|p| serde_json::json!({"name": p["name"], "schedule": p["schedule"]})).collect())
            .unwrap_or_default();
        let types = |vs: &[ir::ValueId]| vs.iter().map(|&v| graph.ty(v).clone()).collect::<Vec<_>>();
        let model =
            runtime::LoadedModel::load(&out.join("libmodel.so"), "model", copts.threads, types(&graph.inputs), types(&graph.outputs))
                .map_err(|e| measure_err("loading", e))?;
        // Programs that run once, at creation, have their time recorded before any run; the
        // others are still at zero. Only the per-run programs count in a run's kernel time.
        let per_run = model.profile().iter().map(|p| p.1 == 0.0).collect();
        Ok(HostModel {
            model,
            _dir: dir,
            per_run,
            inputs: random_inputs(graph, seed)?,
            programs: serde_json::Value::Array(programs),
            compile_seconds,
            tuned_programs: report.tuned_programs,
        })
    }

    /// `runs` timed runs (at least one) after `warmup` untimed ones, `flush` read before
    /// each timed run.
    pub fn time(&self, runs: usize, warmup: usize, flush: &CacheFlush) -> Result<Timing> {
        let run = || self.model.run(&self.inputs).map_err(|e| measure_err("running", e));
        for _ in 0..warmup {
            run()?;
        }
        let runs = runs.max(1);
        let (mut wall, mut kernels) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let mut per_program: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); self.per_run.len()];
        let mut overhead = Vec::with_capacity(runs);
        let (before, started) = (cpu_ticks(), Instant::now());
        for _ in 0..runs {
            flush.run();
            let t = Instant::now();
            let outputs = run()?;
            wall.push(t.elapsed().as_secs_f64() * 1e3);
            drop(outputs);
            let mut k = 0.0;
            for (i, p) in self.model.profile().iter().enumerate() {
                if self.per_run.get(i) == Some(&true) {
                    k += p.1;
                    per_program[i].push(p.1 * 1e3);
                }
            }
            kernels.push(k * 1e3);
            overhead.push(wall[wall.len() - 1] - k * 1e3);
        }
        let seconds = started.elapsed().as_secs_f64();
        let other_load = match (before, cpu_ticks()) {
            (Some((b0, o0)), Some((b1, o1))) if seconds > 0.0 => {
                let others = b1.saturating_sub(b0).saturating_sub(o1.saturating_sub(o0));
                Some(others as f64 / ticks_per_second() / seconds)
            }
            _ => None,
        };
        let program_runs: Vec<(String, Vec<f64>)> =
            self.model.profile().into_iter().zip(per_program).filter(|(_, t)| !t.is_empty()).map(|(p, t)| (p.0, t)).collect();
        let program_ms = program_runs.iter().map(|(n, t)| (n.clone(), Stats::of(t).median)).collect();
        Ok(Timing {
            wall: Stats::of(&wall),
            kernels: Stats::of(&kernels),
            program_ms,
            program_runs,
            overhead: Stats::of(&overhead),
            other_load,
        })
    }

    /// [`time`](Self::time), repeated up to `retries` times while the timing looks
    /// disturbed by other processes (each repeat first waits, up to 1 s times the repeat's
    /// number, for them to leave a core free); the quietest timing is kept. Returns it and
    /// the number of timings made.
    pub fn time_quietly(&self, runs: usize, warmup: usize, flush: &CacheFlush, retries: usize) -> Result<(Timing, usize)> {
        let mut best = self.time(runs, warmup, flush)?;
        let mut attempts = 1;
        while best.disturbed() && attempts <= retries {
            wait_for_quiet(std::time::Duration::from_secs(attempts as u64));
            let t = self.time(runs, warmup, flush)?;
            attempts += 1;
            if t.noise() < best.noise() {
                best = t;
            }
        }
        Ok((best, attempts))
    }
}

/// Compiles `graph` for this machine, loads it, and times it as `opts` says (repeating a
/// disturbed timing up to `retries` times, see [`HostModel::time_quietly`]).
pub fn measure_graph(graph: &Graph, opts: &MeasureOptions, retries: usize) -> Result<GraphMeasurement> {
    let model = HostModel::compile(graph, opts.seed)?;
    let flush = CacheFlush::new(opts.flush_bytes);
    let (t, attempts) = model.time_quietly(opts.runs, opts.warmup, &flush, retries)?;
    Ok(GraphMeasurement {
        wall: t.wall,
        kernels: t.kernels,
        programs: model.programs.clone(),
        program_ms: t.program_ms,
        other_load: t.other_load,
        attempts,
        compile_seconds: model.compile_seconds,
    })
}

/// Measures a whole network of the space (seeded random weights).
pub fn measure_network(arch: &ArchConfig, width: f64, opts: &MeasureOptions, retries: usize) -> Result<GraphMeasurement> {
    let graph = build_graph(arch, width, &mut RandomWeights::new(opts.seed))?;
    measure_graph(&graph, opts, retries)
}

/// One block's measurement: its latency-table entry, the median, the schedule traces of its
/// tensor programs, and anything else worth keeping beside them (a JSON object, or null).
#[derive(Debug, Clone)]
pub struct BlockMeasurement {
    pub entry: LatencyEntry,
    pub median: f64,
    pub programs: serde_json::Value,
    pub extra: serde_json::Value,
}

/// What measures blocks for a latency table.
pub trait BlockMeasurer {
    fn measure(&mut self, block: &Block) -> Result<BlockMeasurement>;

    /// The run overhead of a whole network of width `width` at resolution `r` (see
    /// [`crate::lut::overhead_key`]), when this measurer knows it.
    fn measure_overhead(&mut self, _width: f64, _r: u32) -> Result<Option<BlockMeasurement>> {
        Ok(None)
    }
}

/// Measures blocks on this machine: each block alone as a model ([`build_block`]), compiled
/// with the default schedules; its latency is the time of its tensor programs in a run
/// (without the copies of the model's input and output, which a block inside a network does
/// not make), with the caches flushed before each timed run. A timing disturbed by other
/// processes is repeated up to `retries` times ([`HostModel::time_quietly`]).
pub struct HostMeasurer {
    pub options: MeasureOptions,
    pub retries: usize,
    flush: CacheFlush,
    /// Where the programs' schedules come from (None: the default schedules).
    schedules: Option<Box<dyn runtime::ScheduleSource>>,
}

impl HostMeasurer {
    pub fn new(options: MeasureOptions, retries: usize) -> HostMeasurer {
        let flush = CacheFlush::new(options.flush_bytes);
        HostMeasurer { options, retries, flush, schedules: None }
    }

    /// Compile every block with the schedules `schedules` gives (tuning records), falling
    /// back to the default schedule of a program it has none for.
    pub fn set_schedules(&mut self, schedules: Box<dyn runtime::ScheduleSource>) {
        self.schedules = Some(schedules);
    }

    fn compile(&self, graph: &Graph) -> Result<HostModel> {
        match &self.schedules {
            Some(s) => HostModel::compile_with(graph, self.options.seed, s.as_ref()),
            None => HostModel::compile(graph, self.options.seed),
        }
    }
}

impl BlockMeasurer for HostMeasurer {
    fn measure(&mut self, block: &Block) -> Result<BlockMeasurement> {
        let bytes = build_block(block, &mut RandomWeights::new(self.options.seed))?;
        let graph = frontend::import_model(&bytes).map_err(|e| NasError::Build(format!("importing block {}: {e}", block.key())))?;
        let model = self.compile(&graph)?;
        let o = &self.options;
        let (t, attempts) = model.time_quietly(o.runs, o.warmup, &self.flush, self.retries)?;
        let round = |x: f64| (x * 1e3).round() / 1e3;
        Ok(BlockMeasurement {
            entry: t.kernels.entry(),
            median: t.kernels.median,
            programs: model.programs.clone(),
            extra: serde_json::json!({
                "wall_median_ms": t.wall.median,
                "attempts": attempts,
                "other_load": t.other_load.map(round),
                "compile_s": round(model.compile_seconds),
                "tuned_programs": model.tuned_programs,
            }),
        })
    }

    /// Times the smallest network at `r`: its wall time less its tensor programs' time, run
    /// by run.
    fn measure_overhead(&mut self, width: f64, r: u32) -> Result<Option<BlockMeasurement>> {
        let arch = ArchConfig::min(r);
        let graph = build_graph(&arch, width, &mut RandomWeights::new(self.options.seed))?;
        let model = self.compile(&graph)?;
        let o = &self.options;
        let (t, attempts) = model.time_quietly(o.runs, o.warmup, &self.flush, self.retries)?;
        let round = |x: f64| (x * 1e3).round() / 1e3;
        Ok(Some(BlockMeasurement {
            entry: t.overhead.entry(),
            median: t.overhead.median,
            programs: serde_json::Value::Null,
            extra: serde_json::json!({
                "network": arch.to_compact(),
                "wall_median_ms": t.wall.median,
                "kernels_median_ms": t.kernels.median,
                "attempts": attempts,
                "other_load": t.other_load.map(round),
            }),
        }))
    }
}

/// The block of a network (an index into its [`crate::decompose`] list) a compiled program
/// computes, from the source node its name carries (`function node`): `first_conv.*` the stem,
/// `blocks.N.*` MBConv block N (the fixed first block is 0), `final_expand_layer.*`,
/// `global_avg_pool*`, `feature_mix_layer.*`, `classifier.*` the head. None for a program
/// without a node name.
pub fn block_of_program(name: &str, blocks: &[Block]) -> Option<usize> {
    let node = name.split_whitespace().nth(1)?;
    let n = blocks.len();
    let head = |kind: fn(&Block) -> bool| blocks.iter().position(kind);
    if node.starts_with("first_conv") {
        return Some(0);
    }
    if let Some(rest) = node.strip_prefix("blocks.") {
        let i: usize = rest.split('.').next()?.parse().ok()?;
        return (i + 1 < n).then_some(i + 1);
    }
    if node.starts_with("final_expand_layer") {
        return head(|b| matches!(b, Block::FinalExpand { .. }));
    }
    if node.starts_with("global_avg_pool") {
        return head(|b| matches!(b, Block::AvgPool { .. }));
    }
    if node.starts_with("feature_mix_layer") {
        return head(|b| matches!(b, Block::FeatureMix { .. }));
    }
    if node.starts_with("classifier") {
        return head(|b| matches!(b, Block::Logits { .. }));
    }
    None
}

/// What measuring one network gives a latency table: each of its blocks' latency inside it,
/// and its run overhead.
#[derive(Debug, Clone)]
pub struct NetworkMeasurement {
    /// Per block key: the block's time in each run (the sum of its programs'), over every
    /// occurrence of the key in the network.
    pub entries: std::collections::BTreeMap<String, LatencyEntry>,
    /// Wall time less the programs' time, run by run.
    pub overhead: LatencyEntry,
    /// Each tensor program's name, block key and schedule trace.
    pub programs: serde_json::Value,
    pub extra: serde_json::Value,
}

/// What measures networks for a latency table.
pub trait NetworkMeasurer {
    fn measure_network(&mut self, arch: &ArchConfig, width: f64) -> Result<NetworkMeasurement>;
}

/// Splits a timed network's programs among its blocks: each program goes to the block its
/// name names ([`block_of_program`]), a program without one to the block of the program
/// before it. Returns, per block (in `blocks` order), its time in each run (ms).
pub fn block_times(blocks: &[Block], program_runs: &[(String, Vec<f64>)], runs: usize) -> Vec<Vec<f64>> {
    let mut times = vec![vec![0.0; runs]; blocks.len()];
    let mut current = 0;
    for (name, t) in program_runs {
        if let Some(b) = block_of_program(name, blocks) {
            current = b;
        }
        for (acc, x) in times[current].iter_mut().zip(t) {
            *acc += x;
        }
    }
    times
}

/// Measures networks on this machine as whole networks are timed (cold caches, one thread),
/// compiled with the default schedules or with those of a schedule source (tuning records);
/// a block's latency is the time of its programs inside the network ([`block_times`]), so it
/// is the latency a network of the space sees: the compiler's programs for a block depend on
/// its neighbours (their layouts, the padding the next layer reads).
pub struct HostNetworkMeasurer {
    pub options: MeasureOptions,
    pub retries: usize,
    flush: CacheFlush,
    schedules: Option<Box<dyn runtime::ScheduleSource>>,
}

impl HostNetworkMeasurer {
    pub fn new(options: MeasureOptions, retries: usize) -> HostNetworkMeasurer {
        let flush = CacheFlush::new(options.flush_bytes);
        HostNetworkMeasurer { options, retries, flush, schedules: None }
    }

    /// Compile every network with the schedules `schedules` gives, the default schedule of
    /// a program it has none for.
    pub fn set_schedules(&mut self, schedules: Box<dyn runtime::ScheduleSource>) {
        self.schedules = Some(schedules);
    }
}

impl NetworkMeasurer for HostNetworkMeasurer {
    fn measure_network(&mut self, arch: &ArchConfig, width: f64) -> Result<NetworkMeasurement> {
        let graph = build_graph(arch, width, &mut RandomWeights::new(self.options.seed))?;
        let model = match &self.schedules {
            Some(s) => HostModel::compile_with(&graph, self.options.seed, s.as_ref())?,
            None => HostModel::compile(&graph, self.options.seed)?,
        };
        let o = &self.options;
        let (t, attempts) = model.time_quietly(o.runs, o.warmup, &self.flush, self.retries)?;
        let blocks = crate::blocks::decompose(arch, width)?;
        let runs = t.wall.count as usize;
        let times = block_times(&blocks, &t.program_runs, runs);
        let mut samples: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
        for (b, ts) in blocks.iter().zip(times) {
            samples.entry(b.key()).or_default().extend(ts);
        }
        let entries = samples.into_iter().map(|(k, v)| (k, Stats::of(&v).entry())).collect();
        // The programs with the block each went to.
        let mut current = 0;
        let programs = match &model.programs {
            serde_json::Value::Array(ps) => serde_json::Value::Array(
                ps.iter()
                    .map(|p| {
                        let name = p["name"].as_str().unwrap_or_default();
                        if let Some(b) = block_of_program(name, &blocks) {
                            current = b;
                        }
                        serde_json::json!({"name": name, "block": blocks[current].key(), "schedule": p["schedule"]})
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        let round = |x: f64| (x * 1e3).round() / 1e3;
        Ok(NetworkMeasurement {
            entries,
            overhead: t.overhead.entry(),
            programs,
            extra: serde_json::json!({
                "wall_median_ms": t.wall.median,
                "kernels_median_ms": t.kernels.median,
                "attempts": attempts,
                "other_load": t.other_load.map(round),
                "compile_s": round(model.compile_seconds),
                "tuned_programs": model.tuned_programs,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_go_to_the_blocks_their_names_name() {
        let arch = ArchConfig::min(160);
        let blocks = crate::blocks::decompose(&arch, 1.2).unwrap();
        let n = blocks.len();
        let at = |name: &str| block_of_program(name, &blocks);
        assert_eq!(at("conv2d_6 first_conv.act"), Some(0));
        assert_eq!(at("conv2d_relu_10 blocks.0.conv.depth_conv.act"), Some(1));
        assert_eq!(at("mul_conv2d_nchwc_add_77 blocks.4.shortcut"), Some(5));
        assert_eq!(at("conv_1 final_expand_layer.act"), Some(n - 4));
        assert_eq!(at("reduce_mean_3 global_avg_pool"), Some(n - 3));
        assert_eq!(at("matmul_7 feature_mix_layer.conv"), Some(n - 2));
        assert_eq!(at("matmul_add_6 classifier.linear"), Some(n - 1));
        assert_eq!(at("from_nchwc_12"), None);
        assert_eq!(at("x blocks.99.conv"), None);
        // Unnamed programs go with the one before; the times add up per run.
        let runs = vec![
            ("a_1 first_conv.act".to_string(), vec![1.0, 2.0]),
            ("b_2".to_string(), vec![0.5, 0.5]),
            ("c_3 blocks.1.conv.inverted_bottleneck.act".to_string(), vec![3.0, 3.0]),
            ("d_4 classifier.linear".to_string(), vec![0.25, 0.75]),
        ];
        let t = block_times(&blocks, &runs, 2);
        assert_eq!(t[0], vec![1.5, 2.5]);
        assert_eq!(t[2], vec![3.0, 3.0]);
        assert_eq!(t[1], vec![0.0, 0.0]);
        assert_eq!(t[n - 1], vec![0.25, 0.75]);
        let total: f64 = t.iter().flatten().sum();
        assert_eq!(total, runs.iter().flat_map(|r| r.1.iter()).sum::<f64>());
    }

    #[test]
    fn stats_match_numpy() {
        let s = Stats::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.count, s.mean, s.median, s.min), (4, 2.5, 2.5, 1.0));
        assert!((s.std - 1.118_033_988_749_895).abs() < 1e-12);
        let s = Stats::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.std), (3.0, (8.0f64 / 3.0).sqrt()));
    }
}

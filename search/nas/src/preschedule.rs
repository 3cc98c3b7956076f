//! Block-based pre-scheduling (PAPER.md, "The method", 2): every distinct block of the space
//! is tuned once, its best schedules kept, and its latency with them measured, so that a
//! network's latency under tuned schedules is the sum over its blocks, as it is for default
//! schedules.
//!
//! The compiler's programs for a block depend on its neighbours: the layout its input comes
//! in, the padding the next layer reads, what the graph optimizer fuses and chooses across
//! the block's boundaries. A block compiled alone reads and writes plain NCHW tensors, and a
//! whole network's programs then find a tuned schedule for only about a fifth of their
//! floating-point operations. So blocks are tuned and measured inside networks: the
//! **covering networks** of the space ([`covering_networks`]), for each resolution one
//! network per kernel size, expand ratio and depth (2 or 4) with every block alike, hold
//! every block of the space in the positions it can take, and their tasks cover 96-100 % of
//! the operations of random networks of the space.
//!
//! 1. **Tasks.** The covering networks are lowered; their tensor programs are the tuner's
//!    tasks, deduplicated by task key (the structural hash of the program and the target): a
//!    block's projection does not depend on its kernel size, a squeeze-excite's 1x1
//!    convolutions not on the resolution, the head on the blocks, and so on. A [`SpacePlan`]
//!    holds the networks, the distinct blocks, the distinct tasks (weight: the programs over
//!    all networks that are the task) and each network's tasks.
//! 2. **Tuning.** All the distinct tasks are tuned in one run of the tuner
//!    ([`tune::tune`]): one records file, so one cost model trained on every measurement of
//!    every task (what it learns on one block's programs ranks the candidates of the
//!    others), and the tuner's task scheduler spends the trials where they gain most. The
//!    budget is `trials_per_task` times the number of tasks (less the trials already
//!    recorded, so a killed run resumes where it stopped), or a time budget.
//! 3. **Measurement.** Every covering network is compiled and timed as whole networks are
//!    (cold caches, one thread), once with the default schedules (`TABLE.default.yaml`) and
//!    once with the best recorded schedule of each of its tasks (`TABLE.yaml`, the tuned
//!    table); each program's time goes to the block its source node belongs to
//!    ([`crate::measure::block_times`]), and a block's entry pools its time in every
//!    covering network and position it takes; a resolution's run overhead pools the networks'
//!    too. The side file `TABLE.yaml.schedules.jsonl` keeps each network's entries and its
//!    programs' schedules, and the table is computed from it in a fixed order, so that
//!    however the networks were measured (resumed, sharded) the same measurements give the
//!    same table.
//!
//! **Shards.** A build splits into `N` shards in two phases, each a job array on a cluster
//! scheduler (one element per node or device): first the tune shards each tune a
//! deterministic share of the distinct tasks ([`SpacePlan::task_shard`]), then the measure
//! shards each measure a share of the covering networks ([`SpacePlan::network_shard`]) with
//! every tune shard's records, and [`merge_outputs`] joins the shards' side files, records
//! and reports into what an unsharded build writes. Each task is tuned once and each network
//! measured once, as unsharded; shards lose only the sharing of the cost model between tasks
//! of different shards.
//!
//! The work is behind [`Backend`] (tune tasks, measure networks with default or recorded
//! schedules), so the orchestration (deduplication, budgets, sharding, merging) is tested
//! with a deterministic fake, fast and exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use llvm_backend::Target;
use serde::{Deserialize, Serialize};
use tune::{RecordFile, Task};

use crate::blocks::{decompose, Block};
use crate::build::{build_graph, RandomWeights};
use crate::error::{NasError, Result};
use crate::lut::{overhead_key, write_atomic, LatencyEntry, LatencyTable};
use crate::lut_build::{load_schedules, schedules_path, BuildProgress, BuildReport};
use crate::measure::{HostNetworkMeasurer, NetworkMeasurement, NetworkMeasurer};
use crate::space::{ArchConfig, DEPTHS, EXPANDS, KERNELS, NUM_CLASSES};

/// One shard of `count`: `index` is 0-based (Slurm's `SLURM_ARRAY_TASK_ID` with
/// `--array=0-(N-1)`, Kubernetes' `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(s: &str) -> std::result::Result<Shard, String> {
        let bad = |why: &str| format!("--shard {s:?}: {why} (expected I/N with 0 <= I < N, e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index = i.trim().parse::<usize>().map_err(|_| bad("I is not a number"))?;
        let count = n.trim().parse::<usize>().map_err(|_| bad("N is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("out of range"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The covering networks of the space at `resolutions`: for each resolution, kernel size,
/// expand ratio and depth 2 or 4, the network with every block alike. Depth 2 puts each
/// stage's second block before the next stage, depth 4 puts it between blocks of its own
/// stage; together they hold every block of the space.
pub fn covering_networks(resolutions: &[u32]) -> Vec<ArchConfig> {
    let mut out = Vec::new();
    for &r in resolutions {
        for &k in &KERNELS {
            for &e in &EXPANDS {
                for d in [DEPTHS[0], DEPTHS[DEPTHS.len() - 1]] {
                    let mut a = ArchConfig::min(r);
                    a.ks.fill(k);
                    a.e.fill(e);
                    a.d.fill(d);
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The covering networks of (part of) the space, their distinct blocks and tasks.
#[derive(Debug, Clone)]
pub struct SpacePlan {
    pub width: f64,
    pub networks: Vec<ArchConfig>,
    /// The distinct blocks of the networks, in key order.
    pub blocks: Vec<Block>,
    /// Distinct tasks, in the order first met; `weight` is the number of the networks'
    /// programs that are this task.
    pub tasks: Vec<Task>,
    /// For each network, the indices in `tasks` of its tasks.
    pub network_tasks: Vec<Vec<usize>>,
}

/// The tasks of a network of the space on `target`, graph optimizations on (as networks are
/// compiled).
pub fn tasks_of_network(arch: &ArchConfig, width: f64, target: &Target) -> Result<Vec<Task>> {
    let graph = build_graph(arch, width, &mut RandomWeights::new(0))?;
    tune::extract_tasks(&graph, target, true).map_err(|e| NasError::Build(format!("tasks of {}: {e}", arch.to_compact())))
}

impl SpacePlan {
    /// The plan of the covering networks at `resolutions` on `target`; `on_network(done,
    /// total)` reports progress (each network is built and lowered).
    pub fn extract(width: f64, resolutions: &[u32], target: &Target, on_network: &mut dyn FnMut(usize, usize)) -> Result<SpacePlan> {
        let networks = covering_networks(resolutions);
        SpacePlan::extract_with(width, &networks, &mut |a| tasks_of_network(a, width, target), on_network)
    }

    /// [`extract`](Self::extract) of `networks`, with the tasks of a network from `tasks_of`.
    pub fn extract_with(
        width: f64,
        networks: &[ArchConfig],
        tasks_of: &mut dyn FnMut(&ArchConfig) -> Result<Vec<Task>>,
        on_network: &mut dyn FnMut(usize, usize),
    ) -> Result<SpacePlan> {
        let mut blocks: BTreeMap<String, Block> = BTreeMap::new();
        let mut plan = SpacePlan { width, networks: networks.to_vec(), blocks: Vec::new(), tasks: Vec::new(), network_tasks: Vec::new() };
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, a) in networks.iter().enumerate() {
            on_network(i, networks.len());
            for b in decompose(a, width)? {
                blocks.insert(b.key(), b);
            }
            let mut mine = Vec::new();
            for t in tasks_of(a)? {
                let j = match index.get(&t.key) {
                    Some(&j) => {
                        plan.tasks[j].weight += t.weight;
                        j
                    }
                    None => {
                        index.insert(t.key.clone(), plan.tasks.len());
                        plan.tasks.push(t);
                        plan.tasks.len() - 1
                    }
                };
                if !mine.contains(&j) {
                    mine.push(j);
                }
            }
            plan.network_tasks.push(mine);
        }
        on_network(networks.len(), networks.len());
        plan.blocks = blocks.into_values().collect();
        Ok(plan)
    }

    /// Tensor programs over all networks.
    pub fn programs(&self) -> usize {
        self.tasks.iter().map(|t| t.weight).sum()
    }

    /// Distinct blocks, distinct tasks and programs of the networks at resolution `r`.
    pub fn count_of(&self, r: u32) -> Result<(usize, usize, usize)> {
        let mut blocks = BTreeSet::new();
        let mut tasks = BTreeSet::new();
        let mut programs = 0;
        for (a, ts) in self.networks.iter().zip(&self.network_tasks) {
            if a.r == r {
                blocks.extend(decompose(a, self.width)?.iter().map(Block::key));
                tasks.extend(ts.iter().copied());
            }
        }
        // Programs: each task's programs in these networks (a network's task list is
        // distinct, so count the network's programs from the tasks' weights per network).
        for (a, ts) in self.networks.iter().zip(&self.network_tasks) {
            if a.r == r {
                programs += ts.len();
            }
        }
        Ok((blocks.len(), tasks.len(), programs))
    }

    /// Indices of the tasks shard `shard` tunes: the tasks sorted by their work (weight x
    /// floating-point operations, largest first; key on a tie) and dealt round-robin, so
    /// every shard gets as many tasks (give or take one), large and small alike.
    pub fn task_shard(&self, shard: Shard) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        let work = |t: &Task| t.flops.saturating_mul(t.weight as u64);
        order.sort_by(|&a, &b| work(&self.tasks[b]).cmp(&work(&self.tasks[a])).then(self.tasks[a].key.cmp(&self.tasks[b].key)));
        let mut mine: Vec<usize> = order.into_iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, t)| t).collect();
        mine.sort_unstable();
        mine
    }

    /// Indices of the networks shard `shard` measures: sorted by their multiply-accumulates
    /// (largest first; compact form on a tie) and dealt round-robin.
    pub fn network_shard(&self, shard: Shard) -> Vec<usize> {
        let macs = |a: &ArchConfig| decompose(a, self.width).map(|bs| bs.iter().map(Block::macs).sum::<u64>()).unwrap_or(0);
        let mut order: Vec<(u64, String, usize)> = self.networks.iter().enumerate().map(|(i, a)| (macs(a), a.to_compact(), i)).collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut mine: Vec<usize> =
            order.into_iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, n)| n.2).collect();
        mine.sort_unstable();
        mine
    }
}

/// The files of a pre-scheduled table `TABLE.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// The tuned table (OFA's YAML), its side file `TABLE.yaml.schedules.jsonl`.
    pub table: PathBuf,
    /// The default-schedule table, `TABLE.default.yaml` (and its side file).
    pub default_table: PathBuf,
    /// The tuning records, `TABLE.records.jsonl` unless given.
    pub records: PathBuf,
    /// What pre-scheduling did and cost, `TABLE.preschedule.json`.
    pub report: PathBuf,
}

/// `dir/stem.yaml` -> `dir/stem{suffix}`; a name without `.yaml`/`.yml` gets the suffix
/// appended.
fn companion(table: &Path, suffix: &str) -> PathBuf {
    let name = table.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")).unwrap_or(&name);
    table.with_file_name(format!("{stem}{suffix}"))
}

impl Outputs {
    pub fn for_table(table: &Path, records: Option<&Path>) -> Outputs {
        Outputs {
            table: table.to_path_buf(),
            default_table: default_table_path(table),
            records: records.map(Path::to_path_buf).unwrap_or_else(|| companion(table, ".records.jsonl")),
            report: companion(table, ".preschedule.json"),
        }
    }
}

/// The default-schedule companion of a tuned table: `TABLE.default.yaml`.
pub fn default_table_path(table: &Path) -> PathBuf {
    companion(table, ".default.yaml")
}

/// The records companion of a tuned table: `TABLE.records.jsonl`.
pub fn records_path(table: &Path) -> PathBuf {
    companion(table, ".records.jsonl")
}

/// The report companion of a tuned table: `TABLE.preschedule.json`.
pub fn report_path(table: &Path) -> PathBuf {
    companion(table, ".preschedule.json")
}

/// What tuning did.
#[derive(Debug, Clone, Default)]
pub struct TuneSummary {
    pub trials: usize,
    pub failures: usize,
    /// Sums over tasks of weight x latency (seconds), default and best, when every task has one.
    pub default_total_s: Option<f64>,
    pub best_total_s: Option<f64>,
}

/// The work of pre-scheduling: the host's tuner and measurer, or a fake in tests.
pub trait Backend {
    /// Tunes `tasks` together (one cost model), appending every measurement to `records`:
    /// at most `trials` new measurements, and no longer than `time_budget`.
    fn tune(&mut self, tasks: &[Task], records: &mut RecordFile, trials: usize, time_budget: Option<Duration>) -> Result<TuneSummary>;
    /// Measures networks with the default schedules.
    fn default_measurer(&mut self) -> &mut dyn NetworkMeasurer;
    /// Measures networks with the best schedule `records` holds for each of their tasks.
    fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn NetworkMeasurer>;
}

/// The host: the tuner's isolated local measurer ([`tune::LocalMeasurer`], candidates run in
/// worker processes), and [`HostNetworkMeasurer`] for networks.
pub struct HostBackend {
    pub target: Target,
    /// The worker command (`chanasc tune-worker`).
    pub worker: Vec<String>,
    /// Time limit of one candidate's run.
    pub timeout: Duration,
    pub seed: u64,
    pub batch: usize,
    pub epsilon: f64,
    pub progress: Box<dyn tune::progress::Progress>,
    pub default: HostNetworkMeasurer,
    pub tuned: HostNetworkMeasurer,
}

impl Backend for HostBackend {
    fn tune(&mut self, tasks: &[Task], records: &mut RecordFile, trials: usize, time_budget: Option<Duration>) -> Result<TuneSummary> {
        let mut m = tune::LocalMeasurer::new(self.target.clone(), self.worker.clone()).map_err(NasError::Measure)?;
        m.timeout = self.timeout;
        let mut opts = tune::TuneOptions::new(trials, self.target.vector_width());
        opts.time_budget = time_budget;
        opts.seed = self.seed;
        opts.batch = self.batch;
        opts.epsilon = self.epsilon;
        let r = tune::tune(tasks, records, &mut m, &opts, self.progress.as_mut()).map_err(|e| NasError::Measure(format!("tuning: {e}")))?;
        Ok(TuneSummary { trials: r.trials, failures: r.failures, default_total_s: r.default_total_s, best_total_s: r.best_total_s })
    }

    fn default_measurer(&mut self) -> &mut dyn NetworkMeasurer {
        &mut self.default
    }

    fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn NetworkMeasurer> {
        self.tuned.set_schedules(Box::new(tune::RecordSchedules::new(records)));
        Ok(&mut self.tuned)
    }
}

/// How to pre-schedule.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Trials per distinct task, on average (the tuner spreads `trials_per_task x tasks`).
    pub trials_per_task: usize,
    /// Stop tuning after this long (this run).
    pub time_budget: Option<Duration>,
    /// Save the tables after this many newly measured networks.
    pub save_every: usize,
    /// Measure at most this many networks into each table in this run.
    pub max_networks: Option<usize>,
    /// The target's vector width (for the sum of the tasks' default-schedule latencies).
    pub vector_width: usize,
}

/// What happens, for a progress display.
pub enum Event<'a> {
    /// A phase starts, or a warning (one line).
    Phase(String),
    /// Building `table` (`"default"` or `"tuned"`).
    Build(&'static str, BuildProgress<'a>),
}

/// What a run does: both phases (an unsharded build), or one phase of a sharded build
/// (shards tune first, then, with every tune shard's records, measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    All,
    Tune,
    Measure,
}

impl Phase {
    pub fn parse(s: &str) -> std::result::Result<Phase, String> {
        match s {
            "all" => Ok(Phase::All),
            "tune" => Ok(Phase::Tune),
            "measure" => Ok(Phase::Measure),
            other => Err(format!("--phase {other:?}: expected all, tune or measure")),
        }
    }

    fn tunes(self) -> bool {
        self != Phase::Measure
    }

    fn measures(self) -> bool {
        self != Phase::Tune
    }
}

/// One run of [`preschedule`], as the report keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub date: String,
    pub phase: Phase,
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Tasks tuned and networks measured (this run's share of the space).
    pub tasks: usize,
    pub networks: usize,
    pub trials: usize,
    pub failures: usize,
    pub tuning_s: f64,
    pub default_measure_s: f64,
    pub tuned_measure_s: f64,
    /// Networks measured in this run (default, tuned).
    pub default_measured: usize,
    pub tuned_measured: usize,
    /// Tasks of the measured networks without any record (their programs kept the default
    /// schedule): tuning stopped before them, or a tune shard's records were not given.
    pub tasks_without_record: usize,
    /// Records read for the tuned table (every records file given): a later run that reads
    /// a different number (more tuning since) measures the tuned table anew.
    #[serde(default)]
    pub records_read: usize,
    pub wall_s: f64,
}

/// `TABLE.preschedule.json`: the space, what the build holds and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub space: String,
    pub width: f64,
    pub resolutions: Vec<u32>,
    pub target: String,
    /// Of the whole space (all shards): covering networks, distinct blocks, distinct tasks,
    /// programs.
    pub space_networks: usize,
    pub space_blocks: usize,
    pub space_tasks: usize,
    pub space_programs: usize,
    /// Per resolution: `[r, blocks, tasks, programs]` of its covering networks (blocks and
    /// tasks shared between resolutions count in each).
    pub per_resolution: Vec<[usize; 4]>,
    pub trials_per_task: usize,
    /// This build's records file (written by its tuning), for `lut merge`.
    pub records: String,
    /// Trials in `records` for the tasks this build tuned, and the sums over those tasks of
    /// weight x latency (ms) of the default schedule and of the best recorded one.
    pub trials_recorded: usize,
    pub tasks_default_ms: Option<f64>,
    pub tasks_best_ms: Option<f64>,
    /// Shards merged into this report (empty for a single build).
    #[serde(default)]
    pub shards: Vec<Shard>,
    pub runs: Vec<RunReport>,
}

impl Report {
    pub fn load(path: &Path) -> Result<Option<Report>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(|e| NasError::io(path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| NasError::parse(&path.display().to_string(), 0, format!("not a pre-scheduling report: {e}")))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a report serializes") + "\n";
        write_atomic(path, text.as_bytes())
    }

    /// Totals over the runs: trials, tuning seconds, measuring seconds, wall seconds.
    pub fn totals(&self) -> (usize, f64, f64, f64) {
        self.runs.iter().fold((0, 0.0, 0.0, 0.0), |t, r| {
            (t.0 + r.trials, t.1 + r.tuning_s, t.2 + r.default_measure_s + r.tuned_measure_s, t.3 + r.wall_s)
        })
    }
}

/// What [`preschedule`] did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub tune: TuneSummary,
    /// Trials already recorded for the tasks before this run.
    pub recorded_before: usize,
    pub default_build: Option<BuildReport>,
    pub tuned_build: Option<BuildReport>,
    pub run: RunReport,
    pub report: Report,
}

/// Sums over `tasks` of weight x latency in `records`, in ms: of each task's default schedule
/// (for vector width `vector_width`) and of its best usable record; None where a task lacks one.
pub fn task_totals(tasks: &[&Task], records: &RecordFile, vector_width: usize) -> (Option<f64>, Option<f64>) {
    let (mut default_total, mut best_total) = (Some(0.0), Some(0.0));
    for t in tasks {
        let default_json = passes::schedule::default_schedule(&t.func, vector_width).to_json();
        let default =
            records.of_task(&t.key, &t.target).find(|r| r.error.is_none() && r.trace.to_json() == default_json).and_then(|r| r.median_s);
        let best = records.best(&t.key, &t.target).and_then(|r| r.median_s);
        default_total = default_total.zip(default).map(|(s, d)| s + d * t.weight as f64);
        best_total = best_total.zip(best).map(|(s, b)| s + b * t.weight as f64);
    }
    (default_total.map(|s| s * 1e3), best_total.map(|s| s * 1e3))
}

/// Reads several records files as one (the first is `RecordFile`'s own path); corrupt lines
/// are in its warnings.
pub fn open_records(paths: &[PathBuf]) -> Result<RecordFile> {
    let first = paths.first().ok_or_else(|| NasError::Measure("no records file".into()))?;
    let mut all = RecordFile::open(first).map_err(|e| NasError::Measure(e.to_string()))?;
    for p in &paths[1..] {
        let f = RecordFile::open(p).map_err(|e| NasError::Measure(e.to_string()))?;
        all.records.extend(f.records);
        all.warnings.extend(f.warnings);
    }
    Ok(all)
}

/// One network's line in a table's side file.
fn network_line(arch: &ArchConfig, m: &NetworkMeasurement) -> String {
    let entry = |e: &LatencyEntry| serde_json::json!({"count": e.count, "mean": e.mean, "std": e.std});
    let entries: serde_json::Map<String, serde_json::Value> = m.entries.iter().map(|(k, e)| (k.clone(), entry(e))).collect();
    let mut line = serde_json::json!({
        "key": arch.to_compact(),
        "r": arch.r,
        "entries": entries,
        "overhead": entry(&m.overhead),
        "programs": m.programs,
    });
    if let Some(extra) = m.extra.as_object() {
        for (k, v) in extra {
            line[k] = v.clone();
        }
    }
    line.to_string()
}

/// The table of a side file's networks: each block's entries pooled over the networks (in
/// the side file's key order, so that the same lines always give the same table), and each
/// resolution's run overhead pooled likewise.
pub fn table_from_networks(lines: &BTreeMap<String, String>, header: &[String]) -> Result<LatencyTable> {
    let mut table = LatencyTable { entries: BTreeMap::new(), header: header.to_vec() };
    let entry = |v: &serde_json::Value| -> Option<LatencyEntry> {
        Some(LatencyEntry { count: v["count"].as_u64()?, mean: v["mean"].as_f64()?, std: v["std"].as_f64()? })
    };
    for (key, line) in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| NasError::Measure(format!("side file line of {key}: not JSON: {e}")))?;
        let bad = || NasError::Measure(format!("side file line of {key}: not a network's measurement"));
        let mut part = LatencyTable::default();
        for (k, e) in v["entries"].as_object().ok_or_else(bad)? {
            part.entries.insert(k.clone(), entry(e).ok_or_else(bad)?);
        }
        let r = v["r"].as_u64().ok_or_else(bad)? as u32;
        part.entries.insert(overhead_key(r, NUM_CLASSES), entry(&v["overhead"]).ok_or_else(bad)?);
        table.merge(&part);
    }
    Ok(table)
}

/// Measures every network of `networks` that the side file of the table at `path` lacks
/// (at most `max_new`), saving the side file and the table recomputed from it
/// ([`table_from_networks`]) every `save_every` networks and at the end. Progress is in
/// networks.
#[allow(clippy::too_many_arguments)]
pub fn build_network_table(
    path: &Path,
    networks: &[ArchConfig],
    width: f64,
    measurer: &mut dyn NetworkMeasurer,
    save_every: usize,
    max_new: Option<usize>,
    header: &[String],
    on_progress: &mut dyn FnMut(BuildProgress),
) -> Result<BuildReport> {
    let side = schedules_path(path);
    let mut lines = load_schedules(&side)
        .map_err(|e| NasError::Measure(format!("cannot resume from the existing side file: {e} (remove it or choose another output)")))?;
    // A table without its side file (or another kind of table) is not resumed.
    if path.exists() && lines.is_empty() && !LatencyTable::load(path)?.entries.is_empty() {
        return Err(NasError::Measure(format!(
            "{} exists without the side file {} of a pre-scheduled table: remove it or choose another output",
            path.display(),
            side.display()
        )));
    }
    let mut todo: Vec<&ArchConfig> = networks.iter().filter(|a| !lines.contains_key(&a.to_compact())).collect();
    let total = networks.len();
    let reused = total - todo.len();
    if let Some(m) = max_new {
        todo.truncate(m);
    }
    let save = |lines: &BTreeMap<String, String>| -> Result<usize> {
        let text: String = lines.values().map(|l| format!("{l}\n")).collect();
        write_atomic(&side, text.as_bytes())?;
        let table = table_from_networks(lines, header)?;
        table.save(path)?;
        Ok(table.entries.len())
    };
    let mut unsaved = 0;
    let mut entries = 0;
    for (i, a) in todo.iter().enumerate() {
        let key = a.to_compact();
        on_progress(BuildProgress { done: reused + i, total, measured: i, remaining: todo.len() - i, current: Some(&key) });
        let m = measurer.measure_network(a, width).map_err(|e| NasError::Measure(format!("{key}: {e}")))?;
        lines.insert(key, network_line(a, &m));
        unsaved += 1;
        if unsaved >= save_every.max(1) {
            entries = save(&lines)?;
            unsaved = 0;
        }
    }
    if unsaved > 0 || !path.exists() {
        entries = save(&lines)?;
    } else if entries == 0 {
        entries = LatencyTable::load(path)?.entries.len();
    }
    on_progress(BuildProgress {
        done: reused + todo.len(),
        total,
        measured: todo.len(),
        remaining: total - reused - todo.len(),
        current: None,
    });
    Ok(BuildReport { reused, measured: todo.len(), replaced: 0, missing: total - reused - todo.len(), entries })
}

/// Pre-schedules the space of `plan`, or shard `shard` of it, as `phase` says:
///
/// - tune (phases all and tune): the tasks (all, or [`SpacePlan::task_shard`]) are tuned
///   into `outputs.records` until it holds `trials_per_task` trials per task;
/// - measure (phases all and measure): the covering networks (all, or
///   [`SpacePlan::network_shard`]) are measured into the default-schedule table and, with the
///   best schedule of each task in `outputs.records` and `more_records` (a sharded build
///   gives every tune shard's file), into the tuned table, a few networks into one table,
///   then a few into the other. Both tables are resumable (networks already in them are
///   kept); the tuned table is measured anew when records were added since it was measured.
///
/// `report` describes the space (filled by the caller); this run is appended to the report
/// file's runs and the report saved.
#[allow(clippy::too_many_arguments)]
pub fn preschedule(
    plan: &SpacePlan,
    shard: Option<Shard>,
    phase: Phase,
    backend: &mut dyn Backend,
    options: &Options,
    outputs: &Outputs,
    more_records: &[PathBuf],
    header: &[String],
    mut report: Report,
    on_event: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let start = Instant::now();
    let task_ids: Vec<usize> = shard.map_or_else(|| (0..plan.tasks.len()).collect(), |s| plan.task_shard(s));
    let network_ids: Vec<usize> = shard.map_or_else(|| (0..plan.networks.len()).collect(), |s| plan.network_shard(s));
    let tasks: Vec<Task> = task_ids.iter().map(|&t| plan.tasks[t].clone()).collect();
    let networks: Vec<ArchConfig> = network_ids.iter().map(|&n| plan.networks[n].clone()).collect();
    if let Some(old) = Report::load(&outputs.report)? {
        report.runs = old.runs;
        if !phase.tunes() {
            // The tune phase's figures stay.
            report.records = old.records;
            report.trials_recorded = old.trials_recorded;
            report.tasks_default_ms = old.tasks_default_ms;
            report.tasks_best_ms = old.tasks_best_ms;
        }
    }
    report.trials_per_task = options.trials_per_task;
    let mut run = RunReport {
        date: tune::records::now_rfc3339(),
        phase,
        shard,
        tasks: if phase.tunes() { tasks.len() } else { 0 },
        networks: if phase.measures() { networks.len() } else { 0 },
        trials: 0,
        failures: 0,
        tuning_s: 0.0,
        default_measure_s: 0.0,
        tuned_measure_s: 0.0,
        default_measured: 0,
        tuned_measured: 0,
        tasks_without_record: 0,
        records_read: 0,
        wall_s: 0.0,
    };

    let mut tune = TuneSummary::default();
    let mut recorded_before = 0;
    if phase.tunes() {
        let mut records = RecordFile::open(&outputs.records).map_err(|e| NasError::Measure(e.to_string()))?;
        for w in &records.warnings {
            on_event(Event::Phase(format!("warning: {w}")));
        }
        recorded_before = tasks.iter().map(|t| records.of_task(&t.key, &t.target).count()).sum();
        let trials = (options.trials_per_task * tasks.len()).saturating_sub(recorded_before);
        let tune_start = Instant::now();
        if trials > 0 && !tasks.is_empty() {
            on_event(Event::Phase(format!(
                "tuning {} tasks: {trials} trials ({} per task{}{})",
                tasks.len(),
                options.trials_per_task,
                if recorded_before > 0 { format!(", {recorded_before} already recorded") } else { String::new() },
                options.time_budget.map_or(String::new(), |t| format!(", at most {:.0} s", t.as_secs_f64()))
            )));
            tune = backend.tune(&tasks, &mut records, trials, options.time_budget)?;
        }
        run.tuning_s = tune_start.elapsed().as_secs_f64();
        (run.trials, run.failures) = (tune.trials, tune.failures);
        let refs: Vec<&Task> = tasks.iter().collect();
        report.records = outputs.records.display().to_string();
        report.trials_recorded = tasks.iter().map(|t| records.of_task(&t.key, &t.target).count()).sum();
        (report.tasks_default_ms, report.tasks_best_ms) = task_totals(&refs, &records, options.vector_width);
    }

    let (mut default_build, mut tuned_build) = (None, None);
    if phase.measures() {
        let mut paths = vec![outputs.records.clone()];
        paths.extend(more_records.iter().filter(|p| **p != outputs.records).cloned());
        let records = open_records(&paths)?;
        // The tasks of these networks that no records file holds.
        let net_tasks: BTreeSet<usize> = network_ids.iter().flat_map(|&n| plan.network_tasks[n].iter().copied()).collect();
        let recorded: HashSet<(&str, &str)> = records.records.iter().map(|r| (r.key.as_str(), r.target.as_str())).collect();
        run.tasks_without_record =
            net_tasks.iter().filter(|&&t| !recorded.contains(&(plan.tasks[t].key.as_str(), plan.tasks[t].target.as_str()))).count();
        if run.tasks_without_record > 0 {
            on_event(Event::Phase(format!(
                "warning: {} of the {} tasks of these networks have no record in {}: their programs keep the default schedule (tuning stopped before them, or a tune shard's records file is missing)",
                run.tasks_without_record,
                net_tasks.len(),
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",")
            )));
        }
        // New trials (in this run, or since the tuned table was measured) may have found
        // better schedules: the tuned table is then measured anew.
        run.records_read = records.records.len();
        let measured_with = report.runs.iter().rev().find(|r| r.tuned_measured > 0).map(|r| r.records_read);
        if tune.trials > 0 || measured_with.is_some_and(|n| n != run.records_read) {
            for p in [outputs.table.clone(), schedules_path(&outputs.table)] {
                if p.exists() {
                    std::fs::remove_file(&p).map_err(|e| NasError::io(&p, e))?;
                }
            }
        }
        let mut tuned_header = header.to_vec();
        tuned_header.push(format!(
            "tuned: each program with the best schedule recorded for its task (pre-scheduling, {} trials per task)",
            options.trials_per_task
        ));
        on_event(Event::Phase(format!(
            "measuring {} covering networks with the default schedules into {} and with their tuned schedules into {}, {MEASURE_CHUNK} at a time",
            networks.len(),
            outputs.default_table.display(),
            outputs.table.display()
        )));
        // The two tables in turns of a few networks, so that a slow spell of the machine
        // falls on both alike.
        let mut totals: [Option<BuildReport>; 2] = [None, None];
        loop {
            let mut progressed = false;
            let mut done = true;
            for (i, which) in ["default", "tuned"].into_iter().enumerate() {
                let so_far = totals[i].as_ref().map_or(0, |t| t.measured);
                if totals[i].as_ref().is_some_and(|t| t.missing == 0) || options.max_networks.is_some_and(|m| so_far >= m) {
                    continue;
                }
                let chunk = options.max_networks.map_or(MEASURE_CHUNK, |m| MEASURE_CHUNK.min(m - so_far));
                let t0 = Instant::now();
                let (table, measurer, head): (&Path, &mut dyn NetworkMeasurer, &[String]) = if i == 0 {
                    (&outputs.default_table, backend.default_measurer(), header)
                } else {
                    (&outputs.table, backend.tuned_measurer(&records)?, &tuned_header)
                };
                let built = build_network_table(table, &networks, plan.width, measurer, options.save_every, Some(chunk), head, &mut |p| {
                    on_event(Event::Build(which, p))
                })?;
                let secs = t0.elapsed().as_secs_f64();
                if i == 0 {
                    run.default_measure_s += secs;
                } else {
                    run.tuned_measure_s += secs;
                }
                progressed |= built.measured > 0;
                let total = totals[i].get_or_insert_with(|| BuildReport { reused: built.reused, ..Default::default() });
                total.measured += built.measured;
                total.missing = built.missing;
                total.entries = built.entries;
                let capped = options.max_networks.is_some_and(|m| total.measured >= m);
                done &= total.missing == 0 || capped;
            }
            if done || !progressed {
                break;
            }
        }
        let [d, t] = totals;
        run.default_measured = d.as_ref().map_or(0, |d| d.measured);
        run.tuned_measured = t.as_ref().map_or(0, |t| t.measured);
        default_build = d;
        tuned_build = t;
    }
    run.wall_s = start.elapsed().as_secs_f64();
    report.runs.push(run.clone());
    report.save(&outputs.report)?;
    Ok(Summary { tune, recorded_before, default_build, tuned_build, run, report })
}

/// Networks measured into one table before the other table's turn.
const MEASURE_CHUNK: usize = 3;

/// What [`merge_outputs`] did.
#[derive(Debug, Clone, Default)]
pub struct MergeSummary {
    pub entries: usize,
    /// Networks (or, for plain tables, keys) found in more than one input.
    pub repeated: Vec<String>,
    pub default_entries: Option<usize>,
    pub records: usize,
    /// Shards merged, and the phases of shards of `N` that no input ran (`"measure 2/4"`).
    pub shards: Vec<Shard>,
    pub missing_shards: Vec<String>,
    pub outputs: Option<Outputs>,
}

/// Merges tables into `output`: pre-scheduled tables (side files of networks) by the union
/// of their networks, the table recomputed from it ([`table_from_networks`]); other tables
/// by pooling their entries ([`LatencyTable::merge`]), their side files' lines by key.
/// Returns the table and the networks or keys found in more than one input.
fn merge_tables(inputs: &[PathBuf], output: &Path) -> Result<(LatencyTable, Vec<String>)> {
    let sides: Vec<BTreeMap<String, String>> = inputs.iter().map(|p| load_schedules(&schedules_path(p))).collect::<Result<_>>()?;
    let tables: Vec<LatencyTable> = inputs.iter().map(|p| LatencyTable::load(p)).collect::<Result<_>>()?;
    let of_networks = |side: &BTreeMap<String, String>| side.values().next().is_some_and(|l| l.contains("\"entries\""));
    let mut repeated = BTreeSet::new();
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    if sides.iter().all(of_networks) {
        for side in &sides {
            for (k, v) in side {
                if lines.insert(k.clone(), v.clone()).is_some() {
                    repeated.insert(k.clone());
                }
            }
        }
        let header = tables.first().map(|t| t.header.clone()).unwrap_or_default();
        let table = table_from_networks(&lines, &header)?;
        write_atomic(&schedules_path(output), lines.values().map(|l| format!("{l}\n")).collect::<String>().as_bytes())?;
        table.save(output)?;
        return Ok((table, repeated.into_iter().collect()));
    }
    let mut table = LatencyTable::default();
    let mut seen: HashSet<String> = HashSet::new();
    for t in &tables {
        for k in t.entries.keys() {
            if !seen.insert(k.clone()) {
                repeated.insert(k.clone());
            }
        }
        table.merge(t);
    }
    for side in &sides {
        for (k, v) in side {
            lines.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    table.save(output)?;
    if !lines.is_empty() {
        write_atomic(&schedules_path(output), lines.values().map(|l| format!("{l}\n")).collect::<String>().as_bytes())?;
    }
    Ok((table, repeated.into_iter().collect()))
}

/// Merges records files into `output`: every record once (a record repeated verbatim, as
/// when a shard's file was copied, is kept once), in input order; corrupt lines are
/// reported in the returned warnings and skipped.
pub fn merge_records(inputs: &[PathBuf], output: &Path) -> Result<(usize, Vec<String>)> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut text = String::new();
    let mut warnings = Vec::new();
    for p in inputs {
        let f = RecordFile::open(p).map_err(|e| NasError::Measure(e.to_string()))?;
        warnings.extend(f.warnings.iter().cloned());
        for r in &f.records {
            let line = serde_json::to_string(r).expect("a record serializes");
            if seen.insert(line.clone()) {
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
    write_atomic(output, text.as_bytes())?;
    Ok((seen.len(), warnings))
}

/// Merges the outputs of several builds (the shards of one space, typically) into `output`:
/// the tuned tables (a key in several is pooled, see [`LatencyTable::merge`]) and their side
/// files; the default-schedule companions `X.default.yaml` where the inputs have them; the
/// records files (each input's report names its records file, else `X.records.jsonl`;
/// `records_out` or `OUT.records.jsonl`); and the reports (runs of every shard, shards
/// present and missing). Inputs that are plain tables (no companions) merge as tables.
pub fn merge_outputs(inputs: &[PathBuf], output: &Path, records_out: Option<&Path>) -> Result<(MergeSummary, Vec<String>)> {
    if inputs.is_empty() {
        return Err(NasError::Measure("lut merge: nothing to merge".into()));
    }
    let mut warnings = Vec::new();
    let (table, repeated) = merge_tables(inputs, output)?;
    let mut summary = MergeSummary { entries: table.entries.len(), repeated, ..Default::default() };
    let defaults: Vec<PathBuf> = inputs.iter().map(|p| default_table_path(p)).filter(|p| p.exists()).collect();
    let reports: Vec<(PathBuf, Report)> = inputs
        .iter()
        .filter_map(|p| Report::load(&report_path(p)).transpose().map(|r| r.map(|r| (p.clone(), r))))
        .collect::<Result<_>>()?;
    if defaults.is_empty() && reports.is_empty() {
        return Ok((summary, warnings));
    }
    let outputs = Outputs::for_table(output, records_out);
    if !defaults.is_empty() {
        if defaults.len() < inputs.len() {
            warnings.push(format!("only {} of the {} inputs have a default-schedule table beside them", defaults.len(), inputs.len()));
        }
        let (t, _) = merge_tables(&defaults, &outputs.default_table)?;
        summary.default_entries = Some(t.entries.len());
    }
    // Records: the file each input's report names (where it exists), else its companion.
    let mut record_files = Vec::new();
    for p in inputs {
        let named = reports.iter().find(|(q, _)| q == p).map(|(_, r)| PathBuf::from(&r.records)).filter(|r| r.exists());
        let candidate = named.unwrap_or_else(|| records_path(p));
        if candidate.exists() && !record_files.contains(&candidate) {
            record_files.push(candidate);
        }
    }
    if !record_files.is_empty() {
        let (n, w) = merge_records(&record_files, &outputs.records)?;
        summary.records = n;
        warnings.extend(w);
    }
    if let Some((_, first)) = reports.first() {
        let mut merged = first.clone();
        merged.runs = reports.iter().flat_map(|(_, r)| r.runs.iter().cloned()).collect();
        merged.shards =
            reports.iter().flat_map(|(_, r)| r.runs.iter().filter_map(|run| run.shard)).collect::<BTreeSet<_>>().into_iter().collect();
        merged.trials_recorded = reports.iter().map(|(_, r)| r.trials_recorded).sum();
        merged.tasks_best_ms = reports.iter().map(|(_, r)| r.tasks_best_ms).sum();
        merged.tasks_default_ms = reports.iter().map(|(_, r)| r.tasks_default_ms).sum();
        merged.records = outputs.records.display().to_string();
        if let Some(n) = merged.shards.first().map(|s| s.count) {
            if merged.shards.iter().any(|s| s.count != n) {
                warnings.push("the inputs are shards of different counts".into());
            }
            for (name, wanted) in [("tune", Phase::Tune), ("measure", Phase::Measure)] {
                let done: BTreeSet<usize> = merged
                    .runs
                    .iter()
                    .filter(|r| r.phase == wanted || r.phase == Phase::All)
                    .filter_map(|r| r.shard.filter(|s| s.count == n).map(|s| s.index))
                    .collect();
                summary.missing_shards.extend((0..n).filter(|i| !done.contains(i)).map(|i| format!("{name} {i}/{n}")));
            }
        }
        for (p, r) in &reports {
            if (r.width, &r.resolutions, &r.space) != (first.width, &first.resolutions, &first.space) {
                warnings.push(format!("{} is of another space ({} w{} {:?})", p.display(), r.space, r.width, r.resolutions));
            }
        }
        summary.shards = merged.shards.clone();
        merged.save(&outputs.report)?;
    }
    summary.outputs = Some(outputs);
    Ok((summary, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::space_blocks;
    use tune::records::Record;

    /// A deterministic stand-in for the tuner and the measurer: a task's best latency is a
    /// function of its key; a block's default latency in a network a function of its MACs,
    /// and its tuned latency that times the network's tuned-to-default ratio over its tasks
    /// (best recorded latency, or the default's for a task without records), so the tuned
    /// table depends on the records and differs from network to network.
    struct Fake {
        network_tasks: HashMap<String, Vec<String>>,
        default: FakeMeasurer,
        tuned: FakeMeasurer,
    }

    struct FakeMeasurer {
        best: HashMap<String, f64>,
        network_tasks: HashMap<String, Vec<String>>,
        tuned: bool,
        calls: usize,
    }

    fn key_ms(key: &str) -> f64 {
        let h = key.bytes().fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        0.001 + (h % 1000) as f64 * 1e-5
    }

    impl NetworkMeasurer for FakeMeasurer {
        fn measure_network(&mut self, arch: &ArchConfig, width: f64) -> Result<NetworkMeasurement> {
            self.calls += 1;
            let ratio = if self.tuned {
                let keys = &self.network_tasks[&arch.to_compact()];
                let best: f64 = keys.iter().map(|k| self.best.get(k).copied().unwrap_or_else(|| key_ms(k))).sum();
                best / keys.iter().map(|k| key_ms(k)).sum::<f64>()
            } else {
                1.0
            };
            let mut entries = BTreeMap::new();
            for b in decompose(arch, width)? {
                let ms = (0.01 + b.macs() as f64 * 1e-9) * ratio;
                entries.insert(b.key(), LatencyEntry { count: 5, mean: ms, std: ms * 0.01 });
            }
            Ok(NetworkMeasurement {
                entries,
                overhead: LatencyEntry { count: 5, mean: arch.r as f64 * 1e-4, std: 0.0 },
                programs: serde_json::json!([{"name": "p", "block": "b", "schedule": [], "tuned": self.tuned}]),
                extra: serde_json::Value::Null,
            })
        }
    }

    impl Backend for Fake {
        fn tune(&mut self, tasks: &[Task], records: &mut RecordFile, trials: usize, _: Option<Duration>) -> Result<TuneSummary> {
            // Each task's "default", then a better one: the best is a function of the key
            // only, whatever else is tuned with it.
            let mut n = 0;
            for round in 0..2 {
                for t in tasks {
                    if n == trials {
                        break;
                    }
                    let ms = key_ms(&t.key) * if round == 0 { 1.0 } else { 0.8 };
                    let stats = tune::Stats { median_s: ms * 1e-3, mean_s: ms * 1e-3, std_s: 0.0, runs: 5 };
                    let trace = passes::schedule::Trace::default();
                    records.append(Record::new(&t.key, &t.name, &t.target, &trace, &Ok(stats), true)).unwrap();
                    n += 1;
                }
            }
            Ok(TuneSummary { trials: n, ..Default::default() })
        }

        fn default_measurer(&mut self) -> &mut dyn NetworkMeasurer {
            &mut self.default
        }

        fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn NetworkMeasurer> {
            self.tuned.best.clear();
            self.tuned.network_tasks = self.network_tasks.clone();
            for r in records.records.iter().filter(|r| r.usable()) {
                let ms = r.median_s.unwrap() * 1e3;
                let e = self.tuned.best.entry(r.key.clone()).or_insert(ms);
                *e = e.min(ms);
            }
            Ok(&mut self.tuned)
        }
    }

    fn fake(plan: &SpacePlan) -> Fake {
        let network_tasks: HashMap<String, Vec<String>> = plan
            .networks
            .iter()
            .zip(&plan.network_tasks)
            .map(|(a, ts)| (a.to_compact(), ts.iter().map(|&t| plan.tasks[t].key.clone()).collect()))
            .collect();
        let m = |tuned| FakeMeasurer { best: HashMap::new(), network_tasks: network_tasks.clone(), tuned, calls: 0 };
        Fake { network_tasks: network_tasks.clone(), default: m(false), tuned: m(true) }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chanasc-presched-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The plan of the space at two small resolutions, with the real task extraction (the
    /// host's target), built once for the tests of this module.
    fn plan() -> &'static SpacePlan {
        static PLAN: std::sync::OnceLock<SpacePlan> = std::sync::OnceLock::new();
        PLAN.get_or_init(|| SpacePlan::extract(1.2, &[32, 48], &Target::host(), &mut |_, _| {}).unwrap())
    }

    fn options(trials: usize, max_networks: Option<usize>) -> Options {
        Options { trials_per_task: trials, time_budget: None, save_every: 4, max_networks, vector_width: 16 }
    }

    fn run(
        plan: &SpacePlan,
        out: &Path,
        shard: Option<Shard>,
        phase: Phase,
        more: &[PathBuf],
        trials: usize,
        max: Option<usize>,
    ) -> Summary {
        let mut backend = fake(plan);
        let outputs = Outputs::for_table(out, None);
        let header = vec!["fake build".to_string()];
        preschedule(plan, shard, phase, &mut backend, &options(trials, max), &outputs, more, &header, Report::default(), &mut |_| {})
            .unwrap()
    }

    #[test]
    fn covering_networks_hold_every_block_and_share_tasks() {
        let plan = plan();
        assert_eq!(plan.networks.len(), 2 * 3 * 3 * 2);
        // Every block of the space, and no other.
        let mut want: Vec<String> = space_blocks(1.2, 32).unwrap().iter().chain(&space_blocks(1.2, 48).unwrap()).map(Block::key).collect();
        want.sort();
        want.dedup();
        assert_eq!(plan.blocks.iter().map(Block::key).collect::<Vec<_>>(), want);
        // Tasks repeat across networks (the head, the projections of blocks of other kernels).
        assert!(plan.tasks.len() < plan.programs(), "{} tasks, {} programs", plan.tasks.len(), plan.programs());
        let used: BTreeSet<usize> = plan.network_tasks.iter().flatten().copied().collect();
        assert_eq!(used.len(), plan.tasks.len());
        let (b, t, p) = plan.count_of(32).unwrap();
        assert_eq!(b, 96);
        assert!(t < plan.tasks.len() && t < p, "{t} {p}");
        // A random network's tasks are (nearly all) among the covering networks'.
        let keys: HashSet<&str> = plan.tasks.iter().map(|t| t.key.as_str()).collect();
        let mut rng = crate::rng::SplitMix64::new(5);
        let a = ArchConfig::sample(&mut rng, &[48]);
        let ts = tasks_of_network(&a, 1.2, &Target::host()).unwrap();
        let flops: u64 = ts.iter().map(|t| t.flops * t.weight as u64).sum();
        let covered: u64 = ts.iter().filter(|t| keys.contains(t.key.as_str())).map(|t| t.flops * t.weight as u64).sum();
        assert!(covered as f64 >= 0.9 * flops as f64, "{covered} of {flops} FLOPs");
    }

    #[test]
    fn shards_partition_networks_and_tasks_deterministically() {
        let plan = plan();
        for n in [1, 2, 3, 5] {
            let mut nets: Vec<usize> = (0..n).flat_map(|i| plan.network_shard(Shard { index: i, count: n })).collect();
            let mut tasks: Vec<usize> = (0..n).flat_map(|i| plan.task_shard(Shard { index: i, count: n })).collect();
            nets.sort_unstable();
            tasks.sort_unstable();
            assert_eq!(nets, (0..plan.networks.len()).collect::<Vec<_>>(), "every network in exactly one shard of {n}");
            assert_eq!(tasks, (0..plan.tasks.len()).collect::<Vec<_>>(), "every task in exactly one shard of {n}");
            let sizes: Vec<usize> = (0..n).map(|i| plan.task_shard(Shard { index: i, count: n }).len()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            let s = Shard { index: n - 1, count: n };
            assert_eq!(plan.network_shard(s), plan.network_shard(s));
            assert_eq!(plan.task_shard(s), plan.task_shard(s));
        }
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sharded_and_merged_equals_unsharded() {
        let plan = plan();
        let dir = tempdir("shards");
        let whole = dir.join("whole.yaml");
        let s = run(plan, &whole, None, Phase::All, &[], 2, None);
        assert_eq!(s.tune.trials, 2 * plan.tasks.len());
        let (d, t) = (s.default_build.unwrap(), s.tuned_build.unwrap());
        assert_eq!((d.measured, t.measured), (plan.networks.len(), plan.networks.len()));
        assert_eq!(s.run.tasks_without_record, 0);
        // Every block and each resolution's overhead.
        let table = LatencyTable::load(&whole).unwrap();
        assert_eq!(table.entries.len(), plan.blocks.len() + 2);
        // Three shards: tune, then measure with every tune shard's records, then merge.
        let n = 3;
        let parts: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("shard{i}.yaml"))).collect();
        for (i, p) in parts.iter().enumerate() {
            let s = run(plan, p, Some(Shard { index: i, count: n }), Phase::Tune, &[], 2, None);
            assert!(s.default_build.is_none() && !p.exists());
            assert_eq!(s.tune.trials, 2 * plan.task_shard(Shard { index: i, count: n }).len());
        }
        let records: Vec<PathBuf> = parts.iter().map(|p| records_path(p)).collect();
        // A shard measured without the others' records warns and keeps default schedules.
        let lone = run(plan, &dir.join("lone.yaml"), Some(Shard { index: 0, count: n }), Phase::Measure, &[], 2, Some(1));
        assert!(lone.run.tasks_without_record > 0);
        for (i, p) in parts.iter().enumerate() {
            let s = run(plan, p, Some(Shard { index: i, count: n }), Phase::Measure, &records, 2, None);
            assert_eq!((s.tune.trials, s.run.tasks_without_record), (0, 0));
        }
        let merged = dir.join("merged.yaml");
        let (m, warnings) = merge_outputs(&parts, &merged, None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(m.repeated.is_empty(), "{:?}", m.repeated);
        assert_eq!(m.shards.len(), n);
        assert!(m.missing_shards.is_empty(), "{:?}", m.missing_shards);
        let load = |p: &Path| LatencyTable::load(p).unwrap();
        assert_eq!(load(&merged), load(&whole));
        assert_eq!(load(&default_table_path(&merged)), load(&default_table_path(&whole)));
        let side = |p: &Path| load_schedules(&schedules_path(p)).unwrap();
        assert_eq!(side(&merged), side(&whole));
        assert_eq!(side(&default_table_path(&merged)), side(&default_table_path(&whole)));
        // The tuned table is not the default one: the records moved it.
        assert_ne!(load(&merged).entries, load(&default_table_path(&merged)).entries);
        // The records: the same measurements (their dates aside), and so the same schedules.
        let recs = |p: &Path| {
            let mut v: Vec<(String, String, Option<f64>)> =
                RecordFile::open(p).unwrap().records.into_iter().map(|r| (r.key, r.trace.to_json(), r.median_s)).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v
        };
        assert_eq!(recs(&records_path(&merged)), recs(&records_path(&whole)));
        assert_eq!(m.records, 2 * plan.tasks.len());
        let report = Report::load(&report_path(&merged)).unwrap().unwrap();
        assert_eq!(report.runs.len(), 2 * n);
        assert_eq!(report.runs.iter().map(|r| r.tasks).sum::<usize>(), plan.tasks.len());
        assert_eq!(report.runs.iter().map(|r| r.networks).sum::<usize>(), plan.networks.len());
        assert_eq!(report.trials_recorded, 2 * plan.tasks.len());
        // A missing shard is named.
        let (m2, _) = merge_outputs(&parts[..2], &dir.join("partial.yaml"), None).unwrap();
        assert_eq!(m2.missing_shards, vec!["tune 2/3".to_string(), "measure 2/3".to_string()]);
        // Merging the same records twice keeps each once.
        let (k, _) = merge_records(&[records_path(&whole), records_path(&whole)], &dir.join("twice.jsonl")).unwrap();
        assert_eq!(k, 2 * plan.tasks.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_run_resumes_without_tuning_or_measuring_again() {
        let plan = plan();
        let dir = tempdir("resume");
        let out = dir.join("lut.yaml");
        let outputs = Outputs::for_table(&out, None);
        let s = run(plan, &out, None, Phase::All, &[], 2, Some(5));
        let t = s.tuned_build.unwrap();
        assert_eq!((s.tune.trials, t.measured, t.missing > 0), (2 * plan.tasks.len(), 5, true));
        // Run again: nothing to tune (the records hold the trials), the tables go on.
        let s = run(plan, &out, None, Phase::All, &[], 2, None);
        let t = s.tuned_build.unwrap();
        assert_eq!((s.tune.trials, s.recorded_before, t.reused, t.missing), (0, 2 * plan.tasks.len(), 5, 0));
        assert_eq!(Report::load(&outputs.report).unwrap().unwrap().runs.len(), 2);
        // A larger budget tunes more and measures the tuned table anew.
        let s = run(plan, &out, None, Phase::All, &[], 3, None);
        assert_eq!(s.tune.trials, plan.tasks.len());
        assert_eq!((s.tuned_build.unwrap().reused, s.default_build.unwrap().measured), (0, 0));
        // Tuning alone, then measuring alone: the measure run sees more records than the
        // tuned table was measured with, and measures it anew; once, not again.
        let s = run(plan, &out, None, Phase::Tune, &[], 4, None);
        assert_eq!((s.tune.trials, s.tuned_build.is_none()), (plan.tasks.len(), true));
        let s = run(plan, &out, None, Phase::Measure, &[], 4, None);
        assert_eq!((s.tune.trials, s.tuned_build.unwrap().reused), (0, 0));
        let s = run(plan, &out, None, Phase::Measure, &[], 4, None);
        assert_eq!(s.tuned_build.unwrap().measured, 0);
        // An entry pools the block's latency over the networks that hold it: the stem's,
        // in every network of its resolution.
        let t = LatencyTable::load(&outputs.default_table).unwrap();
        let stem = decompose(&ArchConfig::min(32), 1.2).unwrap()[0];
        assert_eq!(t.get(&stem).unwrap().count, 5 * 18);
        assert!((t.get(&stem).unwrap().mean - (0.01 + stem.macs() as f64 * 1e-9)).abs() < 1e-12);
        // A table without its side file is not resumed as one.
        let other = dir.join("plain.yaml");
        std::fs::copy(&out, &other).unwrap();
        let mut backend = fake(plan);
        let e = build_network_table(&other, &plan.networks, 1.2, backend.default_measurer(), 4, None, &[], &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("without the side file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn companion_names() {
        let o = Outputs::for_table(Path::new("/x/lut.yaml"), None);
        assert_eq!(o.default_table, Path::new("/x/lut.default.yaml"));
        assert_eq!(o.records, Path::new("/x/lut.records.jsonl"));
        assert_eq!(o.report, Path::new("/x/lut.preschedule.json"));
        assert_eq!(default_table_path(Path::new("t")), Path::new("t.default.yaml"));
        let o = Outputs::for_table(Path::new("a.yaml"), Some(Path::new("r.jsonl")));
        assert_eq!(o.records, Path::new("r.jsonl"));
    }
}

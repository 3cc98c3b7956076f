//! Block-based pre-scheduling (PAPER.md, "The method", 2): every distinct block of the space
//! is tuned once, its best schedules kept, and its latency with them measured, so that a
//! network's latency under tuned schedules is the sum over its blocks, as it is for default
//! schedules.
//!
//! 1. **Tasks.** Each block is built between stand-ins for its neighbours in a network
//!    ([`build_block_in_context`]: the compiler then makes the block's programs as a network
//!    has them, reading a blocked layout and writing for the next layer) and lowered; its own
//!    tensor programs are tasks of the tuner. Tasks are deduplicated across blocks by their
//!    key (the structural hash of the program and the target): a block's projection does not
//!    depend on its kernel size, a squeeze-excite's 1x1 convolutions not on the resolution,
//!    the head's feature mix and classifier on nothing, and so on (the expansion does depend
//!    on the kernel: it writes its output padded for the depthwise convolution). A
//!    [`SpacePlan`] holds the distinct blocks, the distinct tasks (weight: the programs over
//!    all blocks that are the task) and which tasks each block runs.
//! 2. **Tuning.** All the distinct tasks are tuned in one run of the tuner
//!    ([`tune::tune`]): one records file, so one cost model trained on every measurement of
//!    every task (what it learns on one block's programs ranks the candidates of the others),
//!    and the tuner's task scheduler spends the trials where they gain most. The budget is
//!    `trials_per_task` times the number of tasks (less the trials already recorded, so a
//!    killed run resumes where it stopped), or a time budget.
//! 3. **Measurement.** Every block is measured as the default-schedule table measures it
//!    ([`crate::measure::HostMeasurer`], in context: the block compiled between its
//!    stand-ins, its own tensor programs' time with cold caches), once with the default schedules (`TABLE.default.yaml`) and once with
//!    the best recorded schedule of each of its tasks (`TABLE.yaml`, the tuned table), so the
//!    two tables compare like for like. Each table's side file keeps the schedule traces the
//!    block was measured with; the records file keeps every measurement of the tuner.
//!
//! **Shards.** A build splits into `N` shards in two phases, each a job array on a cluster
//! scheduler (one element per node or device). The tasks are shared between blocks so
//! widely (a block's output layout change with every block of the same output shape, a
//! squeeze-excite's 1x1 convolutions across resolutions) that the blocks do not fall into
//! independent groups; so first the tune shards each tune a deterministic share of the
//! distinct tasks ([`SpacePlan::task_shard`]), then the measure shards each measure a share
//! of the distinct blocks ([`SpacePlan::block_shard`]) with every tune shard's records, and
//! [`merge_outputs`] joins the shards' tables, records and reports into what an unsharded
//! build writes. Each task is tuned once and each block measured once, as unsharded; what
//! shards lose is only the sharing of the cost model between tasks of different shards.
//!
//! The work is behind [`Backend`] (tune tasks, measure blocks with default or recorded
//! schedules), so the orchestration (deduplication, budgets, sharding, merging) is tested
//! with a deterministic fake, fast and exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use llvm_backend::Target;
use serde::{Deserialize, Serialize};
use tune::{RecordFile, Task};

use crate::blocks::Block;
use crate::build::{build_block_in_context, context_programs, RandomWeights};
use crate::error::{NasError, Result};
use crate::lut::{write_atomic, LatencyTable};
use crate::lut_build::{build_table, load_schedules, schedules_path, BuildOptions, BuildProgress, BuildReport};
use crate::measure::{BlockMeasurer, HostMeasurer};

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

/// The distinct blocks of (part of) the space, their distinct tasks, and which tasks each
/// block runs.
#[derive(Debug, Clone)]
pub struct SpacePlan {
    /// Distinct blocks, in key order.
    pub blocks: Vec<Block>,
    /// For each block, the indices in `tasks` of the tasks it runs (each once, in the order
    /// its programs run).
    pub block_tasks: Vec<Vec<usize>>,
    /// Distinct tasks, in the order first met; `weight` is the number of the blocks'
    /// programs that are this task.
    pub tasks: Vec<Task>,
}

/// The tasks of one block on `target`, graph optimizations on, the block between stand-ins
/// for its neighbours ([`build_block_in_context`]) so that its programs are those a network
/// has; the stand-ins' programs ([`context_programs`]) are left out.
pub fn tasks_of_block(block: &Block, target: &Target) -> Result<Vec<Task>> {
    let bytes = build_block_in_context(block, &mut RandomWeights::new(0))?;
    let err = |e: String| NasError::Build(format!("tasks of block {}: {e}", block.key()));
    let graph = frontend::import_model(&bytes).map_err(|e| err(e.to_string()))?;
    let graph = passes::pipeline::prepare_graph(&graph, true).map_err(|e| err(e.to_string()))?;
    let steps = passes::lower::lower_graph(&graph).map_err(|e| err(e.to_string()))?;
    let programs: Vec<&passes::lower::Program> =
        steps.iter().filter_map(|s| if let passes::lower::Step::Run(p) = s { Some(p) } else { None }).collect();
    let names: Vec<String> = programs
        .iter()
        .map(|p| match p.nodes.first().and_then(|&n| graph.node(n).name.clone()) {
            Some(n) => format!("{} {n}", p.func.name),
            None => p.func.name.clone(),
        })
        .collect();
    let context = context_programs(block, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let target_name = tune::task::target_id(target);
    let mut tasks: Vec<Task> = Vec::new();
    for ((p, name), theirs) in programs.iter().zip(&names).zip(&context) {
        if *theirs {
            continue;
        }
        let constants: Vec<bool> = p.args.iter().map(|&v| graph.const_data(v).is_some()).collect();
        let key = tune::task::task_key(&p.func, &constants, &target_name);
        if let Some(t) = tasks.iter_mut().find(|t| t.key == key) {
            t.weight += 1;
            continue;
        }
        tasks.push(Task {
            key,
            name: name.clone(),
            target: target_name.clone(),
            func: p.func.clone(),
            constants,
            weight: 1,
            flops: runtime::program_flops(&graph, &p.nodes),
        });
    }
    Ok(tasks)
}

impl SpacePlan {
    /// The plan of `blocks` (repeats removed) on `target`; `on_block(done, total)` reports
    /// progress (each block is built and lowered).
    pub fn extract(blocks: &[Block], target: &Target, on_block: &mut dyn FnMut(usize, usize)) -> Result<SpacePlan> {
        SpacePlan::extract_with(blocks, &mut |b| tasks_of_block(b, target), on_block)
    }

    /// [`extract`](Self::extract) with the tasks of a block from `tasks_of`.
    pub fn extract_with(
        blocks: &[Block],
        tasks_of: &mut dyn FnMut(&Block) -> Result<Vec<Task>>,
        on_block: &mut dyn FnMut(usize, usize),
    ) -> Result<SpacePlan> {
        let distinct: BTreeMap<String, Block> = blocks.iter().map(|b| (b.key(), *b)).collect();
        let mut plan = SpacePlan { blocks: Vec::new(), block_tasks: Vec::new(), tasks: Vec::new() };
        let mut index: HashMap<String, usize> = HashMap::new();
        let total = distinct.len();
        for (i, block) in distinct.into_values().enumerate() {
            on_block(i, total);
            let mut mine = Vec::new();
            for t in tasks_of(&block)? {
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
            plan.blocks.push(block);
            plan.block_tasks.push(mine);
        }
        on_block(total, total);
        Ok(plan)
    }

    /// Tensor programs over all blocks.
    pub fn programs(&self) -> usize {
        self.tasks.iter().map(|t| t.weight).sum()
    }

    /// Distinct blocks, distinct tasks and programs of the blocks of this plan among `keys`.
    pub fn count_of(&self, keys: &BTreeSet<String>) -> (usize, usize, usize) {
        let mut tasks = BTreeSet::new();
        let (mut blocks, mut programs) = (0, 0);
        for (b, ts) in self.blocks.iter().zip(&self.block_tasks) {
            if keys.contains(&b.key()) {
                blocks += 1;
                tasks.extend(ts.iter().copied());
                programs += ts.len();
            }
        }
        (blocks, tasks.len(), programs)
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

    /// Indices of the blocks shard `shard` measures: sorted by MACs (largest first; key on a
    /// tie) and dealt round-robin.
    pub fn block_shard(&self, shard: Shard) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.blocks.len()).collect();
        order.sort_by(|&a, &b| self.blocks[b].macs().cmp(&self.blocks[a].macs()).then(self.blocks[a].key().cmp(&self.blocks[b].key())));
        let mut mine: Vec<usize> = order.into_iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, b)| b).collect();
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
    /// Measures blocks with the default schedules.
    fn default_measurer(&mut self) -> &mut dyn BlockMeasurer;
    /// Measures blocks with the best schedule `records` holds for each of their tasks.
    fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn BlockMeasurer>;
}

/// The host: the tuner's isolated local measurer ([`tune::LocalMeasurer`], candidates run in
/// worker processes), and [`HostMeasurer`] for blocks.
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
    pub default: HostMeasurer,
    pub tuned: HostMeasurer,
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

    fn default_measurer(&mut self) -> &mut dyn BlockMeasurer {
        &mut self.default
    }

    fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn BlockMeasurer> {
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
    /// How the two tables are built (saving, `max_new`, network overheads).
    pub build: BuildOptions,
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
    /// Tasks tuned and blocks measured (this run's share of the space).
    pub tasks: usize,
    pub blocks: usize,
    pub trials: usize,
    pub failures: usize,
    pub tuning_s: f64,
    pub default_measure_s: f64,
    pub tuned_measure_s: f64,
    /// Blocks measured in this run (default, tuned).
    pub default_measured: usize,
    pub tuned_measured: usize,
    /// Tasks of the measured blocks without any record (their programs kept the default
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
    /// Of the whole space (all shards): distinct blocks, distinct tasks, programs.
    pub space_blocks: usize,
    pub space_tasks: usize,
    pub space_programs: usize,
    /// Per resolution: `[r, blocks, tasks, programs]` (blocks shared between resolutions,
    /// the head's 1x1 layers, count in each).
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

/// Pre-schedules the space of `plan`, or shard `shard` of it, as `phase` says:
///
/// - tune (phases all and tune): the tasks (all, or [`SpacePlan::task_shard`]) are tuned
///   into `outputs.records` until it holds `trials_per_task` trials per task;
/// - measure (phases all and measure): the blocks (all, or [`SpacePlan::block_shard`]) are
///   measured into the default-schedule table and, with the best schedule of each task in
///   `outputs.records` and `more_records` (a sharded build gives every tune shard's file),
///   into the tuned table. Both tables are resumable (blocks already in them are kept); the
///   tuned table is measured anew when this run tuned.
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
    let block_ids: Vec<usize> = shard.map_or_else(|| (0..plan.blocks.len()).collect(), |s| plan.block_shard(s));
    let tasks: Vec<Task> = task_ids.iter().map(|&t| plan.tasks[t].clone()).collect();
    let blocks: Vec<Block> = block_ids.iter().map(|&b| plan.blocks[b]).collect();
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
        blocks: if phase.measures() { blocks.len() } else { 0 },
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
        // The tasks of these blocks that no records file holds.
        let block_tasks: BTreeSet<usize> = block_ids.iter().flat_map(|&b| plan.block_tasks[b].iter().copied()).collect();
        let recorded: HashSet<(&str, &str)> = records.records.iter().map(|r| (r.key.as_str(), r.target.as_str())).collect();
        run.tasks_without_record =
            block_tasks.iter().filter(|&&t| !recorded.contains(&(plan.tasks[t].key.as_str(), plan.tasks[t].target.as_str()))).count();
        if run.tasks_without_record > 0 {
            on_event(Event::Phase(format!(
                "warning: {} of the {} tasks of these blocks have no record in {}: their programs keep the default schedule (tuning stopped before them, or a tune shard's records file is missing)",
                run.tasks_without_record,
                block_tasks.len(),
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
            "measuring {} blocks with the default schedules into {} and with their tuned schedules into {}, {MEASURE_CHUNK} at a time",
            blocks.len(),
            outputs.default_table.display(),
            outputs.table.display()
        )));
        // The two tables in turns of a few blocks, so that a slow spell of the machine falls
        // on both alike.
        let mut totals: [Option<BuildReport>; 2] = [None, None];
        loop {
            let mut progressed = false;
            let mut done = true;
            for (i, which) in ["default", "tuned"].into_iter().enumerate() {
                let so_far = totals[i].as_ref().map_or(0, |t| t.measured);
                if totals[i].as_ref().is_some_and(|t| t.missing == 0) || options.build.max_new.is_some_and(|m| so_far >= m) {
                    continue;
                }
                let chunk = options.build.max_new.map_or(MEASURE_CHUNK, |m| MEASURE_CHUNK.min(m - so_far));
                let opts = BuildOptions { max_new: Some(chunk), ..options.build.clone() };
                let t0 = Instant::now();
                let built = if i == 0 {
                    build_table(&outputs.default_table, &blocks, backend.default_measurer(), &opts, header, &mut |p| {
                        on_event(Event::Build(which, p))
                    })?
                } else {
                    let measurer = backend.tuned_measurer(&records)?;
                    build_table(&outputs.table, &blocks, measurer, &opts, &tuned_header, &mut |p| on_event(Event::Build(which, p)))?
                };
                let secs = t0.elapsed().as_secs_f64();
                if i == 0 {
                    run.default_measure_s += secs;
                } else {
                    run.tuned_measure_s += secs;
                }
                progressed |= built.measured > 0;
                let total = totals[i].get_or_insert_with(|| BuildReport { reused: built.reused, ..Default::default() });
                total.measured += built.measured;
                total.replaced += built.replaced;
                total.missing = built.missing;
                total.entries = built.entries;
                let capped = options.build.max_new.is_some_and(|m| total.measured >= m);
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

/// Blocks measured into one table before the other table's turn.
const MEASURE_CHUNK: usize = 12;

/// What [`merge_outputs`] did.
#[derive(Debug, Clone, Default)]
pub struct MergeSummary {
    pub entries: usize,
    /// Keys found in more than one input table (their measurements are pooled).
    pub repeated: Vec<String>,
    pub default_entries: Option<usize>,
    pub records: usize,
    /// Shards merged, and the phases of shards of `N` that no input ran (`"measure 2/4"`).
    pub shards: Vec<Shard>,
    pub missing_shards: Vec<String>,
    pub outputs: Option<Outputs>,
}

/// Merges side files (lines by key); a key in more than one keeps its first line.
fn merge_side_files(inputs: &[PathBuf], output: &Path) -> Result<usize> {
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    for p in inputs {
        for (k, v) in load_schedules(&schedules_path(p))? {
            lines.entry(k).or_insert(v);
        }
    }
    if lines.is_empty() {
        return Ok(0);
    }
    let text: String = lines.values().map(|l| format!("{l}\n")).collect();
    write_atomic(&schedules_path(output), text.as_bytes())?;
    Ok(lines.len())
}

fn merge_tables(inputs: &[PathBuf], output: &Path) -> Result<(LatencyTable, Vec<String>)> {
    let mut table = LatencyTable::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut repeated = BTreeSet::new();
    for p in inputs {
        let t = LatencyTable::load(p)?;
        for k in t.entries.keys() {
            if !seen.insert(k.clone()) {
                repeated.insert(k.clone());
            }
        }
        table.merge(&t);
    }
    table.save(output)?;
    merge_side_files(inputs, output)?;
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
    use crate::lut::LatencyEntry;
    use crate::measure::BlockMeasurement;
    use tune::records::Record;

    /// A deterministic stand-in for the tuner and the measurer: a task's best latency is a
    /// function of its key, a block's default latency of its MACs, and its tuned latency the
    /// sum of its tasks' best recorded latencies (the default's for a task without records).
    struct Fake {
        plan_tasks: HashMap<String, Vec<String>>,
        default: FakeMeasurer,
        tuned: FakeMeasurer,
        tuned_calls: usize,
    }

    struct FakeMeasurer {
        best: HashMap<String, f64>,
        tasks: HashMap<String, Vec<String>>,
        tuned: bool,
        calls: usize,
    }

    fn key_ms(key: &str) -> f64 {
        let h = key.bytes().fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        0.001 + (h % 1000) as f64 * 1e-5
    }

    impl BlockMeasurer for FakeMeasurer {
        fn measure(&mut self, block: &Block) -> Result<BlockMeasurement> {
            self.calls += 1;
            let ms = if self.tuned {
                let keys = &self.tasks[&block.key()];
                // A task without a record keeps its default schedule, as the compiler does.
                keys.iter().map(|k| self.best.get(k).copied().unwrap_or_else(|| key_ms(k))).sum::<f64>()
            } else {
                0.01 + block.macs() as f64 * 1e-9
            };
            Ok(BlockMeasurement {
                entry: LatencyEntry { count: 7, mean: ms, std: ms * 0.01 },
                median: ms,
                programs: serde_json::json!([{"name": block.key(), "schedule": [], "tuned": self.tuned}]),
                extra: serde_json::Value::Null,
            })
        }

        fn measure_overhead(&mut self, width: f64, r: u32) -> Result<Option<BlockMeasurement>> {
            let ms = r as f64 * 1e-4 * width;
            Ok(Some(BlockMeasurement {
                entry: LatencyEntry { count: 3, mean: ms, std: 0.0 },
                median: ms,
                programs: serde_json::Value::Null,
                extra: serde_json::Value::Null,
            }))
        }
    }

    impl Backend for Fake {
        fn tune(&mut self, tasks: &[Task], records: &mut RecordFile, trials: usize, _: Option<Duration>) -> Result<TuneSummary> {
            // One trial per task (the "default"), then a better one: the best is a function
            // of the key only, whatever else is tuned with it.
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

        fn default_measurer(&mut self) -> &mut dyn BlockMeasurer {
            &mut self.default
        }

        fn tuned_measurer(&mut self, records: &RecordFile) -> Result<&mut dyn BlockMeasurer> {
            self.tuned_calls += 1;
            self.tuned.best.clear();
            self.tuned.tasks = self.plan_tasks.clone();
            for r in records.records.iter().filter(|r| r.usable()) {
                let ms = r.median_s.unwrap() * 1e3;
                let e = self.tuned.best.entry(r.key.clone()).or_insert(ms);
                *e = e.min(ms);
            }
            Ok(&mut self.tuned)
        }
    }

    fn fake(plan: &SpacePlan) -> Fake {
        let plan_tasks = plan
            .blocks
            .iter()
            .zip(&plan.block_tasks)
            .map(|(b, ts)| (b.key(), ts.iter().map(|&t| plan.tasks[t].key.clone()).collect()))
            .collect();
        let m = |tuned| FakeMeasurer { best: HashMap::new(), tasks: HashMap::new(), tuned, calls: 0 };
        Fake { plan_tasks, default: m(false), tuned: m(true), tuned_calls: 0 }
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
        PLAN.get_or_init(|| {
            let mut blocks = space_blocks(1.2, 32).unwrap();
            blocks.extend(space_blocks(1.2, 48).unwrap());
            SpacePlan::extract(&blocks, &Target::host(), &mut |_, _| {}).unwrap()
        })
    }

    fn options(trials: usize) -> Options {
        Options {
            trials_per_task: trials,
            time_budget: None,
            build: BuildOptions { save_every: 16, max_new: None, remeasure: false, network_overhead: Some(1.2) },
            vector_width: 16,
        }
    }

    fn run(
        plan: &SpacePlan,
        out: &Path,
        shard: Option<Shard>,
        phase: Phase,
        more: &[PathBuf],
        trials: usize,
        max_new: Option<usize>,
    ) -> Summary {
        let mut backend = fake(plan);
        let outputs = Outputs::for_table(out, None);
        let header = vec!["fake build".to_string()];
        let mut opts = options(trials);
        opts.build.max_new = max_new;
        preschedule(plan, shard, phase, &mut backend, &opts, &outputs, more, &header, Report::default(), &mut |_| {}).unwrap()
    }

    #[test]
    fn tasks_are_shared_between_blocks() {
        let plan = plan();
        // 96 blocks per resolution, less the head's 1x1 layers both share.
        assert_eq!(plan.blocks.len(), 96 + 96 - 2);
        assert!(plan.tasks.len() < plan.programs(), "{} tasks, {} programs", plan.tasks.len(), plan.programs());
        // Blocks differing only in their kernel share their projection (the expansion writes
        // its output padded for the depthwise kernel, so it differs).
        let like =
            |k: u32| match plan.blocks.iter().find(|b| matches!(b, Block::MbConv(m) if m.stride == 1 && m.in_size == 8 && m.mid == 96)) {
                Some(Block::MbConv(m)) => Block::MbConv(crate::blocks::MbConv { kernel: k, ..*m }),
                _ => panic!("no such block"),
            };
        let key_of = |k: u32| {
            let b = plan.blocks.iter().position(|b| *b == like(k)).unwrap();
            plan.block_tasks[b].iter().map(|&t| plan.tasks[t].key.clone()).collect::<BTreeSet<_>>()
        };
        let (k3, k7) = (key_of(3), key_of(7));
        assert!(!k3.is_disjoint(&k7), "{k3:?} {k7:?}");
        assert_ne!(k3, k7);
        // Every task is run by some block, every block runs some task.
        let used: BTreeSet<usize> = plan.block_tasks.iter().flatten().copied().collect();
        assert_eq!(used.len(), plan.tasks.len());
        assert!(plan.block_tasks.iter().all(|t| !t.is_empty()));
        // Counting a subset: one resolution's blocks.
        let keys: BTreeSet<String> = space_blocks(1.2, 32).unwrap().iter().map(Block::key).collect();
        let (b, t, p) = plan.count_of(&keys);
        assert_eq!(b, 96);
        assert!(t < plan.tasks.len() && t < p, "{t} {p}");
    }

    #[test]
    fn shards_partition_blocks_and_tasks_deterministically() {
        let plan = plan();
        for n in [1, 2, 3, 5] {
            let mut blocks: Vec<usize> = (0..n).flat_map(|i| plan.block_shard(Shard { index: i, count: n })).collect();
            let mut tasks: Vec<usize> = (0..n).flat_map(|i| plan.task_shard(Shard { index: i, count: n })).collect();
            blocks.sort_unstable();
            tasks.sort_unstable();
            assert_eq!(blocks, (0..plan.blocks.len()).collect::<Vec<_>>(), "every block in exactly one shard of {n}");
            assert_eq!(tasks, (0..plan.tasks.len()).collect::<Vec<_>>(), "every task in exactly one shard of {n}");
            // Balanced: shard sizes differ by at most one.
            let sizes: Vec<usize> = (0..n).map(|i| plan.task_shard(Shard { index: i, count: n }).len()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            // The same again.
            let s = Shard { index: n - 1, count: n };
            assert_eq!(plan.block_shard(s), plan.block_shard(s));
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
        // Every block, and the network overhead of each resolution.
        assert_eq!((d.measured, t.measured), (plan.blocks.len() + 2, plan.blocks.len() + 2));
        assert_eq!(s.run.tasks_without_record, 0);
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
        assert_eq!(load(&merged).entries.len(), plan.blocks.len() + 2);
        let side = |p: &Path| load_schedules(&schedules_path(p)).unwrap();
        assert_eq!(side(&merged), side(&whole));
        assert_eq!(side(&default_table_path(&merged)), side(&default_table_path(&whole)));
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
        assert_eq!(report.runs.iter().map(|r| r.blocks).sum::<usize>(), plan.blocks.len());
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
        let report = Report::load(&outputs.report).unwrap().unwrap();
        assert_eq!(report.runs.len(), 2);
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
        // The tuned table is the sum of the best schedules of each block's tasks.
        let t = LatencyTable::load(&out).unwrap();
        let d = LatencyTable::load(&outputs.default_table).unwrap();
        assert_eq!(t.entries.len(), d.entries.len());
        for (i, b) in plan.blocks.iter().enumerate() {
            let want: f64 = plan.block_tasks[i].iter().map(|&k| key_ms(&plan.tasks[k].key) * 0.8).sum();
            assert!((t.get(b).unwrap().mean - want).abs() < 1e-12);
        }
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

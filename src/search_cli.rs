//! The `lut` commands (build a latency table of the space's blocks on this machine, check its
//! predictions against whole networks, summarize a table) and `search` (the schedule-blind
//! baseline: OFA's evolutionary search under a latency budget).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use nas::evolution::{evolve, EvolutionConfig};
use nas::lut_build::{build_table, schedules_path};
use nas::measure::{CacheFlush, HostModel, MeasureOptions};
use nas::space::PREDICTOR_RESOLUTIONS;
use nas::{ArchConfig, LatencyTable};

type CliResult<T> = Result<T, String>;

/// How blocks and networks are timed (shared by `lut build`, `lut check` and `search`, so
/// that a table and the networks it predicts are measured the same way).
#[derive(Args, Clone, Debug)]
pub struct TimingArgs {
    /// Timed runs of each block or network.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Untimed runs before them.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// MiB read before each timed run to flush the caches (0: no flush).
    #[arg(long, default_value_t = 128)]
    pub flush_mb: usize,
    /// Timing repeats when other processes disturbed a measurement (they needed more than
    /// the other cores, or the mean is above 1.1 x the median).
    #[arg(long, default_value_t = 2)]
    pub retries: usize,
}

impl TimingArgs {
    pub fn options(&self, seed: u64) -> CliResult<MeasureOptions> {
        if self.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        Ok(MeasureOptions { runs: self.runs, warmup: self.warmup, seed, flush_bytes: self.flush_mb << 20 })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} timed runs after {} warm-up, {} MiB cache flush before each, up to {} repeats when disturbed",
            self.runs, self.warmup, self.flush_mb, self.retries
        )
    }
}

#[derive(Subcommand)]
pub enum LutCommand {
    /// Measure every distinct block of the space on this machine (default schedules) and
    /// write OFA's YAML table, with each block's schedule traces in TABLE.schedules.jsonl.
    /// Resumable: blocks already in the output table are not measured again.
    Build {
        /// Search space: ofa-mbv3.
        #[arg(long, default_value = "ofa-mbv3")]
        space: String,
        /// Width multiplier: 1.0 or 1.2.
        #[arg(long, default_value_t = 1.2)]
        width: f64,
        /// Target: host (this machine), or wgpu (this machine's GPU adapter; default
        /// schedules only, no --tune-trials).
        #[arg(long, default_value = "host")]
        arch: String,
        /// Input resolutions (comma-separated); all go into the one output table (its keys
        /// name the input size).
        #[arg(long, value_delimiter = ',', default_values_t = PREDICTOR_RESOLUTIONS.to_vec())]
        resolutions: Vec<u32>,
        #[command(flatten)]
        timing: TimingArgs,
        /// Pre-scheduling: tune every distinct task of the space's covering networks with this
        /// many trials per task on average (shared records and cost model), then measure the
        /// networks, each block's latency inside them, with the default schedules
        /// (TABLE.default.yaml) and with the tuned schedules (TABLE.yaml). 0: the
        /// default-schedule table of blocks alone.
        #[arg(long, default_value_t = 0)]
        tune_trials: usize,
        #[command(flatten)]
        presched: crate::presched_cli::PreschedArgs,
        /// Save the table after this many newly measured blocks.
        #[arg(long, default_value_t = 4)]
        save_every: usize,
        /// Measure at most this many blocks (pre-scheduling: covering networks per table),
        /// then stop (run again to go on).
        #[arg(long)]
        max_blocks: Option<usize>,
        /// Measure the blocks already in the table again and keep, for each, the faster
        /// measurement (other processes only ever add time): a second pass over a table
        /// built while the machine was busy.
        #[arg(long)]
        remeasure: bool,
        /// Seed of the blocks' random weights and inputs.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Compare the table's predictions (sum of block means) with measured whole networks on
    /// sampled architectures.
    Check {
        /// Latency tables: comma-separated or repeated.
        #[arg(long, value_delimiter = ',', required = true)]
        lut: Vec<PathBuf>,
        /// Architectures to sample.
        #[arg(long, default_value_t = 20)]
        samples: usize,
        #[arg(long, default_value_t = 1.2)]
        width: f64,
        /// Seed of the sampled architectures (and of the networks' weights and inputs).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Resolutions to sample from (default: those of 160..224 the table covers fully).
        #[arg(long, value_delimiter = ',')]
        resolutions: Vec<u32>,
        #[command(flatten)]
        timing: TimingArgs,
        /// Passes over the networks, each timing every network once; a network keeps its
        /// fastest pass.
        #[arg(long, default_value_t = 2)]
        passes: usize,
    },
    /// Merge the outputs of several builds (the shards of a pre-scheduled build): tables and
    /// their schedule side files, the default-schedule tables, the records files and the
    /// pre-scheduling reports beside them. Inputs that are all .jsonl are records files,
    /// merged into one.
    Merge {
        /// Tables (TABLE.yaml, with their companions), or records files (.jsonl).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The merged records file (default: OUT.records.jsonl).
        #[arg(long)]
        records: Option<PathBuf>,
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// Summarize tables: entries, and for each resolution how many of the space's blocks they
    /// hold and the predicted latency of the smallest and largest network.
    Show {
        /// Latency tables: comma-separated or repeated.
        #[arg(value_delimiter = ',', required = true)]
        lut: Vec<PathBuf>,
        #[arg(long, default_value_t = 1.2)]
        width: f64,
    },
}

/// `chanasc search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Search space: ofa-mbv3 (latency tables from lut build), or fmnist-mbv3 (a trained
    /// supernet's space: --accuracy supernet:CHECKPOINT; its block latency table is built
    /// here, or read and completed from --lut TABLE.json; the winner is a classifier with the
    /// supernet's weights, see chanasc eval).
    #[arg(long, default_value = "ofa-mbv3")]
    pub space: String,
    #[arg(long, default_value_t = 1.2)]
    pub width: f64,
    /// Target: host (this machine).
    #[arg(long, default_value = "host")]
    pub arch: String,
    /// Latency budget in milliseconds.
    #[arg(long)]
    pub latency_ms: f64,
    /// Accuracy oracle: predictor:FILE.safetensors, table:FILE.csv or command:CMD.
    #[arg(long)]
    pub accuracy: String,
    /// Latency tables of the target's blocks: comma-separated or repeated. The co-search
    /// takes the pre-scheduled (tuned) table (`lut build --tune-trials N`), the baseline a
    /// default-schedule table.
    #[arg(long, value_delimiter = ',')]
    pub lut: Vec<PathBuf>,
    /// The schedule-blind baseline alone (OFA's evolutionary search on a default-schedule
    /// table). Without it: the co-search (CHaNAS).
    #[arg(long)]
    pub baseline: bool,
    /// Co-search: the tuning records of the pre-scheduled table (default: TABLE.records.jsonl
    /// beside the first --lut); the winner is compiled with their schedules.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Co-search: the default-schedule table of the same blocks, for --compare-baseline
    /// (default: TABLE.default.yaml beside the first --lut).
    #[arg(long, value_delimiter = ',')]
    pub default_lut: Vec<PathBuf>,
    /// Co-search: also run the schedule-blind baseline (same resolutions, budget, oracle and
    /// search settings, the default-schedule table), deploy its winner with the default
    /// schedules, find the co-search's architecture at the baseline's accuracy, measure all
    /// of them and report the latency ratios.
    #[arg(long)]
    pub compare_baseline: bool,
    /// Co-search: architectures sampled per partition (resolution) to choose one.
    #[arg(long, default_value_t = 200)]
    pub partition_samples: usize,
    /// Co-search: the share of a partition's samples that must fit the budget for it to be
    /// chosen.
    #[arg(long, default_value_t = 0.05)]
    pub min_share: f64,
    /// Co-search: how partitions are ranked for the search: probe (one evolutionary run, the
    /// first seed, in each, ranked by its best score) or samples (the paper's method: the
    /// samples' scores, see --min-share).
    #[arg(long, default_value = "probe")]
    pub rank_partitions: nas::cosearch::Ranking,
    /// Co-search: how many of the best-ranked partitions the full evolutionary search (with
    /// --restarts) runs in, the best winner kept (--rank-partitions samples
    /// --search-partitions 1 is the paper's method).
    #[arg(long, default_value_t = 2)]
    pub search_partitions: usize,
    /// Co-search with --compare-baseline: bisection steps on the budget to find the
    /// co-search's architecture at the baseline's accuracy.
    #[arg(long, default_value_t = 6)]
    pub iso_steps: usize,
    /// Co-search: passes over the deployed networks when timing them (each keeps its fastest
    /// pass; more passes, less noise from other processes).
    #[arg(long, default_value_t = 3)]
    pub measure_passes: usize,
    /// Search only: write the chosen architecture, the logs and plots, but do not build,
    /// compile or measure networks.
    #[arg(long)]
    pub search_only: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Independent runs of every evolutionary search (seeds seed, seed + 1, ...), the best
    /// kept: one run of OFA's search can miss what another seed finds. With
    /// --compare-baseline both searches get them.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Generations (default: OFA's 500; 6 with a supernet: oracle, which measures each
    /// architecture on the dataset).
    #[arg(long = "generations")]
    pub generations_arg: Option<usize>,
    /// Population size (default: OFA's 100; 12 with a supernet: oracle).
    #[arg(long = "population")]
    pub population_arg: Option<usize>,
    /// Resolutions to search (default: those of 160..224 the table covers fully).
    #[arg(long, value_delimiter = ',')]
    pub resolutions: Vec<u32>,
    /// Percent of the budget kept free for the table's prediction error: the search holds
    /// predicted latency to budget x (1 - margin / 100). OFA's baseline uses 0.
    #[arg(long, default_value_t = 0.0)]
    pub margin: f64,
    /// Weight lambda of the generalization gap in the score, A_val - lambda x max(0, A_train -
    /// A_val), when the oracle gives training accuracy (0: plain A_val, as OFA).
    #[arg(long = "gap-weight", alias = "gap-lambda", default_value_t = 0.0)]
    pub gap_weight: f64,
    /// Time limit of a command: oracle, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub oracle_timeout: f64,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

impl SearchArgs {
    /// A supernet oracle measures every architecture on a dataset (seconds each), so its
    /// searches default to a small population and few generations.
    fn measured_oracle(&self) -> bool {
        self.accuracy.starts_with("supernet:")
    }

    pub fn generations(&self) -> usize {
        self.generations_arg.unwrap_or(if self.measured_oracle() { 6 } else { 500 })
    }

    pub fn population(&self) -> usize {
        self.population_arg.unwrap_or(if self.measured_oracle() { 12 } else { 100 })
    }
}

/// Reads one or more latency tables as one.
pub fn load_tables(paths: &[PathBuf]) -> CliResult<LatencyTable> {
    LatencyTable::load_many(paths).map_err(|e| e.to_string())
}

/// The files' names, for messages.
pub fn names(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",")
}

pub fn check_space(space: &str, width: f64) -> CliResult<()> {
    if space != "ofa-mbv3" {
        return Err(format!("unknown --space {space:?}; available: ofa-mbv3"));
    }
    nas::Widths::for_width(width).map(|_| ()).map_err(|e| e.to_string())
}

pub fn check_arch(arch: &str) -> CliResult<()> {
    match arch {
        "host" => {
            if std::env::consts::ARCH != "x86_64" {
                return Err(format!("--arch host: measuring needs an x86-64 host, this is {}", std::env::consts::ARCH));
            }
            Ok(())
        }
        other => Err(format!("--arch {other:?}: only host (this machine) can be measured for now; other targets need a remote runner")),
    }
}

/// The resolutions to use: those asked for (each fully covered by the table), or those of
/// 160..224 that the table covers fully.
pub fn covered_resolutions(table: &LatencyTable, width: f64, asked: &[u32], lut: &[PathBuf]) -> CliResult<Vec<u32>> {
    let missing = |r: u32| -> CliResult<Option<String>> {
        let blocks = nas::blocks::space_blocks(width, r).map_err(|e| e.to_string())?;
        Ok(blocks.iter().find(|b| table.get(b).is_none()).map(|b| b.key()))
    };
    if !asked.is_empty() {
        for &r in asked {
            if let Some(key) = missing(r)? {
                return Err(format!(
                    "{} lacks blocks of resolution {r} (e.g. {key}); build them with chanasc lut build --resolutions {r}",
                    names(lut)
                ));
            }
        }
        return Ok(asked.to_vec());
    }
    let mut rs = Vec::new();
    for r in PREDICTOR_RESOLUTIONS {
        if missing(r)?.is_none() {
            rs.push(r);
        }
    }
    if rs.is_empty() {
        return Err(format!("{} does not cover any resolution of 160..224 at width {width} fully", names(lut)));
    }
    Ok(rs)
}

/// A progress display on stderr: a bar on a terminal, otherwise a plain line now and then.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    len: u64,
    last_line: Instant,
}

impl Progress {
    pub fn new(len: u64, what: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{what} [{{elapsed_precise}}] [{{bar:30}}] {{pos}}/{{len}} ETA {{eta}} {{wide_msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b
        });
        Progress { bar, start: Instant::now(), len, last_line: Instant::now() - Duration::from_secs(3600) }
    }

    pub fn update(&mut self, pos: u64, done_here: u64, msg: &str) {
        if let Some(b) = &self.bar {
            let resumed = b.position() == 0 && pos > 0 && done_here == 0;
            b.set_position(pos);
            if resumed {
                // Work found already done (a resumed build): the rate starts from here.
                b.reset_eta();
            }
            b.set_message(msg.to_string());
            return;
        }
        if self.last_line.elapsed() < Duration::from_secs(10) && pos < self.len {
            return;
        }
        self.last_line = Instant::now();
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = self.len.saturating_sub(pos);
        let eta = if done_here > 0 { elapsed / done_here as f64 * left as f64 } else { f64::NAN };
        eprintln!("{pos}/{} elapsed {} ETA {} {msg}", self.len, hms(elapsed), if eta.is_finite() { hms(eta) } else { "?".into() });
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn hms(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn run_lut(command: LutCommand) -> CliResult<()> {
    match command {
        LutCommand::Build {
            space,
            width,
            arch,
            resolutions,
            timing,
            tune_trials,
            presched,
            save_every,
            max_blocks,
            remeasure,
            seed,
            output,
        } => {
            let build = nas::lut_build::BuildOptions { save_every, max_new: max_blocks, remeasure, network_overhead: Some(width) };
            if tune_trials > 0 || presched.requested() {
                check_space(&space, width)?;
                check_arch(&arch)?;
                return crate::presched_cli::lut_build_tuned(width, &resolutions, &timing, tune_trials, &presched, &build, seed, &output);
            }
            lut_build(&space, width, &arch, &resolutions, &timing, tune_trials, &build, seed, &output)
        }
        LutCommand::Merge { inputs, records, output } => crate::presched_cli::lut_merge(&inputs, records.as_deref(), &output),
        LutCommand::Check { lut, samples, width, seed, resolutions, timing, passes } => {
            lut_check(&lut, samples, width, seed, &resolutions, &timing, passes)
        }
        LutCommand::Show { lut, width } => lut_show(&lut, width),
    }
}

#[allow(clippy::too_many_arguments)]
fn lut_build(
    space: &str,
    width: f64,
    arch: &str,
    resolutions: &[u32],
    timing: &TimingArgs,
    tune_trials: usize,
    build: &nas::lut_build::BuildOptions,
    seed: u64,
    output: &Path,
) -> CliResult<()> {
    check_space(space, width)?;
    debug_assert_eq!(tune_trials, 0, "pre-scheduling is lut_build_tuned");
    // wgpu: the blocks on this machine's GPU adapter (default GPU schedules).
    let gpu = arch == "wgpu";
    if !gpu {
        check_arch(arch)?;
    }
    if resolutions.is_empty() {
        return Err("--resolutions: give at least one".into());
    }
    let mut blocks = Vec::new();
    for &r in resolutions {
        blocks.extend(nas::blocks::space_blocks(width, r).map_err(|e| format!("--resolutions {r}: {e}"))?);
    }
    let options = timing.options(seed)?;
    let target = llvm_backend::Target::host();
    let (device, measuring) = if gpu {
        ("wgpu, the first GPU adapter".to_string(), format!("{} timed runs after {} warm-up, GPU timestamps", options.runs, options.warmup))
    } else {
        (format!("host {} ({}), 1 thread", cpu_name(), target.cpu), timing.describe())
    };
    let header = vec![
        format!("chanasc lut build: ofa-mbv3 w{width:?}, resolutions {resolutions:?}, default schedules"),
        format!("{device}; {measuring}"),
        "latency of a block = time of its tensor programs per run (no input/output copies), ms".into(),
        "Overhead-input:RxRx3-output:1000 = a whole network's run beyond its tensor programs (image in, result out, the call), measured on the smallest network at R; predictions add it".into(),
    ];
    let start = Instant::now();
    let mut measurer: Box<dyn nas::BlockMeasurer> = if gpu {
        Box::new(nas::GpuMeasurer::new(options).map_err(|e| e.to_string())?)
    } else {
        Box::new(nas::HostMeasurer::new(options, timing.retries))
    };
    let mut progress: Option<Progress> = None;
    let report = build_table(output, &blocks, measurer.as_mut(), build, &header, &mut |p| {
        let bar = progress.get_or_insert_with(|| Progress::new(p.total as u64, "lut build"));
        bar.update(p.done as u64, p.measured as u64, p.current.unwrap_or("done"));
    })
    .map_err(|e| e.to_string())?;
    if let Some(p) = &progress {
        p.finish();
    }
    println!(
        "{}: {} entries ({} measured now{}, {} already there{}) in {:.1} s; schedules in {}",
        output.display(),
        report.entries,
        report.measured,
        if build.remeasure { format!(", {} of them faster than before and replaced", report.replaced) } else { String::new() },
        report.reused,
        if report.missing > 0 { format!(", {} still to measure: run again", report.missing) } else { String::new() },
        start.elapsed().as_secs_f64(),
        schedules_path(output).display()
    );
    Ok(())
}

/// The CPU's model name, for the record.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A network compiled and loaded for timing.
pub fn load_network(arch: &ArchConfig, width: f64, options: &MeasureOptions) -> CliResult<HostModel> {
    let graph = nas::build_graph(arch, width, &mut nas::RandomWeights::new(options.seed)).map_err(|e| e.to_string())?;
    HostModel::compile(&graph, options.seed).map_err(|e| e.to_string())
}

/// One timing of a network: the median wall time of its runs, as blocks are timed.
fn time_network(model: &HostModel, options: &MeasureOptions, retries: usize, flush: &CacheFlush) -> CliResult<(f64, Option<f64>)> {
    let (t, _) = model.time_quietly(options.runs, options.warmup, flush, retries).map_err(|e| e.to_string())?;
    Ok((t.wall.median, t.other_load))
}

fn lut_check(
    lut: &[PathBuf],
    samples: usize,
    width: f64,
    seed: u64,
    resolutions: &[u32],
    timing: &TimingArgs,
    passes: usize,
) -> CliResult<()> {
    check_arch("host")?;
    if samples == 0 || passes == 0 {
        return Err("--samples and --passes must be at least 1".into());
    }
    let table = load_tables(lut)?;
    let resolutions = covered_resolutions(&table, width, resolutions, lut)?;
    let options = timing.options(seed)?;
    let flush = CacheFlush::new(options.flush_bytes);
    let mut rng = nas::rng::SplitMix64::new(seed);
    let archs: Vec<ArchConfig> = (0..samples).map(|_| ArchConfig::sample(&mut rng, &resolutions).normalized()).collect();
    let predicted = archs
        .iter()
        .map(|a| nas::decompose(a, width).and_then(|b| table.predict(&b)).map_err(|e| format!("{}: {e}", names(lut))))
        .collect::<CliResult<Vec<f64>>>()?;
    let start = Instant::now();
    let mut progress = Progress::new((samples * passes) as u64, "lut check");
    // Every network is compiled and loaded once, then timed in each pass; a network keeps
    // its fastest pass (the passes are minutes apart, so a busy spell of other processes
    // rarely covers all of them), as a table built with --remeasure keeps blocks'.
    let mut models = Vec::with_capacity(samples);
    let mut measured = vec![f64::INFINITY; samples];
    let mut others: Vec<Option<f64>> = vec![None; samples];
    for pass in 0..passes {
        for (i, a) in archs.iter().enumerate() {
            let step = (pass * samples + i) as u64;
            progress.update(step, step, &format!("pass {} {}", pass + 1, a.to_compact()));
            if pass == 0 {
                models.push(load_network(a, width, &options)?);
            }
            let (ms, load) = time_network(&models[i], &options, timing.retries, &flush)?;
            if ms < measured[i] {
                measured[i] = ms;
                others[i] = load;
            }
        }
    }
    progress.finish();
    println!("{:<56} {:>12} {:>12} {:>8} {:>7}", "arch", "predicted_ms", "measured_ms", "error_%", "others");
    let mut rows = Vec::new();
    for (i, a) in archs.iter().enumerate() {
        let (p, m) = (predicted[i], measured[i]);
        let err = (p - m) / m * 100.0;
        let others = others[i].map_or("-".to_string(), |l| format!("{l:.2}"));
        println!("{:<56} {p:>12.4} {m:>12.4} {err:>+8.2} {others:>7}", a.to_compact());
        rows.push(err);
    }
    let mut abs: Vec<f64> = rows.iter().map(|e| e.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let median = if abs.len() % 2 == 1 { abs[abs.len() / 2] } else { (abs[abs.len() / 2 - 1] + abs[abs.len() / 2]) / 2.0 };
    let mean_signed = rows.iter().sum::<f64>() / rows.len() as f64;
    println!("others: CPU cores other processes kept busy while the network's kept timing ran");
    println!(
        "{} archs (resolutions {resolutions:?}, seed {seed}): median |error| {median:.2} %, max |error| {:.2} %, mean signed error {mean_signed:+.2} % ({:.0} s; {}; fastest of {passes} passes)",
        rows.len(),
        abs.last().copied().unwrap_or(0.0),
        start.elapsed().as_secs_f64(),
        timing.describe()
    );
    Ok(())
}

fn lut_show(lut: &[PathBuf], width: f64) -> CliResult<()> {
    let table = load_tables(lut)?;
    println!("{}: {} entries", names(lut), table.entries.len());
    for h in &table.header {
        println!("# {h}");
    }
    println!("{:>4} {:>14} {:>12} {:>12} {:>12}", "r", "space blocks", "min net ms", "max net ms", "overhead ms");
    for r in PREDICTOR_RESOLUTIONS {
        let blocks = nas::blocks::space_blocks(width, r).map_err(|e| e.to_string())?;
        let have = blocks.iter().filter(|b| table.get(b).is_some()).count();
        let net = |a: ArchConfig| -> String {
            nas::decompose(&a, width).ok().and_then(|b| table.predict(&b).ok()).map_or("-".into(), |ms| format!("{ms:.4}"))
        };
        let overhead = table.entries.get(&nas::lut::overhead_key(r, 1000)).map_or("-".into(), |e| format!("{:.4}", e.mean));
        println!(
            "{r:>4} {:>14} {:>12} {:>12} {overhead:>12}",
            format!("{have}/{}", blocks.len()),
            net(ArchConfig::min(r)),
            net(ArchConfig::max(r))
        );
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> CliResult<()> {
    nas::lut::write_atomic(path, bytes).map_err(|e| e.to_string())
}

pub fn search(args: SearchArgs) -> CliResult<()> {
    if args.space == "fmnist-mbv3" {
        return crate::supernet_search_cli::search(args);
    }
    check_space(&args.space, args.width)?;
    if !args.baseline {
        return crate::cosearch_cli::cosearch(args);
    }
    if args.compare_baseline || args.records.is_some() || !args.default_lut.is_empty() || args.search_only {
        return Err(
            "--compare-baseline, --records, --default-lut and --search-only are options of the co-search (search without --baseline)"
                .into(),
        );
    }
    check_arch(&args.arch)?;
    if args.lut.is_empty() {
        return Err(
            "--lut TABLE.yaml is needed: the baseline predicts latency from a table of block latencies (build one with chanasc lut build)"
                .into(),
        );
    }
    if !(args.oracle_timeout > 0.0 && args.oracle_timeout.is_finite()) {
        return Err(format!("--oracle-timeout {}: must be a positive number of seconds", args.oracle_timeout));
    }
    if args.accuracy.starts_with("predictor:") && args.width != 1.2 {
        return Err(format!("OFA's accuracy predictor is for the w1.2 space; --width is {}", args.width));
    }
    let options = args.timing.options(args.seed)?;
    let table = load_tables(&args.lut)?;
    let resolutions = covered_resolutions(&table, args.width, &args.resolutions, &args.lut)?;
    let oracle_options = nas::OracleOptions { timeout: Duration::from_secs_f64(args.oracle_timeout) };
    let mut oracle = crate::supernet_cli::parse_oracle(&args.accuracy, &oracle_options)?;
    if !(0.0..100.0).contains(&args.margin) {
        return Err(format!("--margin {}: must be a percentage in [0, 100)", args.margin));
    }
    let limit = args.latency_ms * (1.0 - args.margin / 100.0);
    let mut config = EvolutionConfig::ofa(limit, resolutions.clone(), args.seed);
    config.population = args.population();
    config.generations = args.generations();
    config.gap_lambda = args.gap_weight;
    config.restarts = args.restarts.max(1);
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;

    let width = args.width;
    let latency = |a: &ArchConfig| -> nas::Result<f64> { table.predict(&nas::decompose(a, width)?) };
    let start = Instant::now();
    let mut progress = Progress::new(config.steps() as u64 - 1, "search");
    let result = evolve(&config, oracle.as_mut(), &latency, &mut |g| {
        progress.update(
            g.generation as u64,
            g.generation as u64,
            &format!(
                "best {:.6} at {:.3} ms, population mean {:.6}, {} evaluated",
                g.best.score, g.best.latency_ms, g.population_mean, g.evaluated
            ),
        );
    })
    .map_err(|e| e.to_string())?;
    progress.finish();
    let search_seconds = start.elapsed().as_secs_f64();
    let best = &result.best;
    eprintln!(
        "search: {} generations of {} in {:.1} s, {} architectures evaluated; best {} val_acc {:.6} predicted {:.3} ms",
        args.generations(),
        args.population(),
        search_seconds,
        result.evaluated.len(),
        best.arch.to_compact(),
        best.accuracy.val,
        best.latency_ms
    );

    // The chosen network: arch config, ONNX (random weights), compiled for this machine.
    let out = &args.output;
    write_file(&out.join("arch.json"), format!("{}\n", best.arch.to_json()).as_bytes())?;
    let onnx = nas::build_network(&best.arch, width, &mut nas::RandomWeights::new(args.seed)).map_err(|e| e.to_string())?;
    write_file(&out.join("net.onnx"), &onnx)?;
    let graph = frontend::import_model(&onnx).map_err(|e| format!("importing the chosen network: {e}"))?;
    let compile_start = Instant::now();
    let report = nas::measure::compile_for_host(&graph, &out.join("compiled")).map_err(|e| e.to_string())?;
    let compile_seconds = compile_start.elapsed().as_secs_f64();
    eprintln!("compiled the chosen network into {}/ in {compile_seconds:.1} s; measuring it", report.dir.display());
    // Timed in three passes a few seconds apart; the fastest counts, as in lut check.
    let model = HostModel::compile(&graph, options.seed).map_err(|e| e.to_string())?;
    let flush = CacheFlush::new(options.flush_bytes);
    let (mut measured_ms, mut measured_kernels) = (f64::INFINITY, f64::INFINITY);
    for pass in 0..3 {
        if pass > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        let (t, _) = model.time_quietly(options.runs, options.warmup, &flush, args.timing.retries).map_err(|e| e.to_string())?;
        if t.wall.median < measured_ms {
            (measured_ms, measured_kernels) = (t.wall.median, t.kernels.median);
        }
    }

    let log: String = result.history.iter().map(|g| nas::report::generation_json(g) + "\n").collect();
    write_file(&out.join("search_log.jsonl"), log.as_bytes())?;
    write_file(&out.join("population.csv"), nas::report::population_csv(&result.evaluated).as_bytes())?;
    let title = format!("baseline search, w{width:?} {} budget {} ms", args.arch, args.latency_ms);
    write_file(&out.join("pareto.svg"), nas::report::pareto_svg(&result.evaluated, args.latency_ms, Some(limit), best, &title).as_bytes())?;
    let within = measured_ms <= args.latency_ms;
    let front = nas::evolution::pareto_front(&result.evaluated.iter().map(|c| (c.latency_ms, c.accuracy.val)).collect::<Vec<_>>());
    let summary = format!(
        "# Baseline search (schedule-blind, OFA's evolutionary search)\n\n\
         | | |\n|---|---|\n\
         | space | ofa-mbv3, width {width:?} |\n\
         | target | host: {} ({}), 1 thread, default schedules |\n\
         | latency budget | {} ms{} |\n\
         | latency table | {} |\n\
         | accuracy oracle | `{}` |\n\
         | resolutions searched | {:?} |\n\
         | population, generations, seed | {}, {}, {} |\n\
         | architectures evaluated | {} ({} on the Pareto front) |\n\
         | search time | {:.1} s |\n\n\
         ## Chosen architecture\n\n\
         `{}`\n\n```json\n{}\n```\n\n\
         | | |\n|---|---|\n\
         | validation accuracy (oracle) | {:.6} |\n\
         | predicted latency (sum of block means and run overhead) | {:.3} ms |\n\
         | measured latency (compiled winner, median) | {:.3} ms ({:.3} ms in its tensor programs) |\n\
         | measured vs predicted | {:+.2} % |\n\
         | within the budget | {} |\n\n\
         Measured as the table was: {}; the fastest of three passes a few seconds apart.\n\n\
         `net.onnx` has seeded random weights (seed {}): the accuracy is the oracle's, for the\n\
         subnet with the supernet's weights, which this search does not have. `compiled/` holds\n\
         it compiled for this machine (`compiled/model --bench 100` runs it; {} tensor programs).\n\
         Also here: `population.csv` (every evaluated architecture), `pareto.svg`, `search_log.jsonl`.\n",
        cpu_name(),
        llvm_backend::Target::host().cpu,
        args.latency_ms,
        if args.margin > 0.0 {
            format!(" (searched with a {}% margin: predicted latency at most {limit:.3} ms)", args.margin)
        } else {
            String::new()
        },
        names(&args.lut),
        args.accuracy,
        resolutions,
        args.population(),
        args.generations(),
        args.seed,
        result.evaluated.len(),
        front.iter().filter(|f| **f).count(),
        search_seconds,
        best.arch.to_compact(),
        best.arch.to_json(),
        best.accuracy.val,
        best.latency_ms,
        measured_ms,
        measured_kernels,
        (best.latency_ms - measured_ms) / measured_ms * 100.0,
        if within { "yes".to_string() } else { format!("NO: measured {measured_ms:.3} ms is over the budget of {} ms", args.latency_ms) },
        args.timing.describe(),
        args.seed,
        report.programs,
    );
    write_file(&out.join("summary.md"), summary.as_bytes())?;
    println!("chosen: {}", best.arch.to_compact());
    println!("val_acc={:.6}", best.accuracy.val);
    println!("predicted_latency_ms={:.6}", best.latency_ms);
    println!("measured_latency_ms={measured_ms:.6}");
    println!("search_seconds={search_seconds:.1}");
    println!("wrote {}/: arch.json net.onnx compiled/ population.csv pareto.svg search_log.jsonl summary.md", out.display());
    if !within {
        eprintln!(
            "warning: the chosen network's measured latency {measured_ms:.3} ms is over the budget of {} ms (predicted {:.3} ms)",
            args.latency_ms, best.latency_ms
        );
    }
    Ok(())
}

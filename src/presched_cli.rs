//! `lut build --tune-trials N` (block-based pre-scheduling: tune every distinct task of the
//! space's blocks, then measure every block with default and with tuned schedules), its
//! shards (`--shard I/N --phase tune|measure`), and `lut merge`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use nas::preschedule::{self, HostBackend, Outputs, Phase, Report, Shard, SpacePlan};

use crate::search_cli::{cpu_name, hms, Progress, TimingArgs};

type CliResult<T> = Result<T, String>;

/// Pre-scheduling's own options of `lut build`.
#[derive(Args, Clone, Debug)]
pub struct PreschedArgs {
    /// The tuning records: written by tuning (default: TABLE.records.jsonl beside the table)
    /// and read for the tuned table. With --phase measure, every tune shard's records file
    /// (comma-separated or repeated), all read as one.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    records: Vec<PathBuf>,
    /// Stop tuning after this many seconds (the tables are still measured).
    #[arg(long)]
    time_budget: Option<f64>,
    /// Build shard I of N (0 <= I < N), in two phases: every shard with --phase tune, then
    /// every shard with --phase measure and all the tune shards' records, then `lut merge`.
    #[arg(long)]
    shard: Option<String>,
    /// all (tune, then measure), tune or measure.
    #[arg(long, default_value = "all")]
    phase: String,
    /// Print the space's distinct blocks and tasks (and each shard's share), then stop.
    #[arg(long)]
    dry_run: bool,
    /// Tuning candidates measured per round of a task.
    #[arg(long, default_value_t = 8)]
    tune_batch: usize,
    /// Share of each batch chosen at random rather than by the cost model.
    #[arg(long, default_value_t = 0.2)]
    tune_epsilon: f64,
    /// Time limit of one tuning candidate's run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    candidate_timeout: f64,
}

impl PreschedArgs {
    /// Whether any pre-scheduling option was given.
    pub fn requested(&self) -> bool {
        self.shard.is_some() || self.phase != "all" || self.dry_run || !self.records.is_empty() || self.time_budget.is_some()
    }
}

/// The covering networks' tasks, and the counts of each resolution.
fn plan_space(width: f64, resolutions: &[u32]) -> CliResult<(SpacePlan, Vec<[usize; 4]>, f64)> {
    for &r in resolutions {
        nas::blocks::space_blocks(width, r).map_err(|e| format!("--resolutions {r}: {e}"))?;
    }
    let start = Instant::now();
    let mut progress: Option<Progress> = None;
    let plan = SpacePlan::extract(width, resolutions, &llvm_backend::Target::host(), &mut |done, total| {
        let bar = progress.get_or_insert_with(|| Progress::new(total as u64, "tasks of the covering networks"));
        bar.update(done as u64, done as u64, "");
    })
    .map_err(|e| e.to_string())?;
    if let Some(p) = &progress {
        p.finish();
    }
    let counts = resolutions
        .iter()
        .map(|&r| {
            let (b, t, p) = plan.count_of(r).map_err(|e| e.to_string())?;
            Ok([r as usize, b, t, p])
        })
        .collect::<CliResult<Vec<_>>>()?;
    Ok((plan, counts, start.elapsed().as_secs_f64()))
}

#[allow(clippy::too_many_arguments)]
pub fn lut_build_tuned(
    width: f64,
    resolutions: &[u32],
    timing: &TimingArgs,
    tune_trials: usize,
    a: &PreschedArgs,
    build: &nas::lut_build::BuildOptions,
    seed: u64,
    output: &Path,
) -> CliResult<()> {
    if tune_trials == 0 && !a.dry_run {
        return Err(
            "--records, --time-budget, --shard and --phase are options of pre-scheduling: give --tune-trials N (trials per task)".into()
        );
    }
    if resolutions.is_empty() {
        return Err("--resolutions: give at least one".into());
    }
    let phase = Phase::parse(&a.phase)?;
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    if shard.is_some() && phase == Phase::All && !a.dry_run {
        return Err("--shard runs one phase of a sharded build: --phase tune on every shard, then --phase measure on every shard with all the tune shards' records (--records A.jsonl,B.jsonl,...), then chanasc lut merge".into());
    }
    if let Some(t) = a.time_budget {
        if !(t > 0.0 && t.is_finite()) {
            return Err(format!("--time-budget {t}: must be a positive number of seconds"));
        }
    }
    if build.remeasure {
        return Err(
            "--remeasure is for default-schedule tables; a pre-scheduled build measures its tuned table anew whenever it tunes".into()
        );
    }
    if build.max_new == Some(0) {
        return Err("--max-blocks 0: nothing to measure".into());
    }
    let options = timing.options(seed)?;
    let target = llvm_backend::Target::host();
    let (plan, per_r, extract_s) = plan_space(width, resolutions)?;
    println!(
        "space ofa-mbv3 w{width:?}, resolutions {resolutions:?}: {} distinct blocks in {} covering networks, {} distinct tasks of {} tensor programs (found in {extract_s:.1} s)",
        plan.blocks.len(),
        plan.networks.len(),
        plan.tasks.len(),
        plan.programs()
    );
    for [r, b, t, p] in &per_r {
        println!("  r={r}: {b} blocks, {t} distinct tasks of {p} programs");
    }
    if let Some(s) = shard {
        println!("shard {s}: tunes {} tasks, measures {} networks", plan.task_shard(s).len(), plan.network_shard(s).len());
    }
    if a.dry_run {
        return Ok(());
    }
    let records_out = if phase == Phase::Measure { None } else { a.records.first().map(PathBuf::as_path) };
    let outputs = Outputs::for_table(output, records_out);
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let header = vec![
        format!("chanasc lut build: ofa-mbv3 w{width:?}, resolutions {resolutions:?}, pre-scheduled"),
        format!("host {} ({}), 1 thread; {}", cpu_name(), target.cpu, timing.describe()),
        "latency of a block = time of its tensor programs per run (no input/output copies), ms".into(),
        "Overhead-input:RxRx3-output:1000 = a whole network's run beyond its tensor programs (image in, result out, the call), measured on the smallest network at R; predictions add it".into(),
    ];
    let report = Report {
        space: "ofa-mbv3".into(),
        width,
        resolutions: resolutions.to_vec(),
        target: tune::task::target_id(&target),
        space_networks: plan.networks.len(),
        space_blocks: plan.blocks.len(),
        space_tasks: plan.tasks.len(),
        space_programs: plan.programs(),
        per_resolution: per_r,
        ..Default::default()
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut backend = HostBackend {
        target: target.clone(),
        worker: vec![exe.display().to_string(), "tune-worker".into()],
        timeout: Duration::from_secs_f64(a.candidate_timeout.max(0.1)),
        seed,
        batch: a.tune_batch.max(1),
        epsilon: a.tune_epsilon.clamp(0.0, 1.0),
        progress: Box::new(tune::progress::Bar::stderr()),
        default: nas::measure::HostNetworkMeasurer::new(options.clone(), timing.retries),
        tuned: nas::measure::HostNetworkMeasurer::new(options, timing.retries),
    };
    let opts = preschedule::Options {
        trials_per_task: tune_trials,
        time_budget: a.time_budget.map(Duration::from_secs_f64),
        save_every: build.save_every.max(1),
        max_networks: build.max_new,
        vector_width: target.vector_width(),
    };
    let mut bar: Option<(&'static str, Progress)> = None;
    let summary =
        preschedule::preschedule(&plan, shard, phase, &mut backend, &opts, &outputs, &a.records, &header, report, &mut |ev| match ev {
            preschedule::Event::Phase(line) => {
                if let Some((_, b)) = bar.take() {
                    b.finish();
                }
                eprintln!("{line}");
            }
            preschedule::Event::Build(which, p) => {
                if bar.as_ref().is_none_or(|(w, _)| *w != which) {
                    if let Some((_, b)) = bar.take() {
                        b.finish();
                    }
                    bar = Some((which, Progress::new(p.total as u64, &format!("{which} table (networks)"))));
                }
                if let Some((_, b)) = bar.as_mut() {
                    b.update(p.done as u64, p.measured as u64, p.current.unwrap_or("done"));
                }
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    let run = &summary.run;
    let rep = &summary.report;
    if phase != Phase::Measure {
        let speedup = match (rep.tasks_default_ms, rep.tasks_best_ms) {
            (Some(d), Some(b)) if b > 0.0 => format!(" ({:.2}x)", d / b),
            _ => String::new(),
        };
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
        println!(
            "tuning: {} tasks, {} trials in this run ({} failed, {} recorded before) in {:.1} s; {} trials recorded; sum over the tasks of weight x latency: default {}, tuned {}{speedup}; records {}",
            run.tasks,
            run.trials,
            run.failures,
            summary.recorded_before,
            run.tuning_s,
            rep.trials_recorded,
            ms(rep.tasks_default_ms),
            ms(rep.tasks_best_ms),
            outputs.records.display()
        );
    }
    for (name, path, b, secs) in [
        ("default table", &outputs.default_table, &summary.default_build, run.default_measure_s),
        ("tuned table", &outputs.table, &summary.tuned_build, run.tuned_measure_s),
    ] {
        if let Some(b) = b {
            println!(
                "{name}: {}: {} entries from {} covering networks ({} measured now, {} already there{}) in {secs:.1} s",
                path.display(),
                b.entries,
                b.measured + b.reused,
                b.measured,
                b.reused,
                if b.missing > 0 { format!(", {} still to measure: run again", b.missing) } else { String::new() }
            );
        }
    }
    let (trials, tuning, measuring, wall) = rep.totals();
    println!(
        "pre-scheduling cost: this run {} wall; all runs so far: {trials} trials, tuning {}, measuring {}, wall {} (report {})",
        hms(run.wall_s),
        hms(tuning),
        hms(measuring),
        hms(wall),
        outputs.report.display()
    );
    Ok(())
}

pub fn lut_merge(inputs: &[PathBuf], records: Option<&Path>, output: &Path) -> CliResult<()> {
    let jsonl = |p: &PathBuf| p.extension().is_some_and(|e| e == "jsonl");
    if inputs.iter().all(jsonl) {
        let (n, warnings) = preschedule::merge_records(inputs, output).map_err(|e| e.to_string())?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        println!("{}: {n} records from {} files", output.display(), inputs.len());
        return Ok(());
    }
    if let Some(p) = inputs.iter().find(|p| jsonl(p)) {
        return Err(format!("{}: merge either tables (with their companions) or records files, not both", p.display()));
    }
    if inputs.iter().any(|p| p == output) {
        return Err(format!("-o {}: the output is one of the inputs", output.display()));
    }
    let (m, warnings) = preschedule::merge_outputs(inputs, output, records).map_err(|e| e.to_string())?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!("{}: {} entries from {} tables", output.display(), m.entries, inputs.len());
    if !m.repeated.is_empty() {
        println!("  {} keys were in more than one table (their measurements pooled), e.g. {}", m.repeated.len(), m.repeated[0]);
    }
    if let Some(o) = &m.outputs {
        if let Some(n) = m.default_entries {
            println!("{}: {n} entries", o.default_table.display());
        }
        if m.records > 0 {
            println!("{}: {} records", o.records.display(), m.records);
        }
        if !m.shards.is_empty() {
            println!("{}: shards {}", o.report.display(), m.shards.iter().map(Shard::to_string).collect::<Vec<_>>().join(" "));
        }
    }
    if !m.missing_shards.is_empty() {
        eprintln!("warning: no input ran {}: the merged table lacks their share", m.missing_shards.join(", "));
    }
    Ok(())
}

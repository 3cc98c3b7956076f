//! `chanasc tune` (schedule search), the hidden `chanasc tune-worker` it runs candidates in,
//! and reading `--records` for compile and bench.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tune::progress::{Bar, Progress};

#[derive(Args)]
pub struct TuneArgs {
    model: PathBuf,
    /// Target: host (this machine), x86-64 or aarch64 (these two need --remote unless they
    /// are this machine), or wgpu (the GPU schedules, measured on this machine's first GPU
    /// adapter; --trials is spread evenly over the tasks).
    #[arg(long, default_value = "host")]
    arch: String,
    /// LLVM CPU name (default: this machine's CPU; aarch64: generic).
    #[arg(long)]
    cpu: Option<String>,
    /// New measurements in this run, over all tasks (0: list the tasks only).
    #[arg(long, default_value_t = 200)]
    trials: usize,
    /// The records file (JSON lines): read to resume and to skip what is measured, appended
    /// to with every measurement.
    #[arg(long)]
    records: PathBuf,
    /// Stop after this many seconds.
    #[arg(long)]
    time_budget: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The tuning-curve plot (SVG); default: the records file with the extension .svg.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Candidates measured per round of a task.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Share of each batch chosen at random rather than by the cost model.
    #[arg(long, default_value_t = 0.2)]
    epsilon: f64,
    /// Time limit of one candidate's run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Tune the programs of the unoptimized graph (as `compile --no-graph-opt` builds it).
    #[arg(long)]
    no_graph_opt: bool,
    /// Measure on this machine over SSH ([user@]host) instead of locally.
    #[arg(long)]
    remote: Option<String>,
    /// An ssh/scp option for --remote, as for `-o` (Port=2222, IdentityFile=...); repeatable.
    #[arg(long = "ssh-option")]
    ssh_options: Vec<String>,
    /// The remote working folder.
    #[arg(long, default_value = "/tmp/chanasc-tune")]
    remote_dir: String,
    /// The worker binary copied to the remote (default: chanasc-tune-worker beside this
    /// executable when built, else this executable).
    #[arg(long)]
    remote_worker: Option<PathBuf>,
}

/// The hidden `chanasc tune-worker`: serves one measurement job on stdin.
pub fn worker() -> std::process::ExitCode {
    std::process::ExitCode::from(tune::worker::main() as u8)
}

/// The best recorded schedules of `path`, corrupt lines reported on stderr.
pub fn load_records(path: &Path) -> Result<tune::RecordSchedules, String> {
    let file = tune::RecordFile::open(path).map_err(|e| e.to_string())?;
    for w in &file.warnings {
        eprintln!("warning: {w}");
    }
    Ok(tune::RecordSchedules::new(&file))
}

fn fmt_ms(s: Option<f64>) -> String {
    s.map(|s| format!("{:.4}", s * 1e3)).unwrap_or_else(|| "-".into())
}

pub fn tune(a: TuneArgs) -> Result<(), String> {
    let g = super::load(&a.model)?;
    if a.arch == "wgpu" {
        return tune_wgpu(&a, &g);
    }
    let target =
        if a.arch == "host" { super::parse_target("x86-64", a.cpu.as_deref())? } else { super::parse_target(&a.arch, a.cpu.as_deref())? };
    if target.arch != llvm_backend::Target::host().arch && a.remote.is_none() {
        return Err(format!("measuring for --arch {} needs --remote", a.arch));
    }
    let tasks = tune::extract_tasks(&g, &target, !a.no_graph_opt).map_err(|e| e.to_string())?;
    println!(
        "{} tasks ({} tensor programs) of {} on {}:",
        tasks.len(),
        tasks.iter().map(|t| t.weight).sum::<usize>(),
        a.model.display(),
        tune::task::target_id(&target)
    );
    println!("  {:16} {:>6} {:>10} {:>18}  program", "key", "weight", "MFLOP", "schedule space");
    for t in &tasks {
        let space = passes::schedule::Space::new(&t.func, target.vector_width(), &t.constants);
        let size = format!("{} {:.1e}", space.kind(), space.size() as f64);
        println!("  {:16} {:>6} {:>10.3} {:>18}  {}", t.key, t.weight, t.flops as f64 / 1e6, size, t.name);
    }
    let mut records = tune::RecordFile::open(&a.records).map_err(|e| e.to_string())?;
    for w in &records.warnings {
        eprintln!("warning: {w}");
    }
    if a.trials == 0 {
        return plot(&a, &tasks, &records, &target);
    }
    let timeout = Duration::from_secs_f64(a.timeout.max(0.1));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut measurer: Box<dyn tune::Measurer> = match &a.remote {
        None => {
            let mut m = tune::LocalMeasurer::new(target.clone(), vec![exe.display().to_string(), "tune-worker".into()])?;
            m.timeout = timeout;
            Box::new(m)
        }
        Some(dest) => {
            let beside = exe.with_file_name("chanasc-tune-worker");
            let worker = a.remote_worker.clone().unwrap_or(if beside.exists() { beside } else { exe.clone() });
            let args =
                if worker.file_name().is_some_and(|n| n == "chanasc-tune-worker") { vec![] } else { vec!["tune-worker".to_string()] };
            let mut m = tune::SshMeasurer::new(target.clone(), dest, &a.remote_dir, worker, args)?;
            m.options = a.ssh_options.clone();
            m.timeout = timeout;
            Box::new(m)
        }
    };
    let mut opts = tune::TuneOptions::new(a.trials, target.vector_width());
    opts.time_budget = a.time_budget.map(Duration::from_secs_f64);
    opts.seed = a.seed;
    opts.batch = a.batch;
    opts.epsilon = a.epsilon.clamp(0.0, 1.0);
    let mut bar = Bar::stderr();
    let report = tune::tune(&tasks, &mut records, measurer.as_mut(), &opts, &mut bar).map_err(|e| e.to_string())?;
    bar.finish();

    println!("tuned {} trials in {:.1} s ({} failed):", report.trials, report.elapsed.as_secs_f64(), report.failures);
    println!("  {:>10} {:>10} {:>7} {:>6} {:>7}  program", "default ms", "best ms", "speedup", "weight", "trials");
    let mut rows: Vec<&tune::tuner::TaskResult> = report.tasks.iter().collect();
    rows.sort_by(|x, y| (y.best_s.unwrap_or(0.0) * y.weight as f64).total_cmp(&(x.best_s.unwrap_or(0.0) * x.weight as f64)));
    for t in rows {
        let speedup = match (t.default_s, t.best_s) {
            (Some(d), Some(b)) if b > 0.0 => format!("{:.2}x", d / b),
            _ => "-".into(),
        };
        println!(
            "  {:>10} {:>10} {:>7} {:>6} {:>7}  {}",
            fmt_ms(t.default_s),
            fmt_ms(t.best_s),
            speedup,
            t.weight,
            t.recorded + t.trials,
            t.name
        );
    }
    println!("total weighted latency: default {} ms, tuned {} ms", fmt_ms(report.default_total_s), fmt_ms(report.best_total_s));
    plot(&a, &tasks, &records, &target)
}

/// `tune --arch wgpu`: every task's GPU schedules, up to its share of `--trials`.
fn tune_wgpu(a: &TuneArgs, g: &ir::Graph) -> Result<(), String> {
    let tasks = tune::gpu::gpu_tasks(g).map_err(|e| e.to_string())?;
    println!("{} tasks ({} tensor programs) of {} on wgpu", tasks.len(), tasks.iter().map(|t| t.weight).sum::<usize>(), a.model.display());
    if a.trials == 0 {
        for t in &tasks {
            println!("  {:16} {:>6} {:>10.3}  {}", t.key, t.weight, t.flops as f64 / 1e6, t.name);
        }
        return Ok(());
    }
    let mut records = tune::RecordFile::open(&a.records).map_err(|e| e.to_string())?;
    let per_task = a.trials.div_ceil(tasks.len().max(1));
    let start = std::time::Instant::now();
    let n = tasks.len();
    let results = tune::gpu::tune_wgpu(&tasks, &mut records, per_task, &mut |k, t| eprint!("\r[{}/{n}] {:60.60}", k + 1, t.name))?;
    eprintln!();
    let measured: usize = results.iter().map(|r| r.measured).sum();
    let failed: usize = results.iter().map(|r| r.failed).sum();
    println!("measured {measured} schedules in {:.1} s ({failed} failed):", start.elapsed().as_secs_f64());
    println!("  {:>10} {:>10} {:>7} {:>6}  program", "default ms", "best ms", "speedup", "weight");
    let (mut default_total, mut best_total) = (0.0, 0.0);
    for r in &results {
        let speedup = match (r.default_s, r.best_s) {
            (Some(d), Some(b)) if b > 0.0 => format!("{:.2}x", d / b),
            _ => "-".into(),
        };
        default_total += r.default_s.unwrap_or(0.0) * r.weight as f64;
        best_total += r.best_s.unwrap_or(0.0) * r.weight as f64;
        println!("  {:>10} {:>10} {:>7} {:>6}  {}", fmt_ms(r.default_s), fmt_ms(r.best_s), speedup, r.weight, r.name);
    }
    println!("total weighted latency: default {} ms, tuned {} ms", fmt_ms(Some(default_total)), fmt_ms(Some(best_total)));
    println!("records: {}", a.records.display());
    Ok(())
}

/// Writes the tuning curve of the whole records file (every run so far) for these tasks.
fn plot(a: &TuneArgs, tasks: &[tune::Task], records: &tune::RecordFile, target: &llvm_backend::Target) -> Result<(), String> {
    let (curve, default_total) = tune::plot::records_curve(tasks, records, target.vector_width());
    if curve.is_empty() {
        return Ok(());
    }
    let path = a.plot.clone().unwrap_or_else(|| a.records.with_extension("svg"));
    let title = format!("{} on {}", a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(), target.cpu);
    write_atomic(&path, tune::plot::tuning_curve_svg(&curve, default_total, &title).as_bytes())?;
    println!("records: {}  tuning curve: {}", a.records.display(), path.display());
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| format!("{}: {e}", path.display()))
}

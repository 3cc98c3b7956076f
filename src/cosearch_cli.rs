//! `chanasc search` without `--baseline`: the co-search (CHaNAS) on a pre-scheduled block
//! table, the winner compiled with the recorded schedules of its tasks, and with
//! `--compare-baseline` the schedule-blind baseline beside it, both measured.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nas::cosearch::{cosearch as run_cosearch, CachedOracle, CoSearchConfig, CoSearchResult, Partition};
use nas::evolution::{evolve, Candidate, EvolutionConfig, EvolutionResult, GenerationLog};
use nas::measure::{CacheFlush, HostModel};
use nas::preschedule::{default_table_path, records_path};
use nas::{ArchConfig, LatencyTable};

use crate::search_cli::{check_arch, covered_resolutions, cpu_name, load_tables, names, write_file, Progress, SearchArgs};

type CliResult<T> = Result<T, String>;

/// The quantile of partition samples' scores that ranks partitions (see nas::cosearch).
const QUANTILE: f64 = 0.9;

/// A network to deploy and measure: its arch, where its artifacts go, and whether it takes
/// the tuned schedules.
struct Deploy {
    name: &'static str,
    what: String,
    arch: ArchConfig,
    dir: PathBuf,
    tuned: bool,
    predicted_ms: f64,
    /// Filled by measuring: median wall time (fastest pass) and its tensor programs' part.
    measured_ms: f64,
    kernels_ms: f64,
    tuned_programs: usize,
    programs: usize,
    /// Tasks with a recorded schedule, tasks, and their share of the floating-point operations.
    coverage: Option<(usize, usize, f64)>,
}

fn predict(table: &LatencyTable, arch: &ArchConfig, width: f64) -> nas::Result<f64> {
    table.predict(&nas::decompose(arch, width)?)
}

fn progress_line(g: &GenerationLog) -> String {
    format!("best {:.6} at {:.3} ms, population mean {:.6}, {} evaluated", g.best.score, g.best.latency_ms, g.population_mean, g.evaluated)
}

/// The best usable record of each task of `graph` (what `compile --records` needs to compile
/// it as the search deployed it), as JSON lines; the tasks, those without a record, and the
/// share of the network's floating-point operations in tasks with one.
fn schedules_of(graph: &ir::Graph, records: &tune::RecordFile) -> CliResult<(String, usize, usize, f64)> {
    let tasks = tune::extract_tasks(graph, &llvm_backend::Target::host(), true).map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut missing = 0;
    let (mut flops, mut covered) = (0u64, 0u64);
    for t in &tasks {
        let f = t.flops * t.weight as u64;
        flops += f;
        match records.best(&t.key, &t.target) {
            Some(r) => {
                text.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
                text.push('\n');
                covered += f;
            }
            None => missing += 1,
        }
    }
    Ok((text, tasks.len(), missing, covered as f64 / flops.max(1) as f64))
}

/// The best architecture a probe or search (`runs`) found in partition `i`, if one ran there.
fn best_in(runs: &[(usize, Candidate)], i: usize) -> Option<&Candidate> {
    runs.iter().find(|(j, _)| *j == i).map(|(_, c)| c)
}

fn partitions_csv(r: &CoSearchResult) -> String {
    let mut s =
        String::from("width,r,samples,feasible,share,latency_min_ms,latency_median_ms,latency_max_ms,score_q90,score_median,probe_best_score,searched_best_score,chosen\n");
    for (i, p) in r.partitions.iter().enumerate() {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        s.push_str(&format!(
            "{:?},{},{},{},{:.4},{:.4},{:.4},{:.4},{},{},{},{},{}\n",
            p.partition.width,
            p.partition.r,
            p.samples,
            p.feasible,
            p.share,
            p.latency_min,
            p.latency_median,
            p.latency_max,
            opt(p.score_quantile),
            opt(p.score_median),
            opt(best_in(&r.probes, i).map(|c| c.score)),
            opt(best_in(&r.searched, i).map(|c| c.score)),
            (i == r.chosen) as u8
        ));
    }
    s
}

fn partition_json(r: &CoSearchResult, budget: f64) -> String {
    r.partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({
                "phase": "partition",
                "budget_ms": budget,
                "width": p.partition.width,
                "r": p.partition.r,
                "samples": p.samples,
                "feasible": p.feasible,
                "share": p.share,
                "latency_median_ms": p.latency_median,
                "score_q90": p.score_quantile,
                "best_arch": p.best.as_ref().map(|b| b.arch.to_compact()),
                "probe_best_score": best_in(&r.probes, i).map(|c| c.score),
                "searched_best_arch": best_in(&r.searched, i).map(|c| c.arch.to_compact()),
                "searched_best_score": best_in(&r.searched, i).map(|c| c.score),
                "chosen": i == r.chosen,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn generations_json(search: &str, history: &[GenerationLog]) -> String {
    history
        .iter()
        .map(|g| {
            let mut v: serde_json::Value = serde_json::from_str(&nas::report::generation_json(g)).expect("generation_json is JSON");
            v["phase"] = serde_json::json!(search);
            v.to_string() + "\n"
        })
        .collect()
}

/// `search,arch,val_acc,train_acc,score,latency_ms,tuned_ms,default_ms,on_pareto_front`:
/// latency_ms as the search predicted it (its own table), tuned_ms and default_ms from both.
fn pareto_csv(rows: &[(&str, &[Candidate])], tuned: &LatencyTable, default: Option<&LatencyTable>, width: f64) -> String {
    let mut s = String::from("search,arch,val_acc,train_acc,score,latency_ms,tuned_ms,default_ms,on_pareto_front\n");
    for (name, cands) in rows {
        let front = nas::evolution::pareto_front(&cands.iter().map(|c| (c.latency_ms, c.accuracy.val)).collect::<Vec<_>>());
        for (c, f) in cands.iter().zip(front) {
            let t = predict(tuned, &c.arch, width).map_or(String::new(), |v| format!("{v:.6}"));
            let d = default.and_then(|d| predict(d, &c.arch, width).ok()).map_or(String::new(), |v| format!("{v:.6}"));
            s.push_str(&format!(
                "{name},{},{:.6},{},{:.6},{:.6},{t},{d},{}\n",
                c.arch.to_compact(),
                c.accuracy.val,
                c.accuracy.train.map_or(String::new(), |t| format!("{t:.6}")),
                c.score,
                c.latency_ms,
                f as u8
            ));
        }
    }
    s
}

pub fn cosearch(args: SearchArgs) -> CliResult<()> {
    if !args.search_only {
        check_arch(&args.arch)?;
    }
    if args.lut.is_empty() {
        return Err("--lut TUNED.yaml is needed: the co-search predicts latency from the pre-scheduled block table (chanasc lut build --tune-trials N); --baseline runs the schedule-blind search".into());
    }
    if !(args.oracle_timeout > 0.0 && args.oracle_timeout.is_finite()) {
        return Err(format!("--oracle-timeout {}: must be a positive number of seconds", args.oracle_timeout));
    }
    if args.accuracy.starts_with("predictor:") && args.width != 1.2 {
        return Err(format!("OFA's accuracy predictor is for the w1.2 space; --width is {}", args.width));
    }
    if !(0.0..100.0).contains(&args.margin) {
        return Err(format!("--margin {}: must be a percentage in [0, 100)", args.margin));
    }
    if args.partition_samples == 0 {
        return Err("--partition-samples must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.min_share) {
        return Err(format!("--min-share {}: must be in [0, 1]", args.min_share));
    }
    if !(args.gap_weight >= 0.0 && args.gap_weight.is_finite()) {
        return Err(format!("--gap-weight {}: must be a non-negative number", args.gap_weight));
    }
    let width = args.width;
    let options = args.timing.options(args.seed)?;
    let tuned = load_tables(&args.lut)?;
    let resolutions = covered_resolutions(&tuned, width, &args.resolutions, &args.lut)?;
    let records_file = match &args.records {
        Some(p) => Some(p.clone()),
        None => Some(records_path(&args.lut[0])).filter(|p| p.exists()),
    };
    let records_file = match records_file {
        Some(p) if p.exists() => Some(p),
        Some(p) => return Err(format!("--records {}: no such file", p.display())),
        None if args.search_only => None,
        None => {
            return Err(format!(
                "--records FILE is needed (the tuning records of {}; {} does not exist): the winner is compiled with the schedules recorded for its tasks",
                args.lut[0].display(),
                records_path(&args.lut[0]).display()
            ))
        }
    };
    let records = match &records_file {
        Some(p) => {
            let f = tune::RecordFile::open(p).map_err(|e| e.to_string())?;
            for w in &f.warnings {
                eprintln!("warning: {w}");
            }
            Some(f)
        }
        None => None,
    };
    let default_paths: Vec<PathBuf> =
        if !args.default_lut.is_empty() { args.default_lut.clone() } else { vec![default_table_path(&args.lut[0])] };
    let default_table = if args.compare_baseline {
        if let Some(p) = default_paths.iter().find(|p| !p.exists()) {
            return Err(format!(
                "--compare-baseline needs the default-schedule table of the same blocks: {} does not exist (give --default-lut)",
                p.display()
            ));
        }
        let t = load_tables(&default_paths)?;
        covered_resolutions(&t, width, &resolutions, &default_paths)?;
        Some(t)
    } else {
        None
    };
    let oracle_options = nas::OracleOptions { timeout: Duration::from_secs_f64(args.oracle_timeout) };
    let mut inner = nas::parse_oracle(&args.accuracy, &oracle_options).map_err(|e| e.to_string())?;
    let mut oracle = CachedOracle::new(inner.as_mut());
    let limit = args.latency_ms * (1.0 - args.margin / 100.0);
    let evolution = |budget: f64, resolutions: Vec<u32>| {
        let mut c = EvolutionConfig::ofa(budget, resolutions, args.seed);
        c.population = args.population();
        c.generations = args.generations();
        c.gap_lambda = args.gap_weight;
        c.restarts = args.restarts.max(1);
        c
    };
    let partitions: Vec<Partition> = resolutions.iter().map(|&r| Partition { width, r }).collect();
    let cosearch_config = |budget: f64| {
        let mut c = CoSearchConfig::new(partitions.clone(), evolution(budget, resolutions.clone()));
        c.samples = args.partition_samples;
        c.min_share = args.min_share;
        c.quantile = QUANTILE;
        c.searched = args.search_partitions.max(1);
        c.ranking = args.rank_partitions;
        c
    };
    let latency_tuned = |p: &Partition, a: &ArchConfig| predict(&tuned, a, p.width);
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let out = args.output.clone();

    // The co-search.
    let start = Instant::now();
    // Each probe's and search's generations count on from the previous one's; the bar's end
    // is where every partition is probed and every search runs to the end.
    let mut progress = Progress::new(cosearch_config(limit).max_steps() as u64, "co-search");
    let mut step = 0u64;
    let result = run_cosearch(&cosearch_config(limit), &mut oracle, &latency_tuned, &mut |g| {
        step += 1;
        progress.update(step, step, &progress_line(g))
    })
    .map_err(|e| e.to_string())?;
    progress.finish();
    let cosearch_s = start.elapsed().as_secs_f64();
    let best = result.best().clone();
    eprintln!(
        "co-search: partition {} chosen of {} ({} searched); {} generations of {} in {cosearch_s:.1} s, {} architectures evaluated; best {} val_acc {:.6} predicted {:.3} ms",
        result.partition(),
        resolutions.len(),
        result.searched.len(),
        args.generations(),
        args.population(),
        result.evolution.evaluated.len(),
        best.arch.to_compact(),
        best.accuracy.val,
        best.latency_ms
    );

    // The baseline, and the co-search's architecture at the baseline's accuracy.
    let mut baseline: Option<(EvolutionResult, f64)> = None;
    let mut iso: Option<(f64, CoSearchResult, usize)> = None;
    let mut iso_s = 0.0;
    if let Some(default) = &default_table {
        let b_start = Instant::now();
        let latency_default = |a: &ArchConfig| predict(default, a, width);
        let mut progress = Progress::new(evolution(limit, resolutions.clone()).steps() as u64 - 1, "baseline");
        let b = evolve(&evolution(limit, resolutions.clone()), &mut oracle, &latency_default, &mut |g| {
            progress.update(g.generation as u64, g.generation as u64, &progress_line(g))
        })
        .map_err(|e| e.to_string())?;
        progress.finish();
        let baseline_s = b_start.elapsed().as_secs_f64();
        eprintln!(
            "baseline: {} val_acc {:.6} predicted {:.3} ms (default schedules) in {baseline_s:.1} s",
            b.best.arch.to_compact(),
            b.best.accuracy.val,
            b.best.latency_ms
        );
        let target = b.best.accuracy.val;
        let i_start = Instant::now();
        iso = iso_accuracy(
            target,
            limit,
            &result,
            &cosearch_config,
            &mut oracle,
            &latency_tuned,
            &tuned,
            &resolutions,
            width,
            args.iso_steps,
        )?;
        iso_s = i_start.elapsed().as_secs_f64();
        match &iso {
            Some((budget, r, runs)) => eprintln!(
                "at the baseline's accuracy {target:.6}: co-search budget {budget:.3} ms ({runs} searches, {iso_s:.1} s) gives {} val_acc {:.6} predicted {:.3} ms",
                r.best().arch.to_compact(),
                r.best().accuracy.val,
                r.best().latency_ms
            ),
            None => eprintln!("the co-search did not reach the baseline's accuracy {target:.6} within twice the budget"),
        }
        baseline = Some((b, baseline_s));
    }

    // What the searches wrote.
    let mut log = partition_json(&result, limit);
    log.push_str(&generations_json("cosearch", &result.evolution.history));
    write_file(&out.join("search_log.jsonl"), log.as_bytes())?;
    write_file(&out.join("partitions.csv"), partitions_csv(&result).as_bytes())?;
    write_file(&out.join("arch.json"), format!("{}\n", best.arch.to_json()).as_bytes())?;
    let mut rows: Vec<(&str, &[Candidate])> = vec![("cosearch", &result.evolution.evaluated)];
    if let Some((b, _)) = &baseline {
        rows.push(("baseline", &b.evaluated));
        let dir = out.join("baseline");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_file(&dir.join("arch.json"), format!("{}\n", b.best.arch.to_json()).as_bytes())?;
        write_file(&dir.join("search_log.jsonl"), generations_json("baseline", &b.history).as_bytes())?;
    }
    if let Some((_, r, _)) = &iso {
        let dir = out.join("iso_accuracy");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_file(&dir.join("arch.json"), format!("{}\n", r.best().arch.to_json()).as_bytes())?;
    }
    write_file(&out.join("pareto.csv"), pareto_csv(&rows, &tuned, default_table.as_ref(), width).as_bytes())?;

    // Deploy and measure.
    let mut deploys = vec![Deploy {
        name: "co-search",
        what: "co-search winner, tuned schedules".into(),
        arch: best.arch.clone(),
        dir: out.clone(),
        tuned: true,
        predicted_ms: best.latency_ms,
        measured_ms: f64::NAN,
        kernels_ms: f64::NAN,
        tuned_programs: 0,
        programs: 0,
        coverage: None,
    }];
    if let Some((b, _)) = &baseline {
        let arch = b.best.arch.clone();
        deploys.push(Deploy {
            name: "baseline",
            what: "baseline winner, default schedules (what schedule-blind NAS deploys)".into(),
            arch: arch.clone(),
            dir: out.join("baseline"),
            tuned: false,
            predicted_ms: b.best.latency_ms,
            measured_ms: f64::NAN,
            kernels_ms: f64::NAN,
            tuned_programs: 0,
            programs: 0,
            coverage: None,
        });
        deploys.push(Deploy {
            name: "baseline-tuned",
            what: "baseline winner, tuned schedules (tuning after a schedule-blind search)".into(),
            predicted_ms: predict(&tuned, &arch, width).map_err(|e| e.to_string())?,
            arch,
            dir: out.join("baseline/tuned"),
            tuned: true,
            measured_ms: f64::NAN,
            kernels_ms: f64::NAN,
            tuned_programs: 0,
            programs: 0,
            coverage: None,
        });
    }
    if let Some((_, r, _)) = &iso {
        deploys.push(Deploy {
            name: "iso-accuracy",
            what: "co-search at the baseline's accuracy, tuned schedules".into(),
            arch: r.best().arch.clone(),
            dir: out.join("iso_accuracy"),
            tuned: true,
            predicted_ms: r.best().latency_ms,
            measured_ms: f64::NAN,
            kernels_ms: f64::NAN,
            tuned_programs: 0,
            programs: 0,
            coverage: None,
        });
    }
    let mut schedules_note = String::new();
    if !args.search_only {
        let records = records.as_ref().expect("records are required unless --search-only");
        let source = tune::RecordSchedules::new(records);
        let mut models = Vec::new();
        for d in deploys.iter_mut() {
            std::fs::create_dir_all(&d.dir).map_err(|e| format!("{}: {e}", d.dir.display()))?;
            let onnx = nas::build_network(&d.arch, width, &mut nas::RandomWeights::new(args.seed)).map_err(|e| e.to_string())?;
            write_file(&d.dir.join("net.onnx"), &onnx)?;
            let graph = frontend::import_model(&onnx).map_err(|e| format!("importing the {} network: {e}", d.name))?;
            let report = if d.tuned {
                let (text, tasks, missing, share) = schedules_of(&graph, records)?;
                write_file(&d.dir.join("schedules.jsonl"), text.as_bytes())?;
                d.coverage = Some((tasks - missing, tasks, share));
                if d.name == "co-search" {
                    schedules_note = format!(
                        "{} of its {tasks} tasks, {:.0} % of its floating-point operations, have a recorded schedule (in `schedules.jsonl`; `chanasc compile net.onnx --records schedules.jsonl` builds the same programs){}",
                        tasks - missing,
                        share * 100.0,
                        if missing > 0 {
                            format!("; {missing} keep the default schedule (programs of this network that no covering network of the pre-scheduled space has)")
                        } else {
                            String::new()
                        }
                    );
                }
                nas::measure::compile_for_host_with(&graph, &d.dir.join("compiled"), &source)
            } else {
                nas::measure::compile_for_host(&graph, &d.dir.join("compiled"))
            }
            .map_err(|e| e.to_string())?;
            (d.tuned_programs, d.programs) = (report.tuned_programs, report.programs);
            let model =
                if d.tuned { HostModel::compile_with(&graph, options.seed, &source) } else { HostModel::compile(&graph, options.seed) }
                    .map_err(|e| e.to_string())?;
            eprintln!(
                "compiled the {} network into {}/compiled ({} of {} programs with a tuned schedule{})",
                d.name,
                d.dir.display(),
                d.tuned_programs,
                d.programs,
                d.coverage.map_or(String::new(), |c| format!("; {:.0} % of its FLOPs", c.2 * 100.0))
            );
            models.push(model);
        }
        // Timed in passes a few seconds apart, the networks in turn within a pass; each keeps
        // its fastest pass (as lut check and the baseline search do).
        let flush = CacheFlush::new(options.flush_bytes);
        for pass in 0..args.measure_passes.max(1) {
            if pass > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            for (d, m) in deploys.iter_mut().zip(&models) {
                let (t, _) = m.time_quietly(options.runs, options.warmup, &flush, args.timing.retries).map_err(|e| e.to_string())?;
                if d.measured_ms.is_nan() || t.wall.median < d.measured_ms {
                    (d.measured_ms, d.kernels_ms) = (t.wall.median, t.kernels.median);
                }
            }
        }
        // The same network with the same schedules (the iso-accuracy search often returns the
        // co-search's own winner) was timed once per entry: all its entries keep the fastest,
        // so one network never gets two latencies in one report.
        for i in 0..deploys.len() {
            for j in 0..deploys.len() {
                if i != j && deploys[i].arch == deploys[j].arch && deploys[i].tuned == deploys[j].tuned && deploys[j].measured_ms < deploys[i].measured_ms {
                    (deploys[i].measured_ms, deploys[i].kernels_ms) = (deploys[j].measured_ms, deploys[j].kernels_ms);
                }
            }
        }
    }

    // The plot: both searches on the same axes, measured winners as crosses.
    let mut series =
        vec![nas::report::Series { name: "co-search (tuned table)", color: "#d62728", candidates: &result.evolution.evaluated }];
    if let Some((b, _)) = &baseline {
        series.push(nas::report::Series { name: "baseline (default table)", color: "#1f77b4", candidates: &b.evaluated });
    }
    let acc_of = |name: &str| -> f64 {
        match name {
            "co-search" => best.accuracy.val,
            "baseline" | "baseline-tuned" => baseline.as_ref().map_or(f64::NAN, |b| b.0.best.accuracy.val),
            _ => iso.as_ref().map_or(f64::NAN, |i| i.1.best().accuracy.val),
        }
    };
    let markers: Vec<nas::report::Marker> = deploys
        .iter()
        .filter(|d| d.measured_ms.is_finite())
        .map(|d| nas::report::Marker {
            label: format!("{} measured {:.2} ms", d.name, d.measured_ms),
            latency_ms: d.measured_ms,
            val: acc_of(d.name),
            color: if d.name == "baseline" {
                "#1f77b4".into()
            } else if d.name == "baseline-tuned" {
                "#6baed6".into()
            } else {
                "#d62728".into()
            },
        })
        .collect();
    let title = format!("co-search{} w{width:?} host, budget {} ms", if baseline.is_some() { " vs baseline" } else { "" }, args.latency_ms);
    write_file(&out.join("pareto.svg"), nas::report::compare_svg(&series, args.latency_ms, &markers, &title).as_bytes())?;

    // The summary.
    let get = |name: &str| deploys.iter().find(|d| d.name == name);
    let measured = |name: &str| get(name).map(|d| d.measured_ms).filter(|m| m.is_finite());
    let mut md = format!(
        "# Co-search (CHaNAS): architecture and schedules\n\n\
         | | |\n|---|---|\n\
         | space | ofa-mbv3, width {width:?}, resolutions {resolutions:?} |\n\
         | target | host: {} ({}), 1 thread |\n\
         | latency budget | {} ms{} |\n\
         | tuned block table | {} |\n\
         | tuning records | {} |\n\
         | default-schedule table | {} |\n\
         | accuracy oracle | `{}` |\n\
         | score | A_val - {} x max(0, A_train - A_val) (gap weight {}) |\n\
         | partitions | by resolution at w{width:?}: {} samples each, ranked by {}; the full search in the best {} |\n\
         | evolution | OFA's: population {}, {} generations, seed {}{} |\n\
         | co-search time | {cosearch_s:.1} s ({} architectures evaluated in its evolution; {} distinct architectures asked of the oracle by all the searches of this run) |\n\n",
        cpu_name(),
        llvm_backend::Target::host().cpu,
        args.latency_ms,
        if args.margin > 0.0 { format!(" (searched with a {}% margin: predicted latency at most {limit:.3} ms)", args.margin) } else { String::new() },
        names(&args.lut),
        records_file.as_ref().map_or("-".into(), |p| p.display().to_string()),
        if default_table.is_some() { names(&default_paths) } else { "-".into() },
        args.accuracy,
        args.gap_weight,
        args.gap_weight,
        args.partition_samples,
        match args.rank_partitions {
            nas::cosearch::Ranking::Samples => format!(
                "the samples (among those with at least {:.0} % of samples within the budget, the highest {:.0}th-percentile score of those samples)",
                args.min_share * 100.0,
                QUANTILE * 100.0
            ),
            nas::cosearch::Ranking::Probe => "a probe: one run of the evolutionary search (the first seed) in each, its best score".into(),
        },
        args.search_partitions.max(1),
        args.population(),
        args.generations(),
        args.seed,
        if args.restarts > 1 { format!("; {} runs (seeds {} to {}), the best kept, for every search", args.restarts, args.seed, args.seed + args.restarts as u64 - 1) } else { String::new() },
        result.evolution.evaluated.len(),
        oracle.calls,
    );
    md.push_str(&format!(
        "## Partitions (samples, tuned-table latency)\n\nThe evolutionary search ran in the {} best-ranked partition(s) by {}; the best of its winners is kept.\n\n| width | r | within budget | median ms | q90 score | probe's best score | search's best score | chosen |\n|---|---|---|---|---|---|---|---|\n",
        args.search_partitions.max(1),
        match args.rank_partitions {
            nas::cosearch::Ranking::Samples => "the samples' q90 score",
            nas::cosearch::Ranking::Probe => "a probe (one evolutionary run, the first seed) in each",
        }
    ));
    for (i, p) in result.partitions.iter().enumerate() {
        md.push_str(&format!(
            "| {:?} | {} | {}/{} ({:.0} %) | {:.3} | {} | {} | {} | {} |\n",
            p.partition.width,
            p.partition.r,
            p.feasible,
            p.samples,
            p.share * 100.0,
            p.latency_median,
            p.score_quantile.map_or("-".into(), |s| format!("{s:.6}")),
            best_in(&result.probes, i).map_or("-".into(), |c| format!("{:.6}", c.score)),
            best_in(&result.searched, i).map_or("-".into(), |c| format!("{:.6}", c.score)),
            if i == result.chosen { "**yes**" } else { "" }
        ));
    }
    let acc_cell = |c: &Candidate| match c.accuracy.train {
        Some(t) => format!("val {:.6}, train {t:.6}, gap {:.6}, score {:.6}", c.accuracy.val, t - c.accuracy.val, c.score),
        None => format!("val {:.6}", c.accuracy.val),
    };
    md.push_str(&format!(
        "\n## Chosen architecture\n\n`{}`\n\n```json\n{}\n```\n\n| | |\n|---|---|\n| accuracy (oracle) | {} |\n| predicted latency (tuned table) | {:.3} ms |\n| measured latency (compiled with its recorded schedules, median) | {} |\n\n{}\n",
        best.arch.to_compact(),
        best.arch.to_json(),
        acc_cell(&best),
        best.latency_ms,
        match get("co-search") {
            Some(d) if d.measured_ms.is_finite() => format!(
                "{:.3} ms ({:.3} ms in its tensor programs; measured vs predicted {:+.2} %; {})",
                d.measured_ms,
                d.kernels_ms,
                (d.predicted_ms - d.measured_ms) / d.measured_ms * 100.0,
                if d.measured_ms <= args.latency_ms { "within the budget".to_string() } else { format!("over the budget of {} ms", args.latency_ms) }
            ),
            _ => "not measured (--search-only)".into(),
        },
        schedules_note
    ));
    if let Some((b, baseline_s)) = &baseline {
        md.push_str(&format!(
            "\n## Against the schedule-blind baseline\n\nThe baseline: OFA's evolutionary search with the same oracle, budget, resolutions and settings on the default-schedule table ({baseline_s:.1} s), deployed with the default schedules.\n\n| network | arch | accuracy | predicted ms | measured ms | recorded schedules |\n|---|---|---|---|---|---|\n"
        ));
        for d in &deploys {
            md.push_str(&format!(
                "| {} | `{}` | {:.6} | {:.3} | {} | {} |\n",
                d.what,
                d.arch.to_compact(),
                acc_of(d.name),
                d.predicted_ms,
                if d.measured_ms.is_finite() { format!("{:.3}", d.measured_ms) } else { "-".into() },
                match d.coverage {
                    Some((with, all, share)) => format!("{with}/{all} tasks, {:.0} % of FLOPs", share * 100.0),
                    None if d.tuned => "-".into(),
                    None => "none (default schedules)".into(),
                }
            ));
        }
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("**{:.2}x**", a / b),
            _ => "- (not measured)".into(),
        };
        md.push_str(&format!(
            "\n- Same budget ({} ms): baseline / co-design measured latency {}, accuracy {:+.4} points (co-design {:.6}, baseline {:.6}).\n",
            args.latency_ms,
            ratio(measured("baseline"), measured("co-search")),
            (best.accuracy.val - b.best.accuracy.val) * 100.0,
            best.accuracy.val,
            b.best.accuracy.val
        ));
        match &iso {
            Some((budget, r, runs)) => md.push_str(&format!(
                "- Same accuracy (the co-search at a budget of {budget:.3} ms, found by bisection in {runs} co-searches ({iso_s:.1} s), reaches val {:.6} >= the baseline's {:.6}): baseline / co-design measured latency {}.\n",
                r.best().accuracy.val,
                b.best.accuracy.val,
                ratio(measured("baseline"), measured("iso-accuracy"))
            )),
            None => md.push_str("- Same accuracy: the co-search did not reach the baseline's accuracy within twice the budget.\n"),
        }
        md.push_str(&format!(
            "- Tuning after a schedule-blind search (the baseline's arch with the tuned schedules): baseline-tuned / co-design at the same budget {}{}.\n",
            ratio(measured("baseline-tuned"), measured("co-search")),
            if iso.is_some() { format!(", at the same accuracy {}", ratio(measured("baseline-tuned"), measured("iso-accuracy"))) } else { String::new() }
        ));
    }
    md.push_str(&format!(
        "\nMeasured on this machine: {}; every network timed in {} passes a few seconds apart, in turn within a pass, keeping its fastest (a network deployed twice, the same arch with the same schedules, keeps the fastest of both); latency = median wall time of a run.\n\n\
         Files: `arch.json`, `net.onnx` (seeded random weights, seed {}), `compiled/` (runner `compiled/model`), `schedules.jsonl` (the recorded schedule of each of its tasks), \
         `search_log.jsonl` (the partitions, then one line per generation), `partitions.csv`, `pareto.csv` and `pareto.svg` (the evaluated architectures of each search and their Pareto fronts){}.\n",
        args.timing.describe(),
        args.measure_passes.max(1),
        args.seed,
        if baseline.is_some() { "; `baseline/` (its arch, network, default-schedule build, log; `baseline/tuned/` the same arch with the tuned schedules) and `iso_accuracy/`" } else { "" }
    ));
    write_file(&out.join("summary.md"), md.as_bytes())?;

    println!("partition={}", result.partition());
    println!("chosen: {}", best.arch.to_compact());
    println!("val_acc={:.6}", best.accuracy.val);
    if let Some(g) = best.accuracy.gap() {
        println!("train_acc={:.6}", best.accuracy.train.unwrap_or(f64::NAN));
        println!("gap={g:.6}");
    }
    println!("score={:.6}", best.score);
    println!("predicted_latency_ms={:.6}", best.latency_ms);
    if let Some(m) = measured("co-search") {
        println!("measured_latency_ms={m:.6}");
    }
    println!("cosearch_seconds={cosearch_s:.1}");
    if let Some((b, _)) = &baseline {
        println!("baseline: {}", b.best.arch.to_compact());
        println!("baseline_val_acc={:.6}", b.best.accuracy.val);
        println!("baseline_predicted_latency_ms={:.6}", b.best.latency_ms);
        if let Some(m) = measured("baseline") {
            println!("baseline_measured_latency_ms={m:.6}");
        }
        if let (Some(bm), Some(cm)) = (measured("baseline"), measured("co-search")) {
            println!("ratio_same_budget={:.4}", bm / cm);
        }
        if let Some((budget, r, _)) = &iso {
            println!("iso_budget_ms={budget:.4}");
            println!("iso: {}", r.best().arch.to_compact());
            println!("iso_val_acc={:.6}", r.best().accuracy.val);
            if let (Some(bm), Some(im)) = (measured("baseline"), measured("iso-accuracy")) {
                println!("iso_measured_latency_ms={im:.6}");
                println!("ratio_same_accuracy={:.4}", bm / im);
            }
        }
        if let (Some(bt), Some(cm)) = (measured("baseline-tuned"), measured("co-search")) {
            println!("baseline_tuned_measured_latency_ms={bt:.6}");
            println!("ratio_tuned_baseline_same_budget={:.4}", bt / cm);
        }
    }
    println!(
        "wrote {}/: summary.md arch.json search_log.jsonl partitions.csv pareto.csv pareto.svg{}",
        out.display(),
        if args.search_only { "" } else { " net.onnx compiled/ schedules.jsonl" }
    );
    Ok(())
}

/// The co-search's architecture at accuracy `target`: the smallest budget (by bisection,
/// `steps` halvings of the bracket) whose co-search winner has validation accuracy at least
/// `target`. The bracket's top is `limit` when the co-search at `limit` reaches it, else
/// 1.25, 1.5625, ... times it (up to twice); its bottom is the smallest network's latency.
/// Returns the budget, that search, and how many co-searches it took.
#[allow(clippy::too_many_arguments)]
fn iso_accuracy(
    target: f64,
    limit: f64,
    at_limit: &CoSearchResult,
    config: &dyn Fn(f64) -> CoSearchConfig,
    oracle: &mut CachedOracle,
    latency: &dyn Fn(&Partition, &ArchConfig) -> nas::Result<f64>,
    tuned: &LatencyTable,
    resolutions: &[u32],
    width: f64,
    steps: usize,
) -> CliResult<Option<(f64, CoSearchResult, usize)>> {
    let mut runs = 0;
    let mut run = |budget: f64, oracle: &mut CachedOracle| -> Option<CoSearchResult> {
        runs += 1;
        run_cosearch(&config(budget), oracle, latency, &mut |_| {}).ok()
    };
    let (mut hi, mut hi_result) = if at_limit.best().accuracy.val >= target {
        (limit, at_limit.clone())
    } else {
        let mut b = limit;
        let mut found = None;
        while b < 2.0 * limit {
            b = (b * 1.25).min(2.0 * limit);
            if let Some(r) = run(b, oracle).filter(|r| r.best().accuracy.val >= target) {
                found = Some((b, r));
                break;
            }
        }
        match found {
            Some(f) => f,
            None => return Ok(None),
        }
    };
    let mut lo = resolutions
        .iter()
        .map(|&r| predict(tuned, &ArchConfig::min(r), width))
        .collect::<nas::Result<Vec<f64>>>()
        .map_err(|e| e.to_string())?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    for _ in 0..steps {
        if hi - lo < 1e-3 {
            break;
        }
        let mid = (lo + hi) / 2.0;
        match run(mid, oracle).filter(|r| r.best().accuracy.val >= target) {
            Some(r) => {
                hi = mid;
                hi_result = r;
            }
            None => lo = mid,
        }
    }
    Ok(Some((hi, hi_result, runs)))
}

//! `chanasc search --space fmnist-mbv3 --accuracy supernet:PATH`: the search of a trained
//! supernet's own space, ending in a deployable classifier. Latency comes from the space's
//! block latency table on this machine (built, or completed, first: every piece timed alone),
//! accuracy from the supernet (inherited weights, recalibrated batch norms); the winner is
//! compiled with the supernet's weights cut to it, and timed. `chanasc eval OUT/` then
//! measures the compiled binary's test accuracy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nas::evolution::{evolve, EvolutionConfig};
use nas::measure::{HostModel, MeasureOptions};
use nas::ArchConfig;
use serde_json::json;
use train::engine::Backend;
use train::supernet::latency::BlockTable;
use train::supernet::{Space, Subnet, SupernetOracle};

use crate::search_cli::{check_arch, cpu_name, hms, write_file, Progress, SearchArgs};
use crate::CliResult;

/// The file `chanasc eval` reads in a search's output folder.
pub const DEPLOY_MANIFEST: &str = "deploy.json";

/// Timing of the pieces and of the winner: the space's networks are small enough that their
/// weights stay in the caches, so nothing is flushed between runs.
fn timing(args: &SearchArgs) -> MeasureOptions {
    MeasureOptions { runs: args.timing.runs.max(1), warmup: args.timing.warmup.max(3), seed: args.seed, flush_bytes: 0 }
}

pub fn search(args: SearchArgs) -> CliResult<()> {
    check_arch(&args.arch)?;
    let checkpoint = args.accuracy.strip_prefix("supernet:").filter(|p| !p.is_empty()).ok_or_else(|| {
        format!("--space {} is a supernet's space: --accuracy supernet:CHECKPOINT (from chanasc supernet train) is needed", args.space)
    })?;
    if args.baseline || args.compare_baseline || args.records.is_some() || !args.default_lut.is_empty() {
        return Err("--baseline, --compare-baseline, --records and --default-lut are options of the ofa-mbv3 searches".into());
    }
    if !(0.0..100.0).contains(&args.margin) {
        return Err(format!("--margin {}: must be a percentage in [0, 100)", args.margin));
    }
    if args.lut.len() > 1 {
        return Err("--lut: one block latency table (JSON) for a supernet's space".into());
    }
    let out = &args.output;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("loading the supernet {checkpoint} and its dataset");
    let mut oracle = SupernetOracle::load(Path::new(checkpoint), None, Backend::Llvm { threads: 2 }).map_err(|e| e.to_string())?;
    let space = oracle.space().clone();
    if space.name != args.space {
        return Err(format!("--space {}: the checkpoint {checkpoint} is a supernet of the {} space", args.space, space.name));
    }
    let options = timing(&args);
    let table_path = args.lut.first().cloned().unwrap_or_else(|| out.join("latency_table.json"));
    let (table, table_seconds) = complete_table(&space, &table_path, &options, args.timing.retries)?;

    // The search: OFA's evolution; an arch's entries outside the space (a fifth stage, the
    // resolution) do not matter, and the oracle knows such archs as one subnet.
    let limit = args.latency_ms * (1.0 - args.margin / 100.0);
    let mut config = EvolutionConfig::ofa(limit, vec![space.input[1] as u32], args.seed);
    config.population = args.population();
    config.generations = args.generations();
    config.gap_lambda = args.gap_weight;
    let latency = |a: &ArchConfig| -> nas::Result<f64> {
        let sub = Subnet::from_arch(&space, a).map_err(|e| nas::error::NasError::Arch(e.to_string()))?;
        table.predict(&space, &sub).map_err(|e| nas::error::NasError::Arch(e.to_string()))
    };
    let smallest = table.predict(&space, &Subnet::smallest(&space)).map_err(|e| e.to_string())?;
    if smallest > limit {
        return Err(format!(
            "--latency-ms {}: even the smallest subnet is predicted at {smallest:.3} ms on this machine (see {})",
            args.latency_ms,
            table_path.display()
        ));
    }
    let start = Instant::now();
    let mut progress = Progress::new(config.generations as u64, "search");
    let result = evolve(&config, &mut oracle, &latency, &mut |g| {
        progress.update(
            g.generation as u64,
            g.generation as u64,
            &format!("best val_acc {:.4} at {:.3} ms, {} evaluated", g.best.accuracy.val, g.best.latency_ms, g.evaluated),
        )
    })
    .map_err(|e| e.to_string())?;
    progress.finish();
    let search_seconds = start.elapsed().as_secs_f64();
    let best = &result.best;
    let sub = Subnet::from_arch(&space, &best.arch).map_err(|e| e.to_string())?;
    eprintln!(
        "search: {} generations of {} in {}, {} architectures evaluated; chosen {} val_acc {:.4} predicted {:.3} ms",
        config.generations,
        config.population,
        hms(search_seconds),
        result.evaluated.len(),
        sub.compact(),
        best.accuracy.val,
        best.latency_ms
    );

    // The deployable classifier: the supernet's weights cut to the subnet, compiled.
    let graph = oracle.deployable(&sub, 1).map_err(|e| e.to_string())?;
    let compiled = out.join("compiled");
    let report = nas::measure::compile_for_host(&graph, &compiled).map_err(|e| e.to_string())?;
    let model = HostModel::compile(&graph, args.seed).map_err(|e| e.to_string())?;
    let flush = nas::measure::CacheFlush::new(0);
    let mut measured = f64::INFINITY;
    for pass in 0..3 {
        if pass > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let (t, _) = model.time_quietly(options.runs, options.warmup, &flush, args.timing.retries).map_err(|e| e.to_string())?;
        measured = measured.min(t.wall.median);
    }

    let arch = sub.to_arch(&space);
    write_file(&out.join("arch.json"), format!("{}\n", arch.to_json()).as_bytes())?;
    let log: String = result.history.iter().map(|g| nas::report::generation_json(g) + "\n").collect();
    write_file(&out.join("search_log.jsonl"), log.as_bytes())?;
    write_file(&out.join("population.csv"), nas::report::population_csv(&result.evaluated).as_bytes())?;
    let title = format!("{} search with supernet accuracy, budget {} ms", space.name, args.latency_ms);
    write_file(&out.join("pareto.svg"), nas::report::pareto_svg(&result.evaluated, args.latency_ms, Some(limit), best, &title).as_bytes())?;
    let manifest = json!({
        "space": space.name,
        "subnet": sub.compact(),
        "arch": serde_json::from_str::<serde_json::Value>(&arch.to_json()).map_err(|e| e.to_string())?,
        "supernet": checkpoint,
        "input": {"name": "x", "shape": [1, space.input[0], space.input[1], space.input[2]], "pixels": "bytes / 255, normalized inside"},
        "classes": space.classes,
        "oracle_val_acc": best.accuracy.val,
        "oracle_train_acc": best.accuracy.train,
        "predicted_latency_ms": best.latency_ms,
        "measured_latency_ms": measured,
        "latency_table": table_path.display().to_string(),
        "cpu": cpu_name(),
    });
    write_file(&out.join(DEPLOY_MANIFEST), format!("{}\n", serde_json::to_string_pretty(&manifest).expect("json")).as_bytes())?;
    let summary = format!(
        "# Search of the {space} space with the supernet's accuracy\n\n\
         | | |\n|---|---|\n\
         | supernet (accuracy oracle) | `{checkpoint}` |\n\
         | target | host: {cpu}, 1 thread, default schedules |\n\
         | latency budget | {budget} ms |\n\
         | block latency table | `{table}` ({pieces} pieces{built}) |\n\
         | population, generations, seed | {pop}, {gens}, {seed} |\n\
         | gap weight | {gap} |\n\
         | architectures evaluated | {n} |\n\
         | search time | {search} |\n\n\
         ## Chosen subnet: `{compact}`\n\n\
         | | |\n|---|---|\n\
         | validation accuracy (oracle: the test split, inherited weights) | {val:.4} |\n\
         | training accuracy (oracle, {train_images} training images) | {train} |\n\
         | predicted latency (sum of its pieces) | {pred:.4} ms |\n\
         | measured latency (compiled, median) | {meas:.4} ms |\n\
         | tensor programs | {programs} |\n\n\
         `compiled/` is the deployable classifier: its weights are the supernet's cut to this subnet, its batch norms\n\
         recalibrated as the oracle does; it takes pixels in [0, 1] (`x`, 1x{c}x{h}x{w}) and returns 10 logits.\n\
         `compiled/model --input x.npy -o logits.npy` runs it (an .npy of N images stacked gives N rows);\n\
         `chanasc eval {out}` measures its test accuracy and latency.\n\
         Also here: `arch.json`, `population.csv`, `pareto.svg`, `search_log.jsonl`, `{manifest}`.\n",
        space = space.name,
        cpu = cpu_name(),
        budget = args.latency_ms,
        table = table_path.display(),
        pieces = table.entries.len(),
        built = if table_seconds > 0.0 { format!(", {} spent timing pieces in this run", hms(table_seconds)) } else { String::new() },
        pop = config.population,
        gens = config.generations,
        seed = args.seed,
        gap = args.gap_weight,
        n = result.evaluated.len(),
        search = hms(search_seconds),
        compact = sub.compact(),
        val = best.accuracy.val,
        train_images = train::supernet::ORACLE_TRAIN_IMAGES,
        train = best.accuracy.train.map_or("-".into(), |t| format!("{t:.4}")),
        pred = best.latency_ms,
        meas = measured,
        programs = report.programs,
        c = space.input[0],
        h = space.input[1],
        w = space.input[2],
        out = out.display(),
        manifest = DEPLOY_MANIFEST,
    );
    write_file(&out.join("summary.md"), summary.as_bytes())?;
    println!("chosen: {}", sub.compact());
    println!("val_acc={:.6}", best.accuracy.val);
    if let Some(t) = best.accuracy.train {
        println!("train_acc={t:.6}");
    }
    println!("predicted_latency_ms={:.6}", best.latency_ms);
    println!("measured_latency_ms={measured:.6}");
    println!("search_seconds={search_seconds:.1}");
    println!("wrote {}/: arch.json compiled/ {DEPLOY_MANIFEST} population.csv pareto.svg search_log.jsonl summary.md", out.display());
    if measured > args.latency_ms {
        eprintln!("warning: the chosen network's measured latency {measured:.3} ms is over the budget of {} ms", args.latency_ms);
    }
    Ok(())
}

/// Loads the block latency table at `path` and times the pieces it lacks (all of them for a
/// new table), saving as it goes; returns the table and the seconds spent timing.
fn complete_table(space: &Space, path: &PathBuf, options: &MeasureOptions, retries: usize) -> CliResult<(BlockTable, f64)> {
    let mut table = if path.exists() {
        let t = BlockTable::load(path).map_err(|e| e.to_string())?;
        if t.space != space.name {
            return Err(format!("{}: a latency table of the {} space, not {}", path.display(), t.space, space.name));
        }
        if t.cpu != cpu_name() {
            eprintln!("warning: {} was measured on {}, this machine is {}", path.display(), t.cpu, cpu_name());
        }
        t
    } else {
        BlockTable::new(space, &cpu_name(), options.runs)
    };
    let missing = table.missing(space);
    if missing.is_empty() {
        return Ok((table, 0.0));
    }
    eprintln!("timing {} pieces of the {} space for the block latency table {}", missing.len(), space.name, path.display());
    let start = Instant::now();
    let mut progress = Progress::new(missing.len() as u64, "latency table");
    for (i, piece) in missing.iter().enumerate() {
        let ms = table.measure(space, *piece, options, retries).map_err(|e| e.to_string())?;
        progress.update(i as u64 + 1, i as u64 + 1, &format!("{} {ms:.4} ms", piece.key()));
        if i % 16 == 15 {
            table.save(path).map_err(|e| e.to_string())?;
        }
    }
    progress.finish();
    table.save(path).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    eprintln!("latency table: {} pieces timed in {}", missing.len(), hms(seconds));
    Ok((table, seconds))
}

//! `chanasc supernet train`: trains the elastic supernet of a search space (sandwich rule,
//! one masked graph for every subnet), with a progress bar, a resumable checkpoint and a
//! training-curve SVG; and the `supernet:PATH` accuracy oracle.

use std::time::Instant;

use clap::{Args, Subcommand};
use train::engine::Backend;
use train::supernet::{self, Subnet, SupernetConfig, SupernetProgress};

use crate::train_cli::{first, load_dataset, RunArgs};
use crate::CliResult;

/// The default run: 5 epochs of batch 64, the first 4 training the largest subnet alone, the
/// last the largest and the smallest together. On this project's 2-core machine it takes
/// under 30 minutes, and the largest subnet reaches 92 % on Fashion-MNIST (bench/RESULTS.md).
const DEFAULT_EPOCHS: usize = 5;
const DEFAULT_BATCH: usize = 64;

#[derive(Subcommand)]
pub enum SupernetCommand {
    /// Train a supernet (each step: the largest, the smallest and random subnets on one batch);
    /// after each epoch the largest and smallest subnets are evaluated after batch-norm
    /// recalibration.
    Train(SupernetTrainArgs),
}

#[derive(Args)]
pub struct SupernetTrainArgs {
    /// The search space: fmnist-mbv3 (MobileNetV3 scaled to 28x28, docs/space-28x28.md).
    #[arg(long, default_value = "fmnist-mbv3")]
    space: String,
    /// Random subnets per step besides the largest and the smallest (OFA: 2; the default run
    /// has room for none).
    #[arg(long, default_value_t = 0)]
    random_subnets: usize,
    /// Epochs at the start that train the largest subnet alone, as OFA's progressive
    /// shrinking starts with the full network; then the middle channels are sorted by
    /// importance and the sandwich rule applies.
    #[arg(long, default_value_t = 4)]
    largest_epochs: usize,
    /// Training images the batch norms are recalibrated on before an evaluation.
    #[arg(long, default_value_t = 2000)]
    calib_images: usize,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(command: SupernetCommand) -> CliResult<()> {
    match command {
        SupernetCommand::Train(args) => train(args),
    }
}

fn train(mut args: SupernetTrainArgs) -> CliResult<()> {
    args.run.set_defaults(DEFAULT_EPOCHS, DEFAULT_BATCH);
    let backend = Backend::parse(&args.run.backend, args.run.threads).map_err(|e| e.to_string())?;
    if args.run.epochs() == 0 {
        return Err("--epochs must be at least 1".into());
    }
    let (train_set, test_set) = load_dataset(&args.run.dataset, args.run.data_dir.as_deref())?;
    let (train_set, test_set) = (first(train_set, args.run.limit_train), first(test_set, args.run.limit_test));
    let classes = train_set.classes.max(test_set.classes);
    let space = supernet::space_by_name(&args.space, classes).map_err(|e| e.to_string())?;
    let steps_per_epoch = train_set.len() / args.run.batch().max(1);
    let cfg = SupernetConfig {
        base: args.run.config(backend, steps_per_epoch, test_set.len(), true),
        random_subnets: args.random_subnets,
        largest_epochs: args.largest_epochs,
        calib_images: args.calib_images,
        dataset: args.run.dataset.clone(),
        data_dir: args.run.data_dir.clone(),
    };
    let params: usize = space.layout(None).params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
    eprintln!(
        "training the {} supernet ({params} parameters; largest subnet {:.1} M MACs, smallest {:.1} M) on {} ({} train, {} test images), \
         {} epochs of {} steps, batch {}, {}{} subnets a step, {}",
        space.name,
        space.macs(&Subnet::largest(&space)) as f64 / 1e6,
        space.macs(&Subnet::smallest(&space)) as f64 / 1e6,
        args.run.dataset,
        train_set.len(),
        test_set.len(),
        args.run.epochs(),
        steps_per_epoch,
        args.run.batch(),
        match args.largest_epochs {
            0 => String::new(),
            n => format!("the largest subnet alone for {n} epochs, then "),
        },
        2 + args.random_subnets,
        args.run.backend
    );
    let bar = args.run.progress_bar(steps_per_epoch);
    let start = Instant::now();
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let mut progress = |p: SupernetProgress| match p {
        SupernetProgress::Compiled { seconds, graph_nodes } => say(format!(
            "compiled the supernet's training graph ({graph_nodes} nodes) and its statistics and evaluation graphs in {seconds:.1} s"
        )),
        SupernetProgress::Step { epoch, step, steps, loss, lr } => {
            bar.set_position((epoch * steps + step) as u64);
            bar.set_message(format!("epoch {} largest loss {loss:.4} lr {lr:.4}", epoch + 1));
        }
        SupernetProgress::Epoch(e) => say(format!(
            "epoch {:>3}: largest train_loss={:.4} train_acc={:.2}% test_acc={:.2}%, smallest test_acc={:.2}%, lr={:.4} {:.1} s \
             {:.1} images/s ({:.1} subnet-images/s)",
            e.stats.epoch,
            e.stats.train_loss,
            100.0 * e.stats.train_acc,
            100.0 * e.stats.test_acc,
            100.0 * e.smallest_test_acc,
            e.stats.lr,
            e.stats.seconds,
            e.stats.images_per_s,
            e.stats.images_per_s * (if e.stats.epoch <= args.largest_epochs { 1 } else { 2 + args.random_subnets }) as f64
        )),
    };
    let outcome = supernet::train_supernet(&space, &cfg, &train_set, &test_set, &mut progress).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let history: Vec<_> = outcome.state.history.iter().map(|e| e.stats.clone()).collect();
    let plot = args.run.write_curve(&history, &format!("{} supernet (largest subnet) on {}", space.name, args.run.dataset))?;
    if !outcome.finished {
        args.run.say_stopped(outcome.state.global_step, outcome.state.epoch, outcome.state.step_in_epoch);
        return Ok(());
    }
    let last = outcome.state.history.last().ok_or("no epoch ran")?;
    let secs: f64 = history.iter().map(|s| s.seconds).sum();
    let images: f64 = history.iter().map(|s| s.seconds * s.images_per_s).sum();
    println!(
        "largest_test_acc={:.4} smallest_test_acc={:.4} largest_train_acc={:.4} epochs={} train_seconds={:.1} images_per_s={:.1} wall_seconds={:.1}",
        last.stats.test_acc,
        last.smallest_test_acc,
        last.stats.train_acc,
        history.len(),
        secs,
        images / secs.max(1e-9),
        start.elapsed().as_secs_f64()
    );
    println!("checkpoint: {}  curve: {}", args.run.output.display(), plot.display());
    Ok(())
}

/// An accuracy oracle by its spec: `supernet:PATH` (a supernet checkpoint; val_acc on the
/// dataset's test split, train_acc on a fixed training subset, inherited weights and
/// recalibrated batch norms), or any of [`nas::parse_oracle`]'s.
pub fn parse_oracle(spec: &str, options: &nas::OracleOptions) -> CliResult<Box<dyn nas::AccuracyOracle>> {
    if let Some(path) = spec.strip_prefix("supernet:") {
        if path.is_empty() {
            return Err("supernet: needs a checkpoint path (supernet:PATH)".into());
        }
        let backend = Backend::Llvm { threads: 2 };
        let o = supernet::SupernetOracle::load(std::path::Path::new(path), None, backend).map_err(|e| e.to_string())?;
        return Ok(Box::new(o));
    }
    nas::parse_oracle(spec, options).map_err(|e| e.to_string())
}

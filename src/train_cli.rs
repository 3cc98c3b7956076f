//! `chanasc train`: trains a network on an image dataset with chanasc's own kernels; progress
//! on stderr, a checkpoint (safetensors, resumed when present) and a training-curve SVG.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use train::data::{self, Augment};
use train::engine::Backend;
use train::model;
use train::optim::Sgd;
use train::trainer::{self, Config, Progress};

use crate::CliResult;

#[derive(Args)]
pub struct TrainArgs {
    /// The network: small-cnn (a MobileNetV3-style CNN sized to the dataset's images).
    #[arg(long, default_value = "small-cnn")]
    network: String,
    /// Plain momentum instead of Nesterov's.
    #[arg(long)]
    no_nesterov: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The options `chanasc train` and `chanasc supernet train` share: the data, the optimizer and
/// its schedule, augmentation, the backend, how long to run, the checkpoint and the plot.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// fashion-mnist (Debian's dataset-fashion-mnist, or --data-dir), mnist (--data-dir:
    /// the four IDX files, raw or .gz) or cifar10 (--data-dir: the binary batches).
    #[arg(long, default_value = "fashion-mnist")]
    pub(crate) dataset: String,
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Epochs (default: 10 for train; 5 for supernet train, which fit 30 minutes on 2 cores).
    #[arg(long = "epochs")]
    epochs_arg: Option<usize>,
    /// Images a step (default: 128 for train; 64 for supernet train).
    #[arg(long = "batch")]
    batch_arg: Option<usize>,
    /// Peak learning rate (cosine schedule after warm-up).
    #[arg(long, default_value_t = 0.1)]
    pub(crate) lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub(crate) momentum: f32,
    #[arg(long, default_value_t = 5e-5)]
    pub(crate) weight_decay: f32,
    #[arg(long, default_value_t = 0.1)]
    pub(crate) label_smoothing: f32,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup_epochs: f32,
    /// Random crop padding (pixels); 0 turns cropping off.
    #[arg(long, default_value_t = 2)]
    pub(crate) crop_padding: usize,
    #[arg(long)]
    pub(crate) no_flip: bool,
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// llvm (native code) or interp (the reference interpreter, slow).
    #[arg(long, default_value = "llvm")]
    pub(crate) backend: String,
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Train on the first N training images only (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) limit_train: usize,
    /// Evaluate on the first N test images only (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) limit_test: usize,
    /// Also checkpoint every N steps (0: at the end of every epoch only).
    #[arg(long, default_value_t = 0)]
    pub(crate) checkpoint_every: usize,
    /// Stop after this many steps in all (the checkpoint lets a later run resume).
    #[arg(long)]
    pub(crate) stop_after_steps: Option<usize>,
    /// The training curve (default: the checkpoint's path with .svg).
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// The checkpoint: parameters, batch-norm statistics, optimizer state; a run resumes
    /// from it when it exists.
    #[arg(short = 'o', long)]
    pub(crate) output: PathBuf,
}

impl RunArgs {
    /// Gives --epochs and --batch the command's defaults where they were not given.
    pub(crate) fn set_defaults(&mut self, epochs: usize, batch: usize) {
        self.epochs_arg.get_or_insert(epochs);
        self.batch_arg.get_or_insert(batch);
    }

    pub(crate) fn epochs(&self) -> usize {
        self.epochs_arg.expect("set_defaults gives every command its epochs")
    }

    pub(crate) fn batch(&self) -> usize {
        self.batch_arg.expect("set_defaults gives every command its batch")
    }

    /// The training set-up these options give: a run of `steps_per_epoch` steps an epoch,
    /// evaluated on `test_images` images.
    pub(crate) fn config(&self, backend: Backend, steps_per_epoch: usize, test_images: usize, nesterov: bool) -> Config {
        Config {
            epochs: self.epochs(),
            batch: self.batch(),
            eval_batch: 500.min(test_images.max(1)),
            sgd: Sgd { lr: self.lr, momentum: self.momentum, weight_decay: self.weight_decay, nesterov },
            warmup_steps: (self.warmup_epochs.max(0.0) * steps_per_epoch as f32) as usize,
            label_smoothing: self.label_smoothing,
            augment: (self.crop_padding > 0 || !self.no_flip).then_some(Augment { crop_padding: self.crop_padding, flip: !self.no_flip }),
            bn_momentum: 0.1,
            seed: self.seed,
            backend,
            checkpoint: Some(self.output.clone()),
            checkpoint_every: self.checkpoint_every,
            stop_after_steps: self.stop_after_steps,
        }
    }

    /// The progress bar over every step of the run, on stderr.
    pub(crate) fn progress_bar(&self, steps_per_epoch: usize) -> indicatif::ProgressBar {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some((steps_per_epoch * self.epochs()) as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg} (eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    }

    /// Writes the training curve of `history` (to --plot, or beside the checkpoint) when an
    /// epoch ran, and returns its path.
    pub(crate) fn write_curve(&self, history: &[trainer::EpochStats], title: &str) -> CliResult<PathBuf> {
        let plot = self.plot.clone().unwrap_or_else(|| self.output.with_extension("svg"));
        if !history.is_empty() {
            std::fs::write(&plot, train::plot::training_curve(history, title)).map_err(|e| format!("{}: {e}", plot.display()))?;
        }
        Ok(plot)
    }

    /// Says where a run stopped by --stop-after-steps and how to resume it.
    pub(crate) fn say_stopped(&self, global_step: usize, epoch: usize, step_in_epoch: usize) {
        println!(
            "stopped after {global_step} steps (epoch {}, step {step_in_epoch}); run the same command again to resume from {}",
            epoch + 1,
            self.output.display()
        );
    }
}

pub(crate) fn load_dataset(name: &str, dir: Option<&Path>) -> CliResult<(data::Dataset, data::Dataset)> {
    let need_dir = || dir.ok_or_else(|| format!("--dataset {name} needs --data-dir"));
    match name {
        "fashion-mnist" => data::load_mnist_like(dir.unwrap_or(Path::new(data::FASHION_MNIST_DIR))),
        "mnist" => data::load_mnist_like(need_dir()?),
        "cifar10" => data::load_cifar10(need_dir()?),
        other => return Err(format!("unknown --dataset {other:?}; available: fashion-mnist, mnist, cifar10")),
    }
    .map_err(|e| e.to_string())
}

pub(crate) fn first(d: data::Dataset, n: usize) -> data::Dataset {
    if n == 0 || n >= d.len() {
        return d;
    }
    d.subset(&(0..n).collect::<Vec<_>>())
}

pub fn train(mut args: TrainArgs) -> CliResult<()> {
    args.run.set_defaults(10, 128);
    let backend = Backend::parse(&args.run.backend, args.run.threads).map_err(|e| e.to_string())?;
    if args.run.epochs() == 0 {
        return Err("--epochs must be at least 1".into());
    }
    let (train_set, test_set) = load_dataset(&args.run.dataset, args.run.data_dir.as_deref())?;
    let (train_set, test_set) = (first(train_set, args.run.limit_train), first(test_set, args.run.limit_test));
    let input = [train_set.channels, train_set.height, train_set.width];
    let classes = train_set.classes.max(test_set.classes);
    let net = match args.network.as_str() {
        "small-cnn" => model::small_cnn(input, classes),
        other => return Err(format!("unknown --network {other:?}; available: small-cnn")),
    };
    let steps_per_epoch = train_set.len() / args.run.batch().max(1);
    let cfg = args.run.config(backend, steps_per_epoch, test_set.len(), !args.no_nesterov);
    eprintln!(
        "training {} ({} parameters) on {} ({} train, {} test images of {}x{}x{}), {} epochs of {} steps, batch {}, {}",
        net.name,
        net.params().map_err(|e| e.to_string())?.0.iter().map(|p| p.shape.iter().product::<usize>()).sum::<usize>(),
        args.run.dataset,
        train_set.len(),
        test_set.len(),
        input[0],
        input[1],
        input[2],
        args.run.epochs(),
        steps_per_epoch,
        args.run.batch(),
        args.run.backend
    );
    let bar = args.run.progress_bar(steps_per_epoch);
    let start = Instant::now();
    // Without a terminal the bar is hidden: its lines go to stderr directly.
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let mut progress = |p: Progress| match p {
        Progress::Compiled { seconds, graph_nodes } => {
            say(format!("compiled the training graph ({graph_nodes} nodes) and the evaluation graph in {seconds:.1} s"))
        }
        Progress::Step { epoch, step, steps, loss, lr } => {
            bar.set_position((epoch * steps + step) as u64);
            bar.set_message(format!("epoch {} loss {loss:.4} lr {lr:.4}", epoch + 1));
        }
        Progress::Epoch(s) => say(format!(
            "epoch {:>3}: train_loss={:.4} train_acc={:.2}% test_acc={:.2}% lr={:.4} {:.1} s {:.0} images/s",
            s.epoch,
            s.train_loss,
            100.0 * s.train_acc,
            100.0 * s.test_acc,
            s.lr,
            s.seconds,
            s.images_per_s
        )),
    };
    let outcome = trainer::train(&net, &cfg, &train_set, &test_set, &mut progress).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let history = &outcome.state.history;
    let plot = args.run.write_curve(history, &format!("{} on {}", net.name, args.run.dataset))?;
    if !outcome.finished {
        args.run.say_stopped(outcome.state.global_step, outcome.state.epoch, outcome.state.step_in_epoch);
        return Ok(());
    }
    let last = history.last().ok_or("no epoch ran")?;
    let train_seconds: f64 = history.iter().map(|s| s.seconds).sum();
    let images: f64 = history.iter().map(|s| s.seconds * s.images_per_s).sum();
    println!(
        "test_acc={:.4} train_acc={:.4} train_loss={:.4} epochs={} train_seconds={:.1} images_per_s={:.1} wall_seconds={:.1}",
        last.test_acc,
        last.train_acc,
        last.train_loss,
        history.len(),
        train_seconds,
        images / train_seconds.max(1e-9),
        start.elapsed().as_secs_f64()
    );
    println!("checkpoint: {}  curve: {}", args.run.output.display(), plot.display());
    Ok(())
}

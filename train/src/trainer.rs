//! The training loop: seeded batches through one compiled training graph, SGD on the host,
//! batch-norm running statistics, evaluation after every epoch, and checkpoints from which a
//! stopped run resumes exactly where it was (the data order and augmentation of a step are
//! drawn from the seed, epoch and step, so they do not depend on where a run started).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ir::Tensor;
use serde_json::json;

use crate::checkpoint;
use crate::data::{epoch_order, Augment, Dataset};
use crate::engine::{Backend, Engine};
use crate::error::{Result, TrainError};
use crate::model::{Graphs, Network};
use crate::optim::{cosine_lr, Sgd};
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct Config {
    pub epochs: usize,
    pub batch: usize,
    pub eval_batch: usize,
    /// `sgd.lr` is the peak learning rate of the cosine schedule.
    pub sgd: Sgd,
    pub warmup_steps: usize,
    pub label_smoothing: f32,
    pub augment: Option<Augment>,
    /// Momentum of the batch norms' running statistics (PyTorch's 0.1).
    pub bn_momentum: f32,
    pub seed: u64,
    pub backend: Backend,
    /// Where checkpoints go; an existing one is resumed from.
    pub checkpoint: Option<PathBuf>,
    /// Also checkpoint every this many steps (0: at the end of each epoch only).
    pub checkpoint_every: usize,
    /// Stop (after checkpointing) once this many steps have run in total: to split a run.
    pub stop_after_steps: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub lr: f32,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_acc: f64,
    /// Training time of the epoch (steps only, not evaluation), seconds.
    pub seconds: f64,
    pub images_per_s: f64,
}

/// What a run reports as it goes.
pub enum Progress<'a> {
    Compiled { seconds: f64, graph_nodes: usize },
    Step { epoch: usize, step: usize, steps: usize, loss: f32, lr: f32 },
    Epoch(&'a EpochStats),
}

/// The state a checkpoint holds.
pub struct State {
    pub params: Vec<Tensor>,
    pub momenta: Vec<Vec<f32>>,
    /// Running mean and variance of each batch norm.
    pub running: Vec<(Vec<f32>, Vec<f32>)>,
    pub epoch: usize,
    pub step_in_epoch: usize,
    pub global_step: usize,
    pub history: Vec<EpochStats>,
    /// The current epoch so far: loss sum, correct, images, seconds.
    pub partial: (f64, usize, usize, f64),
}

pub struct Outcome {
    pub state: State,
    /// Whether all epochs ran (false: stopped by `stop_after_steps`).
    pub finished: bool,
}

fn fingerprint(net: &Network, cfg: &Config) -> String {
    json!({
        "network": net.name, "layers": format!("{:?}", net.layers), "epochs": cfg.epochs, "batch": cfg.batch,
        "lr": cfg.sgd.lr, "momentum": cfg.sgd.momentum, "weight_decay": cfg.sgd.weight_decay, "nesterov": cfg.sgd.nesterov,
        "warmup_steps": cfg.warmup_steps, "label_smoothing": cfg.label_smoothing,
        "augment": cfg.augment.map(|a| (a.crop_padding, a.flip)), "seed": cfg.seed,
    })
    .to_string()
}

fn initial_state(graphs: &Graphs, seed: u64) -> State {
    let mut rng = Rng::derived(seed, 0, 0);
    let params: Vec<Tensor> = graphs.params.iter().map(|p| p.initial(&mut rng)).collect();
    State {
        momenta: params.iter().map(|p| vec![0.0; p.numel()]).collect(),
        params,
        running: graphs.bn.iter().map(|(_, c)| (vec![0.0; *c], vec![1.0; *c])).collect(),
        epoch: 0,
        step_in_epoch: 0,
        global_step: 0,
        history: Vec::new(),
        partial: (0.0, 0, 0, 0.0),
    }
}

/// The checkpoint's tensors: parameters and running statistics under their own names (what
/// inference needs), momenta under `optimizer.momentum.`.
fn save(path: &std::path::Path, graphs: &Graphs, state: &State, fp: &str, norm: &(Vec<f32>, Vec<f32>)) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (spec, (p, m)) in graphs.params.iter().zip(state.params.iter().zip(&state.momenta)) {
        tensors.insert(spec.name.clone(), p.clone());
        tensors.insert(format!("optimizer.momentum.{}", spec.name), Tensor::f32(spec.shape.clone(), m.clone())?);
    }
    for ((name, c), (m, v)) in graphs.bn.iter().zip(&state.running) {
        tensors.insert(format!("{name}.running_mean"), Tensor::f32(vec![*c], m.clone())?);
        tensors.insert(format!("{name}.running_var"), Tensor::f32(vec![*c], v.clone())?);
    }
    let mut meta = BTreeMap::new();
    meta.insert("config".into(), fp.to_string());
    meta.insert("epoch".into(), state.epoch.to_string());
    meta.insert("step_in_epoch".into(), state.step_in_epoch.to_string());
    meta.insert("global_step".into(), state.global_step.to_string());
    meta.insert("history".into(), serde_json::to_string(&state.history).expect("serializes"));
    meta.insert("partial".into(), serde_json::to_string(&state.partial).expect("serializes"));
    meta.insert("normalization".into(), serde_json::to_string(norm).expect("serializes"));
    checkpoint::write(path, &tensors, &meta)
}

fn load(path: &std::path::Path, graphs: &Graphs, fp: &str) -> Result<State> {
    let (mut tensors, meta) = checkpoint::read(path)?;
    let bad = |m: String| TrainError::File { path: path.display().to_string(), message: m };
    if meta.get("config").map(String::as_str) != Some(fp) {
        return Err(bad("the checkpoint was made by a run with another network or settings; remove it or pick another path".into()));
    }
    let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = tensors.remove(name).ok_or_else(|| bad(format!("tensor {name} is missing")))?;
        if t.shape != shape {
            return Err(bad(format!("tensor {name} has shape {:?}, the network's is {shape:?}", t.shape)));
        }
        Ok(t)
    };
    let mut params = Vec::new();
    let mut momenta = Vec::new();
    for spec in &graphs.params {
        params.push(take(&spec.name, &spec.shape)?);
        momenta.push(take(&format!("optimizer.momentum.{}", spec.name), &spec.shape)?.as_f32().expect("f32").to_vec());
    }
    let mut running = Vec::new();
    for (name, c) in &graphs.bn {
        let m = take(&format!("{name}.running_mean"), &[*c])?.as_f32().expect("f32").to_vec();
        let v = take(&format!("{name}.running_var"), &[*c])?.as_f32().expect("f32").to_vec();
        running.push((m, v));
    }
    let num =
        |k: &str| -> Result<usize> { meta.get(k).and_then(|s| s.parse().ok()).ok_or_else(|| bad(format!("metadata {k} is missing"))) };
    let json_of = |k: &str| meta.get(k).cloned().unwrap_or_default();
    Ok(State {
        params,
        momenta,
        running,
        epoch: num("epoch")?,
        step_in_epoch: num("step_in_epoch")?,
        global_step: num("global_step")?,
        history: serde_json::from_str(&json_of("history")).map_err(|e| bad(format!("metadata history: {e}")))?,
        partial: serde_json::from_str(&json_of("partial")).map_err(|e| bad(format!("metadata partial: {e}")))?,
    })
}

fn argmax_hits(logits: &Tensor, labels: &[i64], rows: usize) -> usize {
    let z = logits.as_f32().expect("f32 logits");
    let k = logits.shape[1];
    (0..rows)
        .filter(|&r| {
            let row = &z[r * k..(r + 1) * k];
            let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            best as i64 == labels[r]
        })
        .count()
}

/// Accuracy of the evaluation graph on `data` (un-augmented); a last partial batch is padded.
pub fn evaluate(
    engine: &Engine,
    state: &State,
    data: &Dataset,
    eval_batch: usize,
    norm: &(Vec<f32>, Vec<f32>),
) -> Result<f64> {
    let mut correct = 0;
    let mut rng = Rng::new(0);
    let mut i = 0;
    while i < data.len() {
        let rows = eval_batch.min(data.len() - i);
        let idx: Vec<usize> = (0..eval_batch).map(|k| if k < rows { i + k } else { i }).collect();
        let (x, y) = data.batch(&idx, norm, None, &mut rng)?;
        let mut inputs = vec![x];
        inputs.extend(state.params.iter().cloned());
        for (m, v) in &state.running {
            inputs.push(Tensor::f32(vec![m.len()], m.clone())?);
            inputs.push(Tensor::f32(vec![v.len()], v.clone())?);
        }
        let out = engine.run(&inputs)?;
        correct += argmax_hits(&out[0], y.as_i64().expect("i64 labels"), rows);
        i += rows;
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// Trains `net` on `train` and evaluates on `test` after every epoch.
pub fn train(net: &Network, cfg: &Config, train: &Dataset, test: &Dataset, progress: &mut dyn FnMut(Progress)) -> Result<Outcome> {
    if train.channels != net.input[0] || train.height != net.input[1] || train.width != net.input[2] {
        return Err(TrainError::Invalid(format!(
            "the network takes {:?} images, the dataset has {}x{}x{}",
            net.input, train.channels, train.height, train.width
        )));
    }
    if train.classes > net.classes {
        return Err(TrainError::Invalid(format!("the dataset has {} classes, the network {}", train.classes, net.classes)));
    }
    if cfg.batch == 0 || cfg.batch > train.len() || cfg.eval_batch == 0 {
        return Err(TrainError::Invalid(format!("batch {} does not fit {} training images", cfg.batch, train.len())));
    }
    let graphs = net.graphs(cfg.batch, cfg.eval_batch, cfg.label_smoothing)?;
    let start = Instant::now();
    let train_engine = Engine::build(&graphs.train, cfg.backend)?;
    let eval_engine = Engine::build(&graphs.eval, cfg.backend)?;
    progress(Progress::Compiled { seconds: start.elapsed().as_secs_f64(), graph_nodes: graphs.train.nodes.len() });
    let norm = train.channel_stats();
    let fp = fingerprint(net, cfg);
    let mut state = match &cfg.checkpoint {
        Some(p) if p.exists() => load(p, &graphs, &fp)?,
        _ => initial_state(&graphs, cfg.seed),
    };
    let steps = train.len() / cfg.batch;
    let total = steps * cfg.epochs;
    let nbn = graphs.bn.len();
    while state.epoch < cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, state.epoch);
        let mut lr = 0.0;
        while state.step_in_epoch < steps {
            if cfg.stop_after_steps.is_some_and(|s| state.global_step >= s) {
                if let Some(p) = &cfg.checkpoint {
                    save(p, &graphs, &state, &fp, &norm)?;
                }
                return Ok(Outcome { state, finished: false });
            }
            let t0 = Instant::now();
            let s = state.step_in_epoch;
            let idx = &order[s * cfg.batch..(s + 1) * cfg.batch];
            let mut rng = Rng::derived(cfg.seed, 1 + state.epoch as u64, 1 + s as u64);
            let (x, y) = train.batch(idx, &norm, cfg.augment.as_ref(), &mut rng)?;
            let labels = y.as_i64().expect("i64 labels").to_vec();
            let mut inputs = vec![x, y];
            inputs.extend(state.params.iter().cloned());
            let out = train_engine.run(&inputs)?;
            let loss = out[0].as_f32().expect("f32")[0];
            if !loss.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "the loss diverged ({loss}) at epoch {} step {s}; lower the learning rate",
                    state.epoch
                )));
            }
            let hits = argmax_hits(&out[1], &labels, cfg.batch);
            for (k, (m, v)) in state.running.iter_mut().enumerate() {
                let bm = out[2 + 2 * k].as_f32().expect("f32");
                let bv = out[3 + 2 * k].as_f32().expect("f32");
                let n = graphs.bn_count[k] as f32;
                let unbias = n / (n - 1.0).max(1.0);
                let mo = cfg.bn_momentum;
                for c in 0..m.len() {
                    m[c] = (1.0 - mo) * m[c] + mo * bm[c];
                    v[c] = (1.0 - mo) * v[c] + mo * bv[c] * unbias;
                }
            }
            lr = cosine_lr(cfg.sgd.lr, state.global_step, total, cfg.warmup_steps);
            for (k, spec) in graphs.params.iter().enumerate() {
                let g = out[2 + 2 * nbn + k].as_f32().expect("f32");
                let ir::TensorData::F32(w) = &mut state.params[k].data else { unreachable!("parameters are f32") };
                cfg.sgd.step(lr, w, g, &mut state.momenta[k], spec.decay);
            }
            state.partial.0 += loss as f64 * cfg.batch as f64;
            state.partial.1 += hits;
            state.partial.2 += cfg.batch;
            state.partial.3 += t0.elapsed().as_secs_f64();
            state.step_in_epoch += 1;
            state.global_step += 1;
            progress(Progress::Step { epoch: state.epoch, step: state.step_in_epoch, steps, loss, lr });
            if cfg.checkpoint_every > 0 && state.global_step % cfg.checkpoint_every == 0 && state.step_in_epoch < steps {
                if let Some(p) = &cfg.checkpoint {
                    save(p, &graphs, &state, &fp, &norm)?;
                }
            }
        }
        let test_acc = evaluate(&eval_engine, &state, test, cfg.eval_batch, &norm)?;
        let (loss_sum, hits, seen, secs) = state.partial;
        let stats = EpochStats {
            epoch: state.epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: hits as f64 / seen.max(1) as f64,
            test_acc,
            seconds: secs,
            images_per_s: seen as f64 / secs.max(1e-9),
        };
        progress(Progress::Epoch(&stats));
        state.history.push(stats);
        state.epoch += 1;
        state.step_in_epoch = 0;
        state.partial = (0.0, 0, 0, 0.0);
        if let Some(p) = &cfg.checkpoint {
            save(p, &graphs, &state, &fp, &norm)?;
        }
    }
    Ok(Outcome { state, finished: true })
}

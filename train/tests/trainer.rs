//! The training loop on a synthetic task, on the interpreter: it learns, it is reproducible,
//! a stopped run resumes to the very same result, and checkpoints are checked on load.

use std::collections::BTreeMap;
use std::path::PathBuf;

use train::checkpoint;
use train::data::{Augment, Dataset};
use train::engine::Backend;
use train::model;
use train::optim::Sgd;
use train::rng::Rng;
use train::trainer::{self, Config, Outcome};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chanasc-train-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// 8x8 images: class 0 bright on the left half, class 1 on the right, with noise.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = (i % 2) as u8;
        for _y in 0..8 {
            for x in 0..8 {
                let bright = (x < 4) == (class == 0);
                let base = if bright { 180.0 } else { 60.0 };
                images.push((base + 60.0 * (rng.uniform() - 0.5)) as u8);
            }
        }
        labels.push(class);
    }
    Dataset { images, labels, channels: 1, height: 8, width: 8, classes: 2 }
}

fn config(checkpoint: Option<PathBuf>, stop: Option<usize>) -> Config {
    Config {
        epochs: 3,
        batch: 8,
        eval_batch: 16,
        sgd: Sgd { lr: 0.1, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
        warmup_steps: 2,
        label_smoothing: 0.1,
        augment: Some(Augment { crop_padding: 1, flip: false }),
        bn_momentum: 0.1,
        seed: 3,
        backend: Backend::Interp,
        checkpoint,
        checkpoint_every: 3,
        stop_after_steps: stop,
    }
}

fn run(cfg: &Config) -> Outcome {
    let net = model::tiny([1, 8, 8], 2);
    trainer::train(&net, cfg, &synthetic(64, 1), &synthetic(32, 2), &mut |_| {}).unwrap()
}

#[test]
fn learns_the_synthetic_task_reproducibly() {
    let a = run(&config(None, None));
    assert!(a.finished);
    let h = &a.state.history;
    assert_eq!(h.len(), 3);
    assert!(h[2].train_loss < h[0].train_loss, "{h:?}");
    assert!(h[2].test_acc >= 0.9, "{h:?}");
    let b = run(&config(None, None));
    assert_eq!(a.state.params, b.state.params);
}

#[test]
fn a_stopped_run_resumes_to_the_same_result() {
    let whole = run(&config(None, None));
    let ck = tmp("resume.safetensors");
    // Stop mid-epoch (8 steps per epoch), then at an epoch boundary, then finish.
    for stop in [5, 8] {
        let part = run(&config(Some(ck.clone()), Some(stop)));
        assert!(!part.finished);
        assert_eq!(part.state.global_step, stop);
        assert!(ck.exists());
    }
    let rest = run(&config(Some(ck.clone()), None));
    assert!(rest.finished);
    assert_eq!(rest.state.params, whole.state.params);
    assert_eq!(rest.state.momenta, whole.state.momenta);
    assert_eq!(rest.state.running, whole.state.running);
    for (r, w) in rest.state.history.iter().zip(&whole.state.history) {
        assert_eq!((r.train_loss, r.train_acc, r.test_acc), (w.train_loss, w.train_acc, w.test_acc));
    }
    // No temporary files are left next to the checkpoint.
    let leftovers: Vec<_> = std::fs::read_dir(ck.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    // A checkpoint of other settings is refused.
    let mut other = config(Some(ck.clone()), None);
    other.seed = 4;
    let net = model::tiny([1, 8, 8], 2);
    let err = trainer::train(&net, &other, &synthetic(64, 1), &synthetic(32, 2), &mut |_| {}).err().expect("refused").to_string();
    assert!(err.contains("another network or settings"), "{err}");
}

#[test]
fn checkpoints_round_trip_and_reject_bad_files() {
    let p = tmp("roundtrip.safetensors");
    let mut t = BTreeMap::new();
    t.insert("a".to_string(), ir::Tensor::f32(vec![2, 3], (0..6).map(|i| i as f32 * 0.5).collect()).unwrap());
    t.insert("b".to_string(), ir::Tensor::f32(vec![1], vec![-1.0]).unwrap());
    let mut meta = BTreeMap::new();
    meta.insert("epoch".to_string(), "4".to_string());
    checkpoint::write(&p, &t, &meta).unwrap();
    let (t2, meta2) = checkpoint::read(&p).unwrap();
    assert_eq!((t2, meta2), (t, meta));
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 7, 20, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        assert!(checkpoint::read(&p).is_err(), "cut at {cut}");
    }
}

#[test]
fn mismatched_data_is_an_error() {
    let net = model::tiny([1, 28, 28], 2);
    let err =
        trainer::train(&net, &config(None, None), &synthetic(64, 1), &synthetic(32, 2), &mut |_| {}).err().expect("an error").to_string();
    assert!(err.contains("takes [1, 28, 28] images"), "{err}");
}

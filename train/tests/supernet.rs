//! The elastic supernet on a small space, on the interpreter: a masked subnet computes what
//! the directly built subnet with the same (cut) weights computes, in training mode and after
//! batch-norm recalibration; masked-out weights get exactly zero gradient; the 28x28 space's
//! largest and smallest subnets have the documented sizes.

use std::collections::BTreeMap;

use ir::Tensor;
use train::rng::Rng;
use train::supernet::{fmnist_mbv3, Kind, Space, StageDef, Subnet};

fn small_space() -> Space {
    Space {
        name: "test".into(),
        input: [1, 12, 12],
        classes: 3,
        stem: 8,
        stem_stride: 1,
        first_block: 8,
        stages: vec![StageDef { width: 8, stride: 2, hs: false, se: false }, StageDef { width: 16, stride: 2, hs: true, se: true }],
        final_expand: 32,
    }
}

fn params(space: &Space, seed: u64) -> (Vec<Tensor>, BTreeMap<String, Tensor>) {
    let mut rng = Rng::new(seed);
    let layout = space.layout(None);
    // Non-trivial batch-norm scales and shifts and SE biases, so that a masked channel that
    // leaked would show.
    let v: Vec<Tensor> = layout
        .params
        .iter()
        .map(|p| {
            let n: usize = p.shape.iter().product();
            Tensor::f32(
                p.shape.clone(),
                (0..n).map(|_| 0.5 * rng.normal() + if p.name.ends_with("bn.weight") { 1.0 } else { 0.0 }).collect(),
            )
            .unwrap()
        })
        .collect();
    let named = layout.params.iter().map(|p| p.name.clone()).zip(v.iter().cloned()).collect();
    (v, named)
}

fn images(space: &Space, n: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let [c, h, w] = space.input;
    Tensor::f32(vec![n, c, h, w], (0..n * c * h * w).map(|_| rng.normal()).collect()).unwrap()
}

fn close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.shape, b.shape, "{what}");
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * scale, "{what}[{i}]: masked {x} vs direct {y}");
    }
}

fn subnets(space: &Space) -> Vec<Subnet> {
    let mut rng = Rng::new(11);
    let mut v = vec![Subnet::smallest(space), Subnet::largest(space)];
    v.extend((0..3).map(|_| Subnet::random(space, &mut rng)));
    // A mixed one with a cut block in each stage.
    v.push(Subnet { ks: vec![5, 3, 7, 3, 7, 5, 3, 3], e: vec![4, 6, 3, 3, 3, 4, 6, 3], d: vec![3, 2] });
    v
}

#[test]
fn masked_subnet_equals_direct_subnet() {
    let space = small_space();
    let (full, named) = params(&space, 1);
    let x = images(&space, 4, 2);
    let masked_stats = space.graph(None, Kind::Stats, 4, 0.0).unwrap();
    let masked_eval = space.graph(None, Kind::Eval, 4, 0.0).unwrap();
    let full_bn = space.layout(None).bn;
    for sub in subnets(&space) {
        let masks = space.masks(&sub).unwrap();
        let mut inputs = vec![x.clone()];
        inputs.extend(full.iter().cloned());
        inputs.extend(masks.iter().cloned());
        let m_out = interp::run(&masked_stats, &inputs).unwrap();

        let direct_stats = space.graph(Some(&sub), Kind::Stats, 4, 0.0).unwrap();
        let cut = space.slice_params(&sub, &named).unwrap();
        let mut inputs = vec![x.clone()];
        inputs.extend(cut.iter().cloned());
        let d_out = interp::run(&direct_stats, &inputs).unwrap();
        close(&m_out[0], &d_out[0], &format!("{} training-mode logits", sub.compact()));

        // Evaluation with the batch's statistics as running statistics: the masked graph's
        // statistics of the subnet's batch norms, cut, are the direct graph's.
        let stats: BTreeMap<String, (Tensor, Tensor)> =
            full_bn.iter().enumerate().map(|(k, (name, _))| (name.clone(), (m_out[1 + 2 * k].clone(), m_out[2 + 2 * k].clone()))).collect();
        let direct_bn = space.layout(Some(&sub)).bn;
        let mut inputs = vec![x.clone()];
        inputs.extend(cut.iter().cloned());
        for (k, (name, c)) in direct_bn.iter().enumerate() {
            let (m, v) = &stats[name];
            let (m, v) = (train::supernet::crop(m, &[*c]).unwrap(), train::supernet::crop(v, &[*c]).unwrap());
            close(&m, &d_out[1 + 2 * k], &format!("{} {name} mean", sub.compact()));
            inputs.push(m);
            inputs.push(v);
        }
        let direct_eval = space.graph(Some(&sub), Kind::Eval, 4, 0.0).unwrap();
        let d_logits = interp::run(&direct_eval, &inputs).unwrap();
        let mut inputs = vec![x.clone()];
        inputs.extend(full.iter().cloned());
        for (name, _) in &full_bn {
            inputs.push(stats[name].0.clone());
            inputs.push(stats[name].1.clone());
        }
        inputs.extend(masks);
        let m_logits = interp::run(&masked_eval, &inputs).unwrap();
        close(&m_logits[0], &d_logits[0], &format!("{} eval logits", sub.compact()));
        close(&m_logits[0], &m_out[0], &format!("{} eval vs training-mode logits", sub.compact()));
    }
}

#[test]
fn masked_out_weights_get_zero_gradient() {
    let space = small_space();
    let (full, _) = params(&space, 3);
    let layout = space.layout(None);
    let g = space.graph(None, Kind::Train, 4, 0.1).unwrap();
    // Stage 0 at depth 2 with kernel 3 and expand 3 in block 0; stage 1 full.
    let sub = Subnet { ks: vec![3, 5, 7, 7, 7, 7, 7, 7], e: vec![3, 6, 6, 6, 6, 6, 6, 6], d: vec![2, 4] };
    let mut inputs = vec![images(&space, 4, 5), Tensor::i64(vec![4], vec![0, 1, 2, 1]).unwrap()];
    inputs.extend(full.iter().cloned());
    inputs.extend(space.masks(&sub).unwrap());
    let out = interp::run(&g, &inputs).unwrap();
    let grad = |name: &str| -> Vec<f32> {
        let k = layout.params.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("{name}"));
        out[2 + k].as_f32().unwrap().to_vec()
    };
    // Block s0.b0: kernel 3 of 7 -> only the centre 3x3 of each channel's kernel; expand 3:
    // mid 24 of 48 channels.
    let (mid, max_mid) = (train::supernet::mid_width(8, 3), train::supernet::mid_width(8, 6));
    assert_eq!((mid, max_mid), (24, 48));
    let dw = grad("s0.b0.dw.weight");
    let mut inside = 0.0f32;
    for c in 0..max_mid {
        for r in 0..7 {
            for q in 0..7 {
                let v = dw[c * 49 + r * 7 + q];
                if c >= mid || !(2..5).contains(&r) || !(2..5).contains(&q) {
                    assert_eq!(v, 0.0, "dw channel {c} tap ({r},{q})");
                } else {
                    inside += v.abs();
                }
            }
        }
    }
    assert!(inside > 0.0, "the active centre taps learn");
    let ex = grad("s0.b0.expand.weight"); // [48, 8, 1, 1]
    assert!(ex[mid * 8..].iter().all(|&v| v == 0.0), "expand rows past the width");
    assert!(ex[..mid * 8].iter().any(|&v| v != 0.0));
    for n in ["s0.b0.expand.bn.weight", "s0.b0.dw.bn.bias"] {
        let v = grad(n);
        assert!(v[mid..].iter().all(|&v| v == 0.0) && v[..mid].iter().any(|&v| v != 0.0), "{n}");
    }
    let pr = grad("s0.b0.project.weight"); // [8, 48, 1, 1]
    for o in 0..8 {
        assert!(pr[o * 48 + mid..(o + 1) * 48].iter().all(|&v| v == 0.0), "project inputs past the width");
    }
    // Stage 0's blocks 2 and 3 are cut by depth: all their weights are still.
    for p in layout.params.iter().filter(|p| p.name.starts_with("s0.b2.") || p.name.starts_with("s0.b3.")) {
        assert!(grad(&p.name).iter().all(|&v| v == 0.0), "{} of a skipped block", p.name);
    }
    // Stage 1's block 3 is active: it learns.
    assert!(grad("s1.b3.dw.weight").iter().any(|&v| v != 0.0));
}

#[test]
fn fmnist_space_sizes() {
    let space = fmnist_mbv3(10);
    let big = space.macs(&Subnet::largest(&space));
    let small = space.macs(&Subnet::smallest(&space));
    assert!(small < big / 3, "{small} vs {big}");
    let n: usize = space.layout(None).params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
    assert!((100_000..1_000_000).contains(&n), "{n} parameters");
    // An OFA arch dict maps onto the first four stages.
    let a = nas::ArchConfig::max(32);
    assert_eq!(Subnet::from_arch(&space, &a).unwrap(), Subnet::largest(&space));
}

fn synthetic(n: usize, seed: u64) -> train::data::Dataset {
    let mut rng = Rng::new(seed);
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = (i % 3) as u8;
        for _y in 0..12 {
            for x in 0..12 {
                let bright = x / 4 == class as usize;
                images.push(((if bright { 190.0 } else { 50.0 }) + 60.0 * (rng.uniform() - 0.5)) as u8);
            }
        }
        labels.push(class);
    }
    train::data::Dataset { images, labels, channels: 1, height: 12, width: 12, classes: 3 }
}

fn sn_config(checkpoint: Option<std::path::PathBuf>, stop: Option<usize>, largest_epochs: usize) -> train::supernet::SupernetConfig {
    train::supernet::SupernetConfig {
        base: train::trainer::Config {
            epochs: 2,
            batch: 8,
            eval_batch: 16,
            sgd: train::optim::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: true },
            warmup_steps: 2,
            label_smoothing: 0.1,
            augment: Some(train::data::Augment { crop_padding: 1, flip: false }),
            bn_momentum: 0.1,
            seed: 7,
            backend: train::engine::Backend::Interp,
            checkpoint,
            checkpoint_every: 2,
            stop_after_steps: stop,
        },
        random_subnets: 2,
        largest_epochs,
        calib_images: 32,
        dataset: "synthetic".into(),
        data_dir: None,
    }
}

/// A supernet run stopped mid-epoch resumes from its checkpoint to the very same weights and
/// history as an uninterrupted run; the sandwich-trained subnets learn the task.
#[test]
fn supernet_training_resumes_exactly() {
    resumes_exactly(0);
}

/// The same with the first epoch training the largest subnet alone (progressive shrinking's
/// first phase), stopped in the first epoch and resumed across the switch to the sandwich rule.
#[test]
fn supernet_training_with_a_largest_only_epoch_resumes_exactly() {
    resumes_exactly(1);
}

fn resumes_exactly(largest_epochs: usize) {
    let space = small_space();
    let (tr, te) = (synthetic(48, 1), synthetic(48, 2));
    let dir = std::env::temp_dir().join(format!("chanasc-supernet-{largest_epochs}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("sn.safetensors");
    let _ = std::fs::remove_file(&ck);
    let whole = train::supernet::train_supernet(&space, &sn_config(None, None, largest_epochs), &tr, &te, &mut |_| {}).unwrap();
    assert!(whole.finished);
    let part =
        train::supernet::train_supernet(&space, &sn_config(Some(ck.clone()), Some(5), largest_epochs), &tr, &te, &mut |_| {}).unwrap();
    assert!(!part.finished && part.state.global_step == 5);
    let rest = train::supernet::train_supernet(&space, &sn_config(Some(ck.clone()), None, largest_epochs), &tr, &te, &mut |_| {}).unwrap();
    assert!(rest.finished);
    assert_eq!(rest.state.params, whole.state.params);
    // The history, but for timings (and the last digit of a loss sum through JSON).
    assert_eq!(rest.state.history.len(), whole.state.history.len());
    for (a, b) in rest.state.history.iter().zip(&whole.state.history) {
        assert!((a.stats.train_loss - b.stats.train_loss).abs() < 1e-9, "{a:?} vs {b:?}");
        assert_eq!(
            (a.stats.lr, a.stats.train_acc, a.stats.test_acc, a.smallest_test_acc),
            (b.stats.lr, b.stats.train_acc, b.stats.test_acc, b.smallest_test_acc)
        );
    }
    // Above chance (1/3) after 12 steps, largest and smallest.
    let last = whole.state.history.last().unwrap();
    assert!(last.stats.test_acc > 0.45 && last.smallest_test_acc > 0.45, "{last:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deployed_subnet_computes_what_the_masked_supernet_computes() {
    let space = small_space();
    let (full, named) = params(&space, 3);
    // Pixels in [0, 1]; the deployed graph normalizes them itself.
    let mut rng = Rng::new(4);
    let [c, h, w] = space.input;
    let pixels = Tensor::f32(vec![4, c, h, w], (0..4 * c * h * w).map(|_| rng.uniform()).collect()).unwrap();
    let norm = (vec![0.3f32], vec![0.4f32]);
    let x = Tensor::f32(pixels.shape.clone(), pixels.as_f32().unwrap().iter().map(|p| (p - 0.3) / 0.4).collect()).unwrap();
    let masked_stats = space.graph(None, Kind::Stats, 4, 0.0).unwrap();
    let masked_eval = space.graph(None, Kind::Eval, 4, 0.0).unwrap();
    for sub in subnets(&space) {
        let masks = space.masks(&sub).unwrap();
        let mut inputs = vec![x.clone()];
        inputs.extend(full.iter().cloned());
        inputs.extend(masks.iter().cloned());
        let stats = interp::run(&masked_stats, &inputs).unwrap();
        let running: Vec<(Vec<f32>, Vec<f32>)> = (0..space.layout(None).bn.len())
            .map(|k| (stats[1 + 2 * k].as_f32().unwrap().to_vec(), stats[2 + 2 * k].as_f32().unwrap().to_vec()))
            .collect();
        let mut inputs = vec![x.clone()];
        inputs.extend(full.iter().cloned());
        for (m, v) in &running {
            inputs.push(Tensor::f32(vec![m.len()], m.clone()).unwrap());
            inputs.push(Tensor::f32(vec![v.len()], v.clone()).unwrap());
        }
        inputs.extend(masks);
        let expected = interp::run(&masked_eval, &inputs).unwrap();

        let cut = space.slice_params(&sub, &named).unwrap();
        let cut_running = space.slice_running(&sub, &running).unwrap();
        let deployed = space.deploy_graph(&sub, &cut, &cut_running, &norm, 4).unwrap();
        assert_eq!(deployed.inputs.len(), 1, "only the image is an input");
        let got = interp::run(&deployed, &[pixels.clone()]).unwrap();
        close(&expected[0], &got[0], &format!("{} deployed logits", sub.compact()));
    }
    let sub = Subnet::smallest(&space);
    let e = space.deploy_graph(&sub, &full, &[], &norm, 1).err().expect("wrong weights are an error").to_string();
    assert!(e.contains("weights"), "{e}");
}

#[test]
fn pieces_chain_into_every_subnet() {
    let space = fmnist_mbv3(10);
    assert_eq!(space.pieces().len(), 2 + 16 * 9);
    for sub in [Subnet::smallest(&space), Subnet::largest(&space), Subnet::random(&space, &mut Rng::new(5))] {
        let pieces = space.pieces_of(&sub);
        assert_eq!(pieces.len(), 2 + sub.d.iter().sum::<usize>());
        let mut shape = vec![1, 1, 28, 28];
        for p in pieces {
            let g = space.piece_graph(p, 0).unwrap();
            ir::graph::verify::verify(&g).unwrap();
            assert_eq!(g.inputs.len(), 1, "{}: weights are constants", p.key());
            assert_eq!(g.ty(g.inputs[0]).shape, shape, "{} takes what the piece before it gives", p.key());
            shape = g.ty(g.outputs[0]).shape.clone();
        }
        assert_eq!(shape, vec![1, 10]);
        let arch = sub.to_arch(&space);
        assert_eq!(Subnet::from_arch(&space, &arch).unwrap(), sub);
    }
}

#[test]
fn block_table_predicts_the_sum_of_a_subnets_pieces() {
    let space = fmnist_mbv3(10);
    let mut table = train::supernet::latency::BlockTable::new(&space, "test", 1);
    for (i, p) in space.pieces().iter().enumerate() {
        table.entries.insert(p.key(), i as f64);
    }
    let sub = Subnet::smallest(&space);
    let want: f64 = space.pieces_of(&sub).iter().map(|p| space.pieces().iter().position(|q| q == p).unwrap() as f64).sum();
    assert_eq!(table.predict(&space, &sub).unwrap(), want);
    let dir = std::env::temp_dir().join(format!("chanasc-blocktable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.json");
    table.save(&path).unwrap();
    assert_eq!(train::supernet::latency::BlockTable::load(&path).unwrap(), table);
    table.entries.remove("head");
    assert_eq!(table.missing(&space).len(), 1);
    assert!(table.predict(&space, &sub).unwrap_err().to_string().contains("no entry head"));
    std::fs::write(&path, "{not json").unwrap();
    assert!(train::supernet::latency::BlockTable::load(&path).unwrap_err().to_string().contains("not a block latency table"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sorting_channels_by_importance_keeps_the_largest_subnet() {
    let space = small_space();
    let (mut full, _) = params(&space, 5);
    let mut momenta: Vec<Vec<f32>> = full.iter().map(|t| t.as_f32().unwrap().iter().map(|v| v * 0.5).collect()).collect();
    let x = images(&space, 2, 6);
    let graph = space.graph(None, Kind::Stats, 2, 0.0).unwrap();
    let run = |params: &[Tensor], sub: &Subnet| {
        let mut inputs = vec![x.clone()];
        inputs.extend(params.iter().cloned());
        inputs.extend(space.masks(sub).unwrap());
        interp::run(&graph, &inputs).unwrap().remove(0)
    };
    let largest = Subnet::largest(&space);
    let (before, before_small) = (run(&full, &largest), run(&full, &Subnet::smallest(&space)));
    train::supernet::importance::sort_channels(&space, &mut full, &mut momenta).unwrap();
    close(&before, &run(&full, &largest), "largest subnet after sorting");
    assert_ne!(before_small.as_f32().unwrap(), run(&full, &Subnet::smallest(&space)).as_f32().unwrap(), "narrower subnets keep other channels");
    // Momenta moved with their weights; projection columns by decreasing L1 norm.
    let names: Vec<String> = space.layout(None).params.iter().map(|p| p.name.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        let halves: Vec<f32> = full[i].as_f32().unwrap().iter().map(|v| v * 0.5).collect();
        assert_eq!(momenta[i], halves, "{name}");
        if name.ends_with(".project.weight") {
            let (o, m) = (full[i].shape[0], full[i].shape[1]);
            let w = full[i].as_f32().unwrap();
            let norm = |c: usize| (0..o).map(|r| w[r * m + c].abs()).sum::<f32>();
            assert!((1..m).all(|c| norm(c - 1) >= norm(c)), "{name} is sorted");
        }
    }
}

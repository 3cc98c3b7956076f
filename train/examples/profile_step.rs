//! Profiles one training step of a 28x28 network compiled by the LLVM backend: images per
//! second and the slowest tensor programs. Networks: `small-cnn`, `fmnist-largest` (the
//! largest subnet of the fmnist-mbv3 space, built directly) and `fmnist-supernet` (the masked
//! supernet graph with the largest subnet's masks: what each sandwich-rule pass costs).
//!
//! `cargo run --release -p chanasc-train --example profile_step [NETWORK] [BATCH] [THREADS] [STEPS]`

use train::engine::{Backend, Engine};
use train::model::ParamSpec;
use train::supernet::{fmnist_mbv3, Kind, Subnet};

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let network = std::env::args().nth(1).unwrap_or_else(|| "small-cnn".into());
    let (batch, threads, steps) = (arg(2, 128), arg(3, 2), arg(4, 3));
    let space = fmnist_mbv3(10);
    let largest = Subnet::largest(&space);
    let (train_graph, params, masks): (ir::Graph, Vec<ParamSpec>, Vec<ir::Tensor>) = match network.as_str() {
        "small-cnn" => {
            let graphs = train::model::small_cnn([1, 28, 28], 10).graphs(batch, 500, 0.1).expect("the network builds");
            (graphs.train, graphs.params, Vec::new())
        }
        "fmnist-largest" => {
            (space.graph(Some(&largest), Kind::Train, batch, 0.1).expect("builds"), space.layout(Some(&largest)).params, Vec::new())
        }
        "fmnist-supernet" => (
            space.graph(None, Kind::Train, batch, 0.1).expect("builds"),
            space.layout(None).params,
            space.masks(&largest).expect("the largest subnet is in the space"),
        ),
        other => panic!("unknown network {other}: small-cnn, fmnist-largest or fmnist-supernet"),
    };
    if let Ok(path) = std::env::var("PROFILE_STEP_IR") {
        // The training graph as text IR, for `chanasc ir PATH --print-after schedule`.
        std::fs::write(&path, ir::text::print_graph(&train_graph)).expect("writes the graph");
    }
    let start = std::time::Instant::now();
    let Engine::Native(model) = Engine::build(&train_graph, Backend::Llvm { threads }).expect("compiles") else {
        unreachable!("llvm builds native code")
    };
    eprintln!("{network}: compiled {} graph nodes in {:.1} s", train_graph.nodes.len(), start.elapsed().as_secs_f64());
    let mut rng = train::rng::Rng::new(0);
    let mut inputs = vec![
        ir::Tensor::f32(vec![batch, 1, 28, 28], (0..batch * 784).map(|_| rng.normal()).collect()).expect("fits"),
        ir::Tensor::i64(vec![batch], (0..batch as i64).map(|i| i % 10).collect()).expect("fits"),
    ];
    inputs.extend(params.iter().map(|p| p.initial(&mut rng)));
    inputs.extend(masks);
    model.run(&inputs).expect("runs");
    let mut times = Vec::new();
    for _ in 0..steps.max(1) {
        let start = std::time::Instant::now();
        model.run(&inputs).expect("runs");
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let step = times[times.len() / 2];
    eprintln!("step {step:.3} s (median of {}) = {:.0} images/s, batch {batch}, {threads} threads", times.len(), batch as f64 / step);
    println!("images_per_s={:.1}", batch as f64 / step);
    let mut profile = model.profile();
    profile.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = profile.iter().map(|p| p.1).sum();
    let dense: f64 = profile.iter().filter(|p| p.0.starts_with("conv") || p.0.starts_with("matmul")).map(|p| p.1).sum();
    eprintln!("{} programs; convolutions and matrix products {:.0} % of the time", profile.len(), 100.0 * dense / total);
    // Time by kind of program (the name without its number).
    let mut kinds: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for (name, seconds, _) in &profile {
        let kind = name.trim_end_matches(|c: char| c.is_ascii_digit()).trim_end_matches('_').to_string();
        let e = kinds.entry(kind).or_default();
        e.0 += seconds;
        e.1 += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (kind, (seconds, n)) in kinds.iter().take(12) {
        eprintln!("{:>8.2} ms {:>5.1} % {n:>5} programs  {kind}", seconds * 1e3, 100.0 * seconds / total);
    }
    for (name, seconds, flops) in profile.iter().take(15) {
        eprintln!("{:>8.2} ms {:>5.1} % {:>7.2} GFLOP/s  {name}", seconds * 1e3, 100.0 * seconds / total, flops / seconds / 1e9);
    }
}

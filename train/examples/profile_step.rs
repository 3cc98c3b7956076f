//! Profiles one training step of `small-cnn` (28x28, batch from the first argument, default
//! 128) compiled by the LLVM backend: steps per second and the slowest tensor programs.
//!
//! `cargo run --release -p chanasc-train --example profile_step [BATCH] [THREADS]`

use train::engine::{Backend, Engine};

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (batch, threads) = (arg(1, 128), arg(2, 2));
    let net = train::model::small_cnn([1, 28, 28], 10);
    let graphs = net.graphs(batch, 500, 0.1).expect("the network builds");
    let start = std::time::Instant::now();
    let Engine::Native(model) = Engine::build(&graphs.train, Backend::Llvm { threads }).expect("compiles") else {
        unreachable!("llvm builds native code")
    };
    eprintln!("compiled {} graph nodes in {:.1} s", graphs.train.nodes.len(), start.elapsed().as_secs_f64());
    let mut rng = train::rng::Rng::new(0);
    let mut inputs = vec![
        ir::Tensor::f32(vec![batch, 1, 28, 28], (0..batch * 784).map(|_| rng.normal()).collect()).expect("fits"),
        ir::Tensor::i64(vec![batch], (0..batch as i64).map(|i| i % 10).collect()).expect("fits"),
    ];
    inputs.extend(graphs.params.iter().map(|p| p.initial(&mut rng)));
    model.run(&inputs).expect("runs");
    let start = std::time::Instant::now();
    for _ in 0..3 {
        model.run(&inputs).expect("runs");
    }
    let step = start.elapsed().as_secs_f64() / 3.0;
    eprintln!("step {step:.3} s = {:.0} images/s", batch as f64 / step);
    let mut profile = model.profile();
    profile.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = profile.iter().map(|p| p.1).sum();
    let dense: f64 = profile.iter().filter(|p| p.0.starts_with("conv") || p.0.starts_with("matmul")).map(|p| p.1).sum();
    eprintln!("{} programs; convolutions and matrix products {:.0} % of the time", profile.len(), 100.0 * dense / total);
    for (name, seconds, flops) in profile.iter().take(15) {
        eprintln!("{:>8.2} ms {:>5.1} % {:>7.2} GFLOP/s  {name}", seconds * 1e3, 100.0 * seconds / total, flops / seconds / 1e9);
    }
}

//! Gradient checks: every op's autodiff rule against central finite differences of the
//! forward graph, on the interpreter; a small network on the LLVM backend.

use ir::graph::{BinaryOp, PadMode, PoolKind, ReduceKind, UnaryOp, Window};
use ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use train::autodiff::training_graph;
use train::engine::{Backend, Engine};
use train::layers;

/// Uniform values in [lo, hi) from a seeded xorshift, away from the points in `kinks` (by
/// more than the finite-difference step) where the function is not differentiable.
fn values(n: usize, seed: u64, lo: f32, hi: f32, kinks: &[f32]) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = (s >> 40) as f32 / (1u64 << 24) as f32;
        let v = lo + (hi - lo) * u;
        if kinks.iter().all(|k| (v - k).abs() > 0.05) {
            out.push(v);
        }
    }
    out
}

fn f32_input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueId {
    g.add_input(name, TensorType::new(DType::F32, shape.to_vec()))
}

/// Appends `loss = sum(y * R)` with a fixed random R, so every element of y matters.
fn weighted_sum(g: &mut Graph, y: ValueId) -> ValueId {
    let shape = g.ty(y).shape.clone();
    let n: usize = shape.iter().product();
    let r = g.add_const(None, Tensor::f32(shape.clone(), values(n, 99, -1.0, 1.0, &[])).unwrap());
    let p = g.add_node(Op::Binary(BinaryOp::Mul), vec![y, r], None).unwrap();
    g.add_node(Op::Reduce { kind: ReduceKind::Sum, axes: (0..shape.len()).collect(), keep_dims: false }, vec![p], None).unwrap()
}

/// Checks the gradients of `loss` with respect to every f32 graph input against central
/// differences (step `eps`) at `inputs`, on the interpreter; returns the analytic gradients.
fn check_with(g: &Graph, loss: ValueId, stop: &[ValueId], inputs: &[Tensor], eps: f32, tol: f32) -> Vec<Tensor> {
    check_on(Backend::Interp, g, loss, stop, inputs, eps, tol)
}

/// `check_with` with both the training graph and the forward graph run by `backend`.
fn check_on(backend: Backend, g: &Graph, loss: ValueId, stop: &[ValueId], inputs: &[Tensor], eps: f32, tol: f32) -> Vec<Tensor> {
    let wrt: Vec<ValueId> = g.inputs.iter().copied().filter(|&v| g.ty(v).dtype == DType::F32).collect();
    let mut fwd = g.clone();
    fwd.outputs = vec![loss];
    let tg = training_graph(&fwd, loss, &wrt, stop).expect("autodiff");
    ir::graph::verify::verify(&tg.graph).expect("the training graph verifies");
    let outs = Engine::build(&tg.graph, backend).expect("builds").run(inputs).expect("training graph runs");
    let grads = outs[tg.forward_outputs..].to_vec();
    let fwd = Engine::build(&fwd.pruned(), backend).expect("builds");
    let loss_at = |ins: &[Tensor]| fwd.run(ins).expect("forward runs")[0].as_f32().unwrap()[0] as f64;
    let mut wrt_pos = 0;
    for (k, &v) in g.inputs.iter().enumerate() {
        if g.ty(v).dtype != DType::F32 {
            continue;
        }
        let analytic = grads[wrt_pos].as_f32().unwrap().to_vec();
        wrt_pos += 1;
        let scale = analytic.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        let n = inputs[k].numel();
        // Up to 24 elements spread over the tensor.
        let picks: Vec<usize> = if n <= 24 { (0..n).collect() } else { (0..24).map(|i| i * n / 24 + (i * 7) % (n / 24).max(1)).collect() };
        for i in picks {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            if let ir::TensorData::F32(d) = &mut plus[k].data {
                d[i] += eps;
            }
            if let ir::TensorData::F32(d) = &mut minus[k].data {
                d[i] -= eps;
            }
            let numeric = ((loss_at(&plus) - loss_at(&minus)) / (2.0 * eps as f64)) as f32;
            let err = (numeric - analytic[i]).abs();
            assert!(
                err <= tol * scale,
                "input {k} ({}) element {i}: analytic {} numeric {numeric} (scale {scale})",
                g.value(v).name.as_deref().unwrap_or("?"),
                analytic[i]
            );
        }
    }
    grads
}

fn check(g: &Graph, loss: ValueId, inputs: &[Tensor]) {
    check_with(g, loss, &[], inputs, 1e-2, 1e-2);
}

/// A graph of one op on random inputs of `shapes`, checked through a weighted sum.
fn check_op(op: Op, shapes: &[&[usize]], kinks: &[f32]) {
    let mut g = Graph::new("op");
    let ins: Vec<ValueId> = shapes.iter().enumerate().map(|(i, s)| f32_input(&mut g, &format!("x{i}"), s)).collect();
    let y = g.add_node(op, ins, None).unwrap();
    let loss = weighted_sum(&mut g, y);
    let data: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| Tensor::f32(s.to_vec(), values(s.iter().product(), i as u64 + 1, -2.0, 2.0, kinks)).unwrap())
        .collect();
    check(&g, loss, &data);
}

fn conv(strides: [usize; 2], pads: [usize; 4], groups: usize) -> Op {
    Op::Conv2d { strides, pads, dilations: [1, 1], groups }
}

#[test]
fn conv2d_dense_with_bias() {
    check_op(conv([1, 1], [1, 1, 1, 1], 1), &[&[2, 3, 5, 5], &[4, 3, 3, 3], &[4]], &[]);
}

#[test]
fn conv2d_strided_odd_and_even_inputs() {
    check_op(conv([2, 2], [1, 1, 1, 1], 1), &[&[2, 3, 7, 7], &[4, 3, 3, 3], &[4]], &[]);
    check_op(conv([2, 2], [1, 1, 1, 1], 1), &[&[1, 2, 8, 6], &[3, 2, 3, 3]], &[]);
    check_op(conv([2, 2], [2, 2, 2, 2], 1), &[&[1, 2, 9, 9], &[2, 2, 5, 5], &[2]], &[]);
}

#[test]
fn conv2d_pointwise_and_asymmetric_pads() {
    check_op(conv([1, 1], [0, 0, 0, 0], 1), &[&[2, 5, 4, 4], &[3, 5, 1, 1], &[3]], &[]);
    check_op(conv([1, 2], [0, 1, 1, 0], 1), &[&[1, 2, 5, 6], &[2, 2, 3, 2]], &[]);
}

#[test]
fn conv2d_depthwise() {
    check_op(conv([1, 1], [1, 1, 1, 1], 4), &[&[2, 4, 5, 5], &[4, 1, 3, 3], &[4]], &[]);
    check_op(conv([2, 2], [3, 3, 3, 3], 3), &[&[2, 3, 9, 9], &[3, 1, 7, 7]], &[]);
}

#[test]
fn conv2d_grouped() {
    check_op(conv([1, 1], [1, 1, 1, 1], 2), &[&[2, 4, 4, 4], &[6, 2, 3, 3], &[6]], &[]);
}

#[test]
fn matmul_linear_and_batched() {
    check_op(Op::MatMul, &[&[3, 5], &[5, 4]], &[]);
    check_op(Op::MatMul, &[&[2, 3, 5], &[5, 4]], &[]);
    let mut g = Graph::new("linear");
    let x = f32_input(&mut g, "x", &[4, 6]);
    let w = f32_input(&mut g, "w", &[6, 3]);
    let b = f32_input(&mut g, "b", &[3]);
    let y = layers::linear(&mut g, x, w, Some(b)).unwrap();
    let loss = weighted_sum(&mut g, y);
    let data = [&[4usize, 6][..], &[6, 3], &[3]]
        .iter()
        .enumerate()
        .map(|(i, s)| Tensor::f32(s.to_vec(), values(s.iter().product(), i as u64 + 5, -1.0, 1.0, &[])).unwrap())
        .collect::<Vec<_>>();
    check(&g, loss, &data);
}

#[test]
fn unary_ops() {
    check_op(Op::Unary(UnaryOp::Relu), &[&[2, 3, 4]], &[0.0]);
    for u in [UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Exp, UnaryOp::Neg, UnaryOp::Sin, UnaryOp::Cos, UnaryOp::Erf] {
        check_op(Op::Unary(u), &[&[2, 3, 4]], &[]);
    }
    check_op(Op::Unary(UnaryOp::Abs), &[&[2, 3, 4]], &[0.0]);
    // Positive operands only.
    for u in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Reciprocal] {
        let mut g = Graph::new("pos");
        let x = f32_input(&mut g, "x", &[3, 4]);
        let y = g.add_node(Op::Unary(u), vec![x], None).unwrap();
        let loss = weighted_sum(&mut g, y);
        check(&g, loss, &[Tensor::f32(vec![3, 4], values(12, 3, 0.5, 2.0, &[])).unwrap()]);
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    for b in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
        check_op(Op::Binary(b), &[&[2, 3, 4], &[3, 1]], &[]);
        check_op(Op::Binary(b), &[&[1, 4], &[2, 3, 4]], &[]);
    }
    // Max and min: operands kept apart, so no step crosses a tie.
    for b in [BinaryOp::Max, BinaryOp::Min] {
        let mut g = Graph::new("extremum");
        let x = f32_input(&mut g, "x", &[2, 3, 4]);
        let z = f32_input(&mut g, "z", &[3, 1]);
        let y = g.add_node(Op::Binary(b), vec![x, z], None).unwrap();
        let loss = weighted_sum(&mut g, y);
        let zs = vec![-1.0, 0.25, 1.5];
        check(&g, loss, &[Tensor::f32(vec![2, 3, 4], values(24, 1, -2.0, 2.0, &zs)).unwrap(), Tensor::f32(vec![3, 1], zs).unwrap()]);
    }
    // Division and power by operands away from zero.
    for b in [BinaryOp::Div, BinaryOp::Pow] {
        let mut g = Graph::new("pos");
        let x = f32_input(&mut g, "x", &[2, 3]);
        let z = f32_input(&mut g, "z", &[3]);
        let y = g.add_node(Op::Binary(b), vec![x, z], None).unwrap();
        let loss = weighted_sum(&mut g, y);
        check(
            &g,
            loss,
            &[Tensor::f32(vec![2, 3], values(6, 1, 0.5, 2.0, &[])).unwrap(), Tensor::f32(vec![3], values(3, 2, 0.5, 2.0, &[])).unwrap()],
        );
    }
    // Scalar operand.
    check_op(Op::Binary(BinaryOp::Mul), &[&[2, 3], &[]], &[]);
}

#[test]
fn clip_and_hard_activations() {
    check_op(Op::Clip { min: -1.0, max: 1.0 }, &[&[3, 8]], &[-1.0, 1.0]);
    check_op(Op::Clip { min: 0.0, max: f32::INFINITY }, &[&[3, 8]], &[0.0]);
    for hard in [layers::hard_swish as fn(&mut Graph, ValueId) -> train::Result<ValueId>, layers::hard_sigmoid] {
        let mut g = Graph::new("hard");
        let x = f32_input(&mut g, "x", &[4, 8]);
        let y = hard(&mut g, x).unwrap();
        let loss = weighted_sum(&mut g, y);
        check(&g, loss, &[Tensor::f32(vec![4, 8], values(32, 4, -5.0, 5.0, &[-3.0, 3.0])).unwrap()]);
    }
}

#[test]
fn where_and_cast() {
    let mut g = Graph::new("where");
    let x = f32_input(&mut g, "x", &[3, 4]);
    let a = f32_input(&mut g, "a", &[3, 4]);
    let b = f32_input(&mut g, "b", &[4]);
    let zero = g.add_const(None, Tensor::scalar_f32(0.0));
    let c = g.add_node(Op::Binary(BinaryOp::Greater), vec![x, zero], None).unwrap();
    let y = g.add_node(Op::Where, vec![c, a, b], None).unwrap();
    let y = g.add_node(Op::Cast { to: DType::F32 }, vec![y], None).unwrap();
    let loss = weighted_sum(&mut g, y);
    let data = vec![
        Tensor::f32(vec![3, 4], values(12, 1, -1.0, 1.0, &[0.0])).unwrap(),
        Tensor::f32(vec![3, 4], values(12, 2, -1.0, 1.0, &[])).unwrap(),
        Tensor::f32(vec![4], values(4, 3, -1.0, 1.0, &[])).unwrap(),
    ];
    let grads = check_with(&g, loss, &[], &data, 1e-2, 1e-2);
    // The condition's input only selects: no gradient.
    assert!(grads[0].as_f32().unwrap().iter().all(|&d| d == 0.0));
}

#[test]
fn reductions_and_pooling() {
    check_op(Op::Reduce { kind: ReduceKind::Mean, axes: vec![2, 3], keep_dims: false }, &[&[2, 3, 4, 5]], &[]);
    check_op(Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 2], keep_dims: true }, &[&[2, 3, 4]], &[]);
    check_op(Op::Reduce { kind: ReduceKind::Max, axes: vec![1], keep_dims: false }, &[&[3, 5]], &[]);
    let window = Window { kernel: [4, 5], strides: [1, 1], pads: [0; 4], dilations: [1, 1] };
    check_op(Op::Pool2d { kind: PoolKind::Avg, window, ceil_mode: false, count_include_pad: false }, &[&[2, 3, 4, 5]], &[]);
}

#[test]
fn movement_ops() {
    check_op(Op::Reshape { shape: vec![6, 4] }, &[&[2, 3, 4]], &[]);
    check_op(Op::Transpose { perm: vec![2, 0, 1] }, &[&[2, 3, 4]], &[]);
    check_op(Op::Expand { shape: vec![2, 3, 4] }, &[&[3, 1]], &[]);
    check_op(Op::Concat { axis: 1 }, &[&[2, 3], &[2, 2]], &[]);
    check_op(Op::Slice { starts: vec![0, 1], ends: vec![2, 3], steps: vec![1, 1] }, &[&[2, 4]], &[]);
    check_op(Op::Slice { starts: vec![1, 3], ends: vec![-1, -1], steps: vec![-1, -1] }, &[&[2, 4]], &[]);
    check_op(Op::Pad { pads: vec![0, 1, 1, 2], mode: PadMode::Constant, value: 0.0 }, &[&[2, 3]], &[]);
}

#[test]
fn batch_norm_training_mode() {
    let mut g = Graph::new("bn");
    let x = f32_input(&mut g, "x", &[3, 2, 3, 3]);
    let gamma = f32_input(&mut g, "gamma", &[2]);
    let beta = f32_input(&mut g, "beta", &[2]);
    let bn = layers::batch_norm_train(&mut g, x, gamma, beta, 1e-5).unwrap();
    let loss = weighted_sum(&mut g, bn.y);
    let data = vec![
        Tensor::f32(vec![3, 2, 3, 3], values(54, 1, -2.0, 2.0, &[])).unwrap(),
        Tensor::f32(vec![2], values(2, 2, 0.5, 1.5, &[])).unwrap(),
        Tensor::f32(vec![2], values(2, 3, -1.0, 1.0, &[])).unwrap(),
    ];
    // Normalization divides by a standard deviation: a smaller step.
    check_with(&g, loss, &[], &data, 3e-3, 2e-2);
}

#[test]
fn softmax_cross_entropy_with_integer_labels() {
    for smoothing in [0.0, 0.1] {
        let mut g = Graph::new("ce");
        let z = f32_input(&mut g, "logits", &[4, 5]);
        let labels = g.add_input("labels", TensorType::new(DType::I64, vec![4]));
        let ce = layers::softmax_cross_entropy(&mut g, z, labels, smoothing).unwrap();
        let data = vec![Tensor::f32(vec![4, 5], values(20, 1, -3.0, 3.0, &[])).unwrap(), Tensor::i64(vec![4], vec![0, 4, 2, 2]).unwrap()];
        let grads = check_with(&g, ce.loss, &ce.stop, &data, 1e-2, 1e-2);
        // The gradient of mean cross-entropy is (softmax - target) / N: each row sums to zero.
        for row in grads[0].as_f32().unwrap().chunks(5) {
            assert!(row.iter().sum::<f32>().abs() < 1e-5, "row {row:?}");
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let mut g = Graph::new("bad");
    let x = f32_input(&mut g, "x", &[2, 3]);
    let y = g.add_node(Op::Unary(UnaryOp::Relu), vec![x], None).unwrap();
    // Not a scalar loss.
    assert!(training_graph(&g, y, &[x], &[]).is_err());
    // Max pooling has no rule: an error naming the op, not a panic.
    let mut g = Graph::new("pool");
    let x = f32_input(&mut g, "x", &[1, 1, 4, 4]);
    let window = Window { kernel: [2, 2], strides: [2, 2], pads: [0; 4], dilations: [1, 1] };
    let p = g.add_node(Op::Pool2d { kind: PoolKind::Max, window, ceil_mode: false, count_include_pad: false }, vec![x], None).unwrap();
    let loss = weighted_sum(&mut g, p);
    let err = training_graph(&g, loss, &[x], &[]).err().expect("an error").to_string();
    assert!(err.contains("max_pool2d"), "{err}");
}

/// A small MobileNetV3-like network: conv (stride 2) + batch norm + hard-swish, depthwise conv
/// + batch norm + relu, squeeze-excite-like gating with hard-sigmoid, global average pool,
/// linear, cross-entropy.
fn small_net(smooth: bool) -> (Graph, ValueId, Vec<ValueId>, Vec<Tensor>) {
    let mut g = Graph::new("net");
    let x = f32_input(&mut g, "x", &[4, 2, 8, 8]);
    let labels = g.add_input("labels", TensorType::new(DType::I64, vec![4]));
    let w1 = f32_input(&mut g, "w1", &[4, 2, 3, 3]);
    let g1 = f32_input(&mut g, "g1", &[4]);
    let b1 = f32_input(&mut g, "b1", &[4]);
    let wd = f32_input(&mut g, "wd", &[4, 1, 3, 3]);
    let bd = f32_input(&mut g, "bd", &[4]);
    let wf = f32_input(&mut g, "wf", &[4, 3]);
    let bf = f32_input(&mut g, "bf", &[3]);
    let c1 = g.add_node(conv([2, 2], [1, 1, 1, 1], 1), vec![x, w1], None).unwrap();
    let bn = layers::batch_norm_train(&mut g, c1, g1, b1, 1e-5).unwrap();
    let a1 = layers::hard_swish(&mut g, bn.y).unwrap();
    let c2 = g.add_node(conv([1, 1], [1, 1, 1, 1], 4), vec![a1, wd, bd], None).unwrap();
    // Finite differences across a kink of relu are meaningless: the checks against them use
    // the smooth sigmoid.
    let a2 = if smooth { g.add_node(Op::Unary(UnaryOp::Sigmoid), vec![c2], None).unwrap() } else { layers::relu(&mut g, c2).unwrap() };
    let pooled = layers::global_avg_pool(&mut g, a2).unwrap();
    let gate = layers::hard_sigmoid(&mut g, pooled).unwrap();
    let gated = g.add_node(Op::Binary(BinaryOp::Mul), vec![pooled, gate], None).unwrap();
    let logits = layers::linear(&mut g, gated, wf, Some(bf)).unwrap();
    let ce = layers::softmax_cross_entropy(&mut g, logits, labels, 0.1).unwrap();
    g.outputs = vec![ce.loss];
    let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|&v| g.ty(v).shape.clone()).collect();
    let data = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 1 {
                Tensor::i64(vec![4], vec![0, 2, 1, 2]).unwrap()
            } else {
                Tensor::f32(s.clone(), values(s.iter().product(), i as u64 + 11, -1.0, 1.0, &[])).unwrap()
            }
        })
        .collect();
    (g, ce.loss, ce.stop, data)
}

#[test]
fn small_network_on_the_interpreter() {
    let (g, loss, stop, data) = small_net(true);
    check_with(&g, loss, &stop, &data, 3e-3, 3e-2);
}

#[test]
fn small_network_on_llvm() {
    // Finite differences of the native forward graph against the native gradients.
    let (g, loss, stop, data) = small_net(true);
    check_on(Backend::Llvm { threads: 1 }, &g, loss, &stop, &data, 3e-3, 3e-2);
    // With relu: the native gradients equal the interpreter's.
    let (g, loss, stop, data) = small_net(false);
    let grads = check_with(&g, loss, &stop, &data, 3e-3, f32::INFINITY);
    let wrt: Vec<ValueId> = g.inputs.iter().copied().filter(|&v| g.ty(v).dtype == DType::F32).collect();
    let tg = training_graph(&g, loss, &wrt, &stop).unwrap();
    let native = Engine::build(&tg.graph, Backend::Llvm { threads: 1 }).expect("compiles with llvm");
    let outs = native.run(&data).unwrap();
    let reference = interp::run(&tg.graph, &data).unwrap();
    assert!((outs[0].as_f32().unwrap()[0] - reference[0].as_f32().unwrap()[0]).abs() < 1e-4);
    for (k, (got, want)) in outs[tg.forward_outputs..].iter().zip(&grads).enumerate() {
        let (got, want) = (got.as_f32().unwrap(), want.as_f32().unwrap());
        let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-3 * scale, "gradient {k} element {i}: llvm {a} interp {b}");
        }
    }
}

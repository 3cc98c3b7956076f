//! Layers as compositions of graph ops, the way the ONNX importer writes them: batch
//! normalization (training mode with batch statistics, or inference mode with running
//! statistics), hard-swish and hard-sigmoid (add, clip, mul), global average pooling, linear,
//! and softmax cross-entropy with integer labels and optional label smoothing.

use ir::graph::{BinaryOp, ReduceKind, UnaryOp};
use ir::{DType, Graph, Op, Tensor, ValueId};

use crate::autodiff::scalar;
use crate::error::{Result, TrainError};

fn bin(g: &mut Graph, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId> {
    Ok(g.add_node(Op::Binary(op), vec![a, b], None)?)
}

fn reduce(g: &mut Graph, kind: ReduceKind, x: ValueId, axes: Vec<usize>, keep_dims: bool) -> Result<ValueId> {
    Ok(g.add_node(Op::Reduce { kind, axes, keep_dims }, vec![x], None)?)
}

fn channels_of(g: &Graph, x: ValueId, what: &str) -> Result<usize> {
    let s = &g.ty(x).shape;
    if s.len() != 4 {
        return Err(TrainError::Invalid(format!("{what}: input must be NCHW, is {}", g.ty(x))));
    }
    Ok(s[1])
}

/// Per-channel [C] as [1, C, 1, 1].
fn per_channel(g: &mut Graph, v: ValueId, c: usize) -> Result<ValueId> {
    Ok(g.add_node(Op::Reshape { shape: vec![1, c, 1, 1] }, vec![v], None)?)
}

/// Batch normalization in training mode.
pub struct BatchNormTrain {
    pub y: ValueId,
    /// The batch mean and biased variance, [C] each (for the running statistics).
    pub mean: ValueId,
    pub var: ValueId,
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` with the batch's mean and biased variance
/// over N, H and W.
pub fn batch_norm_train(g: &mut Graph, x: ValueId, gamma: ValueId, beta: ValueId, eps: f32) -> Result<BatchNormTrain> {
    let c = channels_of(g, x, "batch_norm")?;
    let mean = reduce(g, ReduceKind::Mean, x, vec![0, 2, 3], true)?;
    let xc = bin(g, BinaryOp::Sub, x, mean)?;
    let sq = bin(g, BinaryOp::Mul, xc, xc)?;
    let var = reduce(g, ReduceKind::Mean, sq, vec![0, 2, 3], true)?;
    let e = scalar(g, eps)?;
    let ve = bin(g, BinaryOp::Add, var, e)?;
    let sd = g.add_node(Op::Unary(UnaryOp::Sqrt), vec![ve], None)?;
    let inv = g.add_node(Op::Unary(UnaryOp::Reciprocal), vec![sd], None)?;
    let gm = per_channel(g, gamma, c)?;
    let bt = per_channel(g, beta, c)?;
    let s = bin(g, BinaryOp::Mul, inv, gm)?;
    let xs = bin(g, BinaryOp::Mul, xc, s)?;
    let y = bin(g, BinaryOp::Add, xs, bt)?;
    let mean = g.add_node(Op::Reshape { shape: vec![c] }, vec![mean], None)?;
    let var = g.add_node(Op::Reshape { shape: vec![c] }, vec![var], None)?;
    Ok(BatchNormTrain { y, mean, var })
}

/// Batch normalization in inference mode, with running statistics `mean` and `var` ([C]).
pub fn batch_norm_eval(g: &mut Graph, x: ValueId, gamma: ValueId, beta: ValueId, mean: ValueId, var: ValueId, eps: f32) -> Result<ValueId> {
    let c = channels_of(g, x, "batch_norm")?;
    let e = scalar(g, eps)?;
    let ve = bin(g, BinaryOp::Add, var, e)?;
    let sd = g.add_node(Op::Unary(UnaryOp::Sqrt), vec![ve], None)?;
    let s = bin(g, BinaryOp::Div, gamma, sd)?;
    let ms = bin(g, BinaryOp::Mul, mean, s)?;
    let shift = bin(g, BinaryOp::Sub, beta, ms)?;
    let s = per_channel(g, s, c)?;
    let shift = per_channel(g, shift, c)?;
    let xs = bin(g, BinaryOp::Mul, x, s)?;
    bin(g, BinaryOp::Add, xs, shift)
}

/// `clip(x + 3, 0, 6) / 6`.
pub fn hard_sigmoid(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    let three = scalar(g, 3.0)?;
    let t = bin(g, BinaryOp::Add, x, three)?;
    let t = g.add_node(Op::Clip { min: 0.0, max: 6.0 }, vec![t], None)?;
    let sixth = scalar(g, 1.0 / 6.0)?;
    bin(g, BinaryOp::Mul, t, sixth)
}

/// `x * hard_sigmoid(x)`.
pub fn hard_swish(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    let s = hard_sigmoid(g, x)?;
    bin(g, BinaryOp::Mul, x, s)
}

pub fn relu(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    Ok(g.add_node(Op::Unary(UnaryOp::Relu), vec![x], None)?)
}

/// Mean over H and W: [N, C, H, W] -> [N, C].
pub fn global_avg_pool(g: &mut Graph, x: ValueId) -> Result<ValueId> {
    channels_of(g, x, "global_avg_pool")?;
    reduce(g, ReduceKind::Mean, x, vec![2, 3], false)
}

/// `x @ w + b` with x [N, K], w [K, M], b [M].
pub fn linear(g: &mut Graph, x: ValueId, w: ValueId, b: Option<ValueId>) -> Result<ValueId> {
    let y = g.add_node(Op::MatMul, vec![x, w], None)?;
    match b {
        Some(b) => bin(g, BinaryOp::Add, y, b),
        None => Ok(y),
    }
}

/// The mean softmax cross-entropy of logits [N, K] against integer labels [N] (i64).
pub struct CrossEntropy {
    /// The loss, a scalar.
    pub loss: ValueId,
    /// Values whose gradient is not propagated (the max subtracted for stability): pass them
    /// to `autodiff::gradients` as `stop`.
    pub stop: Vec<ValueId>,
}

/// `-mean_n sum_k t[n,k] log_softmax(logits)[n,k]` where t is the one-hot label smoothed to
/// `(1 - smoothing) * onehot + smoothing / K`.
pub fn softmax_cross_entropy(g: &mut Graph, logits: ValueId, labels: ValueId, smoothing: f32) -> Result<CrossEntropy> {
    let lt = g.ty(logits).clone();
    let yt = g.ty(labels).clone();
    if lt.rank() != 2 || yt.dtype != DType::I64 || yt.shape != [lt.shape[0]] {
        return Err(TrainError::Invalid(format!("cross-entropy wants logits [N, K] and i64 labels [N], got {lt} and {yt}")));
    }
    if !(0.0..1.0).contains(&smoothing) {
        return Err(TrainError::Invalid(format!("label smoothing {smoothing} is not in [0, 1)")));
    }
    let (n, k) = (lt.shape[0], lt.shape[1]);
    let m = reduce(g, ReduceKind::Max, logits, vec![1], true)?;
    let z = bin(g, BinaryOp::Sub, logits, m)?;
    let e = g.add_node(Op::Unary(UnaryOp::Exp), vec![z], None)?;
    let s = reduce(g, ReduceKind::Sum, e, vec![1], true)?;
    let lse = g.add_node(Op::Unary(UnaryOp::Log), vec![s], None)?;
    let logp = bin(g, BinaryOp::Sub, z, lse)?;
    let col = g.add_node(Op::Reshape { shape: vec![n, 1] }, vec![labels], None)?;
    let classes = g.add_const(None, Tensor::i64(vec![1, k], (0..k as i64).collect())?);
    let hit = bin(g, BinaryOp::Equal, col, classes)?;
    let onehot = g.add_node(Op::Cast { to: DType::F32 }, vec![hit], None)?;
    let target = if smoothing > 0.0 {
        let keep = scalar(g, 1.0 - smoothing)?;
        let t = bin(g, BinaryOp::Mul, onehot, keep)?;
        let spread = scalar(g, smoothing / k as f32)?;
        bin(g, BinaryOp::Add, t, spread)?
    } else {
        onehot
    };
    let tl = bin(g, BinaryOp::Mul, target, logp)?;
    let total = reduce(g, ReduceKind::Sum, tl, vec![0, 1], false)?;
    let scale = scalar(g, -1.0 / n as f32)?;
    let loss = bin(g, BinaryOp::Mul, total, scale)?;
    Ok(CrossEntropy { loss, stop: vec![m] })
}

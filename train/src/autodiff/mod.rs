//! Reverse-mode automatic differentiation on the graph IR: appends to a graph the nodes that
//! compute a scalar loss's gradients with respect to chosen values.
//!
//! The backward pass is made of ordinary graph ops (a convolution's input and weight gradients
//! are convolutions of rearranged operands, a broadcast's gradient is a sum reduction, a mask
//! is a comparison cast to f32), so a training graph is optimized, lowered and compiled by
//! the same pipeline and backends as an inference graph. Gradients of `stop` values are not
//! propagated (a stop-gradient, e.g. the max subtracted inside a log-softmax).

mod conv;
mod rules;

use std::collections::HashMap;

use ir::{DType, Graph, Op, Tensor, TensorType, ValueDef, ValueId};

use crate::error::{Result, TrainError};

/// Appends the gradients of `loss` (a one-element f32 value) with respect to each of `wrt` to
/// `g`; returns their values, in the order of `wrt`. A value the loss does not depend on gets
/// a zero gradient. The graph's outputs are left alone.
pub fn gradients(g: &mut Graph, loss: ValueId, wrt: &[ValueId], stop: &[ValueId]) -> Result<Vec<ValueId>> {
    let n = g.values.len();
    for &v in wrt.iter().chain(stop).chain([&loss]) {
        if v.index() >= n {
            return Err(TrainError::Invalid(format!("autodiff: {v} is not a value of the graph")));
        }
    }
    let loss_ty = g.ty(loss).clone();
    if loss_ty.dtype != DType::F32 || loss_ty.numel() != 1 {
        return Err(TrainError::Invalid(format!("autodiff: the loss must be one f32 element, is {loss_ty}")));
    }
    for &v in wrt {
        if g.ty(v).dtype != DType::F32 {
            return Err(TrainError::Invalid(format!("autodiff: cannot differentiate with respect to {v} of type {}", g.ty(v))));
        }
    }
    // Values that depend on a `wrt` value (forward) through differentiable paths...
    let mut varies = vec![false; n];
    for &v in wrt {
        varies[v.index()] = true;
    }
    let stopped: Vec<bool> = (0..n).map(|i| stop.iter().any(|s| s.index() == i)).collect();
    let forward_nodes = g.nodes.len();
    for node in &g.nodes[..forward_nodes] {
        if !stopped[node.output.index()] && node.inputs.iter().any(|v| varies[v.index()]) && g.ty(node.output).dtype == DType::F32 {
            varies[node.output.index()] = true;
        }
    }
    // ... and that the loss depends on (backward).
    let mut needed = vec![false; n];
    needed[loss.index()] = true;
    for node in g.nodes[..forward_nodes].iter().rev() {
        if needed[node.output.index()] {
            for &v in &node.inputs {
                needed[v.index()] = true;
            }
        }
    }
    let active: Vec<bool> = (0..n).map(|i| varies[i] && needed[i]).collect();

    let mut adjoint: HashMap<ValueId, ValueId> = HashMap::new();
    let seed = g.add_const(Some("d_loss".into()), Tensor::f32(loss_ty.shape.clone(), vec![1.0])?);
    if active[loss.index()] {
        adjoint.insert(loss, seed);
    }
    for k in (0..forward_nodes).rev() {
        let node = g.nodes[k].clone();
        let Some(&dy) = adjoint.get(&node.output) else { continue };
        if !active[node.output.index()] || stopped[node.output.index()] {
            continue;
        }
        let wants: Vec<bool> = node.inputs.iter().map(|v| active[v.index()] && !stopped[v.index()]).collect();
        if !wants.iter().any(|&w| w) {
            continue;
        }
        let label = node.name.clone().unwrap_or_else(|| format!("{}", node.output));
        let contributions = rules::backward(g, &node, dy, &wants).map_err(|e| match e {
            TrainError::Unsupported { message, .. } => TrainError::Unsupported { node: label.clone(), op: node.op.name().into(), message },
            TrainError::Ir(e) => TrainError::Unsupported { node: label.clone(), op: node.op.name().into(), message: e.to_string() },
            other => other,
        })?;
        for (i, d) in contributions.into_iter().enumerate() {
            let Some(d) = d else { continue };
            if !wants[i] {
                continue;
            }
            let v = node.inputs[i];
            if g.ty(d).shape != g.ty(v).shape {
                return Err(TrainError::Unsupported {
                    node: label,
                    op: node.op.name().into(),
                    message: format!("gradient of operand {i} has type {}, the operand {}", g.ty(d), g.ty(v)),
                });
            }
            let sum = match adjoint.get(&v) {
                Some(&prev) => g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![prev, d], None)?,
                None => d,
            };
            adjoint.insert(v, sum);
        }
    }
    wrt.iter()
        .map(|&v| match adjoint.get(&v) {
            Some(&d) => Ok(d),
            None => Ok(g.add_const(None, Tensor::zeros(g.ty(v))?)),
        })
        .collect()
}

/// A training graph: the forward graph with the gradients appended as outputs.
pub struct TrainingGraph {
    pub graph: Graph,
    /// How many of `graph.outputs` are the forward graph's (the gradients follow them).
    pub forward_outputs: usize,
}

/// `g` with the gradients of its output `loss` with respect to each of `wrt` appended to its
/// outputs, in the order of `wrt`. A gradient that would be an output already, or a graph
/// input or constant, is copied by a node, so every output is a distinct node result.
pub fn training_graph(g: &Graph, loss: ValueId, wrt: &[ValueId], stop: &[ValueId]) -> Result<TrainingGraph> {
    let mut g = g.clone();
    let grads = gradients(&mut g, loss, wrt, stop)?;
    let forward_outputs = g.outputs.len();
    for (k, &d) in grads.iter().enumerate() {
        let is_node = matches!(g.value(d).def, ValueDef::Node(_));
        let d = if !is_node || g.outputs.contains(&d) { copy(&mut g, d)? } else { d };
        if let Some(name) = g.value(wrt[k]).name.clone() {
            g.values[d.index()].name = Some(format!("grad.{name}"));
        }
        g.outputs.push(d);
    }
    Ok(TrainingGraph { graph: g.pruned(), forward_outputs })
}

/// A node that computes a copy of `v` (x + 0, which no pass folds into an alias of an output).
fn copy(g: &mut Graph, v: ValueId) -> Result<ValueId> {
    let zero = scalar(g, 0.0)?;
    Ok(g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![v, zero], None)?)
}

/// A rank-0 f32 constant.
pub(crate) fn scalar(g: &mut Graph, x: f32) -> Result<ValueId> {
    Ok(g.add_const(None, Tensor::f32(Vec::<usize>::new(), vec![x])?))
}

/// Sums `d` (of a broadcast result's shape) down to `shape`, the shape of an operand that was
/// broadcast to it.
pub(crate) fn sum_to_shape(g: &mut Graph, d: ValueId, shape: &[usize]) -> Result<ValueId> {
    let from = g.ty(d).shape.clone();
    if from == shape {
        return Ok(d);
    }
    let lead = from.len().checked_sub(shape.len()).ok_or_else(|| TrainError::Invalid(format!("cannot sum {from:?} to {shape:?}")))?;
    let axes: Vec<usize> = (0..from.len()).filter(|&i| i < lead || (shape[i - lead] == 1 && from[i] != 1)).collect();
    let summed = if axes.is_empty() {
        d
    } else {
        g.add_node(Op::Reduce { kind: ir::graph::ReduceKind::Sum, axes, keep_dims: true }, vec![d], None)?
    };
    reshape(g, summed, shape)
}

pub(crate) fn reshape(g: &mut Graph, v: ValueId, shape: &[usize]) -> Result<ValueId> {
    if g.ty(v).shape == shape {
        return Ok(v);
    }
    Ok(g.add_node(Op::Reshape { shape: shape.to_vec() }, vec![v], None)?)
}

pub(crate) fn type_of(g: &Graph, v: ValueId) -> TensorType {
    g.ty(v).clone()
}

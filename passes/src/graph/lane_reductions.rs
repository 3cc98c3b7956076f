//! Splits a long reduction over a tensor's innermost axes into lanes: a reduction of
//! thousands of contiguous elements into one accumulator is a chain of dependent additions
//! (about 4 cycles each), which no schedule of the one-accumulator loop nest can vectorize.
//! Batch-norm statistics and their gradients in training graphs are such sums (over N, H, W
//! of NCHW, a hundred thousand elements per channel).
//!
//! The innermost reduced axes (all of the trailing axes, flattened to L elements) are viewed
//! as [L / W, W] (a reshape: no copy) and reduced in two steps: first every axis but the W
//! lanes, so each output has W independent accumulators that the default schedule keeps in
//! one vector register; then the W lanes. Sum, max and min split this way; a mean is the
//! mean of its lanes' means, whose groups are the same size.

use ir::graph::ReduceKind;
use ir::{DType, Graph, Op};

use super::{copy_node, rebuild};
use crate::PassError;

/// Reductions of fewer elements per output than this are left alone: their chains are short
/// and the second step would cost more than it saves.
const MIN_ELEMENTS: usize = 1024;
/// Lanes: one AVX-512 register of f32 (two NEON registers, which the backend splits).
const MAX_LANES: usize = 16;

pub fn lane_reductions(g: &Graph) -> Result<Graph, PassError> {
    rebuild(g, |out, node, map| {
        let Op::Reduce { kind, axes, keep_dims } = &node.op else { return copy_node(out, node, map) };
        let x = map(node.inputs[0]);
        let ty = out.ty(x).clone();
        let Some(plan) = plan(&ty.shape, axes).filter(|_| ty.dtype == DType::F32 && *kind != ReduceKind::Prod) else {
            return copy_node(out, node, map);
        };
        let name = node.name.clone();
        let view = out.add_node(Op::Reshape { shape: plan.view }, vec![x], name.clone())?;
        let lanes = out.add_node(Op::Reduce { kind: *kind, axes: plan.first_axes, keep_dims: false }, vec![view], name.clone())?;
        let last = out.ty(lanes).shape.len() - 1;
        let y = out.add_node(Op::Reduce { kind: *kind, axes: vec![last], keep_dims: false }, vec![lanes], name.clone())?;
        let shape = g.ty(node.output).shape.clone();
        if *keep_dims || out.ty(y).shape != shape {
            return Ok(out.add_node(Op::Reshape { shape }, vec![y], name)?);
        }
        Ok(y)
    })
}

/// How a reduction of `shape` over `axes` splits: the input's view, and the axes of the view
/// the first step reduces.
struct Plan {
    view: Vec<usize>,
    first_axes: Vec<usize>,
}

fn plan(shape: &[usize], axes: &[usize]) -> Option<Plan> {
    let rank = shape.len();
    if shape.contains(&0) {
        return None;
    }
    // The trailing run of reduced axes, flattened.
    let start = (0..rank).rev().take_while(|a| axes.contains(a)).last()?;
    let inner: usize = shape[start..].iter().product();
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let lanes = (1..=MAX_LANES.min(inner)).rev().find(|w| inner % w == 0)?;
    if count < MIN_ELEMENTS || lanes < 4 {
        return None;
    }
    let mut view = shape[..start].to_vec();
    view.extend([inner / lanes, lanes]);
    let mut first_axes: Vec<usize> = axes.iter().copied().filter(|&a| a < start).collect();
    first_axes.push(start);
    first_axes.sort_unstable();
    Some(Plan { view, first_axes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{Tensor, TensorType};

    fn reduce_graph(shape: &[usize], kind: ReduceKind, axes: Vec<usize>, keep_dims: bool) -> Graph {
        let mut g = Graph::new("r");
        let x = g.add_input("x", TensorType::new(DType::F32, shape.to_vec()));
        let y = g.add_node(Op::Reduce { kind, axes, keep_dims }, vec![x], Some("bn_stat".into())).unwrap();
        g.outputs = vec![y];
        g
    }

    fn input(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::f32(shape.to_vec(), (0..n).map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.3).collect()).unwrap()
    }

    #[test]
    fn split_reductions_compute_the_same_values() {
        for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max, ReduceKind::Min] {
            for (shape, axes, keep) in [
                (vec![8, 6, 14, 14], vec![0, 2, 3], true),
                (vec![8, 6, 14, 14], vec![0, 2, 3], false),
                (vec![2, 3, 1024], vec![2], false),
                (vec![32, 5, 7, 7], vec![0, 2, 3], true),
            ] {
                let g = reduce_graph(&shape, kind, axes.clone(), keep);
                let split = lane_reductions(&g).unwrap();
                ir::graph::verify::verify(&split).unwrap();
                assert_eq!(split.ty(split.outputs[0]), g.ty(g.outputs[0]));
                let text = ir::text::print_graph(&split);
                assert_eq!(text.matches("reduce_").count(), 2, "{kind:?} {shape:?} {axes:?} is split: {text}");
                let x = input(&shape);
                let (want, got) = (interp::run(&g, &[x.clone()]).unwrap(), interp::run(&split, &[x]).unwrap());
                for (a, b) in want[0].as_f32().unwrap().iter().zip(got[0].as_f32().unwrap()) {
                    assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{kind:?} {shape:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn short_or_strided_reductions_are_left_alone() {
        // Too few elements; the innermost axis kept; a prime inner extent (no lanes); a product.
        for (shape, axes, kind) in [
            (vec![1, 96, 7, 7], vec![2, 3], ReduceKind::Mean),
            (vec![64, 64, 8], vec![0, 1], ReduceKind::Sum),
            (vec![1, 4099], vec![1], ReduceKind::Sum),
            (vec![8, 6, 14, 14], vec![0, 2, 3], ReduceKind::Prod),
        ] {
            let g = reduce_graph(&shape, kind, axes, false);
            let split = lane_reductions(&g).unwrap();
            assert_eq!(ir::text::print_graph(&split), ir::text::print_graph(&g), "{shape:?}");
        }
    }
}

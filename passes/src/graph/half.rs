//! Half precision (`--dtype f16`): the graph's weights, inputs and outputs become f16, and
//! its activations too when asked (`--f16-activations`). Convolutions accumulate in f32
//! whatever the storage (f16 accumulation is too imprecise), so f16 activations save memory
//! but add a conversion to every load of the inner loops: mobilenet_v3_large ran 1.45x
//! slower with them than in f32 on an AVX512-FP16 Xeon, and as fast as f32 with f16 weights
//! only; they also double its error against f32 (see bench/RESULTS.md).
//!
//! Small constants stay f32: a per-channel vector (a bias, a scale), a scalar, and any weight
//! of at most [`SMALL_CONSTANT`] elements (a depthwise or stem kernel, a small 1x1 conv):
//! rounding them costs the most precision for the least memory (on mobilenet_v2 they are 3 %
//! of the weight bytes and halve the error).
//!
//! Compute stays f32: lowering lowers the graph's f32 view ([`compute_view`]), and after
//! scheduling `lower::half::store_params_in_f16` makes the programs read and write their f16
//! tensors through casts, so accumulators (register tiles and the other temporaries) stay
//! f32.

use ir::{DType, FusedStep, Graph, Op, ValueDef};

use crate::PassError;

/// Constants of at most this many elements stay f32.
pub const SMALL_CONSTANT: usize = 16384;

/// The graph with its f32 weights (rounded to nearest even; not the small constants, see the
/// module's comment), inputs and outputs in f16, and its other f32 tensors too when
/// `activations`. A reshape keeps its operand's dtype (it aliases its memory), and so does
/// the zero-padded copy of a graph input (the input is copied into its interior byte for
/// byte); a reshaped graph output makes what it reshapes f16.
pub fn to_f16(g: &Graph, activations: bool) -> Result<Graph, PassError> {
    let mut half: Vec<bool> = g
        .values
        .iter()
        .map(|v| match v.def {
            ValueDef::Input(_) => true,
            ValueDef::Const(_) => v.ty.shape.iter().filter(|&&d| d > 1).count() > 1 && v.ty.numel() > SMALL_CONSTANT,
            ValueDef::Node(_) => activations,
        })
        .collect();
    for &out in &g.outputs {
        let mut v = out;
        loop {
            half[v.index()] = true;
            match g.producer(v) {
                Some(n) if matches!(n.op, Op::Reshape { .. }) => v = n.inputs[0],
                _ => break,
            }
        }
    }
    for n in &g.nodes {
        let follows = match n.op {
            Op::Reshape { .. } => true,
            Op::Pad { .. } => matches!(g.value(n.inputs[0]).def, ValueDef::Input(_)),
            _ => false,
        };
        if follows {
            half[n.output.index()] = half[n.inputs[0].index()];
        }
    }
    let keep = |v: ir::ValueId| !half[v.index()];
    Ok(retyped(g, DType::F32, DType::F16, &keep))
}

/// The graph as it is computed: its f16 tensors as f32 (exact). Value and node ids are
/// those of `g`, so programs lowered from the view bind `g`'s values.
pub fn compute_view(g: &Graph) -> Graph {
    retyped(g, DType::F16, DType::F32, &|_| false)
}

pub fn has_f16(g: &Graph) -> bool {
    g.values.iter().any(|v| v.ty.dtype == DType::F16)
}

/// `g` with the values of dtype `from` in `to`, but for those `keep` says.
fn retyped(g: &Graph, from: DType, to: DType, keep: &dyn Fn(ir::ValueId) -> bool) -> Graph {
    let mut out = g.clone();
    for (i, v) in out.values.iter_mut().enumerate() {
        if v.ty.dtype != from || keep(ir::ValueId(i as u32)) {
            continue;
        }
        v.ty.dtype = to;
        if let ValueDef::Const(w) = v.def {
            if let Some(t) = &mut out.weights[w.index()].data {
                *t = t.with_float_dtype(to);
            }
        }
    }
    for n in &mut out.nodes {
        n.op = retyped_op(&n.op, from, to);
    }
    out
}

/// Casts to `from` become casts to `to`; a fused op's steps likewise.
fn retyped_op(op: &Op, from: DType, to: DType) -> Op {
    match op {
        Op::Cast { to: t } if *t == from => Op::Cast { to },
        Op::Fused(f) => {
            let mut f = f.clone();
            f.steps = f.steps.iter().map(|s| FusedStep { op: retyped_op(&s.op, from, to), operands: s.operands.clone() }).collect();
            Op::Fused(f)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{Tensor, TensorType};

    #[test]
    fn weights_inputs_and_casts_become_half_and_back() {
        let mut g = Graph::new("g");
        // A weight of 3 x n elements is large, a bias of n small.
        let n = SMALL_CONSTANT;
        let x = g.add_input("x", TensorType::new(DType::F32, vec![3, n]));
        let w = g.add_weight(
            Some("w".into()),
            TensorType::new(DType::F32, vec![3, n]),
            Some(Tensor::f32(vec![3, n], [1.0, 0.1, -2.5].repeat(n)).unwrap()),
        );
        let b = g.add_weight(Some("b".into()), TensorType::new(DType::F32, vec![n]), Some(Tensor::f32(vec![n], vec![0.1; n]).unwrap()));
        let i = g.add_input("i", TensorType::new(DType::I64, vec![n]));
        let y = g.add_node(Op::Binary(ir::graph::BinaryOp::Mul), vec![x, w], None).unwrap();
        let c = g.add_node(Op::Cast { to: DType::F32 }, vec![i], None).unwrap();
        let yb = g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![y, b], None).unwrap();
        let z = g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![yb, c], None).unwrap();
        g.outputs = vec![z];
        let h = to_f16(&g, true).unwrap();
        ir::graph::verify::verify(&h).unwrap();
        assert_eq!(h.ty(z).dtype, DType::F16);
        assert_eq!(h.ty(i).dtype, DType::I64);
        assert_eq!(h.node(ir::NodeId(1)).op, Op::Cast { to: DType::F16 });
        // 0.1 is not a half: it rounds to 0.0999755859375; the bias stays f32 (and the sum
        // with it is f16).
        assert_eq!(h.const_data(w).unwrap().to_f32_vec()[..3], [1.0, 0.0999755859375, -2.5]);
        assert_eq!((h.ty(b).dtype, h.ty(yb).dtype), (DType::F32, DType::F16));
        let back = compute_view(&h);
        assert_eq!(back.ty(z).dtype, DType::F32);
        assert_eq!(back.const_data(w).unwrap().as_f32().unwrap()[..3], [1.0, 0.0999755859375, -2.5]);
        assert!(has_f16(&h) && !has_f16(&back));
        // Without f16 activations: the weight, the input and the output are f16, the rest f32.
        let w16 = to_f16(&g, false).unwrap();
        ir::graph::verify::verify(&w16).unwrap();
        let types: Vec<DType> = [x, w, b, y, yb, z].iter().map(|&v| w16.ty(v).dtype).collect();
        assert_eq!(types, [DType::F16, DType::F16, DType::F32, DType::F32, DType::F32, DType::F16]);
    }
}

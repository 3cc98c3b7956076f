//! Half precision (`--dtype f16`): the f32 tensors of the graph (inputs, weights, results)
//! become f16, except small constants: a per-channel vector (a bias, a scale) or a scalar
//! stays f32, because rounding it costs much precision and saves no memory (a folded batch
//! norm's bias can be large against the sum it is added to). Compute stays f32: lowering lowers the graph's f32 view
//! ([`compute_view`]), and after scheduling `lower::half::store_params_in_f16` makes the
//! programs read and write their f16 tensors through casts, so accumulators (register
//! tiles and the other temporaries) stay f32.

use ir::{DType, FusedStep, Graph, Op, ValueDef};

use crate::PassError;

/// The graph with its f32 tensors in f16 (weights rounded to nearest even), but for the
/// constants of at most one axis longer than 1.
pub fn to_f16(g: &Graph) -> Result<Graph, PassError> {
    let keep = |v: &ir::ValueInfo| matches!(v.def, ValueDef::Const(_)) && v.ty.shape.iter().filter(|&&d| d > 1).count() <= 1;
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
fn retyped(g: &Graph, from: DType, to: DType, keep: &dyn Fn(&ir::ValueInfo) -> bool) -> Graph {
    let mut out = g.clone();
    for v in &mut out.values {
        if v.ty.dtype != from || keep(v) {
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
        let x = g.add_input("x", TensorType::new(DType::F32, vec![3, 3]));
        let w = g.add_weight(
            Some("w".into()),
            TensorType::new(DType::F32, vec![3, 3]),
            Some(Tensor::f32(vec![3, 3], [1.0, 0.1, -2.5].repeat(3)).unwrap()),
        );
        let b = g.add_weight(Some("b".into()), TensorType::new(DType::F32, vec![3]), Some(Tensor::f32(vec![3], vec![0.1; 3]).unwrap()));
        let i = g.add_input("i", TensorType::new(DType::I64, vec![3]));
        let y = g.add_node(Op::Binary(ir::graph::BinaryOp::Mul), vec![x, w], None).unwrap();
        let c = g.add_node(Op::Cast { to: DType::F32 }, vec![i], None).unwrap();
        let yb = g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![y, b], None).unwrap();
        let z = g.add_node(Op::Binary(ir::graph::BinaryOp::Add), vec![yb, c], None).unwrap();
        g.outputs = vec![z];
        let h = to_f16(&g).unwrap();
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
    }
}

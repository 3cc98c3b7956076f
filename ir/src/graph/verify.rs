//! The graph verifier: the invariants every pass may rely on and must preserve.

use crate::error::{IrError, Result};
use crate::graph::{Graph, ValueDef, ValueId};
use crate::types::{DType, TensorType};

/// Checks that every id is in range, values are defined before use (so the value order is a
/// topological order), definitions agree both ways, weight data fits its type, and every
/// node's stated type is the one its op's shape rule gives.
pub fn verify(g: &Graph) -> Result<()> {
    let bad = |msg: String| Err(IrError::Invalid(msg));
    for (i, info) in g.values.iter().enumerate() {
        let id = ValueId(i as u32);
        match &info.def {
            ValueDef::Input(pos) => {
                if g.inputs.get(*pos) != Some(&id) {
                    return bad(format!("{id} claims to be input {pos}"));
                }
            }
            ValueDef::Const(w) => {
                let Some(weight) = g.weights.get(w.index()) else {
                    return bad(format!("{id} refers to missing weight {w}"));
                };
                if let Some(t) = &weight.data {
                    if t.ty() != info.ty {
                        return bad(format!("{id} has type {} but its data is {}", info.ty, t.ty()));
                    }
                }
            }
            ValueDef::Node(n) => {
                let Some(node) = g.nodes.get(n.index()) else {
                    return bad(format!("{id} refers to missing {n}"));
                };
                if node.output != id {
                    return bad(format!("{id} claims to be defined by {n}, which defines {}", node.output));
                }
                let where_ = node.name.as_deref().map(|s| format!(" (at \"{s}\")")).unwrap_or_default();
                if let Some(u) = node.inputs.iter().find(|u| u.index() >= i) {
                    return bad(format!("{id} = {}{where_} uses {u} before it is defined", node.op.name()));
                }
                // f16 is a storage form of f32: ops are typed on their compute types, so an
                // f16 model may keep any float tensor in either (see passes::graph::half).
                let types: Vec<TensorType> = node.inputs.iter().map(|&u| computed(g.ty(u))).collect();
                let types: Vec<&TensorType> = types.iter().collect();
                let inferred = node.op.infer(&types).map_err(|e| IrError::Invalid(format!("{id}{where_}: {e}")))?;
                if computed(&inferred) != computed(&info.ty) {
                    return bad(format!("{id} = {}{where_} is declared {} but its op gives {inferred}", node.op.name(), info.ty));
                }
                // A reshape is its operand's memory seen with another shape.
                if matches!(node.op, crate::Op::Reshape { .. }) && g.ty(node.inputs[0]).dtype != info.ty.dtype {
                    return bad(format!("{id} = reshape{where_} is declared {} but reshapes a {} tensor", info.ty, g.ty(node.inputs[0]).dtype));
                }
            }
        }
    }
    for (pos, v) in g.inputs.iter().enumerate() {
        if g.values.get(v.index()).map(|i| &i.def) != Some(&ValueDef::Input(pos)) {
            return bad(format!("input {pos} ({v}) is not defined as an input"));
        }
    }
    for (n, node) in g.nodes.iter().enumerate() {
        if g.values.get(node.output.index()).map(|i| &i.def) != Some(&ValueDef::Node(crate::NodeId(n as u32))) {
            return bad(format!("node{n} defines {} which does not point back to it", node.output));
        }
    }
    if g.outputs.is_empty() {
        return bad("the graph has no outputs".into());
    }
    if let Some(v) = g.outputs.iter().find(|v| v.index() >= g.values.len()) {
        return bad(format!("output {v} is not defined"));
    }
    Ok(())
}

/// The type a tensor is computed in: f16 is stored, computed as f32.
fn computed(t: &TensorType) -> TensorType {
    match t.dtype {
        DType::F16 => TensorType::new(DType::F32, t.shape.clone()),
        _ => t.clone(),
    }
}

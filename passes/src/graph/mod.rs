//! Graph-level passes, each a function from graph to graph, and the helper they share to
//! rebuild a graph node by node.

pub mod explicit_padding;
pub mod half;
pub mod lane_reductions;
pub mod matvec_convs;

use ir::{Graph, Node, ValueDef, ValueId};

use crate::PassError;

/// Rebuilds `g` in order: inputs and constants are copied, and each node is handed to
/// `rewrite` with a mapping function for its operands; `rewrite` adds whatever replaces the
/// node to the new graph and returns the value that stands for its result.
pub fn rebuild(
    g: &Graph,
    mut rewrite: impl FnMut(&mut Graph, &Node, &dyn Fn(ValueId) -> ValueId) -> Result<ValueId, PassError>,
) -> Result<Graph, PassError> {
    let mut out = Graph::new(g.name.clone());
    let mut map: Vec<ValueId> = Vec::with_capacity(g.values.len());
    for info in &g.values {
        let new = match &info.def {
            ValueDef::Input(_) => out.add_input(info.name.clone().unwrap_or_default(), info.ty.clone()),
            ValueDef::Const(w) => out.add_weight(info.name.clone(), info.ty.clone(), g.weights[w.index()].data.clone()),
            ValueDef::Node(n) => {
                let lookup = |v: ValueId| map[v.index()];
                let id = rewrite(&mut out, g.node(*n), &lookup)?;
                if out.value(id).name.is_none() {
                    out.values[id.index()].name = info.name.clone();
                }
                id
            }
        };
        map.push(new);
    }
    out.outputs = g.outputs.iter().map(|v| map[v.index()]).collect();
    Ok(out.pruned())
}

/// Copies a node unchanged into `out`.
pub fn copy_node(out: &mut Graph, node: &Node, map: &dyn Fn(ValueId) -> ValueId) -> Result<ValueId, PassError> {
    let inputs = node.inputs.iter().map(|&v| map(v)).collect();
    Ok(out.add_node(node.op.clone(), inputs, node.name.clone())?)
}

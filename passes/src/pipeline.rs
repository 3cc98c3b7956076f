//! The compilation pipeline, every pass in order in one place.

use ir::Graph;

use crate::PassError;

/// The graph passes, in order, with the name `chanasc ir --print-after` knows them by.
pub const GRAPH_PASSES: &[(&str, fn(&Graph) -> Result<Graph, PassError>)] =
    &[
        ("egraph", crate::egraph::optimize),
        ("explicit-padding", crate::graph::explicit_padding::explicit_padding),
        ("matvec-convs", crate::graph::matvec_convs::matvec_convs),
    ];

/// Runs the graph passes in order; the verifier checks the graph after each one.
pub fn optimize_graph(g: &Graph) -> Result<Graph, PassError> {
    let mut g = g.clone();
    for (_, pass) in GRAPH_PASSES {
        g = pass(&g)?;
        ir::graph::verify::verify(&g)?;
    }
    Ok(g)
}

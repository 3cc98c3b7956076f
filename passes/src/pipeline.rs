//! The compilation pipeline, every pass in order in one place.

use ir::Graph;

use crate::PassError;

/// The graph passes, in order, with the name `chanasc ir --print-after` knows them by.
pub const GRAPH_PASSES: &[(&str, fn(&Graph) -> Result<Graph, PassError>)] = &[
    ("egraph", crate::egraph::optimize),
    ("explicit-padding", crate::graph::explicit_padding::explicit_padding),
    ("matvec-convs", crate::graph::matvec_convs::matvec_convs),
    ("fuse", crate::egraph::fuse),
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

/// The passes code generation needs whatever the optimization level: convolution padding as
/// explicit pad ops (which lowering folds into their producers).
pub const CODEGEN_PASSES: &[&str] = &["explicit-padding"];

/// The graph passes for compiling: all of them, or with `optimize` off only the ones code
/// generation needs (to measure what the optimizations bring).
pub fn prepare_graph(g: &Graph, optimize: bool) -> Result<Graph, PassError> {
    let mut g = g.clone();
    for (name, pass) in GRAPH_PASSES {
        if optimize || CODEGEN_PASSES.contains(name) {
            g = pass(&g)?;
            ir::graph::verify::verify(&g)?;
        }
    }
    Ok(g)
}

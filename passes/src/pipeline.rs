//! The compilation pipeline, every pass in order in one place.

use ir::{DType, Graph};

use crate::PassError;

/// The graph passes, in order, with the name `chanasc ir --print-after` knows them by.
pub const GRAPH_PASSES: &[(&str, fn(&Graph) -> Result<Graph, PassError>)] = &[
    ("egraph", crate::egraph::optimize),
    ("explicit-padding", crate::graph::explicit_padding::explicit_padding),
    ("matvec-convs", crate::graph::matvec_convs::matvec_convs),
    ("lane-reductions", crate::graph::lane_reductions::lane_reductions),
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

/// How a graph is prepared for code generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphOptions {
    /// Run every graph pass, or only the ones code generation needs (to measure what the
    /// optimizations bring).
    pub optimize: bool,
    /// The element type of the graph's floating-point tensors: f32, or f16 (`--dtype f16`:
    /// converted after the optimizations, which fold constants in f32).
    pub dtype: DType,
    /// With f16: activations in f16 too, not only weights, inputs and outputs (see
    /// `graph::half`).
    pub f16_activations: bool,
}

impl From<bool> for GraphOptions {
    fn from(optimize: bool) -> GraphOptions {
        GraphOptions { optimize, dtype: DType::F32, f16_activations: false }
    }
}

/// The graph passes for compiling: all of them, or with `optimize` off only the ones code
/// generation needs; then the conversion to f16 when asked for.
pub fn prepare_graph(g: &Graph, opts: impl Into<GraphOptions>) -> Result<Graph, PassError> {
    let opts = opts.into();
    let mut g = g.clone();
    for (name, pass) in GRAPH_PASSES {
        if opts.optimize || CODEGEN_PASSES.contains(name) {
            g = pass(&g)?;
            ir::graph::verify::verify(&g)?;
        }
    }
    match opts.dtype {
        DType::F32 => {}
        DType::F16 => {
            g = crate::graph::half::to_f16(&g, opts.f16_activations)?;
            ir::graph::verify::verify(&g)?;
        }
        other => return Err(PassError::Ir(ir::IrError::Invalid(format!("--dtype {other}: models compute in f32 or f16")))),
    }
    Ok(g)
}

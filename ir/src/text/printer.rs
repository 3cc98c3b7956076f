//! Prints a graph as text IR.

use std::fmt::Write;

use super::lexer::escape;
use crate::graph::{Attr, Graph, ValueDef, ValueId};
use crate::tensor::TensorData;

#[derive(Debug, Clone, Copy)]
pub struct PrintOptions {
    /// Constants with at most this many elements are printed inline; larger ones `external`.
    pub inline_limit: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions { inline_limit: 16 }
    }
}

pub fn print_graph(g: &Graph) -> String {
    print_graph_with(g, PrintOptions::default())
}

pub fn print_graph_with(g: &Graph, opts: PrintOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", escape(&g.name));
    for (i, info) in g.values.iter().enumerate() {
        let id = ValueId(i as u32);
        let name = info.name.as_deref().map(|n| format!(" {}", escape(n))).unwrap_or_default();
        match &info.def {
            ValueDef::Input(_) => {
                let _ = writeln!(out, "  input {id}{name}: {}", info.ty);
            }
            ValueDef::Const(w) => {
                let data = match &g.weights[w.index()].data {
                    Some(t) if t.numel() <= opts.inline_limit => print_data(&t.data),
                    _ => "external".to_string(),
                };
                let _ = writeln!(out, "  const {id}{name}: {} = {data}", info.ty);
            }
            ValueDef::Node(n) => {
                let node = g.node(*n);
                let args: Vec<String> = node.inputs.iter().map(|v| v.to_string()).collect();
                let _ = write!(out, "  {id}{name}: {} = {}({})", info.ty, node.op.name(), args.join(", "));
                let attrs = node.op.attrs();
                if !attrs.is_empty() {
                    let parts: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={}", print_attr(v))).collect();
                    let _ = write!(out, " {{{}}}", parts.join(", "));
                }
                if let Some(loc) = &node.name {
                    let _ = write!(out, " at {}", escape(loc));
                }
                out.push('\n');
            }
        }
    }
    let outs: Vec<String> = g.outputs.iter().map(|v| v.to_string()).collect();
    let _ = writeln!(out, "  output {}", outs.join(", "));
    out.push_str("}\n");
    out
}

/// Prints an f32 so that it parses back to the same bits, always as a float token.
pub(crate) fn print_f32(x: f32) -> String {
    // Debug formatting gives the shortest representation that round-trips ("1.0", "1e-5",
    // "inf", "NaN"), which the lexer reads as a float.
    format!("{x:?}")
}

pub(crate) fn print_attr(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => print_f32(*v),
        Attr::Ints(v) => format!("[{}]", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")),
        Attr::Ident(v) => v.clone(),
        Attr::Str(v) => escape(v),
    }
}

fn print_data(d: &TensorData) -> String {
    let items: Vec<String> = match d {
        TensorData::F32(v) => v.iter().map(|&x| print_f32(x)).collect(),
        // Every f16 is an f32 exactly, so the f32 text reads back to the same half.
        TensorData::F16(v) => v.iter().map(|&x| print_f32(f32::from(x))).collect(),
        TensorData::I64(v) => v.iter().map(|x| x.to_string()).collect(),
        TensorData::Bool(v) => v.iter().map(|x| x.to_string()).collect(),
    };
    format!("[{}]", items.join(", "))
}

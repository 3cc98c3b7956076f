//! Graph-level optimization by equality saturation (egg): the graph becomes an e-graph, the
//! rewrite rules of `rules/` add equivalent forms (algebraic identities, batch norm folded
//! into convolutions, padding folded into convolutions), and extraction keeps the cheapest
//! form under a cost model of memory traffic and arithmetic.
//!
//! Saturation is bounded by node, iteration and time limits, reported in [`Report`];
//! extraction is deterministic (egg's `deterministic` feature and a total cost order).

mod extract;
pub mod rules;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use egg::{Analysis, DidMerge, EGraph, Id, Language, Runner};
use ir::{Graph, Op, Tensor, TensorType, ValueDef, ValueId};

use crate::PassError;

/// An op with its attributes, compared and hashed by its printed form (attributes hold f32s,
/// which have no total order).
#[derive(Debug, Clone)]
pub struct OpKey {
    pub op: Op,
    text: String,
}

impl OpKey {
    pub fn new(op: Op) -> OpKey {
        let attrs: Vec<String> = op.attrs().iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let text = format!("{}{{{}}}", op.name(), attrs.join(","));
        OpKey { op, text }
    }
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for OpKey {}
impl std::hash::Hash for OpKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

/// A node of the e-graph language: a graph input, a constant (an index into the analysis'
/// table), or an op over child e-classes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GNode {
    Input(u32),
    Const(u32),
    Op(OpKey, Vec<Id>),
}

impl Language for GNode {
    type Discriminant = String;

    fn discriminant(&self) -> String {
        match self {
            GNode::Input(i) => format!("input{i}"),
            GNode::Const(c) => format!("const{c}"),
            GNode::Op(k, _) => k.text.clone(),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (GNode::Op(a, x), GNode::Op(b, y)) => a == b && x.len() == y.len(),
            (a, b) => a == b,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            GNode::Op(_, c) => c,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            GNode::Op(_, c) => c,
            _ => &mut [],
        }
    }
}

impl fmt::Display for GNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GNode::Input(i) => write!(f, "input{i}"),
            GNode::Const(c) => write!(f, "const{c}"),
            GNode::Op(k, _) => f.write_str(k.op.name()),
        }
    }
}

/// Patterns name the attribute-free ops (`mul`, `add`, `relu`, ...); ops with attributes
/// are matched by the rules' own searchers.
impl egg::FromOp for GNode {
    type Error = String;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, String> {
        let parsed = Op::from_parts(op, vec![]).map_err(|e| e.to_string())?;
        let (lo, hi) = parsed.arity();
        if children.len() < lo || children.len() > hi {
            return Err(format!("{op} takes {lo}..{hi} operands"));
        }
        Ok(GNode::Op(OpKey::new(parsed), children))
    }
}

/// What is known of an e-class: its type, its value when constant, and the source-model name
/// of a node it came from (for messages and profiles).
#[derive(Debug, Clone)]
pub struct ClassData {
    pub ty: TensorType,
    pub value: Option<Arc<Tensor>>,
    pub name: Option<String>,
    /// How many times the source graph reads the class's value (a graph output counts as a
    /// read): a value read once may be fused into its reader. Classes that rules create
    /// start at 0, and merging adds, so a class keeps the reads of the value it stands for.
    pub uses: usize,
}

/// A constant of the table: its type, its data (None for a weight whose data is elsewhere,
/// which stays opaque) and the name it had.
#[derive(Debug, Clone)]
pub struct ConstEntry {
    pub ty: TensorType,
    pub data: Option<Arc<Tensor>>,
    pub name: Option<String>,
}

/// The analysis: the constant table and the graph inputs' types.
#[derive(Default)]
pub struct GraphAnalysis {
    pub consts: Vec<ConstEntry>,
    pub inputs: Vec<TensorType>,
    /// Names of the original nodes, by the e-node they were added as.
    pub names: HashMap<GNode, String>,
}

pub type GEGraph = EGraph<GNode, GraphAnalysis>;

/// Constant results with at most this many elements are folded into new constants.
const FOLD_LIMIT: usize = 64;

impl Analysis<GNode> for GraphAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut GEGraph, enode: &GNode, _id: Id) -> ClassData {
        let name = egraph.analysis.names.get(enode).cloned();
        match enode {
            GNode::Input(i) => ClassData { ty: egraph.analysis.inputs[*i as usize].clone(), value: None, name, uses: 0 },
            GNode::Const(c) => {
                let e = egraph.analysis.consts[*c as usize].clone();
                ClassData { ty: e.ty, value: e.data, name, uses: 0 }
            }
            GNode::Op(k, children) => {
                let types: Vec<&TensorType> = children.iter().map(|&c| &egraph[c].data.ty).collect();
                // Rules check shapes before they add a node, so the shape rule holds here; a
                // failure would be a rule's bug, reported as an unknown (empty) type.
                let ty = k.op.infer(&types).unwrap_or_else(|_| TensorType::new(ir::DType::F32, vec![]));
                let consts: Option<Vec<Arc<Tensor>>> = children.iter().map(|&c| egraph[c].data.value.clone()).collect();
                let value = match consts {
                    Some(ts) if ty.numel() <= FOLD_LIMIT => {
                        let refs: Vec<&Tensor> = ts.iter().map(|t| t.as_ref()).collect();
                        interp::eval_op(&k.op, &refs, &ty).ok().map(Arc::new)
                    }
                    _ => None,
                };
                ClassData { ty, value, name, uses: 0 }
            }
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut changed = false;
        if a.value.is_none() && b.value.is_some() {
            a.value = b.value;
            changed = true;
        }
        if a.name.is_none() && b.name.is_some() {
            a.name = b.name;
            changed = true;
        }
        if b.uses > 0 {
            a.uses += b.uses;
            changed = true;
        }
        DidMerge(changed, true)
    }

    /// A folded constant joins its class as a constant node, so extraction can pick it.
    fn modify(egraph: &mut GEGraph, id: Id) {
        let Some(value) = egraph[id].data.value.clone() else {
            return;
        };
        if egraph[id].nodes.iter().any(|n| matches!(n, GNode::Const(_))) {
            return;
        }
        let c = add_const(egraph, value.as_ref().clone());
        egraph.union(id, c);
    }
}

/// Adds a constant tensor as a new e-class.
pub fn add_const(egraph: &mut GEGraph, t: Tensor) -> Id {
    add_const_entry(egraph, ConstEntry { ty: t.ty(), data: Some(Arc::new(t)), name: None })
}

fn add_const_entry(egraph: &mut GEGraph, e: ConstEntry) -> Id {
    egraph.analysis.consts.push(e);
    egraph.add(GNode::Const(egraph.analysis.consts.len() as u32 - 1))
}

/// Adds an op node after checking its shape rule; None when the operands do not fit.
pub fn add_op(egraph: &mut GEGraph, op: Op, children: Vec<Id>) -> Option<Id> {
    let types: Vec<&TensorType> = children.iter().map(|&c| &egraph[c].data.ty).collect();
    op.infer(&types).ok()?;
    Some(egraph.add(GNode::Op(OpKey::new(op), children)))
}

/// The op nodes of a class.
pub fn ops_in(egraph: &GEGraph, id: Id) -> Vec<(Op, Vec<Id>)> {
    egraph[id]
        .nodes
        .iter()
        .filter_map(|n| match n {
            GNode::Op(k, c) => Some((k.op.clone(), c.clone())),
            _ => None,
        })
        .collect()
}

/// What a saturation run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    pub stop_reason: String,
    pub seconds: f64,
    pub graph_nodes_before: usize,
    pub graph_nodes_after: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "e-graph: {} iterations, {} e-nodes in {} e-classes, stopped: {}, {:.3} s; graph nodes {} -> {}",
            self.iterations, self.nodes, self.classes, self.stop_reason, self.seconds, self.graph_nodes_before, self.graph_nodes_after
        )
    }
}

/// Saturation limits.
pub const NODE_LIMIT: usize = 20_000;
pub const ITER_LIMIT: usize = 12;
pub const TIME_LIMIT: Duration = Duration::from_secs(5);

/// The graph pass: saturate with the simplification rules (algebraic, batch norm, padding),
/// extract the cheapest graph.
pub fn optimize(g: &Graph) -> Result<Graph, PassError> {
    optimize_with_report(g).map(|(g, _)| g)
}

pub fn optimize_with_report(g: &Graph) -> Result<(Graph, Report), PassError> {
    saturate(g, &rules::simplification())
}

/// The fusion pass: saturate with the fusion rules, so that each extracted node is one tensor
/// program. It runs after the other graph passes, on their result, because fused nodes hide
/// the ops those passes rewrite.
pub fn fuse(g: &Graph) -> Result<Graph, PassError> {
    fuse_with_report(g).map(|(g, _)| g)
}

pub fn fuse_with_report(g: &Graph) -> Result<(Graph, Report), PassError> {
    saturate(g, &rules::fusion::rules())
}

/// Saturates the e-graph of `g` with `rules` within the limits and extracts the cheapest graph.
pub fn saturate(g: &Graph, rules: &[rules::GRewrite]) -> Result<(Graph, Report), PassError> {
    let (egraph, roots) = to_egraph(g);
    let start = std::time::Instant::now();
    let runner = Runner::default()
        .with_node_limit(NODE_LIMIT)
        .with_iter_limit(ITER_LIMIT)
        .with_time_limit(TIME_LIMIT)
        .with_egraph(egraph)
        .run(rules);
    let seconds = start.elapsed().as_secs_f64();
    let stop_reason = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) => "saturated".to_string(),
        Some(r) => format!("{r:?}").to_lowercase(),
        None => "unknown".into(),
    };
    let egraph = runner.egraph;
    let out = from_egraph(g, &egraph, &roots)?;
    let report = Report {
        iterations: runner.iterations.len(),
        nodes: egraph.total_number_of_nodes(),
        classes: egraph.number_of_classes(),
        stop_reason,
        seconds,
        graph_nodes_before: g.nodes.len(),
        graph_nodes_after: out.nodes.len(),
    };
    Ok((out, report))
}

/// Builds the e-graph of a graph; returns it and the class of every output.
fn to_egraph(g: &Graph) -> (GEGraph, Vec<Id>) {
    let analysis = GraphAnalysis { inputs: g.inputs.iter().map(|&v| g.ty(v).clone()).collect(), ..Default::default() };
    let mut egraph = GEGraph::new(analysis);
    let mut ids: Vec<Id> = Vec::with_capacity(g.values.len());
    for info in &g.values {
        let id = match &info.def {
            ValueDef::Input(pos) => egraph.add(GNode::Input(*pos as u32)),
            ValueDef::Const(w) => {
                let data = g.weights[w.index()].data.clone().map(Arc::new);
                add_const_entry(&mut egraph, ConstEntry { ty: info.ty.clone(), data, name: info.name.clone() })
            }
            ValueDef::Node(n) => {
                let node = g.node(*n);
                let enode = GNode::Op(OpKey::new(node.op.clone()), node.inputs.iter().map(|v| ids[v.index()]).collect());
                if let Some(name) = &node.name {
                    egraph.analysis.names.insert(enode.clone(), name.clone());
                }
                egraph.add(enode)
            }
        };
        ids.push(id);
    }
    egraph.rebuild();
    let reads = g.nodes.iter().flat_map(|n| n.inputs.iter()).chain(&g.outputs);
    for v in reads {
        let class = egraph.find(ids[v.index()]);
        egraph[class].data.uses += 1;
    }
    let roots = g.outputs.iter().map(|v| egraph.find(ids[v.index()])).collect();
    (egraph, roots)
}

/// The cost model of one node: bytes moved plus arithmetic, in arbitrary units. A node that
/// writes a tensor costs its traffic, so folding a multiply into a convolution's weights (a
/// constant) always wins; constants and inputs are free, and so is a reshape (an alias).
pub fn node_cost(egraph: &GEGraph, enode: &GNode) -> u64 {
    let GNode::Op(k, ch) = enode else { return 0 };
    if matches!(k.op, Op::Reshape { .. }) {
        return 1;
    }
    let bytes = |id: Id| egraph[id].data.ty.numel() as u64 * 4;
    let types: Vec<&TensorType> = ch.iter().map(|&c| &egraph[c].data.ty).collect();
    let Ok(out_ty) = k.op.infer(&types) else { return u64::MAX / 4 };
    let traffic: u64 = out_ty.numel() as u64 * 4 + ch.iter().map(|&c| bytes(c)).sum::<u64>();
    traffic.saturating_add(BYTES_PER_VECTOR_OP * compute_cost(&k.op, &types, &out_ty)).saturating_add(1)
}

/// The default schedules' kernels do a vector multiply-accumulate in about the time they
/// stream 4 bytes (measured on this project's fixture models: a 16-lane FMA at ~135 GFLOP/s
/// against ~35 GB/s of streaming).
const BYTES_PER_VECTOR_OP: u64 = 4;

/// The arithmetic of an op: its multiply-accumulates over the lanes its kernel keeps busy,
/// calibrated on the default schedules' kernels. A channel-blocked convolution's vector lanes
/// are full and its loads unit-stride (a block of 8 fills half a 16-lane register); a plain
/// NCHW one vectorizes along a row, which strided (and depthwise) convolutions gather, about
/// four times slower. A fused op costs its steps', and a prologue (other than a per-channel
/// scale) twice more than its convolution: it is computed at every load of the convolution's
/// input, about once per vector multiply-accumulate, and breaks the kernel's register tile
/// (measured: a 1x1 convolution with its input scaled per load ran at a third of its speed).
fn compute_cost(op: &Op, types: &[&TensorType], out: &TensorType) -> u64 {
    if let Op::Fused(f) = op {
        let Ok(step_types) = f.step_types(types) else { return u64::MAX / 4 };
        // A per-channel scale is applied to the weights instead: about free.
        let prologue = f.dense_step() == Some(1) && !f.prologue_is_channel_scale(types);
        return f
            .steps
            .iter()
            .zip(&step_types)
            .enumerate()
            .map(|(i, (step, t))| {
                let operands: Vec<&TensorType> = step
                    .operands
                    .iter()
                    .map(|r| match *r {
                        ir::FusedRef::Input(k) => types[k],
                        ir::FusedRef::Step(j) => &step_types[j],
                    })
                    .collect();
                let cost = compute_cost(&step.op, &operands, t);
                if prologue && i == 1 {
                    3 * cost
                } else {
                    cost
                }
            })
            .sum();
    }
    let lanes = match op {
        Op::Conv2dNchwc { block, .. } => 8 + (*block).min(16) as u64 / 2,
        Op::Conv2d { groups, strides, .. } if *groups > 1 || *strides != [1, 1] => 2,
        _ => 8,
    };
    op.macs(types, out) / lanes
}

/// Extracts the cheapest graph: one node per class, shared between the outputs.
fn from_egraph(src: &Graph, egraph: &GEGraph, roots: &[Id]) -> Result<Graph, PassError> {
    let extractor = extract::DagExtractor::new(egraph, roots);
    let mut out = Graph::new(src.name.clone());
    for &v in &src.inputs {
        out.add_input(src.value(v).name.clone().unwrap_or_default(), src.ty(v).clone());
    }
    let mut built: HashMap<Id, ValueId> = HashMap::new();
    fn build(
        id: Id,
        egraph: &GEGraph,
        extractor: &extract::DagExtractor,
        out: &mut Graph,
        built: &mut HashMap<Id, ValueId>,
    ) -> Result<ValueId, PassError> {
        let id = egraph.find(id);
        if let Some(&v) = built.get(&id) {
            return Ok(v);
        }
        let v = match extractor.find_best_node(id) {
            GNode::Input(i) => out.inputs[*i as usize],
            GNode::Const(c) => {
                let e = &egraph.analysis.consts[*c as usize];
                out.add_weight(e.name.clone(), e.ty.clone(), e.data.as_ref().map(|t| t.as_ref().clone()))
            }
            GNode::Op(k, children) => {
                let mut inputs = Vec::with_capacity(children.len());
                for &c in children {
                    inputs.push(build(c, egraph, extractor, out, built)?);
                }
                out.add_node(k.op.clone(), inputs, egraph[id].data.name.clone())?
            }
        };
        built.insert(id, v);
        Ok(v)
    }
    for &r in roots {
        let v = build(r, egraph, &extractor, &mut out, &mut built)?;
        out.outputs.push(v);
    }
    // Output names carry over.
    for (i, &v) in src.outputs.iter().enumerate() {
        let o = out.outputs[i];
        if out.value(o).name.is_none() || matches!(out.value(o).def, ValueDef::Node(_)) {
            out.values[o.index()].name = src.value(v).name.clone();
        }
    }
    Ok(out.pruned())
}

/// Is `t` a constant whose every element is `x`?
pub fn all_equal(t: &Tensor, x: f32) -> bool {
    t.as_f32().is_some_and(|v| v.iter().all(|&e| e == x))
}

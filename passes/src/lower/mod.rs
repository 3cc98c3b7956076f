//! Lowering of graph ops to loop IR: one tensor program per graph node, written as the plain
//! compute definition (one loop per output axis, reductions as accumulations) that a schedule
//! transforms later.

mod elementwise;
mod fold_pads;
mod fuse;
pub mod half;
mod movement;
mod nn;
mod reduce;

use ir::loops::{BinOp, BufId, BufKind, Expr, Func, Loop, LoopKind, Stmt, VarId};
use ir::{DType, Graph, Node, Op, TensorType, ValueId};

use crate::PassError;

/// One graph node's tensor program: `func` has one Param buffer per node operand, in the
/// node's operand order (constants included), then one Param buffer for the result; so
/// `args[i]` is the graph value bound to the i-th param and the last is the node's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub func: Func,
    pub args: Vec<ValueId>,
    /// The graph nodes it computes, in order (several when elementwise ops were fused).
    pub nodes: Vec<ir::NodeId>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Run(Program),
    /// A program whose result does not change between runs (the zero border of a padded
    /// tensor whose interior its producer writes): it runs once, when the model is created,
    /// and its result keeps its memory for the model's lifetime.
    Once(Program),
    /// At the start of each run, the graph input `input` is copied into the interior of
    /// `into` (its zero-padded form, whose border a `Once` program fills): the input's pad
    /// costs no program. `pads` are the leading pads of each axis, then the trailing ones.
    StageInput {
        input: ValueId,
        into: ValueId,
        pads: Vec<usize>,
    },
    /// The result is the operand's memory reinterpreted (reshape): no code runs.
    Alias {
        from: ValueId,
        to: ValueId,
    },
}

/// Lowers every node of a graph, in order: one program per node (a fused node, which the
/// e-graph's fusion rules made, is one program for all its steps).
///
/// A graph with f16 tensors is lowered as its f32 view (`graph::half::compute_view`): the
/// programs compute in f32 and are scheduled so; [`half::store_params_in_f16`] gives them
/// their f16 parameters after scheduling.
pub fn lower_graph(g: &Graph) -> Result<Vec<Step>, PassError> {
    if crate::graph::half::has_f16(g) {
        return lower_graph(&crate::graph::half::compute_view(g));
    }
    let mut steps = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        if let Op::Fused(f) = &node.op {
            let mut program = lower_fused(g, node, f)?;
            program.nodes = vec![ir::NodeId(i as u32)];
            steps.push(Step::Run(program));
            continue;
        }
        steps.push(match lower_node(g, node)? {
            Some(func) => {
                let mut args = node.inputs.clone();
                args.push(node.output);
                Step::Run(Program { func, args, nodes: vec![ir::NodeId(i as u32)] })
            }
            None => Step::Alias { from: node.inputs[0], to: node.output },
        });
    }
    Ok(fold_pads::fold_pads(g, steps))
}

/// Lowers a fused node: its body becomes a small graph of its own (the node's operands as
/// inputs and constants, one node per step), lowered as one group, whose parameters are then
/// bound to the node's operands and result.
fn lower_fused(g: &Graph, node: &Node, f: &ir::Fused) -> Result<Program, PassError> {
    let err = |message: String| PassError::Lowering {
        node: node.name.clone().unwrap_or_else(|| node.output.to_string()),
        op: "fused".to_string(),
        message,
    };
    let mut body = Graph::new("fused");
    let mut operands = Vec::with_capacity(node.inputs.len());
    for (k, &v) in node.inputs.iter().enumerate() {
        // Constants stay constants: lowering lays out constant weights for its kernels.
        operands.push(match g.const_data(v) {
            Some(t) => body.add_weight(None, t.ty(), Some(t.clone())),
            None => body.add_input(format!("x{k}"), g.ty(v).clone()),
        });
    }
    let mut results: Vec<ValueId> = Vec::with_capacity(f.steps.len());
    for step in &f.steps {
        let inputs = step
            .operands
            .iter()
            .map(|r| match *r {
                ir::FusedRef::Input(k) => operands.get(k).copied().ok_or_else(|| err(format!("x{k} is not an operand"))),
                ir::FusedRef::Step(j) => results.get(j).copied().ok_or_else(|| err(format!("y{j} is not an earlier step"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        results.push(body.add_node(step.op.clone(), inputs, node.name.clone()).map_err(|e| err(e.to_string()))?);
    }
    let group = fuse::group_of(&body, f).map_err(err)?;
    let mut program = lower_group(&body, &group)?;
    let ops: Vec<&str> = f.steps.iter().map(|s| s.op.name()).collect();
    program.func.name = format!("{}_{}", ops.join("_"), node.output.0);
    // The body's values are its operands (in order), then the step results.
    program.args = program
        .args
        .iter()
        .map(|&v| match v.index() < node.inputs.len() {
            true => node.inputs[v.index()],
            false => node.output,
        })
        .collect();
    Ok(program)
}

/// Lowers a fused group to one program: its anchor's operands, then the values its other
/// members read from outside, then the group's result.
fn lower_group(g: &Graph, group: &fuse::Group) -> Result<Program, PassError> {
    let anchor = &g.nodes[group.nodes[0]];
    let last = &g.nodes[*group.nodes.last().expect("groups are not empty")];
    let err = |message: String| PassError::Lowering {
        node: anchor.name.clone().unwrap_or_else(|| anchor.output.to_string()),
        op: anchor.op.name().to_string(),
        message,
    };
    let ops: Vec<&str> = group.prologue.iter().chain(&group.nodes).map(|&i| g.nodes[i].op.name()).collect();
    let name = format!("{}_{}", ops.join("_"), last.output.0);
    let dense = anchor.op.is_dense();
    let externals = fuse::external_operands(g, group, if dense { &[] } else { &anchor.inputs });
    let func = if dense {
        let f = lower_node(g, anchor)?.ok_or_else(|| err("a dense op lowers to a program".into()))?;
        let mut f = fuse::add_epilogue(f, g, group, &externals).map_err(err)?;
        f.name = name;
        f
    } else {
        let mut b = Builder::new(name);
        let params: Vec<ValueId> = anchor.inputs.iter().chain(&externals).copied().collect();
        let names: Vec<String> = (0..params.len()).map(|k| format!("x{k}")).collect();
        let types: Vec<&TensorType> = params.iter().map(|&v| g.ty(v)).collect();
        let anchor_types: Vec<&TensorType> = anchor.inputs.iter().map(|&v| g.ty(v)).collect();
        elementwise::lower_with(&mut b, &names, &types, g.ty(last.output), |loads| {
            let anchor_value = elementwise::apply(&anchor.op, &anchor_types, loads[..anchor.inputs.len()].to_vec())?;
            let leaf = |v: ValueId, _: &[usize]| {
                if v == anchor.output {
                    return anchor_value.clone();
                }
                let k = params.iter().position(|&p| p == v).expect("every outside value is a parameter");
                loads[k].clone()
            };
            fuse::value_expr(g, group, last.output, &leaf)
        })
        .map_err(err)?;
        b.f
    };
    if cfg!(debug_assertions) {
        ir::loops::verify::verify(&func).map_err(|e| err(format!("the fused program does not verify: {e}")))?;
    }
    let mut args = match group.prologue {
        Some(p) => g.nodes[p].inputs.iter().chain(&anchor.inputs[1..]).copied().collect(),
        None => anchor.inputs.clone(),
    };
    args.extend(externals);
    args.push(last.output);
    let nodes = group.prologue.iter().chain(&group.nodes).map(|&i| ir::NodeId(i as u32)).collect();
    Ok(Program { func, args, nodes })
}

/// Lowers one node (Ok(None) for a reshape, which is an alias).
pub fn lower_node(g: &Graph, node: &Node) -> Result<Option<Func>, PassError> {
    let err = |message: String| PassError::Lowering {
        node: node.name.clone().unwrap_or_else(|| node.output.to_string()),
        op: node.op.name().to_string(),
        message,
    };
    let defined = |v: ValueId| v.index() < g.values.len();
    if !node.inputs.iter().copied().all(defined) || !defined(node.output) {
        return Err(err("the node refers to an undefined value".into()));
    }
    let ins: Vec<&TensorType> = node.inputs.iter().map(|&v| g.ty(v)).collect();
    let out = g.ty(node.output);
    // The shape rule is what every lowering below relies on (ranks, operand count, extents).
    let expected = node.op.infer(&ins).map_err(|e| err(e.to_string()))?;
    if expected != *out {
        return Err(err(format!("the result is declared {out} but the operands give {expected}")));
    }
    if matches!(node.op, Op::Reshape { .. }) {
        return Ok(None);
    }
    if ins.iter().any(|t| t.dtype == DType::F16) || out.dtype == DType::F16 {
        return Err(err("f16 tensors are lowered from the graph's f32 view (lower_graph)".into()));
    }
    let mut b = Builder::new(format!("{}_{}", node.op.name(), node.output.0));
    let lowered = match &node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Clip { .. } | Op::Where | Op::Cast { .. } | Op::Expand { .. } => {
            elementwise::lower(&mut b, &node.op, &ins, out)
        }
        Op::Conv2d { .. } | Op::Conv2dNchwc { .. } | Op::MatMul | Op::Pool2d { .. } => {
            let weight_is_constant = node.inputs.get(1).is_some_and(|&w| g.const_data(w).is_some());
            nn::lower(&mut b, &node.op, &ins, out, weight_is_constant)
        }
        Op::Reduce { .. } | Op::ArgReduce { .. } => reduce::lower(&mut b, &node.op, &ins, out),
        Op::Transpose { .. } | Op::Concat { .. } | Op::Slice { .. } | Op::Pad { .. } | Op::Gather { .. } | Op::ToNchwc { .. } | Op::FromNchwc { .. } => {
            movement::lower(&mut b, &node.op, &ins, out)
        }
        Op::Reshape { .. } => unreachable!("handled above"),
        Op::Fused(_) => Err("a fused node is lowered as a whole (lower_graph)".to_string()),
    };
    lowered.map_err(err)?;
    let f = b.f;
    if cfg!(debug_assertions) {
        ir::loops::verify::verify(&f).map_err(|e| err(format!("the lowered program does not verify: {e}")))?;
    }
    Ok(Some(f))
}

/// A function under construction, with the extent of every loop variable so that index
/// expressions can be bounded (and needless clamps left out).
pub(crate) struct Builder {
    pub f: Func,
    extents: Vec<i64>,
}

impl Builder {
    fn new(name: String) -> Builder {
        Builder { f: Func::new(name), extents: Vec::new() }
    }

    pub fn param(&mut self, name: &str, ty: &TensorType) -> BufId {
        self.f.add_buffer(name, ty.dtype, ty.shape.clone(), BufKind::Param)
    }

    pub fn temp(&mut self, name: &str, dtype: DType, shape: Vec<usize>) -> BufId {
        self.f.add_buffer(name, dtype, shape, BufKind::Temp)
    }

    /// A new loop variable running over `0..extent`.
    pub fn var(&mut self, name: &str, extent: usize) -> VarId {
        let v = self.f.add_var(name);
        self.extents.push(extent as i64);
        debug_assert_eq!(self.extents.len(), self.f.vars.len());
        v
    }

    /// One variable per extent, named by `name(axis)`.
    pub fn vars(&mut self, shape: &[usize], name: impl Fn(usize) -> String) -> Vec<VarId> {
        shape.iter().enumerate().map(|(a, &d)| self.var(&name(a), d)).collect()
    }

    /// `body` inside serial loops over `vars`, outermost first. A zero extent runs nothing.
    pub fn nest(&self, vars: &[VarId], body: Vec<Stmt>) -> Vec<Stmt> {
        if vars.iter().any(|v| self.extents[v.index()] < 1) {
            return Vec::new();
        }
        vars.iter()
            .rev()
            .fold(body, |body, &var| vec![Stmt::For(Loop { var, extent: self.extents[var.index()], kind: LoopKind::Serial, body })])
    }

    pub fn push(&mut self, stmts: Vec<Stmt>) {
        self.f.body.extend(stmts);
    }

    /// The inclusive range of an integer index expression, as the verifier computes it (None
    /// where it cannot, or where the bounds would overflow).
    pub fn range(&self, e: &Expr) -> Option<(i64, i64)> {
        Some(match e {
            Expr::Int(v) => (*v, *v),
            Expr::Var(v) => (0, self.extents.get(v.index())? - 1),
            Expr::Binary { op, a, b } => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                match op {
                    BinOp::Add => (a.0.checked_add(b.0)?, a.1.checked_add(b.1)?),
                    BinOp::Sub => (a.0.checked_sub(b.1)?, a.1.checked_sub(b.0)?),
                    BinOp::Mul => {
                        let p = [a.0.checked_mul(b.0)?, a.0.checked_mul(b.1)?, a.1.checked_mul(b.0)?, a.1.checked_mul(b.1)?];
                        (*p.iter().min()?, *p.iter().max()?)
                    }
                    BinOp::Div if b.0 > 0 => (a.0.div_euclid(b.1).min(a.0.div_euclid(b.0)), a.1.div_euclid(b.0).max(a.1.div_euclid(b.1))),
                    BinOp::Min => (a.0.min(b.0), a.1.min(b.1)),
                    BinOp::Max => (a.0.max(b.0), a.1.max(b.1)),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// max(e, lo), left out where `e` never goes below `lo`.
    pub fn at_least(&self, e: Expr, lo: i64) -> Expr {
        match self.range(&e) {
            Some((a, _)) if a >= lo => e,
            Some((_, b)) if b <= lo => int(lo),
            _ => Expr::bin(BinOp::Max, e, int(lo)),
        }
    }

    /// min(e, hi), left out where `e` never goes above `hi`.
    pub fn at_most(&self, e: Expr, hi: i64) -> Expr {
        match self.range(&e) {
            Some((_, b)) if b <= hi => e,
            Some((a, _)) if a >= hi => int(hi),
            _ => Expr::bin(BinOp::Min, e, int(hi)),
        }
    }

    /// `e` clamped into `0..n`, so that a load with it stays inside an axis of extent `n`.
    pub fn clamp(&self, e: Expr, n: usize) -> Expr {
        let e = self.at_least(e, 0);
        self.at_most(e, n as i64 - 1)
    }

    /// The conditions under which `e` lies in `0..n`, leaving out those that always hold.
    pub fn in_bounds(&self, e: &Expr, n: usize, conds: &mut Vec<Expr>) {
        let r = self.range(e);
        if r.is_none_or(|(lo, _)| lo < 0) {
            conds.push(Expr::bin(BinOp::Ge, e.clone(), int(0)));
        }
        if r.is_none_or(|(_, hi)| hi >= n as i64) {
            conds.push(Expr::bin(BinOp::Lt, e.clone(), int(n as i64)));
        }
    }
}

/// Loop variables named `i0`, `i1`, ... after the axes they run over.
pub(crate) fn axis_name(a: usize) -> String {
    format!("i{a}")
}

pub(crate) fn vars_expr(vars: &[VarId]) -> Vec<Expr> {
    vars.iter().map(|&v| Expr::Var(v)).collect()
}

/// The index into an operand of shape `shape` of the output element at `vars` under numpy
/// broadcasting: axes align on the right, and an axis of extent 1 always reads element 0.
pub(crate) fn broadcast_index(vars: &[VarId], shape: &[usize]) -> Vec<Expr> {
    let lead = vars.len() - shape.len();
    shape.iter().enumerate().map(|(a, &d)| if d == 1 { int(0) } else { Expr::Var(vars[lead + a]) }).collect()
}

pub(crate) fn store(buf: BufId, index: Vec<Expr>, value: Expr) -> Stmt {
    Stmt::Store { buf, index, value }
}

/// A constant of `dtype` with value `v` (the way a pad value or an init converts).
pub(crate) fn constant(dtype: DType, v: f32) -> Expr {
    match dtype {
        DType::I64 => Expr::Int(v as i64),
        DType::Bool => Expr::Bool(v != 0.0),
        _ => Expr::Float(v),
    }
}

pub(crate) fn int(v: i64) -> Expr {
    Expr::Int(v)
}

/// Index arithmetic with the constant folding that keeps printed programs readable.
pub(crate) fn add(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (Expr::Int(x), Expr::Int(y)) => int(x + y),
        (e, Expr::Int(0)) | (Expr::Int(0), e) => e,
        (e, Expr::Int(y)) if y < 0 => Expr::bin(BinOp::Sub, e, int(-y)),
        (a, b) => Expr::bin(BinOp::Add, a, b),
    }
}

pub(crate) fn sub(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (Expr::Int(x), Expr::Int(y)) => int(x - y),
        (e, Expr::Int(0)) => e,
        (e, Expr::Int(y)) if y < 0 => Expr::bin(BinOp::Add, e, int(-y)),
        (a, b) => Expr::bin(BinOp::Sub, a, b),
    }
}

pub(crate) fn mul(a: Expr, b: Expr) -> Expr {
    match (a, b) {
        (Expr::Int(x), Expr::Int(y)) => int(x * y),
        (Expr::Int(0), _) | (_, Expr::Int(0)) => int(0),
        (e, Expr::Int(1)) | (Expr::Int(1), e) => e,
        (a, b) => Expr::bin(BinOp::Mul, a, b),
    }
}

/// Floor division by a positive constant.
pub(crate) fn div(a: Expr, d: i64) -> Expr {
    match a {
        Expr::Int(x) => int(x.div_euclid(d)),
        e if d == 1 => e,
        e => Expr::bin(BinOp::Div, e, int(d)),
    }
}

/// The conjunction of `conds`, or None when there are none.
pub(crate) fn all(conds: Vec<Expr>) -> Option<Expr> {
    conds.into_iter().reduce(|a, b| Expr::bin(BinOp::And, a, b))
}

//! The reference interpreter: evaluates graph IR ops directly on tensors, written for
//! clarity first, as the oracle every other backend is tested against.

mod check;
mod conv;
mod elem;
mod elementwise;
mod erf;
mod error;
mod linalg;
pub mod loops;
mod movement;
mod reduce;
mod strided;

use ir::graph::Weight;
use ir::{DType, Graph, Node, Op, Tensor, TensorType, ValueDef, ValueId};

pub use error::InterpError;

/// Evaluates one op on tensors. `out` is the result type from `Op::infer` (callers have it).
///
/// The operands are checked against the op's shape rule first, and `out` against its
/// result; any disagreement is an error, never a panic.
pub fn eval_op(op: &Op, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, InterpError> {
    if out.dtype == DType::F16 || inputs.iter().any(|t| t.dtype() == DType::F16) {
        return eval_in_f32(op, inputs, out);
    }
    for t in inputs {
        check::check_tensor(t)?;
    }
    check::check_shape(&out.shape)?;
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let types: Vec<&TensorType> = types.iter().collect();
    check::check_attrs(op, &types)?;
    let expected = op.infer(&types)?;
    if expected != *out {
        return Err(InterpError::OutputMismatch {
            expected,
            got: out.clone(),
        });
    }
    check::check_allocatable(out)?;
    // The shape rule has checked the operand count, so indexing `inputs` is safe below.
    let x = inputs[0];
    match op {
        Op::Unary(u) => elementwise::unary(*u, x),
        Op::Binary(b) => elementwise::binary(*b, x, inputs[1], out),
        Op::Clip { min, max } => elementwise::clip(x, *min, *max),
        Op::Where => elementwise::select(x, inputs[1], inputs[2], out),
        Op::Cast { to } => elementwise::cast(x, *to),
        Op::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        } => conv::conv2d(
            x,
            inputs[1],
            inputs.get(2).copied(),
            *strides,
            *pads,
            *dilations,
            *groups,
            out,
        ),
        Op::MatMul => linalg::matmul(x, inputs[1], out),
        Op::Pool2d {
            kind,
            window,
            count_include_pad,
            ..
        } if x.shape.len() == 5 => {
            // NCHWc: pooled as NCHW, the layout is the same per channel.
            let (s, block) = (&x.shape, x.shape[4]);
            let plain = TensorType::new(x.dtype(), vec![s[0], s[1] * block, s[2], s[3]]);
            let pooled = TensorType::new(out.dtype, vec![out.shape[0], out.shape[1] * block, out.shape[2], out.shape[3]]);
            let y = conv::pool2d(&from_nchwc(x, block, &plain)?, *kind, window, *count_include_pad, &pooled)?;
            to_nchwc(&y, block, out)
        }
        Op::Pool2d {
            kind,
            window,
            count_include_pad,
            ..
        } => conv::pool2d(x, *kind, window, *count_include_pad, out),
        Op::Reduce { kind, axes, .. } => reduce::reduce(x, *kind, axes, out),
        Op::ArgReduce {
            max,
            axis,
            select_last,
            ..
        } => reduce::arg_reduce(x, *max, *axis, *select_last, out),
        Op::Reshape { .. } => movement::reshape(x, out),
        Op::Transpose { perm } => movement::transpose(x, perm, out),
        Op::Concat { axis } => movement::concat(inputs, *axis, out),
        Op::Slice { starts, steps, .. } => movement::slice(x, starts, steps, out),
        Op::Pad { pads, mode, value } => movement::pad(x, pads, *mode, *value, out),
        Op::Expand { .. } => movement::expand(x, out),
        Op::Gather { axis } => movement::gather(x, inputs[1], *axis, out),
        Op::Fused(f) => eval_fused(f, inputs),
        Op::ToNchwc { block } => to_nchwc(x, *block, out),
        Op::FromNchwc { block } => from_nchwc(x, *block, out),
        Op::Conv2dNchwc {
            strides,
            pads,
            dilations,
            groups,
            block,
        } => {
            // The plain convolution between the layout changes: one definition of the math.
            let unblocked = if x.shape.len() == 5 {
                let input_block = x.shape[4];
                let unblocked_ty = Op::FromNchwc { block: input_block }.infer(&[&x.ty()])?;
                from_nchwc(x, input_block, &unblocked_ty)?
            } else {
                x.clone()
            };
            let conv = Op::Conv2d {
                strides: *strides,
                pads: *pads,
                dilations: *dilations,
                groups: *groups,
            };
            let mut operands = vec![&unblocked];
            operands.extend(&inputs[1..]);
            let types: Vec<TensorType> = operands.iter().map(|t| t.ty()).collect();
            let types: Vec<&TensorType> = types.iter().collect();
            let y = eval_op(&conv, &operands, &conv.infer(&types)?)?;
            to_nchwc(&y, *block, out)
        }
    }
}

/// An op on f16 tensors computes in f32 and rounds its result to half, as compiled code that
/// stores f16 and computes in f32 does.
fn eval_in_f32(op: &Op, inputs: &[&Tensor], out: &TensorType) -> Result<Tensor, InterpError> {
    let wide: Vec<Tensor> = inputs.iter().map(|t| t.with_float_dtype(DType::F32)).collect();
    let wide: Vec<&Tensor> = wide.iter().collect();
    let op = match op {
        Op::Cast { to: DType::F16 } => Op::Cast { to: DType::F32 },
        other => other.clone(),
    };
    let narrow = out.dtype == DType::F16;
    let out32 = TensorType::new(if narrow { DType::F32 } else { out.dtype }, out.shape.clone());
    let y = eval_op(&op, &wide, &out32)?;
    Ok(if narrow { y.with_float_dtype(DType::F16) } else { y })
}

/// [N, C, H, W] viewed as [N, C/b, b, H, W], with the block axis moved last.
fn to_nchwc(x: &Tensor, block: usize, out: &TensorType) -> Result<Tensor, InterpError> {
    let s = &x.shape;
    let split = TensorType::new(x.dtype(), vec![s[0], s[1] / block, block, s[2], s[3]]);
    let split = movement::reshape(x, &split)?;
    movement::transpose(&split, &[0, 1, 3, 4, 2], out)
}

/// [N, C/b, H, W, b] with the block axis moved after the block index, viewed as [N, C, H, W].
fn from_nchwc(x: &Tensor, block: usize, out: &TensorType) -> Result<Tensor, InterpError> {
    let s = &x.shape;
    let moved = TensorType::new(x.dtype(), vec![s[0], s[1], block, s[2], s[3]]);
    let moved = movement::transpose(x, &[0, 1, 4, 2, 3], &moved)?;
    movement::reshape(&moved, out)
}

/// A fused op computes its steps in order; each step checks its own operands.
fn eval_fused(f: &ir::Fused, inputs: &[&Tensor]) -> Result<Tensor, InterpError> {
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let types: Vec<&TensorType> = types.iter().collect();
    let step_types = f.step_types(&types)?;
    let mut results: Vec<Tensor> = Vec::with_capacity(f.steps.len());
    for (step, ty) in f.steps.iter().zip(&step_types) {
        let operands: Vec<&Tensor> = step
            .operands
            .iter()
            .map(|r| match *r {
                ir::FusedRef::Input(k) => inputs[k],
                ir::FusedRef::Step(j) => &results[j],
            })
            .collect();
        let t = eval_op(&step.op, &operands, ty)?;
        results.push(t);
    }
    Ok(results.pop().expect("a fused op has steps"))
}

/// Runs a whole graph: `inputs` in the order of `g.inputs`; returns the values of
/// `g.outputs`. Only nodes the outputs depend on run, and each intermediate tensor is
/// dropped after its last use.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    if inputs.len() != g.inputs.len() {
        return Err(InterpError::InputCount {
            expected: g.inputs.len(),
            got: inputs.len(),
        });
    }
    for (&v, t) in g.inputs.iter().zip(inputs) {
        let expected = &value_info(g, v)?.ty;
        check::check_tensor(t)?;
        if t.ty() != *expected {
            return Err(InterpError::InputMismatch {
                name: label(g, v),
                expected: expected.clone(),
                got: t.ty(),
            });
        }
    }

    // Walking the nodes backwards from the outputs finds the nodes needed and, for each
    // value, the last node that reads it (usize::MAX: an output, kept to the end).
    let mut last_use: Vec<Option<usize>> = vec![None; g.values.len()];
    for &v in &g.outputs {
        value_info(g, v)?;
        last_use[v.index()] = Some(usize::MAX);
    }
    let mut needed = vec![false; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        value_info(g, node.output)?;
        if last_use[node.output.index()].is_none() {
            continue;
        }
        needed[i] = true;
        for &v in &node.inputs {
            value_info(g, v)?;
            last_use[v.index()].get_or_insert(i);
        }
    }

    let mut results: Vec<Option<Tensor>> = vec![None; g.values.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        let y = {
            let args = node
                .inputs
                .iter()
                .map(|&v| lookup(g, inputs, &results, v))
                .collect::<Result<Vec<_>, _>>()?;
            eval_op(&node.op, &args, &g.values[node.output.index()].ty).map_err(|e| {
                InterpError::Node {
                    node: node_label(node),
                    op: node.op.name().to_string(),
                    source: Box::new(e),
                }
            })?
        };
        results[node.output.index()] = Some(y);
        for &v in &node.inputs {
            if last_use[v.index()] == Some(i) {
                results[v.index()] = None;
            }
        }
    }

    // Node results are moved out at their last mention among the outputs; anything else is
    // copied.
    let mut outs = Vec::with_capacity(g.outputs.len());
    for (k, &v) in g.outputs.iter().enumerate() {
        let owned = matches!(g.values[v.index()].def, ValueDef::Node(_))
            && !g.outputs[k + 1..].contains(&v);
        let t = if owned {
            results[v.index()].take()
        } else {
            None
        };
        outs.push(match t {
            Some(t) => t,
            None => lookup(g, inputs, &results, v)?.clone(),
        });
    }
    Ok(outs)
}

fn value_info(g: &Graph, v: ValueId) -> Result<&ir::ValueInfo, InterpError> {
    g.values
        .get(v.index())
        .ok_or_else(|| InterpError::Invalid(format!("value {v} is not defined")))
}

/// A value's source name, or its id (`%N`).
fn label(g: &Graph, v: ValueId) -> String {
    g.values
        .get(v.index())
        .and_then(|info| info.name.clone())
        .unwrap_or_else(|| v.to_string())
}

/// A node's source name, or the id of its result (`%N`).
fn node_label(node: &Node) -> String {
    node.name.clone().unwrap_or_else(|| node.output.to_string())
}

/// The tensor of value `v`: a graph input, a constant's data, or a node result computed
/// earlier.
fn lookup<'a>(
    g: &'a Graph,
    inputs: &'a [Tensor],
    results: &'a [Option<Tensor>],
    v: ValueId,
) -> Result<&'a Tensor, InterpError> {
    let info = value_info(g, v)?;
    let invalid = |what: &str| InterpError::Invalid(format!("value {v} {what}"));
    match &info.def {
        ValueDef::Input(pos) => inputs
            .get(*pos)
            .ok_or_else(|| invalid("refers to a missing input")),
        ValueDef::Const(w) => match g.weights.get(w.index()) {
            Some(Weight { data: Some(t) }) => {
                check::check_tensor(t)?;
                if t.ty() != info.ty {
                    return Err(invalid(&format!(
                        "is declared {} but its data is {}",
                        info.ty,
                        t.ty()
                    )));
                }
                Ok(t)
            }
            Some(Weight { data: None }) => Err(InterpError::MissingWeight(label(g, v))),
            None => Err(invalid("refers to a missing weight")),
        },
        ValueDef::Node(_) => results[v.index()]
            .as_ref()
            .ok_or_else(|| invalid("is used before it is computed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::graph::{BinaryOp, PoolKind, UnaryOp, Window};
    use ir::DType;

    fn f32s(t: &Tensor) -> &[f32] {
        t.as_f32().unwrap()
    }

    /// relu(x * w + b) and x itself, with x: f32[2], w and b constants.
    fn tiny() -> Graph {
        let mut g = Graph::new("tiny");
        let x = g.add_input("input", TensorType::new(DType::F32, [2]));
        let w = g.add_const(Some("w".into()), Tensor::f32([2], vec![2.0, -3.0]).unwrap());
        let b = g.add_const(None, Tensor::scalar_f32(1.0));
        let m = g
            .add_node(Op::Binary(BinaryOp::Mul), vec![x, w], Some("mul".into()))
            .unwrap();
        let a = g
            .add_node(Op::Binary(BinaryOp::Add), vec![m, b], None)
            .unwrap();
        let r = g
            .add_node(Op::Unary(UnaryOp::Relu), vec![a], Some("relu".into()))
            .unwrap();
        // A dead node: never evaluated.
        g.add_node(Op::Unary(UnaryOp::Exp), vec![m], None).unwrap();
        g.outputs = vec![r, x, m, r];
        g
    }

    #[test]
    fn runs_a_tiny_graph() {
        let outs = run(&tiny(), &[Tensor::f32([2], vec![1.5, 2.0]).unwrap()]).unwrap();
        assert_eq!(outs.len(), 4);
        assert_eq!(f32s(&outs[0]), [4.0, 0.0]);
        assert_eq!(f32s(&outs[1]), [1.5, 2.0]);
        assert_eq!(f32s(&outs[2]), [3.0, -6.0]);
        assert_eq!(f32s(&outs[3]), [4.0, 0.0]);
    }

    #[test]
    fn input_mismatch() {
        let err = run(&tiny(), &[Tensor::f32([3], vec![0.0; 3]).unwrap()]).unwrap_err();
        assert_eq!(
            err,
            InterpError::InputMismatch {
                name: "input".into(),
                expected: TensorType::new(DType::F32, [2]),
                got: TensorType::new(DType::F32, [3]),
            }
        );
        assert_eq!(
            err.to_string(),
            "input \"input\": expected f32[2], got f32[3]"
        );
        let err = run(&tiny(), &[]).unwrap_err();
        assert_eq!(
            err,
            InterpError::InputCount {
                expected: 1,
                got: 0
            }
        );
    }

    #[test]
    fn missing_weight() {
        let mut g = Graph::new("ext");
        let x = g.add_input("x", TensorType::new(DType::F32, [2]));
        let w = g.add_weight(None, TensorType::new(DType::F32, [2]), None);
        g.outputs = vec![g
            .add_node(Op::Binary(BinaryOp::Add), vec![x, w], None)
            .unwrap()];
        let err = run(&g, &[Tensor::f32([2], vec![1.0, 2.0]).unwrap()]).unwrap_err();
        assert_eq!(err, InterpError::MissingWeight("%1".into()));
        assert_eq!(err.to_string(), "weight %1 has no data");
    }

    #[test]
    fn node_errors_carry_the_node() {
        let mut g = Graph::new("div");
        let x = g.add_input("x", TensorType::new(DType::I64, [1]));
        let z = g.add_const(None, Tensor::i64([1], vec![0]).unwrap());
        let named = g
            .add_node(Op::Binary(BinaryOp::Div), vec![x, z], Some("divide".into()))
            .unwrap();
        let anon = g
            .add_node(Op::Binary(BinaryOp::Div), vec![x, z], None)
            .unwrap();
        let one = Tensor::i64([1], vec![1]).unwrap();
        g.outputs = vec![named];
        let err = run(&g, std::slice::from_ref(&one)).unwrap_err();
        let want = |node: &str| InterpError::Node {
            node: node.into(),
            op: "div".into(),
            source: Box::new(InterpError::DivisionByZero),
        };
        assert_eq!(err, want("divide"));
        assert_eq!(
            err.to_string(),
            "node divide (div): integer division by zero"
        );
        g.outputs = vec![anon];
        assert_eq!(run(&g, &[one]).unwrap_err(), want("%3"));
    }

    #[test]
    fn eval_op_checks_its_operands() {
        let x = Tensor::f32([2], vec![1.0, 2.0]).unwrap();
        let relu = Op::Unary(UnaryOp::Relu);
        let wrong = TensorType::new(DType::F32, [3]);
        let err = eval_op(&relu, &[&x], &wrong).unwrap_err();
        assert_eq!(
            err,
            InterpError::OutputMismatch {
                expected: x.ty(),
                got: wrong
            }
        );
        assert!(matches!(
            eval_op(&relu, &[], &x.ty()),
            Err(InterpError::Shape(_))
        ));
        let bad = Tensor {
            shape: vec![3],
            data: ir::TensorData::F32(vec![1.0]),
        };
        let err = eval_op(&relu, &[&bad], &bad.ty()).unwrap_err();
        assert_eq!(
            err,
            InterpError::MalformedTensor {
                shape: vec![3],
                len: 1
            }
        );
        // A zero-extent kernel would underflow in the shape rule; it is an error instead.
        let window = Window {
            kernel: [0, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
        };
        let pool = Op::Pool2d {
            kind: PoolKind::Max,
            window,
            ceil_mode: false,
            count_include_pad: false,
        };
        let img = Tensor::f32([1, 1, 1, 1], vec![1.0]).unwrap();
        assert!(matches!(
            eval_op(&pool, &[&img], &img.ty()),
            Err(InterpError::Invalid(_))
        ));
        let huge = Op::Reshape {
            shape: vec![usize::MAX, 2],
        };
        assert!(matches!(
            eval_op(&huge, &[&x], &x.ty()),
            Err(InterpError::Invalid(_))
        ));
        // A conv whose weight's dtype differs from the input's is refused by the shape rule.
        let conv = Op::Conv2d {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            groups: 1,
        };
        let w = Tensor::i64([1, 1, 1, 1], vec![1]).unwrap();
        let err = eval_op(&conv, &[&img, &w], &img.ty()).unwrap_err();
        assert!(matches!(&err, InterpError::Shape(e) if e.to_string().contains("do not fit")), "{err}");
    }
}

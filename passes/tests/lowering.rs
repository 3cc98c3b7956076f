//! Lowering checked against the reference interpreter: every node's lowered program, run by
//! the loop IR evaluator on the node's operands, reproduces `interp::eval_op`; every program
//! verifies and its text round-trips. Covers each op kind, the ONNX node-test cases chanasc
//! claims, and the fixture models.

use std::path::{Path, PathBuf};

use ir::graph::{BinaryOp, PadMode, PoolKind, ReduceKind, UnaryOp, Window};
use ir::loops::{parse_func, print_func, Func};
use ir::{DType, Graph, Op, Tensor, TensorData, TensorType, ValueDef, ValueId};
use passes::lower::{lower_graph, lower_node, Step};

// ---------------------------------------------------------------------------------------
// Harness: evaluate a graph node by node, lower it, run each program, compare.

/// Every value of `g`: inputs from `inputs`, constants' data, and each node evaluated by the
/// interpreter (None where a node cannot be evaluated, with the reason).
fn eval_all(g: &Graph, inputs: &[Tensor]) -> Vec<Result<Tensor, String>> {
    let mut vals: Vec<Result<Tensor, String>> = vec![Err("not computed".into()); g.values.len()];
    for (i, info) in g.values.iter().enumerate() {
        match &info.def {
            ValueDef::Input(pos) => vals[i] = inputs.get(*pos).cloned().ok_or("missing input".into()),
            ValueDef::Const(_) => vals[i] = g.const_data(ValueId(i as u32)).cloned().ok_or("no data".into()),
            ValueDef::Node(_) => {}
        }
    }
    for node in &g.nodes {
        let args: Result<Vec<&Tensor>, String> =
            node.inputs.iter().map(|v| vals[v.index()].as_ref().map_err(|e| format!("operand {v}: {e}"))).collect();
        let y = args.and_then(|a| interp::eval_op(&node.op, &a, g.ty(node.output)).map_err(|e| e.to_string()));
        vals[node.output.index()] = y;
    }
    vals
}

/// Checks `got` against `want`: same shape; f32 within `tol` of max|want| (NaN where NaN);
/// other dtypes exactly.
fn compare(got: &Tensor, want: &Tensor, tol: f64) -> Result<(), String> {
    if got.shape != want.shape {
        return Err(format!("shape {:?}, expected {:?}", got.shape, want.shape));
    }
    match (&got.data, &want.data) {
        (TensorData::F32(a), TensorData::F32(b)) => {
            let scale = b.iter().filter(|x| x.is_finite()).fold(0f64, |m, &x| m.max((x as f64).abs())).max(1e-30);
            for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                let same = x == y || (x.is_nan() && y.is_nan());
                if !same && (!x.is_finite() || !y.is_finite() || (x as f64 - y as f64).abs() / scale > tol) {
                    return Err(format!("element {i}: got {x}, expected {y} (scale {scale:e})"));
                }
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => {
            let i = (0..a.len()).find(|&i| elem(a, i) != elem(b, i)).unwrap_or(0);
            Err(format!("element {i}: got {}, expected {}", elem(a, i), elem(b, i)))
        }
    }
}

fn elem(d: &TensorData, i: usize) -> String {
    match d {
        TensorData::F32(v) => format!("{:?}", v.get(i)),
        TensorData::F16(v) => format!("{:?}", v.get(i)),
        TensorData::I64(v) => format!("{:?}", v.get(i)),
        TensorData::Bool(v) => format!("{:?}", v.get(i)),
    }
}

/// An output buffer whose every element differs from `want`, so an element the program
/// fails to write shows.
fn poisoned(want: &Tensor) -> Tensor {
    let data = match &want.data {
        TensorData::F32(v) => TensorData::F32(v.iter().map(|&x| if x.is_nan() { 7.0 } else { f32::NAN }).collect()),
        TensorData::F16(v) => TensorData::F16(v.iter().map(|&x| if x.is_nan() { ir::f16::from_f32(7.0) } else { ir::f16::NAN }).collect()),
        TensorData::I64(v) => TensorData::I64(v.iter().map(|&x| x.wrapping_add(1)).collect()),
        TensorData::Bool(v) => TensorData::Bool(v.iter().map(|&x| !x).collect()),
    };
    Tensor { shape: want.shape.clone(), data }
}

/// The program's text parses back (verifying it) and prints the same.
fn round_trip(f: &Func) -> Result<(), String> {
    ir::loops::verify::verify(f).map_err(|e| format!("does not verify: {e}"))?;
    let text = print_func(f);
    let back = parse_func(&text).map_err(|e| format!("printed program does not parse: {e}\n{text}"))?;
    if print_func(&back) != text {
        return Err(format!("printed program does not round-trip:\n{text}"));
    }
    Ok(())
}

/// Runs a program on the interpreter's values of its operands, writing into `out` (which
/// holds what earlier programs wrote to the same value: a folded pad's interior).
fn run_program(f: &Func, args: &[ValueId], vals: &[Result<Tensor, String>], out: Tensor) -> Result<Tensor, String> {
    round_trip(f)?;
    let ins = &args[..args.len() - 1];
    let mut tensors = ins
        .iter()
        .map(|v| vals[v.index()].clone().map_err(|e| format!("operand {v}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    tensors.push(out);
    interp::loops::run_func(f, &mut tensors).map_err(|e| format!("run_func: {e}"))?;
    Ok(tensors.pop().expect("the output was pushed"))
}

/// Lowers `g` and checks every program (or those whose result's node `pick` selects; a fused
/// program is checked as a whole, against the interpreter's value of its last node; programs
/// that write parts of one value, as a folded pad and its producer do, are checked together)
/// and every alias; returns the number of programs run.
fn check_graph(g: &Graph, inputs: &[Tensor], tol: f64, pick: &dyn Fn(&ir::Node) -> bool) -> Result<usize, String> {
    let vals = eval_all(g, inputs);
    let steps = lower_graph(g).map_err(|e| e.to_string())?;
    let mut ran = 0;
    let mut written: std::collections::BTreeMap<ValueId, (Tensor, String)> = Default::default();
    for step in &steps {
        match step {
            Step::Run(p) | Step::Once(p) => {
                let out = *p.args.last().ok_or("a program without args")?;
                let node = g.producer(out).ok_or("a program computes a node's value")?;
                let what = format!("node {} ({})", node.output, p.func.name);
                if p.func.params().len() != p.args.len() {
                    return Err(format!("{what}: args do not match the params"));
                }
                if !p.nodes.iter().any(|&n| pick(g.node(n))) {
                    continue;
                }
                let want = vals[out.index()].as_ref().map_err(|e| format!("reference: {e}"))?;
                let before = written.remove(&out).map(|w| w.0).unwrap_or_else(|| poisoned(want));
                let got = run_program(&p.func, &p.args, &vals, before).map_err(|e| format!("{what}: {e}"))?;
                written.insert(out, (got, what));
                ran += 1;
            }
            Step::StageInput { input, into, pads } => {
                // The input's rows land in the padded tensor's interior.
                let x = vals[input.index()].as_ref().map_err(|e| format!("reference: {e}"))?;
                let want = vals[into.index()].as_ref().map_err(|e| format!("reference: {e}"))?;
                let mut padded = written.remove(into).map(|w| w.0).unwrap_or_else(|| poisoned(want));
                let (xs, ps) = (&x.shape, &padded.shape.clone());
                if let (Some(src), ir::TensorData::F32(dst)) = (x.as_f32(), &mut padded.data) {
                    for r in 0..xs[0] * xs[1] * xs[2] {
                        let (nc, h) = (r / xs[2], r % xs[2]);
                        let at = (nc * ps[2] + h + pads[2]) * ps[3] + pads[3];
                        dst[at..at + xs[3]].copy_from_slice(&src[r * xs[3]..(r + 1) * xs[3]]);
                    }
                }
                written.insert(*into, (padded, format!("staged input {input}")));
            }
            Step::Alias { from, to } => {
                let same = match (&vals[from.index()], &vals[to.index()]) {
                    (Ok(a), Ok(b)) => a.data == b.data,
                    _ => false,
                };
                let node = g.producer(*to).ok_or("an alias of a node's value")?;
                if !same || !matches!(node.op, Op::Reshape { .. }) {
                    return Err(format!("node {} ({}): bad alias", node.output, node.op.name()));
                }
            }
        }
    }
    for (v, (got, what)) in &written {
        let want = vals[v.index()].as_ref().map_err(|e| format!("reference: {e}"))?;
        compare(got, want, tol).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(ran)
}

// ---------------------------------------------------------------------------------------
// Per-op tests on small graphs.

/// Deterministic pseudo-random data (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Multiples of 1/8 in [-4, 4), with ties for the arg-reductions and exact halves for
    /// rounding.
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| (self.next() % 64) as f32 / 8.0 - 4.0).collect()
    }

    fn tensor(&mut self, dtype: DType, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        let data = match dtype {
            DType::F32 => TensorData::F32(self.f32s(n)),
            DType::I64 => TensorData::I64((0..n).map(|_| (self.next() % 19) as i64 - 9).collect()),
            _ => TensorData::Bool((0..n).map(|_| self.next() & 1 == 0).collect()),
        };
        Tensor::new(shape, data).unwrap()
    }
}

const TOL: f64 = 1e-6;

/// A graph of one node of `op` over `operands` (constants where `is_const` says so), checked.
fn check_with(op: Op, operands: Vec<Tensor>, is_const: &[bool]) {
    let mut g = Graph::new("t");
    let mut inputs = Vec::new();
    let mut ids = Vec::new();
    for (i, t) in operands.into_iter().enumerate() {
        if is_const.get(i).copied().unwrap_or(false) {
            ids.push(g.add_const(Some(format!("c{i}")), t));
        } else {
            ids.push(g.add_input(format!("in{i}"), t.ty()));
            inputs.push(t);
        }
    }
    let what = format!("{op:?}");
    let y = g.add_node(op, ids, None).unwrap_or_else(|e| panic!("{what}: {e}"));
    g.outputs = vec![y];
    let ran = check_graph(&g, &inputs, TOL, &|_| true).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(ran <= 1);
}

fn check(op: Op, operands: Vec<Tensor>) {
    check_with(op, operands, &[]);
}

fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::f32(shape, v.to_vec()).unwrap()
}

fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::i64(shape, v.to_vec()).unwrap()
}

#[test]
fn unary_ops() {
    let mut r = Rng(1);
    let specials = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.0, -0.0, 3.7, -3.7, 1e-3, 20.0];
    let mut x = specials.to_vec();
    x.extend(r.f32s(24));
    let x = f32t(&[3, 12], &x);
    use UnaryOp::*;
    for u in [Relu, Sigmoid, Tanh, Exp, Log, Neg, Abs, Sqrt, Reciprocal, Floor, Ceil, Round, Sin, Cos, Erf, Sign] {
        check(Op::Unary(u), vec![x.clone()]);
    }
    let i = i64t(&[5], &[-4, 0, 7, i64::MIN, i64::MAX]);
    for u in [Neg, Abs, Sign] {
        check(Op::Unary(u), vec![i.clone()]);
    }
    check(Op::Unary(Not), vec![r.tensor(DType::Bool, &[2, 3])]);
}

#[test]
fn binary_ops_broadcast() {
    let mut r = Rng(2);
    use BinaryOp::*;
    let shapes: [(&[usize], &[usize]); 4] =
        [(&[2, 1, 3], &[4, 1]), (&[3], &[2, 3]), (&[], &[2, 2]), (&[2, 3], &[2, 3])];
    for (sa, sb) in shapes {
        for op in [Add, Sub, Mul, Div, Pow, Max, Min, Equal, Less, Greater, LessEqual, GreaterEqual] {
            let (mut a, b) = (r.tensor(DType::F32, sa), r.tensor(DType::F32, sb));
            if op == Pow {
                // Non-negative bases keep fractional powers real.
                a = Tensor::f32(sa, a.as_f32().unwrap().iter().map(|x| x.abs()).collect()).unwrap();
            }
            check(Op::Binary(op), vec![a, b]);
        }
        for op in [Add, Sub, Mul, Max, Min, Equal, Less, Greater, LessEqual, GreaterEqual] {
            check(Op::Binary(op), vec![r.tensor(DType::I64, sa), r.tensor(DType::I64, sb)]);
        }
        for op in [And, Or, Xor] {
            check(Op::Binary(op), vec![r.tensor(DType::Bool, sa), r.tensor(DType::Bool, sb)]);
        }
    }
}

#[test]
fn integer_division_and_power() {
    // Truncation toward zero on every sign combination, exact and inexact.
    let a = i64t(&[10], &[7, -7, 7, -7, 6, -6, 0, 1, -1, i64::MIN]);
    let b = i64t(&[10], &[2, 2, -2, -2, 3, -3, 5, -5, 5, -1]);
    check(Op::Binary(BinaryOp::Div), vec![a, b]);
    let a = i64t(&[2, 1], &[-9, 9]);
    check(Op::Binary(BinaryOp::Div), vec![a, i64t(&[4], &[4, -4, 9, -10])]);
    let base = i64t(&[6], &[3, -2, 5, 1, -1, 2]);
    let exp = i64t(&[6], &[4, 3, -1, -7, -3, 20]);
    check(Op::Binary(BinaryOp::Pow), vec![base, exp]);
}

#[test]
fn clip_where_cast() {
    let mut r = Rng(3);
    let x = r.tensor(DType::F32, &[3, 4]);
    for (lo, hi) in [(-1.0, 1.5), (0.0, f32::INFINITY), (f32::NEG_INFINITY, 0.25), (f32::NEG_INFINITY, f32::INFINITY)] {
        check(Op::Clip { min: lo, max: hi }, vec![x.clone()]);
        check(Op::Clip { min: lo, max: hi }, vec![r.tensor(DType::I64, &[7])]);
    }
    for dt in [DType::F32, DType::I64, DType::Bool] {
        let (c, a, b) = (r.tensor(DType::Bool, &[2, 1, 3]), r.tensor(dt, &[4, 1]), r.tensor(dt, &[3]));
        check(Op::Where, vec![c, a, b]);
    }
    let mut fx = r.f32s(6);
    fx.extend([2.9, -2.9, 1e20, -1e20, f32::NAN, 0.0]);
    let sources = [f32t(&[12], &fx), r.tensor(DType::I64, &[5]), r.tensor(DType::Bool, &[5])];
    for x in &sources {
        for to in [DType::F32, DType::I64, DType::Bool] {
            check(Op::Cast { to }, vec![x.clone()]);
        }
    }
}

fn conv(strides: [usize; 2], pads: [usize; 4], dilations: [usize; 2], groups: usize) -> Op {
    Op::Conv2d { strides, pads, dilations, groups }
}

#[test]
fn conv2d_variants() {
    let mut r = Rng(4);
    // (x shape, weight shape, strides, pads, dilations, groups, bias)
    #[allow(clippy::type_complexity)]
    let cases: &[([usize; 4], [usize; 4], [usize; 2], [usize; 4], [usize; 2], usize, bool)] = &[
        ([1, 3, 6, 6], [4, 3, 3, 3], [1, 1], [0; 4], [1, 1], 1, false),
        ([2, 3, 7, 6], [4, 3, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1, true),
        ([1, 2, 9, 8], [3, 2, 3, 2], [2, 3], [2, 1, 0, 3], [1, 1], 1, true),
        ([1, 2, 9, 9], [2, 2, 3, 3], [2, 2], [1, 1, 1, 1], [2, 3], 1, false),
        ([1, 4, 5, 5], [6, 2, 3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 2, true),
        ([1, 4, 8, 8], [4, 1, 3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 4, true),
        ([1, 6, 5, 7], [12, 1, 5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 6, false),
        ([2, 4, 4, 4], [4, 4, 1, 1], [1, 1], [0; 4], [1, 1], 1, true),
    ];
    for &(xs, ws, st, pads, dil, groups, bias) in cases {
        let mut ops = vec![r.tensor(DType::F32, &xs), r.tensor(DType::F32, &ws)];
        if bias {
            ops.push(r.tensor(DType::F32, &[ws[0]]));
        }
        check_with(conv(st, pads, dil, groups), ops, &[false, true, true]);
    }
}

#[test]
fn nchwc_layout_and_blocked_convolutions() {
    let mut r = Rng(14);
    for block in [8, 16] {
        let x = r.tensor(DType::F32, &[2, 2 * block, 3, 5]);
        check(Op::ToNchwc { block }, vec![x]);
        check(Op::FromNchwc { block }, vec![r.tensor(DType::F32, &[1, 3, 4, 2, block])]);
        // (input blocks, output channels, kernel, strides, pads, groups: 1 dense, else depthwise)
        let cases: &[(usize, usize, usize, [usize; 2], [usize; 4], bool, bool)] = &[
            (2, 3 * block, 1, [1, 1], [0; 4], false, true),
            (1, block, 3, [2, 2], [1, 1, 1, 1], false, false),
            (2, 2 * block, 3, [1, 1], [1, 1, 1, 1], true, true),
            (1, block, 5, [2, 2], [2, 1, 2, 2], true, false),
        ];
        for &(cb, o, k, strides, pads, depthwise, bias) in cases {
            let c = cb * block;
            let groups = if depthwise { c } else { 1 };
            let op = Op::Conv2dNchwc { strides, pads, dilations: [1, 1], groups, block };
            let mut ops = vec![r.tensor(DType::F32, &[1, cb, 7, 6, block]), r.tensor(DType::F32, &[o, c / groups, k, k])];
            if bias {
                ops.push(r.tensor(DType::F32, &[o]));
            }
            // A constant weight is read in blocked layout; a computed one as it is.
            check_with(op.clone(), ops.clone(), &[false, true, true]);
            check_with(op, ops, &[false, false, true]);
        }
        // A dense blocked convolution reads a plain NCHW input (3 channels: no block), or an
        // input blocked differently from its result.
        let op = Op::Conv2dNchwc { strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, block };
        let ops = vec![r.tensor(DType::F32, &[1, 3, 9, 8]), r.tensor(DType::F32, &[2 * block, 3, 3, 3]), r.tensor(DType::F32, &[2 * block])];
        check_with(op, ops, &[false, true, true]);
        let other = 24 / block;
        let op = Op::Conv2dNchwc { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1, block };
        let ops = vec![r.tensor(DType::F32, &[1, 2, 5, 4, other]), r.tensor(DType::F32, &[block, 2 * other, 1, 1])];
        check_with(op, ops, &[false, true]);
    }
}

/// Fused ops lower to one program that matches the interpreter's step-by-step result: a
/// squeeze-excite scale as a convolution's prologue (applied to the weights, plain and
/// blocked, dense and depthwise), an activation and residual epilogue, and an elementwise
/// chain that reads its input twice.
#[test]
fn fused_ops_lower_to_one_program() {
    let mut r = Rng(15);
    let bodies: &[(&str, Vec<(Vec<usize>, bool)>)] = &[
        (
            "mul(x0, x1); conv2d(y0, x2, x3) {strides=[1,1], pads=[0,0,0,0], dilations=[1,1], groups=1}; add(y1, x4)",
            vec![(vec![1, 16, 5, 5], false), (vec![1, 16, 1, 1], false), (vec![8, 16, 1, 1], true), (vec![8], true), (vec![1, 8, 5, 5], false)],
        ),
        (
            "mul(x1, x0); conv2d_nchwc(y0, x2) {strides=[1,1], pads=[0,0,0,0], dilations=[1,1], groups=1, block=8}; relu(y1)",
            vec![(vec![1, 2, 1, 1, 8], false), (vec![1, 2, 4, 3, 8], false), (vec![16, 16, 1, 1], true)],
        ),
        (
            "mul(x0, x1); conv2d_nchwc(y0, x2) {strides=[2,2], pads=[0,0,0,0], dilations=[1,1], groups=16, block=16}",
            vec![(vec![1, 1, 7, 7, 16], false), (vec![1, 1, 1, 1, 16], false), (vec![16, 1, 3, 3], true)],
        ),
        (
            "mul(x0, x1); add(y0, x2); clip(y1) {min=0.0, max=1.0}; mul(x0, y2)",
            vec![(vec![1, 4, 3, 3], false), (vec![], true), (vec![], true)],
        ),
    ];
    for (body, operands) in bodies {
        let mut g = Graph::new("t");
        let mut inputs = Vec::new();
        let mut ids = Vec::new();
        for (k, (shape, constant)) in operands.iter().enumerate() {
            let t = r.tensor(DType::F32, shape);
            ids.push(if *constant { g.add_const(Some(format!("c{k}")), t) } else {
                inputs.push(t.clone());
                g.add_input(format!("x{k}"), t.ty())
            });
        }
        let op = Op::Fused(Box::new(ir::Fused::parse(body).unwrap()));
        let y = g.add_node(op, ids, None).unwrap_or_else(|e| panic!("{body}: {e}"));
        g.outputs = vec![y];
        let ran = check_graph(&g, &inputs, TOL, &|_| true).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(ran, 1, "{body}");
    }
}

#[test]
fn matmul_batches_broadcast() {
    let mut r = Rng(5);
    let shapes: [(&[usize], &[usize]); 5] = [
        (&[3, 4], &[4, 2]),
        (&[2, 1, 3, 4], &[3, 4, 5]),
        (&[5, 3], &[2, 3, 4]),
        (&[2, 2, 3], &[1, 3, 1]),
        (&[1, 2], &[2, 1]),
    ];
    for (sa, sb) in shapes {
        check(Op::MatMul, vec![r.tensor(DType::F32, sa), r.tensor(DType::F32, sb)]);
        check(Op::MatMul, vec![r.tensor(DType::I64, sa), r.tensor(DType::I64, sb)]);
    }
    check(Op::MatMul, vec![f32t(&[2, 0], &[]), f32t(&[0, 3], &[])]);
}

#[test]
fn pooling_pads_ceil_and_counts() {
    let mut r = Rng(6);
    // (input h, w, kernel, strides, pads, dilations, ceil)
    #[allow(clippy::type_complexity)]
    let windows: &[(usize, usize, [usize; 2], [usize; 2], [usize; 4], [usize; 2], bool)] = &[
        (6, 6, [2, 2], [2, 2], [0; 4], [1, 1], false),
        (7, 7, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], false),
        (7, 6, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], true),
        (5, 8, [3, 2], [2, 3], [1, 0, 2, 1], [1, 1], true),
        (1, 6, [1, 3], [1, 2], [0, 1, 0, 1], [1, 1], true),
        (8, 8, [2, 3], [1, 2], [1, 2, 1, 2], [2, 2], true),
        (4, 4, [4, 4], [1, 1], [0; 4], [1, 1], false),
        (3, 3, [2, 2], [1, 1], [1, 1, 1, 1], [1, 1], false),
    ];
    for &(h, w, kernel, strides, pads, dilations, ceil_mode) in windows {
        let window = Window { kernel, strides, pads, dilations };
        let x = r.tensor(DType::F32, &[2, 3, h, w]);
        // The same pools on NCHWc: [N, C/b, H, W, b] (the interpreter pools it as NCHW).
        let blocked = r.tensor(DType::F32, &[1, 2, h, w, 4]);
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for count_include_pad in [false, true] {
                check(Op::Pool2d { kind, window, ceil_mode, count_include_pad }, vec![x.clone()]);
                check(Op::Pool2d { kind, window, ceil_mode, count_include_pad }, vec![blocked.clone()]);
            }
        }
    }
}

#[test]
fn every_reduction() {
    let mut r = Rng(7);
    let x = r.tensor(DType::F32, &[2, 3, 4]);
    let xi = r.tensor(DType::I64, &[2, 3, 4]);
    use ReduceKind::*;
    let axes: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[0, 1, 2], &[]];
    for kind in [Sum, Mean, Max, Min, Prod] {
        for ax in axes {
            for keep_dims in [false, true] {
                let op = Op::Reduce { kind, axes: ax.to_vec(), keep_dims };
                check(op.clone(), vec![x.clone()]);
                if kind != Mean {
                    check(op, vec![xi.clone()]);
                }
            }
        }
        // Empty reductions give the identity (NaN for mean).
        check(Op::Reduce { kind, axes: vec![1], keep_dims: false }, vec![f32t(&[2, 0], &[])]);
    }
}

#[test]
fn argmax_argmin_ties() {
    let mut r = Rng(8);
    let x = r.tensor(DType::F32, &[3, 4, 5]);
    let ties = f32t(&[2, 4], &[1.0, 3.0, 3.0, 0.0, -1.0, -1.0, 2.0, 2.0]);
    for max in [true, false] {
        for select_last in [false, true] {
            for keep_dims in [false, true] {
                for axis in 0..3 {
                    check(Op::ArgReduce { max, axis, keep_dims, select_last }, vec![x.clone()]);
                }
                for (axis, t) in [(1, &ties), (0, &r.tensor(DType::I64, &[6, 2])), (1, &r.tensor(DType::Bool, &[2, 5]))]
                {
                    check(Op::ArgReduce { max, axis, keep_dims, select_last }, vec![t.clone()]);
                }
            }
        }
    }
}

#[test]
fn data_movement() {
    let mut r = Rng(9);
    let x = r.tensor(DType::F32, &[2, 3, 4]);
    check(Op::Transpose { perm: vec![2, 0, 1] }, vec![x.clone()]);
    check(Op::Transpose { perm: vec![1, 0] }, vec![r.tensor(DType::Bool, &[3, 2])]);
    for axis in 0..3 {
        let mut other = x.shape.clone();
        other[axis] = 1;
        let mut empty = x.shape.clone();
        empty[axis] = 0;
        let parts = vec![x.clone(), r.tensor(DType::F32, &other), r.tensor(DType::F32, &empty), x.clone()];
        check(Op::Concat { axis }, parts);
    }
    check(Op::Concat { axis: 0 }, vec![r.tensor(DType::I64, &[2]), r.tensor(DType::I64, &[3])]);
    let slices = [
        (vec![1, 2, 0], vec![-1, -1, 4], vec![-1, -2, 1]),
        (vec![0, 1, 3], vec![2, 3, 0], vec![2, 1, -3]),
        (vec![1, 2, 1], vec![2, 3, 2], vec![5, 7, 1]),
    ];
    for (starts, ends, steps) in slices {
        check(Op::Slice { starts, ends, steps }, vec![x.clone()]);
    }
    for mode in [PadMode::Constant, PadMode::Reflect, PadMode::Edge] {
        check(Op::Pad { pads: vec![1, 2, 0, 0, 1, 3], mode, value: 2.5 }, vec![x.clone()]);
        check(Op::Pad { pads: vec![0, 1, 1, 1], mode, value: 1.0 }, vec![r.tensor(DType::I64, &[2, 3])]);
        check(Op::Pad { pads: vec![1, 0, 0, 2], mode, value: 1.0 }, vec![r.tensor(DType::Bool, &[2, 3])]);
    }
    check(Op::Pad { pads: vec![1, 2], mode: PadMode::Constant, value: -1.0 }, vec![f32t(&[0], &[])]);
    check(Op::Expand { shape: vec![2, 3, 4] }, vec![r.tensor(DType::F32, &[3, 1])]);
    check(Op::Expand { shape: vec![2, 2] }, vec![r.tensor(DType::I64, &[])]);
    let data = r.tensor(DType::F32, &[3, 4, 2]);
    let idx = i64t(&[2, 3], &[-1, 0, 2, 1, -3, -2]);
    for axis in 0..2 {
        let d = data.shape[axis] as i64;
        let idx = i64t(&[2, 3], &idx.as_i64().unwrap().iter().map(|&i| i.clamp(-d, d - 1)).collect::<Vec<_>>());
        check_with(Op::Gather { axis }, vec![data.clone(), idx], &[false, true]);
    }
    check(Op::Gather { axis: 2 }, vec![data.clone(), i64t(&[], &[-1])]);
}

#[test]
fn reshape_is_an_alias_and_names_are_stable() {
    let mut g = Graph::new("r");
    let x = g.add_input("x", TensorType::new(DType::F32, [2, 3]));
    let y = g.add_node(Op::Reshape { shape: vec![3, 2] }, vec![x], None).unwrap();
    let z = g.add_node(Op::Unary(UnaryOp::Relu), vec![y], None).unwrap();
    let steps = lower_graph(&g).unwrap();
    assert!(matches!(steps[0], Step::Alias { from, to } if from == x && to == y));
    let Step::Run(p) = &steps[1] else { panic!("relu runs") };
    assert_eq!(p.args, [y, z]);
    assert_eq!(p.func.name, format!("relu_{}", z.0));
    assert_eq!(lower_node(&g, &g.nodes[0]), Ok(None));
    let text = print_func(&p.func);
    // Same-shape operands collapse to one flat loop.
    assert!(text.contains("param %x: f32[6]") && text.contains("%y[i0] = max(%x[i0], 0.0)"), "{text}");
}

#[test]
fn unsupported_dtypes_are_errors() {
    let mut g = Graph::new("e");
    let x = g.add_input("x", TensorType::new(DType::I64, [2]));
    g.add_node(Op::Unary(UnaryOp::Exp), vec![x], Some("e".into())).unwrap();
    let err = lower_graph(&g).unwrap_err().to_string();
    assert!(err.contains("cannot lower exp (at \"e\")"), "{err}");
}

#[test]
fn padded_conv_reads_inside_its_buffer() {
    let mut g = Graph::new("c");
    let x = g.add_input("x", TensorType::new(DType::F32, [1, 2, 5, 5]));
    let w = g.add_const(None, Tensor::f32([4, 1, 3, 3], vec![0.5; 36]).unwrap());
    let b = g.add_const(None, Tensor::f32([4], vec![1.0; 4]).unwrap());
    g.add_node(conv([2, 2], [1, 1, 1, 1], [1, 1], 2), vec![x, w, b], None).unwrap();
    let f = lower_node(&g, &g.nodes[0]).unwrap().unwrap();
    let text = print_func(&f);
    println!("{text}");
    assert!(text.contains("%y[n, oc, oh, ow] = %b[oc]"), "{text}");
    let guard = "select(and(and(and(ge(oh * 2 + kh - 1, 0), lt(oh * 2 + kh - 1, 5)), ge(ow * 2 + kw - 1, 0)), lt(";
    assert!(text.contains(guard), "{text}");
    assert!(text.contains("%x[n, oc / 2 + ic, min(max(oh * 2 + kh - 1, 0), 4)"), "{text}");
}

/// The unscheduled programs read as the compute definitions (checked on a few lines).
#[test]
fn printed_programs_read_as_the_compute() {
    let mut g = Graph::new("s");
    let x = g.add_input("x", TensorType::new(DType::F32, [1, 2, 5, 5]));
    let a = g.add_input("a", TensorType::new(DType::F32, [2, 3, 4]));
    let b = g.add_input("b", TensorType::new(DType::F32, [4, 5]));
    let window = Window { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1] };
    let ops = [
        (Op::Pool2d { kind: PoolKind::Avg, window, ceil_mode: true, count_include_pad: false }, vec![x]),
        (Op::MatMul, vec![a, b]),
        (Op::Reduce { kind: ReduceKind::Mean, axes: vec![0, 2], keep_dims: true }, vec![a]),
        (Op::ArgReduce { max: true, axis: 1, keep_dims: false, select_last: true }, vec![a]),
        (Op::Pad { pads: vec![0, 1, 2, 0, 1, 2], mode: PadMode::Reflect, value: 0.0 }, vec![a]),
        (Op::Concat { axis: 1 }, vec![a, a]),
        (Op::Slice { starts: vec![1, 2, 0], ends: vec![-1, -1, 4], steps: vec![-1, -2, 1] }, vec![a]),
    ];
    for (op, ins) in ops {
        g.add_node(op, ins, None).unwrap();
    }
    let text: Vec<String> = g.nodes.iter().map(|n| print_func(&lower_node(&g, n).unwrap().unwrap())).collect();
    let want = [
        "%y[n, c, oh, ow] = %y[n, c, oh, ow] / f32((min(5 - oh * 2, 2) - max(1 - oh * 2, 0) + 1) * (min(5 - ow * 2, 2) - max(1 - ow * 2, 0) + 1))",
        "%y[i0, m, n] = %y[i0, m, n] + %a[i0, m, k] * %b[k, n]",
        "%y[0, i1, 0] = %y[0, i1, 0] / 8.0",
        "%y[i0, i2] = select(ge(%x[i0, r1, i2], %v[i0, i2]), r1, %y[i0, i2])",
        "%y[i0, i1, i2] = %x[i0, 2 - abs(2 - abs(i1 - 1)), 3 - abs(3 - abs(i2 - 2))]",
        "%y[i0_1, i1_1 + 3, i2_1] = %x1[i0_1, i1_1, i2_1]",
        "%y[i0, i1, i2] = %x[1 - i0, 2 - i1 * 2, i2]",
    ];
    for (text, want) in text.iter().zip(want) {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// ONNX node tests: the claimed cases, imported as tests/conformance.rs does.

/// A minimal protobuf reader, enough to find a model's graph inputs and to decode the test
/// data's TensorProtos (this crate does not depend on prost).
mod pb {
    pub enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos).ok_or("truncated varint")?;
            *pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    pub fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
        let (mut pos, mut out) = (0, Vec::new());
        while pos < b.len() {
            let key = varint(b, &mut pos)?;
            let mut take = |n: usize| -> Result<&[u8], String> {
                let s = b.get(pos..pos + n).ok_or("truncated field")?;
                pos += n;
                Ok(s)
            };
            let f = match key & 7 {
                0 => Field::Varint(varint(b, &mut pos)?),
                1 => Field::Fixed64(u64::from_le_bytes(take(8)?.try_into().unwrap())),
                2 => {
                    let n = varint(b, &mut pos)? as usize;
                    Field::Bytes(b.get(pos..pos + n).ok_or("truncated bytes")?)
                }
                5 => Field::Fixed32(u32::from_le_bytes(take(4)?.try_into().unwrap())),
                w => return Err(format!("wire type {w}")),
            };
            if let Field::Bytes(s) = f {
                pos += s.len();
            }
            out.push((key >> 3, f));
        }
        Ok(out)
    }

    /// The values of a repeated scalar field, packed or not.
    pub fn varints(f: &Field) -> Result<Vec<u64>, String> {
        match f {
            Field::Varint(v) => Ok(vec![*v]),
            Field::Bytes(b) => {
                let (mut pos, mut out) = (0, Vec::new());
                while pos < b.len() {
                    out.push(varint(b, &mut pos)?);
                }
                Ok(out)
            }
            _ => Err("expected varints".into()),
        }
    }

    pub fn fixed<const W: usize>(f: &Field) -> Result<Vec<[u8; W]>, String> {
        match f {
            Field::Fixed32(v) if W == 4 => Ok(vec![v.to_le_bytes()[..].try_into().unwrap()]),
            Field::Fixed64(v) if W == 8 => Ok(vec![v.to_le_bytes()[..].try_into().unwrap()]),
            Field::Bytes(b) => Ok(b.chunks_exact(W).map(|c| c.try_into().unwrap()).collect()),
            _ => Err("expected fixed-width values".into()),
        }
    }

    pub fn string(f: &Field) -> String {
        match f {
            Field::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        }
    }
}

fn decode_tensor(bytes: &[u8]) -> Result<Tensor, String> {
    let mut t = frontend::proto::TensorProto::default();
    for (tag, f) in pb::fields(bytes)? {
        match tag {
            1 => t.dims.extend(pb::varints(&f)?.into_iter().map(|v| v as i64)),
            2 => t.data_type = pb::varints(&f)?.first().map(|&v| v as i32),
            4 => t.float_data.extend(pb::fixed::<4>(&f)?.into_iter().map(f32::from_le_bytes)),
            5 => t.int32_data.extend(pb::varints(&f)?.into_iter().map(|v| v as i64 as i32)),
            7 => t.int64_data.extend(pb::varints(&f)?.into_iter().map(|v| v as i64)),
            8 => t.name = Some(pb::string(&f)),
            9 => {
                t.raw_data = Some(match f {
                    pb::Field::Bytes(b) => b.to_vec(),
                    _ => return Err("raw_data is not bytes".into()),
                })
            }
            10 => t.double_data.extend(pb::fixed::<8>(&f)?.into_iter().map(f64::from_le_bytes)),
            11 => t.uint64_data.extend(pb::varints(&f)?),
            14 => t.data_location = pb::varints(&f)?.first().map(|&v| v as i32),
            _ => {}
        }
    }
    frontend::tensor_from_proto(&t)
}

/// The names of a model's graph inputs that are not initializers, in order.
fn graph_input_names(model: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut inits = Vec::new();
    for (tag, f) in pb::fields(model)? {
        let pb::Field::Bytes(graph) = f else { continue };
        if tag != 7 {
            continue;
        }
        for (tag, f) in pb::fields(graph)? {
            let pb::Field::Bytes(sub) = f else { continue };
            let name_tag = match tag {
                11 => 1,
                5 => 8,
                _ => continue,
            };
            let name =
                pb::fields(sub)?.iter().find(|(t, _)| *t == name_tag).map(|(_, f)| pb::string(f)).unwrap_or_default();
            if tag == 11 {
                names.push(name)
            } else {
                inits.push(name)
            }
        }
    }
    Ok(names.into_iter().filter(|n| !inits.contains(n)).collect())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn conformance_case(case: &Path) -> Result<usize, String> {
    let bytes = std::fs::read(case.join("model.onnx")).map_err(|e| e.to_string())?;
    let data = case.join("test_data_set_0");
    let mut inputs = Vec::new();
    while let Ok(b) = std::fs::read(data.join(format!("input_{}.pb", inputs.len()))) {
        inputs.push(decode_tensor(&b)?);
    }
    // As tests/conformance.rs: integer inputs, and scalars after the first, become constants.
    let mut options = frontend::ImportOptions::default();
    let mut runtime = Vec::new();
    for (pos, (name, t)) in graph_input_names(&bytes)?.into_iter().zip(inputs).enumerate() {
        if t.dtype() == DType::I64 || (pos > 0 && t.numel() <= 1) {
            options.constant_inputs.insert(name, t);
        } else {
            runtime.push(t);
        }
    }
    let g = frontend::import_model_with(&bytes, &options).map_err(|e| e.to_string())?;
    check_graph(&g, &runtime, 1e-5, &|_| true)
}

#[test]
fn onnx_node_tests() {
    let root = workspace_root();
    let dir = root.join("target/onnx-node-tests/node");
    if !dir.is_dir() {
        println!("lowering: SKIPPED: no ONNX node tests at {}", dir.display());
        return;
    }
    let manifest = std::fs::read_to_string(root.join("tests/conformance/node.txt")).expect("the manifest is readable");
    let cases: Vec<&str> =
        manifest.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
    let mut failures = Vec::new();
    let mut programs = 0;
    for case in &cases {
        match conformance_case(&dir.join(case)) {
            Ok(n) => programs += n,
            Err(e) => failures.push(format!("  {case}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
    println!("lowering: {} cases ok ({programs} programs)", cases.len());
}

// ---------------------------------------------------------------------------------------
// Fixture models: every node but the costliest convolutions (the evaluator walks the tree for
// every multiply-add), in release builds only.

#[cfg(not(debug_assertions))]
#[test]
fn fixture_models() {
    let dir = std::env::var_os("CHANASC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
        .join("fixtures/models");
    if !dir.is_dir() {
        println!("lowering fixtures: SKIPPED: no models at {}", dir.display());
        return;
    }
    for name in ["mobilenet_v3_small", "resnet18"] {
        let model = dir.join(format!("{name}.onnx"));
        let g = frontend::load_onnx(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let input = frontend::npy::read_npy(&dir.join(format!("{name}.input.npy"))).unwrap();
        // The first 3 convolutions run, and any other of up to this many multiply-adds.
        const MAX_CONV_MACS: u64 = 8_000_000;
        let first_convs: Vec<ValueId> =
            g.nodes.iter().filter(|n| matches!(n.op, Op::Conv2d { .. })).take(3).map(|n| n.output).collect();
        let pick = |n: &ir::Node| {
            let ins: Vec<&TensorType> = n.inputs.iter().map(|&v| g.ty(v)).collect();
            !matches!(n.op, Op::Conv2d { .. })
                || first_convs.contains(&n.output)
                || n.op.macs(&ins, g.ty(n.output)) <= MAX_CONV_MACS
        };
        let start = std::time::Instant::now();
        let ran = check_graph(&g, &[input], 1e-4, &pick).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!(
            "lowering fixture {name}: {ran} of {} nodes checked in {:.1} s",
            g.nodes.len(),
            start.elapsed().as_secs_f64()
        );
    }
}

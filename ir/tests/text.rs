//! The text format round-trips for every op, and malformed text gets located errors.

use ir::graph::{BinaryOp, PadMode, PoolKind, ReduceKind, UnaryOp, Window};
use ir::text::{parse_graph, print_graph};
use ir::{DType, Graph, Op, Tensor, TensorData, TensorType};

/// A graph that uses every op at least once, with odd attribute values.
fn every_op_graph() -> Graph {
    let mut g = Graph::new("every \"op\"");
    let x = g.add_input("x", TensorType::new(DType::F32, [1, 4, 6, 6]));
    let w = g.add_weight(Some("w".into()), TensorType::new(DType::F32, [4, 2, 3, 3]), None);
    let b = g.add_const(None, Tensor::f32([4], vec![0.1, -0.0, 1e-7, f32::INFINITY]).unwrap());
    let add = |g: &mut Graph, op: Op, ins: Vec<ir::ValueId>| g.add_node(op, ins, Some(format!("n{}", g.nodes.len()))).unwrap();
    let conv = add(
        &mut g,
        Op::Conv2d { strides: [1, 2], pads: [1, 0, 2, 1], dilations: [1, 1], groups: 2 },
        vec![x, w, b],
    );
    let mut v = x;
    for u in [
        UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Neg, UnaryOp::Abs,
        UnaryOp::Sqrt, UnaryOp::Reciprocal, UnaryOp::Floor, UnaryOp::Ceil, UnaryOp::Round, UnaryOp::Sin,
        UnaryOp::Cos, UnaryOp::Erf, UnaryOp::Sign,
    ] {
        v = add(&mut g, Op::Unary(u), vec![v]);
    }
    for bop in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow, BinaryOp::Max, BinaryOp::Min] {
        v = add(&mut g, Op::Binary(bop), vec![v, x]);
    }
    let mut conds = Vec::new();
    for bop in [BinaryOp::Equal, BinaryOp::Less, BinaryOp::Greater, BinaryOp::LessEqual, BinaryOp::GreaterEqual] {
        conds.push(add(&mut g, Op::Binary(bop), vec![v, x]));
    }
    let mut c = conds[0];
    for (i, bop) in [BinaryOp::And, BinaryOp::Or, BinaryOp::Xor].into_iter().enumerate() {
        c = add(&mut g, Op::Binary(bop), vec![c, conds[i + 1]]);
    }
    let c = add(&mut g, Op::Unary(UnaryOp::Not), vec![c]);
    let clipped = add(&mut g, Op::Clip { min: f32::NEG_INFINITY, max: 6.0 }, vec![v]);
    let sel = add(&mut g, Op::Where, vec![c, clipped, x]);
    let cast = add(&mut g, Op::Cast { to: DType::I64 }, vec![sel]);
    let back = add(&mut g, Op::Cast { to: DType::F32 }, vec![cast]);
    let win = Window { kernel: [3, 2], strides: [2, 1], pads: [1, 1, 0, 0], dilations: [1, 2] };
    let mp = add(&mut g, Op::Pool2d { kind: PoolKind::Max, window: win, ceil_mode: true, count_include_pad: false }, vec![back]);
    let ap = add(&mut g, Op::Pool2d { kind: PoolKind::Avg, window: win, ceil_mode: false, count_include_pad: true }, vec![conv]);
    for k in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max, ReduceKind::Min, ReduceKind::Prod] {
        add(&mut g, Op::Reduce { kind: k, axes: vec![1, 3], keep_dims: k == ReduceKind::Sum }, vec![mp]);
    }
    let am = add(&mut g, Op::ArgReduce { max: true, axis: 1, keep_dims: false, select_last: true }, vec![ap]);
    let flat = add(&mut g, Op::Reshape { shape: vec![4, 36] }, vec![x]);
    let t = add(&mut g, Op::Transpose { perm: vec![1, 0] }, vec![flat]);
    let m = add(&mut g, Op::MatMul, vec![flat, t]);
    let cat = add(&mut g, Op::Concat { axis: 0 }, vec![m, m, m]);
    let sl = add(&mut g, Op::Slice { starts: vec![11, 0], ends: vec![-1, 4], steps: vec![-2, 3] }, vec![cat]);
    let pd = add(&mut g, Op::Pad { pads: vec![1, 0, 2, 1], mode: PadMode::Reflect, value: 0.5 }, vec![sl]);
    let ex = add(&mut g, Op::Expand { shape: vec![2, 9, 3] }, vec![pd]);
    let gather = add(&mut g, Op::Gather { axis: 0 }, vec![x, am]);
    g.outputs = vec![ex, gather];
    ir::graph::verify::verify(&g).unwrap();
    g
}

#[test]
fn every_op_round_trips() {
    let g = every_op_graph();
    let text = print_graph(&g);
    let parsed = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print_graph(&parsed), text);
    // The structure comes back too, not only the text (the external weight stays unbound).
    assert_eq!(parsed.nodes, g.nodes);
    assert_eq!(parsed.inputs, g.inputs);
    assert_eq!(parsed.outputs, g.outputs);
    assert_eq!(parsed.values.iter().map(|v| &v.ty).collect::<Vec<_>>(), g.values.iter().map(|v| &v.ty).collect::<Vec<_>>());
}

#[test]
fn constants_keep_their_bits() {
    let mut g = Graph::new("k");
    let vals = vec![0.1f32, 1.0 / 3.0, -1e-38, 3.4e38, f32::MIN_POSITIVE, -0.0, 7.0, 123456.79];
    let a = g.add_const(Some("a".into()), Tensor::f32([8], vals.clone()).unwrap());
    let i = g.add_const(None, Tensor::i64([2], vec![i64::MIN, i64::MAX]).unwrap());
    let bools = g.add_const(None, Tensor::new([2], TensorData::Bool(vec![true, false])).unwrap());
    // f16: the smallest subnormal, the largest half, a rounded third, negative zero.
    let halves: Vec<ir::f16> = [5.960464477539063e-8f32, 65504.0, 1.0 / 3.0, -0.0].iter().map(|&x| ir::f16::from_f32(x)).collect();
    let h = g.add_const(None, Tensor::new([4], TensorData::F16(halves.clone())).unwrap());
    g.outputs = vec![a, i, bools, h];
    let parsed = parse_graph(&print_graph(&g)).unwrap();
    let got = parsed.const_data(parsed.outputs[0]).unwrap().as_f32().unwrap().to_vec();
    assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), vals.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    assert_eq!(parsed.const_data(parsed.outputs[1]).unwrap().as_i64().unwrap(), &[i64::MIN, i64::MAX]);
    assert_eq!(parsed.const_data(parsed.outputs[2]).unwrap().as_bool().unwrap(), &[true, false]);
    let TensorData::F16(got) = &parsed.const_data(parsed.outputs[3]).unwrap().data else { panic!("f16 constant parsed as another dtype") };
    assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), halves.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}

#[test]
fn documented_example_parses() {
    let text = r#"
graph "tiny" {
  input %0 "x": f32[1,3,8,8]
  const %1 "w": f32[4,3,3,3] = external
  const %2: f32[4] = [0.1, 0.2, 0.3, 0.4]
  # comments are allowed anywhere
  %3: f32[1,4,8,8] = conv2d(%0, %1, %2) {strides=[1,1], pads=[1,1,1,1], dilations=[1,1], groups=1} at "conv"
  %4 "y": f32[1,4,8,8] = relu(%3)
  output %4
}"#;
    let g = parse_graph(text).unwrap();
    assert_eq!(g.nodes.len(), 2);
    assert_eq!(g.macs(), 4 * 64 * 27);
    assert_eq!(g.value(g.outputs[0]).name.as_deref(), Some("y"));
}

fn parse_error(text: &str) -> String {
    parse_graph(text).unwrap_err().to_string()
}

#[test]
fn errors_say_where_and_why() {
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2]\n  %1: f32[2] = relu(%7)\n  output %1\n}");
    assert_eq!(e, "line 3, column 21: use of undefined value %7");
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2]\n  %1: f32[3] = relu(%0)\n  output %1\n}");
    assert!(e.contains("declared f32[3] but its op gives f32[2]"), "{e}");
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2]\n  %1: f32[2] = frobnicate(%0)\n  output %1\n}");
    assert!(e.starts_with("line 3, column 16") && e.contains("unknown op"), "{e}");
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2]\n  %1: f32[2] = clip(%0) {min=0.0}\n  output %1\n}");
    assert!(e.contains("attribute max: missing"), "{e}");
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2] $\n}");
    assert!(e.starts_with("line 2, column 24: unexpected character"), "{e}");
    let e = parse_error("graph \"g\" {\n  const %0: f32[3] = [1.0, 2.0]\n  output %0\n}");
    assert!(e.contains("constant data does not fit f32[3]"), "{e}");
    let e = parse_error("graph \"g\" {\n  input %0 \"x\": f32[2]\n  input %0 \"y\": f32[2]\n  output %0\n}");
    assert!(e.contains("defined twice"), "{e}");
    assert!(parse_error("graph \"g\" {").contains("unexpected end of text") || parse_error("graph \"g\" {").contains("expected"));
}

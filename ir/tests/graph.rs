//! Graph edits: binding inputs to constants.

use std::collections::BTreeMap;

use ir::graph::{BinaryOp, ValueDef};
use ir::{DType, Graph, Op, Tensor, TensorType};

/// y = x * w + b, with w and b graph inputs (as a training graph has them), and an unused input.
fn affine() -> Graph {
    let mut g = Graph::new("affine");
    let x = g.add_input("x", TensorType::new(DType::F32, vec![2]));
    let w = g.add_input("w", TensorType::new(DType::F32, vec![2]));
    let _unused = g.add_input("u", TensorType::new(DType::F32, vec![3]));
    let b = g.add_input("b", TensorType::new(DType::F32, vec![2]));
    let xw = g.add_node(Op::Binary(BinaryOp::Mul), vec![x, w], None).unwrap();
    let y = g.add_node(Op::Binary(BinaryOp::Add), vec![xw, b], None).unwrap();
    g.outputs = vec![y];
    g
}

#[test]
fn bound_inputs_become_constants_and_the_others_keep_their_order() {
    let g = affine();
    let bound = BTreeMap::from([
        ("w".to_string(), Tensor::f32(vec![2], vec![2.0, 3.0]).unwrap()),
        ("b".to_string(), Tensor::f32(vec![2], vec![0.5, -1.0]).unwrap()),
    ]);
    let d = g.bind_inputs(&bound).unwrap();
    ir::graph::verify::verify(&d).unwrap();
    let names: Vec<_> = d.inputs.iter().map(|&v| d.value(v).name.clone().unwrap()).collect();
    assert_eq!(names, ["x", "u"]);
    for (pos, &v) in d.inputs.iter().enumerate() {
        assert_eq!(d.value(v).def, ValueDef::Input(pos));
    }
    let consts: Vec<Vec<f32>> = d
        .values
        .iter()
        .filter_map(|v| match v.def {
            ValueDef::Const(w) => Some(d.weights[w.index()].data.as_ref().unwrap().as_f32().unwrap().to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(consts, vec![vec![2.0, 3.0], vec![0.5, -1.0]]);
    // The printed graph parses back to the same graph.
    let text = ir::text::print_graph(&d);
    assert_eq!(ir::text::parse_graph(&text).unwrap(), d);
}

#[test]
fn binding_checks_names_and_types() {
    let g = affine();
    let wrong_shape = BTreeMap::from([("w".to_string(), Tensor::f32(vec![3], vec![1.0; 3]).unwrap())]);
    let e = g.bind_inputs(&wrong_shape).unwrap_err().to_string();
    assert!(e.contains("binding input w"), "{e}");
    let unknown = BTreeMap::from([("v".to_string(), Tensor::f32(vec![2], vec![1.0; 2]).unwrap())]);
    let e = g.bind_inputs(&unknown).unwrap_err().to_string();
    assert!(e.contains("no input of that name"), "{e}");
}

//! Rewrites 1x1 convolutions over a 1x1 image (squeeze-excite's fully connected layers) as
//! matrix products with the weight transposed at compile time, so that their kernels read
//! weights contiguously instead of one strided column per output channel.

use ir::graph::BinaryOp;
use ir::{Graph, Op, Tensor};

use super::{copy_node, rebuild};
use crate::PassError;

pub fn matvec_convs(g: &Graph) -> Result<Graph, PassError> {
    rebuild(g, |out, node, map| {
        let Op::Conv2d { pads, groups: 1, dilations: [1, 1], .. } = &node.op else { return copy_node(out, node, map) };
        let (x, w) = (map(node.inputs[0]), map(node.inputs[1]));
        let (xs, ws) = (out.ty(x).shape.clone(), out.ty(w).shape.clone());
        let pointwise_on_one_pixel = xs[2] == 1 && xs[3] == 1 && ws[2] == 1 && ws[3] == 1 && *pads == [0; 4];
        let Some(weights) = out.const_data(w).and_then(|t| t.as_f32()).filter(|_| pointwise_on_one_pixel) else {
            return copy_node(out, node, map);
        };
        let (n, oc, ic) = (xs[0], ws[0], ws[1]);
        let transposed: Vec<f32> = (0..ic * oc).map(|i| weights[(i % oc) * ic + i / oc]).collect();
        let wt = out.add_const(out.value(w).name.clone(), Tensor::f32(vec![ic, oc], transposed)?);
        let name = node.name.clone();
        let rows = out.add_node(Op::Reshape { shape: vec![n, ic] }, vec![x], name.clone())?;
        let mut y = out.add_node(Op::MatMul, vec![rows, wt], name.clone())?;
        if let Some(&b) = node.inputs.get(2) {
            y = out.add_node(Op::Binary(BinaryOp::Add), vec![y, map(b)], name.clone())?;
        }
        Ok(out.add_node(Op::Reshape { shape: vec![n, oc, 1, 1] }, vec![y], name)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(g: &Graph, x: &Tensor) -> Vec<f32> {
        interp::run(g, &[x.clone()]).unwrap()[0].as_f32().unwrap().to_vec()
    }

    #[test]
    fn squeeze_excite_convs_become_matmuls_with_the_same_result() {
        let mut g = Graph::new("se");
        let x = g.add_input("x", ir::TensorType::new(ir::DType::F32, [1, 3, 1, 1]));
        let w = g.add_const(None, Tensor::f32([2, 3, 1, 1], vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.25]).unwrap());
        let b = g.add_const(None, Tensor::f32([2], vec![0.5, -0.5]).unwrap());
        let conv = Op::Conv2d { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups: 1 };
        let y = g.add_node(conv.clone(), vec![x, w, b], Some("fc".into())).unwrap();
        // A 1x1 conv over a larger image stays a conv.
        let big = g.add_node(Op::Expand { shape: vec![1, 2, 2, 2] }, vec![y], None).unwrap();
        let w2 = g.add_const(None, Tensor::f32([1, 2, 1, 1], vec![1.0, 1.0]).unwrap());
        let z = g.add_node(conv, vec![big, w2], None).unwrap();
        g.outputs = vec![z];
        let rewritten = matvec_convs(&g).unwrap();
        let text = ir::text::print_graph(&rewritten);
        assert_eq!(text.matches("matmul(").count(), 1, "{text}");
        assert_eq!(text.matches("conv2d(").count(), 1, "{text}");
        let input = Tensor::f32([1, 3, 1, 1], vec![1.0, -2.0, 4.0]).unwrap();
        assert_eq!(run(&rewritten, &input), run(&g, &input));
    }
}

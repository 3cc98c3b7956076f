//! Moves the padding of convolutions into explicit pad ops, so that conv kernels read their
//! input without bounds checks and vectorize.

use ir::graph::PadMode;
use ir::{Graph, Op};

use super::{copy_node, rebuild};
use crate::PassError;

pub fn explicit_padding(g: &Graph) -> Result<Graph, PassError> {
    rebuild(g, |out, node, map| match &node.op {
        Op::Conv2d { strides, pads, dilations, groups } if pads.iter().any(|&p| p > 0) => {
            let x = map(node.inputs[0]);
            // Pad takes the leading pads of N, C, H, W, then the trailing ones.
            let pad = Op::Pad { pads: vec![0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], mode: PadMode::Constant, value: 0.0 };
            let padded = out.add_node(pad, vec![x], node.name.clone())?;
            let mut inputs = vec![padded];
            inputs.extend(node.inputs[1..].iter().map(|&v| map(v)));
            let conv = Op::Conv2d { strides: *strides, pads: [0; 4], dilations: *dilations, groups: *groups };
            Ok(out.add_node(conv, inputs, node.name.clone())?)
        }
        Op::Conv2dNchwc { strides, pads, dilations, groups, block } if pads.iter().any(|&p| p > 0) => {
            let x = map(node.inputs[0]);
            // N, C/b, H, W, b (or N, C, H, W for a plain input): only H and W are padded.
            let pads = match out.ty(x).rank() {
                5 => vec![0, 0, pads[0], pads[1], 0, 0, 0, pads[2], pads[3], 0],
                _ => vec![0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]],
            };
            let pad = Op::Pad { pads, mode: PadMode::Constant, value: 0.0 };
            let padded = out.add_node(pad, vec![x], node.name.clone())?;
            let mut inputs = vec![padded];
            inputs.extend(node.inputs[1..].iter().map(|&v| map(v)));
            let Op::Conv2dNchwc { strides, dilations, groups, block, .. } = &node.op else { unreachable!("matched above") };
            let conv = Op::Conv2dNchwc { strides: *strides, pads: [0; 4], dilations: *dilations, groups: *groups, block: *block };
            Ok(out.add_node(conv, inputs, node.name.clone())?)
        }
        _ => copy_node(out, node, map),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_becomes_a_pad_op_and_unpadded_convs_stay() {
        let text = r#"graph "g" {
  input %0 "x": f32[1,2,5,5]
  const %1: f32[2,1,3,3] = external
  %2: f32[1,2,3,3] = conv2d(%0, %1) {strides=[2,2], pads=[1,1,1,1], dilations=[1,1], groups=2} at "c1"
  %3: f32[1,2,1,1] = conv2d(%2, %1) {strides=[1,1], pads=[0,0,0,0], dilations=[1,1], groups=2} at "c2"
  output %3
}"#;
        let g = ir::text::parse_graph(text).unwrap();
        let out = ir::text::print_graph(&explicit_padding(&g).unwrap());
        assert!(out.contains("f32[1,2,7,7] = pad(%0) {pads=[0,0,1,1,0,0,1,1], mode=constant, value=0.0} at \"c1\""), "{out}");
        assert!(out.contains("conv2d(%2, %1) {strides=[2,2], pads=[0,0,0,0]"), "{out}");
        assert_eq!(out.matches("pad(").count(), 1, "{out}");
    }
}

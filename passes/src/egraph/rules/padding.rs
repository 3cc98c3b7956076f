//! Zero padding folded into the convolution that reads it.

use egg::Id;
use ir::graph::PadMode;
use ir::Op;

use super::{custom, Custom, GRewrite};
use crate::egraph::{add_op, ops_in, GEGraph};

pub fn rules() -> Vec<GRewrite> {
    // conv(pad(x, p), w) = conv(x, w) with the conv's pads increased by p   (zero pads on H, W)
    vec![custom("fold-pad-into-conv", Custom { rewrite: fold_pad_into_conv, applies: |g, id| padded_conv(g, id).is_some() })]
}

/// The conv with its input's padding added, and its operands with the unpadded input.
fn padded_conv(g: &GEGraph, id: Id) -> Option<(Op, Vec<Id>)> {
    let ops = ops_in(g, id);
    for (op, ch) in &ops {
        let (op, ch) = (op.clone(), ch.clone());
        let Op::Conv2d { strides, pads, dilations, groups } = op else { continue };
        for (inner, ich) in ops_in(g, ch[0]) {
            let Op::Pad { pads: p, mode: PadMode::Constant, value } = inner else { continue };
            // Leading pads of N, C, H, W, then trailing ones; only H and W may be padded.
            if value != 0.0 || p.len() != 8 || p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0 {
                continue;
            }
            let pads = [pads[0] + p[2], pads[1] + p[3], pads[2] + p[6], pads[3] + p[7]];
            let mut operands = ch.clone();
            operands[0] = ich[0];
            let folded = Op::Conv2d { strides, pads, dilations, groups };
            // Folded already: the class holds the conv without the pad.
            if ops.iter().any(|(o, c)| *o == folded && *c == operands) {
                continue;
            }
            return Some((folded, operands));
        }
    }
    None
}

fn fold_pad_into_conv(g: &mut GEGraph, id: Id) -> Option<Id> {
    let (op, operands) = padded_conv(g, id)?;
    add_op(g, op, operands)
}

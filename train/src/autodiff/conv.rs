//! Gradients of the dense ops, as dense ops: a convolution's input gradient is a convolution
//! of the (stride-dilated) output gradient with the flipped, group-transposed weight; its
//! weight gradient is a convolution of the input with the output gradient as the kernel (the
//! stride becomes a dilation); a matrix product's are matrix products with a transposed
//! operand.

use ir::graph::{PadMode, ReduceKind};
use ir::{Graph, Node, Op, ValueId};

use super::{reshape, sum_to_shape, type_of};
use crate::error::{Result, TrainError};

fn unsupported<T>(message: impl Into<String>) -> Result<T> {
    Err(TrainError::Unsupported { node: String::new(), op: String::new(), message: message.into() })
}

fn transpose(g: &mut Graph, v: ValueId, perm: &[usize]) -> Result<ValueId> {
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(v);
    }
    Ok(g.add_node(Op::Transpose { perm: perm.to_vec() }, vec![v], None)?)
}

pub(crate) fn conv2d_backward(g: &mut Graph, node: &Node, dy: ValueId, wants: &[bool]) -> Result<Vec<Option<ValueId>>> {
    let Op::Conv2d { strides, pads, dilations, groups } = node.op else { unreachable!("called on conv2d nodes") };
    if dilations != [1, 1] {
        return unsupported("dilated convolutions have no gradient rule");
    }
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let xs = type_of(g, x).shape;
    let ws = type_of(g, w).shape;
    let ys = type_of(g, node.output).shape;
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let (oh, ow) = (ys[2], ys[3]);
    let og = o / groups;
    let mut out = vec![None; node.inputs.len()];

    if wants[0] {
        // The output gradient with stride-1 zeros between its elements: [N, O, OH*sh, OW*sw].
        let [sh, sw] = strides;
        let mut d = dy;
        if sh > 1 || sw > 1 {
            let d6 = reshape(g, dy, &[n, o, oh, 1, ow, 1])?;
            let mut p = vec![0usize; 12];
            p[6 + 3] = sh - 1;
            p[6 + 5] = sw - 1;
            let padded = g.add_node(Op::Pad { pads: p, mode: PadMode::Constant, value: 0.0 }, vec![d6], None)?;
            d = reshape(g, padded, &[n, o, oh * sh, ow * sw])?;
        }
        let (lh, lw) = (oh * sh, ow * sw);
        // Leading pads k-1-p; trailing pads bring the result to the input's extent. Trailing
        // zeros past the last real element may be cut instead.
        if pads[0] + 1 > kh || pads[1] + 1 > kw {
            return unsupported(format!("leading pads {:?} wider than the kernel {kh}x{kw}", &pads[..2]));
        }
        let (top, left) = (kh - 1 - pads[0], kw - 1 - pads[1]);
        let (keep_h, keep_w) = (h + pads[0], wd + pads[1]);
        if keep_h < (oh - 1) * sh + 1 || keep_w < (ow - 1) * sw + 1 {
            return unsupported(format!("trailing pads {:?} wider than the kernel {kh}x{kw}", &pads[2..]));
        }
        if keep_h < lh || keep_w < lw {
            let (eh, ew) = (keep_h.min(lh), keep_w.min(lw));
            d = g.add_node(
                Op::Slice { starts: vec![0; 4], ends: vec![n as i64, o as i64, eh as i64, ew as i64], steps: vec![1; 4] },
                vec![d],
                None,
            )?;
        }
        let (eh, ew) = (keep_h.min(lh), keep_w.min(lw));
        let (bottom, right) = (keep_h - eh, keep_w - ew);
        // Weight [O, C/g, KH, KW] -> [C, O/g, KH, KW], flipped in space.
        let w5 = reshape(g, w, &[groups, og, cg, kh, kw])?;
        let wt = transpose(g, w5, &[0, 2, 1, 3, 4])?;
        let wt = reshape(g, wt, &[c, og, kh, kw])?;
        let flipped = g.add_node(
            Op::Slice {
                starts: vec![0, 0, kh as i64 - 1, kw as i64 - 1],
                ends: vec![c as i64, og as i64, -1, -1],
                steps: vec![1, 1, -1, -1],
            },
            vec![wt],
            None,
        )?;
        let dx = g.add_node(
            Op::Conv2d { strides: [1, 1], pads: [top, left, bottom, right], dilations: [1, 1], groups },
            vec![d, flipped],
            None,
        )?;
        out[0] = Some(dx);
    }
    if wants[1] && groups == 1 {
        // Matrix products: dW [O, C*KH*KW] = sum_n dY_n [O, OH*OW] @ cols_n [OH*OW, C*KH*KW],
        // the columns being the input's (strided) windows, one slice per kernel tap.
        let padded = if pads == [0; 4] {
            x
        } else {
            let p = vec![0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]];
            g.add_node(Op::Pad { pads: p, mode: PadMode::Constant, value: 0.0 }, vec![x], None)?
        };
        let [sh, sw] = strides;
        let p = oh * ow;
        let mut taps = Vec::with_capacity(kh * kw);
        for i in 0..kh {
            for j in 0..kw {
                let ends = vec![n as i64, c as i64, (i + (oh - 1) * sh + 1) as i64, (j + (ow - 1) * sw + 1) as i64];
                let steps = vec![1, 1, sh as i64, sw as i64];
                let full = type_of(g, padded).shape == [n, c, oh, ow];
                let tap = if full {
                    padded
                } else {
                    g.add_node(Op::Slice { starts: vec![0, 0, i as i64, j as i64], ends, steps }, vec![padded], None)?
                };
                taps.push(reshape(g, tap, &[n, c, 1, p])?);
            }
        }
        let cols = if taps.len() == 1 { taps[0] } else { g.add_node(Op::Concat { axis: 2 }, taps, None)? };
        // Per image, dY_n [O, P] @ cols_n^T [P, C*KH*KW], then summed over the images: the
        // images are the product's parallel batch axis.
        let cols = reshape(g, cols, &[n, c * kh * kw, p])?;
        let cols = transpose(g, cols, &[0, 2, 1])?;
        let d = reshape(g, dy, &[n, o, p])?;
        let per_image = g.add_node(Op::MatMul, vec![d, cols], None)?;
        let dw = g.add_node(Op::Reduce { kind: ReduceKind::Sum, axes: vec![0], keep_dims: false }, vec![per_image], None)?;
        out[1] = Some(reshape(g, dw, &[o, c, kh, kw])?);
    } else if wants[1] {
        // Batch = C/g, channels = (group, image); kernel = the output gradient [O, N, OH, OW].
        let x5 = reshape(g, x, &[n, groups, cg, h, wd])?;
        let xr = transpose(g, x5, &[2, 1, 0, 3, 4])?;
        let xr = reshape(g, xr, &[cg, groups * n, h, wd])?;
        let d5 = reshape(g, dy, &[n, groups, og, oh, ow])?;
        let dr = transpose(g, d5, &[1, 2, 0, 3, 4])?;
        let dr = reshape(g, dr, &[o, n, oh, ow])?;
        let full = g.add_node(Op::Conv2d { strides: [1, 1], pads, dilations: strides, groups }, vec![xr, dr], None)?;
        let fs = type_of(g, full).shape;
        let cut = if fs[2] != kh || fs[3] != kw {
            g.add_node(
                Op::Slice { starts: vec![0; 4], ends: vec![cg as i64, o as i64, kh as i64, kw as i64], steps: vec![1; 4] },
                vec![full],
                None,
            )?
        } else {
            full
        };
        out[1] = Some(transpose(g, cut, &[1, 0, 2, 3])?);
    }
    if node.inputs.len() > 2 && wants[2] {
        let s = g.add_node(Op::Reduce { kind: ReduceKind::Sum, axes: vec![0, 2, 3], keep_dims: false }, vec![dy], None)?;
        out[2] = Some(s);
    }
    Ok(out)
}

/// Swaps the last two axes.
fn transpose_last(g: &mut Graph, v: ValueId) -> Result<ValueId> {
    let r = type_of(g, v).shape.len();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    transpose(g, v, &perm)
}

pub(crate) fn matmul_backward(g: &mut Graph, node: &Node, dy: ValueId, wants: &[bool]) -> Result<Vec<Option<ValueId>>> {
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let (sa, sb) = (type_of(g, a).shape, type_of(g, b).shape);
    let da = if wants[0] {
        let bt = transpose_last(g, b)?;
        let d = g.add_node(Op::MatMul, vec![dy, bt], None)?;
        Some(sum_to_shape(g, d, &sa)?)
    } else {
        None
    };
    let db = if wants[1] {
        let at = transpose_last(g, a)?;
        let d = g.add_node(Op::MatMul, vec![at, dy], None)?;
        Some(sum_to_shape(g, d, &sb)?)
    } else {
        None
    };
    Ok(vec![da, db])
}

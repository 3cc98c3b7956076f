//! The gradient rule of each graph op: from a node and its output's adjoint, the adjoints of
//! its operands, built from graph ops.

use ir::graph::{BinaryOp, PadMode, PoolKind, ReduceKind, UnaryOp};
use ir::{DType, Graph, Node, Op, ValueId};

use super::{reshape, scalar, sum_to_shape, type_of};
use crate::error::{Result, TrainError};

fn unsupported<T>(message: impl Into<String>) -> Result<T> {
    Err(TrainError::Unsupported { node: String::new(), op: String::new(), message: message.into() })
}

pub(crate) fn bin(g: &mut Graph, op: BinaryOp, a: ValueId, b: ValueId) -> Result<ValueId> {
    Ok(g.add_node(Op::Binary(op), vec![a, b], None)?)
}

pub(crate) fn un(g: &mut Graph, op: UnaryOp, a: ValueId) -> Result<ValueId> {
    Ok(g.add_node(Op::Unary(op), vec![a], None)?)
}

/// `cond` (bool) as 1.0 / 0.0.
fn mask(g: &mut Graph, cond: ValueId) -> Result<ValueId> {
    Ok(g.add_node(Op::Cast { to: DType::F32 }, vec![cond], None)?)
}

fn scale(g: &mut Graph, v: ValueId, k: f32) -> Result<ValueId> {
    let k = scalar(g, k)?;
    bin(g, BinaryOp::Mul, v, k)
}

/// `v` broadcast to `shape` (its own rank or higher).
fn expand(g: &mut Graph, v: ValueId, shape: &[usize]) -> Result<ValueId> {
    if g.ty(v).shape == shape {
        return Ok(v);
    }
    Ok(g.add_node(Op::Expand { shape: shape.to_vec() }, vec![v], None)?)
}

/// The adjoints of `node`'s operands given its output's adjoint `dy`; `None` where an operand
/// gets no gradient (or `wants` says it is not needed).
pub(crate) fn backward(g: &mut Graph, node: &Node, dy: ValueId, wants: &[bool]) -> Result<Vec<Option<ValueId>>> {
    let x = node.inputs[0];
    let y = node.output;
    let xs = type_of(g, x).shape;
    let ys = type_of(g, y).shape;
    let one = |g: &mut Graph| scalar(g, 1.0);
    Ok(match &node.op {
        Op::Unary(u) => {
            let d = match u {
                UnaryOp::Relu => {
                    let zero = scalar(g, 0.0)?;
                    let pos = bin(g, BinaryOp::Greater, x, zero)?;
                    let m = mask(g, pos)?;
                    bin(g, BinaryOp::Mul, dy, m)?
                }
                UnaryOp::Sigmoid => {
                    // dy * y * (1 - y)
                    let o = one(g)?;
                    let rest = bin(g, BinaryOp::Sub, o, y)?;
                    let t = bin(g, BinaryOp::Mul, y, rest)?;
                    bin(g, BinaryOp::Mul, dy, t)?
                }
                UnaryOp::Tanh => {
                    let o = one(g)?;
                    let sq = bin(g, BinaryOp::Mul, y, y)?;
                    let t = bin(g, BinaryOp::Sub, o, sq)?;
                    bin(g, BinaryOp::Mul, dy, t)?
                }
                UnaryOp::Exp => bin(g, BinaryOp::Mul, dy, y)?,
                UnaryOp::Log => bin(g, BinaryOp::Div, dy, x)?,
                UnaryOp::Neg => un(g, UnaryOp::Neg, dy)?,
                UnaryOp::Abs => {
                    let s = un(g, UnaryOp::Sign, x)?;
                    bin(g, BinaryOp::Mul, dy, s)?
                }
                UnaryOp::Sqrt => {
                    // dy / (2 y)
                    let t = bin(g, BinaryOp::Div, dy, y)?;
                    scale(g, t, 0.5)?
                }
                UnaryOp::Reciprocal => {
                    // -dy * y^2
                    let sq = bin(g, BinaryOp::Mul, y, y)?;
                    let t = bin(g, BinaryOp::Mul, dy, sq)?;
                    un(g, UnaryOp::Neg, t)?
                }
                UnaryOp::Sin => {
                    let c = un(g, UnaryOp::Cos, x)?;
                    bin(g, BinaryOp::Mul, dy, c)?
                }
                UnaryOp::Cos => {
                    let s = un(g, UnaryOp::Sin, x)?;
                    let t = bin(g, BinaryOp::Mul, dy, s)?;
                    un(g, UnaryOp::Neg, t)?
                }
                UnaryOp::Erf => {
                    // dy * 2/sqrt(pi) * exp(-x^2)
                    let sq = bin(g, BinaryOp::Mul, x, x)?;
                    let n = un(g, UnaryOp::Neg, sq)?;
                    let e = un(g, UnaryOp::Exp, n)?;
                    let t = bin(g, BinaryOp::Mul, dy, e)?;
                    scale(g, t, std::f32::consts::FRAC_2_SQRT_PI)?
                }
                // Piecewise constant: zero gradient almost everywhere.
                UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::Sign | UnaryOp::Not => return Ok(vec![None]),
            };
            vec![Some(d)]
        }
        Op::Binary(b) => {
            let a = x;
            let bv = node.inputs[1];
            let (sa, sb) = (xs.clone(), type_of(g, bv).shape);
            let (da, db) = match b {
                BinaryOp::Add => (Some(dy), Some(dy)),
                BinaryOp::Sub => {
                    let n = if wants[1] { Some(un(g, UnaryOp::Neg, dy)?) } else { None };
                    (Some(dy), n)
                }
                BinaryOp::Mul => {
                    let da = if wants[0] { Some(bin(g, BinaryOp::Mul, dy, bv)?) } else { None };
                    let db = if wants[1] { Some(bin(g, BinaryOp::Mul, dy, a)?) } else { None };
                    (da, db)
                }
                BinaryOp::Div => {
                    let da = bin(g, BinaryOp::Div, dy, bv)?;
                    // d/db (a / b) = -y / b
                    let db = if wants[1] {
                        let q = bin(g, BinaryOp::Div, y, bv)?;
                        let p = bin(g, BinaryOp::Mul, dy, q)?;
                        Some(un(g, UnaryOp::Neg, p)?)
                    } else {
                        None
                    };
                    (Some(da), db)
                }
                BinaryOp::Pow => {
                    // d/da a^b = b a^(b-1) = b y / a; d/db a^b = y ln a
                    let da = if wants[0] {
                        let t = bin(g, BinaryOp::Mul, bv, y)?;
                        let t = bin(g, BinaryOp::Div, t, a)?;
                        Some(bin(g, BinaryOp::Mul, dy, t)?)
                    } else {
                        None
                    };
                    let db = if wants[1] {
                        let l = un(g, UnaryOp::Log, a)?;
                        let t = bin(g, BinaryOp::Mul, y, l)?;
                        Some(bin(g, BinaryOp::Mul, dy, t)?)
                    } else {
                        None
                    };
                    (da, db)
                }
                BinaryOp::Max | BinaryOp::Min => {
                    // The gradient goes to the operand that was picked (the first one on ties).
                    let cmp = if *b == BinaryOp::Max { BinaryOp::GreaterEqual } else { BinaryOp::LessEqual };
                    let pick_a = bin(g, cmp, a, bv)?;
                    let ma = mask(g, pick_a)?;
                    let da = bin(g, BinaryOp::Mul, dy, ma)?;
                    let db = if wants[1] {
                        let o = one(g)?;
                        let mb = bin(g, BinaryOp::Sub, o, ma)?;
                        Some(bin(g, BinaryOp::Mul, dy, mb)?)
                    } else {
                        None
                    };
                    (Some(da), db)
                }
                _ => (None, None),
            };
            let da = match da {
                Some(d) if wants[0] => Some(sum_to_shape(g, d, &sa)?),
                _ => None,
            };
            let db = match db {
                Some(d) if wants[1] => Some(sum_to_shape(g, d, &sb)?),
                _ => None,
            };
            vec![da, db]
        }
        Op::Clip { min, max } => {
            // The gradient passes where the input is strictly inside the bounds.
            let mut inside: Option<ValueId> = None;
            if min.is_finite() {
                let lo = scalar(g, *min)?;
                inside = Some(bin(g, BinaryOp::Greater, x, lo)?);
            }
            if max.is_finite() {
                let hi = scalar(g, *max)?;
                let below = bin(g, BinaryOp::Less, x, hi)?;
                inside = Some(match inside {
                    Some(c) => bin(g, BinaryOp::And, c, below)?,
                    None => below,
                });
            }
            match inside {
                Some(c) => {
                    let m = mask(g, c)?;
                    vec![Some(bin(g, BinaryOp::Mul, dy, m)?)]
                }
                None => vec![Some(dy)],
            }
        }
        Op::Where => {
            let c = x;
            let zero = scalar(g, 0.0)?;
            let ta = type_of(g, node.inputs[1]).shape;
            let tb = type_of(g, node.inputs[2]).shape;
            let da = if wants[1] {
                let d = g.add_node(Op::Where, vec![c, dy, zero], None)?;
                Some(sum_to_shape(g, d, &ta)?)
            } else {
                None
            };
            let db = if wants[2] {
                let d = g.add_node(Op::Where, vec![c, zero, dy], None)?;
                Some(sum_to_shape(g, d, &tb)?)
            } else {
                None
            };
            vec![None, da, db]
        }
        Op::Cast { to } => {
            if *to == DType::F32 && type_of(g, x).dtype == DType::F32 {
                vec![Some(dy)]
            } else {
                vec![None]
            }
        }
        Op::Conv2d { .. } => super::conv::conv2d_backward(g, node, dy, wants)?,
        Op::MatMul => super::conv::matmul_backward(g, node, dy, wants)?,
        Op::Pool2d { kind: PoolKind::Avg, window, .. } => {
            // Only the global average (the window is the whole unpadded plane).
            let global = window.kernel == [xs[2], xs[3]] && window.pads == [0; 4] && ys[2] == 1 && ys[3] == 1;
            if !global {
                return unsupported("only a global average pool has a gradient rule");
            }
            let d = expand(g, dy, &xs)?;
            vec![Some(scale(g, d, 1.0 / (xs[2] * xs[3]) as f32)?)]
        }
        Op::Pool2d { .. } => return unsupported("max pooling has no gradient rule"),
        Op::Reduce { kind, axes, .. } => {
            let kept: Vec<usize> = xs.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect();
            let d = reshape(g, dy, &kept)?;
            let d = expand(g, d, &xs)?;
            let count: usize = axes.iter().map(|&a| xs[a]).product();
            let d = match kind {
                ReduceKind::Sum => d,
                ReduceKind::Mean => scale(g, d, 1.0 / count.max(1) as f32)?,
                ReduceKind::Max | ReduceKind::Min => {
                    // To every element equal to the extremum.
                    let yk = reshape(g, y, &kept)?;
                    let hit = bin(g, BinaryOp::Equal, x, yk)?;
                    let m = mask(g, hit)?;
                    bin(g, BinaryOp::Mul, d, m)?
                }
                ReduceKind::Prod => return unsupported("reduce_prod has no gradient rule"),
            };
            vec![Some(d)]
        }
        Op::ArgReduce { .. } => vec![None],
        Op::Reshape { .. } => vec![Some(reshape(g, dy, &xs)?)],
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(g.add_node(Op::Transpose { perm: inverse }, vec![dy], None)?)]
        }
        Op::Expand { .. } => vec![Some(sum_to_shape(g, dy, &xs)?)],
        Op::Concat { axis } => {
            let mut out = Vec::new();
            let mut start = 0usize;
            for (k, &v) in node.inputs.iter().enumerate() {
                let s = type_of(g, v).shape;
                if wants[k] {
                    let starts: Vec<i64> = (0..ys.len()).map(|i| if i == *axis { start as i64 } else { 0 }).collect();
                    let ends: Vec<i64> = (0..ys.len()).map(|i| if i == *axis { (start + s[i]) as i64 } else { ys[i] as i64 }).collect();
                    out.push(Some(g.add_node(Op::Slice { starts, ends, steps: vec![1; ys.len()] }, vec![dy], None)?));
                } else {
                    out.push(None);
                }
                start += s[*axis];
            }
            out
        }
        Op::Slice { starts, steps, .. } => {
            // Unit steps: the gradient is zero-padded back; a full reversal is reversed back.
            let r = xs.len();
            if steps.iter().all(|&s| s == 1) {
                let mut pads = vec![0usize; 2 * r];
                for i in 0..r {
                    pads[i] = starts[i] as usize;
                    pads[r + i] = xs[i] - starts[i] as usize - ys[i];
                }
                vec![Some(g.add_node(Op::Pad { pads, mode: PadMode::Constant, value: 0.0 }, vec![dy], None)?)]
            } else if (0..r).all(|i| steps[i] == 1 && starts[i] == 0 && ys[i] == xs[i] || steps[i] == -1 && ys[i] == xs[i]) {
                vec![Some(g.add_node(node.op.clone(), vec![dy], None)?)]
            } else {
                return unsupported("only unit-step slices and full reversals have a gradient rule");
            }
        }
        Op::Pad { pads, mode: PadMode::Constant, .. } => {
            let r = xs.len();
            let starts: Vec<i64> = (0..r).map(|i| pads[i] as i64).collect();
            let ends: Vec<i64> = (0..r).map(|i| (pads[i] + xs[i]) as i64).collect();
            vec![Some(g.add_node(Op::Slice { starts, ends, steps: vec![1; r] }, vec![dy], None)?)]
        }
        other => return unsupported(format!("{} has no gradient rule (differentiate the graph before optimizing it)", other.name())),
    })
}

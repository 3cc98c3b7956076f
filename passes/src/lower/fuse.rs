//! Lowering of fused ops (which the e-graph's fusion rules build): a convolution or matrix
//! product computes its elementwise consumers (bias, activation, residual add) in an epilogue
//! and its input's elementwise producer (the squeeze-excite scale) in a prologue, and chains of
//! elementwise ops become one loop, so that the values between them never go to memory.

use std::collections::HashSet;

use ir::loops::{BinOp, BufId, BufKind, Buffer, Expr, Func, Stmt};
use ir::{Graph, Op, TensorType, ValueId};

use super::elementwise;

/// A fused group: `nodes` (indices into `g.nodes`, in order) whose first is the anchor; the
/// group computes the last node's output, and every other value of the group is used only
/// inside it.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub nodes: Vec<usize>,
    /// An elementwise node whose result only the anchor (a convolution) reads: it is computed
    /// as the anchor loads its input (the squeeze-excite scale before a projection conv).
    pub prologue: Option<usize>,
}

/// The extents other than 1, in order: shapes that agree on them differ by unit axes only,
/// which a reshape adds or removes without moving data.
fn non_unit(shape: &[usize]) -> Vec<usize> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// Ops an epilogue can compute per element.
fn elementwise_op(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Binary(_) | Op::Clip { .. } | Op::Where | Op::Cast { .. })
}

/// The group a fused op's body forms, once its shape is checked: an optional elementwise
/// prologue feeding a convolution's input, then the convolution or matrix product (the
/// anchor) and elementwise steps (or reshapes by unit axes) on its result; or a chain of
/// elementwise steps of one shape. `body` has one node per step, in order.
pub(crate) fn group_of(body: &Graph, f: &ir::Fused) -> Result<Group, String> {
    let n = f.steps.len();
    let (anchor, prologue) = match f.dense_step() {
        Some(0) => (0, None),
        Some(1) => (1, Some(0)),
        Some(d) => return Err(format!("{d} steps before the anchor; at most one (a prologue) is lowered")),
        None => (0, None),
    };
    let dense = f.dense_step().is_some();
    if let Some(p) = prologue {
        let feeds_input_only = f.steps[anchor].operands.first() == Some(&ir::FusedRef::Step(p))
            && f.steps
                .iter()
                .enumerate()
                .all(|(i, s)| s.operands.iter().enumerate().all(|(k, r)| *r != ir::FusedRef::Step(p) || (i == anchor && k == 0)));
        if !elementwise_op(&f.steps[p].op) || !f.steps[anchor].op.is_unpadded_conv() || !feeds_input_only {
            return Err("a prologue must be elementwise and feed only the input of an unpadded convolution".into());
        }
    }
    let shape = &body.ty(body.nodes[anchor].output).shape;
    for i in anchor + 1..n {
        let op = &f.steps[i].op;
        let out = body.ty(body.nodes[i].output);
        let fits = if dense {
            (elementwise_op(op) || matches!(op, Op::Reshape { .. })) && non_unit(&out.shape) == non_unit(shape)
        } else {
            elementwise_op(op) && out.shape == *shape
        };
        if !fits || out.dtype != ir::DType::F32 {
            return Err(format!("step {i} ({}) cannot be computed in the epilogue of step {anchor}", op.name()));
        }
    }
    if !dense && !elementwise_op(&f.steps[0].op) {
        return Err(format!("the first step ({}) is neither elementwise nor a convolution or matrix product", f.steps[0].op.name()));
    }
    Ok(Group { nodes: (anchor..n).collect(), prologue })
}

/// The values the group's members read from outside the group, in order of first use;
/// `skip` are values the program reads already (an elementwise anchor's operands).
pub(crate) fn external_operands(g: &Graph, group: &Group, skip: &[ValueId]) -> Vec<ValueId> {
    let inside: HashSet<ValueId> = group.nodes.iter().map(|&i| g.nodes[i].output).collect();
    let mut ext = Vec::new();
    for &i in &group.nodes[1..] {
        for &v in &g.nodes[i].inputs {
            if !inside.contains(&v) && !skip.contains(&v) && !ext.contains(&v) {
                ext.push(v);
            }
        }
    }
    ext
}

/// The expression of group value `v`, given how to load a value from outside the group (and
/// the anchor's own result) for a member whose result has the given shape.
pub(crate) fn value_expr(g: &Graph, group: &Group, v: ValueId, leaf: &dyn Fn(ValueId, &[usize]) -> Expr) -> Result<Expr, String> {
    let member = group.nodes[1..].iter().map(|&i| &g.nodes[i]).find(|n| n.output == v);
    let Some(node) = member else {
        return Ok(leaf(v, &g.ty(v).shape));
    };
    let shape = &g.ty(node.output).shape;
    let operand = |u: ValueId| -> Result<Expr, String> {
        if group.nodes[1..].iter().any(|&i| g.nodes[i].output == u) {
            value_expr(g, group, u, leaf)
        } else {
            Ok(leaf(u, shape))
        }
    };
    if matches!(node.op, Op::Reshape { .. }) {
        // A reshape by unit axes moves no data.
        return operand(node.inputs[0]);
    }
    let operands: Vec<Expr> = node.inputs.iter().map(|&u| operand(u)).collect::<Result<_, _>>()?;
    let types: Vec<&TensorType> = node.inputs.iter().map(|&u| g.ty(u)).collect();
    elementwise::apply(&node.op, &types, operands)
}

/// An index of a tensor of shape `from` as an index of a tensor of shape `to` with the same
/// extents other than 1 (in order): unit axes index 0.
pub(crate) fn map_index(index: &[Expr], from: &[usize], to: &[usize]) -> Vec<Expr> {
    let mut moving = index.iter().zip(from).filter(|(_, &d)| d != 1).map(|(e, _)| e.clone());
    to.iter().map(|&d| if d == 1 { Expr::Int(0) } else { moving.next().unwrap_or(Expr::Int(0)) }).collect()
}

/// Index expressions of an operand of shape `shape` broadcast onto an index of the result.
pub(crate) fn broadcast_exprs(index: &[Expr], shape: &[usize]) -> Vec<Expr> {
    let skip = index.len() - shape.len();
    shape.iter().enumerate().map(|(a, &d)| if d == 1 { Expr::Int(0) } else { index[skip + a].clone() }).collect()
}

/// Adds the group's epilogue (and prologue) to a lowered convolution or matrix product: a
/// prologue's operands replace the anchor's input parameter and its expression replaces the
/// input's loads; the external operands become parameters before the result, and after the
/// reduction a store rewrites each result element with the group's expression of it.
pub(crate) fn add_epilogue(mut f: Func, g: &Graph, group: &Group, externals: &[ValueId]) -> Result<Func, String> {
    let params: Vec<BufId> = f.params();
    let y = *params.last().ok_or("the program has no result")?;
    // Rebuild the buffer list in calling order and renumber; the input a prologue replaces
    // maps to a placeholder resolved below.
    const REPLACED: BufId = BufId(u32::MAX);
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut remap: Vec<BufId> = vec![BufId(0); f.buffers.len()];
    let param_buffer =
        |name: String, t: &TensorType| Buffer { name, dtype: t.dtype, shape: t.shape.clone(), kind: BufKind::Param, layout: None };
    let mut pro_bufs = Vec::new();
    let prologue = group.prologue.map(|p| &g.nodes[p]);
    for (k, &p) in params[..params.len() - 1].iter().enumerate() {
        match (k, prologue) {
            (0, Some(pn)) => {
                remap[p.index()] = REPLACED;
                for (j, &v) in pn.inputs.iter().enumerate() {
                    pro_bufs.push(BufId(buffers.len() as u32));
                    buffers.push(param_buffer(format!("p{j}"), g.ty(v)));
                }
            }
            _ => {
                remap[p.index()] = BufId(buffers.len() as u32);
                buffers.push(f.buffer(p).clone());
            }
        }
    }
    let mut ext_bufs = Vec::new();
    for (k, &v) in externals.iter().enumerate() {
        ext_bufs.push(BufId(buffers.len() as u32));
        buffers.push(param_buffer(format!("e{k}"), g.ty(v)));
    }
    remap[y.index()] = BufId(buffers.len() as u32);
    buffers.push(f.buffer(y).clone());
    for (i, b) in f.buffers.iter().enumerate() {
        if b.kind == BufKind::Temp {
            remap[i] = BufId(buffers.len() as u32);
            buffers.push(b.clone());
        }
    }
    let mut body: Vec<Stmt> = std::mem::take(&mut f.body).into_iter().map(|s| remap_buffers(s, &remap)).collect();
    if let Some(pn) = prologue {
        let types: Vec<&TensorType> = pn.inputs.iter().map(|&v| g.ty(v)).collect();
        // A per-channel scale of the input multiplies the weight of each product instead:
        // x[i] * s[c] * w = x[i] * (w * s[c]), which the kernel computes once per input channel
        // and tap, not once per pixel of its register tile.
        if let (Op::Binary(ir::graph::BinaryOp::Mul), [a, b]) = (&pn.op, types.as_slice()) {
            let x_ty = g.ty(g.nodes[group.nodes[0]].inputs[0]);
            let (full, scale) = if ir::graph::fused::channel_scale(a, b) && *a == x_ty {
                (0, 1)
            } else if ir::graph::fused::channel_scale(b, a) && *b == x_ty {
                (1, 0)
            } else {
                (usize::MAX, usize::MAX)
            };
            if full != usize::MAX {
                let (full_buf, scale_buf, scale_shape) = (pro_bufs[full], pro_bufs[scale], types[scale].shape.clone());
                body = body
                    .into_iter()
                    .map(|s| {
                        s.map_exprs(&mut |e| match e {
                            Expr::Binary { op: BinOp::Mul, a, b } if matches!(&*a, Expr::Load { buf, .. } if *buf == REPLACED) => {
                                let Expr::Load { index, .. } = *a else { unreachable!("matched a load") };
                                let s = Expr::load(scale_buf, broadcast_exprs(&index, &scale_shape));
                                Expr::bin(BinOp::Mul, Expr::load(full_buf, index), Expr::bin(BinOp::Mul, *b, s))
                            }
                            other => other,
                        })
                    })
                    .collect();
            }
        }
        let mut failed = None;
        body = body
            .into_iter()
            .map(|s| {
                s.map_exprs(&mut |e| match e {
                    Expr::Load { buf, index } if buf == REPLACED => {
                        let loads = pro_bufs.iter().zip(&types).map(|(&b, t)| Expr::load(b, broadcast_exprs(&index, &t.shape))).collect();
                        elementwise::apply(&pn.op, &types, loads).unwrap_or_else(|e| {
                            failed = Some(e);
                            Expr::Float(0.0)
                        })
                    }
                    other => other,
                })
            })
            .collect();
        if let Some(e) = failed {
            return Err(e);
        }
    }
    f.buffers = buffers;
    f.body = body;
    let y = remap[y.index()];
    if group.nodes.len() == 1 {
        return Ok(f);
    }
    // The innermost spatial body: [init store; reduction loop].
    let spatial = innermost_spatial(&mut f.body).ok_or("the program is not an init store followed by a reduction")?;
    let Some(Stmt::Store { index, .. }) = spatial.first() else {
        return Err("no init store".into());
    };
    let index = index.clone();
    let anchor_out = g.nodes[group.nodes[0]].output;
    let anchor_shape = g.ty(anchor_out).shape.clone();
    let final_value = g.nodes[*group.nodes.last().ok_or("empty group")?].output;
    let leaf = |v: ValueId, consumer: &[usize]| {
        if v == anchor_out {
            return Expr::load(y, index.clone());
        }
        match externals.iter().position(|&e| e == v) {
            Some(k) => Expr::load(ext_bufs[k], broadcast_exprs(&map_index(&index, &anchor_shape, consumer), &g.ty(v).shape)),
            None => Expr::Float(f32::NAN),
        }
    };
    let value = value_expr(g, group, final_value, &leaf)?;
    spatial.push(Stmt::Store { buf: y, index, value });
    Ok(f)
}

/// The body list that holds [init store, reduction loop] under the perfectly nested spatial
/// loops of a convolution or matrix product.
fn innermost_spatial(body: &mut Vec<Stmt>) -> Option<&mut Vec<Stmt>> {
    if matches!(body.as_slice(), [Stmt::Store { .. }, Stmt::For(_)]) {
        return Some(body);
    }
    match body.as_mut_slice() {
        [Stmt::For(l)] => innermost_spatial(&mut l.body),
        _ => None,
    }
}

fn remap_buffers(s: Stmt, remap: &[BufId]) -> Stmt {
    let s = s.map_exprs(&mut |e| match e {
        Expr::Load { buf, index } => Expr::Load { buf: remap[buf.index()], index },
        other => other,
    });
    s.map_stores(&mut |buf, index| (remap[buf.index()], index))
}

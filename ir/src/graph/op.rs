//! The primitive op set of the graph IR: each op's name, attributes and static shape rule.
//!
//! ONNX composites (batch norm, gemm, hard-swish, softmax, ...) are lowered to these by the
//! frontend. Every op has exactly one result.

use super::fused::Fused;
use crate::error::{shape_err, IrError, Result};
use crate::types::{broadcast_shapes, DType, TensorType};

/// Elementwise ops of one operand; the result has the operand's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Floor,
    Ceil,
    Round,
    Sin,
    Cos,
    Erf,
    Sign,
    /// Logical not, on bool.
    Not,
}

/// Elementwise ops of two operands with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Equal,
    Less,
    Greater,
    LessEqual,
    GreaterEqual,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    /// Comparisons produce bool whatever their operands' dtype.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Equal | BinaryOp::Less | BinaryOp::Greater | BinaryOp::LessEqual | BinaryOp::GreaterEqual)
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// 2-D window geometry shared by conv and pooling, NCHW.
/// `pads` is `[top, left, bottom, right]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
}

impl Window {
    /// Output extent along spatial axis `axis` (0 = H, 1 = W) of an input of extent `input`.
    /// With `ceil` the last partial window counts when it starts inside the input or its
    /// leading padding, as ONNX's ceil_mode says.
    pub fn output_extent(&self, axis: usize, input: usize, ceil: bool) -> Option<usize> {
        // Checked arithmetic: attributes come from files and may be absurd.
        let padded = input.checked_add(self.pads[axis])?.checked_add(self.pads[axis + 2])?;
        let span = self.dilations[axis].checked_mul(self.kernel[axis].checked_sub(1)?)?.checked_add(1)?;
        let s = self.strides[axis];
        if padded < span || s == 0 || self.dilations[axis] == 0 {
            return None;
        }
        let mut out = if ceil { (padded - span).div_ceil(s) + 1 } else { (padded - span) / s + 1 };
        // The last window must start inside the input or the leading padding.
        if ceil && (out - 1) * s >= input + self.pads[axis] {
            out -= 1;
        }
        Some(out)
    }
}

/// A primitive tensor op. Attributes are static; shapes are known at compile time.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// min(max(x, min), max); the bounds may be infinite.
    Clip {
        min: f32,
        max: f32,
    },
    /// where(cond, a, b), broadcasting all three.
    Where,
    Cast {
        to: DType,
    },
    /// Grouped 2-D convolution: (x: N,C,H,W; w: O,C/groups,KH,KW; optional bias: O).
    /// The kernel extent is the weight's. `pads` is `[top, left, bottom, right]`.
    Conv2d {
        strides: [usize; 2],
        pads: [usize; 4],
        dilations: [usize; 2],
        groups: usize,
    },
    /// Numpy matmul on operands of rank >= 2, batch dimensions broadcast.
    MatMul,
    /// 2-D pooling over NCHW.
    Pool2d {
        kind: PoolKind,
        window: Window,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    /// Reduction over `axes` (sorted, distinct).
    Reduce {
        kind: ReduceKind,
        axes: Vec<usize>,
        keep_dims: bool,
    },
    /// Index of the largest (or smallest) element along `axis`, as i64.
    ArgReduce {
        max: bool,
        axis: usize,
        keep_dims: bool,
        select_last: bool,
    },
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    /// Strided slice over every axis: element `start + i * step` for `i` while it stays on the
    /// `start` side of `end`. A negative step walks backwards; `end` may be -1 then.
    Slice {
        starts: Vec<i64>,
        ends: Vec<i64>,
        steps: Vec<i64>,
    },
    /// `pads` holds the leading pads of every axis, then the trailing ones.
    Pad {
        pads: Vec<usize>,
        mode: PadMode,
        value: f32,
    },
    /// Broadcast to `shape`.
    Expand {
        shape: Vec<usize>,
    },
    /// gather(data, indices: i64) along `axis`; negative indices count from the end.
    Gather {
        axis: usize,
    },
    /// Several ops computed as one tensor program (see `fused.rs`).
    Fused(Box<Fused>),
    /// The channel-blocked layout NCHW[b]c: [N, C, H, W] -> [N, C/b, H, W, b], element
    /// (n, c, h, w) at (n, c / b, h, w, c % b). A vector of b channels of a pixel is contiguous.
    ToNchwc { block: usize },
    /// The inverse of `ToNchwc`.
    FromNchwc { block: usize },
    /// `Conv2d` with its result in NCHW[b]c: [N, O/b, OH, OW, b]. The input is NCHW[b']c (rank
    /// 5, b' its last extent, any block) or plain NCHW (rank 4); weight [O, C/groups, KH, KW]
    /// (the lowering picks its memory layout), optional bias [O]. Only dense (groups 1) and
    /// depthwise (groups = C = O, its input blocked like its result) convolutions.
    Conv2dNchwc { strides: [usize; 2], pads: [usize; 4], dilations: [usize; 2], groups: usize, block: usize },
}

/// An attribute value as it appears in the text IR.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Ident(String),
    Str(String),
}

const UNARY_NAMES: &[(UnaryOp, &str)] = &[
    (UnaryOp::Relu, "relu"),
    (UnaryOp::Sigmoid, "sigmoid"),
    (UnaryOp::Tanh, "tanh"),
    (UnaryOp::Exp, "exp"),
    (UnaryOp::Log, "log"),
    (UnaryOp::Neg, "neg"),
    (UnaryOp::Abs, "abs"),
    (UnaryOp::Sqrt, "sqrt"),
    (UnaryOp::Reciprocal, "reciprocal"),
    (UnaryOp::Floor, "floor"),
    (UnaryOp::Ceil, "ceil"),
    (UnaryOp::Round, "round"),
    (UnaryOp::Sin, "sin"),
    (UnaryOp::Cos, "cos"),
    (UnaryOp::Erf, "erf"),
    (UnaryOp::Sign, "sign"),
    (UnaryOp::Not, "not"),
];

const BINARY_NAMES: &[(BinaryOp, &str)] = &[
    (BinaryOp::Add, "add"),
    (BinaryOp::Sub, "sub"),
    (BinaryOp::Mul, "mul"),
    (BinaryOp::Div, "div"),
    (BinaryOp::Pow, "pow"),
    (BinaryOp::Max, "max"),
    (BinaryOp::Min, "min"),
    (BinaryOp::Equal, "equal"),
    (BinaryOp::Less, "less"),
    (BinaryOp::Greater, "greater"),
    (BinaryOp::LessEqual, "less_equal"),
    (BinaryOp::GreaterEqual, "greater_equal"),
    (BinaryOp::And, "and"),
    (BinaryOp::Or, "or"),
    (BinaryOp::Xor, "xor"),
];

const REDUCE_NAMES: &[(ReduceKind, &str)] = &[
    (ReduceKind::Sum, "reduce_sum"),
    (ReduceKind::Mean, "reduce_mean"),
    (ReduceKind::Max, "reduce_max"),
    (ReduceKind::Min, "reduce_min"),
    (ReduceKind::Prod, "reduce_prod"),
];

impl UnaryOp {
    pub fn name(self) -> &'static str {
        UNARY_NAMES.iter().find(|(op, _)| *op == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        BINARY_NAMES.iter().find(|(op, _)| *op == self).map(|(_, n)| *n).unwrap_or("?")
    }
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

impl Op {
    /// The op's mnemonic in the text IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Clip { .. } => "clip",
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::Conv2d { .. } => "conv2d",
            Op::MatMul => "matmul",
            Op::Pool2d { kind: PoolKind::Max, .. } => "max_pool2d",
            Op::Pool2d { kind: PoolKind::Avg, .. } => "avg_pool2d",
            Op::Reduce { kind, .. } => REDUCE_NAMES.iter().find(|(k, _)| k == kind).map(|(_, n)| *n).unwrap_or("?"),
            Op::ArgReduce { max: true, .. } => "argmax",
            Op::ArgReduce { max: false, .. } => "argmin",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Expand { .. } => "expand",
            Op::Gather { .. } => "gather",
            Op::Fused(_) => "fused",
            Op::ToNchwc { .. } => "to_nchwc",
            Op::FromNchwc { .. } => "from_nchwc",
            Op::Conv2dNchwc { .. } => "conv2d_nchwc",
        }
    }

    /// The attributes in the order the text IR prints them.
    pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
        let window = |w: &Window| {
            let mut a = vec![("kernel", ints(&w.kernel))];
            a.push(("strides", ints(&w.strides)));
            a.push(("pads", ints(&w.pads)));
            a.push(("dilations", ints(&w.dilations)));
            a
        };
        match self {
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::MatMul => vec![],
            Op::Clip { min, max } => vec![("min", Attr::Float(*min)), ("max", Attr::Float(*max))],
            Op::Cast { to } => vec![("to", Attr::Ident(to.name().into()))],
            Op::Conv2d { strides, pads, dilations, groups } => vec![
                ("strides", ints(strides)),
                ("pads", ints(pads)),
                ("dilations", ints(dilations)),
                ("groups", Attr::Int(*groups as i64)),
            ],
            Op::Pool2d { window: w, ceil_mode, count_include_pad, .. } => {
                let mut a = window(w);
                a.push(("ceil_mode", Attr::Int(*ceil_mode as i64)));
                a.push(("count_include_pad", Attr::Int(*count_include_pad as i64)));
                a
            }
            Op::Reduce { axes, keep_dims, .. } => {
                vec![("axes", ints(axes)), ("keep_dims", Attr::Int(*keep_dims as i64))]
            }
            Op::ArgReduce { axis, keep_dims, select_last, .. } => vec![
                ("axis", Attr::Int(*axis as i64)),
                ("keep_dims", Attr::Int(*keep_dims as i64)),
                ("select_last", Attr::Int(*select_last as i64)),
            ],
            Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", ints(shape))],
            Op::Transpose { perm } => vec![("perm", ints(perm))],
            Op::Concat { axis } | Op::Gather { axis } => vec![("axis", Attr::Int(*axis as i64))],
            Op::Fused(f) => f.attrs(),
            Op::ToNchwc { block } | Op::FromNchwc { block } => vec![("block", Attr::Int(*block as i64))],
            Op::Conv2dNchwc { strides, pads, dilations, groups, block } => vec![
                ("strides", ints(strides)),
                ("pads", ints(pads)),
                ("dilations", ints(dilations)),
                ("groups", Attr::Int(*groups as i64)),
                ("block", Attr::Int(*block as i64)),
            ],
            Op::Slice { starts, ends, steps } => {
                vec![("starts", Attr::Ints(starts.clone())), ("ends", Attr::Ints(ends.clone())), ("steps", Attr::Ints(steps.clone()))]
            }
            Op::Pad { pads, mode, value } => vec![
                ("pads", ints(pads)),
                (
                    "mode",
                    Attr::Ident(
                        match mode {
                            PadMode::Constant => "constant",
                            PadMode::Reflect => "reflect",
                            PadMode::Edge => "edge",
                        }
                        .into(),
                    ),
                ),
                ("value", Attr::Float(*value)),
            ],
        }
    }

    /// Rebuilds an op from its mnemonic and attributes (the parser's half of `name`/`attrs`).
    pub fn from_parts(name: &str, attrs: Vec<(String, Attr)>) -> Result<Op> {
        let mut a = AttrReader { op: name, attrs };
        let op = if let Some((u, _)) = UNARY_NAMES.iter().find(|(_, n)| *n == name) {
            Op::Unary(*u)
        } else if let Some((b, _)) = BINARY_NAMES.iter().find(|(_, n)| *n == name) {
            Op::Binary(*b)
        } else if let Some((k, _)) = REDUCE_NAMES.iter().find(|(_, n)| *n == name) {
            Op::Reduce { kind: *k, axes: a.usizes("axes")?, keep_dims: a.flag("keep_dims")? }
        } else {
            match name {
                "clip" => Op::Clip { min: a.float("min")?, max: a.float("max")? },
                "where" => Op::Where,
                "matmul" => Op::MatMul,
                "cast" => {
                    let to = a.ident("to")?;
                    Op::Cast { to: DType::from_name(&to).ok_or_else(|| a.bad("to", "unknown dtype"))? }
                }
                "conv2d" => Op::Conv2d {
                    strides: a.pair("strides")?,
                    pads: a.quad("pads")?,
                    dilations: a.pair("dilations")?,
                    groups: a.int("groups")? as usize,
                },
                "max_pool2d" | "avg_pool2d" => Op::Pool2d {
                    kind: if name == "max_pool2d" { PoolKind::Max } else { PoolKind::Avg },
                    window: Window {
                        kernel: a.pair("kernel")?,
                        strides: a.pair("strides")?,
                        pads: a.quad("pads")?,
                        dilations: a.pair("dilations")?,
                    },
                    ceil_mode: a.flag("ceil_mode")?,
                    count_include_pad: a.flag("count_include_pad")?,
                },
                "argmax" | "argmin" => Op::ArgReduce {
                    max: name == "argmax",
                    axis: a.int("axis")? as usize,
                    keep_dims: a.flag("keep_dims")?,
                    select_last: a.flag("select_last")?,
                },
                "reshape" => Op::Reshape { shape: a.usizes("shape")? },
                "expand" => Op::Expand { shape: a.usizes("shape")? },
                "transpose" => Op::Transpose { perm: a.usizes("perm")? },
                "concat" => Op::Concat { axis: a.int("axis")? as usize },
                "gather" => Op::Gather { axis: a.int("axis")? as usize },
                "fused" => Op::Fused(Box::new(Fused::parse(&a.string("body")?)?)),
                "to_nchwc" => Op::ToNchwc { block: a.int("block")? as usize },
                "from_nchwc" => Op::FromNchwc { block: a.int("block")? as usize },
                "conv2d_nchwc" => Op::Conv2dNchwc {
                    strides: a.pair("strides")?,
                    pads: a.quad("pads")?,
                    dilations: a.pair("dilations")?,
                    groups: a.int("groups")? as usize,
                    block: a.int("block")? as usize,
                },
                "slice" => Op::Slice { starts: a.ints("starts")?, ends: a.ints("ends")?, steps: a.ints("steps")? },
                "pad" => {
                    let pads = a.usizes("pads")?;
                    let mode = match a.ident("mode")?.as_str() {
                        "constant" => PadMode::Constant,
                        "reflect" => PadMode::Reflect,
                        "edge" => PadMode::Edge,
                        _ => return Err(a.bad("mode", "expected constant, reflect or edge")),
                    };
                    Op::Pad { pads, mode, value: a.float("value")? }
                }
                _ => return shape_err(name, "unknown op"),
            }
        };
        a.finish()?;
        Ok(op)
    }

    /// Number of operands the op takes: (least, most).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Binary(_) | Op::MatMul | Op::Gather { .. } => (2, 2),
            Op::Where => (3, 3),
            Op::Conv2d { .. } | Op::Conv2dNchwc { .. } => (2, 3),
            Op::Concat { .. } | Op::Fused(_) => (1, usize::MAX),
            _ => (1, 1),
        }
    }

    /// The static shape rule: the result type for operands of types `inputs`.
    pub fn infer(&self, inputs: &[&TensorType]) -> Result<TensorType> {
        let name = self.name();
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return shape_err(name, format!("takes {lo}..{hi} operands, got {}", inputs.len()));
        }
        let x = inputs[0];
        let rank_is = |r: usize, t: &TensorType, what: &str| -> Result<()> {
            if t.rank() != r {
                return shape_err(name, format!("{what} must have rank {r}, has type {t}"));
            }
            Ok(())
        };
        match self {
            Op::Unary(u) => {
                let want_bool = *u == UnaryOp::Not;
                if want_bool != (x.dtype == DType::Bool) {
                    return shape_err(name, format!("does not apply to {}", x.dtype));
                }
                Ok(x.clone())
            }
            Op::Binary(b) => {
                let y = inputs[1];
                if x.dtype != y.dtype {
                    return shape_err(name, format!("operand dtypes differ: {} and {}", x, y));
                }
                if b.is_logical() != (x.dtype == DType::Bool) {
                    return shape_err(name, format!("does not apply to {}", x.dtype));
                }
                let shape = broadcast_shapes(&x.shape, &y.shape)
                    .ok_or_else(|| IrError::Shape { op: name.into(), message: format!("cannot broadcast {x} with {y}") })?;
                let dtype = if b.is_comparison() { DType::Bool } else { x.dtype };
                Ok(TensorType::new(dtype, shape))
            }
            Op::Clip { .. } => Ok(x.clone()),
            Op::Cast { to } => Ok(TensorType::new(*to, x.shape.clone())),
            Op::Where => {
                let (a, b) = (inputs[1], inputs[2]);
                if x.dtype != DType::Bool || a.dtype != b.dtype {
                    return shape_err(name, format!("wants (bool, T, T), got ({x}, {a}, {b})"));
                }
                let s = broadcast_shapes(&x.shape, &a.shape).and_then(|s| broadcast_shapes(&s, &b.shape));
                let s = s.ok_or_else(|| IrError::Shape { op: name.into(), message: format!("cannot broadcast {x}, {a}, {b}") })?;
                Ok(TensorType::new(a.dtype, s))
            }
            Op::Conv2d { strides, pads, dilations, groups } => {
                let w = inputs[1];
                rank_is(4, x, "input")?;
                rank_is(4, w, "weight")?;
                let (c, o) = (x.shape[1], w.shape[0]);
                if *groups == 0 || c % groups != 0 || o % groups != 0 || w.shape[1].checked_mul(*groups) != Some(c) || w.dtype != x.dtype {
                    return shape_err(name, format!("input {x} and weight {w} do not fit groups={groups}"));
                }
                if let Some(b) = inputs.get(2) {
                    if b.shape != [o] {
                        return shape_err(name, format!("bias must be [{o}], is {b}"));
                    }
                }
                let win = Window { kernel: [w.shape[2], w.shape[3]], strides: *strides, pads: *pads, dilations: *dilations };
                let oh = win.output_extent(0, x.shape[2], false);
                let ow = win.output_extent(1, x.shape[3], false);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => Ok(TensorType::new(x.dtype, vec![x.shape[0], o, oh, ow])),
                    _ => shape_err(name, format!("kernel {:?} does not fit input {x} with pads {:?}", win.kernel, win.pads)),
                }
            }
            Op::MatMul => {
                let y = inputs[1];
                if x.rank() < 2 || y.rank() < 2 || x.dtype != y.dtype {
                    return shape_err(name, format!("wants two tensors of rank >= 2, got {x} and {y}"));
                }
                let (m, k) = (x.shape[x.rank() - 2], x.shape[x.rank() - 1]);
                let (k2, n) = (y.shape[y.rank() - 2], y.shape[y.rank() - 1]);
                if k != k2 {
                    return shape_err(name, format!("inner dimensions differ: {x} times {y}"));
                }
                let batch = broadcast_shapes(&x.shape[..x.rank() - 2], &y.shape[..y.rank() - 2])
                    .ok_or_else(|| IrError::Shape { op: name.into(), message: format!("batch dims of {x} and {y} do not broadcast") })?;
                let mut shape = batch;
                shape.extend([m, n]);
                Ok(TensorType::new(x.dtype, shape))
            }
            // NCHW, or NCHWc ([N, C/b, H, W, b]) whose trailing block axis is kept.
            Op::Pool2d { window, ceil_mode, .. } => {
                if x.rank() != 5 {
                    rank_is(4, x, "input")?;
                }
                let oh = window.output_extent(0, x.shape[2], *ceil_mode);
                let ow = window.output_extent(1, x.shape[3], *ceil_mode);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => {
                        let mut shape = vec![x.shape[0], x.shape[1], oh, ow];
                        shape.extend(x.shape.get(4));
                        Ok(TensorType::new(x.dtype, shape))
                    }
                    _ => shape_err(name, format!("window {:?} does not fit input {x}", window.kernel)),
                }
            }
            Op::Reduce { axes, keep_dims, .. } => {
                check_axes(name, axes, x.rank())?;
                let mut shape = Vec::new();
                for (i, &d) in x.shape.iter().enumerate() {
                    if !axes.contains(&i) {
                        shape.push(d);
                    } else if *keep_dims {
                        shape.push(1);
                    }
                }
                Ok(TensorType::new(x.dtype, shape))
            }
            Op::ArgReduce { axis, keep_dims, .. } => {
                check_axes(name, &[*axis], x.rank())?;
                let mut shape = x.shape.clone();
                if *keep_dims {
                    shape[*axis] = 1;
                } else {
                    shape.remove(*axis);
                }
                Ok(TensorType::new(DType::I64, shape))
            }
            Op::Reshape { shape } => {
                let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if count != Some(x.numel()) {
                    return shape_err(name, format!("cannot reshape {x} to {shape:?}"));
                }
                Ok(TensorType::new(x.dtype, shape.clone()))
            }
            Op::Transpose { perm } => {
                let mut seen = vec![false; x.rank()];
                if perm.len() != x.rank() || perm.iter().any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true)) {
                    return shape_err(name, format!("perm {perm:?} is not a permutation of the axes of {x}"));
                }
                Ok(TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect::<Vec<_>>()))
            }
            Op::Concat { axis } => {
                check_axes(name, &[*axis], x.rank())?;
                let mut shape = x.shape.clone();
                for t in &inputs[1..] {
                    let same_rest =
                        t.rank() == x.rank() && t.dtype == x.dtype && (0..x.rank()).all(|i| i == *axis || t.shape[i] == x.shape[i]);
                    if !same_rest {
                        return shape_err(name, format!("cannot concatenate {x} and {t} along axis {axis}"));
                    }
                    shape[*axis] = shape[*axis]
                        .checked_add(t.shape[*axis])
                        .ok_or_else(|| IrError::Shape { op: name.into(), message: "extent overflows".into() })?;
                }
                Ok(TensorType::new(x.dtype, shape))
            }
            Op::Slice { starts, ends, steps } => {
                if starts.len() != x.rank() || ends.len() != x.rank() || steps.len() != x.rank() {
                    return shape_err(name, format!("needs one start, end and step per axis of {x}"));
                }
                let mut shape = Vec::new();
                for i in 0..x.rank() {
                    let d = x.shape[i] as i64;
                    let (s, e, st) = (starts[i], ends[i], steps[i]);
                    // A backwards slice must start on an element; a forward one may start at the end.
                    let start_ok = if st > 0 { (0..=d).contains(&s) } else { (0..d).contains(&s) };
                    let ok = st != 0 && st != i64::MIN && start_ok && (-1..=d).contains(&e);
                    if !ok {
                        return shape_err(name, format!("axis {i}: start {s}, end {e}, step {st} out of range for {x}"));
                    }
                    shape.push(slice_len(s, e, st));
                }
                Ok(TensorType::new(x.dtype, shape))
            }
            Op::Pad { pads, mode, .. } => {
                let r = x.rank();
                if pads.len() != 2 * r {
                    return shape_err(name, format!("needs {} pads for {x}", 2 * r));
                }
                if *mode == PadMode::Reflect && (0..r).any(|i| pads[i].max(pads[r + i]) >= x.shape[i].max(1)) {
                    return shape_err(name, format!("reflect pads {pads:?} must be smaller than the dims of {x}"));
                }
                let dims: Option<Vec<usize>> = (0..r).map(|i| x.shape[i].checked_add(pads[i])?.checked_add(pads[r + i])).collect();
                let dims = dims.ok_or_else(|| IrError::Shape { op: name.into(), message: format!("pads {pads:?} overflow") })?;
                Ok(TensorType::new(x.dtype, dims))
            }
            Op::Expand { shape } => match broadcast_shapes(&x.shape, shape) {
                Some(s) if &s == shape => Ok(TensorType::new(x.dtype, s)),
                _ => shape_err(name, format!("cannot broadcast {x} to {shape:?}")),
            },
            Op::Gather { axis } => {
                let idx = inputs[1];
                check_axes(name, &[*axis], x.rank())?;
                if idx.dtype != DType::I64 {
                    return shape_err(name, format!("indices must be i64, are {idx}"));
                }
                let mut shape = x.shape[..*axis].to_vec();
                shape.extend(&idx.shape);
                shape.extend(&x.shape[axis + 1..]);
                Ok(TensorType::new(x.dtype, shape))
            }
            Op::Fused(f) => f.infer(inputs),
            Op::ToNchwc { block } => {
                rank_is(4, x, "input")?;
                if *block == 0 || x.shape[1] % block != 0 {
                    return shape_err(name, format!("{x} has no whole blocks of {block} channels"));
                }
                Ok(TensorType::new(x.dtype, vec![x.shape[0], x.shape[1] / block, x.shape[2], x.shape[3], *block]))
            }
            Op::FromNchwc { block } => {
                rank_is(5, x, "input")?;
                if x.shape[4] != *block {
                    return shape_err(name, format!("{x} is not in blocks of {block} channels"));
                }
                Ok(TensorType::new(x.dtype, vec![x.shape[0], x.shape[1] * block, x.shape[2], x.shape[3]]))
            }
            Op::Conv2dNchwc { strides, pads, dilations, groups, block } => {
                // The shape rule of the plain convolution, on the unblocked input.
                let unblocked = match x.rank() {
                    4 => x.clone(),
                    5 => Op::FromNchwc { block: x.shape[4] }.infer(&[x])?,
                    _ => return shape_err(name, format!("the input {x} is neither NCHW nor NCHWc")),
                };
                let mut operands = vec![&unblocked];
                operands.extend(&inputs[1..]);
                let plain = Op::Conv2d { strides: *strides, pads: *pads, dilations: *dilations, groups: *groups }.infer(&operands)?;
                let (c, o) = (unblocked.shape[1], plain.shape[1]);
                if !(*groups == 1 || (*groups == c && o == c)) {
                    return shape_err(name, format!("groups={groups} is neither dense nor depthwise"));
                }
                if *groups > 1 && (x.rank() != 5 || x.shape[4] != *block) {
                    return shape_err(name, format!("a depthwise convolution's input {x} must be blocked like its result"));
                }
                Op::ToNchwc { block: *block }.infer(&[&plain])
            }
        }
    }

    /// A convolution or matrix product: an op whose program is an output loop nest over an
    /// init store and a reduction, which elementwise consumers can join as an epilogue.
    pub fn is_dense(&self) -> bool {
        matches!(self, Op::Conv2d { .. } | Op::Conv2dNchwc { .. } | Op::MatMul)
    }

    /// An unpadded convolution: its input loads stay inside the input, so an elementwise
    /// producer can be computed as they happen (a prologue).
    pub fn is_unpadded_conv(&self) -> bool {
        matches!(self, Op::Conv2d { pads: [0, 0, 0, 0], .. } | Op::Conv2dNchwc { pads: [0, 0, 0, 0], .. })
    }

    /// The window of a conv2d whose weight has spatial extent `kernel`.
    pub fn conv_window(&self, kernel: [usize; 2]) -> Option<Window> {
        match self {
            Op::Conv2d { strides, pads, dilations, .. } => Some(Window { kernel, strides: *strides, pads: *pads, dilations: *dilations }),
            _ => None,
        }
    }

    /// Multiply-accumulate count of one evaluation, for ops that do dense arithmetic.
    pub fn macs(&self, inputs: &[&TensorType], output: &TensorType) -> u64 {
        match self {
            Op::Conv2d { .. } => {
                let w = &inputs[1].shape;
                (output.numel() * w[1] * w[2] * w[3]) as u64
            }
            Op::MatMul => {
                let x = &inputs[0].shape;
                (output.numel() * x[x.len() - 1]) as u64
            }
            Op::Fused(f) => f.macs(inputs),
            Op::Conv2dNchwc { .. } => {
                let w = &inputs[1].shape;
                (output.numel() * w[1] * w[2] * w[3]) as u64
            }
            _ => 0,
        }
    }
}

/// Number of elements a slice takes along one axis.
pub fn slice_len(start: i64, end: i64, step: i64) -> usize {
    // In i128 so that steps near the ends of i64 cannot overflow.
    let (start, end, step) = (start as i128, end as i128, step as i128);
    if step > 0 && end > start {
        ((end - start + step - 1) / step) as usize
    } else if step < 0 && start > end {
        ((start - end - step - 1) / -step) as usize
    } else {
        0
    }
}

fn check_axes(op: &str, axes: &[usize], rank: usize) -> Result<()> {
    let sorted = axes.windows(2).all(|w| w[0] < w[1]);
    if !sorted || axes.iter().any(|&a| a >= rank) {
        return shape_err(op, format!("axes {axes:?} invalid for rank {rank}"));
    }
    Ok(())
}

/// Takes named attributes out of a parsed attribute list, so leftovers can be reported.
struct AttrReader<'a> {
    op: &'a str,
    attrs: Vec<(String, Attr)>,
}

impl AttrReader<'_> {
    fn bad(&self, key: &str, message: &str) -> IrError {
        IrError::Shape { op: self.op.into(), message: format!("attribute {key}: {message}") }
    }

    fn take(&mut self, key: &str) -> Result<Attr> {
        match self.attrs.iter().position(|(k, _)| k == key) {
            Some(i) => Ok(self.attrs.remove(i).1),
            None => Err(self.bad(key, "missing")),
        }
    }

    fn int(&mut self, key: &str) -> Result<i64> {
        match self.take(key)? {
            Attr::Int(v) => Ok(v),
            _ => Err(self.bad(key, "expected an integer")),
        }
    }

    fn flag(&mut self, key: &str) -> Result<bool> {
        match self.int(key)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad(key, "expected 0 or 1")),
        }
    }

    fn float(&mut self, key: &str) -> Result<f32> {
        match self.take(key)? {
            Attr::Float(v) => Ok(v),
            Attr::Int(v) => Ok(v as f32),
            _ => Err(self.bad(key, "expected a number")),
        }
    }

    fn string(&mut self, key: &str) -> Result<String> {
        match self.take(key)? {
            Attr::Str(v) => Ok(v),
            _ => Err(self.bad(key, "expected a quoted string")),
        }
    }

    fn ident(&mut self, key: &str) -> Result<String> {
        match self.take(key)? {
            Attr::Ident(v) => Ok(v),
            _ => Err(self.bad(key, "expected a name")),
        }
    }

    fn ints(&mut self, key: &str) -> Result<Vec<i64>> {
        match self.take(key)? {
            Attr::Ints(v) => Ok(v),
            _ => Err(self.bad(key, "expected a list of integers")),
        }
    }

    fn usizes(&mut self, key: &str) -> Result<Vec<usize>> {
        let v = self.ints(key)?;
        if v.iter().any(|&x| x < 0) {
            return Err(self.bad(key, "expected non-negative integers"));
        }
        Ok(v.into_iter().map(|x| x as usize).collect())
    }

    fn pair(&mut self, key: &str) -> Result<[usize; 2]> {
        let v = self.usizes(key)?;
        v.try_into().map_err(|_| self.bad(key, "expected 2 integers"))
    }

    fn quad(&mut self, key: &str) -> Result<[usize; 4]> {
        let v = self.usizes(key)?;
        v.try_into().map_err(|_| self.bad(key, "expected 4 integers"))
    }

    fn finish(self) -> Result<()> {
        match self.attrs.first() {
            Some((k, _)) => Err(IrError::Shape { op: self.op.into(), message: format!("unknown attribute {k}") }),
            None => Ok(()),
        }
    }
}

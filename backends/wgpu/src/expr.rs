//! WGSL statements and expressions of the loop IR, in the invocation that runs them.
//!
//! Integers are i32: loop IR's i64 indices and integer data are computed in 32 bits (an i64
//! buffer stores the low word and its sign extension). Integer `/` and `%` floor, as in the
//! loop IR, except where both operands are known non-negative and WGSL's truncating ones
//! give the same.

use std::collections::HashSet;
use std::fmt::Write;

use ir::loops::{BinOp, BufId, Expr, Func, Intrinsic, Loop, LoopKind, Stmt, VarId};
use ir::DType;

use crate::wgsl::{buf_name, storage_type};

/// Functions every shader may call. Infinity and NaN come from private variables: WGSL
/// refuses constant expressions that evaluate to them.
pub const HELPERS: &str = r#"var<private> INF_BITS: u32 = 0x7f800000u;
var<private> NAN_BITS: u32 = 0x7fc00000u;
fn inf_() -> f32 { return bitcast<f32>(INF_BITS); }
fn nan_() -> f32 { return bitcast<f32>(NAN_BITS); }
fn i64w(v: i32) -> vec2<i32> { return vec2<i32>(v, v >> 31u); }
fn idiv(a: i32, b: i32) -> i32 { let q = a / b; let r = a % b; return select(q, q - 1i, r != 0i && ((r < 0i) != (b < 0i))); }
fn imod(a: i32, b: i32) -> i32 { let r = a % b; return select(r, r + b, r != 0i && ((r < 0i) != (b < 0i))); }
fn powf_(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  let m = pow(abs(a), b);
  if (a < 0.0) {
    if (b != floor(b)) { return nan_(); }
    return select(m, -m, abs(b % 2.0) == 1.0);
  }
  return m;
}
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -20.0, 20.0)); }
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7.
fn erf_(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let p = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
  return sign(x) * (1.0 - p * exp(-x * x));
}

"#;

pub(crate) struct Emitter<'a> {
    f: &'a Func,
    /// Buffers declared as arrays of vec4 (see `vec4`).
    wide: &'a HashSet<BufId>,
    /// Inside a GPU nest: the invocation's index and the workgroup size, with which
    /// cooperative loops share their iterations.
    invocation: Option<(String, i64)>,
    /// Inside a vec4 loop: the local vec4 holding each wide access, and the lane emitted.
    lanes: Vec<((BufId, Vec<Expr>), String)>,
    lane: usize,
    /// Numbers the locals of vec4 loops.
    locals: usize,
}

type R<T> = Result<T, String>;

impl<'a> Emitter<'a> {
    pub fn new(f: &'a Func, wide: &'a HashSet<BufId>) -> Emitter<'a> {
        Emitter { f, wide, invocation: None, lanes: Vec::new(), lane: 0, locals: 0 }
    }

    /// Cooperative loops below share their iterations among `size` invocations, this one
    /// being number `index` (a WGSL i32).
    pub fn in_workgroup(&mut self, index: String, size: i64) {
        self.invocation = Some((index, size));
    }

    pub fn var(&self, v: VarId) -> String {
        format!("v{}", v.0)
    }

    pub fn stmts(&mut self, body: &[Stmt], depth: usize, out: &mut String) -> R<()> {
        for s in body {
            self.stmt(s, depth, out)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, depth: usize, out: &mut String) -> R<()> {
        let pad = "  ".repeat(depth);
        match s {
            // WGSL has no cache hints.
            Stmt::Prefetch { .. } => {}
            Stmt::For(l) if l.kind == LoopKind::GpuCooperative => self.cooperative(l, depth, out)?,
            Stmt::For(l) if l.kind == LoopKind::Vectorized && self.wide_loop(l, depth, out)? => {}
            Stmt::For(l) => {
                let name = &self.f.vars[l.var.index()];
                if l.kind.is_gpu() {
                    return Err(format!(
                        "{} loop {name} is not where a dispatch can bind it (a workgroup loop holding one invocation loop, outermost)",
                        l.kind.name()
                    ));
                }
                let v = self.var(l.var);
                if l.extent == 1 {
                    let _ = writeln!(out, "{pad}{{ let {v}: i32 = 0i; // {name}");
                } else {
                    let _ = writeln!(out, "{pad}for (var {v}: i32 = 0i; {v} < {}i; {v}++) {{ // {name}", l.extent);
                }
                self.stmts(&l.body, depth + 1, out)?;
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::If { cond, then } => {
                let (c, t) = self.expr(cond)?;
                if t != DType::Bool {
                    return Err("an if condition is not bool".into());
                }
                let _ = writeln!(out, "{pad}if ({c}) {{");
                self.stmts(then, depth + 1, out)?;
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Store { buf, index, value } => {
                let b = self.f.buffer(*buf);
                let at = self.element(*buf, index)?;
                let (v, t) = self.expr(value)?;
                if t != b.dtype {
                    return Err(format!("store of {t} into %{} of {}", b.name, b.dtype));
                }
                let _ = match b.dtype {
                    DType::F32 | DType::F16 => writeln!(out, "{pad}{at} = {v};"),
                    DType::I64 => writeln!(out, "{pad}{at} = i64w({v});"),
                    DType::Bool => writeln!(out, "{pad}{at} = select(0u, 1u, {v});"),
                };
            }
        }
        Ok(())
    }

    /// The WGSL reference to element `index` of `b`: the lane's component of a vec4 local in
    /// a vec4 loop, a component of a vec4 of a wide buffer, or the element itself.
    fn element(&self, b: BufId, index: &[Expr]) -> R<String> {
        if let Some((_, local)) = self.lanes.iter().find(|((w, i), _)| *w == b && i.as_slice() == index) {
            return Ok(format!("{local}[{}]", self.lane));
        }
        let offset = self.linear(&self.f.buffer(b).shape, index)?;
        Ok(if self.wide.contains(&b) {
            format!("{}[({offset}) / 4i][({offset}) % 4i]", buf_name(self.f, b))
        } else {
            format!("{}[{offset}]", buf_name(self.f, b))
        })
    }

    /// A cooperative loop nest (its perfectly nested serial loops fused): iteration `c` runs
    /// in invocation `c % size`, between barriers, so that no invocation reads the tile
    /// before it is complete or overwrites it while another still reads the previous one.
    fn cooperative(&mut self, l: &Loop, depth: usize, out: &mut String) -> R<()> {
        let pad = "  ".repeat(depth);
        let name = &self.f.vars[l.var.index()];
        let Some((index, size)) = self.invocation.clone() else {
            return Err(format!("cooperative loop {name} is not inside an invocation loop"));
        };
        let mut nest = vec![l];
        while let [Stmt::For(n)] = nest[nest.len() - 1].body.as_slice() {
            if !matches!(n.kind, LoopKind::Serial | LoopKind::Unrolled) {
                break;
            }
            nest.push(n);
        }
        let total: i64 = nest.iter().map(|n| n.extent).product();
        let c = format!("c{}", l.var.0);
        let _ = writeln!(out, "{pad}workgroupBarrier();");
        let _ = writeln!(out, "{pad}for (var {c}: i32 = {index}; {c} < {total}i; {c} += {size}i) {{ // {name}, cooperative");
        let mut stride = total;
        for (k, n) in nest.iter().enumerate() {
            stride /= n.extent;
            let q = if stride == 1 { c.clone() } else { format!("({c} / {stride}i)") };
            let v = if k == 0 { q } else { format!("{q} % {}i", n.extent) };
            let _ = writeln!(out, "{pad}  let {}: i32 = {v};", self.var(n.var));
        }
        self.stmts(&nest[nest.len() - 1].body, depth + 1, out)?;
        let _ = writeln!(out, "{pad}}}");
        let _ = writeln!(out, "{pad}workgroupBarrier();");
        Ok(())
    }

    /// A vectorized loop of 4 lanes with a vec4 plan: its wide loads into vec4 locals, the
    /// lanes one after another on the locals' components, the wide stores from vec4 locals.
    /// False (nothing emitted) when the loop has no plan.
    fn wide_loop(&mut self, l: &Loop, depth: usize, out: &mut String) -> R<bool> {
        let Some(plan) = crate::vec4::plan(self.f, l) else { return Ok(false) };
        let pad = "  ".repeat(depth);
        let first = |index: &[Expr]| index.iter().map(|e| e.clone().substitute(l.var, &Expr::Int(0))).collect::<Vec<_>>();
        let _ = writeln!(out, "{pad}{{ // {}: 4 lanes, vec4", self.f.vars[l.var.index()]);
        let mut lanes = Vec::new();
        let mut wide_stores = Vec::new();
        for (is_store, (b, index)) in plan.loads.iter().map(|a| (false, a)).chain(plan.stores.iter().map(|a| (true, a))) {
            let buf = self.f.buffer(*b);
            let ty = storage_type(buf.dtype).unwrap_or("f32");
            let at = format!("{}[({}) / 4i]", buf_name(self.f, *b), self.linear(&buf.shape, &first(index))?);
            let local = format!("w{}", self.locals);
            self.locals += 1;
            if is_store {
                let _ = writeln!(out, "{pad}  var {local}: vec4<{ty}>;");
                wide_stores.push(format!("{at} = {local};"));
            } else {
                let _ = writeln!(out, "{pad}  let {local} = {at};");
            }
            lanes.push(((*b, index.clone()), local));
        }
        let outer = std::mem::replace(&mut self.lanes, lanes);
        for lane in 0..4 {
            self.lane = lane;
            let _ = writeln!(out, "{pad}  {{ let {}: i32 = {lane}i;", self.var(l.var));
            self.stmts(&l.body, depth + 2, out)?;
            let _ = writeln!(out, "{pad}  }}");
        }
        self.lanes = outer;
        for s in wide_stores {
            let _ = writeln!(out, "{pad}  {s}");
        }
        let _ = writeln!(out, "{pad}}}");
        Ok(true)
    }

    /// The row-major element offset of `index` in a buffer of `shape`.
    fn linear(&self, shape: &[usize], index: &[Expr]) -> R<String> {
        if index.len() != shape.len() {
            return Err(format!("an index of rank {} into a buffer of rank {}", index.len(), shape.len()));
        }
        let strides = ir::types::strides(shape);
        let mut terms = Vec::new();
        for (e, &s) in index.iter().zip(&strides) {
            if *e == Expr::Int(0) {
                continue;
            }
            let (x, t) = self.expr(e)?;
            if t != DType::I64 {
                return Err("an index is not an integer".into());
            }
            terms.push(if s == 1 { x } else { format!("{x} * {s}i") });
        }
        Ok(if terms.is_empty() { "0".into() } else { terms.join(" + ") })
    }

    /// The WGSL of `e` and its loop IR type.
    fn expr(&self, e: &Expr) -> R<(String, DType)> {
        Ok(match e {
            Expr::Int(v) => (int_literal(*v), DType::I64),
            Expr::Float(v) => (float_literal(*v), DType::F32),
            Expr::Bool(b) => (b.to_string(), DType::Bool),
            Expr::Var(v) => (self.var(*v), DType::I64),
            Expr::Load { buf, index } => {
                let b = self.f.buffers.get(buf.index()).ok_or("a load from a missing buffer")?;
                let at = self.element(*buf, index)?;
                match b.dtype {
                    DType::F32 | DType::F16 => (at, b.dtype),
                    DType::I64 => (format!("{at}.x"), DType::I64),
                    DType::Bool => (format!("({at} != 0u)"), DType::Bool),
                }
            }
            Expr::Binary { op, a, b } => self.binary(*op, a, b)?,
            Expr::Call { f, args } => self.call(*f, args)?,
            Expr::Select { cond, a, b } => {
                let (c, _) = self.expr(cond)?;
                let (x, t) = self.expr(a)?;
                let (y, _) = self.expr(b)?;
                (format!("select({y}, {x}, {c})"), t)
            }
            Expr::Cast { to, x } => {
                let (v, from) = self.expr(x)?;
                let s = match (from, *to) {
                    (a, b) if a == b => v,
                    (DType::F32, DType::I64) => format!("i32({v})"),
                    (DType::F32, DType::Bool) => format!("({v} != 0.0)"),
                    (DType::I64, DType::F32) => format!("f32({v})"),
                    (DType::I64, DType::Bool) => format!("({v} != 0i)"),
                    (DType::Bool, DType::F32) => format!("select(0.0, 1.0, {v})"),
                    (DType::Bool, DType::I64) => format!("select(0i, 1i, {v})"),
                    (DType::F32 | DType::I64, DType::F16) => format!("f16({v})"),
                    (DType::F16, DType::F32 | DType::I64) => format!("{}({v})", if *to == DType::F32 { "f32" } else { "i32" }),
                    (DType::F16, DType::Bool) => format!("({v} != 0.0h)"),
                    (DType::Bool, DType::F16) => format!("select(0.0h, 1.0h, {v})"),
                    (a, b) => return Err(format!("a cast of {a} to {b}")),
                };
                (s, *to)
            }
        })
    }

    fn binary(&self, op: BinOp, a: &Expr, b: &Expr) -> R<(String, DType)> {
        let (x, t) = self.expr(a)?;
        let (y, u) = self.expr(b)?;
        if t != u {
            return Err(format!("{} of {t} and {u}", op.name()));
        }
        if op.is_comparison() {
            let sym = match op {
                BinOp::Lt => "<",
                BinOp::Le => "<=",
                BinOp::Gt => ">",
                BinOp::Ge => ">=",
                BinOp::Eq => "==",
                _ => "!=",
            };
            return Ok((format!("({x} {sym} {y})"), DType::Bool));
        }
        let s = match (op, t) {
            (BinOp::And, DType::Bool) => format!("({x} && {y})"),
            (BinOp::Or, DType::Bool) => format!("({x} || {y})"),
            (BinOp::Xor, DType::Bool) => format!("({x} != {y})"),
            (BinOp::Add | BinOp::Sub | BinOp::Mul, DType::F32 | DType::F16 | DType::I64) => {
                format!("({x} {} {y})", op.symbol().unwrap_or("+"))
            }
            (BinOp::Div | BinOp::Rem, DType::F32 | DType::F16) => format!("({x} {} {y})", op.symbol().unwrap_or("/")),
            // Truncating division is floor division when both sides are non-negative.
            (BinOp::Div | BinOp::Rem, DType::I64) if non_negative(a) && matches!(b, Expr::Int(v) if *v > 0) => {
                format!("({x} {} {y})", op.symbol().unwrap_or("/"))
            }
            (BinOp::Div, DType::I64) => format!("idiv({x}, {y})"),
            (BinOp::Rem, DType::I64) => format!("imod({x}, {y})"),
            (BinOp::Min, DType::F32 | DType::F16 | DType::I64) => format!("min({x}, {y})"),
            (BinOp::Max, DType::F32 | DType::F16 | DType::I64) => format!("max({x}, {y})"),
            (BinOp::Pow, DType::F32) => format!("powf_({x}, {y})"),
            _ => return Err(format!("{} of {t}", op.name())),
        };
        Ok((s, t))
    }

    fn call(&self, f: Intrinsic, args: &[Expr]) -> R<(String, DType)> {
        let vals = args.iter().map(|a| self.expr(a)).collect::<R<Vec<_>>>()?;
        let Some((x, t)) = vals.first().cloned() else { return Err(format!("{} without operands", f.name())) };
        let s = match (f, t) {
            (Intrinsic::Fma, DType::F32) if vals.len() == 3 => format!("fma({x}, {}, {})", vals[1].0, vals[2].0),
            (Intrinsic::Not, DType::Bool) => format!("(!{x})"),
            (Intrinsic::Neg, DType::F32 | DType::F16 | DType::I64) => format!("(-{x})"),
            (Intrinsic::Abs, DType::F32 | DType::F16 | DType::I64) => format!("abs({x})"),
            (Intrinsic::Sign, DType::F32 | DType::I64) => format!("sign({x})"),
            (Intrinsic::Exp, DType::F32) => format!("exp({x})"),
            (Intrinsic::Log, DType::F32) => format!("log({x})"),
            (Intrinsic::Sqrt, DType::F32) => format!("sqrt({x})"),
            (Intrinsic::Sin, DType::F32) => format!("sin({x})"),
            (Intrinsic::Cos, DType::F32) => format!("cos({x})"),
            (Intrinsic::Tanh, DType::F32) => format!("tanh_({x})"),
            (Intrinsic::Sigmoid, DType::F32) => format!("sigmoid_({x})"),
            (Intrinsic::Erf, DType::F32) => format!("erf_({x})"),
            (Intrinsic::Floor, DType::F32) => format!("floor({x})"),
            (Intrinsic::Ceil, DType::F32) => format!("ceil({x})"),
            // WGSL's round takes halves to even, as the loop IR's does.
            (Intrinsic::Round, DType::F32) => format!("round({x})"),
            _ => return Err(format!("{} of {t}", f.name())),
        };
        Ok((s, t))
    }
}

/// Whether `e` is certainly non-negative: loop variables, non-negative constants, and sums,
/// products and quotients of such.
fn non_negative(e: &Expr) -> bool {
    match e {
        Expr::Int(v) => *v >= 0,
        Expr::Var(_) => true,
        Expr::Binary { op: BinOp::Add | BinOp::Mul | BinOp::Div | BinOp::Rem | BinOp::Min | BinOp::Max, a, b } => {
            non_negative(a) && non_negative(b)
        }
        _ => false,
    }
}

/// An i32 literal; constants beyond i32 saturate (they only occur as clamp bounds).
fn int_literal(v: i64) -> String {
    let v = v.clamp(i32::MIN as i64 + 1, i32::MAX as i64);
    if v < 0 {
        format!("({v}i)")
    } else {
        format!("{v}i")
    }
}

fn float_literal(v: f32) -> String {
    if v.is_nan() {
        "nan_()".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf_()".into()
        } else {
            "(-inf_())".into()
        }
    } else if v.is_sign_negative() {
        format!("({v:?}f)")
    } else {
        format!("{v:?}f")
    }
}

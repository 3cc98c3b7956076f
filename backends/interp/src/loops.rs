//! An evaluator of loop IR: runs a tensor program on tensors, as the oracle that lowered (and
//! scheduled) programs are checked against.
//!
//! The program is first translated into a tree of typed closures (checking types, scopes and
//! ranks once, and folding affine index arithmetic), which then runs statement by statement:
//! still a tree walk, but one that does not re-decode the IR at every multiply-add.
//!
//! Semantics, which backends must match: loops run in order whatever their kind; integer
//! arithmetic wraps, and integer `/` and `%` floor (the remainder takes the divisor's sign);
//! f32 `min`/`max` ignore a NaN operand (IEEE minNum/maxNum); both sides of a `select` are
//! evaluated, so an out-of-bounds load in either is an error; casts convert as Rust's `as`
//! does (f32 to i64 truncates and saturates), and to bool test for non-zero; transcendental
//! intrinsics and `pow` (f32 only) round once from f64, as the graph interpreter does.

use std::rc::Rc;

use ir::loops::{BinOp, BufKind, Expr, Func, Intrinsic, Stmt};
use ir::{DType, Tensor, TensorData, TensorType};

use crate::erf::erf;
use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;
/// Run-time errors are boxed so that every closure returns a small `Result`.
type Run<T> = std::result::Result<T, Box<InterpError>>;
type Ex<T> = Box<dyn Fn(&Env) -> Run<T>>;
type St = Box<dyn Fn(&mut Env) -> Run<()>>;

/// Executes a loop IR function on tensors: `args` in the order of `f.params()`; the
/// function writes into them (the output param). Temps are allocated here. Loop kinds do not
/// change the result (parallel/vectorized/unrolled run serially). Errors, never panics, on a
/// dtype or element-count mismatch between args and params (a param may view its argument
/// with another shape of the same size) or an out-of-bounds index.
pub fn run_func(f: &Func, args: &mut [Tensor]) -> Result<()> {
    let invalid = |msg: String| InterpError::Invalid(format!("func \"{}\": {msg}", f.name));
    let params = f.params();
    if args.len() != params.len() {
        return Err(invalid(format!(
            "takes {} arguments, got {}",
            params.len(),
            args.len()
        )));
    }
    for (&p, t) in params.iter().zip(args.iter()) {
        let b = f.buffer(p);
        crate::check::check_tensor(t)?;
        // A parameter's shape is the program's view of dense memory: programs may collapse
        // axes, so any argument with the same element count fits.
        if t.dtype() != b.dtype || t.numel() != ir::types::numel(&b.shape) {
            let want = TensorType::new(b.dtype, b.shape.clone());
            return Err(invalid(format!(
                "%{} is {want}, but the argument is {}",
                b.name,
                t.ty()
            )));
        }
    }
    // Every buffer gets a slot in the vector of its element type.
    let mut counts = [0usize; 3];
    let mut slots = Vec::with_capacity(f.buffers.len());
    for b in &f.buffers {
        let k = match b.dtype {
            DType::I64 => 1,
            DType::Bool => 2,
            // f16 buffers are held as f32 values that are all halves: stores round.
            DType::F32 | DType::F16 => 0,
        };
        slots.push((b.dtype, counts[k]));
        counts[k] += 1;
    }
    let mut c = Compiler {
        f,
        slots: &slots,
        scope: vec![None; f.vars.len()],
    };
    let body = c.block(&f.body)?;
    let mut env = Env {
        vars: vec![0; f.vars.len()],
        f: Vec::new(),
        i: Vec::new(),
        b: Vec::new(),
    };
    // The params' data moves into the environment for the run and back afterwards.
    let mut params = args.iter_mut();
    for b in &f.buffers {
        let data = match b.kind {
            BufKind::Param => {
                let t = params
                    .next()
                    .ok_or_else(|| invalid("too few arguments".into()))?;
                match &b.layout {
                    // The buffer reads its argument transposed: a copy in the buffer's
                    // layout (what was written to it is not copied back).
                    Some(layout) => permuted(t, layout, &b.shape).map_err(invalid)?,
                    None => std::mem::replace(&mut t.data, TensorData::Bool(Vec::new())),
                }
            }
            BufKind::Temp => {
                let ty = TensorType::new(b.dtype, b.shape.clone());
                crate::check::check_shape(&b.shape)?;
                crate::check::check_allocatable(&ty)?;
                Tensor::zeros(&ty).map_err(|e| invalid(e.to_string()))?.data
            }
        };
        match data {
            TensorData::F32(v) => env.f.push(v),
            TensorData::F16(v) => env.f.push(v.iter().map(|&x| f32::from(x)).collect()),
            TensorData::I64(v) => env.i.push(v),
            TensorData::Bool(v) => env.b.push(v),
        }
    }
    let result = body.iter().try_for_each(|s| s(&mut env));
    let (mut fs, mut is, mut bs) = (env.f.into_iter(), env.i.into_iter(), env.b.into_iter());
    let mut params = args.iter_mut();
    for b in &f.buffers {
        let data = match b.dtype {
            DType::F32 => fs.next().map(TensorData::F32),
            DType::F16 => fs.next().map(|v| TensorData::F16(v.into_iter().map(ir::f16::from_f32).collect())),
            DType::I64 => is.next().map(TensorData::I64),
            _ => bs.next().map(TensorData::Bool),
        };
        if let (BufKind::Param, Some(t), Some(d)) = (b.kind, params.next(), data) {
            // A transposed copy goes away; the argument kept its own data.
            if b.layout.is_none() {
                t.data = d;
            }
        }
    }
    result.map_err(|e| *e)
}

/// What a running program reads and writes: loop variables and the buffers by element type.
struct Env {
    vars: Vec<i64>,
    f: Vec<Vec<f32>>,
    i: Vec<Vec<i64>>,
    b: Vec<Vec<bool>>,
}

/// A compiled expression yielding a `T`: a constant, or code to run.
enum Val<T> {
    Const(T),
    Code(Ex<T>),
}

/// An integer expression: affine ones (the usual index arithmetic) are evaluated inline as a
/// constant plus variables times coefficients, wrapping like the operators they replace.
enum Int {
    Const(i64),
    Var(usize),
    Affine(i64, Vec<(usize, i64)>),
    Code(Ex<i64>),
}

/// Evaluation of a compiled expression; constants and affine integers need no call.
trait Eval<T>: 'static {
    fn eval(&self, env: &Env) -> Run<T>;
}

impl<T: Copy + 'static> Eval<T> for Val<T> {
    #[inline]
    fn eval(&self, env: &Env) -> Run<T> {
        match self {
            Val::Const(x) => Ok(*x),
            Val::Code(e) => e(env),
        }
    }
}

impl Eval<i64> for Int {
    #[inline]
    fn eval(&self, env: &Env) -> Run<i64> {
        match self {
            Int::Const(c) => Ok(*c),
            Int::Var(v) => Ok(env.vars[*v]),
            Int::Affine(c, terms) => Ok(terms.iter().fold(*c, |acc, &(v, k)| {
                acc.wrapping_add(env.vars[v].wrapping_mul(k))
            })),
            Int::Code(e) => e(env),
        }
    }
}

impl Int {
    fn affine(c: i64, terms: Vec<(usize, i64)>) -> Int {
        match terms[..] {
            [] => Int::Const(c),
            [(v, 1)] if c == 0 => Int::Var(v),
            _ => Int::Affine(c, terms),
        }
    }
}

enum Code {
    F(Val<f32>),
    I(Int),
    B(Val<bool>),
}

impl Code {
    fn dtype(&self) -> DType {
        match self {
            Code::F(_) => DType::F32,
            Code::I(_) => DType::I64,
            Code::B(_) => DType::Bool,
        }
    }
}

fn oob(desc: &str, axis: usize, i: i64) -> Box<InterpError> {
    Box::new(InterpError::Invalid(format!(
        "index {i} is out of range for axis {axis} of {desc}"
    )))
}

struct Compiler<'a> {
    f: &'a Func,
    slots: &'a [(DType, usize)],
    /// The extent of each loop variable bound where the code being compiled runs.
    scope: Vec<Option<i64>>,
}

impl Compiler<'_> {
    fn err(&self, msg: String) -> InterpError {
        InterpError::Invalid(format!("func \"{}\": {msg}", self.f.name))
    }

    fn block(&mut self, body: &[Stmt]) -> Result<Vec<St>> {
        body.iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &Stmt) -> Result<St> {
        match s {
            // A cache hint computes nothing.
            Stmt::Prefetch { .. } => Ok(Box::new(|_: &mut Env| Ok(()))),
            Stmt::For(l) => {
                let v = l.var.index();
                if v >= self.scope.len() || self.scope[v].is_some() {
                    return Err(self.err(format!(
                        "loop variable {} is undefined or bound twice",
                        l.var.0
                    )));
                }
                self.scope[v] = Some(l.extent);
                let body = self.block(&l.body);
                self.scope[v] = None;
                let (body, extent) = (body?, l.extent);
                Ok(Box::new(move |env: &mut Env| {
                    for i in 0..extent {
                        env.vars[v] = i;
                        for s in &body {
                            s(env)?;
                        }
                    }
                    Ok(())
                }))
            }
            Stmt::If { cond, then } => {
                let Code::B(c) = self.expr(cond)? else {
                    return Err(self.err("an if condition is not bool".into()));
                };
                let then = self.block(then)?;
                Ok(Box::new(move |env: &mut Env| {
                    if c.eval(env)? {
                        for s in &then {
                            s(env)?;
                        }
                    }
                    Ok(())
                }))
            }
            Stmt::Store { buf, index, value } => {
                let (dtype, slot) = self.slot(buf.index())?;
                let at = self.offset(buf.index(), index)?;
                Ok(match (self.expr(value)?, dtype) {
                    (Code::F(v), DType::F32) => Box::new(move |env: &mut Env| {
                        let (o, x) = (at(env)?, v.eval(env)?);
                        env.f[slot][o] = x;
                        Ok(())
                    }),
                    (Code::F(v), DType::F16) => Box::new(move |env: &mut Env| {
                        let (o, x) = (at(env)?, v.eval(env)?);
                        env.f[slot][o] = round_to_f16(x);
                        Ok(())
                    }),
                    (Code::I(v), DType::I64) => Box::new(move |env: &mut Env| {
                        let (o, x) = (at(env)?, v.eval(env)?);
                        env.i[slot][o] = x;
                        Ok(())
                    }),
                    (Code::B(v), DType::Bool) => Box::new(move |env: &mut Env| {
                        let (o, x) = (at(env)?, v.eval(env)?);
                        env.b[slot][o] = x;
                        Ok(())
                    }),
                    (v, _) => {
                        let name = &self.f.buffers[buf.index()].name;
                        return Err(
                            self.err(format!("store of {} into %{name} of {dtype}", v.dtype()))
                        );
                    }
                })
            }
        }
    }

    fn slot(&self, buf: usize) -> Result<(DType, usize)> {
        self.slots
            .get(buf)
            .copied()
            .ok_or_else(|| self.err(format!("buffer {buf} does not exist")))
    }

    /// The element offset of `buf[index]`, checking every index against its extent at run
    /// time unless its static range is inside it. Affine indices known to be in range fold
    /// into one affine offset.
    fn offset(&mut self, buf: usize, index: &[Expr]) -> Result<Ex<usize>> {
        let b = &self.f.buffers[buf];
        if index.len() != b.shape.len() {
            let (r, n) = (b.shape.len(), index.len());
            return Err(self.err(format!(
                "%{} has rank {r} but is indexed with {n} indices",
                b.name
            )));
        }
        let desc: Rc<str> =
            format!("%{}: {}", b.name, TensorType::new(b.dtype, b.shape.clone())).into();
        let strides = ir::types::strides(&b.shape);
        let (mut base, mut terms) = (0i64, Vec::<(usize, i64)>::new());
        let mut rest = Vec::new();
        for (axis, e) in index.iter().enumerate() {
            let (n, stride) = (b.shape[axis] as i64, strides[axis] as i64);
            let safe = self.range(e).is_some_and(|(lo, hi)| lo >= 0 && hi < n);
            match self.affine(e) {
                Some((c, t)) if safe => {
                    base = base.wrapping_add(c.wrapping_mul(stride));
                    for (v, k) in t {
                        match terms.iter_mut().find(|(w, _)| *w == v) {
                            Some((_, x)) => *x = x.wrapping_add(k.wrapping_mul(stride)),
                            None => terms.push((v, k.wrapping_mul(stride))),
                        }
                    }
                }
                _ => {
                    let ix = self.int(e, &format!("index {axis} of %{}", b.name))?;
                    rest.push((axis, ix, n, stride as usize, safe));
                }
            }
        }
        let base = Int::affine(base, terms);
        if rest.is_empty() {
            return Ok(Box::new(move |env: &Env| Ok(base.eval(env)? as usize)));
        }
        Ok(Box::new(move |env: &Env| {
            let mut off = base.eval(env)? as usize;
            for (axis, ix, n, stride, safe) in &rest {
                let i = ix.eval(env)?;
                if !safe && (i < 0 || i >= *n) {
                    return Err(oob(&desc, *axis, i));
                }
                off += i as usize * stride;
            }
            Ok(off)
        }))
    }

    /// The inclusive range of an integer expression over the extents of the loops in scope,
    /// when interval arithmetic bounds it without overflow.
    fn range(&self, e: &Expr) -> Option<(i64, i64)> {
        let corners = |a: (i64, i64), b: (i64, i64), f: fn(i64, i64) -> Option<i64>| {
            let p = [f(a.0, b.0)?, f(a.0, b.1)?, f(a.1, b.0)?, f(a.1, b.1)?];
            Some((*p.iter().min()?, *p.iter().max()?))
        };
        match e {
            Expr::Int(c) => Some((*c, *c)),
            Expr::Var(v) => self
                .scope
                .get(v.index())
                .copied()
                .flatten()
                .map(|n| (0, n.saturating_sub(1))),
            Expr::Binary { op, a, b } => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                match op {
                    BinOp::Add => Some((a.0.checked_add(b.0)?, a.1.checked_add(b.1)?)),
                    BinOp::Sub => Some((a.0.checked_sub(b.1)?, a.1.checked_sub(b.0)?)),
                    BinOp::Mul => corners(a, b, i64::checked_mul),
                    BinOp::Div if b.0 > 0 => corners(a, b, |x, y| Some(x.div_euclid(y))),
                    BinOp::Rem if b.0 > 0 => {
                        Some((0, if a.0 >= 0 { a.1.min(b.1 - 1) } else { b.1 - 1 }))
                    }
                    BinOp::Min => Some((a.0.min(b.0), a.1.min(b.1))),
                    BinOp::Max => Some((a.0.max(b.0), a.1.max(b.1))),
                    _ => None,
                }
            }
            Expr::Select { a, b, .. } => {
                let (a, b) = (self.range(a)?, self.range(b)?);
                Some((a.0.min(b.0), a.1.max(b.1)))
            }
            _ => None,
        }
    }

    /// An integer expression, affine where it can be.
    fn int(&mut self, e: &Expr, what: &str) -> Result<Int> {
        match self.expr(e)? {
            Code::I(x) => Ok(x),
            other => Err(self.err(format!("{what} is {}, not i64", other.dtype()))),
        }
    }

    /// `e` as c + sum of k * var, when it is built of constants, variables in scope, `+`,
    /// `-`, and `*` by a constant.
    fn affine(&self, e: &Expr) -> Option<(i64, Vec<(usize, i64)>)> {
        let scale = |(c, t): (i64, Vec<(usize, i64)>), k: i64| {
            (
                c.wrapping_mul(k),
                t.into_iter()
                    .map(|(v, x)| (v, x.wrapping_mul(k)))
                    .collect::<Vec<_>>(),
            )
        };
        Some(match e {
            Expr::Int(c) => (*c, Vec::new()),
            Expr::Var(v) if self.scope.get(v.index()).is_some_and(Option::is_some) => {
                (0, vec![(v.index(), 1)])
            }
            Expr::Binary {
                op: op @ (BinOp::Add | BinOp::Sub),
                a,
                b,
            } => {
                let (ca, mut ta) = self.affine(a)?;
                let (cb, tb) = self.affine(b)?;
                let (cb, tb) = if *op == BinOp::Sub {
                    scale((cb, tb), -1)
                } else {
                    (cb, tb)
                };
                for (v, k) in tb {
                    match ta.iter_mut().find(|(w, _)| *w == v) {
                        Some((_, x)) => *x = x.wrapping_add(k),
                        None => ta.push((v, k)),
                    }
                }
                (ca.wrapping_add(cb), ta)
            }
            Expr::Binary {
                op: BinOp::Mul,
                a,
                b,
            } => {
                let (a, b) = (self.affine(a)?, self.affine(b)?);
                if a.1.is_empty() {
                    scale(b, a.0)
                } else if b.1.is_empty() {
                    scale(a, b.0)
                } else {
                    return None;
                }
            }
            _ => return None,
        })
    }

    fn expr(&mut self, e: &Expr) -> Result<Code> {
        if let Some((c, terms)) = self.affine(e) {
            return Ok(Code::I(Int::affine(c, terms)));
        }
        Ok(match e {
            // Constants and variables in scope are affine.
            Expr::Int(_) | Expr::Var(_) => {
                return Err(self.err("a variable is used outside its loop".into()))
            }
            &Expr::Float(x) => Code::F(Val::Const(x)),
            &Expr::Bool(x) => Code::B(Val::Const(x)),
            Expr::Load { buf, index } => {
                let (dtype, slot) = self.slot(buf.index())?;
                let at = self.offset(buf.index(), index)?;
                match dtype {
                    DType::F32 | DType::F16 => Code::F(Val::Code(Box::new(move |env: &Env| {
                        Ok(env.f[slot][at(env)?])
                    }))),
                    DType::I64 => Code::I(Int::Code(Box::new(move |env: &Env| {
                        Ok(env.i[slot][at(env)?])
                    }))),
                    _ => Code::B(Val::Code(Box::new(move |env: &Env| {
                        Ok(env.b[slot][at(env)?])
                    }))),
                }
            }
            Expr::Binary { op, a, b } => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let types = (a.dtype(), b.dtype());
                binary(*op, a, b).ok_or_else(|| {
                    self.err(format!("{} of {} and {}", op.name(), types.0, types.1))
                })?
            }
            Expr::Call { f, args } => {
                let args = args
                    .iter()
                    .map(|a| self.expr(a))
                    .collect::<Result<Vec<_>>>()?;
                let types: Vec<DType> = args.iter().map(Code::dtype).collect();
                call(*f, args).ok_or_else(|| self.err(format!("{} of {types:?}", f.name())))?
            }
            Expr::Select { cond, a, b } => match (self.expr(cond)?, self.expr(a)?, self.expr(b)?) {
                (Code::B(c), Code::F(x), Code::F(y)) => Code::F(Val::Code(select(c, x, y))),
                (Code::B(c), Code::I(x), Code::I(y)) => Code::I(Int::Code(select(c, x, y))),
                (Code::B(c), Code::B(x), Code::B(y)) => Code::B(Val::Code(select(c, x, y))),
                (c, x, y) => {
                    return Err(self.err(format!(
                        "select of ({}, {}, {})",
                        c.dtype(),
                        x.dtype(),
                        y.dtype()
                    )));
                }
            },
            Expr::Cast { to, x } => {
                let x = self.expr(x)?;
                let from = x.dtype();
                cast(*to, x).ok_or_else(|| self.err(format!("cast of {from} to {to}")))?
            }
        })
    }
}

/// Both sides are evaluated, so that a load out of bounds is caught whichever is taken.
fn select<T: Copy + 'static, A: Eval<T>>(c: Val<bool>, a: A, b: A) -> Ex<T> {
    Box::new(move |env: &Env| {
        let (c, x, y) = (c.eval(env)?, a.eval(env)?, b.eval(env)?);
        Ok(if c { x } else { y })
    })
}

fn map<T: 'static, U: 'static, A: Eval<T>>(x: A, f: fn(T) -> U) -> Ex<U> {
    Box::new(move |env: &Env| Ok(f(x.eval(env)?)))
}

fn zip<T: 'static, U: 'static, A: Eval<T>>(a: A, b: A, f: impl Fn(T, T) -> U + 'static) -> Ex<U> {
    Box::new(move |env: &Env| Ok(f(a.eval(env)?, b.eval(env)?)))
}

fn compare<T: PartialOrd + 'static, A: Eval<T>>(op: BinOp, a: A, b: A) -> Option<Code> {
    // One closure per operator, so that the comparison inlines into it.
    Some(Code::B(Val::Code(match op {
        BinOp::Lt => zip(a, b, |x: T, y: T| x < y),
        BinOp::Le => zip(a, b, |x: T, y: T| x <= y),
        BinOp::Gt => zip(a, b, |x: T, y: T| x > y),
        BinOp::Ge => zip(a, b, |x: T, y: T| x >= y),
        BinOp::Eq => zip(a, b, |x: T, y: T| x == y),
        BinOp::Ne => zip(a, b, |x: T, y: T| x != y),
        _ => return None,
    })))
}

/// Floor division and remainder: the quotient rounds down, the remainder has the divisor's
/// sign. Wrapping, so that i64::MIN / -1 gives i64::MIN; a zero divisor is an error.
fn floor_div_rem(op: BinOp, a: Int, b: Int) -> Ex<i64> {
    Box::new(move |env: &Env| {
        let (x, y) = (a.eval(env)?, b.eval(env)?);
        if y == 0 {
            return Err(Box::new(InterpError::DivisionByZero));
        }
        let (q, r) = (x.wrapping_div(y), x.wrapping_rem(y));
        let inexact_negative = r != 0 && ((r < 0) != (y < 0));
        Ok(match (op, inexact_negative) {
            (BinOp::Div, true) => q - 1,
            (BinOp::Div, false) => q,
            (_, true) => r + y,
            (_, false) => r,
        })
    })
}

/// The binary operators; None for operand types they do not apply to.
fn binary(op: BinOp, a: Code, b: Code) -> Option<Code> {
    Some(match (a, b) {
        (Code::F(a), Code::F(b)) if op.is_comparison() => return compare(op, a, b),
        (Code::I(a), Code::I(b)) if op.is_comparison() => return compare(op, a, b),
        (Code::B(a), Code::B(b)) if op.is_comparison() => return compare(op, a, b),
        (Code::F(a), Code::F(b)) => Code::F(Val::Code(match op {
            BinOp::Add => zip(a, b, |x: f32, y: f32| x + y),
            BinOp::Sub => zip(a, b, |x: f32, y: f32| x - y),
            BinOp::Mul => zip(a, b, |x: f32, y: f32| x * y),
            BinOp::Div => zip(a, b, |x: f32, y: f32| x / y),
            BinOp::Rem => zip(a, b, |x: f32, y: f32| x % y),
            BinOp::Min => zip(a, b, f32::min),
            BinOp::Max => zip(a, b, f32::max),
            BinOp::Pow => zip(a, b, |x: f32, y: f32| (x as f64).powf(y as f64) as f32),
            _ => return None,
        })),
        (Code::I(a), Code::I(b)) => Code::I(Int::Code(match op {
            BinOp::Div | BinOp::Rem => floor_div_rem(op, a, b),
            BinOp::Add => zip(a, b, i64::wrapping_add),
            BinOp::Sub => zip(a, b, i64::wrapping_sub),
            BinOp::Mul => zip(a, b, i64::wrapping_mul),
            BinOp::Min => zip(a, b, i64::min),
            BinOp::Max => zip(a, b, i64::max),
            // Loop IR's pow is f32 only; integer powers are lowered through casts.
            _ => return None,
        })),
        (Code::B(a), Code::B(b)) => Code::B(Val::Code(match op {
            BinOp::And => zip(a, b, |x: bool, y: bool| x && y),
            BinOp::Or => zip(a, b, |x: bool, y: bool| x || y),
            BinOp::Xor => zip(a, b, |x: bool, y: bool| x != y),
            _ => return None,
        })),
        _ => return None,
    })
}

/// The intrinsics; None for operand types they do not apply to. Transcendental functions go
/// through f64 and round once, as in the graph interpreter.
fn call(f: Intrinsic, args: Vec<Code>) -> Option<Code> {
    let mut args = args.into_iter();
    let x = args.next()?;
    if f == Intrinsic::Fma {
        let (Code::F(a), Some(Code::F(b)), Some(Code::F(c)), None) =
            (x, args.next(), args.next(), args.next())
        else {
            return None;
        };
        return Some(Code::F(Val::Code(Box::new(move |env: &Env| {
            Ok(a.eval(env)?.mul_add(b.eval(env)?, c.eval(env)?))
        }))));
    }
    if args.next().is_some() {
        return None;
    }
    Some(match (f, x) {
        (Intrinsic::Not, Code::B(x)) => Code::B(Val::Code(map(x, |b| !b))),
        (Intrinsic::Neg, Code::I(x)) => Code::I(Int::Code(map(x, i64::wrapping_neg))),
        (Intrinsic::Abs, Code::I(x)) => Code::I(Int::Code(map(x, i64::wrapping_abs))),
        (Intrinsic::Sign, Code::I(x)) => Code::I(Int::Code(map(x, i64::signum))),
        (_, Code::F(x)) => Code::F(Val::Code(map(
            x,
            match f {
                Intrinsic::Neg => |x: f32| -x,
                Intrinsic::Abs => f32::abs,
                Intrinsic::Exp => |x| (x as f64).exp() as f32,
                Intrinsic::Log => |x| (x as f64).ln() as f32,
                Intrinsic::Sqrt => f32::sqrt,
                Intrinsic::Sin => |x| (x as f64).sin() as f32,
                Intrinsic::Cos => |x| (x as f64).cos() as f32,
                Intrinsic::Tanh => |x| (x as f64).tanh() as f32,
                Intrinsic::Sigmoid => |x| (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
                Intrinsic::Erf => |x| erf(x as f64) as f32,
                Intrinsic::Floor => f32::floor,
                Intrinsic::Ceil => f32::ceil,
                Intrinsic::Round => f32::round_ties_even,
                // numpy's sign: 0 for zero (of either sign), NaN for NaN.
                Intrinsic::Sign => |x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        x
                    }
                },
                Intrinsic::Fma | Intrinsic::Not => return None,
            },
        ))),
        _ => return None,
    })
}

/// `x` rounded to the nearest half (ties to even), as an f32: how f16 values are held.
fn round_to_f16(x: f32) -> f32 {
    f32::from(ir::f16::from_f32(x))
}

/// Conversions as the graph's cast does them; f16 values are f32 code that rounds (f16
/// arithmetic runs in f32, which rounds +, -, * and / of halves correctly after rounding to
/// half, since 24 >= 2 * 11 + 2 bits).
fn cast(to: DType, x: Code) -> Option<Code> {
    Some(match (x, to) {
        (Code::F(x), DType::F16) => Code::F(Val::Code(map(x, round_to_f16))),
        (x @ Code::F(_), DType::F32)
        | (x @ Code::I(_), DType::I64)
        | (x @ Code::B(_), DType::Bool) => x,
        (Code::F(x), DType::I64) => Code::I(Int::Code(map(x, |v| v as i64))),
        (Code::F(x), _) => Code::B(Val::Code(map(x, |v| v != 0.0))),
        (Code::I(x), DType::F32) => Code::F(Val::Code(map(x, |v| v as f32))),
        (Code::I(x), DType::F16) => Code::F(Val::Code(map(x, |v| round_to_f16(v as f32)))),
        (Code::I(x), _) => Code::B(Val::Code(map(x, |v| v != 0))),
        (Code::B(x), DType::F32 | DType::F16) => Code::F(Val::Code(map(x, |v| if v { 1.0 } else { 0.0 }))),
        (Code::B(x), _) => Code::I(Int::Code(map(x, |v| v as i64))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::loops::parse_func;

    fn run(text: &str, args: &mut [Tensor]) -> Result<()> {
        run_func(&parse_func(text).unwrap(), args)
    }

    #[test]
    fn floor_semantics_and_casts() {
        let text = "func \"f\" {\n  param %a: i64[4]\n  param %y: i64[4]\n  param %z: f32[4]\n  for i in 0..4 {\n    %y[i] = %a[i] / 2 + %a[i] % 3 * 100 + %a[i] % -3 * 10000\n    %z[i] = f32(%a[i]) * 0.5\n  }\n}";
        let a = Tensor::i64([4], vec![7, -7, 0, -1]).unwrap();
        let mut args = [
            a,
            Tensor::i64([4], vec![0; 4]).unwrap(),
            Tensor::f32([4], vec![0.0; 4]).unwrap(),
        ];
        run(text, &mut args).unwrap();
        assert_eq!(
            args[1].as_i64().unwrap(),
            [103 - 20000, -4 + 200 - 10000, 0, -1 + 200 - 10000]
        );
        assert_eq!(args[2].as_f32().unwrap(), [3.5, -3.5, 0.0, -0.5]);
    }

    #[test]
    fn temps_reductions_and_intrinsics() {
        let text = "func \"f\" {\n  param %x: f32[2,3]\n  param %y: f32[2]\n  temp %t: f32[1]\n  for i in 0..2 parallel {\n    %t[0] = 0.0\n    for j in 0..3 vectorized {\n      %t[0] = fma(%x[i, j], 2.0, %t[0])\n    }\n    if lt(i * 3 - 1, 3) {\n      %y[i] = select(lt(%t[0], 0.0), neg(%t[0]), sqrt(%t[0]))\n    }\n  }\n}";
        let x = Tensor::f32([2, 3], vec![1.0, 2.0, 5.0, -1.0, -2.0, -1.5]).unwrap();
        let mut args = [x, Tensor::f32([2], vec![0.0; 2]).unwrap()];
        run(text, &mut args).unwrap();
        assert_eq!(args[1].as_f32().unwrap(), [4.0, 9.0]);
    }

    #[test]
    fn errors_instead_of_panics() {
        let oob = "func \"f\" {\n  param %x: i64[3]\n  param %y: i64[3]\n  for i in 0..3 {\n    %y[i] = %x[%x[i]]\n  }\n}";
        let mut args = [
            Tensor::i64([3], vec![0, 1, 3]).unwrap(),
            Tensor::i64([3], vec![0; 3]).unwrap(),
        ];
        let e = run(oob, &mut args).unwrap_err().to_string();
        assert!(
            e.contains("index 3 is out of range for axis 0 of %x: i64[3]"),
            "{e}"
        );
        // The arguments keep their data after an error.
        assert_eq!(args[0].as_i64().unwrap(), [0, 1, 3]);
        assert_eq!(args[1].as_i64().unwrap(), [0, 1, 0]);
        let mut wrong = [
            Tensor::i64([3], vec![0; 3]).unwrap(),
            Tensor::f32([3], vec![0.0; 3]).unwrap(),
        ];
        let e = run(oob, &mut wrong).unwrap_err().to_string();
        assert!(
            e.contains("%y is i64[3], but the argument is f32[3]"),
            "{e}"
        );
        assert!(run(oob, &mut args[..1]).is_err());
        let div =
            "func \"f\" {\n  param %x: i64[2]\n  for i in 0..2 {\n    %x[i] = 1 / %x[i]\n  }\n}";
        let mut z = [Tensor::i64([2], vec![1, 0]).unwrap()];
        assert_eq!(run(div, &mut z), Err(InterpError::DivisionByZero));
        // Unverified programs are rejected before they run.
        let mut f = parse_func(div).unwrap();
        f.body.push(Stmt::Store {
            buf: ir::loops::BufId(0),
            index: vec![Expr::Var(ir::loops::VarId(0))],
            value: Expr::Int(1),
        });
        assert!(run_func(&f, &mut z)
            .unwrap_err()
            .to_string()
            .contains("used outside its loop"));
    }
}

/// The data of `t` rearranged by `layout` into a buffer of `shape`.
fn permuted(t: &Tensor, layout: &ir::loops::Layout, shape: &[usize]) -> std::result::Result<TensorData, String> {
    let offsets = layout.source_offsets().filter(|o| o.len() == t.numel() && layout.shape() == shape);
    let Some(order) = offsets else {
        return Err(format!("argument {:?} does not fit a buffer {shape:?} in layout {layout:?}", t.shape));
    };
    Ok(match &t.data {
        TensorData::F32(v) => TensorData::F32(order.iter().map(|&i| v[i]).collect()),
        TensorData::F16(v) => TensorData::F16(order.iter().map(|&i| v[i]).collect()),
        TensorData::I64(v) => TensorData::I64(order.iter().map(|&i| v[i]).collect()),
        TensorData::Bool(v) => TensorData::Bool(order.iter().map(|&i| v[i]).collect()),
    })
}

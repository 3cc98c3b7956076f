//! Code generation of expressions, loads and stores, as scalars or as f32x4 vectors.
//!
//! Inside a SIMD loop a value is a scalar while it is the same in every lane, f32 lanes once
//! it varies (a vector of [`LANES`]-wide chunks), or a lane mask (i32x4 chunks of all ones or
//! zeros) for a varying condition. Statements whose values need other lanes (integers,
//! gathers of other types, f16) run lane by lane instead; [`Gen::class`] decides before any
//! code is emitted.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, Endianness, InstBuilder, MemFlagsData, Type, Value};
use ir::loops::index::{self, lane_form, Lane};
use ir::loops::{BinOp, BufId, Expr, Intrinsic};
use ir::DType;

use crate::codegen::{Gen, GenError, R};
use crate::math::Helper;
use crate::plan::LANES;

/// Flags of every memory access: kernels only touch memory they were given.
pub(crate) fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Flags of a load from `buf`: a parameter the kernel never stores to is read-only while it
/// runs (the caller's promise: see [`crate::Kernel`]), so cranelift may move its loads (to
/// where their values are used, out of loops) and merge repeated ones.
pub(crate) fn load_flags(f: &ir::loops::Func, plan: &crate::plan::Plan, buf: BufId) -> MemFlagsData {
    if f.buffer(buf).kind == ir::loops::BufKind::Param && !plan.stored[buf.index()] {
        flags().with_readonly().with_can_move()
    } else {
        flags()
    }
}

/// Flags of a bitcast between vector types (lane order).
fn lane_order() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// A generated value.
#[derive(Clone)]
pub(crate) enum V {
    /// The same in every lane: f32, i64 or bool (i8 holding 0 or 1).
    S(Value),
    /// f32 lanes, in f32x4 chunks.
    F(Vec<Value>),
    /// Bool lanes as i32x4 masks.
    M(Vec<Value>),
}

/// What an expression becomes inside a SIMD loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    Uniform,
    Floats,
    Mask,
    /// Not representable as lanes: the statement runs lane by lane.
    LaneByLane,
}

/// The register type of an expression (f16 values are held as f32).
pub(crate) fn dtype_of(f: &ir::loops::Func, e: &Expr) -> DType {
    let reg = |d: DType| if d == DType::F16 { DType::F32 } else { d };
    match e {
        Expr::Int(_) | Expr::Var(_) => DType::I64,
        Expr::Float(_) => DType::F32,
        Expr::Bool(_) => DType::Bool,
        Expr::Load { buf, .. } => reg(f.buffer(*buf).dtype),
        Expr::Binary { op, a, .. } => {
            if op.is_comparison() || op.is_logical() {
                DType::Bool
            } else {
                dtype_of(f, a)
            }
        }
        Expr::Call { f: Intrinsic::Not, .. } => DType::Bool,
        Expr::Call { args, .. } => args.first().map_or(DType::F32, |a| dtype_of(f, a)),
        Expr::Select { a, .. } => dtype_of(f, a),
        Expr::Cast { to, .. } => reg(*to),
    }
}

/// `e` as a run-time part and a constant summand.
fn split_const(e: Expr) -> (Option<Expr>, i64) {
    match e {
        Expr::Int(c) => (None, c),
        Expr::Binary { op: op @ (BinOp::Add | BinOp::Sub), a, b } => {
            let ((da, ca), (db, cb)) = (split_const(*a), split_const(*b));
            let sub = op == BinOp::Sub;
            let d = match (da, db) {
                (x, None) => x,
                (None, Some(y)) if sub => Some(Expr::bin(BinOp::Sub, Expr::Int(0), y)),
                (None, Some(y)) => Some(y),
                (Some(x), Some(y)) => Some(Expr::bin(op, x, y)),
            };
            (d, if sub { ca.wrapping_sub(cb) } else { ca.wrapping_add(cb) })
        }
        other => (Some(other), 0),
    }
}

/// Adds `scale * e` to `terms` (multiples of atoms: variables and expressions that are not
/// sums or constant multiples) and `c`; None on overflow.
fn linear_terms(e: &Expr, scale: i64, terms: &mut Vec<(Expr, i64)>, c: &mut i64) -> Option<()> {
    match e {
        Expr::Int(v) => *c = c.checked_add(v.checked_mul(scale)?)?,
        Expr::Binary { op: BinOp::Add, a, b } => {
            linear_terms(a, scale, terms, c)?;
            linear_terms(b, scale, terms, c)?;
        }
        Expr::Binary { op: BinOp::Sub, a, b } => {
            linear_terms(a, scale, terms, c)?;
            linear_terms(b, scale.checked_neg()?, terms, c)?;
        }
        Expr::Binary { op: BinOp::Mul, a, b } if matches!(**b, Expr::Int(_)) => {
            let Expr::Int(k) = **b else { unreachable!() };
            linear_terms(a, scale.checked_mul(k)?, terms, c)?;
        }
        Expr::Binary { op: BinOp::Mul, a, b } if matches!(**a, Expr::Int(_)) => {
            let Expr::Int(k) = **a else { unreachable!() };
            linear_terms(b, scale.checked_mul(k)?, terms, c)?;
        }
        atom => match terms.iter_mut().find(|t| t.0 == *atom) {
            Some(t) => t.1 = t.1.checked_add(scale)?,
            None => terms.push((atom.clone(), scale)),
        },
    }
    Some(())
}

/// Dividends below 2^MAGIC_BITS divide by a constant as a multiply and a shift: the magic
/// multiplier is below 2^32 (it is at most 2^(31 + l) / d + 1 with 2^(l-1) < d <= 2^l), so the
/// product stays below 2^63.
const MAGIC_BITS: i64 = 31;

fn mem_type(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F16 => types::I16,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

impl Gen<'_, '_> {
    fn chunks(&self) -> usize {
        self.simd.map_or(1, |s| s.chunks())
    }

    /// How `e` (simplified) is generated in the current SIMD context.
    pub(crate) fn class(&self, e: &Expr) -> Class {
        use Class::*;
        let Some(s) = self.simd else { return Uniform };
        let join = |cs: &[Class]| {
            if cs.contains(&LaneByLane) {
                Some(LaneByLane)
            } else if cs.iter().all(|&c| c == Uniform) {
                Some(Uniform)
            } else {
                None
            }
        };
        let dt = |x: &Expr| dtype_of(self.f, x);
        match e {
            Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) => Uniform,
            Expr::Var(v) => {
                if *v == s.lane {
                    LaneByLane
                } else {
                    Uniform
                }
            }
            Expr::Load { buf, index } => {
                let b = self.f.buffer(*buf);
                let flat = index::simplify(index::flatten(index, &b.shape), &self.ranges);
                if lane_form(&flat, s.lane) == Lane::Uniform {
                    Uniform
                } else if b.dtype == DType::F32 {
                    Floats
                } else {
                    LaneByLane
                }
            }
            Expr::Binary { op, a, b } => {
                let cs = [self.class(a), self.class(b)];
                if let Some(c) = join(&cs) {
                    return c;
                }
                match dt(a) {
                    DType::F32 if op.is_comparison() => Mask,
                    DType::F32 if !op.is_logical() => Floats,
                    DType::Bool if matches!(op, BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Eq | BinOp::Ne) => Mask,
                    _ => LaneByLane,
                }
            }
            Expr::Call { f, args } => {
                let cs: Vec<Class> = args.iter().map(|a| self.class(a)).collect();
                if let Some(c) = join(&cs) {
                    return c;
                }
                match (f, args.first().map(dt)) {
                    (Intrinsic::Not, Some(DType::Bool)) => Mask,
                    (Intrinsic::Not, _) => LaneByLane,
                    (_, Some(DType::F32)) => Floats,
                    _ => LaneByLane,
                }
            }
            Expr::Select { cond, a, b } => {
                let cs = [self.class(cond), self.class(a), self.class(b)];
                if let Some(c) = join(&cs) {
                    return c;
                }
                match dt(a) {
                    DType::F32 => Floats,
                    DType::Bool => Mask,
                    _ => LaneByLane,
                }
            }
            Expr::Cast { to, x } => match self.class(x) {
                Uniform => Uniform,
                LaneByLane => LaneByLane,
                _ => match (dt(x), to) {
                    (DType::F32 | DType::Bool, DType::F32) => Floats,
                    (DType::F32 | DType::Bool, DType::Bool) => Mask,
                    _ => LaneByLane,
                },
            },
        }
    }

    /// Generates a value the same in every lane.
    pub(crate) fn scalar(&mut self, e: &Expr) -> R<Value> {
        match self.gen(e)? {
            V::S(v) => Ok(v),
            _ => Err(GenError::Internal("a lane-varying value where one value was expected".into())),
        }
    }

    /// Generates an expression already simplified under the current ranges.
    pub(crate) fn gen(&mut self, e: &Expr) -> R<V> {
        Ok(match e {
            Expr::Int(v) => V::S(self.b.ins().iconst(types::I64, *v)),
            Expr::Float(v) => V::S(self.b.ins().f32const(*v)),
            Expr::Bool(v) => V::S(self.b.ins().iconst(types::I8, i64::from(*v))),
            Expr::Var(v) => match self.vars[v.index()] {
                Some(x) if self.simd.is_none_or(|s| s.lane != *v) => V::S(x),
                _ => return Err(GenError::Internal(format!("{} used as a value outside its loop", self.f.vars[v.index()]))),
            },
            Expr::Load { buf, index } => self.load(*buf, index)?,
            Expr::Binary { op, a, b } => self.binary(*op, a, b)?,
            Expr::Call { f, args } => self.call_intrinsic(*f, args)?,
            Expr::Select { cond, a, b } => {
                let (c, a, b) = (self.gen(cond)?, self.gen(a)?, self.gen(b)?);
                self.select(c, a, b)?
            }
            Expr::Cast { to, x } => {
                let from = dtype_of(self.f, x);
                let v = self.gen(x)?;
                self.cast(from, *to, v)?
            }
        })
    }

    /// The f32x4 chunks of a float value (a scalar is splatted).
    fn floats(&mut self, v: V) -> R<Vec<Value>> {
        match v {
            V::F(c) => Ok(c),
            V::S(x) => {
                let s = self.b.ins().splat(types::F32X4, x);
                Ok(vec![s; self.chunks()])
            }
            V::M(_) => Err(GenError::Internal("a mask where floats were expected".into())),
        }
    }

    /// The i32x4 masks of a bool value (a scalar 0/1 becomes all zeros / all ones).
    fn masks(&mut self, v: V) -> R<Vec<Value>> {
        match v {
            V::M(c) => Ok(c),
            V::S(x) => {
                let w = self.b.ins().uextend(types::I32, x);
                let m = self.b.ins().ineg(w);
                let s = self.b.ins().splat(types::I32X4, m);
                Ok(vec![s; self.chunks()])
            }
            V::F(_) => Err(GenError::Internal("floats where a mask was expected".into())),
        }
    }

    fn as_float_bits(&mut self, m: Value) -> Value {
        self.b.ins().bitcast(types::F32X4, lane_order(), m)
    }

    /// Applies `op` chunk by chunk (or once to scalars).
    fn map2(&mut self, a: V, b: V, op: &mut dyn FnMut(&mut Self, Value, Value) -> Value) -> R<V> {
        match (a, b) {
            (V::S(x), V::S(y)) => Ok(V::S(op(self, x, y))),
            (a @ V::M(_), b) | (a, b @ V::M(_)) => {
                let (xs, ys) = (self.masks(a)?, self.masks(b)?);
                Ok(V::M(xs.into_iter().zip(ys).map(|(x, y)| op(self, x, y)).collect()))
            }
            (a, b) => {
                let (xs, ys) = (self.floats(a)?, self.floats(b)?);
                Ok(V::F(xs.into_iter().zip(ys).map(|(x, y)| op(self, x, y)).collect()))
            }
        }
    }

    /// A scalar f32 function applied to every lane.
    fn lanewise(&mut self, args: Vec<V>, f: &mut dyn FnMut(&mut Self, &[Value]) -> R<Value>) -> R<V> {
        if args.iter().all(|a| matches!(a, V::S(_))) {
            let xs: Vec<Value> = args.into_iter().map(|a| if let V::S(x) = a { x } else { unreachable!() }).collect();
            return Ok(V::S(f(self, &xs)?));
        }
        let chunks: Vec<Vec<Value>> = args.into_iter().map(|a| self.floats(a)).collect::<R<_>>()?;
        let mut out = Vec::with_capacity(self.chunks());
        for j in 0..self.chunks() {
            let mut acc: Option<Value> = None;
            for t in 0..LANES as u8 {
                let xs: Vec<Value> = chunks.iter().map(|c| self.b.ins().extractlane(c[j], t)).collect();
                let r = f(self, &xs)?;
                acc = Some(match acc {
                    None => self.b.ins().scalar_to_vector(types::F32X4, r),
                    Some(v) => self.b.ins().insertlane(v, r, t),
                });
            }
            out.push(acc.expect("four lanes"));
        }
        Ok(V::F(out))
    }

    fn binary(&mut self, op: BinOp, ea: &Expr, eb: &Expr) -> R<V> {
        let t = dtype_of(self.f, ea);
        if t == DType::F32 {
            // a * b + c contracts into one fma, as LLVM's `contract` flag lets it.
            let product = |e: &Expr| match e {
                Expr::Binary { op: BinOp::Mul, a, b } if dtype_of(self.f, a) == DType::F32 => Some((a.clone(), b.clone())),
                _ => None,
            };
            if op == BinOp::Add {
                let fused = match (product(ea), product(eb)) {
                    (Some((x, y)), _) => Some((x, y, eb.clone())),
                    (None, Some((x, y))) => Some((x, y, ea.clone())),
                    _ => None,
                };
                if let Some((x, y, c)) = fused {
                    return self.call_intrinsic(Intrinsic::Fma, &[*x, *y, c]);
                }
            }
        }
        let (a, b) = (self.gen(ea)?, self.gen(eb)?);
        let vector = !matches!((&a, &b), (V::S(_), V::S(_)));
        match t {
            DType::F32 => self.float_binary(op, a, b, ea, eb, vector),
            DType::Bool => {
                let code = match op {
                    BinOp::And => 0,
                    BinOp::Or => 1,
                    BinOp::Xor | BinOp::Ne => 2,
                    BinOp::Eq => 3,
                    _ if !vector => {
                        let (V::S(x), V::S(y)) = (a, b) else { unreachable!() };
                        let cc = match op {
                            BinOp::Lt => IntCC::UnsignedLessThan,
                            BinOp::Le => IntCC::UnsignedLessThanOrEqual,
                            BinOp::Gt => IntCC::UnsignedGreaterThan,
                            BinOp::Ge => IntCC::UnsignedGreaterThanOrEqual,
                            _ => return Err(GenError::Unsupported(format!("{} of bool operands", op.name()))),
                        };
                        return Ok(V::S(self.b.ins().icmp(cc, x, y)));
                    }
                    _ => return Err(GenError::Internal(format!("{} of bool lanes", op.name()))),
                };
                self.map2(a, b, &mut |g, x, y| match code {
                    0 => g.b.ins().band(x, y),
                    1 => g.b.ins().bor(x, y),
                    2 => g.b.ins().bxor(x, y),
                    _ if g.b.func.dfg.value_type(x).is_vector() => {
                        let d = g.b.ins().bxor(x, y);
                        g.b.ins().bnot(d)
                    }
                    _ => g.b.ins().icmp(IntCC::Equal, x, y),
                })
            }
            DType::I64 => {
                let (V::S(x), V::S(y)) = (a, b) else { return Err(GenError::Internal("integer lanes".into())) };
                Ok(V::S(match op {
                    BinOp::Add => self.b.ins().iadd(x, y),
                    BinOp::Sub => self.b.ins().isub(x, y),
                    BinOp::Mul => self.b.ins().imul(x, y),
                    BinOp::Div | BinOp::Rem => self.floor_div_rem(op == BinOp::Rem, ea, eb, x, y),
                    BinOp::Min => self.b.ins().smin(x, y),
                    BinOp::Max => self.b.ins().smax(x, y),
                    BinOp::Pow => self.helper(Helper::PowI64, &[x, y])?,
                    BinOp::Lt => self.b.ins().icmp(IntCC::SignedLessThan, x, y),
                    BinOp::Le => self.b.ins().icmp(IntCC::SignedLessThanOrEqual, x, y),
                    BinOp::Gt => self.b.ins().icmp(IntCC::SignedGreaterThan, x, y),
                    BinOp::Ge => self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, x, y),
                    BinOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                    BinOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                    BinOp::And | BinOp::Or | BinOp::Xor => return Err(GenError::Unsupported(format!("{} of integer operands", op.name()))),
                }))
            }
            DType::F16 => Err(GenError::Internal("f16 registers are f32".into())),
        }
    }

    fn float_binary(&mut self, op: BinOp, a: V, b: V, ea: &Expr, eb: &Expr, vector: bool) -> R<V> {
        let cc = match op {
            BinOp::Lt => Some(FloatCC::LessThan),
            BinOp::Le => Some(FloatCC::LessThanOrEqual),
            BinOp::Gt => Some(FloatCC::GreaterThan),
            BinOp::Ge => Some(FloatCC::GreaterThanOrEqual),
            BinOp::Eq => Some(FloatCC::Equal),
            // Unordered or unequal, as LLVM's `une` (NaN != NaN).
            BinOp::Ne => Some(FloatCC::NotEqual),
            _ => None,
        };
        if let Some(cc) = cc {
            if !vector {
                let (V::S(x), V::S(y)) = (a, b) else { unreachable!() };
                return Ok(V::S(self.b.ins().fcmp(cc, x, y)));
            }
            let (xs, ys) = (self.floats(a)?, self.floats(b)?);
            return Ok(V::M(xs.into_iter().zip(ys).map(|(x, y)| self.b.ins().fcmp(cc, x, y)).collect()));
        }
        match op {
            BinOp::Add => self.map2(a, b, &mut |g, x, y| g.b.ins().fadd(x, y)),
            BinOp::Sub => self.map2(a, b, &mut |g, x, y| g.b.ins().fsub(x, y)),
            BinOp::Mul => self.map2(a, b, &mut |g, x, y| g.b.ins().fmul(x, y)),
            BinOp::Div => self.map2(a, b, &mut |g, x, y| g.b.ins().fdiv(x, y)),
            BinOp::Min | BinOp::Max => {
                // minnum / maxnum: a NaN operand gives the other one. The constant operand goes
                // second, where the compare-and-select form already gets that right.
                let constant = |e: &Expr| matches!(e, Expr::Float(c) if !c.is_nan());
                let (a, b, b_plain) = if constant(ea) && !constant(eb) { (b, a, true) } else { (a, b, constant(eb)) };
                let min = op == BinOp::Min;
                self.map2(a, b, &mut |g, x, y| g.min_max(min, x, y, b_plain))
            }
            BinOp::Pow => self.lanewise(vec![a, b], &mut |g, xs| g.helper(Helper::Pow, xs)),
            BinOp::Rem => self.lanewise(vec![a, b], &mut |g, xs| g.helper(Helper::Fmod, xs)),
            _ => Err(GenError::Unsupported(format!("{} of f32 operands", op.name()))),
        }
    }

    /// min or max of f32 scalars or f32x4 chunks: `x < y ? x : y` (minps / maxps on x86),
    /// then `y` NaN gives `x` unless `y` is known not to be NaN.
    fn min_max(&mut self, min: bool, x: Value, y: Value, y_plain: bool) -> Value {
        let vector = self.b.func.dfg.value_type(x).is_vector();
        let lt = if min { self.b.ins().fcmp(FloatCC::LessThan, x, y) } else { self.b.ins().fcmp(FloatCC::LessThan, y, x) };
        let r = if vector {
            let m = self.as_float_bits(lt);
            self.b.ins().bitselect(m, x, y)
        } else {
            self.b.ins().select(lt, x, y)
        };
        if y_plain {
            return r;
        }
        let nan = self.b.ins().fcmp(FloatCC::Unordered, y, y);
        if vector {
            let m = self.as_float_bits(nan);
            self.b.ins().bitselect(m, x, r)
        } else {
            self.b.ins().select(nan, x, r)
        }
    }

    /// Integer floor division or modulo (results round toward negative infinity).
    fn floor_div_rem(&mut self, rem: bool, ea: &Expr, eb: &Expr, a: Value, b: Value) -> Value {
        if let Expr::Int(m) = eb {
            let m = *m;
            if m > 0 {
                if m.count_ones() == 1 {
                    let shift = i64::from(m.trailing_zeros());
                    return if rem { self.b.ins().band_imm_s(a, m - 1) } else { self.b.ins().sshr_imm_s(a, shift) };
                }
                match index::range(ea, &self.ranges) {
                    Some((lo, hi)) if lo >= 0 && hi < 1 << MAGIC_BITS => {
                        // A multiply and a shift (Granlund and Montgomery): unlike cranelift's
                        // udiv, which may trap, pure arithmetic that it can hoist out of loops.
                        let l = 64 - (m as u64 - 1).leading_zeros() as i64;
                        let magic = ((1i128 << (MAGIC_BITS + l)) + i128::from(m) - 1) / i128::from(m);
                        let hoist = self.depth_of(ea) < self.level;
                        let (magic, shift, m) = (self.konst(magic as i64, hoist), self.konst(MAGIC_BITS + l, hoist), self.konst(m, hoist));
                        let p = self.b.ins().imul(a, magic);
                        let q = self.b.ins().ushr(p, shift);
                        return if rem {
                            let qm = self.b.ins().imul(q, m);
                            self.b.ins().isub(a, qm)
                        } else {
                            q
                        };
                    }
                    Some((lo, _)) if lo >= 0 => {
                        return if rem { self.b.ins().urem_imm_s(a, m) } else { self.b.ins().udiv_imm_s(a, m) };
                    }
                    _ => {}
                }
                let r = self.b.ins().srem_imm_s(a, m);
                let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
                return if rem {
                    let fixed = self.b.ins().iadd_imm_s(r, m);
                    self.b.ins().select(neg, fixed, r)
                } else {
                    let q = self.b.ins().sdiv_imm_s(a, m);
                    let fixed = self.b.ins().iadd_imm_s(q, -1);
                    self.b.ins().select(neg, fixed, q)
                };
            }
        }
        // A divisor of 0 or -1 would trap (or overflow); 0 gives an unspecified result, -1
        // its wrapped one.
        let minus_one = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        let bad = self.b.ins().bor(zero, minus_one);
        let one = self.b.ins().iconst(types::I64, 1);
        let d = self.b.ins().select(bad, one, b);
        let q = self.b.ins().sdiv(a, d);
        let r = self.b.ins().srem(a, d);
        let x = self.b.ins().bxor(r, d);
        let signs_differ = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
        let nonzero = self.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
        let fix = self.b.ins().band(nonzero, signs_differ);
        if rem {
            let rd = self.b.ins().iadd(r, d);
            let r = self.b.ins().select(fix, rd, r);
            let z = self.b.ins().iconst(types::I64, 0);
            self.b.ins().select(minus_one, z, r)
        } else {
            let q1 = self.b.ins().iadd_imm_s(q, -1);
            let q = self.b.ins().select(fix, q1, q);
            let na = self.b.ins().ineg(a);
            self.b.ins().select(minus_one, na, q)
        }
    }

    fn call_intrinsic(&mut self, f: Intrinsic, args: &[Expr]) -> R<V> {
        let t = args.first().map_or(DType::F32, |a| dtype_of(self.f, a));
        let vals: Vec<V> = args.iter().map(|a| self.gen(a)).collect::<R<_>>()?;
        let unary_f = |g: &mut Self, vals: Vec<V>, op: &mut dyn FnMut(&mut Self, Value) -> Value| -> R<V> {
            match vals.into_iter().next() {
                Some(V::S(x)) => Ok(V::S(op(g, x))),
                Some(v) => {
                    let xs = g.floats(v)?;
                    Ok(V::F(xs.into_iter().map(|x| op(g, x)).collect()))
                }
                None => Err(GenError::Internal("an intrinsic without operands".into())),
            }
        };
        let scalar_arg = |vals: &[V]| match vals.first() {
            Some(V::S(x)) => Ok(*x),
            _ => Err(GenError::Internal("integer lanes".into())),
        };
        match (f, t) {
            (Intrinsic::Fma, DType::F32) => {
                if vals.iter().all(|v| matches!(v, V::S(_))) {
                    let xs: Vec<Value> = vals.iter().map(|v| if let V::S(x) = v { *x } else { unreachable!() }).collect();
                    return Ok(V::S(self.b.ins().fma(xs[0], xs[1], xs[2])));
                }
                let cs: Vec<Vec<Value>> = vals.into_iter().map(|v| self.floats(v)).collect::<R<_>>()?;
                Ok(V::F((0..self.chunks()).map(|j| self.b.ins().fma(cs[0][j], cs[1][j], cs[2][j])).collect()))
            }
            (Intrinsic::Neg, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().fneg(x)),
            (Intrinsic::Neg, DType::I64) => Ok(V::S(self.b.ins().ineg(scalar_arg(&vals)?))),
            (Intrinsic::Not, DType::Bool) => match vals.into_iter().next() {
                Some(V::S(x)) => Ok(V::S(self.b.ins().bxor_imm_s(x, 1))),
                Some(v) => {
                    let ms = self.masks(v)?;
                    Ok(V::M(ms.into_iter().map(|m| self.b.ins().bnot(m)).collect()))
                }
                None => Err(GenError::Internal("not without an operand".into())),
            },
            (Intrinsic::Abs, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().fabs(x)),
            (Intrinsic::Abs, DType::I64) => Ok(V::S(self.b.ins().iabs(scalar_arg(&vals)?))),
            (Intrinsic::Sqrt, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().sqrt(x)),
            (Intrinsic::Floor, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().floor(x)),
            (Intrinsic::Ceil, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().ceil(x)),
            (Intrinsic::Round, DType::F32) => unary_f(self, vals, &mut |g, x| g.b.ins().nearest(x)),
            (Intrinsic::Exp | Intrinsic::Log | Intrinsic::Sin | Intrinsic::Cos | Intrinsic::Tanh | Intrinsic::Erf, DType::F32) => {
                let h = match f {
                    Intrinsic::Exp => Helper::Exp,
                    Intrinsic::Log => Helper::Log,
                    Intrinsic::Sin => Helper::Sin,
                    Intrinsic::Cos => Helper::Cos,
                    Intrinsic::Tanh => Helper::Tanh,
                    _ => Helper::Erf,
                };
                self.lanewise(vals, &mut |g, xs| g.helper(h, xs))
            }
            (Intrinsic::Sigmoid, DType::F32) => {
                let neg = unary_f(self, vals, &mut |g, x| g.b.ins().fneg(x))?;
                let e = self.lanewise(vec![neg], &mut |g, xs| g.helper(Helper::Exp, xs))?;
                let one = V::S(self.b.ins().f32const(1.0));
                let d = self.map2(one.clone(), e, &mut |g, x, y| g.b.ins().fadd(x, y))?;
                self.map2(one, d, &mut |g, x, y| g.b.ins().fdiv(x, y))
            }
            (Intrinsic::Sign, DType::F32) => {
                // 0, -0 and NaN are their own sign.
                let x = vals.into_iter().next().ok_or_else(|| GenError::Internal("sign without an operand".into()))?;
                let zero = V::S(self.b.ins().f32const(0.0));
                let lt = self.float_binary(BinOp::Lt, x.clone(), zero.clone(), &Expr::Int(0), &Expr::Int(0), !matches!(x, V::S(_)))?;
                let gt = self.float_binary(BinOp::Gt, x.clone(), zero, &Expr::Int(0), &Expr::Int(0), !matches!(x, V::S(_)))?;
                let minus = V::S(self.b.ins().f32const(-1.0));
                let one = V::S(self.b.ins().f32const(1.0));
                let neg = self.select(lt, minus, x)?;
                self.select(gt, one, neg)
            }
            (Intrinsic::Sign, DType::I64) => {
                let x = scalar_arg(&vals)?;
                let lt = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
                let gt = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, x, 0);
                let (m1, z, p1) =
                    (self.b.ins().iconst(types::I64, -1), self.b.ins().iconst(types::I64, 0), self.b.ins().iconst(types::I64, 1));
                let neg = self.b.ins().select(lt, m1, z);
                Ok(V::S(self.b.ins().select(gt, p1, neg)))
            }
            (f, t) => Err(GenError::Unsupported(format!("{} of {}", f.name(), t.name()))),
        }
    }

    fn select(&mut self, c: V, a: V, b: V) -> R<V> {
        Ok(match (c, a, b) {
            (V::S(c), V::S(a), V::S(b)) => V::S(self.b.ins().select(c, a, b)),
            (c, a, b) => {
                let masks_arms = matches!(a, V::M(_)) || matches!(b, V::M(_)) || {
                    let ty = |v: &V, g: &Self| if let V::S(x) = v { g.b.func.dfg.value_type(*x) == types::I8 } else { false };
                    ty(&a, self) && ty(&b, self)
                };
                let (ca, cb) = if masks_arms { (self.masks(a)?, self.masks(b)?) } else { (self.floats(a)?, self.floats(b)?) };
                let out: Vec<Value> = match c {
                    V::S(c) => ca.into_iter().zip(cb).map(|(x, y)| self.b.ins().select(c, x, y)).collect(),
                    c => {
                        let ms = self.masks(c)?;
                        ms.into_iter()
                            .zip(ca.into_iter().zip(cb))
                            .map(|(m, (x, y))| {
                                let m = if masks_arms { m } else { self.as_float_bits(m) };
                                self.b.ins().bitselect(m, x, y)
                            })
                            .collect()
                    }
                };
                if masks_arms {
                    V::M(out)
                } else {
                    V::F(out)
                }
            }
        })
    }

    fn cast(&mut self, from: DType, to: DType, v: V) -> R<V> {
        Ok(match (v, from, to) {
            (v, DType::F32, DType::F32) | (v, DType::I64, DType::I64) | (v, DType::Bool, DType::Bool) => v,
            (V::S(x), DType::F32, DType::F16) => {
                let h = self.helper(Helper::F32ToF16, &[x])?;
                V::S(self.helper(Helper::F16ToF32, &[h])?)
            }
            (V::S(x), DType::F32, DType::I64) => V::S(self.b.ins().fcvt_to_sint_sat(types::I64, x)),
            (V::S(x), DType::I64, DType::F32 | DType::F16) => V::S(self.b.ins().fcvt_from_sint(types::F32, x)),
            (V::S(x), DType::I64, DType::Bool) => V::S(self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)),
            (V::S(x), DType::Bool, DType::F32 | DType::F16) => {
                let w = self.b.ins().uextend(types::I32, x);
                V::S(self.b.ins().fcvt_from_uint(types::F32, w))
            }
            (V::S(x), DType::Bool, DType::I64) => V::S(self.b.ins().uextend(types::I64, x)),
            (v, DType::F32, DType::Bool) => {
                let zero = V::S(self.b.ins().f32const(0.0));
                let vector = !matches!(v, V::S(_));
                self.float_binary(BinOp::Ne, v, zero, &Expr::Int(0), &Expr::Int(0), vector)?
            }
            (V::M(ms), DType::Bool, DType::F32) => {
                let one = self.b.ins().iconst(types::I32, i64::from(1.0f32.to_bits()));
                let one = self.b.ins().splat(types::I32X4, one);
                V::F(
                    ms.into_iter()
                        .map(|m| {
                            let bits = self.b.ins().band(m, one);
                            self.as_float_bits(bits)
                        })
                        .collect(),
                )
            }
            (_, from, to) => return Err(GenError::Internal(format!("cast from {} to {} of lanes", from.name(), to.name()))),
        })
    }

    /// The address of element `flat` (simplified) of a buffer in memory, as a base and a
    /// constant byte offset.
    fn address(&mut self, buf: BufId, flat: &Expr) -> R<(Value, i32)> {
        let base = self.bufs[buf.index()].ok_or_else(|| GenError::Internal(format!("%{} has no memory", self.f.buffer(buf).name)))?;
        let size = self.f.buffer(buf).dtype.size_bytes() as i64;
        // The offset as a sum of terms (a multiple of a loop variable, or of a term that is
        // not linear such as a division), added to the base outermost loop first: each
        // partial sum depends only on the loops around it, so cranelift hoists it out of the
        // inner ones (a row-major index nests the variables inside products, which it would
        // recompute in the innermost loop).
        let mut terms = Vec::new();
        let mut c = 0i64;
        if linear_terms(flat, size, &mut terms, &mut c).is_some() {
            if let Ok(bytes) = i32::try_from(c) {
                let mut keyed: Vec<(usize, Expr, i64)> =
                    terms.into_iter().filter(|t| t.1 != 0).map(|(e, k)| (self.depth_of(&e), e, k)).collect();
                keyed.sort_by_key(|t| t.0);
                let mut addr = base;
                for (d, e, k) in keyed {
                    let x = self.scalar(&e)?;
                    let t = if d < self.level && k != 1 {
                        let k = self.konst(k, true);
                        self.b.ins().imul(x, k)
                    } else if k.count_ones() == 1 && k > 0 {
                        self.b.ins().ishl_imm_s(x, i64::from(k.trailing_zeros()))
                    } else {
                        self.b.ins().imul_imm_s(x, k)
                    };
                    addr = self.b.ins().iadd(addr, t);
                }
                return Ok((addr, bytes));
            }
        }
        let (dynamic, c) = split_const(flat.clone());
        let bytes = c.checked_mul(size).and_then(|b| i32::try_from(b).ok());
        let (dynamic, bytes) = match bytes {
            Some(b) => (dynamic, b),
            None => (Some(flat.clone()), 0),
        };
        let addr = match dynamic {
            None => base,
            Some(d) => {
                let off = self.scalar(&d)?;
                let off = self.b.ins().ishl_imm_s(off, i64::from(size.trailing_zeros()));
                self.b.ins().iadd(base, off)
            }
        };
        Ok((addr, bytes))
    }

    fn load_scalar(&mut self, buf: BufId, flat: &Expr) -> R<Value> {
        if self.plan.promoted[buf.index()] {
            let (var, lane) = self.reg_of(buf, flat)?;
            let v = self.b.use_var(var);
            return Ok(self.b.ins().extractlane(v, lane));
        }
        let dtype = self.f.buffer(buf).dtype;
        let (addr, off) = self.address(buf, flat)?;
        let v = self.b.ins().load(mem_type(dtype), load_flags(self.f, &self.plan, buf), addr, off);
        Ok(match dtype {
            DType::Bool => self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0),
            DType::F16 => {
                let w = self.b.ins().uextend(types::I32, v);
                self.helper(Helper::F16ToF32, &[w])?
            }
            _ => v,
        })
    }

    /// The variable and lane of element `flat` of a promoted temporary.
    fn reg_of(&self, buf: BufId, flat: &Expr) -> R<(cranelift_frontend::Variable, u8)> {
        match flat {
            Expr::Int(e) if *e >= 0 && (*e as usize) < self.regs[buf.index()].len() * LANES as usize => {
                Ok((self.regs[buf.index()][*e as usize / LANES as usize], (*e % LANES) as u8))
            }
            _ => Err(GenError::NotPromotable),
        }
    }

    /// Each lane's flat offset, with the lane variable bound to it.
    fn lane_offsets(&self, flat: &Expr) -> R<Vec<Expr>> {
        let s = self.simd.ok_or_else(|| GenError::Internal("lanes outside a vectorized loop".into()))?;
        Ok((0..i64::from(s.width)).map(|k| index::simplify(flat.clone().substitute(s.lane, &Expr::Int(k)), &self.ranges)).collect())
    }

    fn load(&mut self, buf: BufId, index: &[Expr]) -> R<V> {
        let b = self.f.buffer(buf);
        let flat = index::simplify(index::flatten(index, &b.shape), &self.ranges);
        let Some(s) = self.simd else { return Ok(V::S(self.load_scalar(buf, &flat)?)) };
        let form = lane_form(&flat, s.lane);
        if form == Lane::Uniform {
            return Ok(V::S(self.load_scalar(buf, &flat)?));
        }
        if b.dtype != DType::F32 {
            return Err(GenError::Internal(format!("lanes of %{}, not f32", b.name)));
        }
        let first = index::simplify(flat.clone().substitute(s.lane, &Expr::Int(0)), &self.ranges);
        if form == Lane::Linear(1) {
            if self.plan.promoted[buf.index()] {
                if let Expr::Int(c) = first {
                    if c % LANES == 0 {
                        self.reg_of(buf, &Expr::Int(c + i64::from(s.width) - 1))?;
                        let b0 = c as usize / LANES as usize;
                        let vars: Vec<_> = self.regs[buf.index()][b0..b0 + s.chunks()].to_vec();
                        return Ok(V::F(vars.into_iter().map(|v| self.b.use_var(v)).collect()));
                    }
                }
            } else {
                let (addr, off) = self.address(buf, &first)?;
                let fl = load_flags(self.f, &self.plan, buf);
                return Ok(V::F((0..s.chunks() as i32).map(|j| self.b.ins().load(types::F32X4, fl, addr, off + 16 * j)).collect()));
            }
        }
        // A gather, lane by lane.
        let offsets = self.lane_offsets(&flat)?;
        let saved = self.simd.take();
        let lanes: R<Vec<Value>> = offsets.iter().map(|o| self.load_scalar(buf, o)).collect();
        self.simd = saved;
        let lanes = lanes?;
        Ok(V::F(lanes.chunks(LANES as usize).map(|c| self.build_chunk(c)).collect()))
    }

    fn build_chunk(&mut self, lanes: &[Value]) -> Value {
        let mut v = self.b.ins().scalar_to_vector(types::F32X4, lanes[0]);
        for (t, &x) in lanes.iter().enumerate().skip(1) {
            v = self.b.ins().insertlane(v, x, t as u8);
        }
        v
    }

    pub(crate) fn store(&mut self, buf: BufId, index: &[Expr], value: &Expr) -> R<()> {
        let b = self.f.buffer(buf);
        let dtype = b.dtype;
        let flat = index::simplify(index::flatten(index, &b.shape), &self.ranges);
        let value = index::simplify(value.clone(), &self.ranges);
        let Some(s) = self.simd else {
            let v = self.scalar(&value)?;
            return self.store_scalar(buf, &flat, v);
        };
        let form = lane_form(&flat, s.lane);
        let class = self.class(&value);
        let lanes_ok = dtype == DType::F32 && form != Lane::Uniform && matches!(class, Class::Uniform | Class::Floats);
        if !lanes_ok {
            return self.per_lane(&mut |g| g.store(buf, index, &value));
        }
        let v = self.gen(&value)?;
        let chunks = self.floats(v)?;
        let first = index::simplify(flat.clone().substitute(s.lane, &Expr::Int(0)), &self.ranges);
        if form == Lane::Linear(1) {
            if self.plan.promoted[buf.index()] {
                if let Expr::Int(c) = first {
                    if c % LANES == 0 {
                        self.reg_of(buf, &Expr::Int(c + i64::from(s.width) - 1))?;
                        let b0 = c as usize / LANES as usize;
                        for (j, x) in chunks.into_iter().enumerate() {
                            let var = self.regs[buf.index()][b0 + j];
                            self.b.def_var(var, x);
                        }
                        return Ok(());
                    }
                }
            } else {
                let (addr, off) = self.address(buf, &first)?;
                for (j, x) in chunks.into_iter().enumerate() {
                    self.b.ins().store(flags(), x, addr, off + 16 * j as i32);
                }
                return Ok(());
            }
        }
        // A scatter, lane by lane.
        let offsets = self.lane_offsets(&flat)?;
        let saved = self.simd.take();
        let mut r = Ok(());
        for (k, o) in offsets.iter().enumerate() {
            let x = self.b.ins().extractlane(chunks[k / LANES as usize], (k % LANES as usize) as u8);
            r = self.store_scalar(buf, o, x);
            if r.is_err() {
                break;
            }
        }
        self.simd = saved;
        r
    }

    fn store_scalar(&mut self, buf: BufId, flat: &Expr, v: Value) -> R<()> {
        if self.plan.promoted[buf.index()] {
            let (var, lane) = self.reg_of(buf, flat)?;
            let old = self.b.use_var(var);
            let new = self.b.ins().insertlane(old, v, lane);
            self.b.def_var(var, new);
            return Ok(());
        }
        let dtype = self.f.buffer(buf).dtype;
        let v = match dtype {
            DType::F16 => {
                let h = self.helper(Helper::F32ToF16, &[v])?;
                self.b.ins().ireduce(types::I16, h)
            }
            _ => v,
        };
        let (addr, off) = self.address(buf, flat)?;
        self.b.ins().store(flags(), v, addr, off);
        Ok(())
    }
}

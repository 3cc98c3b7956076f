//! Code generation of expressions, loads and stores, as scalars or as SIMD vectors.
//!
//! Inside a vectorized loop a value is a scalar while it is the same in every lane and a
//! vector of the loop's width once it varies; operations splat scalars as needed.

use inkwell::llvm_sys::core as c;
use inkwell::llvm_sys::{LLVMIntPredicate as IP, LLVMOpcode as Op, LLVMRealPredicate as FP};
use inkwell::module::Linkage;
use inkwell::types::{AsTypeRef, BasicTypeEnum};
use inkwell::values::{AsValueRef, BasicValueEnum, FunctionValue};
use ir::loops::index::{self, lane_form, Lane};
use ir::loops::{BinOp, BufId, Expr, Intrinsic};
use ir::DType;

use crate::codegen::{libc_fn, mem_type, reg_type, Gen, GenError, R};
use crate::ops::{kind, lanes, Bv, Kind};

/// Where one access of a buffer lands.
enum Access<'ctx> {
    /// One element, the same for every lane.
    Scalar(Bv<'ctx>),
    /// Consecutive elements from this pointer, one per lane.
    Contiguous(Bv<'ctx>),
    /// Every c-th element from this pointer, one per lane: one wide load and a shuffle
    /// (strided convolutions), cheaper than a gather.
    /// The third field is how many elements to load.
    Strided(Bv<'ctx>, u32, u32),
    /// A vector of pointers, one per lane.
    Lanes(Bv<'ctx>),
}

/// The largest stride read with a wide load and a shuffle rather than a gather.
const MAX_SHUFFLE_STRIDE: i64 = 4;

impl<'ctx> Gen<'_, '_, 'ctx> {
    /// Generates an expression already simplified under the current ranges.
    pub(crate) fn gen(&mut self, e: &Expr) -> R<Bv<'ctx>> {
        Ok(match e {
            Expr::Int(v) => self.ir.i64(*v),
            Expr::Float(v) => self.ir.f32(*v),
            Expr::Bool(v) => self.ir.bool(*v),
            Expr::Var(v) => match self.simd {
                Some(s) if s.lane == *v => self.lane_ids(s.width),
                _ => self.vars[v.index()].ok_or_else(|| GenError::Builder(format!("{} used outside its loop", self.f.vars[v.index()])))?,
            },
            Expr::Load { buf, index } => self.load(*buf, index)?,
            Expr::Binary { op, a, b } => self.binary(*op, a, b, e)?,
            Expr::Call { f, args } => {
                let args = args.iter().map(|a| self.gen(a)).collect::<R<Vec<_>>>()?;
                self.call(*f, &args)?
            }
            Expr::Select { cond, a, b } => {
                let (c, a, b) = (self.gen(cond)?, self.gen(a)?, self.gen(b)?);
                self.ir.select(c, a, b)
            }
            Expr::Cast { to, x } => {
                let x = self.gen(x)?;
                self.cast(*to, x)
            }
        })
    }

    /// The lane variable's value: <0, 1, ..., width - 1>.
    fn lane_ids(&self, width: u32) -> Bv<'ctx> {
        let mut ids: Vec<_> = (0..width).map(|i| self.ir.i64(i64::from(i)).as_value_ref()).collect();
        unsafe { BasicValueEnum::new(c::LLVMConstVector(ids.as_mut_ptr(), width)) }
    }

    fn access(&mut self, buf: BufId, index: &[Expr], load: bool) -> R<Access<'ctx>> {
        let b = self.f.buffer(buf);
        let elem = mem_type(self.ir.ctx, b.dtype);
        let base = self.bufs[buf.index()];
        let flat = index::simplify(index::flatten(index, &b.shape), &self.ranges);
        let Some(s) = self.simd else {
            let off = self.gen(&flat)?;
            return Ok(Access::Scalar(self.ir.gep(elem, base, off)));
        };
        let form = lane_form(&flat, s.lane);
        // A masked-off lane may lie beyond the buffer, so only unmasked loads go wide.
        let shuffled = load && s.mask.is_none() && matches!(form, Lane::Linear(c) if (2..=MAX_SHUFFLE_STRIDE).contains(&c));
        if matches!(form, Lane::Uniform | Lane::Linear(1)) || shuffled {
            // The offset of lane 0, from which the others follow.
            let first = index::simplify(flat.substitute(s.lane, &Expr::Int(0)), &self.ranges);
            let off = self.gen(&first)?;
            let p = self.ir.gep(elem, base, off);
            return Ok(match form {
                Lane::Uniform => Access::Scalar(p),
                Lane::Linear(1) => Access::Contiguous(p),
                Lane::Linear(c) => {
                    // Whole vectors load best; the span past the last lane's element is read
                    // only when it provably stays inside the buffer.
                    let numel = b.shape.iter().product::<usize>() as i64;
                    let w = i64::from(s.width);
                    let full = matches!(index::range(&first, &self.ranges), Some((_, hi)) if hi + c * w <= numel);
                    Access::Strided(p, c as u32, if full { (c * w) as u32 } else { ((w - 1) * c + 1) as u32 })
                }
                Lane::Varying => unreachable!("varying offsets are gathered"),
            });
        }
        let off = self.gen(&flat)?;
        let off = self.ir.splat(off, s.width);
        Ok(Access::Lanes(self.ir.gep(elem, base, off)))
    }

    fn lane_mask(&self, width: u32) -> Bv<'ctx> {
        self.simd.and_then(|s| s.mask).unwrap_or_else(|| self.all_lanes(width))
    }

    fn load(&mut self, buf: BufId, index: &[Expr]) -> R<Bv<'ctx>> {
        let dtype = self.f.buffer(buf).dtype;
        let elem = mem_type(self.ir.ctx, dtype);
        let align = dtype.size_bytes() as u32;
        let align_arg: Bv = self.ir.ctx.i32_type().const_int(u64::from(align), false).into();
        let v = match self.access(buf, index, true)? {
            Access::Scalar(p) => self.ir.load(elem, p, align),
            Access::Contiguous(p) => {
                let s = self.simd.expect("contiguous accesses are vector accesses");
                let vt = self.ir.shaped(elem, Some(s.width));
                match s.mask {
                    None => self.ir.load(vt, p, align),
                    Some(m) => {
                        let zero = vt.const_zero();
                        self.ir.intrinsic("llvm.masked.load", &[vt, p.get_type()], &[p, align_arg, m, zero]).expect("a value")
                    }
                }
            }
            Access::Strided(p, stride, span) => {
                let w = self.simd.expect("strided accesses are vector accesses").width;
                let wide = self.ir.load(self.ir.shaped(elem, Some(span)), p, align);
                let picks: Vec<u32> = (0..w).map(|i| i * stride).collect();
                self.ir.shuffle(wide, &picks)
            }
            Access::Lanes(ps) => {
                let n = lanes(ps).expect("a pointer vector");
                let vt = self.ir.shaped(elem, Some(n));
                let mask = self.lane_mask(n);
                self.ir.intrinsic("llvm.masked.gather", &[vt, ps.get_type()], &[ps, align_arg, mask, vt.const_zero()]).expect("a value")
            }
        };
        Ok(if dtype == DType::Bool { self.ir.icmp(IP::LLVMIntNE, v, self.ir.like(v, self.ir.ctx.i8_type().const_zero().into())) } else { v })
    }

    /// A read prefetch of the cache line holding `buf[index]` (lane 0's element inside a
    /// vectorized loop) into the second-level cache: the look-ahead it serves reuses the
    /// data over many iterations, more than the first level holds. The address may lie
    /// past the buffer; a prefetch never faults.
    pub(crate) fn prefetch(&mut self, buf: BufId, index: &[Expr]) -> R<()> {
        let b = self.f.buffer(buf);
        let elem = mem_type(self.ir.ctx, b.dtype);
        let mut flat = index::flatten(index, &b.shape);
        if let Some(s) = self.simd {
            flat = flat.substitute(s.lane, &Expr::Int(0));
        }
        let off = self.value(&flat)?;
        let p = self.ir.gep_wrapping(elem, self.bufs[buf.index()], off);
        let i32 = |v: u64| -> Bv<'ctx> { self.ir.ctx.i32_type().const_int(v, false).into() };
        // llvm.prefetch(address, read, locality 2 (L2: prefetcht1 on x86), data cache).
        self.ir.intrinsic("llvm.prefetch", &[p.get_type()], &[p, i32(0), i32(2), i32(1)]);
        Ok(())
    }

    pub(crate) fn store(&mut self, buf: BufId, index: &[Expr], value: &Expr) -> R<()> {
        let dtype = self.f.buffer(buf).dtype;
        let mut v = self.value(value)?;
        if dtype == DType::Bool {
            v = self.ir.cast(Op::LLVMZExt, v, self.ir.ctx.i8_type().into());
        }
        let index: Vec<Expr> = index.iter().map(|e| index::simplify(e.clone(), &self.ranges)).collect();
        let align = dtype.size_bytes() as u32;
        let align_arg: Bv = self.ir.ctx.i32_type().const_int(u64::from(align), false).into();
        match self.access(buf, &index, false)? {
            Access::Scalar(p) if lanes(v).is_none() && self.simd.is_none() => self.ir.store(v, p, align),
            Access::Scalar(_) | Access::Strided(..) => {
                let name = &self.f.buffer(buf).name;
                return Err(GenError::Builder(format!("vector store to one element of %{name}")));
            }
            Access::Contiguous(p) => {
                let s = self.simd.expect("contiguous accesses are vector accesses");
                let v = self.ir.splat(v, s.width);
                match s.mask {
                    None => self.ir.store(v, p, align),
                    Some(m) => {
                        self.ir.intrinsic("llvm.masked.store", &[v.get_type(), p.get_type()], &[v, p, align_arg, m]);
                    }
                }
            }
            Access::Lanes(ps) => {
                let n = lanes(ps).expect("a pointer vector");
                let v = self.ir.splat(v, n);
                let mask = self.lane_mask(n);
                self.ir.intrinsic("llvm.masked.scatter", &[v.get_type(), ps.get_type()], &[v, ps, align_arg, mask]);
            }
        }
        Ok(())
    }

    fn binary(&mut self, op: BinOp, ea: &Expr, eb: &Expr, whole: &Expr) -> R<Bv<'ctx>> {
        let (a, b) = (self.gen(ea)?, self.gen(eb)?);
        let (a, b) = self.ir.unify(a, b);
        let ir = &self.ir;
        let t = a.get_type();
        Ok(match (kind(a), op) {
            (Kind::Float, BinOp::Add) => ir.binop(Op::LLVMFAdd, a, b, false),
            (Kind::Float, BinOp::Sub) => ir.binop(Op::LLVMFSub, a, b, false),
            (Kind::Float, BinOp::Mul) => ir.binop(Op::LLVMFMul, a, b, false),
            (Kind::Float, BinOp::Div) => ir.binop(Op::LLVMFDiv, a, b, false),
            // Truncated (C fmod), as the reference interpreter and ONNX's float Mod define it.
            (Kind::Float, BinOp::Rem) => ir.binop(Op::LLVMFRem, a, b, false),
            (Kind::Float, BinOp::Min) => ir.intrinsic("llvm.minnum", &[t], &[a, b]).expect("a value"),
            (Kind::Float, BinOp::Max) => ir.intrinsic("llvm.maxnum", &[t], &[a, b]).expect("a value"),
            (Kind::Float, BinOp::Pow) => ir.intrinsic("llvm.pow", &[t], &[a, b]).expect("a value"),
            (Kind::Float, BinOp::Lt) => ir.fcmp(FP::LLVMRealOLT, a, b),
            (Kind::Float, BinOp::Le) => ir.fcmp(FP::LLVMRealOLE, a, b),
            (Kind::Float, BinOp::Gt) => ir.fcmp(FP::LLVMRealOGT, a, b),
            (Kind::Float, BinOp::Ge) => ir.fcmp(FP::LLVMRealOGE, a, b),
            (Kind::Float, BinOp::Eq) => ir.fcmp(FP::LLVMRealOEQ, a, b),
            (Kind::Float, BinOp::Ne) => ir.fcmp(FP::LLVMRealUNE, a, b),
            (Kind::Int, BinOp::Add | BinOp::Sub | BinOp::Mul) => {
                let code = match op {
                    BinOp::Add => Op::LLVMAdd,
                    BinOp::Sub => Op::LLVMSub,
                    _ => Op::LLVMMul,
                };
                // Index arithmetic whose range is known cannot overflow: say so, for SCEV.
                ir.binop(code, a, b, index::range(whole, &self.ranges).is_some())
            }
            (Kind::Int, BinOp::Div | BinOp::Rem) => self.floor_div_rem(op == BinOp::Rem, ea, eb, a, b),
            (Kind::Int, BinOp::Min) => ir.intrinsic("llvm.smin", &[t], &[a, b]).expect("a value"),
            (Kind::Int, BinOp::Max) => ir.intrinsic("llvm.smax", &[t], &[a, b]).expect("a value"),
            (Kind::Int, BinOp::Pow) => {
                let pow = self.pow_i64();
                let i64t = self.ir.ctx.i64_type().into();
                self.per_lane(&[a, b], i64t, &mut |g, xs| g.ir.call(pow, xs).expect("a value"))
            }
            (Kind::Int, BinOp::Lt) => ir.icmp(IP::LLVMIntSLT, a, b),
            (Kind::Int, BinOp::Le) => ir.icmp(IP::LLVMIntSLE, a, b),
            (Kind::Int, BinOp::Gt) => ir.icmp(IP::LLVMIntSGT, a, b),
            (Kind::Int, BinOp::Ge) => ir.icmp(IP::LLVMIntSGE, a, b),
            (Kind::Int | Kind::Bool, BinOp::Eq) => ir.icmp(IP::LLVMIntEQ, a, b),
            (Kind::Int | Kind::Bool, BinOp::Ne) => ir.icmp(IP::LLVMIntNE, a, b),
            (Kind::Bool, BinOp::Lt) => ir.icmp(IP::LLVMIntULT, a, b),
            (Kind::Bool, BinOp::Le) => ir.icmp(IP::LLVMIntULE, a, b),
            (Kind::Bool, BinOp::Gt) => ir.icmp(IP::LLVMIntUGT, a, b),
            (Kind::Bool, BinOp::Ge) => ir.icmp(IP::LLVMIntUGE, a, b),
            (Kind::Bool, BinOp::And) => ir.binop(Op::LLVMAnd, a, b, false),
            (Kind::Bool, BinOp::Or) => ir.binop(Op::LLVMOr, a, b, false),
            (Kind::Bool, BinOp::Xor) => ir.binop(Op::LLVMXor, a, b, false),
            (k, op) => return Err(GenError::Unsupported(format!("{} of {k:?} operands", op.name()))),
        })
    }

    /// 0.0 of the float type of `v` (f32 or f16).
    fn float_zero(&self, v: Bv<'ctx>) -> Bv<'ctx> {
        unsafe {
            let mut t = c::LLVMTypeOf(v.as_value_ref());
            if lanes(v).is_some() {
                t = c::LLVMGetElementType(t);
            }
            BasicValueEnum::new(c::LLVMConstNull(t))
        }
    }

    /// Integer floor division or modulo (results round toward negative infinity).
    fn floor_div_rem(&self, rem: bool, ea: &Expr, eb: &Expr, a: Bv<'ctx>, b: Bv<'ctx>) -> Bv<'ctx> {
        let ir = &self.ir;
        let k = |v: i64| ir.like(a, ir.i64(v));
        if let Expr::Int(m) = eb {
            if *m > 0 {
                if matches!(index::range(ea, &self.ranges), Some((lo, _)) if lo >= 0) {
                    return ir.binop(if rem { Op::LLVMURem } else { Op::LLVMUDiv }, a, b, false);
                }
                let r = ir.binop(Op::LLVMSRem, a, b, false);
                let neg = ir.icmp(IP::LLVMIntSLT, r, k(0));
                return if rem {
                    ir.select(neg, ir.binop(Op::LLVMAdd, r, b, false), r)
                } else {
                    let q = ir.binop(Op::LLVMSDiv, a, b, false);
                    ir.select(neg, ir.binop(Op::LLVMSub, q, k(1), false), q)
                };
            }
        }
        // A divisor of 0 or -1 would trap (or overflow); 0 gives an unspecified result, -1
        // its wrapped one.
        let minus_one = ir.icmp(IP::LLVMIntEQ, b, k(-1));
        let bad = ir.binop(Op::LLVMOr, ir.icmp(IP::LLVMIntEQ, b, k(0)), minus_one, false);
        let d = ir.select(bad, k(1), b);
        let q = ir.binop(Op::LLVMSDiv, a, d, false);
        let r = ir.binop(Op::LLVMSRem, a, d, false);
        let signs_differ = ir.icmp(IP::LLVMIntSLT, ir.binop(Op::LLVMXor, r, d, false), k(0));
        let fix = ir.binop(Op::LLVMAnd, ir.icmp(IP::LLVMIntNE, r, k(0)), signs_differ, false);
        if rem {
            let r = ir.select(fix, ir.binop(Op::LLVMAdd, r, d, false), r);
            ir.select(minus_one, k(0), r)
        } else {
            let q = ir.select(fix, ir.binop(Op::LLVMSub, q, k(1), false), q);
            ir.select(minus_one, ir.binop(Op::LLVMSub, k(0), a, false), q)
        }
    }

    /// Applies a scalar operation lane by lane when any operand is a vector.
    fn per_lane(&self, args: &[Bv<'ctx>], ret: BasicTypeEnum<'ctx>, f: &mut dyn FnMut(&Self, &[Bv<'ctx>]) -> Bv<'ctx>) -> Bv<'ctx> {
        let Some(n) = args.iter().find_map(|&a| lanes(a)) else { return f(self, args) };
        let mut out = self.ir.poison(self.ir.shaped(ret, Some(n)));
        for i in 0..n {
            let xs: Vec<Bv> = args.iter().map(|&a| if lanes(a).is_some() { self.ir.extract(a, i) } else { a }).collect();
            let r = f(self, &xs);
            out = self.ir.insert(out, r, i);
        }
        out
    }

    fn call(&mut self, f: Intrinsic, args: &[Bv<'ctx>]) -> R<Bv<'ctx>> {
        let ir = &self.ir;
        let x = args[0];
        let k = kind(x);
        let one = |v: Bv<'ctx>| ir.like(v, ir.f32(1.0));
        Ok(match (f, k) {
            (Intrinsic::Fma, Kind::Float) => {
                let n = args.iter().find_map(|&a| lanes(a));
                let xs: Vec<Bv> = args.iter().map(|&a| n.map_or(a, |n| ir.splat(a, n))).collect();
                ir.intrinsic("llvm.fma", &[xs[0].get_type()], &xs).expect("a value")
            }
            (Intrinsic::Neg, Kind::Float) => ir.fneg(x),
            (Intrinsic::Neg, Kind::Int) => ir.binop(Op::LLVMSub, ir.like(x, ir.i64(0)), x, false),
            (Intrinsic::Not, Kind::Bool) => ir.binop(Op::LLVMXor, x, ir.like(x, ir.bool(true)), false),
            (Intrinsic::Abs, Kind::Float) => ir.unary("llvm.fabs", x),
            (Intrinsic::Abs, Kind::Int) => ir.intrinsic("llvm.abs", &[x.get_type()], &[x, ir.bool(false)]).expect("a value"),
            (Intrinsic::Exp, Kind::Float) => ir.unary("llvm.exp", x),
            (Intrinsic::Log, Kind::Float) => ir.unary("llvm.log", x),
            (Intrinsic::Sqrt, Kind::Float) => ir.unary("llvm.sqrt", x),
            (Intrinsic::Sin, Kind::Float) => ir.unary("llvm.sin", x),
            (Intrinsic::Cos, Kind::Float) => ir.unary("llvm.cos", x),
            (Intrinsic::Floor, Kind::Float) => ir.unary("llvm.floor", x),
            (Intrinsic::Ceil, Kind::Float) => ir.unary("llvm.ceil", x),
            (Intrinsic::Round, Kind::Float) => ir.unary("llvm.roundeven", x),
            (Intrinsic::Tanh | Intrinsic::Erf, Kind::Float) => {
                let libm = self.libm(if f == Intrinsic::Tanh { "tanhf" } else { "erff" });
                let f32t = self.ir.ctx.f32_type().into();
                self.per_lane(&[x], f32t, &mut |g, xs| g.ir.call(libm, xs).expect("a value"))
            }
            (Intrinsic::Sigmoid, Kind::Float) => {
                let e = ir.unary("llvm.exp", ir.fneg(x));
                ir.binop(Op::LLVMFDiv, one(x), ir.binop(Op::LLVMFAdd, one(x), e, false), false)
            }
            (Intrinsic::Sign, Kind::Float) => {
                // 0, -0 and NaN are their own sign.
                let zero = ir.like(x, ir.f32(0.0));
                let neg = ir.select(ir.fcmp(FP::LLVMRealOLT, x, zero), ir.like(x, ir.f32(-1.0)), x);
                ir.select(ir.fcmp(FP::LLVMRealOGT, x, zero), one(x), neg)
            }
            (Intrinsic::Sign, Kind::Int) => {
                let z = ir.like(x, ir.i64(0));
                let neg = ir.select(ir.icmp(IP::LLVMIntSLT, x, z), ir.like(x, ir.i64(-1)), z);
                ir.select(ir.icmp(IP::LLVMIntSGT, x, z), ir.like(x, ir.i64(1)), neg)
            }
            (f, k) => return Err(GenError::Unsupported(format!("{} of {k:?}", f.name()))),
        })
    }

    /// A C math function `float name(float)`, known not to touch memory.
    fn libm(&self, name: &str) -> FunctionValue<'ctx> {
        let f32t: BasicTypeEnum = self.ir.ctx.f32_type().into();
        let f = libc_fn(&self.ir, name, Some(f32t), &[f32t]);
        let memory_none = self.ir.ctx.create_enum_attribute(inkwell::attributes::Attribute::get_named_enum_kind_id("memory"), 0);
        f.add_attribute(inkwell::attributes::AttributeLoc::Function, memory_none);
        f
    }

    fn cast(&mut self, to: DType, v: Bv<'ctx>) -> Bv<'ctx> {
        let ir = &self.ir;
        let target = reg_type(ir.ctx, to);
        let width = |t: inkwell::llvm_sys::prelude::LLVMTypeRef| unsafe {
            let t = if c::LLVMGetTypeKind(t) == inkwell::llvm_sys::LLVMTypeKind::LLVMVectorTypeKind { c::LLVMGetElementType(t) } else { t };
            c::LLVMGetTypeKind(t) == inkwell::llvm_sys::LLVMTypeKind::LLVMHalfTypeKind
        };
        match (kind(v), to) {
            (Kind::Float, DType::F32 | DType::F16) => {
                let (from_half, to_half) = (width(v.get_type().as_type_ref()), to == DType::F16);
                match (from_half, to_half) {
                    (false, true) => ir.cast(Op::LLVMFPTrunc, v, target),
                    (true, false) => ir.cast(Op::LLVMFPExt, v, target),
                    _ => v,
                }
            }
            // Saturating, with NaN to 0: what Rust's `as i64` does.
            (Kind::Float, DType::I64) => {
                let ret = ir.shaped(target, lanes(v));
                ir.intrinsic("llvm.fptosi.sat", &[ret, v.get_type()], &[v]).expect("a value")
            }
            (Kind::Float, DType::Bool) => ir.fcmp(FP::LLVMRealUNE, v, ir.like(v, self.float_zero(v))),
            (Kind::Int, DType::F32 | DType::F16) => ir.cast(Op::LLVMSIToFP, v, target),
            (Kind::Int, DType::Bool) => ir.icmp(IP::LLVMIntNE, v, ir.like(v, ir.i64(0))),
            (Kind::Bool, DType::F32 | DType::F16) => ir.cast(Op::LLVMUIToFP, v, target),
            (Kind::Bool, DType::I64) => ir.cast(Op::LLVMZExt, v, target),
            _ => v,
        }
    }

    /// `i64 chanasc.pow.i64(i64 base, i64 exp)`: integer power with wrapping multiplication;
    /// a negative exponent gives the truncated real result (0 unless |base| is 1).
    fn pow_i64(&self) -> FunctionValue<'ctx> {
        const NAME: &str = "chanasc.pow.i64";
        if let Some(f) = self.ir.module.get_function(NAME) {
            return f;
        }
        let ctx = self.ir.ctx;
        let i64t = ctx.i64_type();
        let f = self.ir.module.add_function(NAME, i64t.fn_type(&[i64t.into(), i64t.into()], false), Some(Linkage::Internal));
        let sub = crate::ops::Ir { ctx, module: self.ir.module, b: ctx.create_builder() };
        let (entry, negative, head, body, exit) = (
            ctx.append_basic_block(f, "entry"),
            ctx.append_basic_block(f, "negative"),
            ctx.append_basic_block(f, "loop"),
            ctx.append_basic_block(f, "body"),
            ctx.append_basic_block(f, "exit"),
        );
        let (base, exp) = (f.get_nth_param(0).expect("declared"), f.get_nth_param(1).expect("declared"));
        let k = |v: i64| sub.i64(v);
        let b = &sub.b;
        b.position_at_end(entry);
        let is_neg = sub.icmp(IP::LLVMIntSLT, exp, k(0));
        b.build_conditional_branch(is_neg.into_int_value(), negative, head).expect("positioned");
        b.position_at_end(negative);
        let odd = sub.icmp(IP::LLVMIntNE, sub.binop(Op::LLVMAnd, exp, k(1), false), k(0));
        let minus_one_pow = sub.select(odd, k(-1), k(1));
        let r = sub.select(sub.icmp(IP::LLVMIntEQ, base, k(-1)), minus_one_pow, k(0));
        let r = sub.select(sub.icmp(IP::LLVMIntEQ, base, k(1)), k(1), r);
        b.build_return(Some(&r)).expect("positioned");
        b.position_at_end(head);
        let acc = b.build_phi(i64t, "acc").expect("positioned");
        let sq = b.build_phi(i64t, "sq").expect("positioned");
        let e = b.build_phi(i64t, "e").expect("positioned");
        let done = sub.icmp(IP::LLVMIntEQ, e.as_basic_value(), k(0));
        b.build_conditional_branch(done.into_int_value(), exit, body).expect("positioned");
        b.position_at_end(body);
        let (accv, sqv, ev) = (acc.as_basic_value(), sq.as_basic_value(), e.as_basic_value());
        let bit = sub.icmp(IP::LLVMIntNE, sub.binop(Op::LLVMAnd, ev, k(1), false), k(0));
        let acc2 = sub.select(bit, sub.binop(Op::LLVMMul, accv, sqv, false), accv);
        let sq2 = sub.binop(Op::LLVMMul, sqv, sqv, false);
        let e2 = sub.binop(Op::LLVMLShr, ev, k(1), false);
        b.build_unconditional_branch(head).expect("positioned");
        acc.add_incoming(&[(&k(1), entry), (&acc2, body)]);
        sq.add_incoming(&[(&base, entry), (&sq2, body)]);
        e.add_incoming(&[(&exp, entry), (&e2, body)]);
        b.position_at_end(exit);
        b.build_return(Some(&accv)).expect("positioned");
        f
    }
}

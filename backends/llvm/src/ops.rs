//! Instruction building over values that may be scalars or vectors alike.
//!
//! inkwell types its builder by value kind (float, int, vector); loop IR code is generated
//! once for scalar and SIMD contexts, so these helpers go through the untyped C API.

use std::ffi::CStr;

use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::llvm_sys::core as c;
use inkwell::llvm_sys::prelude::{LLVMTypeRef, LLVMValueRef};
use inkwell::llvm_sys::{LLVMFastMathAllowContract, LLVMIntPredicate, LLVMOpcode, LLVMRealPredicate, LLVMTypeKind};
use inkwell::module::Module;
use inkwell::types::{AsTypeRef, BasicTypeEnum};
use inkwell::values::{AsValueRef, BasicMetadataValueEnum, BasicValueEnum, FunctionValue};

pub(crate) type Bv<'ctx> = BasicValueEnum<'ctx>;

const NONAME: &CStr = c"";

/// A builder with the context and module it emits into.
pub(crate) struct Ir<'m, 'ctx> {
    pub ctx: &'ctx Context,
    pub module: &'m Module<'ctx>,
    pub b: Builder<'ctx>,
}

fn wrap<'ctx>(v: LLVMValueRef) -> Bv<'ctx> {
    // SAFETY: every value built here is first-class (not void, not a label).
    unsafe { BasicValueEnum::new(v) }
}

fn ty_of(v: Bv) -> LLVMTypeRef {
    unsafe { c::LLVMTypeOf(v.as_value_ref()) }
}

/// The lane count of a vector value, None for a scalar.
pub(crate) fn lanes(v: Bv) -> Option<u32> {
    let t = ty_of(v);
    unsafe { (c::LLVMGetTypeKind(t) == LLVMTypeKind::LLVMVectorTypeKind).then(|| c::LLVMGetVectorSize(t)) }
}

/// The element type kind of a scalar or vector value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Float,
    Int,
    Bool,
}

pub(crate) fn kind(v: Bv) -> Kind {
    unsafe {
        let mut t = ty_of(v);
        if c::LLVMGetTypeKind(t) == LLVMTypeKind::LLVMVectorTypeKind {
            t = c::LLVMGetElementType(t);
        }
        match c::LLVMGetTypeKind(t) {
            LLVMTypeKind::LLVMIntegerTypeKind if c::LLVMGetIntTypeWidth(t) == 1 => Kind::Bool,
            LLVMTypeKind::LLVMIntegerTypeKind => Kind::Int,
            _ => Kind::Float,
        }
    }
}

impl<'m, 'ctx> Ir<'m, 'ctx> {
    fn raw(&self) -> inkwell::llvm_sys::prelude::LLVMBuilderRef {
        self.b.as_mut_ptr()
    }

    pub fn i64(&self, v: i64) -> Bv<'ctx> {
        self.ctx.i64_type().const_int(v as u64, true).into()
    }

    pub fn f32(&self, v: f32) -> Bv<'ctx> {
        self.ctx.f32_type().const_float(f64::from(v)).into()
    }

    pub fn bool(&self, v: bool) -> Bv<'ctx> {
        self.ctx.bool_type().const_int(u64::from(v), false).into()
    }

    /// The type `t`, or `t` as a vector of `n` lanes.
    pub fn shaped(&self, t: BasicTypeEnum<'ctx>, n: Option<u32>) -> BasicTypeEnum<'ctx> {
        match n {
            None => t,
            Some(n) => unsafe { BasicTypeEnum::new(c::LLVMVectorType(t.as_type_ref(), n)) },
        }
    }

    /// A scalar constant shaped like `like` (splatted when `like` is a vector).
    pub fn like(&self, like: Bv<'ctx>, scalar: Bv<'ctx>) -> Bv<'ctx> {
        match lanes(like) {
            Some(n) => self.splat(scalar, n),
            None => scalar,
        }
    }

    pub fn splat(&self, v: Bv<'ctx>, n: u32) -> Bv<'ctx> {
        if lanes(v).is_some() {
            return v;
        }
        unsafe {
            let vt = c::LLVMVectorType(ty_of(v), n);
            let i32t = self.ctx.i32_type();
            let one = c::LLVMBuildInsertElement(self.raw(), c::LLVMGetPoison(vt), v.as_value_ref(), i32t.const_zero().as_value_ref(), NONAME.as_ptr());
            let mask = c::LLVMConstNull(c::LLVMVectorType(i32t.as_type_ref(), n));
            wrap(c::LLVMBuildShuffleVector(self.raw(), one, c::LLVMGetPoison(vt), mask, NONAME.as_ptr()))
        }
    }

    pub fn extract(&self, v: Bv<'ctx>, lane: u32) -> Bv<'ctx> {
        let i = self.ctx.i32_type().const_int(u64::from(lane), false);
        unsafe { wrap(c::LLVMBuildExtractElement(self.raw(), v.as_value_ref(), i.as_value_ref(), NONAME.as_ptr())) }
    }

    pub fn insert(&self, v: Bv<'ctx>, x: Bv<'ctx>, lane: u32) -> Bv<'ctx> {
        let i = self.ctx.i32_type().const_int(u64::from(lane), false);
        unsafe { wrap(c::LLVMBuildInsertElement(self.raw(), v.as_value_ref(), x.as_value_ref(), i.as_value_ref(), NONAME.as_ptr())) }
    }

    /// The lanes of `v` at positions `picks`, as a new vector.
    pub fn shuffle(&self, v: Bv<'ctx>, picks: &[u32]) -> Bv<'ctx> {
        let i32t = self.ctx.i32_type();
        let mut mask: Vec<LLVMValueRef> = picks.iter().map(|&i| i32t.const_int(u64::from(i), false).as_value_ref()).collect();
        unsafe {
            let mask = c::LLVMConstVector(mask.as_mut_ptr(), mask.len() as u32);
            let poison = c::LLVMGetPoison(ty_of(v));
            wrap(c::LLVMBuildShuffleVector(self.raw(), v.as_value_ref(), poison, mask, NONAME.as_ptr()))
        }
    }

    pub fn poison(&self, t: BasicTypeEnum<'ctx>) -> Bv<'ctx> {
        unsafe { wrap(c::LLVMGetPoison(t.as_type_ref())) }
    }

    /// Splats whichever of the operands is scalar when the other is a vector.
    pub fn unify(&self, a: Bv<'ctx>, b: Bv<'ctx>) -> (Bv<'ctx>, Bv<'ctx>) {
        match (lanes(a), lanes(b)) {
            (Some(n), None) => (a, self.splat(b, n)),
            (None, Some(n)) => (self.splat(a, n), b),
            _ => (a, b),
        }
    }

    /// A two-operand instruction; f32 arithmetic may contract into fma, i64 arithmetic is
    /// marked no-signed-wrap when `nsw` (the caller proved it from index ranges).
    pub fn binop(&self, op: LLVMOpcode, a: Bv<'ctx>, b: Bv<'ctx>, nsw: bool) -> Bv<'ctx> {
        let (a, b) = self.unify(a, b);
        unsafe {
            let v = c::LLVMBuildBinOp(self.raw(), op, a.as_value_ref(), b.as_value_ref(), NONAME.as_ptr());
            if !c::LLVMIsAInstruction(v).is_null() {
                if c::LLVMCanValueUseFastMathFlags(v) != 0 {
                    c::LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
                } else if nsw && matches!(op, LLVMOpcode::LLVMAdd | LLVMOpcode::LLVMSub | LLVMOpcode::LLVMMul) {
                    c::LLVMSetNSW(v, 1);
                }
            }
            wrap(v)
        }
    }

    pub fn fneg(&self, a: Bv<'ctx>) -> Bv<'ctx> {
        unsafe { wrap(c::LLVMBuildFNeg(self.raw(), a.as_value_ref(), NONAME.as_ptr())) }
    }

    pub fn icmp(&self, p: LLVMIntPredicate, a: Bv<'ctx>, b: Bv<'ctx>) -> Bv<'ctx> {
        let (a, b) = self.unify(a, b);
        unsafe { wrap(c::LLVMBuildICmp(self.raw(), p, a.as_value_ref(), b.as_value_ref(), NONAME.as_ptr())) }
    }

    pub fn fcmp(&self, p: LLVMRealPredicate, a: Bv<'ctx>, b: Bv<'ctx>) -> Bv<'ctx> {
        let (a, b) = self.unify(a, b);
        unsafe { wrap(c::LLVMBuildFCmp(self.raw(), p, a.as_value_ref(), b.as_value_ref(), NONAME.as_ptr())) }
    }

    /// A select; a scalar condition may pick between vectors, a vector one needs vector arms.
    pub fn select(&self, cond: Bv<'ctx>, a: Bv<'ctx>, b: Bv<'ctx>) -> Bv<'ctx> {
        let (mut a, mut b) = self.unify(a, b);
        if let (Some(n), None) = (lanes(cond), lanes(a)) {
            (a, b) = (self.splat(a, n), self.splat(b, n));
        }
        unsafe { wrap(c::LLVMBuildSelect(self.raw(), cond.as_value_ref(), a.as_value_ref(), b.as_value_ref(), NONAME.as_ptr())) }
    }

    /// A conversion to the scalar type `to`, shaped like `v`.
    pub fn cast(&self, op: LLVMOpcode, v: Bv<'ctx>, to: BasicTypeEnum<'ctx>) -> Bv<'ctx> {
        let to = self.shaped(to, lanes(v));
        unsafe { wrap(c::LLVMBuildCast(self.raw(), op, v.as_value_ref(), to.as_type_ref(), NONAME.as_ptr())) }
    }

    pub fn load(&self, t: BasicTypeEnum<'ctx>, ptr: Bv<'ctx>, align: u32) -> Bv<'ctx> {
        unsafe {
            let v = c::LLVMBuildLoad2(self.raw(), t.as_type_ref(), ptr.as_value_ref(), NONAME.as_ptr());
            c::LLVMSetAlignment(v, align);
            wrap(v)
        }
    }

    pub fn store(&self, v: Bv<'ctx>, ptr: Bv<'ctx>, align: u32) {
        unsafe {
            let s = c::LLVMBuildStore(self.raw(), v.as_value_ref(), ptr.as_value_ref());
            c::LLVMSetAlignment(s, align);
        }
    }

    /// `ptr + offset` elements of `elem`; a vector offset gives a vector of pointers.
    pub fn gep(&self, elem: BasicTypeEnum<'ctx>, ptr: Bv<'ctx>, offset: Bv<'ctx>) -> Bv<'ctx> {
        let mut idx = [offset.as_value_ref()];
        unsafe {
            let build = if lanes(offset).is_some() { c::LLVMBuildGEP2 } else { c::LLVMBuildInBoundsGEP2 };
            wrap(build(self.raw(), elem.as_type_ref(), ptr.as_value_ref(), idx.as_mut_ptr(), 1, NONAME.as_ptr()))
        }
    }

    /// `ptr + offset` elements of `elem`, without the in-bounds promise: for addresses that
    /// may lie past the object (prefetch look-ahead).
    pub fn gep_wrapping(&self, elem: BasicTypeEnum<'ctx>, ptr: Bv<'ctx>, offset: Bv<'ctx>) -> Bv<'ctx> {
        let mut idx = [offset.as_value_ref()];
        unsafe { wrap(c::LLVMBuildGEP2(self.raw(), elem.as_type_ref(), ptr.as_value_ref(), idx.as_mut_ptr(), 1, NONAME.as_ptr())) }
    }

    pub fn call(&self, f: FunctionValue<'ctx>, args: &[Bv<'ctx>]) -> Option<Bv<'ctx>> {
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|&a| a.into()).collect();
        let site = self.b.build_call(f, &args, "").expect("the builder is positioned");
        match site.try_as_basic_value() {
            inkwell::values::ValueKind::Basic(v) => Some(v),
            _ => None,
        }
    }

    /// Calls the LLVM intrinsic `name` overloaded on `types`.
    pub fn intrinsic(&self, name: &str, types: &[BasicTypeEnum<'ctx>], args: &[Bv<'ctx>]) -> Option<Bv<'ctx>> {
        let f = Intrinsic::find(name)
            .and_then(|i| i.get_declaration(self.module, types))
            .unwrap_or_else(|| panic!("LLVM 19 has intrinsic {name}"));
        let v = self.call(f, args);
        if let Some(v) = v {
            unsafe {
                if !c::LLVMIsAInstruction(v.as_value_ref()).is_null() && c::LLVMCanValueUseFastMathFlags(v.as_value_ref()) != 0 {
                    c::LLVMSetFastMathFlags(v.as_value_ref(), LLVMFastMathAllowContract);
                }
            }
        }
        v
    }

    /// A one-operand intrinsic overloaded on its operand's type.
    pub fn unary(&self, name: &str, x: Bv<'ctx>) -> Bv<'ctx> {
        let t = x.get_type();
        self.intrinsic(name, &[t], &[x]).expect("unary intrinsics return a value")
    }
}

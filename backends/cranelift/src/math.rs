//! The Rust functions generated code calls where cranelift has no instruction: math
//! functions of the C library's definitions (what the LLVM backend's code calls), integer
//! power, f16 conversions, and heap memory for large temporaries.

use std::collections::HashMap;

use cranelift_codegen::ir::{types, AbiParam, Signature, Type};
use cranelift_codegen::isa::CallConv;
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

unsafe extern "C" {
    // From the C math library, as LLVM-compiled kernels call it.
    fn erff(x: f32) -> f32;
    fn tanhf(x: f32) -> f32;
}

extern "C" fn chanasc_expf(x: f32) -> f32 {
    x.exp()
}
extern "C" fn chanasc_logf(x: f32) -> f32 {
    x.ln()
}
extern "C" fn chanasc_sinf(x: f32) -> f32 {
    x.sin()
}
extern "C" fn chanasc_cosf(x: f32) -> f32 {
    x.cos()
}
extern "C" fn chanasc_tanhf(x: f32) -> f32 {
    // SAFETY: a pure C math function.
    unsafe { tanhf(x) }
}
extern "C" fn chanasc_erff(x: f32) -> f32 {
    // SAFETY: a pure C math function.
    unsafe { erff(x) }
}
extern "C" fn chanasc_powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}
/// Truncated remainder (C fmod), as the reference interpreter and ONNX's float Mod define it.
extern "C" fn chanasc_fmodf(x: f32, y: f32) -> f32 {
    x % y
}

/// Integer power with wrapping multiplication; a negative exponent gives the truncated real
/// result (0 unless |base| is 1).
extern "C" fn chanasc_pow_i64(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 if exp & 1 == 1 => -1,
            -1 => 1,
            _ => 0,
        };
    }
    let (mut acc, mut sq, mut e) = (1i64, base, exp as u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(sq);
        }
        sq = sq.wrapping_mul(sq);
        e >>= 1;
    }
    acc
}

/// IEEE half (low 16 bits) to f32.
extern "C" fn chanasc_f16_to_f32(h: u32) -> f32 {
    let h = h & 0xffff;
    let sign = (h >> 15) << 31;
    let exp = (h >> 10) & 0x1f;
    let man = h & 0x3ff;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// f32 to IEEE half (round to nearest even), in the low 16 bits.
extern "C" fn chanasc_f32_to_f16(x: f32) -> u32 {
    let bits = x.to_bits();
    let sign = (bits >> 16) & 0x8000;
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7e00;
    }
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < f32::from_bits(0x3880_0000) {
        // Below the smallest normal half: a multiple of 2^-24, rounded to even.
        let m = (a * 16_777_216.0).round_ties_even() as u32;
        return sign | m;
    }
    let e = ((a.to_bits() >> 23) as i32) - 127;
    let man = a.to_bits() & 0x7f_ffff;
    let mut h = (((e + 15) as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h
}

const HEAP_ALIGN: usize = 64;

/// 64-byte aligned memory for a temporary too large for the stack.
extern "C" fn chanasc_alloc(bytes: u64) -> *mut u8 {
    match std::alloc::Layout::from_size_align(bytes.max(1) as usize, HEAP_ALIGN) {
        // SAFETY: a non-zero size.
        Ok(l) => unsafe { std::alloc::alloc(l) },
        Err(_) => std::ptr::null_mut(),
    }
}

extern "C" fn chanasc_free(p: *mut u8, bytes: u64) {
    if let Ok(l) = std::alloc::Layout::from_size_align(bytes.max(1) as usize, HEAP_ALIGN) {
        if !p.is_null() {
            // SAFETY: allocated by chanasc_alloc with the same layout.
            unsafe { std::alloc::dealloc(p, l) }
        }
    }
}

/// A callable helper: its symbol and signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Helper {
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Erf,
    Pow,
    Fmod,
    PowI64,
    F16ToF32,
    F32ToF16,
    Alloc,
    Free,
}

impl Helper {
    fn symbol(self) -> &'static str {
        match self {
            Helper::Exp => "chanasc_expf",
            Helper::Log => "chanasc_logf",
            Helper::Sin => "chanasc_sinf",
            Helper::Cos => "chanasc_cosf",
            Helper::Tanh => "chanasc_tanhf",
            Helper::Erf => "chanasc_erff",
            Helper::Pow => "chanasc_powf",
            Helper::Fmod => "chanasc_fmodf",
            Helper::PowI64 => "chanasc_pow_i64",
            Helper::F16ToF32 => "chanasc_f16_to_f32",
            Helper::F32ToF16 => "chanasc_f32_to_f16",
            Helper::Alloc => "chanasc_alloc",
            Helper::Free => "chanasc_free",
        }
    }

    fn signature(self) -> (Vec<Type>, Option<Type>) {
        use types::{F32, I32, I64};
        match self {
            Helper::Exp | Helper::Log | Helper::Sin | Helper::Cos | Helper::Tanh | Helper::Erf => (vec![F32], Some(F32)),
            Helper::Pow | Helper::Fmod => (vec![F32, F32], Some(F32)),
            Helper::PowI64 => (vec![I64, I64], Some(I64)),
            Helper::F16ToF32 => (vec![I32], Some(F32)),
            Helper::F32ToF16 => (vec![F32], Some(I32)),
            Helper::Alloc => (vec![I64], Some(I64)),
            Helper::Free => (vec![I64, I64], None),
        }
    }
}

/// Every helper's symbol and address, for the JIT's symbol table.
pub(crate) fn symbols() -> Vec<(&'static str, *const u8)> {
    vec![
        (Helper::Exp.symbol(), chanasc_expf as *const u8),
        (Helper::Log.symbol(), chanasc_logf as *const u8),
        (Helper::Sin.symbol(), chanasc_sinf as *const u8),
        (Helper::Cos.symbol(), chanasc_cosf as *const u8),
        (Helper::Tanh.symbol(), chanasc_tanhf as *const u8),
        (Helper::Erf.symbol(), chanasc_erff as *const u8),
        (Helper::Pow.symbol(), chanasc_powf as *const u8),
        (Helper::Fmod.symbol(), chanasc_fmodf as *const u8),
        (Helper::PowI64.symbol(), chanasc_pow_i64 as *const u8),
        (Helper::F16ToF32.symbol(), chanasc_f16_to_f32 as *const u8),
        (Helper::F32ToF16.symbol(), chanasc_f32_to_f16 as *const u8),
        (Helper::Alloc.symbol(), chanasc_alloc as *const u8),
        (Helper::Free.symbol(), chanasc_free as *const u8),
    ]
}

/// The helpers declared in one module so far.
#[derive(Default)]
pub(crate) struct Imports {
    ids: HashMap<Helper, FuncId>,
}

impl Imports {
    /// The module-level id of `h`, declared on first use.
    pub(crate) fn id(&mut self, module: &mut JITModule, h: Helper) -> Result<FuncId, String> {
        if let Some(&id) = self.ids.get(&h) {
            return Ok(id);
        }
        let (params, ret) = h.signature();
        let mut sig = Signature::new(CallConv::triple_default(module.isa().triple()));
        sig.params = params.into_iter().map(AbiParam::new).collect();
        sig.returns = ret.into_iter().map(AbiParam::new).collect();
        let id = module.declare_function(h.symbol(), Linkage::Import, &sig).map_err(|e| e.to_string())?;
        self.ids.insert(h, id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow_i64_matches_repeated_multiplication() {
        assert_eq!(chanasc_pow_i64(3, 4), 81);
        assert_eq!(chanasc_pow_i64(-2, 3), -8);
        assert_eq!(chanasc_pow_i64(5, 0), 1);
        assert_eq!(chanasc_pow_i64(2, -1), 0);
        assert_eq!(chanasc_pow_i64(-1, -3), -1);
        assert_eq!(chanasc_pow_i64(1, -3), 1);
        assert_eq!(chanasc_pow_i64(2, 64), 0);
    }

    #[test]
    fn f16_conversions_round_trip_and_round_to_even() {
        for x in [0.0f32, -0.0, 1.0, -2.5, 65504.0, 6.1035156e-5, 5.9604645e-8, 0.333] {
            let h = chanasc_f32_to_f16(x);
            let back = chanasc_f16_to_f32(h);
            assert!((back - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {h:#x} -> {back}");
        }
        assert_eq!(chanasc_f32_to_f16(1.0), 0x3c00);
        assert_eq!(chanasc_f32_to_f16(1e6), 0x7c00);
        assert!(chanasc_f16_to_f32(chanasc_f32_to_f16(f32::NAN)).is_nan());
        // 1 + 2^-11 lies halfway between 1 and the next half; ties go to even (1).
        assert_eq!(chanasc_f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
    }
}

//! Module-level behaviour: constant blobs, several kernels per object, targets and their
//! vector widths, SIMD instructions in the output, heap temporaries, f16 storage, errors.

mod common;

use std::process::Command;

use common::{check_host, parse, run, Lib};
use ir::{Tensor, TensorData};
use llvm_backend::{compile_object, emit_llvm_ir, Arch, ConstBlob, Kernel, LlvmError, Target};

const SCALE: &str = r#"func "scale" {
  param %x: f32[64]
  param %w: f32[64]
  param %y: f32[64]
  for i_o in 0..4 parallel {
    for i_i in 0..16 vectorized {
      %y[i_o * 16 + i_i] = %x[i_o * 16 + i_i] * %w[i_o * 16 + i_i]
    }
  }
}"#;

/// Weights are a global the runtime passes to kernels; C code linked beside them sees the
/// bytes, 64-byte aligned, in a read-only section.
#[test]
fn const_blob_is_an_aligned_readonly_global() {
    let weights: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
    let bytes: Vec<u8> = weights.iter().flat_map(|w| w.to_le_bytes()).collect();
    let other = [7u8, 1, 2];
    let f = parse(SCALE);
    let consts = [ConstBlob { symbol: "model_weights".into(), bytes: &bytes }, ConstBlob { symbol: "tiny".into(), bytes: &other }];
    let c = r#"
#include <stdint.h>
extern const float model_weights[];
extern const unsigned char tiny[];
float weight_at(int i) { return model_weights[i]; }
int aligned(void) { return ((uintptr_t)model_weights % 64 == 0) && ((uintptr_t)tiny % 64 == 0); }
int tiny_sum(void) { return tiny[0] + tiny[1] + tiny[2]; }
const float* weights_ptr(void) { return model_weights; }
"#;
    let lib = Lib::build(&[Kernel { symbol: "scale".into(), func: &f }], &consts, &[c]);
    unsafe {
        let at: extern "C" fn(i32) -> f32 = std::mem::transmute(lib.sym("weight_at"));
        let aligned: extern "C" fn() -> i32 = std::mem::transmute(lib.sym("aligned"));
        let tiny_sum: extern "C" fn() -> i32 = std::mem::transmute(lib.sym("tiny_sum"));
        for i in 0..64 {
            assert_eq!(at(i), weights[i as usize]);
        }
        assert_eq!(aligned(), 1);
        assert_eq!(tiny_sum(), 10);
    }
    // The kernel gets the weights through args like any other buffer.
    let x = Tensor::f32([64], vec![2.0; 64]).unwrap();
    let args = [x, Tensor::f32([64], weights.clone()).unwrap(), Tensor::f32([64], vec![0.0; 64]).unwrap()];
    let out = lib.call("scale", &args, &[(0, 4)]);
    assert_eq!(out[2].data, TensorData::F32(weights.iter().map(|w| w * 2.0).collect()));

    let obj = compile_object(&[], &consts, &Target::host()).unwrap();
    let dir = common::scratch("elf");
    std::fs::write(dir.join("c.o"), obj).unwrap();
    let sections = run(Command::new("readelf").args(["-S", "-W", common::path_str(&dir.join("c.o"))]));
    let line = sections.lines().find(|l| l.contains(".rodata.model_weights")).unwrap_or_else(|| panic!("{sections}"));
    assert!(line.contains(" A ") && !line.contains("W"), "{line}");
    let symbols = run(Command::new("readelf").args(["-s", "-W", common::path_str(&dir.join("c.o"))]));
    assert!(symbols.lines().any(|l| l.contains("GLOBAL") && l.contains("OBJECT") && l.contains(" 256 ") && l.ends_with("model_weights")), "{symbols}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_kernels_in_one_object() {
    let a = parse(SCALE);
    let b = parse("func \"inc\" {\n  param %x: f32[10]\n  for i in 0..10 {\n    %x[i] = %x[i] + 1.0\n  }\n}");
    let lib = Lib::build(&[Kernel { symbol: "k_scale".into(), func: &a }, Kernel { symbol: "k_inc".into(), func: &b }], &[], &[]);
    let x = Tensor::f32([10], (0..10).map(|i| i as f32).collect()).unwrap();
    let out = lib.call("k_inc", &[x], &[(0, 0)]);
    assert_eq!(out[0].data, TensorData::F32((1..11).map(|i| i as f32).collect()));
    lib.sym("k_scale");
}

#[test]
fn vectorized_kernel_uses_full_simd_registers() {
    let t = Target::host();
    let w = t.vector_width();
    assert!([4, 8, 16].contains(&w));
    let text = format!(
        "func \"e\" {{\n  param %x: f32[{n}]\n  param %y: f32[{n}]\n  for o in 0..8 parallel {{\n    for i in 0..{w} vectorized {{\n      %y[o * {w} + i] = exp(%x[o * {w} + i]) + %x[o * {w} + i] * 2.0\n    }}\n  }}\n}}",
        n = 8 * w
    );
    let f = parse(&text);
    let ir = emit_llvm_ir(&[Kernel { symbol: "e".into(), func: &f }], &[], &t).unwrap();
    assert!(ir.contains(&format!("load <{w} x float>")) && ir.contains(&format!("store <{w} x float>")), "{ir}");
    let obj = compile_object(&[Kernel { symbol: "e".into(), func: &f }], &[], &t).unwrap();
    let dir = common::scratch("asm");
    std::fs::write(dir.join("e.o"), obj).unwrap();
    let asm = run(Command::new("objdump").args(["-d", common::path_str(&dir.join("e.o"))]));
    let reg = match w {
        16 => "zmm",
        8 => "ymm",
        _ => "xmm",
    };
    assert!(asm.contains(reg), "no {reg} in\n{asm}");
    let _ = std::fs::remove_dir_all(&dir);
    check_host(&text, None, 2e-6);
}

#[test]
fn target_construction_and_widths() {
    let host = Target::host();
    assert_eq!(host.arch, Arch::X86_64);
    assert!(!host.cpu.is_empty());
    let a = Target::new(Arch::Aarch64, None).unwrap();
    assert_eq!((a.cpu.as_str(), a.features.as_str(), a.vector_width()), ("generic", "+neon,+fullfp16", 4));
    // Half arithmetic: aarch64 with +fullfp16 (and CPUs that imply it); x86-64 with AVX512-FP16.
    assert!(a.has_f16_arithmetic());
    assert!(!Target::new(Arch::Aarch64, Some("cortex-a53")).unwrap().has_f16_arithmetic());
    assert!(Target::new(Arch::Aarch64, Some("neoverse-n1")).unwrap().has_f16_arithmetic());
    assert!(Target::new(Arch::X86_64, Some("sapphirerapids")).unwrap().has_f16_arithmetic());
    assert!(!Target::new(Arch::X86_64, Some("skylake-avx512")).unwrap().has_f16_arithmetic());
    assert_eq!(Target::new(Arch::X86_64, Some("skylake-avx512")).unwrap().vector_width(), 16);
    assert_eq!(Target::new(Arch::X86_64, Some("haswell")).unwrap().vector_width(), 8);
    assert_eq!(Target::new(Arch::X86_64, Some("x86-64")).unwrap().vector_width(), 4);
    let native = Target::new(Arch::X86_64, Some("native")).unwrap();
    assert_eq!(native.vector_width(), host.vector_width());
    assert!(matches!(Target::new(Arch::X86_64, Some("")), Err(LlvmError::Target { .. })));
    // A named CPU compiles for that CPU: AVX2 registers only on haswell.
    let f = parse(SCALE);
    let obj = compile_object(&[Kernel { symbol: "s".into(), func: &f }], &[], &Target::new(Arch::X86_64, Some("haswell")).unwrap()).unwrap();
    let dir = common::scratch("hsw");
    std::fs::write(dir.join("s.o"), obj).unwrap();
    let asm = run(Command::new("objdump").args(["-d", common::path_str(&dir.join("s.o"))]));
    assert!(asm.contains("ymm") && !asm.contains("zmm"), "{asm}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_what_is_at_fault() {
    let f = parse(SCALE);
    let t = Target::host();
    let dup = compile_object(&[Kernel { symbol: "w".into(), func: &f }], &[ConstBlob { symbol: "w".into(), bytes: &[1] }], &t);
    assert!(matches!(dup, Err(LlvmError::DuplicateSymbol(ref s)) if s == "w"), "{dup:?}");
    let e = compile_object(&[Kernel { symbol: "a".into(), func: &f }, Kernel { symbol: "a".into(), func: &f }], &[], &t).unwrap_err();
    assert_eq!(e.to_string(), "symbol a is defined twice");
    let e = compile_object(&[Kernel { symbol: "tanhf".into(), func: &f }], &[], &t).unwrap_err();
    assert!(matches!(e, LlvmError::BadSymbol { .. }), "{e:?}");
    // A hand-built program the verifier would reject: f32 `and`.
    let mut bad = f.clone();
    if let ir::loops::Stmt::For(l) = &mut bad.body[0] {
        if let ir::loops::Stmt::For(inner) = &mut l.body[0] {
            if let ir::loops::Stmt::Store { value, .. } = &mut inner.body[0] {
                *value = ir::loops::Expr::bin(ir::loops::BinOp::And, ir::loops::Expr::Float(1.0), ir::loops::Expr::Float(2.0));
            }
        }
    }
    let e = compile_object(&[Kernel { symbol: "bad".into(), func: &bad }], &[], &t).unwrap_err();
    assert!(matches!(e, LlvmError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("kernel bad (func \"scale\")") && e.to_string().contains("and of Float"), "{e}");
}

/// Temporaries beyond the stack limit come from the heap and are freed on return.
#[test]
fn large_temp_on_the_heap() {
    check_host(
        r#"func "pad_copy" {
  param %x: f32[64,300]
  param %y: f32[64,300]
  temp %p: f32[66,302]
  for h in 0..66 {
    for w in 0..302 {
      %p[h, w] = select(and(and(ge(h, 1), lt(h, 65)), and(ge(w, 1), lt(w, 301))), %x[min(max(h - 1, 0), 63), min(max(w - 1, 0), 299)], 0.0)
    }
  }
  for h2 in 0..64 {
    for w2 in 0..300 {
      %y[h2, w2] = %p[h2, w2] + %p[h2 + 2, w2 + 2] + %p[h2 + 1, w2 + 1]
    }
  }
}"#,
        None,
        1e-6,
    );
}

/// f16 is storage only: loads and stores of half, converted by casts.
#[test]
fn f16_storage() {
    let f = parse("func \"h\" {\n  param %h: f16[8]\n  param %x: f32[8]\n  param %y: f32[8]\n  param %g: f16[8]\n  for i in 0..8 vectorized {\n    %y[i] = f32(%h[i]) * 2.0\n    %g[i] = f16(%x[i])\n  }\n}");
    let lib = Lib::build(&[Kernel { symbol: "h".into(), func: &f }], &[], &[]);
    // Half bit patterns of 1.5, -2, 0.25, 65504, 0, -0, 1, 3.
    let halves: [u16; 8] = [0x3E00, 0xC000, 0x3400, 0x7BFF, 0, 0x8000, 0x3C00, 0x4200];
    let hbytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    // The harness moves bytes; an i64[2] tensor carries the 16 bytes of f16[8].
    let as_i64 = |b: &[u8]| Tensor::i64([2], b.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()).unwrap();
    let x = Tensor::f32([8], vec![1.5, -2.0, 0.25, 65504.0, 0.0, -0.0, 1.0, 3.0]).unwrap();
    let out = lib.call("h", &[as_i64(&hbytes), x, Tensor::f32([8], vec![0.0; 8]).unwrap(), as_i64(&[0; 16])], &[(0, 0)]);
    assert_eq!(out[2].data, TensorData::F32(vec![3.0, -4.0, 0.5, 131008.0, 0.0, -0.0, 2.0, 6.0]));
    assert_eq!(common::to_bytes(&out[3]), hbytes);
}

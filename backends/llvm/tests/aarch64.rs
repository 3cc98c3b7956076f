//! aarch64 objects: linked into a static executable with the cross gcc and run under qemu,
//! their results checked against the interpreter. Skipped where the cross tools are missing.

mod common;

use common::{assert_close, have, oracle, parse, random_args, run_aarch64};
use llvm_backend::{emit_llvm_ir, Arch, Kernel, Target};

fn tools() -> bool {
    let ok = have("aarch64-linux-gnu-gcc") && have("qemu-aarch64");
    if !ok {
        eprintln!("skipped: aarch64-linux-gnu-gcc or qemu-aarch64 missing");
    }
    ok
}

fn check(text: &str, tol: f32) {
    let f = parse(text);
    let args = random_args(&f, 21);
    let want = oracle(&f, &args);
    let got = run_aarch64(&f, &args, &Target::new(Arch::Aarch64, None).unwrap());
    assert_close(&got, &want, tol, &f.name);
}

#[test]
fn conv_and_elementwise_run_under_qemu() {
    if !tools() {
        return;
    }
    check(
        r#"func "conv_relu" {
  param %x: f32[1,3,10,10]
  param %w: f32[8,3,3,3]
  param %y: f32[1,8,8,8]
  temp %acc: f32[16]
  for oc in 0..8 parallel {
    for oh in 0..8 {
      for ow in 0..8 vectorized {
        %acc[ow] = 0.0
        for ic in 0..3 {
          for kh in 0..3 {
            for kw in 0..3 unrolled {
              %acc[ow] = fma(%x[0, ic, oh + kh, ow + kw], %w[oc, ic, kh, kw], %acc[ow])
            }
          }
        }
        %y[0, oc, oh, ow] = max(%acc[ow], 0.0)
      }
    }
  }
}"#,
        1e-5,
    );
    check(
        r#"func "mixed" {
  param %x: f32[50]
  param %n: i64[50]
  param %b: bool[50]
  param %y: f32[50]
  param %m: i64[50]
  for o in 0..13 parallel {
    for i in 0..4 vectorized {
      if lt(o * 4 + i, 50) {
        %y[o * 4 + i] = select(%b[o * 4 + i], tanh(%x[o * 4 + i]) + erf(%x[o * 4 + i]), sigmoid(%x[o * 4 + i]) * exp(%x[o * 4 + i]))
        %m[o * 4 + i] = %n[o * 4 + i] / 3 + %n[o * 4 + i] % 4 + i64(floor(%x[o * 4 + i] * 3.0))
      }
    }
  }
}"#,
        2e-6,
    );
}

#[test]
fn aarch64_vectors_are_neon_width() {
    let f = parse("func \"v\" {\n  param %x: f32[16]\n  param %y: f32[16]\n  for o in 0..4 {\n    for i in 0..4 vectorized {\n      %y[o * 4 + i] = %x[o * 4 + i] * 2.0\n    }\n  }\n}");
    let ir = emit_llvm_ir(&[Kernel { symbol: "v".into(), func: &f }], &[], &Target::new(Arch::Aarch64, None).unwrap()).unwrap();
    assert!(ir.contains("target triple = \"aarch64") && ir.contains("<4 x float>"), "{ir}");
}

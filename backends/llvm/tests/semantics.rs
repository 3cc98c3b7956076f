//! Operator semantics of compiled code, scalar and SIMD, against the interpreter: floor
//! division, casts, bools, every intrinsic, and the edge values (NaN, infinities, negatives).

mod common;

use common::{check_host, parse, random_args};
use ir::{Tensor, TensorData};

/// Runs the same statements in a serial loop and in a vectorized one (wrapped so that the
/// body's index `i` covers 0..16 either way).
fn both_ways(params: &str, body: &str, args: impl Fn(&ir::loops::Func) -> Vec<Tensor>, tol: f32) {
    for kind in ["", " vectorized"] {
        let text = format!("func \"t\" {{\n{params}\n  for i in 0..16{kind} {{\n{body}\n  }}\n}}");
        let f = parse(&text);
        check_host(&text, Some(args(&f)), tol);
    }
}

const EDGE_F32: [f32; 16] =
    [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 3.5, -0.4, 1e-3, 17.75, -123.5, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e30, -1e30];

fn with_f32(f: &ir::loops::Func, which: usize, v: &[f32]) -> Vec<Tensor> {
    let mut args = random_args(f, 11);
    args[which] = Tensor::f32([v.len()], v.to_vec()).unwrap();
    args
}

#[test]
fn integer_floor_division_of_negatives() {
    let vals: Vec<i64> = (-8..8).map(|v| v * 7 + 3).collect();
    both_ways(
        "  param %a: i64[16]\n  param %d: i64[16]\n  param %y: i64[6,16]",
        "    %y[0, i] = %a[i] / 4\n    %y[1, i] = %a[i] % 4\n    %y[2, i] = %a[i] / 3 + (i - 8) / 5\n    %y[3, i] = (i - 8) % 5 - %a[i] % 7\n    %y[4, i] = %a[i] / %d[i]\n    %y[5, i] = %a[i] % %d[i]",
        |f| {
            let mut args = random_args(f, 1);
            args[0] = Tensor::i64([16], vals.clone()).unwrap();
            args[1] = Tensor::i64([16], vec![3, -3, 7, -7, 1, -1, 2, 5, -2, 9, -9, 4, 6, -5, 8, 11]).unwrap();
            args
        },
        0.0,
    );
}

#[test]
fn integer_arithmetic_min_max_abs_sign_neg() {
    both_ways(
        "  param %a: i64[16]\n  param %b: i64[16]\n  param %y: i64[7,16]",
        "    %y[0, i] = %a[i] * %b[i] - %a[i] + 3\n    %y[1, i] = min(%a[i], %b[i])\n    %y[2, i] = max(%a[i], i)\n    %y[3, i] = abs(%a[i])\n    %y[4, i] = sign(%b[i])\n    %y[5, i] = neg(%a[i]) + select(lt(%a[i], %b[i]), 100, -100)\n    %y[6, i] = %a[min(max(%b[i], 0), 15)]",
        |f| random_args(f, 2),
        0.0,
    );
}

#[test]
fn float_arithmetic_and_rem() {
    both_ways(
        "  param %a: f32[16]\n  param %b: f32[16]\n  param %y: f32[6,16]",
        "    %y[0, i] = %a[i] * %b[i] + %a[i] / %b[i] - 1.5\n    %y[1, i] = %a[i] % %b[i]\n    %y[2, i] = min(%a[i], %b[i])\n    %y[3, i] = max(%a[i], %b[i])\n    %y[4, i] = pow(abs(%a[i]), %b[i])\n    %y[5, i] = select(gt(%a[i], %b[i]), %a[i], %b[i] * 2.0)",
        |f| {
            let mut args = with_f32(f, 0, &EDGE_F32);
            args[1] = Tensor::f32([16], vec![2.0, -3.0, 0.5, f32::NAN, -1.5, 0.75, 4.0, -4.0, 1.0, 3.0, 2.0, 1.0, -2.0, 5.0, 0.25, -7.0]).unwrap();
            args
        },
        1e-6,
    );
}

#[test]
fn every_intrinsic() {
    let intrinsics = [
        "neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "floor", "ceil", "round", "sign",
    ];
    let body: Vec<String> = intrinsics.iter().enumerate().map(|(k, f)| format!("    %y[{k}, i] = {f}(%a[i])")).collect();
    let body = body.join("\n") + &format!("\n    %y[{}, i] = fma(%a[i], %b[i], 0.5)", intrinsics.len());
    let params = format!("  param %a: f32[16]\n  param %b: f32[16]\n  param %y: f32[{},16]", intrinsics.len() + 1);
    // Edge values, then ordinary ones (exp and friends differ from the f64 oracle by an ulp).
    both_ways(&params, &body, |f| with_f32(f, 0, &EDGE_F32), 2e-6);
    let ordinary: Vec<f32> = (0..16).map(|k| k as f32 * 0.37 - 2.9).collect();
    both_ways(&params, &body, |f| with_f32(f, 0, &ordinary), 2e-6);
    let halves = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -3.51, 0.0, -0.0, 4.5, 5.5, -4.5, 1e7, -1e7, 0.49999997];
    both_ways(&params, &body, |f| with_f32(f, 0, &halves), 2e-6);
}

#[test]
fn casts() {
    both_ways(
        "  param %a: f32[16]\n  param %n: i64[16]\n  param %b: bool[16]\n  param %yi: i64[3,16]\n  param %yf: f32[3,16]\n  param %yb: bool[3,16]",
        "    %yi[0, i] = i64(%a[i])\n    %yi[1, i] = i64(%b[i]) + i64(i)\n    %yi[2, i] = i64(f32(%n[i]) * 0.5)\n    %yf[0, i] = f32(%n[i])\n    %yf[1, i] = f32(%b[i])\n    %yf[2, i] = f32(i) + f32(%a[i])\n    %yb[0, i] = bool(%a[i])\n    %yb[1, i] = bool(%n[i])\n    %yb[2, i] = bool(i % 3)",
        |f| {
            let mut args = with_f32(f, 0, &EDGE_F32);
            args[1] = Tensor::i64([16], vec![0, 1, -1, 7, -7, 100, -100, 3, 0, i64::MAX, i64::MIN, 5, -5, 2, 0, 9]).unwrap();
            args
        },
        0.0,
    );
}

#[test]
fn bool_buffers_and_logic() {
    both_ways(
        "  param %p: bool[16]\n  param %q: bool[16]\n  param %a: f32[16]\n  param %y: bool[8,16]\n  param %z: f32[16]",
        "    %y[0, i] = and(%p[i], %q[i])\n    %y[1, i] = or(%p[i], not(%q[i]))\n    %y[2, i] = xor(%p[i], %q[i])\n    %y[3, i] = lt(%p[i], %q[i])\n    %y[4, i] = eq(%p[i], %q[i])\n    %y[5, i] = ne(%a[i], %a[i])\n    %y[6, i] = ge(%a[i], 0.0)\n    %y[7, i] = le(i, 7)\n    %z[i] = select(%p[i], %a[i], neg(%a[i]))",
        |f| with_f32(f, 2, &EDGE_F32),
        0.0,
    );
}

/// Lane-varying guards nest, and loads under them are masked (these would read out of
/// bounds otherwise).
#[test]
fn nested_lane_guards_mask_loads_and_stores() {
    both_ways(
        "  param %a: f32[12]\n  param %n: i64[16]\n  param %y: f32[16]",
        "    %y[i] = -1.0\n    if lt(i, 12) {\n      if ne(%n[i] % 2, 0) {\n        %y[i] = %a[i] + f32(%n[i])\n      }\n    }",
        |f| random_args(f, 5),
        0.0,
    );
}

/// A serial loop nested in a vectorized one keeps the SIMD context (a reduction per lane).
#[test]
fn serial_reduction_inside_vectorized_loop() {
    check_host(
        r#"func "rowsum" {
  param %x: f32[8,16]
  param %y: f32[16]
  for j in 0..16 vectorized {
    %y[j] = 0.0
    for k in 0..8 {
      %y[j] = %y[j] + %x[k, j] * %x[7 - k, 15 - j]
    }
  }
}"#,
        None,
        1e-5,
    );
}

/// Integer pow is accepted by the verifier; it is generated with wrapping semantics.
#[test]
fn integer_pow_helper() {
    let f = parse("func \"p\" {\n  param %a: i64[8]\n  param %e: i64[8]\n  param %y: i64[8]\n  for i in 0..8 vectorized {\n    %y[i] = pow(%a[i], %e[i])\n  }\n}");
    let lib = common::Lib::build(&[llvm_backend::Kernel { symbol: "p".into(), func: &f }], &[], &[]);
    let a = vec![2, -3, 1, -1, -1, 5, 0, 3];
    let e = vec![10, 3, -4, -3, -2, -1, 0, 41];
    let args = [Tensor::i64([8], a.clone()).unwrap(), Tensor::i64([8], e.clone()).unwrap(), Tensor::i64([8], vec![0; 8]).unwrap()];
    let out = lib.call("p", &args, &[(0, 0)]);
    let want: Vec<i64> = vec![1024, -27, 1, -1, 1, 0, 1, 3i64.wrapping_pow(41)];
    assert_eq!(out[2].data, TensorData::I64(want));
}

/// Masks reach into loops nested under a lane-varying guard.
#[test]
fn loops_under_lane_guards() {
    both_ways(
        "  param %a: f32[4,16]\n  param %y: f32[16]",
        "    %y[i] = 0.5\n    if gt(%a[0, i], 0.0) {\n      for k in 0..4 {\n        %y[i] = %y[i] + %a[k, i] * f32(k)\n      }\n      for u in 0..2 unrolled {\n        if lt(i, 10) {\n          %y[i] = %y[i] - %a[u + 2, 15 - i]\n        }\n      }\n    }",
        |f| random_args(f, 8),
        1e-6,
    );
}

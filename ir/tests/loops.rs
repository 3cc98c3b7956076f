//! Loop IR text round-trips, and the verifier rejects what would be wrong code.

use ir::loops::{parse_func, print_func};

const CONV: &str = r#"func "conv_relu" {
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
}
"#;

#[test]
fn conv_round_trips() {
    let f = parse_func(CONV).unwrap();
    assert_eq!(print_func(&f), CONV);
    assert_eq!(f.params().len(), 3);
}

#[test]
fn every_expression_form_round_trips() {
    let text = r#"func "all \"forms\"" {
  param %a: f32[100]
  param %i: i64[4]
  param %b: bool[100]
  param %y: f32[100]
  for t in 0..7 parallel {
    for u in 0..16 {
      if lt(t * 16 + u, 100) {
        %y[t * 16 + u] = select(%b[t * 16 + u], exp(%a[t * 16 + u]) / (1.0 + sigmoid(%a[t * 16 + u])), -inf)
        %y[(t * 16 + u) % 100] = f32(%i[min(t, 3)] - (2 - 1)) * (-2.5e-7 - 3.0) + pow(%a[0], 2.0)
        %b[t * 16 + u] = and(not(%b[0]), le(%a[t * 16 + u] - %a[99 - (t * 16 + u)], 0.0))
        %i[t / 2] = max(i64(floor(%a[u])), -3) % 4
      }
    }
  }
}
"#;
    let f = parse_func(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(print_func(&f), text);
}

#[test]
fn layouts_round_trip_and_are_checked() {
    let text = "func \"blocked\" {\n  param %w: f32[2,3,16] view=[2,16,3] perm=[0,2,1]\n  param %y: f32[2,3,16]\n  for a in 0..2 {\n    for b in 0..3 {\n      for c in 0..16 {\n        %y[a, b, c] = %w[a, b, c]\n      }\n    }\n  }\n}\n";
    let f = parse_func(text).unwrap();
    assert_eq!(print_func(&f), text);
    let layout = f.buffers[0].layout.clone().unwrap();
    // Element (a, b, c) of the rearranged tensor is element a*16 + c, b of the [32, 3] source.
    let offsets = layout.source_offsets().unwrap();
    assert_eq!(offsets[0..3], [0, 3, 6]);
    assert_eq!(offsets[16], 1);
    assert_eq!(offsets[48], 48);
    let e = err(&text.replace("perm=[0,2,1]", "perm=[0,1,1]"));
    assert!(e.contains("does not rearrange a parameter"), "{e}");
}

#[test]
fn hand_written_spacing_is_accepted() {
    let f = parse_func("func \"g\" {\n param %y: i64[4]\n for i in 0..4 { %y[i] = i-1 }\n}").unwrap();
    assert!(print_func(&f).contains("%y[i] = i - 1"));
}

fn err(text: &str) -> String {
    parse_func(text).unwrap_err().to_string()
}

#[test]
fn verifier_catches_bad_programs() {
    let e = err("func \"f\" {\n  param %y: f32[10]\n  for i in 0..11 {\n    %y[i] = 0.0\n  }\n}");
    assert!(e.contains("index 0 of %y (i) ranges over [0, 10], outside [0, 10)"), "{e}");
    // A guard makes the same store legal.
    assert!(parse_func("func \"f\" {\n  param %y: f32[10]\n  for i in 0..11 {\n    if lt(i, 10) {\n      %y[i] = 0.0\n    }\n  }\n}").is_ok());
    let e = err("func \"f\" {\n  param %y: f32[10]\n  for i in 0..10 {\n    %y[i] = 1\n  }\n}");
    assert!(e.contains("store of i64 into %y of f32"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[10]\n  for i in 0..10 {\n    for j in 0..1 parallel {\n      %y[i] = 0.0\n    }\n  }\n}");
    assert!(e.contains("parallel loop j is not outermost"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[10]\n  for i in 0..10 {\n    %y[j] = 0.0\n  }\n}");
    assert!(e.contains("line 4, column 8: j is not a loop variable in scope"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[2,5]\n  for i in 0..2 {\n    %y[i] = 0.0\n  }\n}");
    assert!(e.contains("rank 2 but is indexed with 1"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[16]\n  for i in 0..4 vectorized {\n    for j in 0..4 vectorized {\n      %y[i * 4 + j] = 0.0\n    }\n  }\n}");
    assert!(e.contains("nested in another vectorized"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[16]\n  for i in 0..4 {\n    %y[i] = frob(1.0)\n  }\n}");
    assert!(e.contains("unknown function frob"), "{e}");
    let e = err("func \"f\" {\n  param %y: f32[16]\n  for i in 0..4 {\n    %y[i] = fma(1.0, 2.0)\n  }\n}");
    assert!(e.contains("fma takes 3 operands, got 2"), "{e}");
}

#[test]
fn prefetches_round_trip_and_may_look_past_the_end() {
    let text = "func \"f\" {\n  param %x: f32[10]\n  param %y: f32[10]\n  for i in 0..10 {\n    prefetch %x[i + 1]\n    %y[i] = %x[i]\n  }\n}\n";
    let f = parse_func(text).unwrap();
    assert_eq!(print_func(&f), text, "i + 1 reaches 10, past the end: a hint may");
    let e = err("func \"f\" {\n  param %x: f32[2,5]\n  for i in 0..2 {\n    prefetch %x[i]\n  }\n}");
    assert!(e.contains("%x has rank 2 but is prefetched with 1 indices"), "{e}");
    let e = err("func \"f\" {\n  param %x: f32[4]\n  for i in 0..2 {\n    prefetch %x[1.0]\n  }\n}");
    assert!(e.contains("index 0 of the prefetch of %x is not an integer"), "{e}");
    let e = err("func \"f\" {\n  param %x: f32[4]\n  for i in 0..2 {\n    prefetch %x[j]\n  }\n}");
    assert!(e.contains("j is not a loop variable in scope"), "{e}");
}

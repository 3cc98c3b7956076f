//! Schedule primitives: traces replay deterministically, keep results unchanged, and refuse
//! what does not apply with a clear error.

use ir::loops::{parse_func, print_func, Func};
use ir::Tensor;
use passes::schedule::{default_schedule, Primitive, Trace};

const CONV: &str = r#"func "conv" {
  param %x: f32[1,3,10,12]
  param %w: f32[8,3,3,3]
  param %b: f32[8]
  param %y: f32[1,8,8,10]
  for n in 0..1 {
    for oc in 0..8 {
      for oh in 0..8 {
        for ow in 0..10 {
          %y[n, oc, oh, ow] = %b[oc]
          for ic in 0..3 {
            for kh in 0..3 {
              for kw in 0..3 {
                %y[n, oc, oh, ow] = %y[n, oc, oh, ow] + %x[n, ic, oh + kh, ow + kw] * %w[oc, ic, kh, kw]
              }
            }
          }
        }
      }
    }
  }
}
"#;

const ADD: &str = r#"func "add" {
  param %a: f32[2,3,20]
  param %b: f32[3,1]
  param %y: f32[2,3,20]
  for i0 in 0..2 {
    for i1 in 0..3 {
      for i2 in 0..20 {
        %y[i0, i1, i2] = %a[i0, i1, i2] + %b[i1, 0]
      }
    }
  }
}
"#;

const TWO_STAGE: &str = r#"func "two_stage" {
  param %x: f32[4,8]
  param %y: f32[4,8]
  temp %t: f32[4,8]
  for i in 0..4 {
    for j in 0..8 {
      %t[i, j] = %x[i, j] * 2.0
    }
  }
  for a in 0..4 {
    for b in 0..8 {
      %y[a, b] = %t[a, b] + %t[a, 7 - b]
    }
  }
}
"#;

fn ramp(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::f32(shape.to_vec(), (0..n).map(|i| (((i * 31 + seed * 17) % 97) as f32 - 48.0) / 24.0).collect()).unwrap()
}

/// Runs `f` on fixed inputs and returns the last parameter (the output). A parameter with a
/// layout gets the argument its layout was made from.
fn eval(f: &Func) -> Tensor {
    // The argument of a rearranged parameter is the same data, so a flat one will do.
    let shape = |b: ir::loops::BufId| match &f.buffer(b).layout {
        Some(l) => vec![l.view.iter().product()],
        None => f.buffer(b).shape.clone(),
    };
    let mut args: Vec<Tensor> = f.params().iter().enumerate().map(|(i, &b)| ramp(&shape(b), i)).collect();
    interp::loops::run_func(f, &mut args).unwrap();
    args.pop().unwrap()
}

fn close(a: &Tensor, b: &Tensor) {
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn traces_round_trip_as_json() {
    let t = Trace(vec![
        Primitive::Split { loop_: "ow".into(), factor: 4 },
        Primitive::Reorder { loops: vec!["oc".into(), "n".into()] },
        Primitive::Fuse { outer: "a".into(), inner: "b".into() },
        Primitive::Unroll { loop_: "kw".into() },
        Primitive::Vectorize { loop_: "ow_i".into() },
        Primitive::Parallel { loop_: "n".into() },
        Primitive::CacheWrite { buffer: "y".into(), at: "ow_o".into() },
    ]);
    let json = t.to_json();
    assert!(json.starts_with(r#"[{"op":"split","loop":"ow","factor":4},"#), "{json}");
    assert_eq!(Trace::from_json(&json).unwrap(), t);
}

#[test]
fn default_conv_schedule_tiles_and_keeps_results() {
    let f = parse_func(CONV).unwrap();
    let want = eval(&f);
    let trace = default_schedule(&f, 16);
    assert!(trace.0.iter().any(|p| matches!(p, Primitive::CacheWrite { .. })), "{}", trace.to_json());
    let scheduled = trace.apply(&f).unwrap();
    let text = print_func(&scheduled);
    assert!(text.contains("parallel") && text.contains("vectorized") && text.contains("temp %y_acc"), "{text}");
    close(&eval(&scheduled), &want);
    // Replaying the same trace gives the same program.
    assert_eq!(print_func(&trace.apply(&f).unwrap()), text);
    // The scheduled text parses back to itself.
    assert_eq!(print_func(&parse_func(&text).unwrap()), text);
}

/// The default schedule of channel-blocked convolutions (as lowering writes them, dense and
/// depthwise): a register tile of output pixels by one vector of a channel block.
#[test]
fn default_nchwc_conv_schedule_keeps_results() {
    for (groups, w, block) in [(1, [32, 16, 1, 1], 16), (16, [16, 1, 3, 3], 16), (1, [16, 24, 3, 3], 8)] {
        let c = if groups == 1 { w[1] } else { groups };
        let mut g = ir::Graph::new("t");
        let x = g.add_input("x", ir::TensorType::new(ir::DType::F32, vec![1, c / block, 9, 9, block]));
        let wv = g.add_const(Some("w".into()), ramp(&w, 3));
        let op = ir::Op::Conv2dNchwc { strides: [1, 1], pads: [0; 4], dilations: [1, 1], groups, block };
        let y = g.add_node(op, vec![x, wv], None).unwrap();
        g.outputs.push(y);
        let steps = passes::lower::lower_graph(&g).unwrap();
        let Some(passes::lower::Step::Run(p)) = steps.first() else { panic!("one program") };
        let want = eval(&p.func);
        let trace = default_schedule(&p.func, 16);
        let scheduled = trace.apply(&p.func).unwrap();
        let text = print_func(&scheduled);
        assert!(text.contains("for oi_i") && text.contains("vectorized") && text.contains("temp %y_acc"), "{text}");
        close(&eval(&scheduled), &want);
    }
}

#[test]
fn every_primitive_keeps_results() {
    let f = parse_func(CONV).unwrap();
    let want = eval(&f);
    let cases: Vec<Vec<Primitive>> = vec![
        vec![Primitive::Split { loop_: "ow".into(), factor: 3 }],
        vec![Primitive::Split { loop_: "oc".into(), factor: 4 }, Primitive::Reorder { loops: vec!["oh".into(), "oc_i".into()] }],
        vec![Primitive::Fuse { outer: "n".into(), inner: "oc".into() }, Primitive::Parallel { loop_: "n_oc".into() }],
        vec![Primitive::Unroll { loop_: "kw".into() }, Primitive::Vectorize { loop_: "ic".into() }],
        vec![
            Primitive::Split { loop_: "ow".into(), factor: 5 },
            Primitive::Reorder { loops: vec!["n".into(), "oc".into(), "oh".into(), "ow_o".into(), "ow_i".into()] },
            Primitive::CacheWrite { buffer: "y".into(), at: "ow_o".into() },
        ],
        vec![Primitive::CacheWrite { buffer: "y".into(), at: "oh".into() }],
    ];
    for steps in cases {
        let t = Trace(steps);
        let g = t.apply(&f).unwrap_or_else(|e| panic!("{}: {e}", t.to_json()));
        close(&eval(&g), &want);
    }
    let add = parse_func(ADD).unwrap();
    let want = eval(&add);
    let scheduled = default_schedule(&add, 16).apply(&add).unwrap();
    assert!(print_func(&scheduled).contains("vectorized"), "{}", print_func(&scheduled));
    close(&eval(&scheduled), &want);
}

#[test]
fn tile_layout_block_inline_and_compute_at_keep_results() {
    let f = parse_func(CONV).unwrap();
    let want = eval(&f);
    let tiled = Trace(vec![Primitive::Tile { outer: "oh".into(), inner: "ow".into(), outer_factor: 4, inner_factor: 5 }]).apply(&f).unwrap();
    assert!(print_func(&tiled).contains("for oh_o in 0..2 {\n        for ow_o in 0..2 {\n          for oh_i in 0..4 {"), "{}", print_func(&tiled));
    close(&eval(&tiled), &want);
    let blocked = Trace(vec![Primitive::LayoutBlock { buffer: "w".into(), axis: 0, factor: 4 }]).apply(&f).unwrap();
    let text = print_func(&blocked);
    assert!(text.contains("param %w: f32[2,3,3,3,4] view=[2,4,3,3,3] perm=[0,2,3,4,1]"), "{text}");
    assert!(text.contains("%w[oc / 4, ic, kh, kw, oc % 4]"), "{text}");
    close(&eval(&blocked), &want);

    let two = parse_func(TWO_STAGE).unwrap();
    let want = eval(&two);
    let inlined = Trace(vec![Primitive::Inline { buffer: "t".into() }]).apply(&two).unwrap();
    let text = print_func(&inlined);
    assert!(text.contains("%y[a, b] = %x[a, b] * 2.0 + %x[a, 7 - b] * 2.0") && !text.contains("%t[i"), "{text}");
    close(&eval(&inlined), &want);
    let moved = Trace(vec![Primitive::ComputeAt { buffer: "t".into(), at: "a".into() }]).apply(&two).unwrap();
    let text = print_func(&moved);
    assert!(text.starts_with("func \"two_stage\" {\n  param %x: f32[4,8]\n  param %y: f32[4,8]\n  temp %t: f32[4,8]\n  for a in 0..4 {\n    for i in 0..4 {"), "{text}");
    close(&eval(&moved), &want);
}

fn refusal(steps: Vec<Primitive>) -> String {
    Trace(steps).apply(&parse_func(CONV).unwrap()).unwrap_err().to_string()
}

#[test]
fn illegal_steps_are_refused_with_the_reason() {
    let e = refusal(vec![Primitive::Split { loop_: "zz".into(), factor: 2 }]);
    assert_eq!(e, "schedule step 0 (split): no loop named zz (loops: n, oc, oh, ow, ic, kh, kw)");
    let e = refusal(vec![Primitive::Unroll { loop_: "kw".into() }, Primitive::Split { loop_: "ow".into(), factor: 11 }]);
    assert_eq!(e, "schedule step 1 (split): factor 11 must be between 1 and the extent 10 of ow");
    let e = refusal(vec![Primitive::Split { loop_: "ow".into(), factor: 0 }]);
    assert!(e.contains("factor 0 must be between 1"), "{e}");
    let e = refusal(vec![Primitive::Parallel { loop_: "oh".into() }]);
    assert!(e.contains("(parallel): oh is not the program's only outermost loop"), "{e}");
    let e = refusal(vec![Primitive::Reorder { loops: vec!["ic".into(), "oh".into()] }]);
    assert!(e.contains("not perfectly nested"), "{e}");
    let e = refusal(vec![Primitive::Fuse { outer: "oc".into(), inner: "ow".into() }]);
    assert!(e.contains("ow is not the only statement of oc"), "{e}");
    let e = refusal(vec![Primitive::Vectorize { loop_: "ow".into() }, Primitive::Vectorize { loop_: "oh".into() }]);
    assert!(e.contains("contains a vectorized loop"), "{e}");
    let e = refusal(vec![Primitive::CacheWrite { buffer: "y".into(), at: "kh".into() }]);
    assert!(e.contains("initial store"), "{e}");
    let e = refusal(vec![Primitive::CacheWrite { buffer: "nope".into(), at: "oh".into() }]);
    assert!(e.contains("no buffer named nope"), "{e}");
    let e = refusal(vec![Primitive::LayoutBlock { buffer: "w".into(), axis: 0, factor: 3 }]);
    assert!(e.contains("cannot be split in blocks of 3"), "{e}");
    let e = refusal(vec![Primitive::LayoutBlock { buffer: "y".into(), axis: 1, factor: 4 }]);
    assert!(e.contains("%y is written by the program"), "{e}");
    let e = refusal(vec![Primitive::Inline { buffer: "x".into() }]);
    assert!(e.contains("%x is a parameter, not a temporary"), "{e}");
    let e = refusal(vec![Primitive::Tile { outer: "ic".into(), inner: "oh".into(), outer_factor: 1, inner_factor: 2 }]);
    assert!(e.contains("(tile): ic and oh:"), "{e}");
    let e = Trace::from_json(r#"[{"op": "twist", "loop": "ow"}]"#).unwrap_err().to_string();
    assert!(e.contains("unknown variant `twist`"), "{e}");
}

#[test]
fn prefetch_looks_ahead_spreads_over_reuse_and_keeps_results() {
    let f = parse_func(CONV).unwrap();
    let want = eval(&f);
    // Along oc: the next output channel's weights. oh and ow reuse them, so the look-ahead
    // is spread over oh (the outer reuse loop) through ic (the outermost loop they depend
    // on below it), and issued once per (ic, kh, kw): in kw's body.
    let t = Trace(vec![Primitive::Prefetch { buffer: "w".into(), loop_: "oc".into() }]);
    let g = t.apply(&f).unwrap();
    let text = print_func(&g);
    assert!(text.contains("for kw in 0..3 {\n                prefetch %w[oc + 1, (oh * 3 + ic) / 8, kh, kw]\n"), "{text}");
    assert_eq!(print_func(&parse_func(&text).unwrap()), text, "prints and parses back");
    close(&eval(&g), &want);
    assert_eq!(Trace::from_json(&t.to_json()).unwrap(), t);
    assert!(t.to_json().contains(r#"{"op":"prefetch","buffer":"w","loop":"oc"}"#), "{}", t.to_json());

    // A vector lane counts as lane 0, and an element that no loop inside the look-ahead loop
    // reuses is fetched where it is read: here the unrolled kw's body holds it.
    let t = Trace(vec![
        Primitive::Split { loop_: "ow".into(), factor: 5 },
        Primitive::Reorder { loops: vec!["n".into(), "oc".into(), "oh".into(), "ow_o".into(), "ow_i".into()] },
        Primitive::Vectorize { loop_: "ow_i".into() },
        Primitive::CacheWrite { buffer: "y".into(), at: "ow_o".into() },
        Primitive::Unroll { loop_: "kw".into() },
        Primitive::Prefetch { buffer: "x".into(), loop_: "ow_o".into() },
    ]);
    let g = t.apply(&f).unwrap();
    let text = print_func(&g);
    assert!(text.contains("prefetch %x[n, ic, oh + kh, (ow_o + 1) * 5 + 0 + kw]"), "{text}");
    close(&eval(&g), &want);
}

#[test]
fn prefetch_refuses_what_it_cannot_look_ahead_along() {
    let e = refusal(vec![Primitive::Prefetch { buffer: "nope".into(), loop_: "oc".into() }]);
    assert_eq!(e, "schedule step 0 (prefetch): no buffer named nope");
    let e = refusal(vec![Primitive::Prefetch { buffer: "w".into(), loop_: "zz".into() }]);
    assert_eq!(e, "schedule step 0 (prefetch): no loop named zz");
    let e = refusal(vec![Primitive::Prefetch { buffer: "b".into(), loop_: "ic".into() }]);
    assert_eq!(e, "schedule step 0 (prefetch): loop ic does not read %b");
    let e = refusal(vec![Primitive::Vectorize { loop_: "kw".into() }, Primitive::Prefetch { buffer: "w".into(), loop_: "kw".into() }]);
    assert!(e.contains("loop kw is vectorized: prefetch looks ahead along a serial or parallel loop"), "{e}");
}

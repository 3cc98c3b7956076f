//! WGSL generated from loop IR, scheduled with the GPU default schedule, computes what the
//! loop IR interpreter computes; GPU loop kinds print, parse and verify; the CPU backends
//! refuse GPU-bound loops. Tests that need an adapter say so and pass when there is none.

use interp::loops::run_func;
use ir::loops::{parse_func, print_func, verify::verify, Func};
use ir::{Tensor, TensorData};
use passes::schedule::{gpu_default_schedule, gpu_schedule_candidates, Primitive, Trace};
use wgpu_backend::bundle::{BufferSpec, IoSpec};
use wgpu_backend::{Bundle, Executor, NO_ADAPTER};

fn host_bytes(t: &Tensor) -> Vec<u8> {
    t.data.to_le_bytes()
}

/// Runs `f` on the GPU: every parameter is an input of the bundle, the last one also its
/// output (so its initial contents are given too, as the interpreter's are).
fn run_gpu(f: &Func, args: &[Tensor]) -> Vec<u8> {
    let shader = wgpu_backend::compile(f).unwrap_or_else(|e| panic!("{e}"));
    let mut buffers = Vec::new();
    let mut inputs = Vec::new();
    for (i, t) in args.iter().enumerate() {
        let elem = wgpu_backend::wgsl::gpu_elem_bytes(t.dtype()).unwrap();
        buffers.push(BufferSpec { bytes: (t.numel() * elem) as u64, init: None });
        inputs.push(IoSpec { name: format!("p{i}"), dtype: t.dtype().name().into(), shape: t.shape.clone(), buffer: i, staged: None });
    }
    let last = inputs.last().cloned().unwrap();
    let bundle = Bundle::single(&f.name, &shader, buffers, inputs, vec![last]);
    let exec = Executor::new(&bundle).unwrap_or_else(|e| panic!("{e}\n{}", shader.source));
    let host: Vec<Vec<u8>> = args.iter().map(host_bytes).collect();
    let refs: Vec<&[u8]> = host.iter().map(|v| v.as_slice()).collect();
    exec.run(&refs).unwrap().pop().unwrap()
}

/// Schedules `text` for the GPU, runs it there and on the interpreter, and compares the
/// last parameter.
fn check(text: &str, args: Vec<Tensor>) -> Func {
    check_scheduled(text, args, &|f| gpu_default_schedule(f, 16))
}

/// The tuner's first candidate that stages an operand in workgroup memory.
fn staged_schedule(f: &Func) -> Trace {
    let staged = gpu_schedule_candidates(f).into_iter().find(|t| t.0.iter().any(|p| matches!(p, Primitive::Stage { .. })));
    staged.unwrap_or_else(|| panic!("no candidate of {} stages an operand", f.name))
}

/// As `check`, with the schedule `schedule` makes.
fn check_scheduled(text: &str, args: Vec<Tensor>, schedule: &dyn Fn(&Func) -> Trace) -> Func {
    let f = parse_func(text).unwrap();
    let trace = schedule(&f);
    let scheduled = trace.apply(&f).unwrap();
    let mut want = args.clone();
    run_func(&f, &mut want).unwrap();
    if !Executor::available() {
        println!("skipping: {NO_ADAPTER}");
        return scheduled;
    }
    let got = run_gpu(&scheduled, &args);
    let want = host_bytes(want.last().unwrap());
    match &args.last().unwrap().data {
        TensorData::F32(_) => {
            let g: Vec<f32> = got.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            let w: Vec<f32> = want.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{}: element {i}: {a} vs {b}\n{}", f.name, print_func(&scheduled));
            }
        }
        _ => assert_eq!(got, want, "{}\n{}", f.name, print_func(&scheduled)),
    }
    scheduled
}

fn ramp(n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 101) as f32) * scale + offset).collect()
}

#[test]
fn elementwise_with_a_guarded_tail() {
    let text = "func \"relu2\" {\n  param %x: f32[1000]\n  param %y: f32[1000]\n  for i in 0..1000 {\n    %y[i] = max(%x[i], 0.0) * 2.0 + exp(%x[i] * 0.1)\n  }\n}";
    let f = check(text, vec![Tensor::f32([1000], ramp(1000, 0.1, -5.0)).unwrap(), Tensor::f32([1000], vec![0.0; 1000]).unwrap()]);
    // 1000 = 16 workgroups of 64, the last one guarded.
    assert!(print_func(&f).contains("workgroup"), "{}", print_func(&f));
}

#[test]
fn reduction_in_a_register() {
    let text = "func \"matmul\" {\n  param %a: f32[33,70]\n  param %b: f32[70,64]\n  param %y: f32[33,64]\n  for i in 0..33 {\n    for j in 0..64 {\n      %y[i, j] = 0.0\n      for k in 0..70 {\n        %y[i, j] = %y[i, j] + %a[i, k] * %b[k, j]\n      }\n      %y[i, j] = tanh(%y[i, j] * 0.01)\n    }\n  }\n}";
    let f = check(
        text,
        vec![
            Tensor::f32([33, 70], ramp(33 * 70, 0.01, -0.5)).unwrap(),
            Tensor::f32([70, 64], ramp(70 * 64, 0.02, -1.0)).unwrap(),
            Tensor::f32([33, 64], vec![0.0; 33 * 64]).unwrap(),
        ],
    );
    let text = print_func(&f);
    assert!(text.contains("invocation") && text.contains("temp"), "{text}");
}

#[test]
fn integer_floor_semantics_selects_and_casts() {
    let text = "func \"ints\" {\n  param %a: i64[200]\n  param %x: f32[200]\n  param %y: i64[200]\n  for i in 0..200 {\n    %y[i] = %a[i] / 3 + %a[i] % 3 * 100 + %a[i] % -7 * 10000 + select(lt(%x[i], 0.5), i64(%x[i] * 10.0), -1) + i64(ge(%a[i], 0))\n  }\n}";
    let a: Vec<i64> = (0..200).map(|i| i * 7 - 650).collect();
    check(
        text,
        vec![Tensor::i64([200], a).unwrap(), Tensor::f32([200], ramp(200, 0.01, -0.2)).unwrap(), Tensor::i64([200], vec![0; 200]).unwrap()],
    );
}

#[test]
fn a_scan_runs_in_one_invocation_and_nests_are_dispatches() {
    // Nest 1 is a scan (each element reads its neighbour's result): one invocation. Nest 2
    // reads nest 1's result: its own dispatch, after it.
    let text = "func \"cumsum_scale\" {\n  param %x: f32[300]\n  param %y: f32[300]\n  for i in 0..300 {\n    %y[i] = %x[i] + select(gt(i, 0), %y[max(i - 1, 0)], 0.0)\n  }\n  for j in 0..300 {\n    %y[j] = %y[j] * 0.5 - inf_guard(%y[j])\n  }\n}";
    let text = text.replace("inf_guard(%y[j])", "min(%y[j], 0.0)");
    let f = check(&text, vec![Tensor::f32([300], ramp(300, 0.01, 0.0)).unwrap(), Tensor::f32([300], vec![0.0; 300]).unwrap()]);
    let text = print_func(&f);
    assert_eq!(text.matches("workgroup").count(), 1, "{text}");
}

#[test]
fn infinities_and_bools() {
    let text = "func \"maxpool\" {\n  param %x: f32[8,130]\n  param %m: bool[8]\n  param %y: f32[8]\n  for r in 0..8 {\n    %y[r] = -inf\n    for c in 0..130 {\n      %y[r] = max(%y[r], %x[r, c])\n    }\n    %y[r] = select(%m[r], %y[r], 0.0 - %y[r])\n  }\n}";
    let m: Vec<bool> = (0..8).map(|i| i % 3 == 0).collect();
    check(
        text,
        vec![
            Tensor::f32([8, 130], ramp(8 * 130, -0.3, 2.0)).unwrap(),
            Tensor::new(vec![8], TensorData::Bool(m)).unwrap(),
            Tensor::f32([8], vec![0.0; 8]).unwrap(),
        ],
    );
}

#[test]
fn gpu_loop_kinds_print_parse_and_verify() {
    let text = "func \"f\" {\n  param %x: f32[128]\n  param %y: f32[128]\n  for b in 0..2 workgroup {\n    for t in 0..64 invocation {\n      %y[b * 64 + t] = %x[b * 64 + t]\n    }\n  }\n}\n";
    let f = parse_func(text).unwrap();
    assert_eq!(print_func(&f), text);
    verify(&f).unwrap();
    // An invocation loop outside a workgroup loop, and a workgroup loop not outermost.
    let stray = "func \"f\" {\n  param %y: f32[64]\n  for t in 0..64 invocation {\n    %y[t] = 0.0\n  }\n}\n";
    assert!(parse_func(stray).unwrap_err().to_string().contains("invocation loop t"));
    let nested = "func \"f\" {\n  param %y: f32[2,64]\n  for a in 0..2 {\n    for b in 0..1 workgroup {\n      for t in 0..64 invocation {\n        %y[a, t] = 0.0\n      }\n    }\n  }\n}\n";
    assert!(parse_func(nested).unwrap_err().to_string().contains("workgroup loop b"));
    // The cranelift backend refuses GPU-bound loops rather than running them serially.
    let e = cranelift_backend::compile(&[cranelift_backend::Kernel { symbol: "k".into(), func: &f }]).err().expect("refused");
    assert!(e.to_string().contains("bound to the GPU"), "{e}");
}

#[test]
fn unsupported_programs_name_the_program() {
    // f16 storage compiles (with `enable f16`); pow of halves does not.
    let copy = "func \"halfway\" {\n  param %x: f16[4]\n  param %y: f16[4]\n  for i in 0..4 {\n    %y[i] = %x[i]\n  }\n}";
    let shader = wgpu_backend::compile(&parse_func(copy).unwrap()).unwrap();
    assert!(shader.source.starts_with("enable f16;") && shader.source.contains("array<f16>"), "{}", shader.source);
    let text = "func \"halfway\" {\n  param %x: f16[4]\n  param %y: f16[4]\n  for i in 0..4 {\n    %y[i] = pow(%x[i], %x[i])\n  }\n}";
    let f = parse_func(text).unwrap();
    let e = wgpu_backend::compile(&f).unwrap_err().to_string();
    assert!(e.contains("halfway") && e.contains("f16"), "{e}");
}

/// A matrix product `%y[i, j] = tanh(sum_k %a[i, k] * %b[k, j])` with ramps for operands.
fn matmul(m: usize, k: usize, n: usize) -> (String, Vec<Tensor>) {
    let text = format!(
        "func \"mm\" {{\n  param %a: f32[{m},{k}]\n  param %b: f32[{k},{n}]\n  param %y: f32[{m},{n}]\n  for i in 0..{m} {{\n    for j in 0..{n} {{\n      %y[i, j] = 0.0\n      for k in 0..{k} {{\n        %y[i, j] = %y[i, j] + %a[i, k] * %b[k, j]\n      }}\n      %y[i, j] = tanh(%y[i, j] * 0.05)\n    }}\n  }}\n}}"
    );
    let args = vec![
        Tensor::f32([m, k], ramp(m * k, 0.01, -0.5)).unwrap(),
        Tensor::f32([k, n], ramp(k * n, 0.02, -1.0)).unwrap(),
        Tensor::f32([m, n], vec![0.0; m * n]).unwrap(),
    ];
    (text, args)
}

#[test]
fn reduction_staged_through_workgroup_memory() {
    // %a is shared by every output of a row: the workgroup stages chunks of its rows (3 of
    // them, the register tile) and every invocation reads them from workgroup memory.
    let (text, args) = matmul(33, 70, 64);
    let f = check_scheduled(&text, args, &staged_schedule);
    let printed = print_func(&f);
    assert!(printed.contains("temp %a_wg: f32[3,35]") && printed.contains("cooperative"), "{printed}");
    let shader = wgpu_backend::compile(&f).unwrap();
    assert!(shader.source.contains("var<workgroup> b") && shader.source.matches("workgroupBarrier()").count() == 2, "{}", shader.source);
    // The scheduled program (cooperative loop included) prints and parses back.
    assert_eq!(print_func(&parse_func(&printed).unwrap()), printed);
}

#[test]
fn staging_with_tails_in_the_reduction_and_the_outputs() {
    // 257 = one chunk of 256 and a guarded tail of 1; 131 outputs per row = two workgroups of
    // 64 and a third whose invocations past the end still reach the barriers (the output
    // guard is moved below the copy) but load nothing past %a's end.
    let (text, args) = matmul(37, 257, 131);
    let f = check_scheduled(&text, args, &staged_schedule);
    let printed = print_func(&f);
    assert!(
        printed.contains("temp %a_wg: f32[1,256]") && printed.contains("if lt(k_o * 256 + (a_wg_1_o * 4 + a_wg_1_i), 257)"),
        "{printed}"
    );
}

#[test]
fn pointwise_convolution_stages_weights_with_vec4_copies() {
    // A 1x1 convolution as a product of weights [32, 64] and a 14x14 map [64, 196]: the
    // weights' chunks (4 output channels x 64 input channels) are copied four at a time.
    let text = "func \"conv1x1\" {\n  param %w: f32[32,64]\n  param %x: f32[64,196]\n  param %y: f32[32,196]\n  for oc in 0..32 {\n    for p in 0..196 {\n      %y[oc, p] = 0.0\n      for ic in 0..64 {\n        %y[oc, p] = %y[oc, p] + %w[oc, ic] * %x[ic, p]\n      }\n      %y[oc, p] = max(%y[oc, p], 0.0)\n    }\n  }\n}";
    let args = vec![
        Tensor::f32([32, 64], ramp(32 * 64, 0.01, -0.5)).unwrap(),
        Tensor::f32([64, 196], ramp(64 * 196, 0.02, -1.0)).unwrap(),
        Tensor::f32([32, 196], vec![0.0; 32 * 196]).unwrap(),
    ];
    let f = check_scheduled(text, args, &staged_schedule);
    let shader = wgpu_backend::compile(&f).unwrap();
    let src = &shader.source;
    assert!(src.contains("var<storage, read> b0: array<vec4<f32>>") && src.contains("var<workgroup> b4: array<vec4<f32>, 64>"), "{src}");
    assert!(src.contains("4 lanes, vec4"), "{src}");
}

#[test]
fn elementwise_runs_four_lanes_through_vec4() {
    let text = "func \"scale\" {\n  param %x: f32[8,96]\n  param %s: f32[8]\n  param %y: f32[8,96]\n  for r in 0..8 {\n    for c in 0..96 {\n      %y[r, c] = %x[r, c] * %s[r] + sigmoid(%x[r, c])\n    }\n  }\n}";
    let args = vec![
        Tensor::f32([8, 96], ramp(8 * 96, 0.05, -2.0)).unwrap(),
        Tensor::f32([8], ramp(8, 0.3, -1.0)).unwrap(),
        Tensor::f32([8, 96], vec![0.0; 8 * 96]).unwrap(),
    ];
    let f = check(text, args);
    let shader = wgpu_backend::compile(&f).unwrap();
    // %x and %y are read and written as vec4; %s (one scale a row, the same in every lane)
    // is not accessed wide: a scalar array.
    let src = &shader.source;
    assert!(src.contains("b0: array<vec4<f32>>") && src.contains("b2: array<vec4<f32>>") && src.contains("b1: array<f32>"), "{src}");
}

#[test]
fn stage_is_a_json_step_and_cooperative_loops_are_checked() {
    let json = r#"[{"op":"split","loop":"k","factor":35},{"op":"stage","buffer":"a","at":"k_o"}]"#;
    let trace = passes::schedule::Trace::from_json(json).unwrap();
    assert_eq!(trace.to_json(), json);
    // Outside a GPU nest there is no invocation loop to share the copy.
    let (text, _) = matmul(4, 70, 8);
    let e = trace.apply(&parse_func(&text).unwrap()).unwrap_err().to_string();
    assert!(e.contains("stage") && e.contains("not inside an invocation loop"), "{e}");
    // A cooperative loop under a guard (non-uniform control flow) does not verify.
    let guarded = "func \"f\" {\n  param %x: f32[64]\n  param %y: f32[64]\n  temp %s: f32[64]\n  for b in 0..1 workgroup {\n    for t in 0..64 invocation {\n      if lt(t, 32) {\n        for c in 0..64 cooperative {\n          %s[c] = %x[c]\n        }\n      }\n      %y[t] = %s[t]\n    }\n  }\n}\n";
    let e = parse_func(guarded).unwrap_err().to_string();
    assert!(e.contains("cooperative loop c"), "{e}");
}

//! JIT-compiled kernels agree with the loop IR interpreter: every kernel of the LLVM
//! backend's tests, and the paths of this backend's own (f32x4 lanes, register tiles,
//! lane-by-lane statements, masks, gathers, integer and bool arithmetic, math functions,
//! the parallel [begin, end) contract).

use std::alloc::{alloc_zeroed, dealloc, Layout};

use cranelift_backend::{compile, emit_clif, Kernel};
use ir::loops::{parse_func, Func, LoopKind, Stmt};
use ir::{DType, Tensor, TensorData};

/// Bytes after every buffer that no kernel may write.
const CANARY: usize = 64;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random arguments: f32 in [-2, 2), i64 in [lo, hi), random bools.
fn random_args(f: &Func, seed: u64, (lo, hi): (i64, i64)) -> Vec<Tensor> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    f.params()
        .into_iter()
        .map(|p| {
            let b = f.buffer(p);
            let n: usize = b.shape.iter().product();
            let data = match b.dtype {
                DType::F32 => TensorData::F32((0..n).map(|_| (rng.next() >> 40) as f32 / (1u64 << 22) as f32 - 2.0).collect()),
                DType::I64 => TensorData::I64((0..n).map(|_| lo + (rng.next() % (hi - lo) as u64) as i64).collect()),
                DType::Bool => TensorData::Bool((0..n).map(|_| rng.next() & 1 == 1).collect()),
                DType::F16 => unreachable!("no f16 parameters in these tests"),
            };
            Tensor::new(b.shape.clone(), data).expect("shape and data agree")
        })
        .collect()
}

fn to_bytes(t: &Tensor) -> Vec<u8> {
    t.data.to_le_bytes()
}

fn from_bytes(like: &Tensor, bytes: &[u8]) -> Tensor {
    Tensor::new(like.shape.clone(), TensorData::from_le_bytes(like.dtype(), bytes)).unwrap()
}

/// Runs the compiled kernel on copies of `args`, once per [begin, end) range given.
fn run_jit(f: &Func, args: &[Tensor], ranges: &[(i64, i64)]) -> Vec<Tensor> {
    let jit = compile(&[Kernel { symbol: "kern".into(), func: f }]).unwrap_or_else(|e| panic!("{e}"));
    let entry = jit.entry(0).expect("one kernel");
    let layouts: Vec<(Layout, usize)> =
        args.iter().map(|t| (Layout::from_size_align(to_bytes(t).len() + CANARY, 64).unwrap(), to_bytes(t).len())).collect();
    let ptrs: Vec<*mut u8> = args
        .iter()
        .zip(&layouts)
        .map(|(t, (l, n))| unsafe {
            let p = alloc_zeroed(*l);
            std::ptr::copy_nonoverlapping(to_bytes(t).as_ptr(), p, *n);
            std::ptr::write_bytes(p.add(*n), 0xA5, CANARY);
            p
        })
        .collect();
    for &(b, e) in ranges {
        unsafe { entry(ptrs.as_ptr(), b, e) };
    }
    args.iter()
        .zip(&layouts)
        .zip(ptrs)
        .map(|((t, (l, n)), p)| unsafe {
            let all = std::slice::from_raw_parts(p, l.size());
            assert!(all[*n..].iter().all(|&b| b == 0xA5), "{}: a kernel wrote past the end of a buffer", f.name);
            let out = from_bytes(t, &all[..*n]);
            dealloc(p, *l);
            out
        })
        .collect()
}

fn assert_close(got: &[Tensor], want: &[Tensor], tol: f32, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (&g.data, &w.data) {
            (TensorData::F32(a), TensorData::F32(b)) => {
                let scale = b.iter().fold(1f32, |m, x| m.max(x.abs()));
                for (k, (x, y)) in a.iter().zip(b).enumerate() {
                    let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * scale;
                    assert!(same, "{what}: param {i}[{k}]: got {x}, want {y}");
                }
            }
            _ => assert_eq!(g.data, w.data, "{what}: param {i}"),
        }
    }
}

fn parallel_extent(f: &Func) -> Option<i64> {
    match f.body.as_slice() {
        [Stmt::For(l)] if l.kind == LoopKind::Parallel => Some(l.extent),
        _ => None,
    }
}

/// Compiles `text`, runs it on random arguments (whole, then in out-of-order chunks of its
/// parallel loop) and compares every parameter with the interpreter's.
fn check(text: &str, tol: f32) {
    let f = parse_func(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Integers from -50 to 50 exercise signed index arithmetic; kernels that load indices
    // (gathers) need them small and non-negative.
    let mut args = random_args(&f, 7, (-50, 50));
    let mut want = args.clone();
    if interp::loops::run_func(&f, &mut want).is_err() {
        args = random_args(&f, 7, (0, 6));
        want = args.clone();
        interp::loops::run_func(&f, &mut want).unwrap_or_else(|e| panic!("oracle: {e}"));
    }
    let n = parallel_extent(&f).unwrap_or(1);
    assert_close(&run_jit(&f, &args, &[(0, n)]), &want, tol, &f.name);
    if parallel_extent(&f).is_some() {
        let third = n / 3;
        // Out-of-range bounds are clamped to the loop.
        assert_close(&run_jit(&f, &args, &[(third, n + 5), (-3, third)]), &want, tol, &format!("{} in chunks", f.name));
    }
}

/// The loop IR functions of a test source: its raw strings that start with `func`.
fn funcs_in(source: &str) -> Vec<String> {
    source.split("r#\"").skip(1).filter(|s| s.starts_with("func ")).filter_map(|s| s.split("\"#").next().map(str::to_string)).collect()
}

#[test]
fn every_kernel_of_the_llvm_tests_agrees_with_the_interpreter() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../llvm/tests");
    let mut n = 0;
    for file in ["kernels.rs", "semantics.rs", "module.rs"] {
        let source = std::fs::read_to_string(dir.join(file)).expect("the llvm backend's tests are readable");
        for text in funcs_in(&source) {
            check(&text, 1e-4);
            n += 1;
        }
    }
    assert!(n >= 15, "found only {n} kernels in the llvm backend's tests");
}

#[test]
fn sixteen_lanes_run_as_four_vectors_with_a_tail_guard() {
    check(
        r#"func "scale_tail" {
  param %x: f32[1000]
  param %y: f32[1000]
  for i_o in 0..63 parallel {
    for i_i in 0..16 vectorized {
      if lt(i_o * 16 + i_i, 1000) {
        %y[i_o * 16 + i_i] = max(%x[i_o * 16 + i_i] * 3.0 + 1.0, 0.5)
      }
    }
  }
}"#,
        1e-6,
    );
}

/// A register tile (temp indexed by unrolled and vectorized loops only) lives in variables.
#[test]
fn register_tile_matmul() {
    let text = r#"func "matmul_tile" {
  param %a: f32[8,32]
  param %b: f32[32,16]
  param %c: f32[8,16]
  temp %acc: f32[4,16]
  for io in 0..2 parallel {
    for ii0 in 0..4 unrolled {
      for j0 in 0..16 vectorized {
        %acc[ii0, j0] = 0.0
      }
    }
    for k in 0..32 {
      for ii1 in 0..4 unrolled {
        for j1 in 0..16 vectorized {
          %acc[ii1, j1] = %acc[ii1, j1] + %a[io * 4 + ii1, k] * %b[k, j1]
        }
      }
    }
    for ii2 in 0..4 unrolled {
      for j2 in 0..16 vectorized {
        %c[io * 4 + ii2, j2] = %acc[ii2, j2]
      }
    }
  }
}"#;
    check(text, 1e-5);
    let f = parse_func(text).unwrap();
    let clif = emit_clif(&Kernel { symbol: "kern".into(), func: &f }).unwrap();
    assert!(!clif.contains("stack_addr"), "the tile should be in variables:\n{clif}");
    assert!(clif.contains("= fma "), "a * b + c should contract into an fma:\n{clif}");
}

/// Guards that differ between lanes, masks from float compares, casts of masks, integer
/// lanes and a strided gather all work (lane by lane where needed).
#[test]
fn lane_varying_guards_masks_gathers_and_integers() {
    check(
        r#"func "mixed" {
  param %x: f32[64]
  param %k: i64[64]
  param %y: f32[64]
  param %q: i64[64]
  param %m: bool[64]
  for i_o in 0..4 {
    for i_i in 0..16 vectorized {
      %y[i_o * 16 + i_i] = select(gt(%x[i_o * 16 + i_i], 0.0), %x[i_o * 16 + i_i], %x[i_o * 16 + i_i] * 0.1) + f32(lt(%x[(i_o * 16 + i_i) / 2], 0.5))
      if lt(i_i % 3, 1) {
        %y[i_o * 16 + i_i] = %y[i_o * 16 + i_i] + 100.0
      }
      %q[i_o * 16 + i_i] = %k[i_o * 16 + i_i] / 7 + %k[i_o * 16 + i_i] % -3 + i64(%x[i_o * 16 + i_i] * 10.0)
      %m[i_o * 16 + i_i] = or(%m[i_o * 16 + i_i], gt(%k[i_o * 16 + i_i], 10))
    }
  }
}"#,
        1e-6,
    );
}

#[test]
fn math_functions_in_lanes_and_scalars() {
    check(
        r#"func "math" {
  param %x: f32[32]
  param %y: f32[32]
  param %z: f32[32]
  for i_o in 0..2 {
    for i_i in 0..16 vectorized {
      %y[i_o * 16 + i_i] = exp(%x[i_o * 16 + i_i]) + tanh(%x[i_o * 16 + i_i]) + erf(%x[i_o * 16 + i_i]) + sigmoid(%x[i_o * 16 + i_i]) + sqrt(abs(%x[i_o * 16 + i_i])) + floor(%x[i_o * 16 + i_i]) + round(%x[i_o * 16 + i_i] * 2.0) + sign(%x[i_o * 16 + i_i]) + pow(abs(%x[i_o * 16 + i_i]), 1.5) + %x[i_o * 16 + i_i] % 0.7
    }
  }
  for i in 0..32 {
    %z[i] = log(abs(%x[i]) + 1.0) + sin(%x[i]) * cos(%x[i]) + min(%x[i], -0.25) + ceil(%x[i]) + neg(%x[i])
  }
}"#,
        1e-5,
    );
}

#[test]
fn errors_name_the_kernel() {
    let f = parse_func("func \"f\" {\n  param %x: f32[4]\n  for i in 0..4 {\n    %x[i] = 1.0\n  }\n}").unwrap();
    let twice = compile(&[Kernel { symbol: "k".into(), func: &f }, Kernel { symbol: "k".into(), func: &f }]);
    assert!(twice.err().is_some_and(|e| e.to_string().contains("\"k\" is given twice")));
    let reserved = compile(&[Kernel { symbol: "chanasc_expf".into(), func: &f }]);
    assert!(reserved.err().is_some_and(|e| e.to_string().contains("chanasc_expf")));
}

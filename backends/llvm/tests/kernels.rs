//! Compiled kernels agree with the loop IR interpreter: elementwise, convolutions,
//! reductions, guards, unrolling, and the parallel [begin, end) contract.

mod common;

use common::check_host;

#[test]
fn relu_vectorized_parallel() {
    check_host(
        r#"func "relu" {
  param %x: f32[1024]
  param %y: f32[1024]
  for i_o in 0..64 parallel {
    for i_i in 0..16 vectorized {
      %y[i_o * 16 + i_i] = max(%x[i_o * 16 + i_i], 0.0)
    }
  }
}"#,
        None,
        0.0,
    );
}

/// The conv of the loop IR tests: a vectorized ow loop holding a reduction over ic/kh and an
/// unrolled kw, accumulating in a temp indexed by the lane.
#[test]
fn conv_relu_vector_accumulator() {
    check_host(
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
        None,
        1e-5,
    );
}

/// A padded conv: clamped indices keep loads in bounds and a select zeroes the padding.
#[test]
fn padded_conv_with_select_and_clamp() {
    check_host(
        r#"func "conv_pad" {
  param %x: f32[1,2,9,9]
  param %w: f32[4,2,3,3]
  param %b: f32[4]
  param %y: f32[1,4,9,9]
  for oc in 0..4 parallel {
    for oh in 0..9 {
      for ow in 0..9 {
        %y[0, oc, oh, ow] = %b[oc]
        for ic in 0..2 {
          for kh in 0..3 {
            for kw in 0..3 {
              %y[0, oc, oh, ow] = %y[0, oc, oh, ow] + select(and(and(ge(oh + kh, 1), lt(oh + kh, 10)), and(ge(ow + kw, 1), lt(ow + kw, 10))), %x[0, ic, min(max(oh + kh - 1, 0), 8), min(max(ow + kw - 1, 0), 8)], 0.0) * %w[oc, ic, kh, kw]
            }
          }
        }
      }
    }
  }
}"#,
        None,
        1e-5,
    );
}

/// The shape the default reduction schedule produces: a fused parallel loop of / and %, a
/// register tile (unrolled rows x vectorized columns) in a temp, and the reduction outside.
#[test]
fn register_tiled_conv() {
    check_host(
        r#"func "conv_tiled" {
  param %x: f32[1,4,10,18]
  param %w: f32[8,4,3,3]
  param %y: f32[1,8,8,16]
  temp %acc: f32[4,8]
  for f in 0..16 parallel {
    for ow_o in 0..2 {
      for r0 in 0..4 unrolled {
        for c0 in 0..8 vectorized {
          %acc[r0, c0] = 0.0
        }
      }
      for ic in 0..4 {
        for kh in 0..3 {
          for kw in 0..3 {
            for r1 in 0..4 unrolled {
              for c1 in 0..8 vectorized {
                %acc[r1, c1] = fma(%x[0, ic, f % 8 + kh, (ow_o * 8 + c1) + kw], %w[(f / 8) * 4 + r1, ic, kh, kw], %acc[r1, c1])
              }
            }
          }
        }
      }
      for r2 in 0..4 unrolled {
        for c2 in 0..8 vectorized {
          %y[0, (f / 8) * 4 + r2, f % 8, ow_o * 8 + c2] = %acc[r2, c2]
        }
      }
    }
  }
}"#,
        None,
        1e-5,
    );
}

/// Accumulating into one element inside a vectorized loop must not run lane-parallel.
#[test]
fn reduction_into_uniform_address_falls_back_to_serial() {
    check_host(
        r#"func "sum" {
  param %x: f32[8,32]
  param %y: f32[8]
  temp %acc: f32[1]
  for r in 0..8 parallel {
    %acc[0] = 0.0
    for i_o in 0..2 {
      for i_i in 0..16 vectorized {
        %acc[0] = %acc[0] + %x[r, i_o * 16 + i_i]
      }
    }
    %y[r] = %acc[0]
  }
}"#,
        None,
        1e-5,
    );
}

/// Lanes reading an element another lane wrote in the same iteration: serial order matters.
#[test]
fn cross_lane_dependence_falls_back_to_serial() {
    check_host(
        r#"func "shift" {
  param %x: f32[17]
  param %y: f32[17]
  for i in 0..16 vectorized {
    %y[i + 1] = %y[i] + %x[i]
  }
}"#,
        None,
        1e-5,
    );
}

/// A split that does not divide leaves a lane-varying guard in the vectorized loop: the
/// tail is masked (the canary after each buffer catches stray stores).
#[test]
fn guarded_tail_in_vectorized_loop() {
    check_host(
        r#"func "tail" {
  param %x: f32[100]
  param %y: f32[100]
  for i_o in 0..7 parallel {
    for i_i in 0..16 vectorized {
      if lt(i_o * 16 + i_i, 100) {
        %y[i_o * 16 + i_i] = %x[i_o * 16 + i_i] * 2.0 + 1.0
      }
    }
  }
}"#,
        None,
        1e-6,
    );
}

#[test]
fn guarded_tail_serial_and_unrolled() {
    check_host(
        r#"func "tail2" {
  param %x: f32[10]
  param %y: f32[10]
  for i_o in 0..3 {
    for i_i in 0..4 unrolled {
      if lt(i_o * 4 + i_i, 10) {
        %y[i_o * 4 + i_i] = sqrt(abs(%x[i_o * 4 + i_i]))
      }
    }
  }
}"#,
        None,
        1e-6,
    );
}

/// Strided and transposed accesses in a vectorized loop: gathers and scatters.
#[test]
fn gather_and_scatter() {
    check_host(
        r#"func "transpose" {
  param %x: f32[16,8]
  param %y: f32[8,16]
  param %z: f32[8,16]
  for i in 0..16 parallel {
    for j in 0..8 vectorized {
      %y[j, i] = %x[i, j] * 3.0
      %z[j, i] = %x[i, 7 - j] + %x[15 - i, j / 2]
    }
  }
}"#,
        None,
        1e-6,
    );
}

/// Blocked layouts index with (c_o * 16 + c_i) % 16: simplified to a contiguous access.
#[test]
fn blocked_layout_index_is_contiguous() {
    let text = r#"func "block" {
  param %x: f32[2,32,4]
  param %y: f32[2,2,4,16]
  for n in 0..2 parallel {
    for c_o in 0..2 {
      for h in 0..4 {
        for c_i in 0..16 vectorized {
          %y[n, (c_o * 16 + c_i) / 16, h, (c_o * 16 + c_i) % 16] = %x[n, c_o * 16 + c_i, h]
        }
      }
    }
  }
}"#;
    check_host(text, None, 0.0);
    let f = common::parse(text);
    let ir = llvm_backend::emit_llvm_ir(&[llvm_backend::Kernel { symbol: "k".into(), func: &f }], &[], &llvm_backend::Target::host()).unwrap();
    assert!(ir.contains("store <16 x float>"), "{ir}");
}

/// Loads of an index from memory (an embedding lookup), in scalar and vector code.
#[test]
fn loaded_indices() {
    let f = common::parse(
        r#"func "gather_rows" {
  param %idx: i64[6]
  param %table: f32[10,8]
  param %y: f32[6,8]
  for r in 0..6 parallel {
    for c in 0..8 vectorized {
      %y[r, c] = %table[%idx[r], c] + %table[%idx[5 - r], 7 - c]
    }
  }
}"#,
    );
    let mut args = common::random_args(&f, 3);
    args[0] = ir::Tensor::i64([6], vec![3, 0, 9, 9, 1, 4]).unwrap();
    check_host(&ir::loops::print_func(&f), Some(args), 1e-6);
}

/// Widths that are not powers of two (the default schedule picks the largest divisor of an
/// extent, e.g. 14 for 56) and a conv in the shape of the default reduction schedule.
#[test]
fn odd_vector_widths_conv() {
    check_host(
        r#"func "conv3x3" {
  param %x: f32[1,8,16,30]
  param %w: f32[16,8,3,3]
  param %y: f32[1,16,14,28]
  temp %acc: f32[8,14]
  for f in 0..28 parallel {
    for ow_o in 0..2 {
      for r0 in 0..8 unrolled {
        for c0 in 0..14 vectorized {
          %acc[r0, c0] = 0.0
        }
      }
      for ic in 0..8 {
        for kh in 0..3 {
          for kw in 0..3 {
            for r1 in 0..8 unrolled {
              for c1 in 0..14 vectorized {
                %acc[r1, c1] = %acc[r1, c1] + %x[f / 14 / 2, ic, f % 14 + kh, ow_o * 14 + c1 + kw] * %w[f / 14 % 2 * 8 + r1, ic, kh, kw]
              }
            }
          }
        }
      }
      for r2 in 0..8 unrolled {
        for c2 in 0..14 vectorized {
          %y[f / 14 / 2, f / 14 % 2 * 8 + r2, f % 14, ow_o * 14 + c2] = max(%acc[r2, c2], 0.0)
        }
      }
    }
  }
}"#,
        None,
        1e-5,
    );
    check_host(
        "func \"w7\" {\n  param %x: f32[49]\n  param %y: f32[49]\n  for o in 0..7 parallel {\n    for i in 0..7 vectorized {\n      %y[o * 7 + i] = %x[o * 7 + i] * f32(i) - f32(o)\n    }\n  }\n}",
        None,
        1e-6,
    );
}

/// Only a body that is one parallel loop is split by [begin, end); other bodies run whole.
#[test]
fn parallel_loop_beside_other_statements_runs_whole() {
    let text = "func \"two\" {\n  param %x: f32[8]\n  param %y: f32[8]\n  for i in 0..8 parallel {\n    %y[i] = %x[i] + 1.0\n  }\n  for j in 0..4 {\n    %y[j * 2] = %y[j * 2] * 2.0\n  }\n}";
    let f = common::parse(text);
    let args = common::random_args(&f, 9);
    let want = common::oracle(&f, &args);
    let lib = common::Lib::build(&[llvm_backend::Kernel { symbol: "two".into(), func: &f }], &[], &[]);
    common::assert_close(&lib.call("two", &args, &[(3, 4)]), &want, 0.0, "two");
}

/// A ResNet-sized 3x3 conv (64 channels, 56x56) in the default schedule's shape compiles
/// quickly at -O3.
#[test]
fn large_conv_compile_time() {
    let text = r#"func "conv3x3" {
  param %x: f32[1,64,58,58]
  param %w: f32[64,64,3,3]
  param %y: f32[1,64,56,56]
  temp %acc: f32[8,14]
  for f in 0..448 parallel {
    for ow_o in 0..4 {
      for r0 in 0..8 unrolled {
        for c0 in 0..14 vectorized {
          %acc[r0, c0] = 0.0
        }
      }
      for ic in 0..64 {
        for kh in 0..3 {
          for kw in 0..3 {
            for r1 in 0..8 unrolled {
              for c1 in 0..14 vectorized {
                %acc[r1, c1] = %acc[r1, c1] + %x[f / 56 / 8, ic, f % 56 + kh, ow_o * 14 + c1 + kw] * %w[f / 56 % 8 * 8 + r1, ic, kh, kw]
              }
            }
          }
        }
      }
      for r2 in 0..8 unrolled {
        for c2 in 0..14 vectorized {
          %y[f / 56 / 8, f / 56 % 8 * 8 + r2, f % 56, ow_o * 14 + c2] = max(%acc[r2, c2], 0.0)
        }
      }
    }
  }
}"#;
    let f = common::parse(text);
    let start = std::time::Instant::now();
    let obj = llvm_backend::compile_object(&[llvm_backend::Kernel { symbol: "conv".into(), func: &f }], &[], &llvm_backend::Target::host()).unwrap();
    let took = start.elapsed();
    eprintln!("conv 64x56x56 3x3: {} byte object in {took:?}", obj.len());
    assert!(took.as_secs() < 20, "{took:?}");
}

/// Strided loads (stride-2 convolutions) are one wide load and a shuffle; at the end of a
/// buffer the load spans exactly the elements the lanes need (%x[45] is its last lane's).
#[test]
fn strided_loads_near_buffer_end() {
    check_host(
        r#"func "strided" {
  param %x: f32[47]
  param %z: f32[2,40]
  param %y: f32[4,16]
  for i in 0..16 vectorized {
    %y[0, i] = %x[i * 3 - 0] + %x[i * 2 + 1]
    %y[1, i] = %x[i * 2 + 15]
    %y[2, i] = %z[1, i * 2 + 8] * %z[0, i * 2]
    if lt(i, 15) {
      %y[3, i] = %x[i * 3 + 2]
    }
  }
}"#,
        None,
        1e-6,
    );
}

/// Prefetches (the `prefetch` primitive's output) compute nothing, in a vectorized loop or
/// outside one, and the last iteration's look-ahead past the buffer's end does not fault.
#[test]
fn prefetch_past_the_end_changes_nothing() {
    check_host(
        r#"func "matvec_prefetch" {
  param %w: f32[64,256]
  param %x: f32[256]
  param %y: f32[64]
  for o in 0..64 parallel {
    %y[o] = 0.0
    for k_o in 0..16 {
      prefetch %w[o + 1, k_o * 16]
      prefetch %w[o + 4096, (k_o + 1) * 16 + 100000]
      for k_i in 0..16 vectorized {
        prefetch %x[k_o * 16 + k_i]
        %y[o] = %y[o] + %w[o, k_o * 16 + k_i] * %x[k_o * 16 + k_i]
      }
    }
  }
}"#,
        None,
        1e-4,
    );
}

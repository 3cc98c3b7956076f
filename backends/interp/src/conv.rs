//! 2-D convolution and pooling over NCHW tensors, as direct loop nests.

use std::ops::Range;

use ir::graph::{PoolKind, Window};
use ir::{Tensor, TensorData, TensorType};

use crate::elem::view;
use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;

/// The four dims of an NCHW shape (the shape rule has checked the rank).
fn dims4(shape: &[usize]) -> Result<[usize; 4]> {
    shape
        .try_into()
        .map_err(|_| InterpError::Invalid(format!("expected a rank-4 shape, got {shape:?}")))
}

/// The outputs `lo..hi` along one axis whose tap at `offset` (kernel index times dilation)
/// lands inside an input of extent `len`, and the input index the first of them reads:
/// output `o` reads input `o * stride + offset - pad`.
fn valid_run(
    out_len: usize,
    len: usize,
    stride: usize,
    pad: usize,
    offset: usize,
) -> (usize, usize, usize) {
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let hi = if len + pad <= offset {
        0
    } else {
        (len + pad - offset).div_ceil(stride).min(out_len)
    };
    if lo >= hi {
        return (0, 0, 0);
    }
    (lo, hi, lo * stride + offset - pad)
}

/// Grouped convolution. Each output row is accumulated tap by tap over runs of output
/// columns whose input column is known to be inside the row, so the inner loop has no
/// bounds tests and, at stride 1, is a contiguous multiply-add. The accumulator is f64, so
/// that the oracle rounds once per output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    groups: usize,
    out: &TensorType,
) -> Result<Tensor> {
    let xs = view::<f32>(x, "conv2d")?;
    let ws = view::<f32>(w, "conv2d")?;
    let bs = bias.map(|b| view::<f32>(b, "conv2d")).transpose()?;
    let [n, c, h, wd] = dims4(&x.shape)?;
    let [_, cg, kh, kw] = dims4(&w.shape)?;
    let [_, o, oh, ow] = dims4(&out.shape)?;
    let og = o / groups;
    let [sh, sw] = strides;
    let [dh, dw] = dilations;
    // An empty weight bounds no kernel extent by data, but then no tap is ever read.
    let runs: Vec<(usize, usize, usize)> = if ws.is_empty() {
        Vec::new()
    } else {
        (0..kw)
            .map(|kx| valid_run(ow, wd, sw, pads[1], kx * dw))
            .collect()
    };
    let mut y = vec![0f32; out.numel()];
    let mut acc = vec![0f64; ow];
    for b in 0..n {
        for g in 0..groups {
            for oc in g * og..(g + 1) * og {
                let filter = &ws[oc * cg * kh * kw..][..cg * kh * kw];
                let bias = bs.map_or(0.0, |v| v[oc]);
                for oy in 0..oh {
                    acc.fill(bias as f64);
                    for ic in 0..cg {
                        let plane = &xs[(b * c + g * cg + ic) * h * wd..][..h * wd];
                        for ky in 0..kh {
                            let iy = oy * sh + ky * dh;
                            if iy < pads[0] || iy - pads[0] >= h {
                                continue;
                            }
                            let xrow = &plane[(iy - pads[0]) * wd..][..wd];
                            let taps = &filter[(ic * kh + ky) * kw..][..kw];
                            for (&wv, &(lo, hi, ix)) in taps.iter().zip(&runs) {
                                let (wv, acc) = (wv as f64, &mut acc[lo..hi]);
                                if sw == 1 {
                                    for (a, &xv) in acc.iter_mut().zip(&xrow[ix..ix + hi - lo]) {
                                        *a += wv * xv as f64;
                                    }
                                } else {
                                    for (a, &xv) in
                                        acc.iter_mut().zip(xrow[ix..].iter().step_by(sw))
                                    {
                                        *a += wv * xv as f64;
                                    }
                                }
                            }
                        }
                    }
                    let row = &mut y[((b * o + oc) * oh + oy) * ow..][..ow];
                    for (r, &a) in row.iter_mut().zip(&acc) {
                        *r = a as f32;
                    }
                }
            }
        }
    }
    Ok(Tensor {
        shape: out.shape.clone(),
        data: TensorData::F32(y),
    })
}

/// The taps `k < kernel` of a window row or column that starts at `start` and steps by
/// `dil` (at least 1) whose position `start + k * dil` lies in `lo..hi`.
fn taps_within(start: isize, dil: usize, kernel: usize, lo: isize, hi: isize) -> Range<usize> {
    let first_at_or_after = |p: isize| {
        let k = if p > start {
            ((p - start) as usize).div_ceil(dil)
        } else {
            0
        };
        k.min(kernel)
    };
    let (first, end) = (first_at_or_after(lo), first_at_or_after(hi));
    first..end.max(first)
}

/// Max or average pooling. Positions of the window beyond the padded input (which
/// ceil_mode can create) count for nothing; padded positions count only in an average's
/// divisor with `count_include_pad`. A window is rows times columns, so both counts are
/// products, and only the taps inside the input are visited.
pub(crate) fn pool2d(
    x: &Tensor,
    kind: PoolKind,
    win: &Window,
    count_include_pad: bool,
    out: &TensorType,
) -> Result<Tensor> {
    let name = if kind == PoolKind::Max {
        "max_pool2d"
    } else {
        "avg_pool2d"
    };
    let xs = view::<f32>(x, name)?;
    let [n, c, h, wd] = dims4(&x.shape)?;
    let [_, _, oh, ow] = dims4(&out.shape)?;
    let [kh, kw] = win.kernel;
    let [dh, dw] = win.dilations;
    let (h, wd) = (h as isize, wd as isize);
    let [top, left, bottom, right] = win.pads.map(|p| p as isize);
    let mut y = Vec::with_capacity(out.numel());
    let plane_len = (h * wd) as usize;
    for p in 0..n * c {
        let plane = &xs[p * plane_len..][..plane_len];
        for oy in 0..oh {
            let y0 = (oy * win.strides[0]) as isize - top;
            let rows = taps_within(y0, dh, kh, 0, h);
            let rows_padded = taps_within(y0, dh, kh, -top, h + bottom).len();
            for ox in 0..ow {
                let x0 = (ox * win.strides[1]) as isize - left;
                let cols = taps_within(x0, dw, kw, 0, wd);
                let cols_padded = taps_within(x0, dw, kw, -left, wd + right).len();
                let (mut max, mut sum) = (f32::NEG_INFINITY, 0f64);
                for ky in rows.clone() {
                    let row = (y0 + (ky * dh) as isize) * wd;
                    for kx in cols.clone() {
                        let v = plane[(row + x0 + (kx * dw) as isize) as usize];
                        max = max.max(v);
                        sum += v as f64;
                    }
                }
                y.push(match kind {
                    PoolKind::Max => max,
                    PoolKind::Avg => {
                        let count = if count_include_pad {
                            rows_padded * cols_padded
                        } else {
                            rows.len() * cols.len()
                        };
                        (sum / count as f64) as f32
                    }
                });
            }
        }
    }
    Ok(Tensor {
        shape: out.shape.clone(),
        data: TensorData::F32(y),
    })
}

#[cfg(test)]
mod tests {
    use crate::eval_op;
    use ir::graph::{PoolKind, Window};
    use ir::{Op, Tensor, TensorType};

    fn eval(op: Op, inputs: &[&Tensor]) -> Tensor {
        let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
        let out = op.infer(&tys.iter().collect::<Vec<_>>()).unwrap();
        eval_op(&op, inputs, &out).unwrap()
    }

    fn seq(shape: &[usize]) -> Tensor {
        let n = shape.iter().product::<usize>();
        Tensor::f32(shape, (1..=n).map(|i| i as f32).collect()).unwrap()
    }

    fn conv(strides: [usize; 2], pads: [usize; 4], dilations: [usize; 2], groups: usize) -> Op {
        Op::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        }
    }

    #[test]
    fn conv_with_padding_and_bias() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,0],[0,-1]], pads 1 all around, bias 10:
        // each output is x[i-1][j-1] - x[i][j] over the zero-padded input.
        let x = seq(&[1, 1, 3, 3]);
        let w = Tensor::f32([1, 1, 2, 2], vec![1.0, 0.0, 0.0, -1.0]).unwrap();
        let b = Tensor::f32([1], vec![10.0]).unwrap();
        let y = eval(conv([1, 1], [1, 1, 1, 1], [1, 1], 1), &[&x, &w, &b]);
        assert_eq!(y.shape, [1, 1, 4, 4]);
        #[rustfmt::skip]
        let want = [
            9.0, 8.0, 7.0, 10.0,
            6.0, 6.0, 6.0, 13.0,
            3.0, 6.0, 6.0, 16.0,
            10.0, 17.0, 18.0, 19.0,
        ];
        assert_eq!(y.as_f32().unwrap(), want);
    }

    #[test]
    fn conv_asymmetric_pads_and_stride() {
        // All-ones 2x2 kernel, stride 2, pads top 1 and left 0 only: window sums.
        let x = seq(&[1, 1, 3, 4]);
        let w = Tensor::f32([1, 1, 2, 2], vec![1.0; 4]).unwrap();
        let y = eval(conv([2, 2], [1, 0, 0, 0], [1, 1], 1), &[&x, &w]);
        assert_eq!(y.shape, [1, 1, 2, 2]);
        // Input rows (pad, 0) and (1, 2); columns (0, 1) and (2, 3).
        assert_eq!(
            y.as_f32().unwrap(),
            [3.0, 7.0, 5.0 + 6.0 + 9.0 + 10.0, 7.0 + 8.0 + 11.0 + 12.0]
        );
    }

    #[test]
    fn grouped_conv() {
        // 4 input channels in 2 groups, 2 outputs: output g sums channels 2g, 2g+1 weighted.
        let x = seq(&[1, 4, 1, 2]);
        let w = Tensor::f32([2, 2, 1, 1], vec![1.0, 10.0, 100.0, 1000.0]).unwrap();
        let y = eval(conv([1, 1], [0; 4], [1, 1], 2), &[&x, &w]);
        assert_eq!(y.shape, [1, 2, 1, 2]);
        assert_eq!(
            y.as_f32().unwrap(),
            [1.0 + 30.0, 2.0 + 40.0, 500.0 + 7000.0, 600.0 + 8000.0]
        );
    }

    #[test]
    fn depthwise_conv_stride_and_dilation() {
        // 2 channels, 5x5 each, kernel 2x2 dilated by 2 (taps at +0 and +2), stride 2, pad 1.
        let x = seq(&[1, 2, 5, 5]);
        let w = Tensor::f32([2, 1, 2, 2], vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]).unwrap();
        let y = eval(conv([2, 2], [1, 1, 1, 1], [2, 2], 2), &[&x, &w]);
        // Extent: (5 + 2 - 3) / 2 + 1 = 3.
        assert_eq!(y.shape, [1, 2, 3, 3]);
        // Channel 0 takes the top-left tap: x0[2i-1][2j-1] (zero when -1).
        // Channel 1 takes the bottom-right tap: x1[2i+1][2j+1] (zero past 4).
        let x1 = |r: usize, c: usize| 25.0 + (r * 5 + c + 1) as f32;
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 0.0,
            0.0, 7.0, 9.0,
            0.0, 17.0, 19.0,
            x1(1, 1), x1(1, 3), 0.0,
            x1(3, 1), x1(3, 3), 0.0,
            0.0, 0.0, 0.0,
        ];
        assert_eq!(y.as_f32().unwrap(), want);
    }

    #[test]
    fn conv_batch_and_channels_sum() {
        // 2 images, 2 input channels, 3 output channels, 3x3 kernel of ones over 3x3: one output
        // per image and channel, equal to (sum of both channels) times the channel's scale.
        let x = seq(&[2, 2, 3, 3]);
        let mut wv = vec![1.0; 18];
        wv.extend(vec![2.0; 18]);
        wv.extend(vec![-1.0; 18]);
        let w = Tensor::f32([3, 2, 3, 3], wv).unwrap();
        let y = eval(conv([1, 1], [0; 4], [1, 1], 1), &[&x, &w]);
        let (s0, s1) = ((1..=18).sum::<i32>() as f32, (19..=36).sum::<i32>() as f32);
        assert_eq!(y.as_f32().unwrap(), [s0, 2.0 * s0, -s0, s1, 2.0 * s1, -s1]);
    }

    fn pool(
        kind: PoolKind,
        kernel: usize,
        stride: usize,
        pads: [usize; 4],
        ceil: bool,
        include: bool,
    ) -> Op {
        let window = Window {
            kernel: [kernel; 2],
            strides: [stride; 2],
            pads,
            dilations: [1, 1],
        };
        Op::Pool2d {
            kind,
            window,
            ceil_mode: ceil,
            count_include_pad: include,
        }
    }

    #[test]
    fn max_pool_ignores_padding() {
        let x = Tensor::f32([1, 1, 2, 2], vec![-1.0, -2.0, -3.0, -4.0]).unwrap();
        let y = eval(pool(PoolKind::Max, 2, 1, [1, 1, 1, 1], false, false), &[&x]);
        assert_eq!(y.shape, [1, 1, 3, 3]);
        assert_eq!(
            y.as_f32().unwrap(),
            [-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]
        );
    }

    #[test]
    fn avg_pool_counts_pads_both_ways() {
        let x = seq(&[1, 1, 2, 2]);
        let with = eval(pool(PoolKind::Avg, 2, 1, [1, 1, 1, 1], false, true), &[&x]);
        assert_eq!(
            with.as_f32().unwrap(),
            [0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0]
        );
        let without = eval(pool(PoolKind::Avg, 2, 1, [1, 1, 1, 1], false, false), &[&x]);
        assert_eq!(
            without.as_f32().unwrap(),
            [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0]
        );
    }

    #[test]
    fn ceil_mode_windows_beyond_the_padded_input() {
        // A 1x6 row, 3-wide windows at stride 2, pads 1 and 1: ceil mode adds a fourth window
        // reading input 5, the right pad, and one position past the padded input.
        let x = Tensor::f32([1, 1, 1, 6], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let window = Window {
            kernel: [1, 3],
            strides: [1, 2],
            pads: [0, 1, 0, 1],
            dilations: [1, 1],
        };
        let op = |kind, include| Op::Pool2d {
            kind,
            window,
            ceil_mode: true,
            count_include_pad: include,
        };
        let with = eval(op(PoolKind::Avg, true), &[&x]);
        assert_eq!(with.shape, [1, 1, 1, 4]);
        // Windows: [pad,1,2], [2,3,4], [4,5,6], [6,pad,beyond].
        assert_eq!(with.as_f32().unwrap(), [1.0, 3.0, 5.0, 3.0]);
        let without = eval(op(PoolKind::Avg, false), &[&x]);
        assert_eq!(without.as_f32().unwrap(), [1.5, 3.0, 5.0, 6.0]);
        let max = eval(op(PoolKind::Max, false), &[&x]);
        assert_eq!(max.as_f32().unwrap(), [2.0, 4.0, 6.0, 6.0]);
    }

    #[test]
    fn dilated_avg_pool() {
        let x = seq(&[1, 1, 3, 3]);
        let window = Window {
            kernel: [2, 2],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [2, 2],
        };
        let op = Op::Pool2d {
            kind: PoolKind::Avg,
            window,
            ceil_mode: false,
            count_include_pad: false,
        };
        // One window: the four corners.
        assert_eq!(eval(op, &[&x]).as_f32().unwrap(), [5.0]);
    }
}

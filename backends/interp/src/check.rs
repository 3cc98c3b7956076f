//! Checks made before an op is evaluated, so that no operand or attribute can make the
//! interpreter, or the shape rule it relies on, panic.

use ir::graph::Window;
use ir::{Op, Tensor, TensorType};

use crate::InterpError;

type Result<T> = std::result::Result<T, InterpError>;

/// Extents are kept below this many elements so that sizes, strides and byte counts
/// (of 8-byte elements) all fit in an isize.
const MAX_ELEMENTS: usize = isize::MAX as usize / 8;

/// Checks that a shape's extents and strides fit the interpreter's arithmetic. Zero
/// extents are counted as 1 so that the strides of an empty tensor fit too.
pub(crate) fn check_shape(shape: &[usize]) -> Result<()> {
    let size = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)));
    match size {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(InterpError::Invalid(format!(
            "shape {shape:?} is too large"
        ))),
    }
}

/// Checks that a tensor's data fills its shape and that its shape is of a workable size.
pub(crate) fn check_tensor(t: &Tensor) -> Result<()> {
    check_shape(&t.shape)?;
    if ir::types::numel(&t.shape) != t.data.len() {
        return Err(InterpError::MalformedTensor {
            shape: t.shape.clone(),
            len: t.data.len(),
        });
    }
    Ok(())
}

/// Checks that a result of type `out` can be allocated, by reserving (and releasing) its
/// bytes: an absurd shape from an attribute is then an error rather than an abort.
pub(crate) fn check_allocatable(out: &TensorType) -> Result<()> {
    let bytes = out.numel() * out.dtype.size_bytes();
    if Vec::<u8>::new().try_reserve_exact(bytes).is_err() {
        return Err(InterpError::Invalid(format!(
            "a result of type {out} does not fit in memory"
        )));
    }
    Ok(())
}

fn too_large(op: &Op) -> InterpError {
    InterpError::Invalid(format!(
        "{}: attributes too large to compute with",
        op.name()
    ))
}

/// `Op::infer` computes with attributes in plain usize/i64 arithmetic, which overflows (a
/// panic in debug builds) on absurd values and on a zero kernel extent: reject those
/// first, and leave everything else to the shape rule.
pub(crate) fn check_attrs(op: &Op, inputs: &[&TensorType]) -> Result<()> {
    // The shape rule accepts a zero dilation, which has no meaning (ONNX requires >= 1).
    if let Op::Conv2d { dilations, .. }
    | Op::Pool2d {
        window: Window { dilations, .. },
        ..
    } = op
    {
        if dilations.contains(&0) {
            return Err(InterpError::Invalid(format!(
                "{}: dilations must be at least 1",
                op.name()
            )));
        }
    }
    let ok = match op {
        Op::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        } => match inputs {
            [x, w, ..] if x.rank() == 4 && w.rank() == 4 => {
                if w.shape[2] == 0 || w.shape[3] == 0 {
                    return Err(InterpError::Invalid(format!(
                        "conv2d: the weight {w} has an empty kernel"
                    )));
                }
                w.shape[1].checked_mul(*groups).is_some()
                    && window_fits(
                        [w.shape[2], w.shape[3]],
                        *strides,
                        *pads,
                        *dilations,
                        &x.shape,
                    )
            }
            _ => true,
        },
        Op::Pool2d { window: w, .. } => match inputs {
            [_] if w.kernel.contains(&0) => {
                return Err(InterpError::Invalid(format!(
                    "{}: the kernel {:?} is empty",
                    op.name(),
                    w.kernel
                )));
            }
            [x] if x.rank() == 4 || x.rank() == 5 => window_fits(w.kernel, w.strides, w.pads, w.dilations, &x.shape),
            _ => true,
        },
        Op::Reshape { shape } => check_shape(shape).is_ok(),
        Op::Expand { shape } => check_shape(shape).is_ok(),
        Op::Pad { pads, .. } => match inputs {
            [x] if pads.len() == 2 * x.rank() => {
                let r = x.rank();
                (0..r).all(|i| {
                    x.shape[i]
                        .checked_add(pads[i])
                        .and_then(|n| n.checked_add(pads[r + i]))
                        .is_some()
                })
            }
            _ => true,
        },
        Op::Concat { axis } => {
            let mut extents = inputs.iter().filter_map(|t| t.shape.get(*axis));
            extents.try_fold(0usize, |n, &d| n.checked_add(d)).is_some()
        }
        // Slice extents are computed as end - start + step; extents are below 2^60.
        Op::Slice { steps, .. } => steps.iter().all(|s| s.unsigned_abs() <= 1 << 60),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(too_large(op))
    }
}

/// Whether `Window::output_extent` can compute without overflow: the dilated span and the
/// padded input plus a stride in range (kernel extents are >= 1).
fn window_fits(
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    x: &[usize],
) -> bool {
    (0..2).all(|a| {
        let span = kernel[a]
            .checked_sub(1)
            .and_then(|k| dilations[a].checked_mul(k))
            .and_then(|s| s.checked_add(1));
        let padded = x[2 + a]
            .checked_add(pads[a])
            .and_then(|p| p.checked_add(pads[a + 2]));
        let in_range = |n: Option<usize>| n.is_some_and(|n| n <= MAX_ELEMENTS);
        // Bounded like extents, so that conv and pooling index in isize without overflow.
        in_range(span) && in_range(padded.and_then(|p| p.checked_add(strides[a])))
    })
}

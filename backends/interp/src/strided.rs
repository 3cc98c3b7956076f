//! The strided iteration that broadcasting, transposes, slices and reductions all share.

use ir::types::{numel, strides};

/// Calls `f` once per element of `shape`, in row-major order, with that element's offset in
/// each of `K` operands: operand `k` starts at `start[k]` and moves by `strides[k][d]` per
/// step along axis `d`. Strides may be zero (broadcast) or negative (a reversed slice); the
/// caller guarantees that every offset visited is in bounds.
pub(crate) fn for_each_strided<const K: usize>(
    shape: &[usize],
    strides: [&[isize]; K],
    start: [isize; K],
    mut f: impl FnMut([usize; K]),
) {
    if shape.contains(&0) {
        return;
    }
    let Some((&inner, outer)) = shape.split_last() else {
        f(start.map(|s| s as usize));
        return;
    };
    let inner_step: [isize; K] = std::array::from_fn(|k| strides[k][outer.len()]);
    let mut index = vec![0usize; outer.len()];
    let mut base = start;
    loop {
        // The innermost axis is a plain loop, so the odometer below runs once per row.
        let mut off = base;
        for _ in 0..inner {
            f(off.map(|o| o as usize));
            for (o, s) in off.iter_mut().zip(&inner_step) {
                *o += s;
            }
        }
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            index[axis] += 1;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b += s[axis];
            }
            if index[axis] < outer[axis] {
                break;
            }
            index[axis] = 0;
            for (b, s) in base.iter_mut().zip(&strides) {
                *b -= s[axis] * outer[axis] as isize;
            }
        }
    }
}

/// Strides that read an operand of shape `shape` broadcast to `out` (numpy rules: axes are
/// aligned on the right, and a missing or size-1 axis repeats its one element).
pub(crate) fn broadcast_strides(out: &[usize], shape: &[usize]) -> Vec<isize> {
    let own = strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                own[i - lead] as isize
            }
        })
        .collect()
}

/// Calls `f` per element of `out`, row-major, with the offset in each operand of the element
/// that broadcasts onto it. Every shape must broadcast to `out`.
pub(crate) fn for_each_broadcast<const K: usize>(
    out: &[usize],
    shapes: [&[usize]; K],
    f: impl FnMut([usize; K]),
) {
    let strides = shapes.map(|s| broadcast_strides(out, s));
    for_each_strided(out, strides.each_ref().map(Vec::as_slice), [0; K], f);
}

/// The elements of `data` that `for_each_strided` visits with one operand, in order.
pub(crate) fn gather_strided<T: Copy>(
    data: &[T],
    shape: &[usize],
    strides: &[isize],
    start: isize,
) -> Vec<T> {
    let mut out = Vec::with_capacity(numel(shape));
    for_each_strided(shape, [strides], [start], |[o]| out.push(data[o]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_offsets_follow_numpy() {
        let mut seen = Vec::new();
        for_each_broadcast(&[2, 3], [&[2, 1][..], &[3][..]], |[a, b]| seen.push((a, b)));
        assert_eq!(seen, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    }

    #[test]
    fn scalar_and_empty_shapes() {
        let mut seen = Vec::new();
        for_each_broadcast(&[], [&[][..]], |[a]| seen.push(a));
        assert_eq!(seen, [0]);
        seen.clear();
        for_each_broadcast(&[2, 0], [&[2, 0][..]], |[a]| seen.push(a));
        assert!(seen.is_empty());
    }

    #[test]
    fn negative_strides_walk_backwards() {
        // Rows reversed, columns 2 and 0 of a 2x3 matrix.
        let data = [0, 1, 2, 3, 4, 5];
        assert_eq!(gather_strided(&data, &[2, 2], &[-3, -2], 5), [5, 3, 2, 0]);
    }
}

//! Channel sorting by importance, as Once-for-All does before it makes width elastic: a
//! narrower subnet keeps a block's first middle channels, so the channels that matter most
//! should come first. A middle channel's importance is the L1 norm of the projection weights
//! that read it; a squeeze-excite hidden unit's, that of the excite weights that read it. The
//! permutation is applied to every tensor indexed by the channel (and to the optimizer's
//! momenta), so the largest subnet computes exactly what it computed before.

use std::collections::BTreeMap;

use ir::{Tensor, TensorData};

use super::Space;
use crate::error::{Result, TrainError};

/// Sorts every block's middle channels (and squeeze-excite hidden units) by decreasing
/// importance in `params` (in [`Space::layout`]`(None)` order) and `momenta` alike.
pub fn sort_channels(space: &Space, params: &mut [Tensor], momenta: &mut [Vec<f32>]) -> Result<()> {
    let specs = space.layout(None).params;
    if params.len() != specs.len() || momenta.len() != specs.len() {
        return Err(TrainError::Invalid("channel sorting: parameters do not match the supernet's layout".into()));
    }
    let index: BTreeMap<String, usize> = specs.iter().enumerate().map(|(i, s)| (s.name.clone(), i)).collect();
    let at = |name: &str| index.get(name).copied().ok_or_else(|| TrainError::Invalid(format!("channel sorting: no parameter {name}")));
    for blk in space.blocks() {
        let p = blk.prefix();
        // Middle channels: read by the projection (axis 1), written by everything before it.
        let order = by_importance(&params[at(&format!("{p}.project.weight"))?], 1);
        let mut moves = vec![(format!("{p}.project.weight"), 1)];
        for name in ["expand.weight", "expand.bn.weight", "expand.bn.bias", "dw.weight", "dw.bn.weight", "dw.bn.bias"] {
            moves.push((format!("{p}.{name}"), 0));
        }
        if blk.se {
            moves.extend([(format!("{p}.se.reduce.weight"), 1), (format!("{p}.se.expand.weight"), 0), (format!("{p}.se.expand.bias"), 0)]);
        }
        for (name, axis) in &moves {
            let i = at(name)?;
            permute(&mut params[i], &mut momenta[i], *axis, &order);
        }
        if blk.se {
            // Hidden units: read by the excite convolution (axis 1).
            let order = by_importance(&params[at(&format!("{p}.se.expand.weight"))?], 1);
            for (name, axis) in [("se.expand.weight", 1), ("se.reduce.weight", 0), ("se.reduce.bias", 0)] {
                let i = at(&format!("{p}.{name}"))?;
                permute(&mut params[i], &mut momenta[i], axis, &order);
            }
        }
    }
    Ok(())
}

/// The indices along `axis` of `t`, by decreasing L1 norm of their slices (ties keep order).
fn by_importance(t: &Tensor, axis: usize) -> Vec<usize> {
    let data = t.as_f32().expect("parameters are f32");
    let (outer, n, inner) = split_at_axis(&t.shape, axis);
    let mut norm = vec![0f64; n];
    for o in 0..outer {
        for (c, norm) in norm.iter_mut().enumerate() {
            let start = (o * n + c) * inner;
            *norm += data[start..start + inner].iter().map(|v| v.abs() as f64).sum::<f64>();
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| norm[b].total_cmp(&norm[a]));
    order
}

fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// Reorders `t` (and its momentum `m`) along `axis`: new slice j is old slice `order[j]`.
fn permute(t: &mut Tensor, m: &mut [f32], axis: usize, order: &[usize]) {
    let (outer, n, inner) = split_at_axis(&t.shape, axis);
    debug_assert_eq!(n, order.len(), "a permutation of the axis");
    let reorder = |v: &[f32]| {
        let mut out = Vec::with_capacity(v.len());
        for o in 0..outer {
            for &c in order {
                let start = (o * n + c) * inner;
                out.extend_from_slice(&v[start..start + inner]);
            }
        }
        out
    };
    let TensorData::F32(data) = &mut t.data else { unreachable!("parameters are f32") };
    *data = reorder(data);
    let moved = reorder(m);
    m.copy_from_slice(&moved);
}

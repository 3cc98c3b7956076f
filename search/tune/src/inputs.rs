//! Seeded arguments of a program, identical in the worker (which times and runs the compiled
//! kernel) and in the reference run of the unscheduled program on the loop IR evaluator, so
//! that outputs can be compared.
//!
//! Arguments are made in the argument's own layout; a parameter that reads it in another
//! layout (a blocked weight) gets it rearranged, as `compile` does with weights.

use ir::loops::{Func, Layout, Stmt};
use ir::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A parameter as the worker sees it: element type, element count and layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub dtype: String,
    pub numel: usize,
    /// (view, perm) of the rearrangement, when the program reads another layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<(Vec<usize>, Vec<usize>)>,
}

pub fn param_specs(f: &Func) -> Vec<ParamSpec> {
    f.params()
        .iter()
        .map(|&p| {
            let b = f.buffer(p);
            ParamSpec {
                dtype: b.dtype.name().to_string(),
                numel: b.shape.iter().product(),
                layout: b.layout.as_ref().map(|l| (l.view.clone(), l.perm.clone())),
            }
        })
        .collect()
}

pub fn dtype_named(name: &str) -> Option<DType> {
    [DType::F32, DType::F16, DType::I64, DType::Bool].into_iter().find(|d| d.name() == name)
}

/// Argument `index` of a program: f32 and f16 uniform in [-1, 1), i64 zeros (gather indices stay in
/// bounds), bool random.
pub fn argument(dtype: DType, numel: usize, seed: u64, index: usize) -> Option<TensorData> {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(index as u64));
    Some(match dtype {
        DType::F32 => TensorData::F32((0..numel).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()),
        DType::I64 => TensorData::I64(vec![0; numel]),
        DType::Bool => TensorData::Bool((0..numel).map(|_| rng.next_u64() & 1 == 1).collect()),
        DType::F16 => TensorData::F16((0..numel).map(|_| ir::f16::from_f64(rng.unit() * 2.0 - 1.0)).collect()),
    })
}

/// The arguments of `f` for the loop IR evaluator (which rearranges blocked ones itself).
pub fn arguments(f: &Func, seed: u64) -> Option<Vec<Tensor>> {
    f.params()
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let b = f.buffer(p);
            let numel: usize = b.shape.iter().product();
            Tensor::new(vec![numel], argument(b.dtype, numel, seed, i)?).ok()
        })
        .collect()
}

pub fn to_bytes(data: &TensorData) -> Vec<u8> {
    data.to_le_bytes()
}

/// `bytes` (elements of `elem` bytes) rearranged by the layout `(view, perm)`.
pub fn rearrange(bytes: &[u8], layout: &(Vec<usize>, Vec<usize>), elem: usize) -> Option<Vec<u8>> {
    let l = Layout { view: layout.0.clone(), perm: layout.1.clone() };
    let offsets = l.source_offsets().filter(|o| o.len() * elem == bytes.len())?;
    Some(offsets.iter().flat_map(|&o| bytes[o * elem..(o + 1) * elem].iter().copied()).collect())
}

/// The positions (in parameter order) of the parameters `f` writes.
pub fn written_params(f: &Func) -> Vec<usize> {
    let params = f.params();
    let mut written = vec![false; params.len()];
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, .. } = s {
                if let Some(i) = params.iter().position(|p| p == buf) {
                    written[i] = true;
                }
            }
        });
    }
    (0..params.len()).filter(|&i| written[i]).collect()
}

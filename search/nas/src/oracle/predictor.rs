//! OFA's accuracy predictor for the w1.2 space: an MLP 128 -> 400 -> 400 -> 400 -> 1 with relu
//! between layers, read from safetensors (tensors `fc1`, `fc2`, `fc3`, `out`, each `.weight`
//! `[out, in]` and `.bias`, f32 little-endian). The safetensors container is read by hand:
//! an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape and
//! byte range, then the data.
//!
//! The input is PAPER.md's 128-d one-hot: for each kept block i, a one at `3i + {3:0, 5:1,
//! 7:2}[ks]` and at `60 + 3i + {3:0, 4:1, 6:2}[e]` (cut blocks all zero), and one at
//! `120 + (r - 112) / 16` for the resolution.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{NasError, Result};
use crate::oracle::{Accuracy, AccuracyOracle};
use crate::space::{ArchConfig, BLOCKS, EXPANDS, KERNELS};

pub const INPUT_DIM: usize = 128;

/// A dense layer `y = W x + b`, W row-major `[rows (out), cols (in)]`.
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Dense {
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows)
            .map(|r| {
                self.b[r] as f64
                    + self.w[r * self.cols..(r + 1) * self.cols]
                        .iter()
                        .zip(x)
                        .map(|(&w, &x)| w as f64 * x)
                        .sum::<f64>()
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Predictor {
    layers: Vec<Dense>,
}

#[derive(Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A tensor's shape and its values.
pub type Tensor = (Vec<usize>, Vec<f32>);

/// Reads every f32 tensor of a safetensors file; `origin` names it in errors.
pub fn read_safetensors(bytes: &[u8], origin: &str) -> Result<HashMap<String, Tensor>> {
    let bad = |m: String| NasError::parse(origin, 0, format!("not a valid safetensors file: {m}"));
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    let data_start = 8u64
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len() as u64)
        .ok_or_else(|| {
            bad(format!(
                "header length {header_len} runs past the end of the file"
            ))
        })? as usize;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| bad(format!("header: {e}")))?;
    let data = &bytes[data_start..];
    let mut out = HashMap::new();
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        if info.dtype != "F32" {
            return Err(bad(format!(
                "tensor {name} is {}, only F32 is read",
                info.dtype
            )));
        }
        let [begin, end] = info.data_offsets;
        let n: usize = info.shape.iter().product();
        if begin > end || end > data.len() || end - begin != n * 4 {
            return Err(bad(format!(
                "tensor {name}: bytes {begin}..{end} do not hold {:?} f32 values in {} data bytes",
                info.shape,
                data.len()
            )));
        }
        let values = data[begin..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (info.shape, values));
    }
    Ok(out)
}

impl Predictor {
    pub fn load(path: &Path) -> Result<Predictor> {
        let bytes = std::fs::read(path).map_err(|e| NasError::io(path, e))?;
        Predictor::from_safetensors(&bytes, &path.display().to_string())
    }

    /// Builds the MLP from safetensors bytes: layers `fc1`, `fc2`, ... then `out`, each
    /// layer's input width the previous one's output, 128 in and 1 out.
    pub fn from_safetensors(bytes: &[u8], origin: &str) -> Result<Predictor> {
        let mut tensors = read_safetensors(bytes, origin)?;
        let bad = |m: String| NasError::parse(origin, 0, format!("not an accuracy predictor: {m}"));
        let hidden = (1..)
            .take_while(|i| tensors.contains_key(&format!("fc{i}.weight")))
            .count();
        let names: Vec<String> = (1..=hidden)
            .map(|i| format!("fc{i}"))
            .chain(["out".to_string()])
            .collect();
        let mut layers = Vec::new();
        let mut width = INPUT_DIM;
        for name in &names {
            let (ws, w) = tensors
                .remove(&format!("{name}.weight"))
                .ok_or_else(|| bad(format!("no tensor {name}.weight")))?;
            let (bs, b) = tensors
                .remove(&format!("{name}.bias"))
                .ok_or_else(|| bad(format!("no tensor {name}.bias")))?;
            if ws.len() != 2 || ws[1] != width || bs != [ws[0]] {
                return Err(bad(format!(
                    "{name}: weight {ws:?} and bias {bs:?} do not fit an input of width {width}"
                )));
            }
            layers.push(Dense {
                w,
                b,
                rows: ws[0],
                cols: ws[1],
            });
            width = ws[0];
        }
        if width != 1 {
            return Err(bad(format!(
                "the last layer has {width} outputs, expected 1"
            )));
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(format!("unexpected tensor {extra}")));
        }
        Ok(Predictor { layers })
    }

    /// The 128-d encoding of an arch (PAPER.md); the arch must be in the predictor's range.
    pub fn encode(arch: &ArchConfig) -> Result<Vec<f64>> {
        arch.validate_for_predictor()?;
        let pos = |set: &[u32], v: u32| set.iter().position(|&x| x == v).unwrap_or(0);
        let mut x = vec![0.0; INPUT_DIM];
        for i in (0..BLOCKS).filter(|&i| arch.is_active(i)) {
            x[3 * i + pos(&KERNELS, arch.ks[i])] = 1.0;
            x[60 + 3 * i + pos(&EXPANDS, arch.e[i])] = 1.0;
        }
        x[120 + (arch.r as usize - 112) / 16] = 1.0;
        Ok(x)
    }

    /// Predicted top-1 accuracy (a fraction).
    pub fn predict(&self, arch: &ArchConfig) -> Result<f64> {
        let mut x = Predictor::encode(arch)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.apply(&x);
            if i + 1 < self.layers.len() {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        Ok(x[0])
    }
}

impl AccuracyOracle for Predictor {
    fn evaluate(&mut self, arch: &ArchConfig) -> Result<Accuracy> {
        Ok(Accuracy {
            val: self.predict(arch)?,
            train: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of the given tensors.
    pub(crate) fn safetensors(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, shape, values) in tensors {
            let begin = data.len();
            data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            header.insert(name.to_string(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()]}));
        }
        header.insert("__metadata__".into(), serde_json::json!({"note": "test"}));
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h);
        out.extend(data);
        out
    }

    #[test]
    fn encoding_follows_the_paper() {
        let x = Predictor::encode(&ArchConfig::max(224)).unwrap();
        assert_eq!(x.iter().sum::<f64>(), 41.0);
        assert_eq!((x[2], x[0], x[62], x[127]), (1.0, 0.0, 1.0, 1.0));
        let x = Predictor::encode(&ArchConfig::min(160)).unwrap();
        // Two blocks per stage, kernel 3 and expand 3 at slot 0; resolution slot 120 + 3.
        assert_eq!(x.iter().sum::<f64>(), 21.0);
        assert_eq!(
            (x[0], x[3], x[6], x[12], x[60], x[63], x[66], x[123]),
            (1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0)
        );
        assert!(Predictor::encode(&ArchConfig::max(128)).is_err());
    }

    #[test]
    fn a_small_mlp_by_hand() {
        // 128 -> 2 -> 1: hidden = relu([sum of x, -sum of x] + [0, 1]), out = 2 h0 + 3 h1 + 0.5.
        let mut w1 = vec![1.0; INPUT_DIM];
        w1.extend(vec![-1.0; INPUT_DIM]);
        let bytes = safetensors(&[
            ("fc1.weight", vec![2, INPUT_DIM], w1),
            ("fc1.bias", vec![2], vec![0.0, 1.0]),
            ("out.weight", vec![1, 2], vec![2.0, 3.0]),
            ("out.bias", vec![1], vec![0.5]),
        ]);
        let p = Predictor::from_safetensors(&bytes, "mem").unwrap();
        // The min arch at 160 has 21 ones: 2 * 21 + 3 * relu(-20) + 0.5.
        assert_eq!(p.predict(&ArchConfig::min(160)).unwrap(), 42.5);
    }

    #[test]
    fn corrupt_files_are_errors() {
        let good = safetensors(&[
            ("out.weight", vec![1, INPUT_DIM], vec![0.0; INPUT_DIM]),
            ("out.bias", vec![1], vec![0.0]),
        ]);
        assert!(Predictor::from_safetensors(&good, "mem").is_ok());
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..5].to_vec(), "shorter than"),
            (good[..20].to_vec(), "runs past the end"),
            (good[..good.len() - 4].to_vec(), "do not hold"),
            (
                safetensors(&[
                    ("out.weight", vec![1, 7], vec![0.0; 7]),
                    ("out.bias", vec![1], vec![0.0]),
                ]),
                "do not fit an input of width 128",
            ),
            (
                safetensors(&[("out.weight", vec![1, INPUT_DIM], vec![0.0; INPUT_DIM])]),
                "no tensor out.bias",
            ),
            (
                safetensors(&[
                    ("out.weight", vec![1, INPUT_DIM], vec![0.0; INPUT_DIM]),
                    ("out.bias", vec![1], vec![0.0]),
                    ("x", vec![1], vec![0.0]),
                ]),
                "unexpected tensor x",
            ),
        ];
        for (bytes, want) in cases {
            let e = Predictor::from_safetensors(&bytes, "mem")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let mut bad_json = good.clone();
        bad_json[8] = b'!';
        assert!(Predictor::from_safetensors(&bad_json, "mem")
            .unwrap_err()
            .to_string()
            .contains("header"));
    }
}

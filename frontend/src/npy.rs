//! Reading and writing `.npy` files (format versions 1 to 3, little-endian, C order).

use std::io::Write;
use std::path::Path;

use ir::{Tensor, TensorData};

use crate::error::{FrontendError, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

fn err<T>(path: &Path, msg: impl std::fmt::Display) -> Result<T> {
    Err(FrontendError::Npy(format!("{}: {msg}", path.display())))
}

/// Reads an `.npy` file: f32, f16, f64 (read as f32), any integer type (as i64) or bool.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|source| FrontendError::Io { path: path.display().to_string(), source })?;
    parse_npy(&bytes).or_else(|m| err(path, m))
}

/// Parses `.npy` bytes.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<Tensor, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + header_len).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no descr")?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("header has no shape")?;
    let shape_text = shape_text.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or("bad shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension {s:?}")))
        .collect::<std::result::Result<_, _>>()?;
    let n: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let body = &bytes[start + header_len..];
    let kind = descr.trim_start_matches(['<', '|', '=']);
    if descr.starts_with('>') {
        return Err(format!("big-endian dtype {descr} is not supported"));
    }
    let width = match kind {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "f2" | "i2" | "u2" => 2,
        "i1" | "u1" | "b1" => 1,
        _ => return Err(format!("dtype {descr} is not supported")),
    };
    if body.len() < n * width {
        return Err(format!("data is truncated: {} bytes for {n} elements of {descr}", body.len()));
    }
    let el = |i: usize| &body[i * width..(i + 1) * width];
    let data = match kind {
        "f4" => TensorData::F32((0..n).map(|i| f32::from_le_bytes(el(i).try_into().expect("4 bytes"))).collect()),
        "f8" => TensorData::F32((0..n).map(|i| f64::from_le_bytes(el(i).try_into().expect("8 bytes")) as f32).collect()),
        "f2" => TensorData::F16((0..n).map(|i| ir::f16::from_le_bytes(el(i).try_into().expect("2 bytes"))).collect()),
        "b1" => TensorData::Bool((0..n).map(|i| el(i)[0] != 0).collect()),
        _ => {
            let signed = kind.starts_with('i');
            TensorData::I64(
                (0..n)
                    .map(|i| {
                        let b = el(i);
                        let mut buf = [0u8; 8];
                        buf[..width].copy_from_slice(b);
                        let negative = signed && b[width - 1] & 0x80 != 0;
                        if negative {
                            buf[width..].fill(0xff);
                        }
                        i64::from_le_bytes(buf)
                    })
                    .collect(),
            )
        }
    };
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

/// The value of `'key'` in the header's Python dict literal: a quoted string (without its
/// quotes), a tuple (with its parentheses), or a bare word.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let i = header.find(&format!("'{key}'"))?;
    let rest = header[i + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let end = match rest.chars().next()? {
        q @ ('\'' | '"') => return rest[1..].split(q).next(),
        '(' => rest.find(')')? + 1,
        _ => rest.find([',', '}']).unwrap_or(rest.len()),
    };
    Some(rest[..end].trim())
}

/// Serializes a tensor as `.npy` (version 1) bytes.
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let descr = match t.data {
        TensorData::F32(_) => "<f4",
        TensorData::F16(_) => "<f2",
        TensorData::I64(_) => "<i8",
        TensorData::Bool(_) => "|b1",
    };
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // The header is padded so that the data starts at a multiple of 64 bytes.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(header.len() + 10 + t.numel() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&t.data.to_le_bytes());
    out
}

/// Writes a tensor as `.npy`, atomically: to a temporary file beside it, then renamed.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let io = |source| FrontendError::Io { path: path.display().to_string(), source };
    let tmp = path.with_extension(format!("npy.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&npy_bytes(t)).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_dtype() {
        let cases = [
            Tensor::f32(vec![2, 3], vec![1.0, -2.5, 3.25, 0.0, 1e-7, 6.0]).unwrap(),
            Tensor::i64(vec![3], vec![-1, 0, 1 << 40]).unwrap(),
            Tensor::new(vec![2, 1], TensorData::Bool(vec![true, false])).unwrap(),
            Tensor::f32(vec![3], vec![1.0, -65504.0, 6.1e-5]).unwrap().with_float_dtype(ir::DType::F16),
            Tensor::scalar_f32(4.5),
        ];
        for t in cases {
            let bytes = npy_bytes(&t);
            assert_eq!((10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64, 0);
            assert_eq!(parse_npy(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn reads_narrow_integers_with_sign() {
        let header = "{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&(-3i16).to_le_bytes());
        bytes.extend_from_slice(&(7i16).to_le_bytes());
        assert_eq!(parse_npy(&bytes).unwrap().as_i64().unwrap(), &[-3, 7]);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse_npy(b"hello world").unwrap_err().contains("magic"));
        let t = Tensor::f32(vec![4], vec![1.0; 4]).unwrap();
        let bytes = npy_bytes(&t);
        assert!(parse_npy(&bytes[..bytes.len() - 3]).unwrap_err().contains("truncated"));
        assert!(parse_npy(&bytes[..12]).unwrap_err().contains("truncated header"));
    }
}

//! Checkpoints as safetensors: named f32 tensors and string metadata, written to a temporary
//! file in the same folder and renamed over the target, so a crash never leaves a torn file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ir::Tensor;

use crate::error::{file_err, Result};

/// Writes `tensors` (f32) and `metadata` to `path` atomically.
pub fn write(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialize"));
    }
    let mut offset = 0usize;
    for (name, t) in tensors {
        let data = t.as_f32().ok_or_else(|| file_err(path, format!("tensor {name} is not f32")))?;
        let end = offset + 4 * data.len();
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json serializes");
    // Pad the header with spaces to a multiple of 8 bytes, as the format recommends.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + json.len() + offset);
    bytes.extend((json.len() as u64).to_le_bytes());
    bytes.extend(&json);
    for t in tensors.values() {
        for x in t.as_f32().expect("checked above") {
            bytes.extend(x.to_le_bytes());
        }
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| file_err(path, "not a file path"))?.to_string_lossy().into_owned();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(path, e));
    }
    Ok(())
}

/// Reads a safetensors file of f32 tensors: the tensors and the metadata.
pub fn read(path: &Path) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let bad = |m: &str| file_err(path, format!("not a safetensors file: {m}"));
    if bytes.len() < 8 {
        return Err(bad("too short"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = bytes.get(8..8usize.saturating_add(n)).ok_or_else(|| bad("the header runs past the end"))?;
    let header: serde_json::Value = serde_json::from_slice(header).map_err(|e| bad(&e.to_string()))?;
    let obj = header.as_object().ok_or_else(|| bad("the header is not an object"))?;
    let data = &bytes[8 + n..];
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            for (k, s) in v.as_object().ok_or_else(|| bad("metadata is not an object"))? {
                metadata.insert(k.clone(), s.as_str().ok_or_else(|| bad("metadata values must be strings"))?.to_string());
            }
            continue;
        }
        if v["dtype"] != "F32" {
            return Err(file_err(path, format!("tensor {name}: dtype {} is not supported (only F32)", v["dtype"])));
        }
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).map_err(|_| bad(&format!("tensor {name}: bad shape")))?;
        let offs: [usize; 2] =
            serde_json::from_value(v["data_offsets"].clone()).map_err(|_| bad(&format!("tensor {name}: bad offsets")))?;
        let raw = data.get(offs[0]..offs[1]).ok_or_else(|| bad(&format!("tensor {name}: offsets past the end")))?;
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if offs[0] > offs[1] || count.map(|c| c * 4) != Some(raw.len()) {
            return Err(bad(&format!("tensor {name}: shape {shape:?} does not fit its {} bytes", raw.len())));
        }
        let v: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        tensors.insert(name.clone(), Tensor::f32(shape, v)?);
    }
    Ok((tensors, metadata))
}

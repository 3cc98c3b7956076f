//! The .npy files the runner reads and writes: version 1 or 2 headers, little-endian f4, f2,
//! i8 and b1 (bool) arrays in C order.

use std::path::Path;

/// A host array: element type (f32, f16, i64 or bool), shape and little-endian bytes.
pub struct Array {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr(dtype: &str) -> Option<&'static str> {
    match dtype {
        "f32" => Some("<f4"),
        "f16" => Some("<f2"),
        "i64" => Some("<i8"),
        "bool" => Some("|b1"),
        _ => None,
    }
}

fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

pub fn read(path: &Path) -> Result<Array, String> {
    let err = |m: &str| format!("{}: {m}", path.display());
    let data = std::fs::read(path).map_err(|e| err(&e.to_string()))?;
    if data.len() < 10 || &data[..6] != MAGIC {
        return Err(err("not a .npy file"));
    }
    let (len, start) = match data[6] {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 if data.len() >= 12 => (u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize, 12),
        v => return Err(err(&format!("unsupported .npy version {v}"))),
    };
    let header = data.get(start..start + len).ok_or_else(|| err("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text"))?;
    let d = field(header, "descr").ok_or_else(|| err("no descr"))?;
    let dtype = if d.starts_with("'<f4'") {
        "f32"
    } else if d.starts_with("'<f2'") {
        "f16"
    } else if d.starts_with("'<i8'") {
        "i64"
    } else if d.starts_with("'|b1'") {
        "bool"
    } else {
        return Err(err(&format!("unsupported element type {}", d.split(',').next().unwrap_or(d))));
    };
    if field(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(err("Fortran-order arrays are not supported"));
    }
    let s = field(header, "shape").ok_or_else(|| err("no shape"))?;
    let s = s.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| err("malformed shape"))?;
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<usize>().map_err(|_| err("malformed shape")))
        .collect::<Result<Vec<_>, _>>()?;
    let elem = match dtype {
        "f32" => 4,
        "f16" => 2,
        "i64" => 8,
        _ => 1,
    };
    let n: usize = shape.iter().product();
    let bytes = data.get(start + len..start + len + n * elem).ok_or_else(|| err("truncated data"))?.to_vec();
    Ok(Array { dtype: dtype.into(), shape, bytes })
}

pub fn write(path: &Path, a: &Array) -> Result<(), String> {
    let d = descr(&a.dtype).ok_or_else(|| format!("{}: cannot write {} arrays", path.display(), a.dtype))?;
    let shape = match a.shape.len() {
        1 => format!("({},)", a.shape[0]),
        _ => format!("({})", a.shape.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic, version, length and header padded with spaces to a multiple of 64, then '\n'.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    while 10 + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + a.bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&a.bytes);
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

//! A compiled model for the GPU: what to allocate, what to upload, which shaders to dispatch
//! in which order, and where the inputs and outputs are. On disk: `model.json` (the
//! [`Manifest`]), `weights.bin` and `shaders/*.wgsl`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::wgsl::Dispatch;
use crate::WgpuError;

pub const MANIFEST: &str = "model.json";
pub const WEIGHTS: &str = "weights.bin";
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub buffers: Vec<BufferSpec>,
    /// In the order they run; `once` programs run when the model is loaded.
    pub programs: Vec<ProgramSpec>,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BufferSpec {
    pub bytes: u64,
    /// Initial contents: (offset, length) in the weights file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramSpec {
    pub name: String,
    /// The shader's file, relative to the bundle.
    pub shader: String,
    /// The buffer bound at each binding, and whether the shader only reads it.
    pub bindings: Vec<usize>,
    pub read_only: Vec<bool>,
    pub dispatches: Vec<Dispatch>,
    #[serde(default)]
    pub once: bool,
    #[serde(default)]
    pub flops: u64,
    /// The compiler proved every index of the shader inside its buffer: it runs without
    /// run-time bounds checks. (A bundle is code, as a compiled model's library is: run only
    /// bundles you trust.)
    #[serde(default)]
    pub unchecked: bool,
}

/// An input or output: its type and the buffer that holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IoSpec {
    pub name: String,
    /// f32, i64 or bool (one byte on the host, a u32 on the GPU).
    pub dtype: String,
    pub shape: Vec<usize>,
    pub buffer: usize,
    /// An NCHW input written into the interior of a padded tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Staging>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staging {
    pub h: usize,
    pub w: usize,
    pub padded_h: usize,
    pub padded_w: usize,
    pub top: usize,
    pub left: usize,
}

impl IoSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of one element on the host.
    pub fn host_elem_bytes(&self) -> Result<usize, WgpuError> {
        match self.dtype.as_str() {
            "f32" => Ok(4),
            "f16" => Ok(2),
            "i64" => Ok(8),
            "bool" => Ok(1),
            other => Err(WgpuError::Bundle(format!("{}: element type {other} is not supported", self.name))),
        }
    }
}

/// A manifest with its shader sources (one per program) and weights.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub shaders: Vec<String>,
    pub weights: Vec<u8>,
}

fn io(path: &Path, e: std::io::Error) -> WgpuError {
    WgpuError::Bundle(format!("{}: {e}", path.display()))
}

impl Bundle {
    /// A bundle of one program, `shader` compiled from the function `name`: `buffers` hold
    /// its parameters in order (its scratch buffers are added after them). What the tuner and
    /// the tests run a single tensor program with.
    pub fn single(name: &str, shader: &crate::Shader, mut buffers: Vec<BufferSpec>, inputs: Vec<IoSpec>, outputs: Vec<IoSpec>) -> Bundle {
        let mut bindings: Vec<usize> = (0..buffers.len()).collect();
        for s in &shader.scratch {
            buffers.push(BufferSpec { bytes: s.bytes, init: None });
            bindings.push(buffers.len() - 1);
        }
        let program = ProgramSpec {
            name: name.to_string(),
            shader: "shaders/k0.wgsl".into(),
            bindings,
            read_only: shader.read_only.clone(),
            dispatches: shader.dispatches.clone(),
            once: false,
            flops: 0,
            unchecked: shader.indices_proven,
        };
        let manifest = Manifest { format: FORMAT, buffers, programs: vec![program], inputs, outputs };
        Bundle { manifest, shaders: vec![shader.source.clone()], weights: Vec::new() }
    }

    /// Writes the bundle into `dir` (created when missing).
    pub fn write(&self, dir: &Path) -> Result<(), WgpuError> {
        std::fs::create_dir_all(dir.join("shaders")).map_err(|e| io(dir, e))?;
        for (p, src) in self.manifest.programs.iter().zip(&self.shaders) {
            let path = dir.join(&p.shader);
            std::fs::write(&path, src).map_err(|e| io(&path, e))?;
        }
        let path = dir.join(WEIGHTS);
        std::fs::write(&path, &self.weights).map_err(|e| io(&path, e))?;
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(&self.manifest).map_err(|e| WgpuError::Bundle(e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| io(&path, e))
    }

    /// Reads a bundle that [`Bundle::write`] wrote.
    pub fn read(dir: &Path) -> Result<Bundle, WgpuError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| WgpuError::Bundle(format!("{}: {e}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(WgpuError::Bundle(format!("{}: format {} (this runner reads {FORMAT})", path.display(), manifest.format)));
        }
        let mut shaders = Vec::new();
        for p in &manifest.programs {
            // Shaders stay inside the bundle.
            if p.shader.contains("..") || Path::new(&p.shader).is_absolute() {
                return Err(WgpuError::Bundle(format!("{}: shader path {} leaves the bundle", path.display(), p.shader)));
            }
            let path = dir.join(&p.shader);
            shaders.push(std::fs::read_to_string(&path).map_err(|e| io(&path, e))?);
        }
        let path = dir.join(WEIGHTS);
        let weights = std::fs::read(&path).map_err(|e| io(&path, e))?;
        Ok(Bundle { manifest, shaders, weights })
    }
}

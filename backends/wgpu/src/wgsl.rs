//! WGSL from scheduled loop IR: one shader module per tensor program, one entry point (and
//! one dispatch) per statement of the program's body.
//!
//! A statement that is a `workgroup` loop holding an `invocation` loop dispatches one
//! workgroup per iteration of the first and one invocation per iteration of the second;
//! any other statement runs in a single invocation (a dispatch of one workgroup of one).
//! Every other loop kind (serial, parallel, vectorized, unrolled) is a loop of the
//! invocation that runs it; the shader compiler unrolls and vectorizes as it sees fit.
//!
//! Storage: parameters are storage buffers in declaration order (`@binding(i)`), then the
//! temporaries that live across dispatches; a temporary only one entry point touches is a
//! private array of each invocation (a register tile). Elements: f32 as `f32`, f16 as `f16`
//! (the module then enables f16; the device needs shader-f16), i64 as
//! `vec2<i32>` (the two little-endian words of the CPU's i64, so the bytes are the same;
//! arithmetic is on the low word, 32 bits), bool as `u32` (0 or 1).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use ir::loops::{BufId, BufKind, Func, LoopKind, Stmt};
use ir::DType;

use crate::expr::Emitter;
use crate::WgpuError;

/// The most workgroups of one dispatch dimension (WebGPU's default limit); larger grids use
/// a second dimension.
pub const MAX_GROUPS_PER_DIM: u32 = 65535;

/// Temporaries of at most this many elements may be private arrays.
const PRIVATE_TEMP_LIMIT: usize = 4096;

/// One dispatch of a program's shader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dispatch {
    pub entry: String,
    /// Workgroups in x and y (the shader folds them into one index).
    pub groups: [u32; 2],
}

/// A storage buffer the program owns (a temporary that lives across its dispatches).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScratchBuffer {
    pub bytes: u64,
}

/// A program compiled to WGSL.
#[derive(Debug, Clone)]
pub struct Shader {
    pub source: String,
    pub dispatches: Vec<Dispatch>,
    /// Bound after the parameters, in order.
    pub scratch: Vec<ScratchBuffer>,
    /// For each binding (parameters, then scratch), whether the shader only reads it.
    pub read_only: Vec<bool>,
    /// Every index is proven inside its buffer (the verifier bounded them all statically), so
    /// the shader may run without run-time bounds checks.
    pub indices_proven: bool,
}

/// Bytes of one element of `dtype` in GPU storage.
pub fn gpu_elem_bytes(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(4),
        DType::F16 => Some(2),
        DType::I64 => Some(8),
        DType::Bool => Some(4),
    }
}

pub(crate) fn storage_type(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => Some("f32"),
        // Needs the device feature shader-f16 (`enable f16;`).
        DType::F16 => Some("f16"),
        DType::I64 => Some("vec2<i32>"),
        DType::Bool => Some("u32"),
    }
}

/// WGSL for `f` (already scheduled), or an error naming the program and what it cannot
/// compile.
pub fn compile(f: &Func) -> Result<Shader, WgpuError> {
    let err = |m: String| WgpuError::Unsupported { program: f.name.clone(), message: m };
    for b in &f.buffers {
        if storage_type(b.dtype).is_none() {
            return Err(err(format!("%{} has element type {}, which the GPU backend does not support", b.name, b.dtype)));
        }
    }
    // Which entry points touch each temporary: one (and small) makes it private.
    let mut users: HashMap<BufId, Vec<usize>> = HashMap::new();
    for (k, s) in f.body.iter().enumerate() {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, .. } = s {
                users.entry(*buf).or_default().push(k);
            }
        });
        s.walk_exprs(&mut |e| {
            if let ir::loops::Expr::Load { buf, .. } = e {
                users.entry(*buf).or_default().push(k);
            }
        });
    }
    let shared = workgroup_buffers(f);
    let wide = crate::vec4::wide_buffers(f);
    let mut private = Vec::new();
    let mut scratch = Vec::new();
    let mut binding_of: HashMap<BufId, usize> = HashMap::new();
    let params = f.params();
    for (i, &p) in params.iter().enumerate() {
        binding_of.insert(p, i);
    }
    for (i, b) in f.buffers.iter().enumerate() {
        let id = BufId(i as u32);
        if b.kind != BufKind::Temp || shared.contains(&id) {
            continue;
        }
        let numel: usize = b.shape.iter().product();
        let mut who = users.get(&id).cloned().unwrap_or_default();
        who.dedup();
        if who.len() <= 1 && numel <= PRIVATE_TEMP_LIMIT {
            private.push(id);
        } else {
            binding_of.insert(id, params.len() + scratch.len());
            let elem = gpu_elem_bytes(b.dtype).unwrap_or(4);
            scratch.push(ScratchBuffer { bytes: (numel.max(1) * elem) as u64 });
        }
    }
    // Written buffers are read_write, the others read-only (so that one argument bound to
    // two parameters is allowed).
    let mut written = vec![false; f.buffers.len()];
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::Store { buf, .. } = s {
                written[buf.index()] = true;
            }
        });
    }

    let mut out = String::new();
    if uses_f16(f) {
        out.push_str("enable f16;\n");
    }
    let _ = writeln!(out, "// {}\n", f.name);
    out.push_str(crate::expr::HELPERS);
    let mut bound: Vec<(usize, BufId)> = binding_of.iter().map(|(&b, &i)| (i, b)).collect();
    bound.sort();
    let read_only: Vec<bool> = bound.iter().map(|&(_, b)| !written[b.index()]).collect();
    for (i, b) in bound {
        let access = if written[b.index()] { "read_write" } else { "read" };
        let ty = element_type(f, b, &wide);
        let _ = writeln!(out, "@group(0) @binding({i}) var<storage, {access}> {}: array<{ty}>;", buf_name(f, b));
    }
    for (space, list) in [("private", &private), ("workgroup", &shared)] {
        for &b in list {
            let numel: usize = f.buffer(b).shape.iter().product::<usize>().max(1);
            let len = if wide.contains(&b) { numel / 4 } else { numel };
            let _ = writeln!(out, "var<{space}> {}: array<{}, {len}>;", buf_name(f, b), element_type(f, b, &wide));
        }
    }
    out.push('\n');

    let mut dispatches = Vec::new();
    for (k, s) in f.body.iter().enumerate() {
        let entry = format!("k{k}");
        let mut em = Emitter::new(f, &wide);
        match s {
            Stmt::For(block) if block.kind == LoopKind::GpuBlock => {
                let [Stmt::For(thread)] = block.body.as_slice() else {
                    return Err(err(format!("workgroup loop {} does not hold exactly one invocation loop", f.vars[block.var.index()])));
                };
                if thread.kind != LoopKind::GpuThread {
                    return Err(err(format!("workgroup loop {} does not hold an invocation loop", f.vars[block.var.index()])));
                }
                let size = u32::try_from(thread.extent).map_err(|_| err("invocation loop too long".into()))?;
                let groups = u32::try_from(block.extent).map_err(|_| err("too many workgroups".into()))?;
                let (gx, gy) =
                    if groups <= MAX_GROUPS_PER_DIM { (groups, 1) } else { (MAX_GROUPS_PER_DIM, groups.div_ceil(MAX_GROUPS_PER_DIM)) };
                let _ = writeln!(out, "@compute @workgroup_size({size})");
                let _ = writeln!(out, "fn {entry}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{");
                let _ = writeln!(out, "  let {}: i32 = i32(wg.x + wg.y * {gx}u);", em.var(block.var));
                if gy > 1 {
                    let _ = writeln!(out, "  if ({} >= {groups}i) {{ return; }}", em.var(block.var));
                }
                let _ = writeln!(out, "  let {}: i32 = i32(li);", em.var(thread.var));
                em.in_workgroup(em.var(thread.var), thread.extent);
                em.stmts(&thread.body, 1, &mut out).map_err(err)?;
                out.push_str("}\n\n");
                dispatches.push(Dispatch { entry, groups: [gx, gy] });
            }
            _ => {
                let _ = writeln!(out, "@compute @workgroup_size(1)\nfn {entry}() {{");
                em.stmts(std::slice::from_ref(s), 1, &mut out).map_err(err)?;
                out.push_str("}\n\n");
                dispatches.push(Dispatch { entry, groups: [1, 1] });
            }
        }
    }
    Ok(Shader { source: out, dispatches, scratch, read_only, indices_proven: ir::loops::verify::indices_bounded(f) })
}

/// The temporaries that cooperative loops fill: workgroup memory, shared by the invocations
/// of a workgroup.
fn workgroup_buffers(f: &Func) -> Vec<BufId> {
    let mut out = Vec::new();
    for s in &f.body {
        s.walk(&mut |s| {
            if let Stmt::For(l) = s {
                if l.kind == LoopKind::GpuCooperative {
                    for inner in &l.body {
                        inner.walk(&mut |s| {
                            if let Stmt::Store { buf, .. } = s {
                                if f.buffer(*buf).kind == BufKind::Temp && !out.contains(buf) {
                                    out.push(*buf);
                                }
                            }
                        });
                    }
                }
            }
        });
    }
    out
}

/// The WGSL element type of `b`'s array: vec4 of its storage type when it is wide.
fn element_type(f: &Func, b: BufId, wide: &HashSet<BufId>) -> String {
    let ty = storage_type(f.buffer(b).dtype).unwrap_or("f32");
    if wide.contains(&b) {
        format!("vec4<{ty}>")
    } else {
        ty.to_string()
    }
}

/// Whether the program has f16 buffers or values (which WGSL has with `enable f16`).
fn uses_f16(f: &Func) -> bool {
    let mut half = f.buffers.iter().any(|b| b.dtype == DType::F16);
    for s in &f.body {
        s.walk_exprs(&mut |e| half |= matches!(e, ir::loops::Expr::Cast { to: DType::F16, .. }));
    }
    half
}

pub(crate) fn buf_name(f: &Func, b: BufId) -> String {
    let _ = f;
    format!("b{}", b.0)
}

//! Test harness: compiles loop IR with the LLVM backend, runs it natively (a shared library
//! loaded with dlopen) or under qemu (aarch64), and compares with the reference interpreter.
#![allow(dead_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ir::loops::{parse_func, Func};
use ir::{DType, Tensor, TensorData};
use llvm_backend::{compile_object, Arch, ConstBlob, Kernel, Target};

/// Bytes written after every buffer to catch out-of-bounds stores.
const CANARY: usize = 64;

pub fn parse(text: &str) -> Func {
    parse_func(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("chanasc-llvm-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [lo, hi).
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
}

/// Random arguments for the params of `f`: f32 in [-2, 2), i64 in [-50, 50), random bools.
pub fn random_args(f: &Func, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    f.params()
        .into_iter()
        .map(|p| {
            let b = f.buffer(p);
            let n: usize = b.shape.iter().product();
            let data = match b.dtype {
                DType::F32 => TensorData::F32((0..n).map(|_| rng.f32(-2.0, 2.0)).collect()),
                DType::I64 => TensorData::I64((0..n).map(|_| rng.i64(-50, 50)).collect()),
                DType::Bool => TensorData::Bool((0..n).map(|_| rng.next() & 1 == 1).collect()),
                DType::F16 => panic!("no random f16"),
            };
            Tensor::new(b.shape.clone(), data).unwrap()
        })
        .collect()
}

/// Runs the reference interpreter on a copy of `args`.
pub fn oracle(f: &Func, args: &[Tensor]) -> Vec<Tensor> {
    let mut out = args.to_vec();
    interp::loops::run_func(f, &mut out).unwrap_or_else(|e| panic!("oracle: {e}"));
    out
}

pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    t.data.to_le_bytes()
}

pub fn from_bytes(like: &Tensor, bytes: &[u8]) -> Tensor {
    Tensor::new(like.shape.clone(), TensorData::from_le_bytes(like.dtype(), bytes)).unwrap()
}

/// 64-byte aligned memory holding a tensor's bytes, followed by a canary.
struct Aligned {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

impl Aligned {
    fn new(bytes: &[u8]) -> Aligned {
        let layout = Layout::from_size_align(bytes.len() + CANARY, 64).unwrap();
        let ptr = unsafe { alloc_zeroed(layout) };
        let all = unsafe { std::slice::from_raw_parts_mut(ptr, layout.size()) };
        all[..bytes.len()].copy_from_slice(bytes);
        all[bytes.len()..].fill(0xA5);
        Aligned { ptr, len: bytes.len(), layout }
    }
    fn bytes(&self) -> &[u8] {
        let all = unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) };
        assert!(all[self.len..].iter().all(|&b| b == 0xA5), "a kernel wrote past the end of a buffer");
        &all[..self.len]
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// A compiled shared library, loaded.
pub struct Lib {
    handle: *mut libc::c_void,
    pub dir: PathBuf,
}

type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64);

impl Lib {
    /// Compiles for the host, links `extra_c` sources in, and loads the result.
    pub fn build(kernels: &[Kernel], consts: &[ConstBlob], extra_c: &[&str]) -> Lib {
        let obj = compile_object(kernels, consts, &Target::host()).unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch("so");
        std::fs::write(dir.join("k.o"), obj).unwrap();
        let mut cc = Command::new("cc");
        cc.current_dir(&dir).args(["-shared", "-o", "k.so", "k.o"]);
        for (i, src) in extra_c.iter().enumerate() {
            let name = format!("extra{i}.c");
            std::fs::write(dir.join(&name), src).unwrap();
            cc.args(["-fPIC", &name]);
        }
        run(cc.arg("-lm"));
        let path = CString::new(dir.join("k.so").to_str().unwrap()).unwrap();
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen failed");
        Lib { handle, dir }
    }

    pub fn sym(&self, name: &str) -> *mut libc::c_void {
        let c = CString::new(name).unwrap();
        let p = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
        assert!(!p.is_null(), "symbol {name} not found");
        p
    }

    /// Calls kernel `symbol` of `f` once per `[begin, end)` chunk on copies of `args`.
    pub fn call(&self, symbol: &str, args: &[Tensor], chunks: &[(i64, i64)]) -> Vec<Tensor> {
        let bufs: Vec<Aligned> = args.iter().map(|t| Aligned::new(&to_bytes(t))).collect();
        let ptrs: Vec<*mut u8> = bufs.iter().map(|b| b.ptr).collect();
        let k: KernelFn = unsafe { std::mem::transmute(self.sym(symbol)) };
        for &(b, e) in chunks {
            unsafe { k(ptrs.as_ptr(), b, e) };
        }
        args.iter().zip(&bufs).map(|(t, b)| from_bytes(t, b.bytes())).collect()
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        unsafe { libc::dlclose(self.handle) };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that two sets of tensors agree: floats within `tol` (relative and absolute), the
/// rest exactly.
pub fn assert_close(got: &[Tensor], want: &[Tensor], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: argument count");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        match (&g.data, &w.data) {
            (TensorData::F32(g), TensorData::F32(w)) => {
                assert_eq!(g.len(), w.len(), "{what}: arg {k} length");
                for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                    let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + b.abs());
                    assert!(ok, "{what}: arg {k} element {i}: got {a}, want {b}");
                }
            }
            (g, w) => assert_eq!(g, w, "{what}: arg {k}"),
        }
    }
}

/// The extent of the parallel loop when the body is one.
pub fn parallel_extent(f: &Func) -> Option<i64> {
    match f.body.as_slice() {
        [ir::loops::Stmt::For(l)] if l.kind == ir::loops::LoopKind::Parallel => Some(l.extent),
        _ => None,
    }
}

/// Compiles `text` for the host, runs it on random (or given) arguments, whole and (for a
/// parallel kernel) split into uneven chunks, and checks both against the interpreter.
pub fn check_host(text: &str, args: Option<Vec<Tensor>>, tol: f32) -> Vec<Tensor> {
    let f = parse(text);
    let args = args.unwrap_or_else(|| random_args(&f, 7));
    let want = oracle(&f, &args);
    let lib = Lib::build(&[Kernel { symbol: "kern".into(), func: &f }], &[], &[]);
    let got = lib.call("kern", &args, &[(0, parallel_extent(&f).unwrap_or(0))]);
    assert_close(&got, &want, tol, &f.name);
    if let Some(n) = parallel_extent(&f) {
        let third = n / 3;
        // Out-of-range bounds are clamped to the loop.
        let got = lib.call("kern", &args, &[(third, n + 5), (-3, third)]);
        assert_close(&got, &want, tol, &format!("{} in chunks", f.name));
    }
    want
}

/// Runs `f` compiled for aarch64 under qemu on `args` and returns the params afterwards.
pub fn run_aarch64(f: &Func, args: &[Tensor], target: &Target) -> Vec<Tensor> {
    assert_eq!(target.arch, Arch::Aarch64);
    let obj = compile_object(&[Kernel { symbol: "kern".into(), func: f }], &[], target).unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch("a64");
    std::fs::write(dir.join("k.o"), obj).unwrap();
    let mut c = String::from("#include <stdio.h>\n#include <stdint.h>\nextern void kern(void* const*, int64_t, int64_t);\n");
    for (i, t) in args.iter().enumerate() {
        let bytes = to_bytes(t);
        let list: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        c += &format!("static uint8_t a{i}[{}] __attribute__((aligned(64))) = {{{}}};\n", bytes.len().max(1), list.join(","));
    }
    let ptrs: Vec<String> = (0..args.len()).map(|i| format!("a{i}")).collect();
    c += &format!("int main(void) {{\n  void* args[] = {{{}}};\n  kern(args, 0, {});\n", ptrs.join(","), parallel_extent(f).unwrap_or(0));
    for (i, t) in args.iter().enumerate() {
        c += &format!("  for (int i = 0; i < {}; i++) printf(\"%02x\", a{i}[i]);\n  printf(\"\\n\");\n", to_bytes(t).len());
    }
    c += "  return 0;\n}\n";
    std::fs::write(dir.join("main.c"), c).unwrap();
    run(Command::new("aarch64-linux-gnu-gcc").current_dir(&dir).args(["-static", "-O1", "-o", "k", "main.c", "k.o", "-lm"]));
    let out = run(Command::new("qemu-aarch64").current_dir(&dir).args(["-L", "/usr/aarch64-linux-gnu", "./k"]));
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), args.len(), "{out}");
    lines
        .iter()
        .zip(args)
        .map(|(line, t)| {
            let bytes: Vec<u8> = (0..line.len() / 2).map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap()).collect();
            assert_eq!(bytes.len(), to_bytes(t).len());
            from_bytes(t, &bytes)
        })
        .collect()
}

/// Whether a command-line tool exists (cross tests skip without it).
pub fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

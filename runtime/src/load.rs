//! Loads a model built as a shared library into this process and runs it: the in-process
//! path of `chanasc run --backend llvm` and `chanasc bench`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use ir::{Tensor, TensorData, TensorType};

use crate::RuntimeError;

type CreateFn = unsafe extern "C" fn(c_int) -> *mut c_void;
type DestroyFn = unsafe extern "C" fn(*mut c_void);
type RunFn = unsafe extern "C" fn(*mut c_void, *const *const c_void, *const *mut c_void) -> c_int;
type CountFn = unsafe extern "C" fn() -> c_int;
type NameFn = unsafe extern "C" fn(c_int) -> *const c_char;
type SecondsFn = unsafe extern "C" fn(*const c_void, c_int) -> f64;
type FlopsFn = unsafe extern "C" fn(c_int) -> f64;

/// A loaded model instance.
pub struct LoadedModel {
    handle: *mut c_void,
    model: *mut c_void,
    destroy: DestroyFn,
    run: RunFn,
    num_programs: CountFn,
    program_name: NameFn,
    program_seconds: SecondsFn,
    program_flops: FlopsFn,
    inputs: Vec<TensorType>,
    outputs: Vec<TensorType>,
}

unsafe fn symbol<T>(handle: *mut c_void, name: &str) -> Result<T, RuntimeError> {
    let c = CString::new(name).expect("symbol names have no NUL");
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    if p.is_null() {
        return Err(RuntimeError::Load(format!("symbol {name} is missing")));
    }
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl LoadedModel {
    /// Loads `library` (built by [`crate::compile`] for the host) whose API uses `prefix`;
    /// `inputs` and `outputs` are the model's tensor types, checked against each run.
    pub fn load(library: &Path, prefix: &str, threads: usize, inputs: Vec<TensorType>, outputs: Vec<TensorType>) -> Result<LoadedModel, RuntimeError> {
        let path = CString::new(library.to_string_lossy().as_bytes()).map_err(|_| RuntimeError::Load("bad path".into()))?;
        // SAFETY: dlopen of a library this process just built; symbols are looked up with
        // the signatures model.h declares.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if handle.is_null() {
                let err = CStr::from_ptr(libc::dlerror()).to_string_lossy().into_owned();
                return Err(RuntimeError::Load(err));
            }
            let create: CreateFn = symbol(handle, &format!("{prefix}_create"))?;
            let model = create(threads as c_int);
            if model.is_null() {
                libc::dlclose(handle);
                return Err(RuntimeError::Load("the model could not allocate its memory".into()));
            }
            Ok(LoadedModel {
                handle,
                model,
                destroy: symbol(handle, &format!("{prefix}_destroy"))?,
                run: symbol(handle, &format!("{prefix}_run"))?,
                num_programs: symbol(handle, &format!("{prefix}_num_programs"))?,
                program_name: symbol(handle, &format!("{prefix}_program_name"))?,
                program_seconds: symbol(handle, &format!("{prefix}_program_seconds"))?,
                program_flops: symbol(handle, &format!("{prefix}_program_flops"))?,
                inputs,
                outputs,
            })
        }
    }

    /// Runs one inference.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let mut outputs = checked_outputs(inputs, &self.inputs, &self.outputs)?;
        let ins: Vec<*const c_void> = inputs.iter().map(data_ptr).collect();
        let outs: Vec<*mut c_void> = outputs.iter_mut().map(|t| data_ptr(t) as *mut c_void).collect();
        // SAFETY: every buffer has the size and dtype of the model's interface (checked above).
        unsafe { (self.run)(self.model, ins.as_ptr(), outs.as_ptr()) };
        Ok(outputs)
    }

    /// (program name, seconds in the last run, flops) of every tensor program.
    pub fn profile(&self) -> Vec<(String, f64, f64)> {
        // SAFETY: indices are within the count the library reports.
        unsafe {
            (0..(self.num_programs)())
                .map(|i| {
                    let name = CStr::from_ptr((self.program_name)(i)).to_string_lossy().into_owned();
                    (name, (self.program_seconds)(self.model, i), (self.program_flops)(i))
                })
                .collect()
        }
    }
}

/// Checks the inputs of a run against the model's interface and makes room for its outputs.
pub(crate) fn checked_outputs(inputs: &[Tensor], want: &[TensorType], outputs: &[TensorType]) -> Result<Vec<Tensor>, RuntimeError> {
    if inputs.len() != want.len() {
        return Err(RuntimeError::Input(format!("{} inputs given, the model has {}", inputs.len(), want.len())));
    }
    for (i, (t, want)) in inputs.iter().zip(want).enumerate() {
        if t.ty() != *want {
            return Err(RuntimeError::Input(format!("input {i}: expected {want}, got {}", t.ty())));
        }
    }
    outputs.iter().map(|t| Tensor::zeros(t).map_err(|e| RuntimeError::Input(e.to_string()))).collect()
}

pub(crate) fn data_ptr(t: &Tensor) -> *const c_void {
    match &t.data {
        TensorData::F32(v) => v.as_ptr() as *const c_void,
        // `half::f16` is the 16 bits of the half, as the model's f16 is.
        TensorData::F16(v) => v.as_ptr() as *const c_void,
        TensorData::I64(v) => v.as_ptr() as *const c_void,
        // Rust's bool is one byte holding 0 or 1, as the model's bool is.
        TensorData::Bool(v) => v.as_ptr() as *const c_void,
    }
}

impl crate::InProcessModel for LoadedModel {
    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        LoadedModel::run(self, inputs)
    }

    fn profile(&self) -> Vec<(String, f64, f64)> {
        LoadedModel::profile(self)
    }
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        // SAFETY: the model and the library were created by `load` and are released once.
        unsafe {
            (self.destroy)(self.model);
            libc::dlclose(self.handle);
        }
    }
}

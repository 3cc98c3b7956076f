//! Code generation targets: architecture, CPU and features, and the LLVM machine for them.

use std::sync::Once;

use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine, TargetTriple};
use inkwell::OptimizationLevel;

use crate::LlvmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub arch: Arch,
    /// LLVM CPU name; "native" = the host CPU
    pub cpu: String,
    pub features: String,
}

/// CPUs whose names alone (no feature string) imply AVX-512 or AVX2.
const AVX512_CPUS: &[&str] = &[
    "x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client", "icelake-server",
    "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5",
    "knl", "knm",
];
const AVX2_CPUS: &[&str] = &[
    "x86-64-v3", "haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake", "lunarlake",
    "gracemont", "znver1", "znver2", "znver3", "bdver4",
];

/// CPUs whose names imply half-precision arithmetic.
const FULLFP16_CPUS: &[&str] = &[
    "cortex-a55", "cortex-a75", "cortex-a76", "cortex-a77", "cortex-a78", "cortex-a710", "cortex-x1", "cortex-x2",
    "neoverse-n1", "neoverse-n2", "neoverse-v1", "neoverse-v2", "apple-m1", "apple-m2", "apple-m3", "apple-m4",
];
const AVX512FP16_CPUS: &[&str] = &["sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d"];

impl Target {
    /// The machine this runs on, as x86-64 (the only host the project builds on).
    pub fn host() -> Target {
        init_llvm();
        Target {
            arch: Arch::X86_64,
            cpu: TargetMachine::get_host_cpu_name().to_string(),
            features: TargetMachine::get_host_cpu_features().to_string(),
        }
    }

    pub fn new(arch: Arch, cpu: Option<&str>) -> Result<Target, LlvmError> {
        if let Some(c) = cpu {
            if c.trim().is_empty() || c.contains(char::is_whitespace) {
                return Err(LlvmError::Target { target: format!("{arch:?}"), msg: format!("bad CPU name {c:?}") });
            }
        }
        Ok(match (arch, cpu) {
            (Arch::X86_64, None | Some("native")) => Target::host(),
            // Half arithmetic (ARMv8.2) is only used by f16 models; f32 code is plain ARMv8.
            (Arch::Aarch64, None) => Target { arch, cpu: "generic".into(), features: "+neon,+fullfp16".into() },
            (Arch::Aarch64, Some("native")) if !cfg!(target_arch = "aarch64") => {
                return Err(LlvmError::Target { target: "aarch64".into(), msg: "the host is not aarch64: name a CPU".into() })
            }
            (_, Some(c)) => Target { arch, cpu: c.to_string(), features: String::new() },
        })
    }

    /// f32 lanes of one SIMD register: 16 with AVX-512, 8 with AVX2, 4 for SSE / NEON.
    pub fn vector_width(&self) -> usize {
        if self.arch == Arch::Aarch64 {
            return 4;
        }
        let (cpu, features) = self.resolved();
        let has = |f: &str| features.split(',').any(|x| x == format!("+{f}"));
        let disabled = |f: &str| features.split(',').any(|x| x == format!("-{f}"));
        if has("avx512f") || (AVX512_CPUS.contains(&cpu.as_str()) && !disabled("avx512f")) {
            16
        } else if has("avx2") || has("avx") || (AVX2_CPUS.contains(&cpu.as_str()) && !disabled("avx2")) {
            8
        } else {
            4
        }
    }

    /// Whether the target has f16 arithmetic (aarch64 `+fullfp16`, x86-64 AVX512-FP16): f16
    /// models then compute their elementwise arithmetic in half; elsewhere f16 is storage
    /// (converted to f32 on load, as F16C does).
    pub fn has_f16_arithmetic(&self) -> bool {
        let (cpu, features) = self.resolved();
        let has = |f: &str| features.split(',').any(|x| x == format!("+{f}"));
        let disabled = |f: &str| features.split(',').any(|x| x == format!("-{f}"));
        match self.arch {
            Arch::Aarch64 => has("fullfp16") || (FULLFP16_CPUS.contains(&cpu.as_str()) && !disabled("fullfp16")),
            Arch::X86_64 => has("avx512fp16") || (AVX512FP16_CPUS.contains(&cpu.as_str()) && !disabled("avx512fp16")),
        }
    }

    /// The CPU and features with "native" replaced by the host's.
    pub(crate) fn resolved(&self) -> (String, String) {
        if self.cpu == "native" {
            let host = Target::host();
            let features = if self.features.is_empty() { host.features } else { format!("{},{}", host.features, self.features) };
            (host.cpu, features)
        } else {
            (self.cpu.clone(), self.features.clone())
        }
    }

    pub(crate) fn triple(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// An -O3, position-independent machine for this target.
    pub(crate) fn machine(&self) -> Result<TargetMachine, LlvmError> {
        init_llvm();
        let triple = TargetTriple::create(self.triple());
        let err = |msg: String| LlvmError::Target { target: format!("{} ({})", self.triple(), self.cpu), msg };
        let target = LlvmTarget::from_triple(&triple).map_err(|e| err(e.to_string()))?;
        let (cpu, features) = self.resolved();
        target
            .create_target_machine(&triple, &cpu, &features, OptimizationLevel::Aggressive, RelocMode::PIC, CodeModel::Default)
            .ok_or_else(|| err("LLVM could not create a target machine".into()))
    }
}

/// LLVM's target registry is global; the backends this crate emits for are registered once.
fn init_llvm() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let config = InitializationConfig::default();
        LlvmTarget::initialize_x86(&config);
        LlvmTarget::initialize_aarch64(&config);
    });
}

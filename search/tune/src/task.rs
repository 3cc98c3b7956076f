//! Task extraction: one task per distinct tensor program of a model on a target.
//!
//! Two programs are the same task when their unscheduled loop IR prints the same (structure,
//! shapes, buffer names; the function's name, which carries a node number, is normalized
//! away), their parameters bound to constants are the same (a layout change applies only to
//! constants) and the target is the same. The key is a 64-bit FNV-1a hash of that text; the
//! weight is how many programs of the model share it.

use ir::loops::Func;
use ir::Graph;
use llvm_backend::{Arch, Target};
use passes::lower::Step;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Task {
    pub key: String,
    /// The first program's name (function and graph node), for reports.
    pub name: String,
    /// The target's identity (see [`target_id`]).
    pub target: String,
    /// The unscheduled program.
    pub func: Func,
    /// Whether each parameter is bound to a constant.
    pub constants: Vec<bool>,
    /// Programs of the model that are this task.
    pub weight: usize,
    /// Floating-point operations of one run.
    pub flops: u64,
}

/// The target as tasks and records know it: triple, CPU and vector width.
pub fn target_id(t: &Target) -> String {
    let triple = match t.arch {
        Arch::X86_64 => "x86_64-unknown-linux-gnu",
        Arch::Aarch64 => "aarch64-unknown-linux-gnu",
    };
    format!("{triple} {} v{}", t.cpu, t.vector_width())
}

/// FNV-1a, 64 bits: stable across runs and Rust versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The task key of an unscheduled program. A program timed with cold weights (see
/// [`cold_params`]) says so in its key, so that its records never mix with warm timings.
pub fn task_key(func: &Func, constants: &[bool], target: &str) -> String {
    let mut normalized = func.clone();
    normalized.name = "task".into();
    let consts: String = constants.iter().map(|&c| if c { 'c' } else { '-' }).collect();
    let cold = if cold_params(func, constants).is_empty() { "" } else { "weights cold\n" };
    let text = format!("{}\nconstants {consts}\ntarget {target}\n{cold}", ir::loops::print_func(&normalized));
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// The parameters the measurer evicts from the caches before each timed run: a program's
/// constants when they hold at least `passes::schedule::space::BIG_WEIGHT_BYTES`. In a network every weight is
/// read once per inference, long after the caches last held it; a program timed alone and
/// back to back finds its weights warm, which flatters schedules that read them in bursts
/// (resnet18's last convolutions, 9.4 MB of weights each, ran 1.45 ms alone and 2.1 ms in
/// the network). Small weights stay warm: timing each run alone would cost more precision
/// than the few lines they miss.
pub fn cold_params(func: &Func, constants: &[bool]) -> Vec<usize> {
    let params = func.params();
    let consts: Vec<usize> = (0..params.len()).filter(|&i| constants.get(i).copied().unwrap_or(false)).collect();
    let bytes: usize = consts.iter().map(|&i| func.buffer(params[i]).bytes()).sum();
    if bytes >= passes::schedule::space::BIG_WEIGHT_BYTES {
        consts
    } else {
        Vec::new()
    }
}

/// The tasks of `g` (after the graph passes when `optimize`) on `target`, in the order their
/// first program runs. Programs that run once, at creation, are not tuned.
pub fn extract_tasks(g: &Graph, target: &Target, optimize: bool) -> Result<Vec<Task>> {
    let graph = passes::pipeline::prepare_graph(g, optimize)?;
    let steps = passes::lower::lower_graph(&graph)?;
    let target_name = target_id(target);
    let mut tasks: Vec<Task> = Vec::new();
    for step in &steps {
        let Step::Run(p) = step else { continue };
        let constants: Vec<bool> = p.args.iter().map(|&v| graph.const_data(v).is_some()).collect();
        let key = task_key(&p.func, &constants, &target_name);
        if let Some(t) = tasks.iter_mut().find(|t| t.key == key) {
            t.weight += 1;
            continue;
        }
        let node_name = p.nodes.first().and_then(|&n| graph.node(n).name.clone());
        tasks.push(Task {
            key,
            name: match node_name {
                Some(n) => format!("{} {n}", p.func.name),
                None => p.func.name.clone(),
            },
            target: target_name.clone(),
            func: p.func.clone(),
            constants,
            weight: 1,
            flops: runtime::program_flops(&graph, &p.nodes),
        });
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELU: &str = r#"func "relu_3" {
  param %x: f32[64]
  param %y: f32[64]
  for i in 0..64 {
    %y[i] = max(%x[i], 0.0)
  }
}"#;

    #[test]
    fn keys_ignore_the_name_but_not_shapes_constants_or_target() {
        let a = ir::loops::parse_func(RELU).unwrap();
        let mut b = a.clone();
        b.name = "relu_17".into();
        let c = ir::loops::parse_func(&RELU.replace("64", "32")).unwrap();
        let k = |f: &Func, consts: &[bool], t: &str| task_key(f, consts, t);
        assert_eq!(k(&a, &[false, false], "x"), k(&b, &[false, false], "x"));
        assert_ne!(k(&a, &[false, false], "x"), k(&c, &[false, false], "x"));
        assert_ne!(k(&a, &[false, false], "x"), k(&a, &[true, false], "x"));
        assert_ne!(k(&a, &[false, false], "x"), k(&a, &[false, false], "y"));
        assert_eq!(k(&a, &[false, false], "x").len(), 16);
    }

    #[test]
    fn big_weights_are_timed_cold_and_keyed_apart() {
        let small = ir::loops::parse_func(RELU).unwrap();
        assert!(cold_params(&small, &[true, false]).is_empty());
        // 2^18 f32 = 1 MiB of constants.
        let big = ir::loops::parse_func(&RELU.replace("64", "262144")).unwrap();
        assert_eq!(cold_params(&big, &[true, false]), vec![0]);
        assert!(cold_params(&big, &[false, false]).is_empty(), "only constants are evicted");
        let half = ir::loops::parse_func(&RELU.replace("64", "131072")).unwrap();
        assert!(cold_params(&half, &[true, false]).is_empty());
        // The key of a cold-timed task differs from the same program's warm key.
        let text = |f: &Func, consts: &str| {
            let mut n = f.clone();
            n.name = "task".into();
            format!("{:016x}", fnv1a(format!("{}\nconstants {consts}\ntarget x\n", ir::loops::print_func(&n)).as_bytes()))
        };
        assert_eq!(task_key(&small, &[true, false], "x"), text(&small, "c-"));
        assert_ne!(task_key(&big, &[true, false], "x"), text(&big, "c-"));
    }
}

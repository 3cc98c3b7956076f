//! Built-in example networks, written as ONNX so that they take the same path as users' models.

use crate::onnx_builder::{AttrValue::*, OnnxBuilder};

/// Names of the built-in examples.
pub const EXAMPLES: &[&str] = &["tiny-cnn"];

/// The ONNX bytes of a built-in example, or None for an unknown name.
pub fn example_model(name: &str, seed: u64) -> Option<Vec<u8>> {
    match name {
        "tiny-cnn" => Some(tiny_cnn(seed)),
        _ => None,
    }
}

/// Deterministic weights: uniform in [-scale, scale).
struct Weights(u64);

impl Weights {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn take(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// A MobileNetV3-style CNN on 3x32x32 images with 10 classes: a stem conv with batch norm
/// and hard-swish, an inverted residual block (1x1 expand, depthwise 3x3, squeeze-excite
/// with hard-sigmoid, 1x1 project with a residual add), global pooling and a classifier.
pub fn tiny_cnn(seed: u64) -> Vec<u8> {
    let mut w = Weights(seed ^ 0x5eed);
    let mut b = OnnxBuilder::new("tiny_cnn", 17);
    b.input("input", &[1, 3, 32, 32]).output("output", &[1, 10]);
    let conv = |b: &mut OnnxBuilder, w: &mut Weights, name: &str, x: &str, cin: usize, cout: usize, k: usize, s: usize, group: usize| {
        let fan_in = (cin / group * k * k) as f32;
        b.initializer(&format!("{name}.weight"), &[cout, cin / group, k, k], &w.take(cout * cin / group * k * k, (3.0 / fan_in).sqrt()));
        b.initializer(&format!("{name}.bias"), &[cout], &w.take(cout, 0.1));
        let p = (k / 2) as i64;
        b.node(
            "Conv",
            name,
            &[x, &format!("{name}.weight"), &format!("{name}.bias")],
            &[&format!("{name}.out")],
            vec![
                ("kernel_shape", Ints(vec![k as i64; 2])),
                ("strides", Ints(vec![s as i64; 2])),
                ("pads", Ints(vec![p; 4])),
                ("group", Int(group as i64)),
            ],
        );
    };
    let bn = |b: &mut OnnxBuilder, w: &mut Weights, name: &str, x: &str, c: usize| {
        let scale: Vec<f32> = w.take(c, 0.2).iter().map(|v| 1.0 + v).collect();
        let var: Vec<f32> = w.take(c, 0.5).iter().map(|v| 1.0 + v).collect();
        b.initializer(&format!("{name}.scale"), &[c], &scale);
        b.initializer(&format!("{name}.bias"), &[c], &w.take(c, 0.1));
        b.initializer(&format!("{name}.mean"), &[c], &w.take(c, 0.1));
        b.initializer(&format!("{name}.var"), &[c], &var);
        let ins: Vec<String> = ["", ".scale", ".bias", ".mean", ".var"]
            .iter()
            .map(|s| if s.is_empty() { x.to_string() } else { format!("{name}{s}") })
            .collect();
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        b.node("BatchNormalization", name, &ins, &[&format!("{name}.out")], vec![("epsilon", Float(1e-5))]);
    };
    conv(&mut b, &mut w, "stem", "input", 3, 16, 3, 2, 1);
    bn(&mut b, &mut w, "stem_bn", "stem.out", 16);
    b.node("HardSwish", "stem_act", &["stem_bn.out"], &["stem_act.out"], vec![]);
    conv(&mut b, &mut w, "expand", "stem_act.out", 16, 48, 1, 1, 1);
    b.node("Relu", "expand_act", &["expand.out"], &["expand_act.out"], vec![]);
    conv(&mut b, &mut w, "dw", "expand_act.out", 48, 48, 3, 1, 48);
    bn(&mut b, &mut w, "dw_bn", "dw.out", 48);
    b.node("Relu", "dw_act", &["dw_bn.out"], &["dw_act.out"], vec![]);
    b.node("GlobalAveragePool", "se_pool", &["dw_act.out"], &["se_pool.out"], vec![]);
    conv(&mut b, &mut w, "se_reduce", "se_pool.out", 48, 16, 1, 1, 1);
    b.node("Relu", "se_relu", &["se_reduce.out"], &["se_relu.out"], vec![]);
    conv(&mut b, &mut w, "se_expand", "se_relu.out", 16, 48, 1, 1, 1);
    b.node("HardSigmoid", "se_gate", &["se_expand.out"], &["se_gate.out"], vec![("alpha", Float(1.0 / 6.0)), ("beta", Float(0.5))]);
    b.node("Mul", "se_scale", &["dw_act.out", "se_gate.out"], &["se_scale.out"], vec![]);
    conv(&mut b, &mut w, "project", "se_scale.out", 48, 16, 1, 1, 1);
    b.node("Add", "residual", &["project.out", "stem_act.out"], &["residual.out"], vec![]);
    b.node("GlobalAveragePool", "pool", &["residual.out"], &["pool.out"], vec![]);
    b.node("Flatten", "flatten", &["pool.out"], &["flatten.out"], vec![("axis", Int(1))]);
    b.initializer("classifier.weight", &[10, 16], &w.take(160, 0.25));
    b.initializer("classifier.bias", &[10], &w.take(10, 0.1));
    b.node(
        "Gemm",
        "classifier",
        &["flatten.out", "classifier.weight", "classifier.bias"],
        &["output"],
        vec![("transB", Int(1))],
    );
    b.to_bytes()
}

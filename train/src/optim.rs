//! SGD with momentum (optionally Nesterov) and decoupled-from-BN weight decay, as PyTorch's
//! `torch.optim.SGD` computes it, and a cosine learning-rate schedule with linear warm-up.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Sgd {
    /// One step on `w` with gradient `g` and momentum buffer `buf`, at learning rate `lr`;
    /// `decay` says whether weight decay applies to this tensor.
    pub fn step(&self, lr: f32, w: &mut [f32], g: &[f32], buf: &mut [f32], decay: bool) {
        let wd = if decay { self.weight_decay } else { 0.0 };
        for i in 0..w.len() {
            let d = g[i] + wd * w[i];
            buf[i] = self.momentum * buf[i] + d;
            let u = if self.nesterov { d + self.momentum * buf[i] } else { buf[i] };
            w[i] -= lr * u;
        }
    }
}

/// The learning rate at `step` of `total`: linear warm-up over `warmup` steps, then cosine
/// decay from `base` to 0.
pub fn cosine_lr(base: f32, step: usize, total: usize, warmup: usize) -> f32 {
    if step < warmup {
        return base * (step + 1) as f32 / warmup as f32;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_and_decay_follow_pytorch() {
        // Two steps of torch.optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01) on w=1
        // with gradient 0.5: d=0.51, buf=0.51, w=0.949; d=0.50949, buf=0.96849, w=0.852151.
        let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.01, nesterov: false };
        let (mut w, mut buf) = (vec![1.0f32], vec![0.0f32]);
        opt.step(0.1, &mut w, &[0.5], &mut buf, true);
        assert!((w[0] - 0.949).abs() < 1e-6);
        opt.step(0.1, &mut w, &[0.5], &mut buf, true);
        assert!((w[0] - 0.852151).abs() < 1e-6, "{}", w[0]);
        // No decay where it does not apply; Nesterov looks ahead.
        let nest = Sgd { nesterov: true, ..opt };
        let (mut w, mut buf) = (vec![1.0f32], vec![0.0f32]);
        nest.step(0.1, &mut w, &[0.5], &mut buf, false);
        assert!((w[0] - (1.0 - 0.1 * (0.5 + 0.9 * 0.5))).abs() < 1e-6);
    }

    #[test]
    fn cosine_schedule() {
        assert_eq!(cosine_lr(0.1, 0, 100, 10), 0.01);
        assert!((cosine_lr(0.1, 10, 100, 10) - 0.1).abs() < 1e-7);
        assert!((cosine_lr(0.1, 55, 100, 10) - 0.05).abs() < 1e-6);
        assert!(cosine_lr(0.1, 100, 100, 10).abs() < 1e-7);
    }
}

//! The cost model: gradient-boosted regression trees (squared loss), written out here.
//!
//! Trees grow level by level with exact splits: each feature's samples are sorted once, and
//! one pass over that order per level finds the best split of every leaf at once, so a fit is
//! O(rounds x depth x features x samples). Small data (hundreds to thousands of measured
//! candidates) and a few dozen features keep a refit well under a second, so the model is
//! refit after every batch of measurements.

#[derive(Debug, Clone)]
pub struct Params {
    pub rounds: usize,
    pub depth: usize,
    pub rate: f64,
    /// The fewest samples a leaf may hold.
    pub min_leaf: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params { rounds: 60, depth: 4, rate: 0.15, min_leaf: 3 }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Leaf(f64),
    Split { feature: usize, threshold: f64, left: usize, right: usize },
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match self.nodes[i] {
                Node::Leaf(v) => return v,
                Node::Split { feature, threshold, left, right } => i = if x[feature] <= threshold { left } else { right },
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gbdt {
    base: f64,
    rate: f64,
    trees: Vec<Tree>,
}

impl Gbdt {
    /// Fits `y` from rows `x` (all of the same length). With no samples the model predicts 0.
    pub fn fit(x: &[Vec<f64>], y: &[f64], p: &Params) -> Gbdt {
        let n = x.len().min(y.len());
        if n == 0 {
            return Gbdt { base: 0.0, rate: p.rate, trees: Vec::new() };
        }
        let features = x[0].len();
        let base = y[..n].iter().sum::<f64>() / n as f64;
        let mut pred = vec![base; n];
        let order: Vec<Vec<usize>> = (0..features)
            .map(|f| {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_by(|&a, &b| x[a][f].total_cmp(&x[b][f]));
                idx
            })
            .collect();
        let mut trees = Vec::with_capacity(p.rounds);
        for _ in 0..p.rounds {
            let residual: Vec<f64> = (0..n).map(|i| y[i] - pred[i]).collect();
            let (tree, leaf_of) = grow(x, &residual, &order, p);
            for i in 0..n {
                if let Node::Leaf(v) = tree.nodes[leaf_of[i]] {
                    pred[i] += p.rate * v;
                }
            }
            trees.push(tree);
        }
        Gbdt { base, rate: p.rate, trees }
    }

    pub fn predict(&self, x: &[f64]) -> f64 {
        self.base + self.rate * self.trees.iter().map(|t| t.predict(x)).sum::<f64>()
    }
}

/// One regression tree on `r`; also returns each sample's leaf.
fn grow(x: &[Vec<f64>], r: &[f64], order: &[Vec<usize>], p: &Params) -> (Tree, Vec<usize>) {
    let n = r.len();
    let mut nodes = vec![Node::Leaf(r.iter().sum::<f64>() / n as f64)];
    let mut node_of = vec![0usize; n];
    let mut active = vec![0usize];
    for _ in 0..p.depth {
        let m = nodes.len();
        let mut is_active = vec![false; m];
        active.iter().for_each(|&a| is_active[a] = true);
        let (mut sum, mut cnt) = (vec![0.0f64; m], vec![0usize; m]);
        for i in 0..n {
            sum[node_of[i]] += r[i];
            cnt[node_of[i]] += 1;
        }
        // Best split per node: (gain, feature, threshold).
        let mut best: Vec<Option<(f64, usize, f64)>> = vec![None; m];
        for (f, idx) in order.iter().enumerate() {
            let (mut lsum, mut lcnt, mut last) = (vec![0.0f64; m], vec![0usize; m], vec![f64::NAN; m]);
            for &i in idx {
                let k = node_of[i];
                if !is_active[k] {
                    continue;
                }
                let v = x[i][f];
                // A split between the previous value and this one: the left side is every
                // sample of the node with a smaller value.
                if lcnt[k] >= p.min_leaf && cnt[k] - lcnt[k] >= p.min_leaf && v > last[k] {
                    let rsum = sum[k] - lsum[k];
                    let rcnt = (cnt[k] - lcnt[k]) as f64;
                    let gain = lsum[k] * lsum[k] / lcnt[k] as f64 + rsum * rsum / rcnt - sum[k] * sum[k] / cnt[k] as f64;
                    if gain > 1e-12 && best[k].is_none_or(|b| gain > b.0) {
                        best[k] = Some((gain, f, (last[k] + v) / 2.0));
                    }
                }
                lsum[k] += r[i];
                lcnt[k] += 1;
                last[k] = v;
            }
        }
        let mut next = Vec::new();
        for &k in &active {
            let Some((_, feature, threshold)) = best[k] else { continue };
            let (left, right) = (nodes.len(), nodes.len() + 1);
            let (mut ls, mut lc, mut rs, mut rc) = (0.0, 0usize, 0.0, 0usize);
            for i in 0..n {
                if node_of[i] == k {
                    if x[i][feature] <= threshold {
                        node_of[i] = left;
                        ls += r[i];
                        lc += 1;
                    } else {
                        node_of[i] = right;
                        rs += r[i];
                        rc += 1;
                    }
                }
            }
            nodes.push(Node::Leaf(ls / lc.max(1) as f64));
            nodes.push(Node::Leaf(rs / rc.max(1) as f64));
            nodes[k] = Node::Split { feature, threshold, left, right };
            next.extend([left, right]);
        }
        if next.is_empty() {
            break;
        }
        active = next;
    }
    (Tree { nodes }, node_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn fits_a_nonlinear_function_and_generalizes() {
        let target = |x: &[f64]| x[0] * x[0] + if x[1] > 0.5 { 2.0 } else { 0.0 } - x[2];
        let mut rng = Rng::new(7);
        let mut sample = |n: usize| -> (Vec<Vec<f64>>, Vec<f64>) {
            let x: Vec<Vec<f64>> = (0..n).map(|_| (0..5).map(|_| rng.unit() * 2.0 - 0.5).collect()).collect();
            let y = x.iter().map(|r| target(r)).collect();
            (x, y)
        };
        let (x, y) = sample(400);
        let model = Gbdt::fit(&x, &y, &Params { rounds: 150, ..Params::default() });
        let (tx, ty) = sample(200);
        let mse: f64 = tx.iter().zip(&ty).map(|(r, t)| (model.predict(r) - t).powi(2)).sum::<f64>() / 200.0;
        let mean = ty.iter().sum::<f64>() / 200.0;
        let var: f64 = ty.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / 200.0;
        assert!(mse < 0.1 * var, "mse {mse} against variance {var}");
    }

    #[test]
    fn no_samples_predicts_zero() {
        let model = Gbdt::fit(&[], &[], &Params::default());
        assert_eq!(model.predict(&[1.0, 2.0]), 0.0);
    }
}

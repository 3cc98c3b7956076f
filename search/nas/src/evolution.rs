//! The schedule-blind baseline: Once-for-All's evolutionary search, maximizing an accuracy
//! oracle's score under a latency budget, with latency predicted from a table of block
//! latencies (default schedules).
//!
//! As OFA's `EvolutionFinder` does it (hyper-parameters from PAPER.md): a population of 100
//! random architectures within the budget; then, each generation, the best 25 % are the
//! parents, 50 % of the population size are children by mutation of a random parent (each
//! kernel, expand ratio and depth resampled with probability 0.1, the resolution with 0.5),
//! the other 50 % by crossover of two random parents (each gene from either); a child over
//! the budget is drawn again. The next population is the parents and their children (so the
//! best never gets worse). Everything random comes from one seeded generator, so a search
//! is reproducible; oracle answers are cached per architecture (blocks cut by depth do not
//! count), so each distinct network is evaluated once.
//!
//! The score is the validation accuracy, less `gap_lambda` times the generalization gap
//! (`max(0, train - val)`) when the oracle knows the training accuracy (PAPER.md); OFA's
//! baseline uses `gap_lambda = 0`.

use std::collections::HashMap;

use crate::error::{NasError, Result};
use crate::oracle::{Accuracy, AccuracyOracle};
use crate::rng::SplitMix64;
use crate::space::{ArchConfig, BLOCKS, DEPTHS, EXPANDS, KERNELS, STAGES};

/// Settings of a search.
#[derive(Debug, Clone)]
pub struct EvolutionConfig {
    pub population: usize,
    pub generations: usize,
    /// Share of the population kept as parents.
    pub parent_ratio: f64,
    /// Share of the population size made by mutation (the rest by crossover).
    pub mutation_ratio: f64,
    /// Probability of resampling each kernel, expand ratio and depth in a mutation.
    pub mutate_prob: f64,
    /// Probability of resampling the resolution in a mutation.
    pub resolution_mutate_prob: f64,
    /// The resolutions to search.
    pub resolutions: Vec<u32>,
    /// The latency budget: a network's predicted latency must be at most this.
    pub latency_budget_ms: f64,
    pub gap_lambda: f64,
    pub seed: u64,
    /// Draws of one child (or one initial architecture) before giving up on the budget.
    pub max_tries: usize,
    /// Independent runs (seeds `seed`, `seed + 1`, ...), the best of all kept. One run of
    /// OFA's search can settle on a worse architecture than another seed finds (0.3 points
    /// of predicted accuracy apart at 7 ms on the w1.2 space); runs share the oracle's
    /// answers, so a restart costs only its latency lookups and new architectures. A restart
    /// that cannot draw its architectures within the budget ends the restarts.
    pub restarts: usize,
}

impl EvolutionConfig {
    /// OFA's hyper-parameters.
    pub fn ofa(latency_budget_ms: f64, resolutions: Vec<u32>, seed: u64) -> EvolutionConfig {
        EvolutionConfig {
            population: 100,
            generations: 500,
            parent_ratio: 0.25,
            mutation_ratio: 0.5,
            mutate_prob: 0.1,
            resolution_mutate_prob: 0.5,
            resolutions,
            latency_budget_ms,
            gap_lambda: 0.0,
            seed,
            max_tries: 10_000,
            restarts: 1,
        }
    }

    /// Generation logs one search reports: the initial population and each generation, per
    /// restart.
    pub fn steps(&self) -> usize {
        (self.generations + 1) * self.restarts.max(1)
    }

    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(NasError::Arch(format!("evolution settings: {m}")));
        if self.population < 2 {
            return bad(format!("population {} is below 2", self.population));
        }
        if self.resolutions.is_empty() {
            return bad("no resolutions to search".into());
        }
        for (name, p) in [
            ("parent ratio", self.parent_ratio),
            ("mutation ratio", self.mutation_ratio),
            ("mutation probability", self.mutate_prob),
            ("resolution mutation probability", self.resolution_mutate_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} {p} is not in [0, 1]"));
            }
        }
        if !(self.latency_budget_ms > 0.0 && self.latency_budget_ms.is_finite()) {
            return bad(format!("latency budget {} ms is not a positive number", self.latency_budget_ms));
        }
        Ok(())
    }
}

/// One evaluated architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Normalized (entries of cut blocks set to 3).
    pub arch: ArchConfig,
    pub accuracy: Accuracy,
    pub score: f64,
    pub latency_ms: f64,
}

/// The state after one generation (generation 0: the initial population).
#[derive(Debug, Clone)]
pub struct GenerationLog {
    pub generation: usize,
    pub best: Candidate,
    /// Mean score of the population.
    pub population_mean: f64,
    /// Distinct architectures whose accuracy has been evaluated so far.
    pub evaluated: usize,
}

#[derive(Debug, Clone)]
pub struct EvolutionResult {
    pub best: Candidate,
    pub history: Vec<GenerationLog>,
    /// Every distinct architecture evaluated, in the order first evaluated.
    pub evaluated: Vec<Candidate>,
}

/// The search's score of an accuracy: `val - gap_lambda * max(0, train - val)` when the
/// training accuracy is known, `val` otherwise (PAPER.md, "The method", 1).
pub fn score(accuracy: &Accuracy, gap_lambda: f64) -> f64 {
    let gap = accuracy.train.map_or(0.0, |t| (t - accuracy.val).max(0.0));
    accuracy.val - gap_lambda * gap
}

/// Latency and accuracy of architectures, each computed once.
struct Evaluator<'a> {
    oracle: &'a mut dyn AccuracyOracle,
    latency: &'a dyn Fn(&ArchConfig) -> Result<f64>,
    gap_lambda: f64,
    latencies: HashMap<String, f64>,
    candidates: HashMap<String, usize>,
    evaluated: Vec<Candidate>,
}

impl Evaluator<'_> {
    fn latency(&mut self, arch: &ArchConfig) -> Result<f64> {
        let key = arch.to_compact();
        if let Some(&l) = self.latencies.get(&key) {
            return Ok(l);
        }
        let l = (self.latency)(arch)?;
        self.latencies.insert(key, l);
        Ok(l)
    }

    fn evaluate(&mut self, arch: &ArchConfig, latency_ms: f64) -> Result<Candidate> {
        let key = arch.to_compact();
        if let Some(&i) = self.candidates.get(&key) {
            return Ok(self.evaluated[i].clone());
        }
        let accuracy = self.oracle.evaluate(arch)?;
        let c = Candidate { arch: arch.clone(), accuracy, score: score(&accuracy, self.gap_lambda), latency_ms };
        self.candidates.insert(key, self.evaluated.len());
        self.evaluated.push(c.clone());
        Ok(c)
    }
}

/// Draws architectures from `draw` until one is within the budget; returns it (normalized)
/// with its latency.
fn within_budget(
    ev: &mut Evaluator,
    config: &EvolutionConfig,
    what: &str,
    draw: &mut dyn FnMut() -> ArchConfig,
) -> Result<(ArchConfig, f64)> {
    for _ in 0..config.max_tries.max(1) {
        let arch = draw().normalized();
        let l = ev.latency(&arch)?;
        if l <= config.latency_budget_ms {
            return Ok((arch, l));
        }
    }
    Err(NasError::Arch(format!("no {what} within the latency budget of {} ms after {} draws", config.latency_budget_ms, config.max_tries)))
}

/// The next smaller choice in `choices` (ascending), if any.
fn step_down(choices: &[u32], v: u32) -> Option<u32> {
    choices.iter().rev().find(|&&c| c < v).copied()
}

/// A random architecture made to fit: drawn as OFA draws them, then, while over the budget,
/// one of its larger choices (an active block's kernel or expand ratio, a stage's depth),
/// picked at random, lowered one step. Where uniform draws rarely fit a tight budget (the
/// initial population is then drawn this way, see `initial_population`), this keeps the
/// draws' variety while landing near the budget, where the search climbs from. None: even
/// the smallest network of the draw's resolution is over the budget.
fn sample_shrunk(ev: &mut Evaluator, config: &EvolutionConfig, rng: &mut SplitMix64) -> Result<Option<(ArchConfig, f64)>> {
    let mut arch = ArchConfig::sample(rng, &config.resolutions).normalized();
    loop {
        let l = ev.latency(&arch)?;
        if l <= config.latency_budget_ms {
            return Ok(Some((arch, l)));
        }
        // Every possible one-step shrink: (gene, block or stage, its lowered value), where
        // gene 0 is a kernel, 1 an expand ratio, 2 a depth.
        let mut smaller: Vec<(u8, usize, u32)> = Vec::new();
        for i in (0..BLOCKS).filter(|&i| arch.is_active(i)) {
            smaller.extend(step_down(&KERNELS, arch.ks[i]).map(|v| (0, i, v)));
            smaller.extend(step_down(&EXPANDS, arch.e[i]).map(|v| (1, i, v)));
        }
        smaller.extend((0..STAGES).filter_map(|s| step_down(&DEPTHS, arch.d[s]).map(|v| (2, s, v))));
        if smaller.is_empty() {
            return Ok(None);
        }
        let (gene, i, v) = smaller[rng.below(smaller.len())];
        match gene {
            0 => arch.ks[i] = v,
            1 => arch.e[i] = v,
            _ => arch.d[i] = v,
        }
        arch = arch.normalized();
    }
}

/// The initial population: `n` uniform draws within the budget, as OFA draws them. When a
/// draw does not fit within `max_tries` (a budget that only a small share of the space
/// meets), that one and the rest are drawn by `sample_shrunk` instead. `evolve` has checked
/// that some resolution's smallest network fits, so shrinking draws end.
fn initial_population(ev: &mut Evaluator, config: &EvolutionConfig, rng: &mut SplitMix64, n: usize) -> Result<Vec<Candidate>> {
    let mut population = Vec::with_capacity(n);
    let mut shrink = false;
    let resolutions = config.resolutions.clone();
    while population.len() < n {
        let drawn = if shrink {
            match sample_shrunk(ev, config, rng)? {
                Some(d) => d,
                None => continue,
            }
        } else {
            match within_budget(ev, config, "random architecture", &mut || ArchConfig::sample(rng, &resolutions)) {
                Ok(d) => d,
                Err(_) => {
                    shrink = true;
                    continue;
                }
            }
        };
        population.push(ev.evaluate(&drawn.0, drawn.1)?);
    }
    Ok(population)
}

fn mutate(rng: &mut SplitMix64, parent: &ArchConfig, config: &EvolutionConfig) -> ArchConfig {
    let mut a = parent.clone();
    if rng.next_f64() < config.resolution_mutate_prob {
        a.r = rng.choose(&config.resolutions);
    }
    for i in 0..BLOCKS {
        if rng.next_f64() < config.mutate_prob {
            a.ks[i] = rng.choose(&KERNELS);
        }
        if rng.next_f64() < config.mutate_prob {
            a.e[i] = rng.choose(&EXPANDS);
        }
    }
    for s in 0..STAGES {
        if rng.next_f64() < config.mutate_prob {
            a.d[s] = rng.choose(&DEPTHS);
        }
    }
    a
}

fn crossover(rng: &mut SplitMix64, p1: &ArchConfig, p2: &ArchConfig) -> ArchConfig {
    let mut pick = |a: u32, b: u32| if rng.next_u64() & 1 == 0 { a } else { b };
    ArchConfig {
        ks: p1.ks.iter().zip(&p2.ks).map(|(&a, &b)| pick(a, b)).collect(),
        e: p1.e.iter().zip(&p2.e).map(|(&a, &b)| pick(a, b)).collect(),
        d: p1.d.iter().zip(&p2.d).map(|(&a, &b)| pick(a, b)).collect(),
        r: pick(p1.r, p2.r),
    }
}

/// Best first; ties keep their order (a stable sort), so the search is deterministic.
fn sort_by_score(population: &mut [Candidate]) {
    population.sort_by(|a, b| b.score.total_cmp(&a.score));
}

fn log_of(generation: usize, population: &[Candidate], evaluated: usize) -> GenerationLog {
    let best = population.iter().fold(&population[0], |best, c| if c.score > best.score { c } else { best }).clone();
    GenerationLog {
        generation,
        best,
        population_mean: population.iter().map(|c| c.score).sum::<f64>() / population.len() as f64,
        evaluated,
    }
}

/// Runs the search. `latency` predicts an architecture's latency in ms; `on_generation` is
/// called after the initial population and after each generation.
pub fn evolve(
    config: &EvolutionConfig,
    oracle: &mut dyn AccuracyOracle,
    latency: &dyn Fn(&ArchConfig) -> Result<f64>,
    on_generation: &mut dyn FnMut(&GenerationLog),
) -> Result<EvolutionResult> {
    config.check()?;
    let mut ev = Evaluator {
        oracle,
        latency,
        gap_lambda: config.gap_lambda,
        latencies: HashMap::new(),
        candidates: HashMap::new(),
        evaluated: Vec::new(),
    };
    // The smallest network of each resolution: if none fits, no search can.
    let smallest = config
        .resolutions
        .iter()
        .map(|&r| ev.latency(&ArchConfig::min(r)))
        .collect::<Result<Vec<f64>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    if smallest > config.latency_budget_ms {
        return Err(NasError::Arch(format!(
            "the latency budget {} ms is below the smallest network's predicted latency {smallest:.3} ms",
            config.latency_budget_ms
        )));
    }
    let mut history: Vec<GenerationLog> = Vec::new();
    let mut best: Option<Candidate> = None;
    for run in 0..config.restarts.max(1) {
        let b = match evolve_once(&mut ev, config, config.seed.wrapping_add(run as u64), history.len(), &mut |g| {
            // The logs count generations across restarts, and their best is the best so far.
            let mut g = g.clone();
            if let Some(b) = best.as_ref().filter(|b| b.score > g.best.score) {
                g.best = b.clone();
            }
            on_generation(&g);
            history.push(g);
        }) {
            Ok(b) => b,
            // A restart that cannot draw its population within a tight budget (a random
            // architecture fits rarely) ends the restarts; the runs before it stand.
            Err(_) if best.is_some() => break,
            Err(e) => return Err(e),
        };
        if best.as_ref().is_none_or(|x| b.score > x.score) {
            best = Some(b);
        }
    }
    Ok(EvolutionResult { best: best.expect("at least one run"), history, evaluated: ev.evaluated })
}

/// One run of the evolution from `seed`; its generation logs are numbered from `first`.
fn evolve_once(
    ev: &mut Evaluator,
    config: &EvolutionConfig,
    seed: u64,
    first: usize,
    on_generation: &mut dyn FnMut(&GenerationLog),
) -> Result<Candidate> {
    let mut rng = SplitMix64::new(seed);
    let n = config.population;
    let parents_n = ((config.parent_ratio * n as f64).round() as usize).clamp(1, n);
    let mutations_n = ((config.mutation_ratio * n as f64).round() as usize).min(n);
    let mut population = initial_population(ev, config, &mut rng, n)?;
    on_generation(&log_of(first, &population, ev.evaluated.len()));
    for generation in 1..=config.generations {
        sort_by_score(&mut population);
        population.truncate(parents_n);
        let parents: Vec<ArchConfig> = population.iter().map(|c| c.arch.clone()).collect();
        for i in 0..n {
            let (arch, l) = if i < mutations_n {
                let p = parents[rng.below(parents_n)].clone();
                within_budget(ev, config, "mutated child", &mut || mutate(&mut rng, &p, config))?
            } else {
                let p1 = parents[rng.below(parents_n)].clone();
                let p2 = parents[rng.below(parents_n)].clone();
                within_budget(ev, config, "crossover child", &mut || crossover(&mut rng, &p1, &p2))?
            };
            population.push(ev.evaluate(&arch, l)?);
        }
        on_generation(&log_of(first + generation, &population, ev.evaluated.len()));
    }
    sort_by_score(&mut population);
    Ok(population[0].clone())
}

/// Which points are on the Pareto front of (latency, accuracy): no other point is at most as
/// slow and at least as accurate, and strictly better in one (identical points are both on it).
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Fastest first; at equal latency, most accurate first.
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(points[b].1.total_cmp(&points[a].1)));
    let mut front = vec![false; points.len()];
    let mut best: Option<(f64, f64)> = None; // (accuracy, latency of the first to reach it)
    for i in order {
        let (lat, acc) = points[i];
        front[i] = match best {
            None => true,
            Some((b, _)) if acc > b => true,
            Some((b, blat)) if acc == b => blat == lat,
            Some(_) => false,
        };
        if best.is_none_or(|(b, _)| acc > b) {
            best = Some((acc, lat));
        }
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::PREDICTOR_RESOLUTIONS;

    /// A synthetic oracle: bigger networks are more accurate, with diminishing returns and a
    /// resolution term; it counts its calls.
    struct Synthetic {
        calls: usize,
    }

    fn size(a: &ArchConfig) -> f64 {
        (0..BLOCKS).filter(|&i| a.is_active(i)).map(|i| (a.ks[i] * a.ks[i] + 4 * a.e[i]) as f64).sum::<f64>()
    }

    impl AccuracyOracle for Synthetic {
        fn evaluate(&mut self, a: &ArchConfig) -> Result<Accuracy> {
            self.calls += 1;
            // Kernels help accuracy more than their cost below; expand ratios less.
            let k: f64 = (0..BLOCKS).filter(|&i| a.is_active(i)).map(|i| a.ks[i] as f64).sum();
            let e: f64 = (0..BLOCKS).filter(|&i| a.is_active(i)).map(|i| a.e[i] as f64).sum();
            let val = 0.5 + 0.3 * (1.0 - (-(k * 0.02 + e * 0.005)).exp()) + a.r as f64 * 1e-4;
            Ok(Accuracy { val: val.min(1.0), train: None })
        }
    }

    /// A synthetic latency: grows with kernel area, expand ratio and resolution.
    fn latency(a: &ArchConfig) -> Result<f64> {
        Ok(size(a) * (a.r as f64 / 224.0).powi(2) * 0.02)
    }

    fn config(budget: f64, seed: u64) -> EvolutionConfig {
        let mut c = EvolutionConfig::ofa(budget, PREDICTOR_RESOLUTIONS.to_vec(), seed);
        c.population = 30;
        c.generations = 25;
        c
    }

    #[test]
    fn deterministic_with_a_seed() {
        let run = |seed| {
            let mut o = Synthetic { calls: 0 };
            let mut gens = Vec::new();
            let r = evolve(&config(8.0, seed), &mut o, &latency, &mut |g| gens.push((g.generation, g.best.score))).unwrap();
            (r.best, r.evaluated.len(), gens, o.calls)
        };
        let (a, b) = (run(3), run(3));
        assert_eq!(a, b);
        assert_eq!(a.2.len(), 26);
        // Each distinct architecture is evaluated once.
        assert_eq!(a.1, a.3);
        let c = run(4);
        assert_ne!(a.0.arch, c.0.arch);
    }

    #[test]
    fn a_budget_few_random_networks_meet_starts_from_shrunk_draws() {
        // Uniform draws almost never fit 3 ms (the smallest network is 2.1 ms at r160).
        let mut c = config(3.0, 2);
        c.max_tries = 200;
        let mut o = Synthetic { calls: 0 };
        let r = evolve(&c, &mut o, &latency, &mut |_| {}).unwrap();
        assert!(r.evaluated.iter().all(|x| x.latency_ms <= 3.0));
        // The initial population is varied, not the smallest network over and over.
        let first: std::collections::HashSet<String> = r.evaluated.iter().take(c.population).map(|x| x.arch.to_compact()).collect();
        assert_eq!(first.len(), c.population);
        let smallest = o.evaluate(&ArchConfig::min(160)).unwrap().val;
        assert!(r.best.score > smallest, "{} vs the smallest network's {smallest}", r.best.score);
        // Below the smallest network there is nothing to shrink to: a clear error.
        let e = evolve(&config(1.0, 2), &mut Synthetic { calls: 0 }, &latency, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("below the smallest network"), "{e}");
    }

    #[test]
    fn respects_the_budget_and_improves_over_random() {
        let budget = 8.0;
        let mut o = Synthetic { calls: 0 };
        let r = evolve(&config(budget, 1), &mut o, &latency, &mut |_| {}).unwrap();
        assert!(r.evaluated.iter().all(|c| c.latency_ms <= budget));
        assert!(r.best.latency_ms <= budget);
        assert!((r.best.latency_ms - latency(&r.best.arch).unwrap()).abs() < 1e-12);
        // The best never gets worse from one generation to the next.
        for w in r.history.windows(2) {
            assert!(w[1].best.score >= w[0].best.score);
        }
        // Better than the best of as many random architectures within the budget.
        let mut rng = SplitMix64::new(99);
        let mut o2 = Synthetic { calls: 0 };
        let mut best_random = 0.0f64;
        let mut drawn = 0;
        while drawn < r.evaluated.len() {
            let a = ArchConfig::sample(&mut rng, &PREDICTOR_RESOLUTIONS);
            if latency(&a).unwrap() <= budget {
                drawn += 1;
                best_random = best_random.max(o2.evaluate(&a).unwrap().val);
            }
        }
        assert!(r.best.score > best_random, "evolution {} vs random {best_random}", r.best.score);
        assert!(r.history.last().unwrap().population_mean > r.history[0].population_mean);
    }

    /// Restarts run the seeds seed, seed + 1, ... and keep the best of them: the result is
    /// the best of the single runs, the logs continue across runs with the best so far, and
    /// the oracle is asked once per architecture over all runs.
    #[test]
    fn restarts_keep_the_best_run() {
        let budget = 8.0;
        let single = |seed| evolve(&config(budget, seed), &mut Synthetic { calls: 0 }, &latency, &mut |_| {}).unwrap().best;
        let runs = [single(5), single(6), single(7)];
        let mut c = config(budget, 5);
        c.restarts = 3;
        let mut o = Synthetic { calls: 0 };
        let mut gens = Vec::new();
        let r = evolve(&c, &mut o, &latency, &mut |g| gens.push((g.generation, g.best.score))).unwrap();
        let best = runs.iter().map(|b| b.score).fold(f64::MIN, f64::max);
        assert_eq!(r.best.score, best);
        assert!(runs.iter().any(|b| b.arch == r.best.arch));
        assert_eq!(gens.len(), c.steps());
        assert_eq!(gens.iter().map(|g| g.0).collect::<Vec<_>>(), (0..c.steps()).collect::<Vec<_>>());
        assert!(gens.windows(2).all(|w| w[1].1 >= w[0].1), "the best so far never drops at a restart");
        assert_eq!(o.calls, r.evaluated.len());
    }

    #[test]
    fn an_impossible_budget_is_a_clear_error() {
        let mut o = Synthetic { calls: 0 };
        let e = evolve(&config(0.01, 1), &mut o, &latency, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("below the smallest network"), "{e}");
        assert_eq!(o.calls, 0);
    }

    #[test]
    fn the_gap_term_lowers_the_score() {
        struct Gappy;
        impl AccuracyOracle for Gappy {
            fn evaluate(&mut self, _: &ArchConfig) -> Result<Accuracy> {
                Ok(Accuracy { val: 0.7, train: Some(0.9) })
            }
        }
        let mut c = config(8.0, 1);
        c.generations = 1;
        c.gap_lambda = 0.5;
        let r = evolve(&c, &mut Gappy, &latency, &mut |_| {}).unwrap();
        assert!((r.best.score - 0.6).abs() < 1e-12);
    }

    #[test]
    fn pareto_front_of_points() {
        let pts = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (1.5, 0.4), (4.0, 0.9), (4.0, 0.9)];
        assert_eq!(pareto_front(&pts), vec![true, true, false, false, false, true, true]);
        assert!(pareto_front(&[]).is_empty());
    }
}

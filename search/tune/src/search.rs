//! Evolutionary search over one task's schedule space, guided by the cost model.
//!
//! Each round starts from a population of the best measured candidates and random valid
//! points, breeds children by mutation (one or two knobs changed) and crossover (knobs taken
//! from either parent), keeps the fittest by the model's prediction (measured candidates by
//! their measurement), and proposes the best unmeasured candidates, plus a fraction epsilon
//! of random unmeasured ones so that the model also learns about the parts of the space it
//! rates badly. Candidates are identified by their trace: different points that make the same
//! trace are one candidate, and no trace is measured twice.

use std::collections::{HashMap, HashSet};

use ir::loops::Func;
use passes::schedule::{Point, Space, Trace};

use crate::features::{features, Caches};
use crate::model::Gbdt;
use crate::rng::Rng;

/// A valid point with its trace and features.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub point: Point,
    pub trace: Trace,
    /// The trace as JSON: the candidate's identity.
    pub json: String,
    pub features: Vec<f64>,
}

pub struct TaskSearch {
    pub space: Space,
    func: Func,
    vector_width: usize,
    caches: Caches,
    /// Every point evaluated: the index of its candidate, or None when invalid.
    seen: HashMap<Point, Option<usize>>,
    candidates: Vec<Candidate>,
    /// Measured traces: their score (log latency relative to the task's baseline), or None
    /// when the measurement failed.
    measured: HashMap<String, Option<f64>>,
}

const POPULATION: usize = 48;
const GENERATIONS: usize = 3;
const CHILDREN: usize = 96;

impl TaskSearch {
    pub fn new(func: &Func, constants: &[bool], vector_width: usize, caches: Caches) -> TaskSearch {
        TaskSearch {
            space: Space::new(func, vector_width, constants),
            func: func.clone(),
            vector_width,
            caches,
            seen: HashMap::new(),
            candidates: Vec::new(),
            measured: HashMap::new(),
        }
    }

    /// The features of a scheduled program of this task.
    pub fn features_of(&self, scheduled: &Func) -> Vec<f64> {
        features(scheduled, self.caches, self.vector_width)
    }

    pub fn mark_measured(&mut self, json: &str, score: Option<f64>) {
        self.measured.insert(json.to_string(), score);
    }

    pub fn is_measured(&self, json: &str) -> bool {
        self.measured.contains_key(json)
    }

    pub fn measured_count(&self) -> usize {
        self.measured.len()
    }

    fn evaluate(&mut self, point: &Point) -> Option<usize> {
        if let Some(&i) = self.seen.get(point) {
            return i;
        }
        let result = self.space.schedule(&self.func, point).map(|(trace, scheduled)| {
            let json = trace.to_json();
            let features = self.features_of(&scheduled);
            self.candidates.push(Candidate { point: point.clone(), trace, json, features });
            self.candidates.len() - 1
        });
        self.seen.insert(point.clone(), result);
        result
    }

    fn random_point(&self, rng: &mut Rng) -> Point {
        self.space.knobs.iter().map(|k| rng.below(k.choices.len())).collect()
    }

    /// A random valid candidate, if one is found in a bounded number of tries.
    fn random_valid(&mut self, rng: &mut Rng, tries: usize) -> Option<usize> {
        (0..tries).find_map(|_| {
            let p = self.random_point(rng);
            self.evaluate(&p)
        })
    }

    /// Lower is better: the measurement when there is one (failures last), else the model's
    /// prediction, else a random rank.
    fn score(&self, i: usize, model: Option<&Gbdt>, rng: &mut Rng) -> f64 {
        let c = &self.candidates[i];
        match self.measured.get(&c.json) {
            Some(Some(s)) => *s,
            Some(None) => f64::INFINITY,
            None => match model {
                Some(m) => m.predict(&c.features),
                None => rng.unit(),
            },
        }
    }

    /// Up to `batch` unmeasured candidates to measure next; fewer (or none) when the space
    /// seems exhausted.
    pub fn propose(&mut self, model: Option<&Gbdt>, rng: &mut Rng, batch: usize, epsilon: f64) -> Vec<Candidate> {
        // The initial population: the best measured candidates, then random valid points.
        let mut scored: Vec<(f64, usize)> = Vec::new();
        let mut known: Vec<usize> = (0..self.candidates.len()).filter(|&i| self.measured.contains_key(&self.candidates[i].json)).collect();
        known.sort_by(|&a, &b| self.score(a, None, rng).total_cmp(&self.score(b, None, rng)));
        known.dedup_by(|a, b| self.candidates[*a].json == self.candidates[*b].json);
        let mut population: Vec<usize> = known.into_iter().take(POPULATION / 3).collect();
        // The point nearest the default schedule: exploring around it beats starting blind.
        let default = self.space.default_point();
        if let Some(i) = self.evaluate(&default) {
            population.push(i);
        }
        let mut tries = 0;
        while population.len() < POPULATION && tries < POPULATION * 20 {
            tries += 1;
            if let Some(i) = self.random_valid(rng, 1) {
                population.push(i);
            }
        }
        if population.is_empty() {
            return Vec::new();
        }
        for _ in 0..GENERATIONS {
            scored.clear();
            for &i in &population {
                scored.push((self.score(i, model, rng), i));
            }
            let mut children = Vec::new();
            for _ in 0..CHILDREN {
                let a = self.tournament(&scored, rng);
                let mut child = self.candidates[a].point.clone();
                if rng.chance(0.3) {
                    let b = self.tournament(&scored, rng);
                    for (k, v) in child.iter_mut().enumerate() {
                        if rng.chance(0.5) {
                            *v = self.candidates[b].point[k];
                        }
                    }
                }
                for _ in 0..1 + rng.below(2) {
                    if self.space.knobs.is_empty() {
                        break;
                    }
                    let k = rng.below(self.space.knobs.len());
                    child[k] = rng.below(self.space.knobs[k].choices.len());
                }
                if let Some(i) = self.evaluate(&child) {
                    children.push(i);
                }
            }
            for i in children {
                scored.push((self.score(i, model, rng), i));
            }
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut names = HashSet::new();
            population = scored.iter().filter(|s| names.insert(self.candidates[s.1].json.clone())).take(POPULATION).map(|s| s.1).collect();
        }
        // Every unmeasured candidate seen so far, best predicted first.
        let mut pool: Vec<(f64, usize)> = Vec::new();
        let mut names = HashSet::new();
        for i in 0..self.candidates.len() {
            let json = &self.candidates[i].json;
            if !self.measured.contains_key(json) && names.insert(json.clone()) {
                pool.push((self.score(i, model, rng), i));
            }
        }
        pool.sort_by(|a, b| a.0.total_cmp(&b.0));
        let explore = if batch >= 2 { ((batch as f64 * epsilon).round() as usize).max(usize::from(epsilon > 0.0)) } else { 0 };
        let mut picked: Vec<usize> = pool.iter().take(batch - explore.min(batch)).map(|p| p.1).collect();
        let mut names: HashSet<String> = picked.iter().map(|&i| self.candidates[i].json.clone()).collect();
        let mut tries = 0;
        while picked.len() < batch && tries < 200 {
            tries += 1;
            let Some(i) = self.random_valid(rng, 1) else { continue };
            let json = self.candidates[i].json.clone();
            if !self.measured.contains_key(&json) && names.insert(json) {
                picked.push(i);
            }
        }
        // Fill from the pool when random points ran dry.
        for &(_, i) in &pool {
            if picked.len() >= batch {
                break;
            }
            if names.insert(self.candidates[i].json.clone()) {
                picked.push(i);
            }
        }
        picked.into_iter().map(|i| self.candidates[i].clone()).collect()
    }

    fn tournament(&self, scored: &[(f64, usize)], rng: &mut Rng) -> usize {
        let a = scored[rng.below(scored.len())];
        let b = scored[rng.below(scored.len())];
        if a.0 <= b.0 {
            a.1
        } else {
            b.1
        }
    }
}

//! DAG-aware extraction: the cost of choosing a node is the sum of the costs of the distinct
//! classes it needs, each counted once however many times it is read. egg's tree extraction
//! counts a shared value once per reader, which skews choices that depend on sharing: a
//! layout change that serves a residual add and the next convolution, a fused group whose
//! input other programs read too.
//!
//! First the greedy fixpoint of extraction-gym's `greedy-dag`: every class keeps its best node
//! with the set of classes (and their node costs) that node needs; a node's set is the union
//! of its children's sets plus itself. Each class decides alone, so two readers of one value
//! may pick different forms of it (the value in two layouts), computing its producers twice;
//! a local search then revisits each class's choice against the cost of the whole extracted
//! graph (every class reachable from the outputs, once), keeping strict improvements.
//! Deterministic: classes and nodes in id order.

use std::collections::{BTreeMap, HashMap};

use egg::{Id, Language};

use super::{node_cost, GEGraph, GNode};

pub struct DagExtractor {
    best: HashMap<Id, GNode>,
}

struct Choice {
    node: GNode,
    /// Every class the choice needs, with the cost of its chosen node, itself included.
    needs: BTreeMap<Id, u64>,
    total: u64,
}

/// Rounds of the fixpoint at most: each round can only lower costs, and a few suffice.
const MAX_ROUNDS: usize = 32;

impl DagExtractor {
    pub fn new(egraph: &GEGraph, roots: &[Id]) -> DagExtractor {
        let mut classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        classes.sort();
        let mut chosen: HashMap<Id, Choice> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for &class in &classes {
                for node in &egraph[class].nodes {
                    let Some(candidate) = Self::evaluate(egraph, class, node, &chosen) else { continue };
                    let better = chosen.get(&class).is_none_or(|c| candidate.total < c.total);
                    if better {
                        chosen.insert(class, candidate);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut best: HashMap<Id, GNode> = chosen.into_iter().map(|(k, c)| (k, c.node)).collect();
        refine(egraph, roots, &classes, &mut best);
        DagExtractor { best }
    }

    fn evaluate(egraph: &GEGraph, class: Id, node: &GNode, chosen: &HashMap<Id, Choice>) -> Option<Choice> {
        let mut needs: BTreeMap<Id, u64> = BTreeMap::new();
        for &child in node.children() {
            let child = egraph.find(child);
            let c = chosen.get(&child)?;
            // A node that needs its own class would be a cycle.
            if child == class || c.needs.contains_key(&class) {
                return None;
            }
            needs.extend(c.needs.iter().map(|(&k, &v)| (k, v)));
        }
        needs.insert(class, node_cost(egraph, node));
        let total = needs.values().fold(0u64, |a, &b| a.saturating_add(b));
        Some(Choice { node: node.clone(), needs, total })
    }

    /// The chosen node of a class (every class reachable from a graph value has one: its
    /// original node needs only classes that have one).
    pub fn find_best_node(&self, id: Id) -> &GNode {
        &self.best[&id]
    }
}

/// Sweeps of the local search at most.
const MAX_SWEEPS: usize = 4;

/// Local search on the whole graph's cost: for each class, the node that makes the extracted
/// graph cheapest, the other choices fixed.
fn refine(egraph: &GEGraph, roots: &[Id], classes: &[Id], best: &mut HashMap<Id, GNode>) {
    let mut current = graph_cost(egraph, roots, best);
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        for &class in classes {
            let Some(chosen) = best.get(&class).cloned() else { continue };
            for node in &egraph[class].nodes {
                if *node == chosen || node.children().iter().any(|c| !best.contains_key(&egraph.find(*c))) {
                    continue;
                }
                let previous = best.insert(class, node.clone());
                let cost = graph_cost(egraph, roots, best);
                if cost < current {
                    current = cost;
                    improved = true;
                    break;
                }
                if let Some(p) = previous {
                    best.insert(class, p);
                }
            }
        }
        if !improved {
            break;
        }
    }
}

/// The cost of the graph the choices extract: each reachable class's chosen node once; a
/// choice that makes a cycle costs everything.
fn graph_cost(egraph: &GEGraph, roots: &[Id], best: &HashMap<Id, GNode>) -> u64 {
    // 0: unvisited, 1: on the path, 2: done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut total = 0u64;
    fn visit(egraph: &GEGraph, id: Id, best: &HashMap<Id, GNode>, state: &mut HashMap<Id, u8>, total: &mut u64) -> bool {
        let id = egraph.find(id);
        match state.get(&id) {
            Some(2) => return true,
            Some(_) => return false,
            None => {}
        }
        state.insert(id, 1);
        let Some(node) = best.get(&id) else { return false };
        for &c in node.children() {
            if !visit(egraph, c, best, state, total) {
                return false;
            }
        }
        *total = total.saturating_add(node_cost(egraph, node));
        state.insert(id, 2);
        true
    }
    for &r in roots {
        if !visit(egraph, r, best, &mut state, &mut total) {
            return u64::MAX;
        }
    }
    total
}

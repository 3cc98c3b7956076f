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
//! graph (every class reachable from the outputs, once), keeping strict improvements. Last,
//! each layout change the result keeps is tried away: its value banned, all its readers
//! choose again together (a move of several classes that one-class moves cannot make).
//! Deterministic: classes and nodes in id order.

use std::collections::{BTreeMap, HashMap, HashSet};

use egg::{Id, Language};

use ir::Op;

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
        let mut banned: HashSet<Id> = HashSet::new();
        let mut best = extract(egraph, roots, &classes, &banned);
        let mut cost = graph_cost(egraph, roots, &best);
        // A layout change is where the one-class moves of the local search get stuck: its
        // readers can each read the other layout only together (a pool and a multiply that
        // both read the value, and the convolution after the multiply). So the value of each
        // layout change the extraction keeps is banned in turn (no node may read it) and the
        // extraction run again, which reroutes all its readers at once; the ban stays when
        // the graph is cheaper.
        let mut tried: HashSet<Id> = HashSet::new();
        while tried.len() < MAX_BANS {
            let Some(change) =
                reachable(egraph, roots, &best).into_iter().find(|class| is_layout_change(&best[class]) && !tried.contains(class))
            else {
                break;
            };
            tried.insert(change);
            banned.insert(change);
            let candidate = extract(egraph, roots, &classes, &banned);
            let candidate_cost = graph_cost(egraph, roots, &candidate);
            if candidate_cost < cost {
                (best, cost) = (candidate, candidate_cost);
            } else {
                banned.remove(&change);
            }
        }
        DagExtractor { best }
    }

    /// The greedy fixpoint over the classes, choosing no node that reads a `banned` class.
    fn greedy(egraph: &GEGraph, classes: &[Id], banned: &HashSet<Id>) -> HashMap<Id, GNode> {
        let mut chosen: HashMap<Id, Choice> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for &class in classes {
                for node in &egraph[class].nodes {
                    if reads_banned(egraph, node, banned) {
                        continue;
                    }
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
        chosen.into_iter().map(|(k, c)| (k, c.node)).collect()
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

/// Layout changes banned in turn at most.
const MAX_BANS: usize = 16;

fn is_layout_change(node: &GNode) -> bool {
    matches!(node, GNode::Op(k, _) if matches!(k.op, Op::ToNchwc { .. } | Op::FromNchwc { .. }))
}

fn reads_banned(egraph: &GEGraph, node: &GNode, banned: &HashSet<Id>) -> bool {
    node.children().iter().any(|&c| banned.contains(&egraph.find(c)))
}

/// The greedy choices refined by the local search, no node reading a `banned` class.
fn extract(egraph: &GEGraph, roots: &[Id], classes: &[Id], banned: &HashSet<Id>) -> HashMap<Id, GNode> {
    let mut best = DagExtractor::greedy(egraph, classes, banned);
    refine(egraph, roots, classes, banned, &mut best);
    best
}

/// The classes the choices reach from the roots, in the order first met (depth first).
fn reachable(egraph: &GEGraph, roots: &[Id], best: &HashMap<Id, GNode>) -> Vec<Id> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut order = Vec::new();
    let mut stack: Vec<Id> = roots.iter().rev().map(|&r| egraph.find(r)).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        order.push(id);
        if let Some(node) = best.get(&id) {
            stack.extend(node.children().iter().rev().map(|&c| egraph.find(c)));
        }
    }
    order
}

/// Sweeps of the local search at most.
const MAX_SWEEPS: usize = 4;

/// Local search on the whole graph's cost: for each class, the node that makes the extracted
/// graph cheapest, the other choices fixed.
fn refine(egraph: &GEGraph, roots: &[Id], classes: &[Id], banned: &HashSet<Id>, best: &mut HashMap<Id, GNode>) {
    let mut current = graph_cost(egraph, roots, best);
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        for &class in classes {
            let Some(chosen) = best.get(&class).cloned() else { continue };
            for node in &egraph[class].nodes {
                if *node == chosen
                    || reads_banned(egraph, node, banned)
                    || node.children().iter().any(|c| !best.contains_key(&egraph.find(*c)))
                {
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

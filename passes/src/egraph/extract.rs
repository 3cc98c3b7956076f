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
//!
//! The work runs on dense tables built once (each node's cost and canonical children, classes
//! by index), and skips what cannot change a result: the fixpoint re-evaluates a node only
//! when one of its children's choices changed since, and the local search tries only classes
//! the extracted graph reaches (another class's choice does not change its cost).

use std::collections::HashMap;

use egg::{Id, Language};

use ir::Op;

use super::{node_cost, GEGraph, GNode};

pub struct DagExtractor {
    best: HashMap<Id, GNode>,
}

/// No node chosen.
const NONE: u32 = u32::MAX;

/// The e-graph as dense tables, indexed by class id.
struct Tables<'a> {
    egraph: &'a GEGraph,
    /// Canonical classes in id order.
    classes: Vec<usize>,
    /// Per class, per node: its cost and its children's canonical classes.
    costs: Vec<Vec<u64>>,
    kids: Vec<Vec<Vec<usize>>>,
    roots: Vec<usize>,
}

impl<'a> Tables<'a> {
    fn new(egraph: &'a GEGraph, roots: &[Id]) -> Tables<'a> {
        let mut classes: Vec<usize> = egraph.classes().map(|c| usize::from(c.id)).collect();
        classes.sort_unstable();
        let n = classes.last().map_or(0, |&c| c + 1);
        let mut costs = vec![Vec::new(); n];
        let mut kids = vec![Vec::new(); n];
        for &c in &classes {
            let nodes = &egraph[Id::from(c)].nodes;
            costs[c] = nodes.iter().map(|node| node_cost(egraph, node)).collect();
            kids[c] = nodes.iter().map(|node| node.children().iter().map(|&k| usize::from(egraph.find(k))).collect()).collect();
        }
        let roots = roots.iter().map(|&r| usize::from(egraph.find(r))).collect();
        Tables { egraph, classes, costs, kids, roots }
    }

    fn len(&self) -> usize {
        self.costs.len()
    }

    fn reads_banned(&self, class: usize, node: usize, banned: &[bool]) -> bool {
        self.kids[class][node].iter().any(|&k| banned[k])
    }

    fn node(&self, class: usize, node: u32) -> &GNode {
        &self.egraph[Id::from(class)].nodes[node as usize]
    }
}

struct Choice {
    node: u32,
    /// Every class the choice needs, with the cost of its chosen node, itself included,
    /// sorted by class.
    needs: Vec<(usize, u64)>,
    total: u64,
}

/// Rounds of the fixpoint at most: each round can only lower costs, and a few suffice.
const MAX_ROUNDS: usize = 32;

impl DagExtractor {
    pub fn new(egraph: &GEGraph, roots: &[Id]) -> DagExtractor {
        let t = Tables::new(egraph, roots);
        let mut banned = vec![false; t.len()];
        let mut best = extract(&t, &banned);
        let mut cost = graph_cost(&t, &best, &mut Vec::new());
        // A layout change is where the one-class moves of the local search get stuck: its
        // readers can each read the other layout only together (a pool and a multiply that
        // both read the value, and the convolution after the multiply). So the value of each
        // layout change the extraction keeps is banned in turn (no node may read it) and the
        // extraction run again, which reroutes all its readers at once; the ban stays when
        // the graph is cheaper.
        let mut tried = vec![false; t.len()];
        let mut tries = 0;
        while tries < MAX_BANS {
            let Some(change) = reachable(&t, &best).into_iter().find(|&c| !tried[c] && is_layout_change(t.node(c, best[c]))) else {
                break;
            };
            tried[change] = true;
            tries += 1;
            banned[change] = true;
            let candidate = extract(&t, &banned);
            let candidate_cost = graph_cost(&t, &candidate, &mut Vec::new());
            if candidate_cost < cost {
                (best, cost) = (candidate, candidate_cost);
            } else {
                banned[change] = false;
            }
        }
        let best = t.classes.iter().filter(|&&c| best[c] != NONE).map(|&c| (Id::from(c), t.node(c, best[c]).clone())).collect();
        DagExtractor { best }
    }

    /// The chosen node of a class (every class reachable from a graph value has one: its
    /// original node needs only classes that have one).
    pub fn find_best_node(&self, id: Id) -> &GNode {
        &self.best[&id]
    }
}

/// The greedy fixpoint over the classes, choosing no node that reads a `banned` class.
fn greedy(t: &Tables, banned: &[bool]) -> Vec<u32> {
    let mut chosen: Vec<Option<Choice>> = (0..t.len()).map(|_| None).collect();
    // When each class's choice last changed, and when each node was last evaluated (a node
    // whose children's choices have not changed since evaluates to the same candidate, which
    // cannot beat its class's choice: that choice has only got cheaper since).
    let mut stamp = 0u64;
    let mut changed_at = vec![0u64; t.len()];
    let mut evaluated: Vec<Vec<Option<u64>>> = t.kids.iter().map(|nodes| vec![None; nodes.len()]).collect();
    for _ in 0..MAX_ROUNDS {
        let mut changed = false;
        for &class in &t.classes {
            for node in 0..t.kids[class].len() {
                if t.reads_banned(class, node, banned) {
                    continue;
                }
                if let Some(at) = evaluated[class][node] {
                    if t.kids[class][node].iter().all(|&k| changed_at[k] <= at) {
                        continue;
                    }
                }
                evaluated[class][node] = Some(stamp);
                let Some(candidate) = evaluate(t, class, node, &chosen) else { continue };
                let better = chosen[class].as_ref().is_none_or(|c| candidate.total < c.total);
                if better {
                    chosen[class] = Some(candidate);
                    stamp += 1;
                    changed_at[class] = stamp;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    chosen.into_iter().map(|c| c.map_or(NONE, |c| c.node)).collect()
}

fn evaluate(t: &Tables, class: usize, node: usize, chosen: &[Option<Choice>]) -> Option<Choice> {
    let mut needs: Vec<(usize, u64)> = Vec::new();
    let mut merged: Vec<(usize, u64)> = Vec::new();
    for &child in &t.kids[class][node] {
        let c = chosen[child].as_ref()?;
        // A node that needs its own class would be a cycle.
        if child == class || c.needs.binary_search_by_key(&class, |&(k, _)| k).is_ok() {
            return None;
        }
        // The union, a later child's cost of a class replacing an earlier one's.
        merged.clear();
        let (mut i, mut j) = (0, 0);
        while i < needs.len() && j < c.needs.len() {
            match needs[i].0.cmp(&c.needs[j].0) {
                std::cmp::Ordering::Less => {
                    merged.push(needs[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    merged.push(c.needs[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    merged.push(c.needs[j]);
                    i += 1;
                    j += 1;
                }
            }
        }
        merged.extend_from_slice(&needs[i..]);
        merged.extend_from_slice(&c.needs[j..]);
        std::mem::swap(&mut needs, &mut merged);
    }
    let at = needs.partition_point(|&(k, _)| k < class);
    needs.insert(at, (class, t.costs[class][node]));
    let total = needs.iter().fold(0u64, |a, &(_, b)| a.saturating_add(b));
    Some(Choice { node: node as u32, needs, total })
}

/// Layout changes banned in turn at most.
const MAX_BANS: usize = 16;

fn is_layout_change(node: &GNode) -> bool {
    matches!(node, GNode::Op(k, _) if matches!(k.op, Op::ToNchwc { .. } | Op::FromNchwc { .. }))
}

/// The greedy choices refined by the local search, no node reading a `banned` class.
fn extract(t: &Tables, banned: &[bool]) -> Vec<u32> {
    let mut best = greedy(t, banned);
    refine(t, banned, &mut best);
    best
}

/// The classes the choices reach from the roots, in the order first met (depth first).
fn reachable(t: &Tables, best: &[u32]) -> Vec<usize> {
    let mut seen = vec![false; t.len()];
    let mut order = Vec::new();
    let mut stack: Vec<usize> = t.roots.iter().rev().copied().collect();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id], true) {
            continue;
        }
        order.push(id);
        if best[id] != NONE {
            stack.extend(t.kids[id][best[id] as usize].iter().rev());
        }
    }
    order
}

/// Sweeps of the local search at most.
const MAX_SWEEPS: usize = 4;

/// Local search on the whole graph's cost: for each class, the node that makes the extracted
/// graph cheapest, the other choices fixed. A class the extracted graph does not reach is
/// skipped: its choice is not part of the cost.
fn refine(t: &Tables, banned: &[bool], best: &mut [u32]) {
    let mut state = Vec::new();
    let mut current = graph_cost(t, best, &mut state);
    let mut reached = vec![false; t.len()];
    let mark = |best: &[u32], reached: &mut Vec<bool>| {
        reached.iter_mut().for_each(|r| *r = false);
        for c in reachable(t, best) {
            reached[c] = true;
        }
    };
    mark(best, &mut reached);
    for _ in 0..MAX_SWEEPS {
        let mut improved = false;
        for &class in &t.classes {
            let chosen = best[class];
            if chosen == NONE || !reached[class] {
                continue;
            }
            for node in 0..t.kids[class].len() {
                if node as u32 == chosen || t.reads_banned(class, node, banned) || t.kids[class][node].iter().any(|&k| best[k] == NONE) {
                    continue;
                }
                best[class] = node as u32;
                let cost = graph_cost(t, best, &mut state);
                if cost < current {
                    current = cost;
                    improved = true;
                    mark(best, &mut reached);
                    break;
                }
                best[class] = chosen;
            }
        }
        if !improved {
            break;
        }
    }
}

/// The cost of the graph the choices extract: each reachable class's chosen node once; a
/// choice that makes a cycle costs everything. `state` is scratch room.
fn graph_cost(t: &Tables, best: &[u32], state: &mut Vec<u8>) -> u64 {
    // 0: unvisited, 1: on the path, 2: done.
    state.clear();
    state.resize(t.len(), 0);
    let mut total = 0u64;
    // Depth first, iteratively: (class, next child to visit).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for &r in &t.roots {
        match state[r] {
            2 => continue,
            1 => return u64::MAX,
            _ => {}
        }
        if best[r] == NONE {
            return u64::MAX;
        }
        state[r] = 1;
        stack.push((r, 0));
        while let Some(&mut (id, ref mut next)) = stack.last_mut() {
            let kids = &t.kids[id][best[id] as usize];
            if let Some(&c) = kids.get(*next) {
                *next += 1;
                match state[c] {
                    2 => {}
                    1 => return u64::MAX,
                    _ => {
                        if best[c] == NONE {
                            return u64::MAX;
                        }
                        state[c] = 1;
                        stack.push((c, 0));
                    }
                }
            } else {
                total = total.saturating_add(t.costs[id][best[id] as usize]);
                state[id] = 2;
                stack.pop();
            }
        }
    }
    total
}

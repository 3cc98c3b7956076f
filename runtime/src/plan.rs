//! The static memory plan: where every value of a lowered graph lives while the model runs.
//!
//! Inputs and outputs live in the caller's buffers, weights in the object's constants, and
//! intermediates in one arena, where a buffer is reused once the values in it are dead.
//! Aliases (reshapes) share their source's storage.

use std::collections::HashMap;

use ir::{Graph, ValueDef, ValueId};
use passes::lower::Step;

/// Where a value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Input(usize),
    Output(usize),
    Weight(usize),
    Arena { offset: usize },
}

#[derive(Debug, Clone)]
pub struct MemoryPlan {
    pub locations: HashMap<ValueId, Location>,
    pub arena_bytes: usize,
    /// Outputs whose value lives elsewhere (an input, a weight, another output or an alias
    /// that could not take the output's buffer), copied after the last program.
    pub output_copies: Vec<(usize, ValueId)>,
    /// Constants in the order of their `Weight` index.
    pub weights: Vec<ValueId>,
}

pub const ALIGN: usize = 64;

pub fn bytes_of(g: &Graph, v: ValueId) -> usize {
    let t = g.ty(v);
    t.numel() * t.dtype.size_bytes()
}

pub fn plan(g: &Graph, steps: &[Step]) -> MemoryPlan {
    // Every alias points at the value whose storage it shares.
    let mut root: HashMap<ValueId, ValueId> = HashMap::new();
    let find = |root: &HashMap<ValueId, ValueId>, mut v: ValueId| {
        while let Some(&r) = root.get(&v) {
            v = r;
        }
        v
    };
    for s in steps {
        if let Step::Alias { from, to } = s {
            let r = find(&root, *from);
            root.insert(*to, r);
        }
    }
    let mut locations = HashMap::new();
    let mut weights = Vec::new();
    for (i, info) in g.values.iter().enumerate() {
        let v = ValueId(i as u32);
        match info.def {
            ValueDef::Input(pos) => {
                locations.insert(v, Location::Input(pos));
            }
            ValueDef::Const(_) => {
                locations.insert(v, Location::Weight(weights.len()));
                weights.push(v);
            }
            ValueDef::Node(_) => {}
        }
    }
    // An output computed by a program (directly or through aliases) is written straight into
    // the caller's buffer; the others are copied at the end.
    let mut output_copies = Vec::new();
    for (i, &out) in g.outputs.iter().enumerate() {
        let r = find(&root, out);
        if matches!(g.value(r).def, ValueDef::Node(_)) && !locations.contains_key(&r) {
            locations.insert(r, Location::Output(i));
        } else {
            output_copies.push((i, out));
        }
    }
    // Liveness of each storage root, in step indices.
    let mut first_def: HashMap<ValueId, usize> = HashMap::new();
    let mut pinned: Vec<ValueId> = Vec::new();
    let mut last_use: HashMap<ValueId, usize> = HashMap::new();
    for (k, s) in steps.iter().enumerate() {
        match s {
            Step::Run(p) => {
                let (out, ins) = p.args.split_last().expect("a program has an output");
                first_def.entry(find(&root, *out)).or_insert(k);
                for &v in ins {
                    last_use.insert(find(&root, v), k);
                }
            }
            // What a once-program writes must stay: its result is live from the first step
            // to the last and shares its memory with nothing.
            Step::Once(p) => {
                let out = find(&root, *p.args.last().expect("a program has an output"));
                first_def.insert(out, 0);
                pinned.push(out);
            }
            Step::Alias { from, .. } => {
                last_use.insert(find(&root, *from), k);
            }
            // The padded tensor is pinned by its border's once-program.
            Step::StageInput { .. } => {}
        }
    }
    for &(_, v) in &output_copies {
        last_use.insert(find(&root, v), steps.len());
    }
    for v in pinned {
        last_use.insert(v, usize::MAX);
    }
    // First-fit allocation in step order; a block is free again after its last use.
    let mut live: Vec<(usize, usize, usize)> = Vec::new(); // (offset, size, last use)
    let mut arena_bytes = 0;
    let mut order: Vec<(usize, ValueId)> = first_def.iter().map(|(&v, &k)| (k, v)).collect();
    order.sort();
    for (k, v) in order {
        if locations.contains_key(&v) {
            continue;
        }
        live.retain(|&(_, _, last)| last >= k);
        let size = bytes_of(g, v).max(1).next_multiple_of(ALIGN);
        live.sort();
        let mut offset = 0;
        for &(o, s, _) in &live {
            if offset + size <= o {
                break;
            }
            offset = offset.max(o + s);
        }
        let last = last_use.get(&v).copied().unwrap_or(k);
        live.push((offset, size, last.max(k)));
        arena_bytes = arena_bytes.max(offset + size);
        locations.insert(v, Location::Arena { offset });
    }
    for (to, r) in &root {
        if let Some(loc) = locations.get(r).cloned() {
            locations.entry(*to).or_insert(loc);
        }
    }
    MemoryPlan { locations, arena_bytes, output_copies, weights }
}

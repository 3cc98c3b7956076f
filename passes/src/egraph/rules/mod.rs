//! The rewrite rules, one file per topic. Laws for writing a rule: name it in kebab-case,
//! state the identity it encodes in a comment, check shapes (and constant-ness) before adding
//! anything, and give it a positive and a negative test.

pub mod algebraic;
pub mod batchnorm;
pub mod fusion;
pub mod layout;
pub mod padding;

use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};

use super::{GEGraph, GNode, GraphAnalysis};

pub type GRewrite = Rewrite<GNode, GraphAnalysis>;

/// The rules of the simplification pass (fusion has a pass of its own).
pub fn simplification() -> Vec<GRewrite> {
    let mut rules = algebraic::rules();
    rules.extend(batchnorm::rules());
    rules.extend(padding::rules());
    rules.extend(layout::rules());
    rules
}

/// A rule written as a function from an e-class to an equivalent e-class it builds (for
/// rules that look at op attributes or compute new constants, which patterns cannot).
#[derive(Clone, Copy)]
pub struct Custom {
    pub rewrite: fn(&mut GEGraph, Id) -> Option<Id>,
    /// A cheap test of whether `rewrite` may apply, run during the search.
    pub applies: fn(&GEGraph, Id) -> bool,
}

impl Searcher<GNode, GraphAnalysis> for Custom {
    fn search_eclass_with_limit(&self, egraph: &GEGraph, eclass: Id, _limit: usize) -> Option<SearchMatches<'_, GNode>> {
        (self.applies)(egraph, eclass).then(|| SearchMatches { eclass, substs: vec![Subst::with_capacity(0)], ast: None })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

impl Applier<GNode, GraphAnalysis> for Custom {
    fn apply_one(&self, egraph: &mut GEGraph, eclass: Id, _: &Subst, _: Option<&PatternAst<GNode>>, _: Symbol) -> Vec<Id> {
        match (self.rewrite)(egraph, eclass) {
            Some(new) if egraph.union(eclass, new) => vec![eclass],
            _ => vec![],
        }
    }
}

/// A custom rule as a rewrite.
pub fn custom(name: &str, rule: Custom) -> GRewrite {
    Rewrite::new(name, rule, rule).expect("custom rules bind no variables")
}

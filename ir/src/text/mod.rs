//! The text format of the graph IR: a `logos` lexer, a recursive-descent parser and a printer.
//!
//! ```text
//! graph "tiny" {
//!   input %0 "x": f32[1,3,8,8]
//!   const %1 "w": f32[4,3,3,3] = external
//!   const %2: f32[4] = [0.1, 0.2, 0.3, 0.4]
//!   %3: f32[1,4,8,8] = conv2d(%0, %1, %2) {strides=[1,1], pads=[1,1,1,1], dilations=[1,1], groups=1} at "conv"
//!   %4 "y": f32[1,4,8,8] = relu(%3)
//!   output %4
//! }
//! ```
//!
//! Small constants are printed inline, large ones as `external` (their data lives in the
//! weight store). Whatever the printer writes, the parser reads back to a graph that prints
//! the same text.

pub(crate) mod cursor;
pub(crate) mod lexer;
mod parser;
mod printer;

pub use parser::parse_graph;
pub(crate) use printer::print_attr;
pub(crate) use printer::print_f32 as printer_f32;
pub use printer::{print_graph, print_graph_with, PrintOptions};

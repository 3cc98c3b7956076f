//! The loop IR: a tensor program as loop nests over buffers.
//!
//! A [`Func`] declares its buffers (parameters it is called with, in order, and temporaries
//! it owns) and a body of statements: loops with a kind, stores and guards. Loops run from 0
//! to a static extent; index expressions are integer arithmetic over loop variables (affine
//! for everything the lowering emits; gathers may load an index). Reductions are
//! accumulations: a store whose value reads the same element. The schedule primitives of
//! `passes` rewrite loop nests; backends generate code from them.
//!
//! ```text
//! func "relu_0" {
//!   param %x: f32[1024]
//!   param %y: f32[1024]
//!   for i_o in 0..64 parallel {
//!     for i_i in 0..16 vectorized {
//!       %y[i_o * 16 + i_i] = max(%x[i_o * 16 + i_i], 0.0)
//!     }
//!   }
//! }
//! ```

pub mod index;
mod parse;
mod print;
pub mod simd;
pub mod verify;
pub mod visit;

use crate::types::DType;

pub use parse::parse_func;
pub use print::print_func;

macro_rules! loop_id {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

loop_id!(BufId);
loop_id!(VarId);

/// Who owns a buffer's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufKind {
    /// Passed in by the caller, in declaration order (inputs, weights, the output).
    Param,
    /// Scratch the program owns (a register tile, a padded copy); contents start undefined.
    Temp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub name: String,
    pub dtype: DType,
    /// Row-major extents. A blocked layout is explicit here: NCHW16c is `[N, C/16, H, W, 16]`.
    pub shape: Vec<usize>,
    pub kind: BufKind,
    /// For a parameter read in another layout than its argument's (a weight in blocks of
    /// output channels, say); the caller passes the argument so rearranged. `None`: the
    /// argument's own layout.
    pub layout: Option<Layout>,
}

impl Buffer {
    /// The bytes it holds.
    pub fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_bytes()
    }
}

/// A rearrangement of a tensor: view it (row-major, no data moves) with shape `view`, then
/// transpose: axis `j` of the result is axis `perm[j]` of the view. Blocking the output
/// channels of an OIHW weight by 16 is view [O/16, 16, I, H, W], perm [0, 2, 3, 4, 1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub view: Vec<usize>,
    pub perm: Vec<usize>,
}

impl Layout {
    /// The shape of the rearranged tensor.
    pub fn shape(&self) -> Vec<usize> {
        self.perm.iter().map(|&a| self.view.get(a).copied().unwrap_or(0)).collect()
    }

    /// For each element of the rearranged tensor in row-major order, its offset in the
    /// original; None when the layout is malformed.
    pub fn source_offsets(&self) -> Option<Vec<usize>> {
        let rank = self.view.len();
        let mut seen = vec![false; rank];
        if self.perm.len() != rank || !self.perm.iter().all(|&a| a < rank && !std::mem::replace(&mut seen[a], true)) {
            return None;
        }
        let strides = crate::types::strides(&self.view);
        let shape = self.shape();
        let n: usize = shape.iter().product();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; rank];
        for _ in 0..n {
            out.push(idx.iter().enumerate().map(|(j, &i)| i * strides[self.perm[j]]).sum());
            for j in (0..rank).rev() {
                idx[j] += 1;
                if idx[j] < shape[j] {
                    break;
                }
                idx[j] = 0;
            }
        }
        Some(out)
    }
}

/// How a loop's iterations are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoopKind {
    Serial,
    /// Iterations are split across threads; only the outermost loop of a program may be
    /// parallel, so the runtime can hand each thread a range of it.
    Parallel,
    /// The body is executed as SIMD lanes, one per iteration.
    Vectorized,
    /// The body is repeated once per iteration at compile time.
    Unrolled,
    /// GPU: one workgroup per iteration. Only a statement of the program's body may be one;
    /// each such nest is one dispatch.
    GpuBlock,
    /// GPU: one invocation (thread) of the workgroup per iteration; the extent is the
    /// workgroup size. Only the single statement of a workgroup loop may be one.
    GpuThread,
    /// GPU: a loop nest inside an invocation loop whose iterations the workgroup's
    /// invocations share (each runs every workgroup-size-th one of the fused nest), between
    /// two barriers. It fills a workgroup-memory tile (the `stage` primitive): every
    /// invocation would compute the same values, so sharing the work changes no result and
    /// the evaluator runs it as a serial loop in each invocation. It must not be under a
    /// guard (barriers need uniform control flow).
    GpuCooperative,
}

impl LoopKind {
    pub fn name(self) -> &'static str {
        match self {
            LoopKind::Serial => "serial",
            LoopKind::Parallel => "parallel",
            LoopKind::Vectorized => "vectorized",
            LoopKind::Unrolled => "unrolled",
            LoopKind::GpuBlock => "workgroup",
            LoopKind::GpuThread => "invocation",
            LoopKind::GpuCooperative => "cooperative",
        }
    }

    /// Bound to the GPU's workgroups or invocations; CPU backends reject these.
    pub fn is_gpu(self) -> bool {
        matches!(self, LoopKind::GpuBlock | LoopKind::GpuThread | LoopKind::GpuCooperative)
    }

    pub fn from_name(s: &str) -> Option<LoopKind> {
        [LoopKind::Serial, LoopKind::Parallel, LoopKind::Vectorized, LoopKind::Unrolled, LoopKind::GpuBlock, LoopKind::GpuThread, LoopKind::GpuCooperative]
            .into_iter().find(|k| k.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub var: VarId,
    pub extent: i64,
    pub kind: LoopKind,
    pub body: Vec<Stmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    For(Loop),
    Store { buf: BufId, index: Vec<Expr>, value: Expr },
    /// Runs `then` when `cond` holds (tails of splits that do not divide).
    If { cond: Expr, then: Vec<Stmt> },
    /// A hint that `buf[index]` will be read soon (the `prefetch` schedule primitive): the
    /// CPU backends fetch its cache line towards the core; it computes nothing. Its index may
    /// lie past the buffer's end (the look-ahead of a last iteration), where nothing is read.
    Prefetch { buf: BufId, index: Vec<Expr> },
}

/// Two-operand operators. Arithmetic applies to f32 and i64 (integer `/` and `%` floor, so
/// that index arithmetic on non-negative values is the usual one); comparisons give bool;
/// `and`/`or`/`xor` take bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Min,
    Max,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Xor,
}

impl BinOp {
    /// The infix symbol of the arithmetic operators, which print infix.
    pub fn symbol(self) -> Option<&'static str> {
        Some(match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Rem => "rem",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Pow => "pow",
            BinOp::Lt => "lt",
            BinOp::Le => "le",
            BinOp::Gt => "gt",
            BinOp::Ge => "ge",
            BinOp::Eq => "eq",
            BinOp::Ne => "ne",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Xor => "xor",
        }
    }

    pub const ALL: [BinOp; 17] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::Min,
        BinOp::Max,
        BinOp::Pow,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::Eq,
        BinOp::Ne,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
    ];

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Xor)
    }
}

/// Math functions of one or three operands; backends map them to instructions, their own
/// vector routines or the C library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// a * b + c, fused.
    Fma,
    Neg,
    Not,
    Abs,
    Exp,
    Log,
    Sqrt,
    Sin,
    Cos,
    Tanh,
    Sigmoid,
    Erf,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Sign,
}

impl Intrinsic {
    pub const ALL: [Intrinsic; 16] = [
        Intrinsic::Fma,
        Intrinsic::Neg,
        Intrinsic::Not,
        Intrinsic::Abs,
        Intrinsic::Exp,
        Intrinsic::Log,
        Intrinsic::Sqrt,
        Intrinsic::Sin,
        Intrinsic::Cos,
        Intrinsic::Tanh,
        Intrinsic::Sigmoid,
        Intrinsic::Erf,
        Intrinsic::Floor,
        Intrinsic::Ceil,
        Intrinsic::Round,
        Intrinsic::Sign,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Fma => "fma",
            Intrinsic::Neg => "neg",
            Intrinsic::Not => "not",
            Intrinsic::Abs => "abs",
            Intrinsic::Exp => "exp",
            Intrinsic::Log => "log",
            Intrinsic::Sqrt => "sqrt",
            Intrinsic::Sin => "sin",
            Intrinsic::Cos => "cos",
            Intrinsic::Tanh => "tanh",
            Intrinsic::Sigmoid => "sigmoid",
            Intrinsic::Erf => "erf",
            Intrinsic::Floor => "floor",
            Intrinsic::Ceil => "ceil",
            Intrinsic::Round => "round",
            Intrinsic::Sign => "sign",
        }
    }

    pub fn arity(self) -> usize {
        if self == Intrinsic::Fma {
            3
        } else {
            1
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An i64 constant (indices and integer data).
    Int(i64),
    Float(f32),
    Bool(bool),
    Var(VarId),
    Load { buf: BufId, index: Vec<Expr> },
    Binary { op: BinOp, a: Box<Expr>, b: Box<Expr> },
    Call { f: Intrinsic, args: Vec<Expr> },
    Select { cond: Box<Expr>, a: Box<Expr>, b: Box<Expr> },
    Cast { to: DType, x: Box<Expr> },
}

impl Expr {
    pub fn var(v: VarId) -> Expr {
        Expr::Var(v)
    }

    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary { op, a: Box::new(a), b: Box::new(b) }
    }

    pub fn call(f: Intrinsic, args: Vec<Expr>) -> Expr {
        Expr::Call { f, args }
    }

    pub fn select(cond: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select { cond: Box::new(cond), a: Box::new(a), b: Box::new(b) }
    }

    pub fn cast(to: DType, x: Expr) -> Expr {
        Expr::Cast { to, x: Box::new(x) }
    }

    pub fn load(buf: BufId, index: Vec<Expr>) -> Expr {
        Expr::Load { buf, index }
    }
}

/// A tensor program.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Func {
    pub name: String,
    pub buffers: Vec<Buffer>,
    /// Loop variable names, indexed by `VarId`; unique within the function.
    pub vars: Vec<String>,
    pub body: Vec<Stmt>,
}

impl Func {
    pub fn new(name: impl Into<String>) -> Func {
        Func { name: name.into(), ..Default::default() }
    }

    pub fn buffer(&self, b: BufId) -> &Buffer {
        &self.buffers[b.index()]
    }

    pub fn add_buffer(&mut self, name: impl Into<String>, dtype: DType, shape: Vec<usize>, kind: BufKind) -> BufId {
        self.buffers.push(Buffer { name: name.into(), dtype, shape, kind, layout: None });
        BufId(self.buffers.len() as u32 - 1)
    }

    /// A new loop variable; the name is made unique by a numeric suffix when taken.
    pub fn add_var(&mut self, name: &str) -> VarId {
        let mut unique = name.to_string();
        let mut n = 1;
        while self.vars.contains(&unique) {
            unique = format!("{name}{n}");
            n += 1;
        }
        self.vars.push(unique);
        VarId(self.vars.len() as u32 - 1)
    }

    pub fn var_named(&self, name: &str) -> Option<VarId> {
        self.vars.iter().position(|v| v == name).map(|i| VarId(i as u32))
    }

    pub fn buffer_named(&self, name: &str) -> Option<BufId> {
        self.buffers.iter().position(|b| b.name == name).map(|i| BufId(i as u32))
    }

    /// The parameters in calling order.
    pub fn params(&self) -> Vec<BufId> {
        (0..self.buffers.len() as u32).map(BufId).filter(|&b| self.buffer(b).kind == BufKind::Param).collect()
    }
}

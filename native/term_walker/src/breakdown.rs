//! Where in a term the bytes are: retained sizes by dominators.
//!
//! Every heap object and every distinct off-heap `Binary` is charged once, to
//! its immediate dominator's subtree: the deepest object that every path from
//! the root to it passes through. A subterm reachable from two fields is
//! charged to their common parent, never to whichever field a walk met first,
//! so the answer does not depend on the walk order.
//!
//! 0. Most terms share nothing. [`TreePass`] walks the term once, depth
//!    first with an explicit stack and a visited set, summing each
//!    position's subtree as it closes (a tree's dominator is its parent, so
//!    that sum is the retained size). It keeps only what the search can ask
//!    for: positions retaining at least half of what a row needs (judged
//!    against the bytes counted so far, which can only undercount the final
//!    threshold), and for those that are lists, the cell starting each
//!    block of ten elements and the sums per block (never a position under
//!    [`KEEP_FLOOR`] bytes: the search reads one again when it must). List
//!    cells get no record of their own: a list's spine is read in one loop
//!    with its state in locals, and an element, or any object, whose slots
//!    are immediates, short lists of immediates and small objects of such
//!    slots is closed at once, its parts counted in place, without frames
//!    (none of them can be kept). Common objects are decoded by
//!    [`decode::shape`], the walks' four-word decoding. Its visited sets
//!    (objects, and off-heap `Binary`s) are [`VisitedSet`]s (an inline
//!    array for a small term, then bitmaps by page, the pages met lately
//!    found without a lookup). The first object, attached object or
//!    off-heap binary reached twice ends the pass, and the graph below
//!    takes over.
//! 1. [`Graph::build`] walks the term once, breadth first, with no recursion:
//!    one node per distinct object (by address), one per attached object
//!    (OTP 27 BinRef / FunRef, counted once by address as `size_shared`
//!    does) and one per distinct off-heap `Binary` (a leaf; a sub-binary's
//!    node points at the `Binary` of the whole parent it pins). Edges are kept
//!    as a compact adjacency array in slot order. Literal objects are nodes
//!    too (their pinned binaries must be charged somewhere) but weigh nothing;
//!    their words are reported apart.
//! 2. Immediate dominators: a tree needs none (the parent is the dominator,
//!    and breadth-first order is topological). With sharing, nodes are taken
//!    in topological order (Kahn) and `idom(v)` is the lowest common ancestor,
//!    in the dominator tree built so far, of `v`'s predecessors. Skew-binary
//!    jump pointers (one per node) make each ancestor query logarithmic.
//! 3. Retained sizes are summed up the dominator tree in reverse topological
//!    order.
//! 4. Rows: positions are searched top down from the root (re-reading the
//!    objects, which are still in place), descending only into positions that
//!    retain at least the threshold. A position is a row when no child of it
//!    retains more than half of what it does (an accumulation point).
//!
//! Memory, tree pass: one frame (64 bytes) per level of the current path
//! (the first four inline), 33 bytes per kept position, 32 per ten elements
//! of a kept list (the first list kept takes the working arrays whole).
//! Graph: per object 4 bytes of edge offset, 4 per edge, 4 of own size (then
//! object count), 8 of address during the walk (freed before the
//! dominators), 8 of address per reference to an object met before, then 8
//! of retained words (plus 8 of retained off-heap bytes when the term pins
//! any binary) and, with sharing, 4 + 4 + 4 + 4 of dominator, in-degree,
//! jump pointer and topological order. [`Breakdown::peak_bytes`] reports the
//! most these arrays held at once (growth slack aside, as for the graph).

use crate::decode::{self, classify, Detail, LayoutError, Object, OffHeapBinary, Shape, Word};
use crate::layout::{Kind, Layout};
use crate::memory::Memory;
use crate::tags::*;
use crate::visited::{fixed_hasher, VisitedSet};
use crate::walk::{reserve, Stop, Work};

/// The walk's [`Work`]: its allowance in words visited (plus one per
/// object), its deadline, and the limit on its own memory (allocations that
/// fail without aborting), with the helpers the breakdown's arrays use.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    work: Work,
}

impl Budget {
    pub fn limited(words: u64) -> Self {
        Budget {
            work: Work::limited(words),
        }
    }

    pub fn unlimited() -> Self {
        Self::limited(u64::MAX)
    }

    /// The same allowance, ending also when `deadline` passes.
    pub fn with_deadline(self, deadline: crate::walk::Deadline) -> Self {
        Budget {
            work: self.work.with_deadline(deadline),
        }
    }

    /// The same allowance with at most `bytes` of the walk's own memory.
    pub fn with_memory_limit(self, bytes: u64) -> Self {
        Budget {
            work: self.work.with_memory_limit(bytes),
        }
    }

    #[inline]
    fn spend(&mut self, words: u64) -> Result<(), Stop> {
        self.work.spend(words)
    }

    /// Room for one more element of `v`, within the memory limit.
    #[inline(always)]
    fn room<T>(&mut self, v: &mut Vec<T>) -> Result<(), Stop> {
        reserve(v, &mut self.work)
    }

    /// A vector of `n` copies of `value`, within the memory limit.
    fn filled<T: Clone>(&mut self, n: usize, value: T) -> Result<Vec<T>, Stop> {
        self.work
            .allocate(n.saturating_mul(std::mem::size_of::<T>()))?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| Stop::OutOfMemory)?;
        v.resize(n, value);
        Ok(v)
    }
}

/// The breakdown's hash tables: keyed by addresses, which no caller
/// chooses, so with the walks' fixed seeds (a random seed per table cost a
/// small term's breakdown more than its hashing).
type AddrMap<V> = std::collections::HashMap<usize, V, ahash::RandomState>;
type AddrSet = std::collections::HashSet<usize, ahash::RandomState>;

fn addr_map<V>() -> AddrMap<V> {
    AddrMap::with_hasher(fixed_hasher())
}

fn addr_set() -> AddrSet {
    AddrSet::with_hasher(fixed_hasher())
}

/// A vector whose first `N` elements live inline (a small term's
/// breakdown asks the allocator for none of them); once more are pushed,
/// all of them live on the heap from then on, charged to the walk's memory
/// like any other vector.
struct SmallVec<T: Copy, const N: usize> {
    few: [T; N],
    /// Elements in `few`, until `spilled`.
    len: usize,
    spilled: bool,
    more: Vec<T>,
}

impl<T: Copy, const N: usize> SmallVec<T, N> {
    /// Empty; `fill` only initialises the inline slots.
    fn new(fill: T) -> Self {
        SmallVec {
            few: [fill; N],
            len: 0,
            spilled: false,
            more: Vec::new(),
        }
    }

    #[inline(always)]
    fn push(&mut self, value: T, budget: &mut Budget) -> Result<(), Stop> {
        if !self.spilled {
            if self.len < N {
                self.few[self.len] = value;
                self.len += 1;
                return Ok(());
            }
            self.spill(budget)?;
        }
        budget.room(&mut self.more)?;
        self.more.push(value);
        Ok(())
    }

    #[cold]
    fn spill(&mut self, budget: &mut Budget) -> Result<(), Stop> {
        for i in 0..self.len {
            budget.room(&mut self.more)?;
            self.more.push(self.few[i]);
        }
        self.spilled = true;
        self.len = 0;
        Ok(())
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<T> {
        if self.spilled {
            return self.more.pop();
        }
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.few[self.len])
    }

    #[inline(always)]
    fn as_slice(&self) -> &[T] {
        if self.spilled {
            &self.more
        } else {
            &self.few[..self.len]
        }
    }

    #[inline(always)]
    fn as_mut_slice(&mut self) -> &mut [T] {
        if self.spilled {
            &mut self.more
        } else {
            &mut self.few[..self.len]
        }
    }

    fn truncate(&mut self, len: usize) {
        if self.spilled {
            self.more.truncate(len);
        } else {
            self.len = self.len.min(len);
        }
    }
}

impl<T: Copy, const N: usize> std::ops::Deref for SmallVec<T, N> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy, const N: usize> std::ops::DerefMut for SmallVec<T, N> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

/// What to look for.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// A row retains at least this share of the total bytes (0.0..=1.0).
    pub min_share: f64,
    /// At most this many rows, heaviest first.
    pub max_rows: usize,
    /// Positions deeper than this many steps are not looked at.
    pub max_depth: usize,
    /// The walk stops with [`TOO_MANY_OBJECTS`] past this many objects and
    /// binaries (memory is 1–32 bytes each on the benchmark terms; a DAG
    /// needs 4 more per reference).
    pub max_objects: usize,
    /// Only accumulation points are rows (the normal case). `false` makes
    /// every position above the threshold a row (for tests).
    pub accumulation_only: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_share: 0.01,
            max_rows: 20,
            max_depth: 32,
            max_objects: 10_000_000,
            accumulation_only: true,
        }
    }
}

/// One step of a path, as a person reads it. Indices are 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Element `i` of a tuple (or of another object with plain children).
    Elem(u32),
    /// The value under this key; the key is the term word itself (valid for
    /// as long as the term is), never converted to anything.
    Key(u64),
    /// List elements `first..=last`.
    List(u64, u64),
    /// Free variable `i` of a fun.
    Env(u32),
}

/// What kind of term a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    Tuple,
    Map,
    List,
    Binary,
    Fun,
    Integer,
    Float,
    Reference,
    Pid,
    Port,
    /// OTP 29 native record.
    Record,
    Other,
}

/// What a position retains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retained {
    /// Heap words (literal objects weigh nothing).
    pub words: u64,
    /// Bytes of the off-heap binaries charged here.
    pub off_heap_bytes: u64,
    /// Objects charged here (heap and literal objects; binaries are not
    /// objects).
    pub objects: u64,
}

impl Retained {
    pub fn bytes(&self) -> u64 {
        self.words * WORD_BYTES as u64 + self.off_heap_bytes
    }

    fn add(&mut self, other: Retained) {
        self.words += other.words;
        self.off_heap_bytes += other.off_heap_bytes;
        self.objects += other.objects;
    }

    fn sub(self, other: Retained) -> Retained {
        Retained {
            words: self.words - other.words,
            off_heap_bytes: self.off_heap_bytes - other.off_heap_bytes,
            objects: self.objects - other.objects,
        }
    }
}

/// One accumulation point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub path: Vec<Step>,
    pub retained: Retained,
    pub kind: RowKind,
}

/// The whole term and its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    /// What the root retains: `shared_words`, off-heap bytes and objects of
    /// the whole term, as `walk::term_size` counts them.
    pub total: Retained,
    pub off_heap_binaries: u64,
    pub literal_words: u64,
    pub rows: Vec<Row>,
    /// Bytes the graph and dominator arrays held at their largest (vector
    /// growth slack aside).
    pub peak_bytes: u64,
    /// Distinct objects (and binaries) in the graph.
    pub nodes: u64,
}

/// The node's address carries its kind in the low (always zero) bits.
const TAG_BOXED: usize = 0;
const TAG_CONS: usize = 1;
const TAG_BINARY: usize = 2;
const TAG_ATTACHED: usize = 3;
const TAG_MASK: usize = 0b111;

/// An unset dominator or jump pointer.
const UNSET: u32 = u32::MAX;
/// Set in `idom` when a node has more than one incoming reference: it is
/// nobody's position, its bytes are its dominator's.
const SHARED: u32 = 1 << 31;
const INDEX: u32 = !SHARED;
const MAX_NODES: usize = (INDEX - 1) as usize;

/// What a [`LayoutError`] says when the term has more objects than
/// [`Settings::max_objects`] (the walk stops before allocating more).
pub const TOO_MANY_OBJECTS: &str = "term has more objects than the breakdown allows";

fn too_large(at: usize) -> Stop {
    Stop::Layout(LayoutError::new(TOO_MANY_OBJECTS, at, 0))
}

fn cycle(at: usize) -> Stop {
    Stop::Layout(LayoutError::new("cycle in a term", at, 0))
}

/// All nodes' references in one array. While the term is a tree, reference
/// `k` always leads to node `k + 1` (breadth-first numbering: every
/// reference creates the next node), so the array is not stored; the first
/// reference that breaks the pattern (sharing) writes it out.
struct Edges {
    explicit: Vec<u32>,
    count: u32,
    implicit: bool,
}

impl Edges {
    fn new() -> Self {
        Edges {
            explicit: Vec::new(),
            count: 0,
            implicit: true,
        }
    }

    fn len(&self) -> u32 {
        self.count
    }

    #[inline]
    fn push(&mut self, j: u32, budget: &mut Budget) -> Result<(), Stop> {
        if self.implicit {
            if j == self.count + 1 {
                self.count += 1;
                return Ok(());
            }
            let mut explicit = budget.filled(self.count as usize, 0u32)?;
            for (k, e) in explicit.iter_mut().enumerate() {
                *e = k as u32 + 1;
            }
            self.explicit = explicit;
            self.implicit = false;
        }
        budget.room(&mut self.explicit)?;
        self.explicit.push(j);
        self.count += 1;
        Ok(())
    }

    /// Resolves a reference pushed as `UNSET` (never implicit).
    fn set(&mut self, k: u32, j: u32) {
        self.explicit[k as usize] = j;
    }

    #[inline]
    fn get(&self, k: u32) -> u32 {
        if self.implicit {
            k + 1
        } else {
            self.explicit[k as usize]
        }
    }
}

/// Nodes as the walk creates them.
struct NewNodes {
    /// Tagged address (see `TAG_*`).
    addr: Vec<usize>,
    own: Vec<u32>,
    /// At most this many nodes.
    limit: usize,
}

/// Adds a node and the edge to it from the node being expanded; returns its
/// index.
#[inline(always)]
fn push_node(
    nodes: &mut NewNodes,
    edges: &mut Edges,
    tagged: usize,
    words: u32,
    budget: &mut Budget,
) -> Result<u32, Stop> {
    let j = nodes.addr.len();
    if j >= nodes.limit {
        return Err(too_large(tagged));
    }
    edges.push(j as u32, budget)?;
    budget.room(&mut nodes.addr)?;
    budget.room(&mut nodes.own)?;
    nodes.addr.push(tagged);
    nodes.own.push(words);
    Ok(j as u32)
}

/// The object graph and, once computed, the dominator tree with retained
/// sizes.
struct Graph {
    /// References `edge_start[i]..edge_start[i + 1]` are node `i`'s:
    /// its non-immediate children in slot order, then its attached object,
    /// then its off-heap binary.
    edge_start: Vec<u32>,
    edges: Edges,
    /// Immediate dominator (the root is its own), with [`SHARED`]; empty for
    /// a tree, where it is the node that references it.
    idom: Vec<u32>,
    /// Own words during the walk; object count once retained sizes are summed.
    own: Vec<u32>,
    /// Binary nodes and their allocated sizes, in node order.
    binaries: Vec<(u32, u64)>,
    literal_words: u64,
    retained_words: Vec<u64>,
    /// Empty when the term pins no off-heap binary.
    retained_off_heap: Vec<u64>,
    peak_bytes: u64,
}

/// Bytes of data a vector holds (its growth slack aside, which the arrays
/// kept past the walk give back).
fn bytes_of<T>(v: &Vec<T>) -> u64 {
    std::mem::size_of_val(v.as_slice()) as u64
}

/// Scans the literal subterm at `tagged` (reached from a heap object): when
/// it pins no off-heap binary and meets no object already in the graph, its
/// objects are marked clean and visited, their words counted as literal, and
/// `true` is returned; otherwise nothing is marked and the subterm becomes
/// graph nodes like any other.
fn clean_literal<M: Memory>(
    mem: &M,
    layout: &Layout,
    tagged: usize,
    visited: &mut VisitedSet,
    clean: &mut VisitedSet,
    literal_words: &mut u64,
    budget: &mut Budget,
) -> Result<bool, Stop> {
    let mut seen = VisitedSet::new();
    let mut found: Vec<(usize, u64)> = Vec::new();
    let mut pending = vec![tagged];
    while let Some(tagged) = pending.pop() {
        let at = tagged & !TAG_MASK;
        if clean.contains(at) || !seen.insert(at, &mut budget.work)? {
            continue;
        }
        if visited.contains(at) {
            return Ok(false);
        }
        let object = match tagged & TAG_MASK {
            TAG_CONS => Object::cons(at),
            _ => decode::boxed(mem, layout, at, Detail::OffHeap)?,
        };
        budget.spend(object.words)?;
        if object.binary.is_some() || !mem.is_literal(at) {
            return Ok(false);
        }
        budget.room(&mut found)?;
        found.push((at, object.words));
        if let Some(attached) = object.attached {
            if visited.contains(attached.addr) || !mem.is_literal(attached.addr) {
                return Ok(false);
            }
            if !clean.contains(attached.addr) && seen.insert(attached.addr, &mut budget.work)? {
                budget.room(&mut found)?;
                found.push((attached.addr, attached.words));
            }
        }
        for k in 0..object.child_count {
            let slot = object.children + k * WORD_BYTES;
            let term = mem.word(slot)?;
            match classify(term, slot)? {
                Word::Immediate => {}
                Word::List(a) => {
                    budget.room(&mut pending)?;
                    pending.push(a | TAG_CONS)
                }
                Word::Boxed(a) => {
                    budget.room(&mut pending)?;
                    pending.push(a | TAG_BOXED)
                }
            }
        }
    }
    for (at, words) in found {
        clean.insert(at, &mut budget.work)?;
        visited.insert(at, &mut budget.work)?;
        *literal_words += words;
    }
    Ok(true)
}

impl Graph {
    fn build<M: Memory>(
        mem: &M,
        layout: &Layout,
        root_addr: usize,
        root_tag: usize,
        max_objects: usize,
        budget: &mut Budget,
    ) -> Result<(Graph, VisitedSet), Stop> {
        let mut nodes = NewNodes {
            limit: max_objects.min(MAX_NODES),
            addr: vec![root_addr | root_tag],
            own: vec![0],
        };
        let mut edge_start: Vec<u32> = Vec::new();
        let mut edges = Edges::new();
        let mut binaries: Vec<(u32, u64)> = Vec::new();
        let mut binary_index: AddrMap<u32> = addr_map();
        // Addresses of the objects referenced again, in edge order: their
        // edges are the `UNSET` ones, resolved once the walk is done.
        let mut repeats: Vec<usize> = Vec::new();
        let mut shared_binary = false;
        let mut visited = VisitedSet::new();
        visited.insert(root_addr, &mut budget.work)?;
        // Literal objects whose subterm pins no binary: they weigh nothing
        // and keep nothing alive, so they get no node (and no reference).
        let mut clean = VisitedSet::new();
        let mut literal_words = 0u64;
        let mut i = 0usize;
        while i < nodes.addr.len() {
            budget.room(&mut edge_start)?;
            edge_start.push(edges.len());
            let tagged = nodes.addr[i];
            let at = tagged & !TAG_MASK;
            let object = match tagged & TAG_MASK {
                TAG_CONS => Object::cons(at),
                TAG_BOXED => decode::boxed(mem, layout, at, Detail::OffHeap)?,
                _ => {
                    // Binaries and attached objects have no children.
                    i += 1;
                    continue;
                }
            };
            budget.spend(object.words)?;
            let words = u32::try_from(object.words).map_err(|_| too_large(at))?;
            let literal_parent = mem.is_literal(at);
            if literal_parent {
                literal_words += object.words;
            } else {
                nodes.own[i] = words;
            }
            for k in 0..object.child_count {
                let slot = object.children + k * WORD_BYTES;
                let term = mem.word(slot)?;
                let (child, tag) = match classify(term, slot)? {
                    Word::Immediate => continue,
                    Word::List(a) => (a, TAG_CONS),
                    Word::Boxed(a) => (a, TAG_BOXED),
                };
                if mem.is_literal(child) {
                    if clean.contains(child) {
                        continue;
                    }
                    if !literal_parent
                        && !visited.contains(child)
                        && clean_literal(
                            mem,
                            layout,
                            child | tag,
                            &mut visited,
                            &mut clean,
                            &mut literal_words,
                            budget,
                        )?
                    {
                        continue;
                    }
                }
                if visited.insert(child, &mut budget.work)? {
                    push_node(&mut nodes, &mut edges, child | tag, 0, budget)?;
                } else {
                    budget.room(&mut repeats)?;
                    repeats.push(child);
                    edges.push(UNSET, budget)?;
                }
            }
            if let Some(attached) = object.attached {
                budget.spend(attached.words)?;
                let words = u32::try_from(attached.words).map_err(|_| too_large(at))?;
                if visited.insert(attached.addr, &mut budget.work)? {
                    let words = if mem.is_literal(attached.addr) {
                        literal_words += attached.words;
                        0
                    } else {
                        words
                    };
                    push_node(
                        &mut nodes,
                        &mut edges,
                        attached.addr | TAG_ATTACHED,
                        words,
                        budget,
                    )?;
                } else {
                    budget.room(&mut repeats)?;
                    repeats.push(attached.addr);
                    edges.push(UNSET, budget)?;
                }
            }
            if let Some(binary) = object.binary {
                match binary_index.get(&binary.addr) {
                    Some(&j) => {
                        shared_binary = true;
                        edges.push(j, budget)?;
                    }
                    None => {
                        let j =
                            push_node(&mut nodes, &mut edges, binary.addr | TAG_BINARY, 0, budget)?;
                        binary_index.insert(binary.addr, j);
                        budget.room(&mut binaries)?;
                        binaries.push((j, binary.orig_size));
                    }
                }
            }
            i += 1;
        }
        edge_start.push(edges.len());
        let NewNodes { addr, own, .. } = nodes;
        let mut peak_bytes = bytes_of(&addr)
            + bytes_of(&own)
            + bytes_of(&edge_start)
            + bytes_of(&edges.explicit)
            + bytes_of(&repeats);
        drop(binary_index);

        if !repeats.is_empty() {
            // Only the addresses referenced again need an index: mark them,
            // then find their nodes in one pass over the graph.
            let mut targets = VisitedSet::new();
            for &a in &repeats {
                targets.insert(a, &mut budget.work)?;
            }
            let mut index: AddrMap<u32> = addr_map();
            for (j, &tagged) in addr.iter().enumerate() {
                let a = tagged & !TAG_MASK;
                if tagged & TAG_MASK != TAG_BINARY && !targets.insert(a, &mut budget.work)? {
                    index.insert(a, j as u32);
                }
            }
            let mut next = repeats.iter();
            for slot in 0..edges.len() {
                if edges.get(slot) == UNSET {
                    let &a = next.next().ok_or(cycle(root_addr))?;
                    edges.set(slot, *index.get(&a).ok_or(cycle(a))?);
                }
            }
        }
        let sharing = !repeats.is_empty() || shared_binary;
        drop(repeats);
        drop(addr);
        let (mut edge_start, mut edges, mut own) = (edge_start, edges, own);
        edge_start.shrink_to_fit();
        edges.explicit.shrink_to_fit();
        own.shrink_to_fit();

        let mut graph = Graph {
            edge_start,
            edges,
            idom: Vec::new(),
            own,
            binaries,
            literal_words,
            retained_words: Vec::new(),
            retained_off_heap: Vec::new(),
            peak_bytes: 0,
        };
        let order = if sharing {
            let (order, dominator_bytes) = graph.dominators(root_addr, budget)?;
            peak_bytes = peak_bytes.max(graph.resident_bytes() + dominator_bytes);
            Some(order)
        } else {
            None
        };
        graph.sum_retained(order.as_deref(), budget)?;
        peak_bytes = peak_bytes.max(graph.resident_bytes() + order.as_ref().map_or(0, bytes_of));
        graph.peak_bytes = peak_bytes;
        Ok((graph, clean))
    }

    /// A graph of no nodes, for a term the tree pass sized.
    fn without_nodes() -> Graph {
        Graph {
            edge_start: Vec::new(),
            edges: Edges::new(),
            idom: Vec::new(),
            own: Vec::new(),
            binaries: Vec::new(),
            literal_words: 0,
            retained_words: Vec::new(),
            retained_off_heap: Vec::new(),
            peak_bytes: 0,
        }
    }

    fn resident_bytes(&self) -> u64 {
        bytes_of(&self.edge_start)
            + bytes_of(&self.edges.explicit)
            + bytes_of(&self.idom)
            + bytes_of(&self.own)
            + bytes_of(&self.binaries)
            + bytes_of(&self.retained_words)
            + bytes_of(&self.retained_off_heap)
    }

    fn len(&self) -> usize {
        self.own.len()
    }

    /// Node `i`'s references, as indices for `edges.get`.
    #[inline(always)]
    fn out(&self, i: usize) -> std::ops::Range<u32> {
        self.edge_start[i]..self.edge_start[i + 1]
    }

    /// The node reference `e` leads to.
    #[inline(always)]
    fn target(&self, e: u32) -> u32 {
        self.edges.get(e)
    }

    /// Immediate dominators in topological order; returns that order and the
    /// bytes of the temporary arrays.
    fn dominators(
        &mut self,
        root_addr: usize,
        budget: &mut Budget,
    ) -> Result<(Vec<u32>, u64), Stop> {
        let n = self.len();
        // In-degree until a node is final, then its depth in the tree.
        let mut level: Vec<u32> = budget.filled(n, 0)?;
        for e in 0..self.edges.len() {
            level[self.edges.get(e) as usize] += 1;
        }
        let mut jump: Vec<u32> = budget.filled(n, UNSET)?;
        let mut order: Vec<u32> = budget.filled(n, 0)?;
        order.clear();
        self.idom = budget.filled(n, UNSET)?;
        self.idom[0] = 0;
        jump[0] = 0;
        level[0] = 0;
        order.push(0);
        let mut head = 0;
        while head < order.len() {
            let u = order[head];
            head += 1;
            for e in self.edge_start[u as usize]..self.edge_start[u as usize + 1] {
                let v = self.edges.get(e) as usize;
                if jump[v] != UNSET {
                    // A reference to a node already final: to the root or
                    // to an ancestor. Terms are acyclic; this memory is not.
                    return Err(cycle(root_addr));
                }
                self.idom[v] = match self.idom[v] {
                    UNSET => u,
                    d => lca(&self.idom, &level, &jump, d & INDEX, u) | SHARED,
                };
                level[v] -= 1;
                if level[v] == 0 {
                    let p = (self.idom[v] & INDEX) as usize;
                    level[v] = level[p] + 1;
                    let jp = jump[p] as usize;
                    let jjp = jump[jp] as usize;
                    jump[v] = if level[p] - level[jp] == level[jp] - level[jjp] {
                        jjp as u32
                    } else {
                        p as u32
                    };
                    order.push(v as u32);
                }
            }
        }
        if order.len() != n {
            return Err(cycle(root_addr));
        }
        let temporary = bytes_of(&level) + bytes_of(&jump) + bytes_of(&order);
        Ok((order, temporary))
    }

    /// Sums own sizes up the dominator tree; `order` is topological (`None`:
    /// node order is, as for a tree walked breadth first).
    fn sum_retained(&mut self, order: Option<&[u32]>, budget: &mut Budget) -> Result<(), Stop> {
        let n = self.len();
        let mut words: Vec<u64> = budget.filled(n, 0)?;
        for (w, &own) in words.iter_mut().zip(&self.own) {
            *w = own as u64;
        }
        let mut off_heap: Vec<u64> = Vec::new();
        if !self.binaries.is_empty() {
            off_heap = budget.filled(n, 0)?;
        }
        // `own` becomes the object count.
        for c in self.own.iter_mut() {
            *c = 1;
        }
        for &(b, size) in &self.binaries {
            off_heap[b as usize] = size;
            self.own[b as usize] = 0;
        }
        let mut charge = |p: usize, v: usize, own: &mut Vec<u32>| {
            words[p] += words[v];
            own[p] += own[v];
            if !off_heap.is_empty() {
                off_heap[p] += off_heap[v];
            }
        };
        match order {
            Some(order) => {
                for &v in order.iter().skip(1).rev() {
                    let p = (self.idom[v as usize] & INDEX) as usize;
                    charge(p, v as usize, &mut self.own);
                }
            }
            None => {
                // A tree walked breadth first: every node's references are
                // its children, all numbered after it.
                for p in (0..n).rev() {
                    let (from, to) = (self.edge_start[p], self.edge_start[p + 1]);
                    for e in from..to {
                        charge(p, self.edges.get(e) as usize, &mut self.own);
                    }
                }
            }
        }
        self.retained_words = words;
        self.retained_off_heap = off_heap;
        Ok(())
    }

    fn retained(&self, i: u32) -> Retained {
        let i = i as usize;
        Retained {
            words: self.retained_words[i],
            off_heap_bytes: self.retained_off_heap.get(i).copied().unwrap_or(0),
            objects: self.own[i] as u64,
        }
    }

    /// Whether nothing is referenced twice (no dominator array was needed).
    fn is_tree(&self) -> bool {
        self.idom.is_empty()
    }

    /// Referenced more than once (a tree has no dominator array: nothing is).
    fn is_shared(&self, i: u32) -> bool {
        self.idom.get(i as usize).is_some_and(|&d| d & SHARED != 0)
    }
}

/// The ancestor of `v` at depth `depth`.
#[inline]
fn ancestor(idom: &[u32], level: &[u32], jump: &[u32], mut v: u32, depth: u32) -> u32 {
    while level[v as usize] > depth {
        let j = jump[v as usize];
        v = if level[j as usize] >= depth {
            j
        } else {
            idom[v as usize] & INDEX
        };
    }
    v
}

/// Lowest common ancestor of two final nodes in the dominator tree.
fn lca(idom: &[u32], level: &[u32], jump: &[u32], a: u32, b: u32) -> u32 {
    let (da, db) = (level[a as usize], level[b as usize]);
    let (mut a, mut b) = if da > db {
        (ancestor(idom, level, jump, a, db), b)
    } else {
        (a, ancestor(idom, level, jump, b, da))
    };
    while a != b {
        let (ja, jb) = (jump[a as usize], jump[b as usize]);
        if ja != jb {
            a = ja;
            b = jb;
        } else {
            a = idom[a as usize] & INDEX;
            b = idom[b as usize] & INDEX;
        }
    }
    a
}

/// A list whose elements were looked at: where the cons cells (address and
/// node) that start each block of ten elements are, and the sums per block
/// for the runs (`blocks + j`: what elements `0..10 * j` retain, the last
/// block partial). In a tree, both are the tree pass's ([`TreeSizes`]);
/// otherwise the searcher's own.
#[derive(Clone, Copy)]
struct ListInfo {
    len: u64,
    in_tree: bool,
    /// The first cell: the tree pass's arrays start at block 1.
    first: usize,
    starts: u32,
    blocks: u32,
}

const RUN_BLOCK: u64 = 10;

/// A place the search has reached.
#[derive(Clone, Copy)]
enum Place {
    /// A term value that is its position's alone: (tagged address, node).
    Value(usize, u32),
    /// Elements `first..=last` of `lists[list]`.
    Run(usize, u64, u64),
}

struct Searcher<'a, M: Memory> {
    mem: &'a M,
    layout: &'a Layout,
    graph: &'a Graph,
    /// Set for a term without sharing: sizes come from the tree pass, and
    /// the graph has no nodes (node indices are 0).
    tree: Option<&'a TreeSizes>,
    /// Literal objects left out of the graph (see [`clean_literal`]), or by
    /// the tree pass.
    clean: &'a VisitedSet,
    lists: SmallVec<ListInfo, 4>,
    /// The block starts and sums of the lists not kept by the tree pass.
    starts: SmallVec<(usize, u32), 4>,
    blocks: SmallVec<Retained, 8>,
    /// Paths as a tree: (parent path, step); `u32::MAX` is the root.
    steps: SmallVec<(u32, Step), 16>,
    /// The vector the last place's children were found in, for the next.
    spare: Vec<Child>,
    /// The threshold is so low that a value the tree pass left out for
    /// being under [`KEEP_FLOOR`] may matter: such a value is read again.
    reread_unkept: bool,
}

/// The children of a place worth looking into (at or above the threshold),
/// and what the heaviest of all of them retains: a map of a million small
/// values keeps none of them.
struct Kept {
    list: Vec<Child>,
    heaviest: u64,
    threshold: u64,
}

impl Kept {
    fn offer(&mut self, child: Child, budget: &mut Budget) -> Result<(), Stop> {
        let bytes = child.retained.bytes();
        self.heaviest = self.heaviest.max(bytes);
        if bytes >= self.threshold {
            budget.room(&mut self.list)?;
            self.list.push(child);
        }
        Ok(())
    }
}

/// A child position found while expanding a place.
struct Child {
    place: Place,
    step: Step,
    retained: Retained,
}

impl<'a, M: Memory> Searcher<'a, M> {
    /// Whether the term word `term` (read at `at`) has a node: not an
    /// immediate, nor a literal left out of the graph.
    #[inline(always)]
    fn has_node(&self, term: u64, at: usize) -> Result<bool, Stop> {
        Ok(match classify(term, at)? {
            Word::Immediate => false,
            Word::List(a) | Word::Boxed(a) => self.clean.is_empty() || !self.clean.contains(a),
        })
    }

    fn path(&self, mut at: u32) -> Vec<Step> {
        let mut path = Vec::new();
        while at != u32::MAX {
            let (parent, step) = self.steps[at as usize];
            path.push(step);
            at = parent;
        }
        path.reverse();
        path
    }

    fn kind(&self, place: Place) -> Result<RowKind, Stop> {
        let (tagged, _) = match place {
            Place::Run(..) => return Ok(RowKind::List),
            Place::Value(tagged, node) => (tagged, node),
        };
        if tagged & TAG_MASK == TAG_CONS {
            return Ok(RowKind::List);
        }
        let header = self.mem.word(tagged)?;
        Ok(match self.layout.kind_of(header) {
            Some(Kind::Tuple) => RowKind::Tuple,
            Some(Kind::Map) => RowKind::Map,
            Some(Kind::Fun) => RowKind::Fun,
            Some(Kind::RefcBinary | Kind::HeapBinary | Kind::SubBinary | Kind::SubBits) => {
                RowKind::Binary
            }
            Some(Kind::PositiveBignum | Kind::NegativeBignum) => RowKind::Integer,
            Some(Kind::Float) => RowKind::Float,
            Some(Kind::Ref | Kind::ExternalRef) => RowKind::Reference,
            Some(Kind::ExternalPid) => RowKind::Pid,
            Some(Kind::ExternalPort) => RowKind::Port,
            Some(Kind::Record) => RowKind::Record,
            _ => RowKind::Other,
        })
    }

    /// Visits each child slot of `node` that has a node, in slot order: the
    /// slot's index and term word, and the node it refers to.
    #[inline(always)]
    fn each_slot<F>(&self, object: &Object, node: u32, mut visit: F) -> Result<(), Stop>
    where
        F: FnMut(usize, u64, u32) -> Result<(), Stop>,
    {
        let tree = self.tree.is_some();
        let mut e = if tree {
            0
        } else {
            self.graph.out(node as usize).start
        };
        for k in 0..object.child_count {
            let at = object.children + k * WORD_BYTES;
            let term = self.mem.word(at)?;
            if self.has_node(term, at)? {
                visit(k, term, if tree { 0 } else { self.graph.target(e) })?;
                e += 1;
            }
        }
        Ok(())
    }

    fn value(&self, term: u64, node: u32, step: Step, budget: &mut Budget) -> Result<Child, Stop> {
        Ok(Child {
            place: Self::value_place(term, node),
            step,
            retained: self.retained_of(term, node, budget)?,
        })
    }

    fn value_place(term: u64, node: u32) -> Place {
        let tagged = (term as usize & !TAG_MASK)
            | if term & PRIMARY_MASK == PRIMARY_LIST {
                TAG_CONS
            } else {
                TAG_BOXED
            };
        Place::Value(tagged, node)
    }

    /// What the value `term` (node `node`) retains. In a tree, a value the
    /// pass did not keep retains less than half the threshold, which no
    /// test here can tell from nothing (`keep_bar`), or less than
    /// [`KEEP_FLOOR`]: when the threshold is that low, it is read again.
    #[inline(always)]
    fn retained_of(&self, term: u64, node: u32, budget: &mut Budget) -> Result<Retained, Stop> {
        match self.tree {
            None => Ok(self.graph.retained(node)),
            Some(tree) => match tree.values.get(&((term & POINTER_MASK) as usize)) {
                Some(&found) => Ok(found),
                None if self.reread_unkept => self.retained_exactly(term, node, budget),
                None => Ok(Retained::default()),
            },
        }
    }

    /// What the value `term` retains, exactly: in a tree, a value the pass
    /// did not keep is walked again (it is small: under half the threshold).
    fn retained_exactly(
        &self,
        term: u64,
        node: u32,
        budget: &mut Budget,
    ) -> Result<Retained, Stop> {
        let Some(tree) = self.tree else {
            return Ok(self.graph.retained(node));
        };
        let addr = (term & POINTER_MASK) as usize;
        if let Some(&found) = tree.values.get(&addr) {
            return Ok(found);
        }
        if tree.every_position {
            // A small term: the pass noted every position.
            if let Some(found) = tree.small.iter().find(|p| p.addr == addr) {
                return Ok(found.retained());
            }
        }
        let mut sum = Retained::default();
        let mut pending: SmallVec<(u64, usize), 16> = SmallVec::new((0, 0));
        pending.push((term, 0), budget)?;
        while let Some((term, at)) = pending.pop() {
            let object = match classify(term, at)? {
                Word::Immediate => continue,
                // Literals in a tree are all clean: they weigh nothing.
                Word::List(a) | Word::Boxed(a) if self.clean.contains(a) => continue,
                Word::List(a) => Object::cons(a),
                Word::Boxed(a) => decode::boxed(self.mem, self.layout, a, Detail::OffHeap)?,
            };
            budget.spend(object.words)?;
            sum.add(Retained {
                words: object.words,
                off_heap_bytes: object.binary.map_or(0, |b| b.orig_size),
                objects: 1,
            });
            if let Some(attached) = object.attached {
                let words = if self.mem.is_literal(attached.addr) {
                    0
                } else {
                    attached.words
                };
                sum.add(Retained {
                    words,
                    off_heap_bytes: 0,
                    objects: 1,
                });
            }
            for k in 0..object.child_count {
                let slot = object.children + k * WORD_BYTES;
                pending.push((self.mem.word(slot)?, slot), budget)?;
            }
        }
        Ok(sum)
    }

    /// The child positions of `place` at or above the threshold, and what
    /// the heaviest child retains, spending from `budget`.
    fn children(
        &mut self,
        place: Place,
        threshold: u64,
        budget: &mut Budget,
    ) -> Result<Kept, Stop> {
        // The vector the last place's children were in, emptied.
        let mut spare = std::mem::take(&mut self.spare);
        spare.clear();
        let mut kept = Kept {
            list: spare,
            heaviest: 0,
            threshold,
        };
        let (tagged, node) = match place {
            Place::Run(list, first, last) => {
                // At most ten, all kept: a run's test looks at each.
                self.run_children(list, first, last, &mut kept.list, budget)?;
                kept.heaviest = kept
                    .list
                    .iter()
                    .map(|c| c.retained.bytes())
                    .max()
                    .unwrap_or(0);
                return Ok(kept);
            }
            Place::Value(tagged, node) => (tagged, node),
        };
        let at = tagged & !TAG_MASK;
        if tagged & TAG_MASK == TAG_CONS {
            let list = self.list(at, node, budget)?;
            let last = self.lists[list].len - 1;
            if let Some(run) = self.run_child(list, 0, last, budget)? {
                kept.offer(run, budget)?;
            }
            return Ok(kept);
        }
        let object = decode::boxed(self.mem, self.layout, at, Detail::Words)?;
        budget.spend(object.words)?;
        let header = self.mem.word(at)?;
        match self.layout.kind_of(header) {
            Some(Kind::Map) if !object.hashmap_node => {
                // Flatmap: slot 0 is the keys tuple, slot k the value of key k.
                let keys = self.mem.word(object.children)?;
                let keys_at = (keys & POINTER_MASK) as usize;
                self.each_slot(&object, node, |k, term, n| {
                    if k == 0 || self.graph.is_shared(n) {
                        return Ok(());
                    }
                    let key = self.mem.word(keys_at + k * WORD_BYTES)?;
                    kept.offer(self.value(term, n, Step::Key(key), budget)?, budget)
                })?;
            }
            // (Left-out values may matter when the threshold is that low.)
            Some(Kind::Map)
                if !self.reread_unkept && self.tree.is_some_and(|t| t.bare_maps.contains(&at)) => {}
            Some(Kind::Map) => self.hashmap_children(object, node, budget, &mut kept)?,
            Some(Kind::Fun) => {
                // OTP <= 26: the creator pid comes before the free variables.
                let skip = usize::from(self.layout.fun.creator_word.is_some());
                self.each_slot(&object, node, |k, term, n| {
                    if k < skip || self.graph.is_shared(n) {
                        return Ok(());
                    }
                    kept.offer(
                        self.value(term, n, Step::Env((k - skip) as u32), budget)?,
                        budget,
                    )
                })?;
            }
            _ => {
                // Tuples, and any object whose children are plain slots.
                self.each_slot(&object, node, |k, term, n| {
                    if self.graph.is_shared(n) {
                        return Ok(());
                    }
                    kept.offer(self.value(term, n, Step::Elem(k as u32), budget)?, budget)
                })?;
            }
        }
        Ok(kept)
    }

    /// Values of a hashmap: inner nodes, collision nodes and leaf cells that
    /// are the map's alone are part of it; shared ones belong to the common
    /// parent of their owners.
    fn hashmap_children(
        &self,
        head: Object,
        node: u32,
        budget: &mut Budget,
        kept: &mut Kept,
    ) -> Result<(), Stop> {
        let mut pending = vec![(head, node)];
        while let Some((object, node)) = pending.pop() {
            self.each_slot(&object, node, |_, term, n| {
                if self.graph.is_shared(n) {
                    return Ok(());
                }
                let at = (term & POINTER_MASK) as usize;
                if term & PRIMARY_MASK == PRIMARY_LIST {
                    // A leaf [K | V]: its value, when not an immediate, is
                    // the leaf's last reference and the position.
                    let value_at = at + WORD_BYTES;
                    let value = self.mem.word(value_at)?;
                    if self.has_node(value, value_at)? {
                        let v = self.tail_node(n);
                        if !self.graph.is_shared(v) {
                            let key = self.mem.word(at)?;
                            kept.offer(self.value(value, v, Step::Key(key), budget)?, budget)?;
                        }
                    }
                } else {
                    let inner = decode::boxed(self.mem, self.layout, at, Detail::Words)?;
                    budget.spend(inner.words)?;
                    budget.room(&mut pending)?;
                    pending.push((inner, n));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Reads the elements of the list at `at` (node `node`) that are its
    /// own: the spine continues while each tail cell is referenced only by
    /// the cell before it.
    fn list(&mut self, at: usize, node: u32, budget: &mut Budget) -> Result<usize, Stop> {
        // The pass keeps every list the search can reach; were one missing,
        // the walk below reads it again (in a tree, nothing is shared).
        if let Some(kept) = self.tree.and_then(|tree| tree.lists.get(&at)) {
            let blocks = kept.len.div_ceil(RUN_BLOCK);
            budget.spend(blocks)?;
            let info = ListInfo {
                len: kept.len,
                in_tree: true,
                first: at,
                starts: kept.starts,
                blocks: kept.blocks,
            };
            self.lists.push(info, budget)?;
            return Ok(self.lists.len() - 1);
        }
        let mut info = ListInfo {
            len: 0,
            in_tree: false,
            first: at,
            starts: self.starts.len() as u32,
            blocks: self.blocks.len() as u32,
        };
        self.blocks.push(Retained::default(), budget)?;
        if self.tree.is_none() && self.graph.is_tree() {
            return self.tree_list(info, at, node, budget);
        }
        let mut sum = Retained::default();
        let (mut cell, mut n) = (at, node);
        loop {
            budget.spend(2)?;
            let index = info.len;
            info.len += 1;
            if index.is_multiple_of(RUN_BLOCK) {
                self.starts.push((cell, n), budget)?;
            }
            sum.add(self.element(cell, n, budget)?);
            if (index + 1).is_multiple_of(RUN_BLOCK) {
                self.blocks.push(sum, budget)?;
            }
            let tail = self.mem.word(cell + WORD_BYTES)?;
            // A literal tail left out of the graph weighs nothing.
            if tail & PRIMARY_MASK != PRIMARY_LIST || !self.has_node(tail, cell + WORD_BYTES)? {
                break;
            }
            let next = self.tail_node(n);
            if self.graph.is_shared(next) {
                break;
            }
            cell = (tail & POINTER_MASK) as usize;
            n = next;
        }
        if !info.len.is_multiple_of(RUN_BLOCK) {
            self.blocks.push(sum, budget)?;
        }
        self.lists.push(info, budget)?;
        Ok(self.lists.len() - 1)
    }

    /// `list` for a term without sharing: what elements `i..` retain is what
    /// cell `i` retains, less what the list's end (an improper tail) does, so
    /// the block sums come from the cells that start the blocks, without
    /// looking at every element.
    fn tree_list(
        &mut self,
        mut info: ListInfo,
        at: usize,
        node: u32,
        budget: &mut Budget,
    ) -> Result<usize, Stop> {
        let (mut cell, mut n) = (at, node);
        let end = loop {
            budget.spend(1)?;
            if info.len.is_multiple_of(RUN_BLOCK) {
                self.starts.push((cell, n), budget)?;
            }
            info.len += 1;
            let tail_at = cell + WORD_BYTES;
            let tail = self.mem.word(tail_at)?;
            if !self.has_node(tail, tail_at)? {
                break Retained::default();
            }
            let next = self.tail_node(n);
            if tail & PRIMARY_MASK != PRIMARY_LIST {
                break self.graph.retained(next);
            }
            cell = (tail & POINTER_MASK) as usize;
            n = next;
        };
        let whole = self.graph.retained(node);
        for j in info.starts as usize + 1..self.starts.len() {
            let (_, start) = self.starts[j];
            self.blocks
                .push(whole.sub(self.graph.retained(start)), budget)?;
        }
        self.blocks.push(whole.sub(end), budget)?;
        self.lists.push(info, budget)?;
        Ok(self.lists.len() - 1)
    }

    /// The cell (address and node) starting block `j` of `lists[list]`.
    #[inline(always)]
    fn start(&self, list: usize, j: usize) -> (usize, u32) {
        let info = self.lists[list];
        match self.tree {
            // The tree pass keeps no start for block 0: the first cell.
            Some(_) if info.in_tree && j == 0 => (info.first, 0),
            Some(tree) if info.in_tree => (tree.starts[info.starts as usize + j - 1], 0),
            _ => self.starts[info.starts as usize + j],
        }
    }

    /// What elements `0..10 * j` of `lists[list]` retain.
    #[inline(always)]
    fn block(&self, list: usize, j: usize) -> Retained {
        let info = self.lists[list];
        match self.tree {
            // Nor the sum of no elements.
            Some(_) if info.in_tree && j == 0 => Retained::default(),
            Some(tree) if info.in_tree => tree.blocks[info.blocks as usize + j - 1],
            _ => self.blocks[info.blocks as usize + j],
        }
    }

    /// A cons cell's tail node (its last reference, when the tail is not an
    /// immediate).
    #[inline(always)]
    fn tail_node(&self, node: u32) -> u32 {
        if self.tree.is_some() {
            return 0;
        }
        self.graph.target(self.graph.out(node as usize).end - 1)
    }

    /// The cons cell (address and node) of element `i` of `lists[list]`:
    /// from the start of its block, at most nine tails on.
    fn cell(&self, list: usize, i: u64) -> Result<(usize, u32), Stop> {
        let (mut cell, mut node) = self.start(list, (i / RUN_BLOCK) as usize);
        for _ in 0..i % RUN_BLOCK {
            let tail = self.mem.word(cell + WORD_BYTES)?;
            cell = (tail & POINTER_MASK) as usize;
            node = self.tail_node(node);
        }
        Ok((cell, node))
    }

    /// What one list element retains: its cons cell and its head, when the
    /// head is the element's alone.
    #[inline(always)]
    fn element(&self, cell: usize, node: u32, budget: &mut Budget) -> Result<Retained, Stop> {
        let mut own = Retained {
            words: if self.mem.is_literal(cell) { 0 } else { 2 },
            off_heap_bytes: 0,
            objects: 1,
        };
        if let Some((term, head)) = self.head(cell, node)? {
            if !self.graph.is_shared(head) {
                own.add(self.retained_exactly(term, head, budget)?);
            }
        }
        Ok(own)
    }

    /// A list element's head term and node, unless it is an immediate.
    #[inline(always)]
    fn head(&self, cell: usize, node: u32) -> Result<Option<(u64, u32)>, Stop> {
        let term = self.mem.word(cell)?;
        if !self.has_node(term, cell)? {
            return Ok(None);
        }
        let head = match self.tree {
            Some(_) => 0,
            None => self.graph.target(self.graph.out(node as usize).start),
        };
        Ok(Some((term, head)))
    }

    fn run_retained(
        &self,
        list: usize,
        first: u64,
        last: u64,
        budget: &mut Budget,
    ) -> Result<Retained, Stop> {
        let len = last - first + 1;
        if len >= RUN_BLOCK && first.is_multiple_of(RUN_BLOCK) {
            // Whole blocks, the last one possibly partial (the list's end).
            let from = (first / RUN_BLOCK) as usize;
            let to = (last + 1).div_ceil(RUN_BLOCK) as usize;
            return Ok(self.block(list, to).sub(self.block(list, from)));
        }
        let mut sum = Retained::default();
        for i in first..=last {
            let (cell, node) = self.cell(list, i)?;
            sum.add(self.element(cell, node, budget)?);
        }
        Ok(sum)
    }

    /// Elements `first..=last` as a position: a run, or for one element its
    /// value (`None` when that is an immediate or shared).
    fn run_child(
        &self,
        list: usize,
        first: u64,
        last: u64,
        budget: &mut Budget,
    ) -> Result<Option<Child>, Stop> {
        let retained = self.run_retained(list, first, last, budget)?;
        if first < last {
            return Ok(Some(Child {
                place: Place::Run(list, first, last),
                step: Step::List(first, last),
                retained,
            }));
        }
        let (cell, node) = self.cell(list, first)?;
        Ok(match self.head(cell, node)? {
            Some((term, head)) if !self.graph.is_shared(head) => Some(Child {
                place: Self::value_place(term, head),
                step: Step::List(first, first),
                retained,
            }),
            _ => None,
        })
    }

    /// Runs split by powers of ten (0..9999 into 0..999, 1000..1999, ...).
    fn run_children(
        &self,
        list: usize,
        first: u64,
        last: u64,
        children: &mut Vec<Child>,
        budget: &mut Budget,
    ) -> Result<(), Stop> {
        let len = last - first + 1;
        let mut chunk = 1u64;
        while chunk * RUN_BLOCK < len {
            chunk *= RUN_BLOCK;
        }
        let mut start = first;
        while start <= last {
            let end = (start + chunk - 1).min(last);
            if let Some(child) = self.run_child(list, start, end, budget)? {
                budget.room(children)?;
                children.push(child);
            }
            start = end + 1;
        }
        Ok(())
    }
}

/// Whether `child` holds most of what `place` retains (`bytes`), so that
/// `place` only wraps it. In a run, a slice must also be at least twice as
/// dense as the run: the first 10,000 of 12,000 evenly sized elements hold
/// most of the run because of where the power of ten falls, not because the
/// bytes accumulate there.
fn holds_most(place: Place, child: &Child, bytes: u64) -> bool {
    let held = child.retained.bytes() as u128;
    if held * 2 <= bytes as u128 {
        return false;
    }
    match (place, child.step) {
        (Place::Run(_, first, last), Step::List(f, l)) => {
            let (run_len, slice_len) = ((last - first + 1) as u128, (l - f + 1) as u128);
            held * run_len >= 2 * bytes as u128 * slice_len
        }
        _ => true,
    }
}

/// The retained-size breakdown of `root`.
pub fn breakdown<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    settings: &Settings,
    budget: &mut Budget,
) -> Result<Breakdown, Stop> {
    run_breakdown(mem, layout, root, settings, budget, true)
}

/// [`breakdown`] always through the object graph and its dominators, never
/// the tree pass: tests compare the two.
#[doc(hidden)]
pub fn breakdown_by_graph<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    settings: &Settings,
    budget: &mut Budget,
) -> Result<Breakdown, Stop> {
    run_breakdown(mem, layout, root, settings, budget, false)
}

fn run_breakdown<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    settings: &Settings,
    budget: &mut Budget,
    tree_pass: bool,
) -> Result<Breakdown, Stop> {
    let (root_addr, root_tag) = match classify(root, 0)? {
        Word::Immediate => return Ok(Breakdown::default()),
        Word::List(a) => (a, TAG_CONS),
        Word::Boxed(a) => (a, TAG_BOXED),
    };
    // Most terms have no sharing: one depth-first pass sums every subtree
    // and keeps the few positions the search can ask for. The first object
    // reached twice ends it, and the graph takes over.
    let mut pass = TreePass::new(mem, layout, settings);
    let (empty, built);
    let (graph, tree, clean) = if tree_pass && pass.run(root, budget)? {
        empty = Graph::without_nodes();
        (&empty, Some(&pass.kept), &pass.clean)
    } else {
        built = Graph::build(
            mem,
            layout,
            root_addr,
            root_tag,
            settings.max_objects,
            budget,
        )?;
        (&built.0, None, &built.1)
    };
    let total = match tree {
        Some(t) => t.total,
        None => graph.retained(0),
    };
    let total_bytes = total.bytes();
    let threshold =
        ((settings.min_share.clamp(0.0, 1.0) * total_bytes as f64).ceil() as u64).max(1);

    let mut searcher = Searcher {
        mem,
        layout,
        graph,
        tree,
        clean,
        lists: SmallVec::new(ListInfo {
            len: 0,
            in_tree: false,
            first: 0,
            starts: 0,
            blocks: 0,
        }),
        starts: SmallVec::new((0, 0)),
        blocks: SmallVec::new(Retained::default()),
        steps: SmallVec::new((0, Step::Elem(0))),
        spare: Vec::new(),
        // Left out means under `max(keep_bar, KEEP_FLOOR)`, and `keep_bar`
        // is under half the threshold.
        reread_unkept: threshold / 2 < KEEP_FLOOR,
    };
    // (place, path, depth, what it retains, whether a run around it is a row)
    let root_place = Place::Value(root_addr | root_tag, 0);
    let mut pending: SmallVec<_, 8> =
        SmallVec::new((root_place, u32::MAX, 0usize, Retained::default(), false));
    pending.push((root_place, u32::MAX, 0, total, false), budget)?;
    let mut rows: SmallVec<(u64, usize, u32, Retained, RowKind), 8> =
        SmallVec::new((0, 0, 0, Retained::default(), RowKind::Other));
    let mut seen = 0usize;
    while let Some((place, path, depth, retained, in_row_run)) = pending.pop() {
        seen += 1;
        let kept = searcher.children(place, threshold, budget)?;
        let bytes = retained.bytes();
        let concentrated = match place {
            Place::Run(..) => kept.list.iter().any(|c| holds_most(place, c, bytes)),
            Place::Value(..) => kept.heaviest as u128 * 2 > bytes as u128,
        };
        let mut children = kept.list;
        // A run inside a run that is already a row is only a slice of it.
        let is_row =
            path != u32::MAX && (!settings.accumulation_only || (!concentrated && !in_row_run));
        if is_row {
            rows.push((bytes, seen, path, retained, searcher.kind(place)?), budget)?;
        }
        let deeper = match place {
            // Sub-runs replace the run's step: same depth.
            Place::Run(..) => depth,
            Place::Value(..) => depth + 1,
        };
        if deeper > settings.max_depth {
            searcher.spare = children;
            continue;
        }
        for child in children.drain(..).rev() {
            if child.retained.bytes() < threshold {
                continue;
            }
            let parent = match (place, child.place) {
                // A sub-run or element of a run hangs off the list itself.
                (Place::Run(..), _) => searcher.steps[path as usize].0,
                _ => path,
            };
            searcher.steps.push((parent, child.step), budget)?;
            let at = (searcher.steps.len() - 1) as u32;
            let run_row = match (place, child.place) {
                (Place::Run(..), Place::Run(..)) => in_row_run || is_row,
                _ => false,
            };
            pending.push((child.place, at, deeper, child.retained, run_row), budget)?;
        }
        searcher.spare = children;
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    rows.truncate(settings.max_rows);
    let rows = rows
        .iter()
        .map(|&(_, _, path, retained, kind)| Row {
            path: searcher.path(path),
            retained,
            kind,
        })
        .collect();
    let (off_heap_binaries, literal_words, peak_bytes, nodes) = match tree {
        Some(t) => (t.off_heap_binaries, t.literal_words, t.peak_bytes, t.nodes),
        None => (
            graph.binaries.len() as u64,
            graph.literal_words,
            graph.peak_bytes,
            graph.len() as u64,
        ),
    };
    Ok(Breakdown {
        total,
        off_heap_binaries,
        literal_words,
        rows,
        peak_bytes,
        nodes,
    })
}

/// Moves the entries `from..` of a working array `working` to the end of
/// `kept`: the whole array when `kept` is empty and they are all of it (no
/// copy), otherwise copied, within the memory limit.
fn keep_tail<T: Copy>(
    kept: &mut Vec<T>,
    working: &mut Vec<T>,
    from: u32,
    budget: &mut Budget,
) -> Result<(), Stop> {
    let from = from as usize;
    if kept.is_empty() && from == 0 {
        std::mem::swap(kept, working);
        return Ok(());
    }
    let n = working.len() - from;
    if kept.capacity() - kept.len() < n {
        let extra = n.max(kept.capacity());
        budget
            .work
            .allocate(extra.saturating_mul(std::mem::size_of::<T>()))?;
        kept.try_reserve(extra).map_err(|_| Stop::OutOfMemory)?;
    }
    kept.extend_from_slice(&working[from..]);
    Ok(())
}

/// A list the tree pass kept: its length and where its block starts and
/// block sums are in [`TreeSizes`].
#[derive(Clone, Copy)]
struct KeptList {
    len: u64,
    starts: u32,
    blocks: u32,
}

/// What the tree pass found for a term without sharing: retained sizes of
/// the positions the search can ask for, and the element sums of the lists
/// among them.
struct TreeSizes {
    total: Retained,
    off_heap_binaries: u64,
    literal_words: u64,
    nodes: u64,
    peak_bytes: u64,
    /// By address (of the object, or of a list's first cell): positions that
    /// retain at least half of what a row needs (see [`worth_keeping`]).
    values: AddrMap<Retained>,
    lists: AddrMap<KeptList>,
    /// Kept hashmaps none of whose values was kept.
    bare_maps: AddrSet,
    /// Per kept list, the cell that starts each block of ten elements after
    /// the first (block 0 starts at the list's first cell; a tree has no
    /// node indices).
    starts: Vec<usize>,
    /// Per kept list, what elements `0..10 * j` retain for `j >= 1`
    /// (`len / 10 + 1` entries at most, the last block partial).
    blocks: Vec<Retained>,
    /// The first [`SMALL_POSITIONS`] positions closed (but the root), by
    /// address, whatever they retain, and whether that is all of them: for
    /// a small term the search then reads no value again.
    small: SmallVec<SmallPosition, SMALL_POSITIONS>,
    every_position: bool,
}

/// A position of a small term and what it retains, in 24 bytes.
#[derive(Clone, Copy)]
struct SmallPosition {
    addr: usize,
    off_heap_bytes: u64,
    words: u32,
    objects: u32,
}

impl SmallPosition {
    /// `None` past 2^32 words or objects.
    fn new(addr: usize, r: Retained) -> Option<Self> {
        Some(SmallPosition {
            addr,
            off_heap_bytes: r.off_heap_bytes,
            words: u32::try_from(r.words).ok()?,
            objects: u32::try_from(r.objects).ok()?,
        })
    }

    fn retained(&self) -> Retained {
        Retained {
            words: self.words as u64,
            off_heap_bytes: self.off_heap_bytes,
            objects: self.objects as u64,
        }
    }
}

/// The least a position must retain for the pass to keep it, once
/// `running` bytes have been counted: half of `min_share` of it, rounded
/// down. The final threshold is at least `min_share` of the final total,
/// which is at least `running`: a position not kept retains less than half
/// the threshold, so it is no row, and as a child it can neither be kept by
/// the search nor hold most of a position at or above the threshold.
///
/// Positions under [`KEEP_FLOOR`] bytes are never kept: the search reads
/// one again when it asks (at most `KEEP_FLOOR / 8` words, no more work
/// than keeping it cost), so a small term keeps only its root.
fn keep_bar(running: u64, min_share: f64) -> u64 {
    ((min_share * running as f64 * 0.499_999) as u64).max(KEEP_FLOOR)
}

/// Bytes under which the tree pass keeps no position (see [`keep_bar`]).
const KEEP_FLOOR: u64 = 256;

/// Positions of a small term the tree pass notes whatever they retain
/// ([`TreeSizes::small`]).
const SMALL_POSITIONS: usize = 16;

/// Frames the tree pass keeps inline (a small term's depth).
const FEW_FRAMES: usize = 4;

/// Slots an object may have for the tree pass to close it at once
/// ([`TreePass::flat_slots`]).
const LEAF_SLOTS: usize = 16;

/// How the tree pass goes on with a frame.
#[derive(Clone, Copy)]
enum Walk {
    /// Slots `next..end` of an object are still to be entered.
    Slots {
        next: usize,
        end: usize,
    },
    /// A list at `cell`: its head is to be entered (`Head`), was entered
    /// (`Tail`: the element closes and the spine moves on), or the list
    /// ended (`End`, possibly after entering an improper tail).
    Head(usize),
    Tail(usize),
    End,
}

/// What the list spine does with a head that is not an immediate
/// ([`TreePass::leaf_head`]).
enum Head {
    /// Closed already; what it retains.
    Closed(Retained),
    /// Met before: sharing.
    Shared,
    /// A boxed object marked and counted as a node, to go on with
    /// ([`TreePass::enter_boxed`]), its shape, and whether
    /// [`TreePass::flat_slots`] said no to it already.
    Object(usize, Option<Shape>, bool),
    /// Anything else (a list, a literal): entered from the start.
    Other,
}

/// Its cons children are hashmap leaves `[K | V]`.
const HASHMAP: u8 = 1;
/// A list: the top of the pass's list states is its own.
const LIST: u8 = 2;
/// A position the search may reach (not a hashmap's inner node or leaf):
/// its children are one step deeper.
const POSITION: u8 = 4;
/// Some position below it (before the next position down) was kept.
const KEPT_BELOW: u8 = 8;

#[derive(Clone, Copy)]
struct Frame {
    walk: Walk,
    /// Everything this position retains so far.
    sum: Retained,
    addr: usize,
    depth: u32,
    flags: u8,
}

/// A list being read.
#[derive(Clone, Copy)]
struct ListState {
    /// The element being read, and elements `0..len` together.
    elem: Retained,
    elements: Retained,
    len: u64,
    /// Where the starts of its blocks 1.. and the sums of elements
    /// `0..10 * j` (`j` >= 1) begin in the pass's working arrays: a list of
    /// fewer than ten elements puts nothing there.
    starts_from: u32,
    blocks_from: u32,
}

const CELL: Retained = Retained {
    words: 2,
    off_heap_bytes: 0,
    objects: 1,
};

/// The pass over a term that may be a tree: one depth-first walk with a
/// visited set, summing each position's subtree as it closes. The first
/// object, attached object or off-heap binary reached twice ends it (`None`:
/// the term has sharing and needs the graph), and so does a literal that
/// pins a binary or a literal root.
struct TreePass<'a, M: Memory> {
    mem: &'a M,
    layout: &'a Layout,
    settings: &'a Settings,
    visited: VisitedSet,
    clean: VisitedSet,
    /// Off-heap `Binary`s met that may have other holders, by address (as
    /// `term_size`'s scan counts them); made at the first, as most terms pin
    /// none. See [`TreePass::binary_is_new`].
    binaries: Option<VisitedSet>,
    /// The ProcBins that OTP ≤ 26 sub-binaries met so far slice.
    sliced: Option<VisitedSet>,
    /// The open positions; a small term's stay inline.
    frames: SmallVec<Frame, FEW_FRAMES>,
    lists: Vec<ListState>,
    /// Working block starts and sums of the lists being read.
    starts: Vec<usize>,
    blocks: Vec<Retained>,
    kept: TreeSizes,
    running: u64,
    /// [`keep_bar`] of `bar_running`, taken again when `running` doubles
    /// (a bar from a smaller count keeps more, never less).
    bar: u64,
    bar_running: u64,
    limit: u64,
    /// The most frames, list states, working starts and sums held at once.
    most: [usize; 4],
}

impl<'a, M: Memory> TreePass<'a, M> {
    fn new(mem: &'a M, layout: &'a Layout, settings: &'a Settings) -> Self {
        TreePass {
            mem,
            layout,
            settings,
            visited: VisitedSet::new(),
            clean: VisitedSet::new(),
            binaries: None,
            sliced: None,
            frames: SmallVec::new(Frame {
                walk: Walk::End,
                sum: Retained::default(),
                addr: 0,
                depth: 0,
                flags: 0,
            }),
            lists: Vec::new(),
            starts: Vec::new(),
            blocks: Vec::new(),
            kept: TreeSizes {
                total: Retained::default(),
                off_heap_binaries: 0,
                literal_words: 0,
                nodes: 0,
                peak_bytes: 0,
                values: addr_map(),
                lists: addr_map(),
                bare_maps: addr_set(),
                starts: Vec::new(),
                blocks: Vec::new(),
                small: SmallVec::new(SmallPosition {
                    addr: 0,
                    off_heap_bytes: 0,
                    words: 0,
                    objects: 0,
                }),
                every_position: true,
            },
            running: 0,
            bar: 0,
            bar_running: 0,
            limit: settings.max_objects.min(MAX_NODES) as u64,
            most: [0; 4],
        }
    }

    #[inline(always)]
    fn node(&mut self, at: usize) -> Result<(), Stop> {
        self.kept.nodes += 1;
        if self.kept.nodes > self.limit {
            return Err(too_large(at));
        }
        Ok(())
    }

    /// The length of the list at `addr` when it is shorter than a block,
    /// all its heads are immediates and it ends in an immediate: such a list
    /// is summed at once, without a frame. Only reads.
    #[inline(always)]
    fn short_flat_list(&self, addr: usize) -> Result<Option<u64>, Stop> {
        let (mut cell, mut len) = (addr, 1u64);
        loop {
            if classify(self.mem.word(cell)?, cell)? != Word::Immediate {
                return Ok(None);
            }
            let tail_at = cell + WORD_BYTES;
            match classify(self.mem.word(tail_at)?, tail_at)? {
                Word::Immediate => return Ok(Some(len)),
                Word::List(next) if len + 1 < RUN_BLOCK && !self.mem.is_literal(next) => {
                    cell = next;
                    len += 1;
                }
                _ => return Ok(None),
            }
        }
    }

    /// Marks and counts the cells after the first of a list at `addr`
    /// that [`TreePass::short_flat_list`] measured: its length, `None` for
    /// sharing.
    #[inline(always)]
    fn count_short_list_tail(
        &mut self,
        addr: usize,
        budget: &mut Budget,
    ) -> Result<Option<u64>, Stop> {
        let (mut cell, mut len) = (addr, 1);
        loop {
            let tail = self.mem.word(cell + WORD_BYTES)?;
            if tail & PRIMARY_MASK != PRIMARY_LIST {
                return Ok(Some(len));
            }
            let next = (tail & POINTER_MASK) as usize;
            if !self.visited.insert(next, &mut budget.work)? {
                return Ok(None);
            }
            self.node(next)?;
            budget.spend(CONS_WORDS)?;
            self.running += CELL.bytes();
            cell = next;
            len += 1;
        }
    }

    /// What the slots of a plain position object (`count` words at
    /// `children`) retain together when each is an immediate, a literal
    /// known to pin nothing (it weighs nothing), a list
    /// [`TreePass::short_flat_list`] measures, or a common object whose own
    /// slots are all of these except objects with slots (a record's map and
    /// binary; no objects counted: all weigh nothing). Each such child
    /// retains under [`KEEP_FLOOR`] bytes, so it is never kept, and the
    /// object can be closed at once ([`TreePass::count_slots`] counts
    /// them). Only reads; `None` for anything else, and past
    /// [`LEAF_SLOTS`] slots.
    #[inline(always)]
    fn flat_slots(&self, children: usize, count: usize) -> Result<Option<Retained>, Stop> {
        if self.no_pointers(children, count)? {
            return Ok(Some(Retained::default()));
        }
        self.pointing_slots::<true>(children, count)
    }

    /// [`TreePass::flat_slots`] when some slot points (or there are more
    /// than [`LEAF_SLOTS`]), out of line. `NESTED`: a child object may have
    /// slots that point, taken by the instance without (two levels at
    /// most: no recursion).
    #[inline(never)]
    fn pointing_slots<const NESTED: bool>(
        &self,
        children: usize,
        count: usize,
    ) -> Result<Option<Retained>, Stop> {
        if count > LEAF_SLOTS {
            return Ok(None);
        }
        let mut below = Retained::default();
        for k in 0..count {
            let at = children + k * WORD_BYTES;
            let word = self.mem.word(at)?;
            if decode::is_immediate(word) {
                decode::check_immediate(word, at)?;
                continue;
            }
            let sum = match classify(word, at)? {
                // A literal known to pin nothing weighs nothing, as in
                // `enter` (a flatmap's keys).
                Word::Boxed(addr) | Word::List(addr)
                    if self.mem.is_literal(addr) && self.clean.contains(addr) =>
                {
                    continue;
                }
                Word::Boxed(addr) if !self.mem.is_literal(addr) => {
                    let Some(shape) = decode::shape(self.mem, self.layout, addr, Detail::OffHeap)?
                        .filter(|s| s.attached == 0 && !s.hashmap_node)
                    else {
                        return Ok(None);
                    };
                    let mut sum = Retained {
                        words: shape.words,
                        off_heap_bytes: 0,
                        objects: 1,
                    };
                    if !self.no_pointers(shape.children, shape.child_count)? {
                        if !NESTED {
                            return Ok(None);
                        }
                        match self.pointing_slots::<false>(shape.children, shape.child_count)? {
                            Some(grand) => sum.add(grand),
                            None => return Ok(None),
                        }
                    }
                    sum
                }
                Word::List(addr) if !self.mem.is_literal(addr) => {
                    match self.short_flat_list(addr)? {
                        Some(len) => Retained {
                            words: CELL.words * len,
                            off_heap_bytes: 0,
                            objects: len,
                        },
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            };
            if sum.bytes() >= KEEP_FLOOR {
                return Ok(None);
            }
            below.add(sum);
        }
        Ok(Some(below))
    }

    /// Marks and counts the children [`TreePass::flat_slots`] found in the
    /// `count` slots at `children` (`NESTED` as there), each closed as
    /// [`TreePass::close`] would close it (never kept; noted as a small
    /// term's position after its own children): what they retain, `None`
    /// for sharing.
    #[inline(never)]
    fn count_slots<const NESTED: bool>(
        &mut self,
        children: usize,
        count: usize,
        budget: &mut Budget,
    ) -> Result<Option<Retained>, Stop> {
        let mut below = Retained::default();
        for k in 0..count {
            let at = children + k * WORD_BYTES;
            let word = self.mem.word(at)?;
            let (addr, cons) = match classify(word, at)? {
                Word::Immediate => continue,
                Word::Boxed(addr) => (addr, false),
                Word::List(addr) => (addr, true),
            };
            if self.mem.is_literal(addr) {
                // Known to pin nothing (`flat_slots`): weighs nothing.
                continue;
            }
            if !self.visited.insert(addr, &mut budget.work)? {
                return Ok(None);
            }
            self.node(addr)?;
            let sum = if cons {
                budget.spend(CONS_WORDS)?;
                self.running += CELL.bytes();
                let Some(len) = self.count_short_list_tail(addr, budget)? else {
                    return Ok(None);
                };
                Retained {
                    words: CELL.words * len,
                    off_heap_bytes: 0,
                    objects: len,
                }
            } else {
                // Decoded again (as `flat_slots` found it).
                let object = decode::boxed(self.mem, self.layout, addr, Detail::OffHeap)?;
                budget.spend(object.words)?;
                self.running += object.words * WORD_BYTES as u64;
                let mut sum = Retained {
                    words: object.words,
                    off_heap_bytes: 0,
                    objects: 1,
                };
                if NESTED && !self.no_pointers(object.children, object.child_count)? {
                    match self.count_slots::<false>(object.children, object.child_count, budget)? {
                        Some(grand) => sum.add(grand),
                        None => return Ok(None),
                    }
                }
                sum
            };
            if self.kept.every_position {
                self.note_small(addr, sum);
            }
            below.add(sum);
        }
        Ok(Some(below))
    }

    /// Counts and closes the list `short_flat_list` measured.
    fn close_short_list(
        &mut self,
        addr: usize,
        len: u64,
        depth: u32,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        // The first cell is counted already.
        if self.count_short_list_tail(addr, budget)?.is_none() {
            return Ok(false);
        }
        let sum = Retained {
            words: 2 * len,
            off_heap_bytes: 0,
            objects: len,
        };
        let frame = Frame {
            walk: Walk::End,
            sum,
            addr,
            depth,
            flags: LIST | POSITION,
        };
        let list = ListState {
            elem: CELL,
            elements: sum,
            len,
            starts_from: self.starts.len() as u32,
            blocks_from: self.blocks.len() as u32,
        };
        self.close(frame, Some(list), budget)?;
        Ok(true)
    }

    /// Whether all of a small object's slots (`count` words at
    /// `children`) are immediates: past [`LEAF_SLOTS`] slots it is not
    /// looked at (`false`), as the slots are read again from its frame.
    #[inline(always)]
    fn no_pointers(&self, children: usize, count: usize) -> Result<bool, Stop> {
        if count > LEAF_SLOTS {
            return Ok(false);
        }
        for k in 0..count {
            let at = children + k * WORD_BYTES;
            let word = self.mem.word(at)?;
            if !decode::is_immediate(word) {
                return Ok(false);
            }
            decode::check_immediate(word, at)?;
        }
        Ok(true)
    }

    #[inline(always)]
    fn push_frame(&mut self, frame: Frame, budget: &mut Budget) -> Result<(), Stop> {
        self.frames.push(frame, budget)?;
        self.most[0] = self.most[0].max(self.frames.len());
        Ok(())
    }

    /// Starts on the term `term` read at `slot`, at `depth`. `Ok(false)`:
    /// sharing (or a pinned literal binary) was found.
    #[inline(always)]
    fn enter(
        &mut self,
        term: u64,
        slot: usize,
        depth: u32,
        in_hashmap: bool,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        let (addr, cons) = match classify(term, slot)? {
            Word::Immediate => return Ok(true),
            Word::List(a) => (a, true),
            Word::Boxed(a) => (a, false),
        };
        if self.mem.is_literal(addr) {
            if self.clean.contains(addr) {
                return Ok(true);
            }
            let tag = if cons { TAG_CONS } else { TAG_BOXED };
            return clean_literal(
                self.mem,
                self.layout,
                addr | tag,
                &mut self.visited,
                &mut self.clean,
                &mut self.kept.literal_words,
                budget,
            );
        }
        if !self.visited.insert(addr, &mut budget.work)? {
            return Ok(false);
        }
        self.node(addr)?;
        if cons {
            budget.spend(2)?;
            self.running += 2 * WORD_BYTES as u64;
            if in_hashmap {
                // A hashmap leaf [K | V]: key and value, both the map's.
                let (key, value) = (self.mem.word(addr)?, self.mem.word(addr + WORD_BYTES)?);
                if classify(key, addr)? == Word::Immediate
                    && classify(value, addr + WORD_BYTES)? == Word::Immediate
                {
                    // Nothing below it: no frame.
                    let parent = self.frames.last_mut().expect("a hashmap node");
                    parent.sum.add(CELL);
                    return Ok(true);
                }
                let walk = Walk::Slots {
                    next: addr,
                    end: addr + 2 * WORD_BYTES,
                };
                let frame = Frame {
                    walk,
                    sum: CELL,
                    addr,
                    depth,
                    flags: 0,
                };
                return self.push_frame(frame, budget).map(|_| true);
            }
            if let Some(len) = self.short_flat_list(addr)? {
                return self.close_short_list(addr, len, depth, budget);
            }
            let list = ListState {
                elem: CELL,
                elements: Retained::default(),
                len: 0,
                starts_from: self.starts.len() as u32,
                blocks_from: self.blocks.len() as u32,
            };
            budget.room(&mut self.lists)?;
            self.lists.push(list);
            self.most[1] = self.most[1].max(self.lists.len());
            let frame = Frame {
                walk: Walk::Head(addr),
                sum: CELL,
                addr,
                depth,
                flags: LIST | POSITION,
            };
            return self.push_frame(frame, budget).map(|_| true);
        }
        let shape = decode::shape(self.mem, self.layout, addr, Detail::OffHeap)?;
        self.enter_boxed(addr, shape, depth, in_hashmap, false, budget)
    }

    /// Goes on with the boxed object at `addr`, marked and counted as a
    /// node already, and its [`decode::shape`] (`None`: not a common
    /// object, decoded here by the general decoder). `flat_tried`:
    /// [`TreePass::flat_slots`] was asked already, and said no.
    #[inline(always)]
    fn enter_boxed(
        &mut self,
        addr: usize,
        shape: Option<Shape>,
        depth: u32,
        in_hashmap: bool,
        flat_tried: bool,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        // A shape with an attached part (never at `Detail::OffHeap`) goes
        // the general way, which counts that part.
        let Some(shape) = shape.filter(|s| s.attached == 0) else {
            return self.enter_object(addr, depth, in_hashmap, budget);
        };
        budget.spend(shape.words)?;
        let sum = Retained {
            words: shape.words,
            off_heap_bytes: 0,
            objects: 1,
        };
        self.running += sum.bytes();
        let flags = Self::flags(in_hashmap, shape.hashmap_node);
        let mut frame = Frame {
            walk: Walk::Slots {
                next: shape.children,
                end: shape.children + shape.child_count * WORD_BYTES,
            },
            sum,
            addr,
            depth,
            flags,
        };
        if flags == POSITION && !flat_tried {
            if let Some(below) = self.flat_slots(shape.children, shape.child_count)? {
                // Nothing below it needs a frame: closed at once.
                if below.objects != 0
                    && self
                        .count_slots::<true>(shape.children, shape.child_count, budget)?
                        .is_none()
                {
                    return Ok(false);
                }
                frame.sum.add(below);
                self.close(frame, None, budget)?;
                return Ok(true);
            }
        } else if self.no_pointers(shape.children, shape.child_count)? {
            self.close(frame, None, budget)?;
            return Ok(true);
        }
        self.push_frame(frame, budget).map(|_| true)
    }

    /// A frame's flags: a boxed child of a hashmap node is an inner or
    /// collision node, part of the map, not a position.
    #[inline(always)]
    fn flags(in_hashmap: bool, hashmap_node: bool) -> u8 {
        if in_hashmap {
            HASHMAP
        } else if hashmap_node {
            HASHMAP | POSITION
        } else {
            POSITION
        }
    }

    /// Whether `binary` is met for the first time; `own` when the object
    /// pinning it is its holder (a ProcBin, or a SubBits whose BinRef was
    /// new: one met again has ended the pass already). A `Binary` whose
    /// count is 1 has that one holder in the whole VM (why the count can be
    /// trusted while the NIF runs: `ScanVisit::pin` in `walk.rs`), so it
    /// needs no set, unless an OTP ≤ 26 sub-binary slicing this ProcBin was
    /// met before. Such a sub-binary (not its ProcBin's holder, and the
    /// ProcBin is not its child) ends the pass when the ProcBin was visited
    /// already, and otherwise marks the ProcBin in `sliced`; any other goes
    /// through the set.
    fn binary_is_new(
        &mut self,
        binary: OffHeapBinary,
        own: bool,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        if own && binary.refc == 1 {
            return Ok(!self
                .sliced
                .as_ref()
                .is_some_and(|sliced| sliced.contains(binary.holder)));
        }
        if !own {
            if self.visited.contains(binary.holder) {
                return Ok(false);
            }
            self.sliced
                .get_or_insert_with(VisitedSet::new)
                .insert(binary.holder, &mut budget.work)?;
        }
        self.binaries
            .get_or_insert_with(VisitedSet::new)
            .insert(binary.addr, &mut budget.work)
    }

    /// [`TreePass::enter_boxed`] for an object that is not a common shape
    /// (binaries that pin off-heap data, funs, bignums, ...), out of the hot
    /// loop.
    #[inline(never)]
    fn enter_object(
        &mut self,
        addr: usize,
        depth: u32,
        in_hashmap: bool,
        budget: &mut Budget,
    ) -> Result<bool, Stop> {
        // A ProcBin, the common case here, without the general decoder.
        let object = match decode::proc_bin(self.mem, self.layout, addr)? {
            Some(object) => object,
            None => decode::boxed_any(self.mem, self.layout, addr, Detail::OffHeap)?,
        };
        budget.spend(object.words)?;
        let mut sum = Retained {
            words: object.words,
            off_heap_bytes: 0,
            objects: 1,
        };
        if let Some(attached) = object.attached {
            budget.spend(attached.words)?;
            if !self.visited.insert(attached.addr, &mut budget.work)? {
                return Ok(false);
            }
            self.node(attached.addr)?;
            sum.objects += 1;
            if self.mem.is_literal(attached.addr) {
                self.kept.literal_words += attached.words;
            } else {
                sum.words += attached.words;
            }
        }
        if let Some(binary) = object.binary {
            let own =
                binary.holder == addr || object.attached.is_some_and(|a| a.addr == binary.holder);
            if !self.binary_is_new(binary, own, budget)? {
                return Ok(false);
            }
            self.node(binary.addr)?;
            self.kept.off_heap_binaries += 1;
            sum.off_heap_bytes += binary.orig_size;
        }
        self.running += sum.bytes();
        let flags = Self::flags(in_hashmap, object.hashmap_node);
        let walk = Walk::Slots {
            next: object.children,
            end: object.children + object.child_count * WORD_BYTES,
        };
        let frame = Frame {
            walk,
            sum,
            addr,
            depth,
            flags,
        };
        if self.no_pointers(object.children, object.child_count)? {
            // Nothing below it: closed at once, without a frame.
            self.close(frame, None, budget)?;
            return Ok(true);
        }
        self.push_frame(frame, budget).map(|_| true)
    }

    /// Closes the frame on top: its sum goes to its parent, and it is kept
    /// when the search may ask for it.
    fn finish(&mut self, budget: &mut Budget) -> Result<(), Stop> {
        let f = self.frames.pop().expect("a frame to close");
        let list = match f.flags & LIST {
            0 => None,
            _ => Some(self.lists.pop().expect("a list state")),
        };
        self.close(f, list, budget)
    }

    /// Notes a position of what may be a small term (see
    /// [`TreeSizes::small`]); past [`SMALL_POSITIONS`], the term is not.
    #[inline(never)]
    fn note_small(&mut self, addr: usize, sum: Retained) {
        let small = &mut self.kept.small;
        match SmallPosition::new(addr, sum) {
            Some(p) if small.len < SMALL_POSITIONS => {
                small.few[small.len] = p;
                small.len += 1;
            }
            _ => self.kept.every_position = false,
        }
    }

    /// Closes `f`, no longer on the stack (with its list state).
    #[inline(always)]
    fn close(
        &mut self,
        f: Frame,
        list: Option<ListState>,
        budget: &mut Budget,
    ) -> Result<(), Stop> {
        self.raise_bar();
        let root = self.frames.is_empty();
        let keep = root
            || (f.flags & POSITION != 0
                && f.depth as usize <= self.settings.max_depth.saturating_add(1)
                && f.sum.bytes() >= self.bar);
        if self.kept.every_position && !root && f.flags & POSITION != 0 {
            self.note_small(f.addr, f.sum);
        }
        if keep {
            if !root {
                // (The root's sizes are the total: the search never asks.)
                crate::walk::reserve_map(&mut self.kept.values, &mut budget.work)?;
                self.kept.values.insert(f.addr, f.sum);
            }
            if let Some(up) = self
                .frames
                .iter_mut()
                .rev()
                .find(|u| u.flags & POSITION != 0)
            {
                up.flags |= KEPT_BELOW;
            }
            if f.flags & (HASHMAP | KEPT_BELOW) == HASHMAP {
                // A hashmap none of whose values was kept: the search
                // need not read it again.
                crate::walk::reserve_map(&mut self.kept.bare_maps, &mut budget.work)?;
                self.kept.bare_maps.insert(f.addr);
            }
            if let Some(list) = &list {
                let kept = KeptList {
                    len: list.len,
                    starts: self.kept.starts.len() as u32,
                    blocks: self.kept.blocks.len() as u32,
                };
                // The first list kept with nothing under it takes the
                // working arrays whole (a long list's are large).
                keep_tail(
                    &mut self.kept.starts,
                    &mut self.starts,
                    list.starts_from,
                    budget,
                )?;
                keep_tail(
                    &mut self.kept.blocks,
                    &mut self.blocks,
                    list.blocks_from,
                    budget,
                )?;
                if !list.len.is_multiple_of(RUN_BLOCK) {
                    // The last block, partial.
                    budget.room(&mut self.kept.blocks)?;
                    self.kept.blocks.push(list.elements);
                }
                crate::walk::reserve_map(&mut self.kept.lists, &mut budget.work)?;
                self.kept.lists.insert(f.addr, kept);
            }
        }
        if let Some(list) = list {
            self.starts.truncate(list.starts_from as usize);
            self.blocks.truncate(list.blocks_from as usize);
        }
        match self.frames.last_mut() {
            None => self.kept.total = f.sum,
            Some(parent) => {
                parent.sum.add(f.sum);
                if let Walk::Tail(_) = parent.walk {
                    // The head of the element the parent list is reading.
                    self.lists.last_mut().expect("a list state").elem.add(f.sum);
                }
            }
        }
        Ok(())
    }

    /// Reads the list on top along its spine from `cell`, whose cell is
    /// counted: from its head when `head` (`Walk::Head`), else from its
    /// tail (`Walk::Tail`: the head was entered and closed). One loop with
    /// the list's state in locals while the elements need no frame: heads
    /// that are immediates, and small objects [`TreePass::leaf_head`]
    /// closes at once (as [`TreePass::close`] would, without a frame; the
    /// search cannot ask for them). It stops at a head
    /// that needs more (entered, the list waiting at `Walk::Tail`), or at
    /// the end of the list (`Walk::End`, its last tail entered when it is
    /// not `[]`). `Ok(false)`: sharing.
    #[inline(always)]
    fn spine(&mut self, mut cell: usize, head: bool, budget: &mut Budget) -> Result<bool, Stop> {
        let depth = self.frames.last().expect("a list frame").depth + 1;
        let mut list = *self.lists.last().expect("a list state");
        // What the list's frame gains here: cells, and heads closed here.
        let mut gained = Retained::default();
        let mut read_head = head;
        loop {
            if read_head {
                let term = self.mem.word(cell)?;
                if decode::is_immediate(term) {
                    decode::check_immediate(term, cell)?;
                } else {
                    match self.leaf_head(term, cell, budget)? {
                        Head::Closed(sum) => {
                            list.elem.add(sum);
                            gained.add(sum);
                        }
                        Head::Shared => return Ok(false),
                        other => {
                            // The list waits at this cell for its head.
                            *self.lists.last_mut().expect("a list state") = list;
                            let top = self.frames.last_mut().expect("a list frame");
                            top.sum.add(gained);
                            top.walk = Walk::Tail(cell);
                            return match other {
                                Head::Object(addr, shape, tried) => {
                                    self.enter_boxed(addr, shape, depth, false, tried, budget)
                                }
                                _ => self.enter(term, cell, depth, false, budget),
                            };
                        }
                    }
                }
            }
            read_head = true;
            // The element at `cell` is complete.
            list.elements.add(list.elem);
            list.len += 1;
            let block_ends = list.len.is_multiple_of(RUN_BLOCK);
            if block_ends {
                budget.room(&mut self.blocks)?;
                self.blocks.push(list.elements);
                self.most[3] = self.most[3].max(self.blocks.len());
            }
            let tail_at = cell + WORD_BYTES;
            let tail = self.mem.word(tail_at)?;
            if tail & PRIMARY_MASK == PRIMARY_LIST {
                let Word::List(next) = classify(tail, tail_at)? else {
                    return Err(Stop::Layout(LayoutError::new(
                        "term word of an unexpected tag",
                        tail_at,
                        tail,
                    )));
                };
                // A literal tail weighs nothing and is no element: entered
                // below, as the end of the list.
                if !self.mem.is_literal(next) {
                    if !self.visited.insert(next, &mut budget.work)? {
                        return Ok(false);
                    }
                    self.node(next)?;
                    budget.spend(CONS_WORDS)?;
                    self.running += CELL.bytes();
                    gained.add(CELL);
                    list.elem = CELL;
                    if block_ends {
                        budget.room(&mut self.starts)?;
                        self.starts.push(next);
                        self.most[2] = self.most[2].max(self.starts.len());
                    }
                    cell = next;
                    continue;
                }
            }
            *self.lists.last_mut().expect("a list state") = list;
            let top = self.frames.last_mut().expect("a list frame");
            top.sum.add(gained);
            top.walk = Walk::End;
            return match classify(tail, tail_at)? {
                Word::Immediate => Ok(true),
                // An improper tail: the list's, no element's.
                Word::Boxed(_) => self.enter(tail, tail_at, depth, false, budget),
                Word::List(_) => self.enter(tail, tail_at, 0, false, budget),
            };
        }
    }

    /// A list head `term` (read at `cell`, not an immediate): closed here
    /// when it is a common object whose slots [`TreePass::flat_slots`]
    /// takes and that retains under [`KEEP_FLOOR`] bytes, so no position
    /// the search may ask for (marked, counted, and noted as a small term's
    /// position, as [`TreePass::close`] would); otherwise what the spine
    /// must do with it.
    #[inline(always)]
    fn leaf_head(&mut self, term: u64, cell: usize, budget: &mut Budget) -> Result<Head, Stop> {
        if term & PRIMARY_MASK != PRIMARY_BOXED {
            return Ok(Head::Other);
        }
        let Word::Boxed(addr) = classify(term, cell)? else {
            return Ok(Head::Other);
        };
        if self.mem.is_literal(addr) {
            return Ok(Head::Other);
        }
        if !self.visited.insert(addr, &mut budget.work)? {
            return Ok(Head::Shared);
        }
        self.node(addr)?;
        let shape = decode::shape(self.mem, self.layout, addr, Detail::OffHeap)?;
        let Some(own) = shape.filter(|s| s.attached == 0 && !s.hashmap_node) else {
            return Ok(Head::Object(addr, shape, false));
        };
        let Some(below) = self.flat_slots(own.children, own.child_count)? else {
            return Ok(Head::Object(addr, shape, true));
        };
        let mut sum = Retained {
            words: own.words,
            off_heap_bytes: 0,
            objects: 1,
        };
        sum.add(below);
        if sum.bytes() >= KEEP_FLOOR {
            // It may be kept: the general way.
            return Ok(Head::Object(addr, shape, false));
        }
        budget.spend(own.words)?;
        self.running += own.words * WORD_BYTES as u64;
        if below.objects != 0
            && self
                .count_slots::<true>(own.children, own.child_count, budget)?
                .is_none()
        {
            return Ok(Head::Shared);
        }
        if self.kept.every_position {
            self.note_small(addr, sum);
        }
        Ok(Head::Closed(sum))
    }

    /// Takes [`keep_bar`] again once the bytes counted have doubled.
    #[inline(always)]
    fn raise_bar(&mut self) {
        if self.running >= self.bar_running.saturating_mul(2) {
            self.bar_running = self.running;
            self.bar = keep_bar(self.running, self.settings.min_share);
        }
    }

    /// Whether the term is a tree: its sizes are then in `kept`, and the
    /// literals left out in `clean` (as [`Graph::build`] leaves them out).
    fn run(&mut self, root: u64, budget: &mut Budget) -> Result<bool, Stop> {
        if let Word::List(a) | Word::Boxed(a) = classify(root, 0)? {
            if self.mem.is_literal(a) {
                // A literal root: its literals are positions; the graph.
                return Ok(false);
            }
        }
        if !self.enter(root, 0, 0, false, budget)? {
            return Ok(false);
        }
        while let Some(top) = self.frames.last_mut() {
            let found = match top.walk {
                Walk::Slots { mut next, end } if next < end => {
                    // Past the immediates to the next slot that points.
                    let mut term = self.mem.word(next)?;
                    while classify(term, next)? == Word::Immediate {
                        next += WORD_BYTES;
                        if next == end {
                            break;
                        }
                        term = self.mem.word(next)?;
                    }
                    let top = self.frames.last_mut().expect("a frame");
                    if next == end {
                        top.walk = Walk::Slots { next, end };
                        continue;
                    }
                    top.walk = Walk::Slots {
                        next: next + WORD_BYTES,
                        end,
                    };
                    let depth = top.depth + u32::from(top.flags & POSITION != 0);
                    let hashmap = top.flags & HASHMAP != 0;
                    self.enter(term, next, depth, hashmap, budget)?
                }
                Walk::Head(cell) => self.spine(cell, true, budget)?,
                Walk::Tail(cell) => self.spine(cell, false, budget)?,
                Walk::Slots { .. } | Walk::End => {
                    self.finish(budget)?;
                    true
                }
            };
            if !found {
                return Ok(false);
            }
        }
        // As for the graph: what the arrays held at their largest, growth
        // slack aside (the hash maps at one slot and a control byte per entry).
        let k = &mut self.kept;
        let [frames, lists, starts, blocks] = self.most;
        k.peak_bytes = (frames * std::mem::size_of::<Frame>()
            + lists * std::mem::size_of::<ListState>()
            + starts * std::mem::size_of::<usize>()
            + k.starts.len() * std::mem::size_of::<usize>()
            + (blocks + k.blocks.len()) * std::mem::size_of::<Retained>()
            + k.values.len() * (std::mem::size_of::<(usize, Retained)>() + 1)
            + k.lists.len() * (std::mem::size_of::<(usize, KeptList)>() + 1)
            + k.bare_maps.len() * (std::mem::size_of::<usize>() + 1)
            + self.binaries.as_ref().map_or(0, VisitedSet::bytes)
            + self.sliced.as_ref().map_or(0, VisitedSet::bytes)
            + k.small.len() * std::mem::size_of::<SmallPosition>()) as u64;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_vec_keeps_its_order_across_the_move_to_the_heap() {
        let mut budget = Budget::unlimited();
        let mut v: SmallVec<u32, 4> = SmallVec::new(0);
        let mut model = Vec::new();
        // Push past the inline slots, pop back under them, push again.
        for round in 0..3u32 {
            for i in 0..7 {
                v.push(round * 100 + i, &mut budget).unwrap();
                model.push(round * 100 + i);
                assert_eq!(v.as_slice(), model.as_slice());
            }
            for _ in 0..5 {
                assert_eq!(v.pop(), model.pop());
                assert_eq!(v.as_slice(), model.as_slice());
            }
        }
        v.as_mut_slice()[0] = 7;
        model[0] = 7;
        v.truncate(3);
        model.truncate(3);
        assert_eq!(v.as_slice(), model.as_slice());
        while let Some(x) = v.pop() {
            assert_eq!(Some(x), model.pop());
        }
        assert!(model.is_empty() && v.is_empty());
    }

    #[test]
    fn a_small_vec_moving_to_the_heap_is_charged_to_the_walk() {
        let mut budget = Budget::unlimited().with_memory_limit(0);
        let mut v: SmallVec<u64, 2> = SmallVec::new(0);
        v.push(1, &mut budget).unwrap();
        v.push(2, &mut budget).unwrap();
        assert_eq!(v.push(3, &mut budget), Err(Stop::OutOfMemory));
    }
}

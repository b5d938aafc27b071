//! The walks. None recurses: pending children are kept as (address, count)
//! ranges on an explicit stack, so a list or tuple nested a million levels
//! deep costs heap memory, not native stack.
//!
//! * [`flat_words`] counts every path, as `erts_debug:flat_size/1` does, and
//!   stops once a path limit is passed (a shared term can have far more paths
//!   than words).
//! * [`scan`] visits each distinct object once: shared words, literal words,
//!   off-heap binaries, and whether any object was reached twice.
//! * [`flat_words_dag`] gives the flat size in time linear in the distinct
//!   objects: paths are counted per object in topological order.
//! * [`flat`] and [`term_size`] pick between them.
//!
//! An object with an attached part (OTP 27: a SubBits and its BinRef, a local
//! fun and its FunRef; [`crate::decode::Attached`]) is counted with that part
//! on every path by the flat walks, as a copy would take it, and the part
//! once by its own address by [`scan`], as `erts_debug:size_shared/1` does.
//!
//! Every walk spends from a [`Work`] allowance; on a normal scheduler it is
//! about a millisecond of work, and running out stops the walk with
//! [`Stop::Budget`] so the caller can start again on a dirty scheduler.

use std::collections::HashMap;

use crate::decode::{self, classify, Detail, LayoutError, Object, OffHeapBinary, Shape, Word};
use crate::layout::Layout;
use crate::memory::Memory;
use crate::tags::{CONS_WORDS, PRIMARY_BOXED, PRIMARY_LIST, PRIMARY_MASK, WORD_BYTES};
use crate::visited::{fixed_hasher, VisitedSet};

/// Why a walk ended without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The work allowance ran out; nothing is wrong with the term.
    Budget,
    /// The memory did not look like the layout says it must.
    Layout(LayoutError),
    /// The flat size does not fit in 128 bits.
    Overflow,
    /// The walk's own memory would pass its limit ([`Work::with_memory_limit`]),
    /// or the allocator refused it: the walk ends, the VM does not.
    OutOfMemory,
}

impl From<LayoutError> for Stop {
    fn from(e: LayoutError) -> Self {
        Stop::Layout(e)
    }
}

/// A work allowance, in words visited (plus one per object), an optional
/// deadline on a clock, and the bytes the walk may allocate for its own
/// bookkeeping (stacks, visited sets, the DAG walk's graph).
///
/// The words are handed out in chunks of [`CLOCK_CHECK_WORDS`]: the hot loops
/// compare against what is left of the current chunk only, and the clock is
/// read when a chunk runs out, so a time limit costs no work per word.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// Left in the current chunk.
    remaining: u64,
    /// Left beyond the current chunk.
    reserve: u64,
    deadline: Option<Deadline>,
    /// The clock's reading at the first chunk boundary: the deadline counts
    /// from there, so a walk that ends within one chunk reads no clock.
    clock_start: Option<u64>,
    memory: u64,
}

/// A time allowance on a clock the caller supplies (the walker reads no clock
/// of its own): the NIF passes the scheduler thread's CPU time, which a
/// preempted thread does not spend. It counts from the first chunk boundary
/// (the first [`CLOCK_CHECK_WORDS`] words are not timed, so small walks never
/// pay for a clock read).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub now: fn() -> u64,
    /// Clock units allowed after the first reading.
    pub after: u64,
}

/// Words between two reads of the clock: a few microseconds of walking.
pub const CLOCK_CHECK_WORDS: u64 = 4096;

impl Work {
    pub fn limited(words: u64) -> Self {
        Work {
            remaining: words,
            reserve: 0,
            deadline: None,
            clock_start: None,
            memory: u64::MAX,
        }
    }

    pub fn unlimited() -> Self {
        Self::limited(u64::MAX)
    }

    /// The same allowance, ending also when `deadline` passes.
    pub fn with_deadline(self, deadline: Deadline) -> Self {
        let total = self.remaining.saturating_add(self.reserve);
        let chunk = total.min(CLOCK_CHECK_WORDS);
        Work {
            remaining: chunk,
            reserve: total - chunk,
            deadline: Some(deadline),
            ..self
        }
    }

    /// The same allowance with at most `bytes` of the walk's own memory.
    pub fn with_memory_limit(self, bytes: u64) -> Self {
        Work {
            memory: bytes,
            ..self
        }
    }

    #[inline]
    pub(crate) fn spend(&mut self, object_words: u64) -> Result<(), Stop> {
        let cost = object_words + 1;
        if cost > self.remaining {
            return self.next_chunk(cost);
        }
        self.remaining -= cost;
        Ok(())
    }

    /// Spends `cost` when the current chunk cannot: takes the next chunk if
    /// the words and the clock allow it.
    #[cold]
    fn next_chunk(&mut self, cost: u64) -> Result<(), Stop> {
        let available = self.remaining.saturating_add(self.reserve);
        let past_deadline = match self.deadline {
            None => false,
            Some(deadline) => {
                let now = (deadline.now)();
                match self.clock_start {
                    // The first reading starts the timing.
                    None => {
                        self.clock_start = Some(now);
                        false
                    }
                    Some(start) => now.saturating_sub(start) >= deadline.after,
                }
            }
        };
        if cost > available || past_deadline {
            self.remaining = 0;
            self.reserve = 0;
            return Err(Stop::Budget);
        }
        let left = available - cost;
        self.remaining = left.min(CLOCK_CHECK_WORDS);
        self.reserve = left - self.remaining;
        Ok(())
    }

    /// Charges `cost` that was already spent, without failing: what is left
    /// goes down to zero at most (the next `spend` then stops). Within the
    /// current chunk no clock is read.
    fn next_chunk_or_drain(&mut self, cost: u64) {
        if cost <= self.remaining {
            self.remaining -= cost;
        } else if self.next_chunk(cost).is_err() {
            self.remaining = 0;
            self.reserve = 0;
        }
    }

    /// Takes `bytes` from the memory allowance.
    #[inline]
    pub(crate) fn allocate(&mut self, bytes: usize) -> Result<(), Stop> {
        let bytes = bytes as u64;
        if bytes > self.memory {
            return Err(Stop::OutOfMemory);
        }
        self.memory -= bytes;
        Ok(())
    }
}

/// Makes room for one more element, charging the growth to `work` and
/// asking the allocator without aborting on failure. Every collection a
/// walk grows goes through this or [`reserve_map`].
#[inline]
pub(crate) fn reserve<T>(v: &mut Vec<T>, work: &mut Work) -> Result<(), Stop> {
    if v.len() < v.capacity() {
        return Ok(());
    }
    grow(v, work)
}

#[cold]
fn grow<T>(v: &mut Vec<T>, work: &mut Work) -> Result<(), Stop> {
    let extra = v.capacity().max(16);
    work.allocate(extra.saturating_mul(std::mem::size_of::<T>()))?;
    v.try_reserve(extra).map_err(|_| Stop::OutOfMemory)
}

/// The hash maps and sets a walk grows.
pub(crate) trait Table {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn slot_bytes(&self) -> usize;
    fn try_reserve(&mut self, extra: usize) -> Result<(), std::collections::TryReserveError>;
}

impl<K: Eq + std::hash::Hash, V, S: std::hash::BuildHasher> Table
    for std::collections::HashMap<K, V, S>
{
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn slot_bytes(&self) -> usize {
        std::mem::size_of::<(K, V)>() + 1
    }
    fn try_reserve(&mut self, extra: usize) -> Result<(), std::collections::TryReserveError> {
        self.try_reserve(extra)
    }
}

impl<K: Eq + std::hash::Hash, S: std::hash::BuildHasher> Table for std::collections::HashSet<K, S> {
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn slot_bytes(&self) -> usize {
        std::mem::size_of::<K>() + 1
    }
    fn try_reserve(&mut self, extra: usize) -> Result<(), std::collections::TryReserveError> {
        self.try_reserve(extra)
    }
}

/// [`reserve`] for hash maps and sets (a slot costs the entry and a control
/// byte).
#[inline]
pub(crate) fn reserve_map<T: Table + ?Sized>(m: &mut T, work: &mut Work) -> Result<(), Stop> {
    if m.len() < m.capacity() {
        return Ok(());
    }
    let extra = m.capacity().max(16);
    work.allocate(extra.saturating_mul(m.slot_bytes()))?;
    m.try_reserve(extra).map_err(|_| Stop::OutOfMemory)
}

/// Decodes the object a term word points to, or `None` for an immediate.
#[inline]
fn object_of<M: Memory>(
    mem: &M,
    layout: &Layout,
    term: u64,
    at: usize,
) -> Result<Option<(usize, Object)>, Stop> {
    Ok(match classify(term, at)? {
        Word::Immediate => None,
        Word::List(addr) => Some((addr, Object::cons(addr))),
        Word::Boxed(addr) => Some((addr, decode::boxed(mem, layout, addr, Detail::Words)?)),
    })
}

/// Ranges of term words still to visit: (address of the next word, count).
/// The top few are kept inline, so a small term's walk allocates nothing;
/// when they are full they move to the heap together, and come back
/// together when the inline ones are used up. `len` is touched only by the
/// inlined methods (the out-of-line ones get the arrays, not `self`), so it
/// stays in a register.
struct Pending {
    few: [(usize, usize); PENDING_INLINE],
    len: usize,
    more: Vec<(usize, usize)>,
}

/// Eight: zeroing them is a few stores, where sixteen took a call to memset
/// on every walk.
const PENDING_INLINE: usize = 8;

impl Pending {
    #[inline(always)]
    fn new() -> Self {
        Pending {
            few: [(0, 0); PENDING_INLINE],
            len: 0,
            more: Vec::new(),
        }
    }

    #[inline(always)]
    fn push(&mut self, range: (usize, usize), work: &mut Work) -> Result<(), Stop> {
        if self.len == PENDING_INLINE {
            spill(&self.few, &mut self.more, work)?;
            self.len = 0;
        }
        self.few[self.len] = range;
        self.len += 1;
        Ok(())
    }

    #[inline(always)]
    fn pop(&mut self) -> Option<(usize, usize)> {
        if self.len == 0 {
            self.len = refill(&mut self.few, &mut self.more);
            if self.len == 0 {
                return None;
            }
        }
        self.len -= 1;
        Some(self.few[self.len])
    }
}

/// The inline ranges, all in use, move to the heap (oldest first).
#[cold]
#[inline(never)]
fn spill(
    few: &[(usize, usize); PENDING_INLINE],
    more: &mut Vec<(usize, usize)>,
    work: &mut Work,
) -> Result<(), Stop> {
    if more.capacity() - more.len() < PENDING_INLINE {
        let extra = more.capacity().max(4 * PENDING_INLINE);
        work.allocate(extra.saturating_mul(std::mem::size_of::<(usize, usize)>()))?;
        more.try_reserve(extra).map_err(|_| Stop::OutOfMemory)?;
    }
    more.extend_from_slice(few);
    Ok(())
}

/// The newest ranges on the heap come back inline; how many.
#[cold]
#[inline(never)]
fn refill(few: &mut [(usize, usize); PENDING_INLINE], more: &mut Vec<(usize, usize)>) -> usize {
    let count = more.len().min(PENDING_INLINE);
    let from = more.len() - count;
    few[..count].copy_from_slice(&more[from..]);
    more.truncate(from);
    count
}

/// What a walk does with each object it reaches (once per path). Both
/// methods are inlined into [`traverse`]: they are the only per-object work
/// besides the decoding.
trait Visitor {
    /// A cons cell at `addr`: whether to read its head and tail.
    fn cons(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop>;
    /// A common boxed object at `addr` ([`decode::shape`]): whether to read
    /// its children.
    fn shape(&mut self, addr: usize, shape: &Shape, work: &mut Work) -> Result<bool, Stop>;
    /// Any other boxed object at `addr`: whether to read its children.
    fn boxed(&mut self, addr: usize, object: &Object, work: &mut Work) -> Result<bool, Stop>;
    /// A ProcBin or SubBits at `addr` ([`decode::pinning_shape`], walks at
    /// [`Detail::OffHeap`] only) whose `Binary*` is `binary`, not read yet.
    /// It has no children.
    fn pinning(
        &mut self,
        addr: usize,
        shape: &Shape,
        binary: usize,
        work: &mut Work,
    ) -> Result<(), Stop>;
}

/// A boxed object that is not one of the common shapes, decoded and visited
/// out of the hot loop: the range of its children to read (count 0 for none).
#[inline(never)]
fn rare<M: Memory, V: Visitor>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    detail: Detail,
    work: &mut Work,
    visit: &mut V,
) -> Result<(usize, usize), Stop> {
    // Off the hot path, so that a walk of terms without binaries does not
    // pay for it.
    if detail == Detail::OffHeap {
        if let Some((shape, binary)) = decode::pinning_shape(mem, layout, addr)? {
            visit.pinning(addr, &shape, binary, work)?;
            return Ok((0, 0));
        }
    }
    let object = decode::boxed_any(mem, layout, addr, detail)?;
    Ok(match visit.boxed(addr, &object, work)? {
        true => (object.children, object.child_count),
        false => (0, 0),
    })
}

/// A list cell's head `head` (read at `at`, not an immediate) when it is
/// boxed and one of the common shapes: decoded and visited, and its
/// children checked up to the first that is not an immediate (its index, or
/// the child count when all are). A child count of 0 when the visit does
/// not descend. `None` for a list head or any other object, which the
/// caller walks the general way (nothing has been visited then).
#[inline(always)]
fn boxed_head<M: Memory, V: Visitor>(
    mem: &M,
    layout: &Layout,
    head: u64,
    at: usize,
    detail: Detail,
    work: &mut Work,
    visit: &mut V,
) -> Result<Option<(Shape, usize)>, Stop> {
    if head & PRIMARY_MASK != PRIMARY_BOXED {
        return Ok(None);
    }
    let Word::Boxed(addr) = classify(head, at)? else {
        return unreachable_tag(head, at);
    };
    let Some(mut shape) = decode::shape(mem, layout, addr, detail)? else {
        return Ok(None);
    };
    if !visit.shape(addr, &shape, work)? {
        shape.child_count = 0;
        return Ok(Some((shape, 0)));
    }
    for k in 0..shape.child_count {
        let child_at = shape.children + k * WORD_BYTES;
        let child = mem.word(child_at)?;
        if !decode::is_immediate(child) {
            return Ok(Some((shape, k)));
        }
        decode::check_immediate(child, child_at)?;
    }
    Ok(Some((shape, shape.child_count)))
}

/// The address of a list term `word` read at `at`, checked as [`classify`]
/// checks it.
#[inline(always)]
fn list_address(word: u64, at: usize) -> Result<usize, Stop> {
    match classify(word, at)? {
        Word::List(addr) => Ok(addr),
        _ => unreachable_tag(word, at),
    }
}

#[cold]
#[inline(never)]
fn unreachable_tag<T>(word: u64, at: usize) -> Result<T, Stop> {
    Err(Stop::Layout(LayoutError::new(
        "term word of an unexpected tag",
        at,
        word,
    )))
}

/// Depth-first traversal with an explicit stack. `visit` sees each object
/// reached (once per path) and says whether to descend into its children.
///
/// The range of term words being read is kept in locals, and immediates in
/// it are checked and skipped in a tight loop; only a range left unfinished
/// when the walk descends goes to the stack. A list spine is followed in a
/// loop of its own: each cell's head and tail are read together, an
/// immediate head is checked on the spot, and a head that is not an
/// immediate is walked first with the tail as the range to read after it,
/// so a long list never touches the stack unless its elements have children.
#[inline(always)]
fn traverse<M, V>(
    mem: &M,
    layout: &Layout,
    root: u64,
    detail: Detail,
    work: &mut Work,
    visit: &mut V,
) -> Result<(), Stop>
where
    M: Memory,
    V: Visitor,
{
    let mut pending = Pending::new();
    // The range being read: the next word's address and how many are left.
    let mut next = 0usize;
    let mut left = 0usize;
    let mut term = root;
    let mut at = 0usize;
    'term: loop {
        // `term` (read at `at`) is the root or a word that is not an
        // immediate; its children, if any, become the range to read.
        let tag = term & PRIMARY_MASK;
        if tag == PRIMARY_LIST {
            let mut addr = list_address(term, at)?;
            while visit.cons(addr, work)? {
                let head = mem.word(addr)?;
                let tail_at = addr + WORD_BYTES;
                let tail = mem.word(tail_at)?;
                if decode::is_immediate(head) {
                    decode::check_immediate(head, addr)?;
                } else if let Some((object, first)) =
                    boxed_head(mem, layout, head, addr, detail, work, visit)?
                {
                    // A common object whose children are immediates up to
                    // `first`: it is done here, on with the tail, unless a
                    // child has children of its own. Then that child first,
                    // the rest of the object's children, and the tail.
                    if first < object.child_count {
                        if left > 0 {
                            pending.push((next, left), work)?;
                        }
                        at = object.children + first * WORD_BYTES;
                        let rest = object.child_count - first - 1;
                        if rest > 0 {
                            pending.push((tail_at, 1), work)?;
                            (next, left) = (at + WORD_BYTES, rest);
                        } else {
                            (next, left) = (tail_at, 1);
                        }
                        term = mem.word(at)?;
                        continue 'term;
                    }
                } else {
                    // The head first, then the tail.
                    if left > 0 {
                        pending.push((next, left), work)?;
                    }
                    next = tail_at;
                    left = 1;
                    term = head;
                    at = addr;
                    continue 'term;
                }
                if tail & PRIMARY_MASK == PRIMARY_LIST {
                    addr = list_address(tail, tail_at)?;
                    continue;
                }
                if decode::is_immediate(tail) {
                    decode::check_immediate(tail, tail_at)?;
                    break;
                }
                // An improper list's last tail (or a word no term has).
                term = tail;
                at = tail_at;
                continue 'term;
            }
        } else if tag == PRIMARY_BOXED {
            let Word::Boxed(addr) = classify(term, at)? else {
                return unreachable_tag(term, at);
            };
            let children = match decode::shape(mem, layout, addr, detail)? {
                Some(shape) => match visit.shape(addr, &shape, work)? {
                    true => (shape.children, shape.child_count),
                    false => (0, 0),
                },
                None => rare(mem, layout, addr, detail, work, visit)?,
            };
            if children.1 > 0 {
                if left > 0 {
                    pending.push((next, left), work)?;
                }
                (next, left) = children;
            }
        } else {
            // An immediate root, or a header word where a term must be.
            classify(term, at)?;
        }
        // The next word that is not an immediate.
        loop {
            if left == 0 {
                match pending.pop() {
                    None => return Ok(()),
                    Some((first, count)) => {
                        next = first;
                        left = count;
                    }
                }
            }
            at = next;
            term = mem.word(at)?;
            next += WORD_BYTES;
            left -= 1;
            if !decode::is_immediate(term) {
                break;
            }
            decode::check_immediate(term, at)?;
        }
    }
}

/// The flat walk's counting: one counter serves every limit, so the hot
/// loop does a single compare against `cap`, the nearest of the path limit
/// and the end of the work chunk; only when it is passed does it find out
/// which.
struct FlatCount {
    total: u64,
    charged: u64,
    cap: u64,
    path_limit: u64,
}

impl FlatCount {
    #[inline(always)]
    fn add(&mut self, words: u64, work: &mut Work) -> Result<bool, Stop> {
        self.total += words;
        if self.total > self.cap {
            self.passed_cap(work)?;
        }
        Ok(true)
    }

    #[cold]
    #[inline(never)]
    fn passed_cap(&mut self, work: &mut Work) -> Result<(), Stop> {
        if self.total > self.path_limit {
            return Err(Stop::Budget);
        }
        // The chunk ran out: charge what was counted, take the next one.
        work.next_chunk(self.total - self.charged)?;
        self.charged = self.total;
        self.cap = self
            .path_limit
            .min(self.total.saturating_add(work.remaining));
        Ok(())
    }
}

impl Visitor for FlatCount {
    #[inline(always)]
    fn cons(&mut self, _addr: usize, work: &mut Work) -> Result<bool, Stop> {
        self.add(CONS_WORDS, work)
    }

    #[inline(always)]
    fn shape(&mut self, _addr: usize, shape: &Shape, work: &mut Work) -> Result<bool, Stop> {
        self.add(shape.flat_words(), work)
    }

    #[inline(always)]
    fn boxed(&mut self, _addr: usize, object: &Object, work: &mut Work) -> Result<bool, Stop> {
        self.add(object.flat_words(), work)
    }

    fn pinning(
        &mut self,
        addr: usize,
        shape: &Shape,
        _binary: usize,
        work: &mut Work,
    ) -> Result<(), Stop> {
        self.shape(addr, shape, work).map(|_| ())
    }
}

/// Flat words of `root`, counting every path like `erts_debug:flat_size/1`;
/// `None` as soon as more than `path_limit` words have been counted.
pub fn flat_words<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    path_limit: u64,
    work: &mut Work,
) -> Result<Option<u64>, Stop> {
    counted_flat_words(mem, layout, root, path_limit, work)
}

/// [`flat_words`], inlined where it is called.
#[inline(always)]
fn counted_flat_words<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    path_limit: u64,
    work: &mut Work,
) -> Result<Option<u64>, Stop> {
    let mut count = FlatCount {
        total: 0,
        charged: 0,
        cap: path_limit.min(work.remaining),
        path_limit,
    };
    let result = traverse(mem, layout, root, Detail::Words, work, &mut count);
    let FlatCount { total, charged, .. } = count;
    match result {
        Ok(()) => {
            work.next_chunk_or_drain(total - charged);
            Ok(Some(total))
        }
        Err(Stop::Budget) if total > path_limit => {
            work.next_chunk_or_drain(total.min(path_limit) - charged);
            Ok(None)
        }
        Err(stop) => Err(stop),
    }
}

/// What one visit of each distinct object finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Words of distinct objects outside the literal area.
    pub shared_words: u64,
    /// Words of distinct objects inside the literal area.
    pub literal_words: u64,
    /// The part of `shared_words` that is hashmap nodes (heads and inner
    /// nodes): what `erts_debug:size_shared/1` counts a second time.
    pub hashmap_node_words: u64,
    /// Distinct off-heap `Binary`s kept alive, and their allocated bytes.
    pub off_heap_binaries: u64,
    pub off_heap_bytes: u64,
    /// Words of attached objects (OTP 27 BinRefs and FunRefs) met again
    /// through another distinct owner. They count once in the words above,
    /// as in `erts_debug:size_shared/1`; `erts_debug:size/1` counts them with
    /// every owner (docs/LAYOUT.md §4), so it is
    /// [`Scan::erts_size_words`]. Always 0 on layouts without attached objects.
    pub attached_repeat_words: u64,
    /// Whether some object was reached more than once (sharing).
    pub repeats: bool,
}

impl Scan {
    pub fn distinct_words(&self) -> u64 {
        self.shared_words + self.literal_words
    }

    /// What `erts_debug:size/1` counts: each distinct object once, literal or
    /// not, with its attached object counted once per owner.
    pub fn erts_size_words(&self) -> u64 {
        self.distinct_words() + self.attached_repeat_words
    }
}

/// Visits each distinct object of `root` once (identity = address). With
/// `Detail::Words` the off-heap fields stay zero.
pub fn scan<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    detail: Detail,
    work: &mut Work,
) -> Result<Scan, Stop> {
    // What is met again matters only to the flat size: not looked at here.
    scan_with_repeats::<M, false>(mem, layout, root, detail, work).map(|(found, _)| found)
}

/// What a scan learns of the objects it meets again, for the flat size.
#[derive(Clone, Copy, Debug, Default)]
struct Repeats {
    /// The flat words of every repeated object whose children are all
    /// immediates: what each such path adds to the flat size.
    leaf_words: u64,
    /// Whether an object with children that are not immediates (or too many
    /// to look at) was met again: then only a walk of every path, or the
    /// DAG walk, gives the flat size.
    deep: bool,
}

impl Repeats {
    /// `object` was reached again.
    #[cold]
    #[inline(never)]
    fn met_again<M: Memory>(&mut self, mem: &M, object: &Object) -> Result<(), Stop> {
        if only_immediate_children(mem, object)? {
            self.leaf_words += object.flat_words();
        } else {
            self.deep = true;
        }
        Ok(())
    }
}

/// Children a repeated object may have for [`Repeats::leaf_words`] to take it.
const REPEAT_LEAF_CHILDREN: usize = 32;

/// Whether every child word of `object` is an immediate (they were checked
/// when the object was first visited).
fn only_immediate_children<M: Memory>(mem: &M, object: &Object) -> Result<bool, Stop> {
    if object.child_count > REPEAT_LEAF_CHILDREN {
        return Ok(false);
    }
    for k in 0..object.child_count {
        if !decode::is_immediate(mem.word(object.children + k * WORD_BYTES)?) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The scan's bookkeeping: what it found, what it met again, and the
/// objects and off-heap `Binary`s already seen.
/// `REPEATS`: whether to learn what [`Repeats`] says of the objects met
/// again (for `term_size`'s flat size; a scan alone needs only whether any is).
struct ScanVisit<'m, M, const REPEATS: bool> {
    mem: &'m M,
    layout: &'m Layout,
    /// Work spent, of which `charged` is charged to the allowance already;
    /// `cap` is where the current chunk ends (as in [`FlatCount`]).
    spent: u64,
    charged: u64,
    cap: u64,
    result: Scan,
    repeats: Repeats,
    visited: VisitedSet,
    /// Off-heap `Binary`s seen: by address, as objects are (they sit close
    /// together in the binary allocator's carriers). Made at the first one:
    /// most terms pin none, and a set costs a small scan its initialisation.
    /// Only a `Binary` whose count says it has other holders goes in
    /// ([`ScanVisit::pin`]).
    binaries: Option<VisitedSet>,
    /// ProcBins and SubBits met for the first time whose `Binary` is
    /// prefetched and not read yet, oldest at `ahead_first`: the object's
    /// address, its lowest bit set when its `Binary` is not to be counted
    /// (a SubBits whose BinRef was met before). The `Binary` is a cache
    /// miss; read [`READ_AHEAD`] objects later, it has arrived. Made at the
    /// first (a scan of a term without any sets none up).
    ahead: Option<Box<[usize; READ_AHEAD]>>,
    ahead_first: usize,
    ahead_len: usize,
    /// OTP ≤ 26 sub-binaries' `Binary`s, one per ProcBin they are slices of
    /// (`origs`): counted at the end, unless that ProcBin was visited
    /// itself and counted it ([`ScanVisit::finish`]).
    origs: Option<VisitedSet>,
    via_orig: Vec<OffHeapBinary>,
}

/// The read-ahead ring of a scan, made at its first binary.
#[cold]
#[inline(never)]
fn new_ahead<'a>(
    ahead: &'a mut Option<Box<[usize; READ_AHEAD]>>,
    work: &mut Work,
) -> Result<&'a mut Box<[usize; READ_AHEAD]>, Stop> {
    work.allocate(std::mem::size_of::<[usize; READ_AHEAD]>())?;
    Ok(ahead.insert(Box::new([0; READ_AHEAD])))
}

/// Objects between prefetching a `Binary` and reading it (a power of two):
/// on the 50k refc binaries of bench/term_size.exs 32 beat 8 clearly and
/// 64 did not beat 32.
const READ_AHEAD: usize = 32;

impl<M: Memory, const REPEATS: bool> ScanVisit<'_, M, REPEATS> {
    /// `object` at `addr` was reached again: no descent.
    #[cold]
    #[inline(never)]
    fn again(&mut self, object: &Object, work: &mut Work) -> Result<bool, Stop> {
        self.result.repeats = true;
        if REPEATS && !self.repeats.deep {
            self.spend(object.child_count as u64, work)?;
            self.repeats.met_again(self.mem, object)?;
        }
        Ok(false)
    }

    /// Spends an object of `words` words: one unit per word and one more.
    #[inline(always)]
    fn spend(&mut self, words: u64, work: &mut Work) -> Result<(), Stop> {
        self.spent += words + 1;
        if self.spent > self.cap {
            self.charge(work)?;
        }
        Ok(())
    }

    /// The current chunk ran out: charge what was spent, take the next one.
    #[cold]
    #[inline(never)]
    fn charge(&mut self, work: &mut Work) -> Result<(), Stop> {
        work.next_chunk(self.spent - self.charged)?;
        self.charged = self.spent;
        self.cap = self.spent.saturating_add(work.remaining);
        Ok(())
    }

    /// Counts `words` at `addr` once.
    #[inline(always)]
    fn count(&mut self, addr: usize, words: u64) {
        if self.mem.is_literal(addr) {
            self.result.literal_words += words;
        } else {
            self.result.shared_words += words;
        }
    }

    /// An object of `words` words at `addr`, met for the first time: spent
    /// and counted (literal or not, and as a hashmap node).
    #[inline(always)]
    fn first_visit(
        &mut self,
        addr: usize,
        words: u64,
        hashmap_node: bool,
        work: &mut Work,
    ) -> Result<(), Stop> {
        self.spend(words, work)?;
        if self.mem.is_literal(addr) {
            self.result.literal_words += words;
        } else {
            self.result.shared_words += words;
            if hashmap_node {
                self.result.hashmap_node_words += words;
            }
        }
        Ok(())
    }

    /// The attached object at `addr` of an object seen for the first time:
    /// counted once by its own address. Whether it was new.
    #[inline(always)]
    fn attached(&mut self, addr: usize, words: u64, work: &mut Work) -> Result<bool, Stop> {
        if self.visited.insert(addr, work)? {
            self.spend(words, work)?;
            self.count(addr, words);
            Ok(true)
        } else {
            // A copy would take it again with this owner.
            self.result.repeats = true;
            self.result.attached_repeat_words += words;
            Ok(false)
        }
    }

    /// The attached object and the off-heap `Binary` of the object at `addr`,
    /// seen for the first time (rare: OTP 27 BinRefs and FunRefs, refc
    /// binaries the fast decoder left to the general one).
    #[cold]
    #[inline(never)]
    fn extras(&mut self, addr: usize, object: &Object, work: &mut Work) -> Result<(), Stop> {
        let mut attached_new = false;
        if let Some(attached) = object.attached {
            attached_new = self.attached(attached.addr, attached.words, work)?;
        }
        if let Some(binary) = object.binary {
            if binary.holder == addr {
                // A ProcBin, met for the first time.
                self.pin(binary, true, work)?;
            } else if object.attached.is_some_and(|a| a.addr == binary.holder) {
                // A SubBits: its BinRef holds the reference.
                self.pin(binary, attached_new, work)?;
            } else {
                self.via_orig(binary, work)?;
            }
        }
        Ok(())
    }

    /// The `Binary` of a ProcBin or BinRef (`binary.holder`) met for the
    /// first time, when `counts`. Each distinct holder comes here once (the
    /// holders are deduplicated by address as every object is), so a
    /// `Binary` only it holds needs no set: one whose count is 1. That is
    /// exact because, while this NIF runs, the term's holders cannot change
    /// (the calling process runs the NIF, so nothing moves or frees its
    /// heap; a literal area it refers to is not freed while it does) and
    /// each of them holds one reference to its `Binary`, so the count read
    /// at any moment is at least the number of the term's holders of it:
    /// other schedulers may only add holders outside the term (a copy of a
    /// literal at a code purge) or drop their own. A count of 1 is this
    /// holder alone; anything more may be shared, and goes through the set.
    #[inline(always)]
    fn pin(&mut self, binary: OffHeapBinary, counts: bool, work: &mut Work) -> Result<(), Stop> {
        if !counts {
            return Ok(());
        }
        if binary.refc == 1 || self.insert_binary(binary.addr, work)? {
            self.result.off_heap_binaries += 1;
            self.result.off_heap_bytes += binary.orig_size;
        }
        Ok(())
    }

    /// Marks a `Binary` that may have other holders; whether it is new.
    #[cold]
    #[inline(never)]
    fn insert_binary(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        self.binaries
            .get_or_insert_with(VisitedSet::new)
            .insert(addr, work)
    }

    /// The `Binary` of an OTP ≤ 26 sub-binary, held by the ProcBin it is a
    /// slice of (`binary.holder`, never a child): kept, once per ProcBin,
    /// for [`ScanVisit::finish`].
    fn via_orig(&mut self, binary: OffHeapBinary, work: &mut Work) -> Result<(), Stop> {
        if self
            .origs
            .get_or_insert_with(VisitedSet::new)
            .insert(binary.holder, work)?
        {
            reserve(&mut self.via_orig, work)?;
            self.via_orig.push(binary);
        }
        Ok(())
    }

    /// A ProcBin or SubBits at `addr` met for the first time, whose `Binary`
    /// is at `binary` (plausible; not read yet): prefetched now, read and
    /// checked [`READ_AHEAD`] objects later.
    #[inline(always)]
    fn read_ahead(
        &mut self,
        addr: usize,
        binary: usize,
        counts: bool,
        work: &mut Work,
    ) -> Result<(), Stop> {
        self.mem.prefetch(binary + self.layout.binary.refc_offset);
        if self.ahead_len == READ_AHEAD {
            self.read_oldest(work)?;
        }
        let slot = (self.ahead_first + self.ahead_len) & (READ_AHEAD - 1);
        let ahead = match &mut self.ahead {
            Some(ahead) => ahead,
            None => new_ahead(&mut self.ahead, work)?,
        };
        // Objects are word-aligned: the low bit is free.
        ahead[slot] = addr | usize::from(!counts);
        self.ahead_len += 1;
        Ok(())
    }

    /// Reads and checks the oldest prefetched `Binary`, and counts it.
    #[inline(never)]
    fn read_oldest(&mut self, work: &mut Work) -> Result<(), Stop> {
        let Some(ahead) = &self.ahead else {
            return Ok(());
        };
        let entry = ahead[self.ahead_first];
        let (addr, counts) = (entry & !1, entry & 1 == 0);
        self.ahead_first = (self.ahead_first + 1) & (READ_AHEAD - 1);
        self.ahead_len -= 1;
        if let Some(binary) = decode::pinned_binary(self.mem, self.layout, addr)? {
            self.pin(binary, counts, work)?;
        }
        Ok(())
    }

    /// After the traversal: the `Binary`s still to read, then the
    /// sub-binaries' (each counted unless the ProcBin holding it was
    /// visited itself, which counted it then).
    fn finish(&mut self, work: &mut Work) -> Result<(), Stop> {
        while self.ahead_len > 0 {
            self.read_oldest(work)?;
        }
        for i in 0..self.via_orig.len() {
            let binary = self.via_orig[i];
            if !self.visited.contains(binary.holder) && self.insert_binary(binary.addr, work)? {
                self.result.off_heap_binaries += 1;
                self.result.off_heap_bytes += binary.orig_size;
            }
        }
        Ok(())
    }
}

impl<M: Memory, const REPEATS: bool> Visitor for ScanVisit<'_, M, REPEATS> {
    #[inline(always)]
    fn cons(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        if !self.visited.insert(addr, work)? {
            return self.again(&Object::cons(addr), work);
        }
        self.spend(CONS_WORDS, work)?;
        self.count(addr, CONS_WORDS);
        Ok(true)
    }

    #[inline(always)]
    fn shape(&mut self, addr: usize, shape: &Shape, work: &mut Work) -> Result<bool, Stop> {
        if !self.visited.insert(addr, work)? {
            return self.again(&shape.object(), work);
        }
        self.first_visit(addr, shape.words, shape.hashmap_node, work)?;
        if shape.attached != 0 {
            self.attached(shape.attached, shape.attached_words, work)?;
        }
        Ok(true)
    }

    #[inline(always)]
    fn boxed(&mut self, addr: usize, object: &Object, work: &mut Work) -> Result<bool, Stop> {
        if !self.visited.insert(addr, work)? {
            return self.again(object, work);
        }
        self.first_visit(addr, object.words, object.hashmap_node, work)?;
        if object.attached.is_some() || object.binary.is_some() {
            self.extras(addr, object, work)?;
        }
        Ok(true)
    }

    #[inline(always)]
    fn pinning(
        &mut self,
        addr: usize,
        shape: &Shape,
        binary: usize,
        work: &mut Work,
    ) -> Result<(), Stop> {
        if !self.visited.insert(addr, work)? {
            self.again(&shape.object(), work)?;
            return Ok(());
        }
        self.first_visit(addr, shape.words, shape.hashmap_node, work)?;
        let mut counts = true;
        if shape.attached != 0 {
            counts = self.attached(shape.attached, shape.attached_words, work)?;
        }
        self.read_ahead(addr, binary, counts, work)
    }
}

fn scan_with_repeats<M: Memory, const REPEATS: bool>(
    mem: &M,
    layout: &Layout,
    root: u64,
    detail: Detail,
    work: &mut Work,
) -> Result<(Scan, Repeats), Stop> {
    let mut visit = ScanVisit::<M, REPEATS> {
        mem,
        layout,
        spent: 0,
        charged: 0,
        cap: work.remaining,
        result: Scan::default(),
        repeats: Repeats::default(),
        visited: VisitedSet::new(),
        binaries: None,
        ahead: None,
        ahead_first: 0,
        ahead_len: 0,
        origs: None,
        via_orig: Vec::new(),
    };
    traverse(mem, layout, root, detail, work, &mut visit)?;
    visit.finish(work)?;
    work.next_chunk_or_drain(visit.spent - visit.charged);
    Ok((visit.result, visit.repeats))
}

/// Flat words in time linear in the distinct objects: the number of paths
/// to each object is summed in topological order (Kahn), and each object's
/// words are multiplied by its path count.
pub fn flat_words_dag<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    work: &mut Work,
) -> Result<u128, Stop> {
    struct Node {
        object: Object,
        /// References to this node not yet propagated.
        in_degree: u64,
        /// This node's children in `edges`.
        first_edge: usize,
        edge_count: usize,
    }
    let Some((root_addr, root_object)) = object_of(mem, layout, root, 0)? else {
        return Ok(0);
    };
    work.spend(root_object.flat_words())?;
    let new_node = |object| Node {
        object,
        in_degree: 0,
        first_edge: 0,
        edge_count: 0,
    };
    let mut nodes = Vec::new();
    reserve(&mut nodes, work)?;
    nodes.push(new_node(root_object));
    let mut index: HashMap<usize, usize, _> = HashMap::with_hasher(fixed_hasher());
    reserve_map(&mut index, work)?;
    index.insert(root_addr, 0);
    let mut edges: Vec<usize> = Vec::new();
    let mut unexpanded = Vec::new();
    reserve(&mut unexpanded, work)?;
    unexpanded.push(0usize);
    while let Some(i) = unexpanded.pop() {
        let object = nodes[i].object;
        nodes[i].first_edge = edges.len();
        for k in 0..object.child_count {
            let at = object.children + k * WORD_BYTES;
            let term = mem.word(at)?;
            let addr = match classify(term, at)? {
                Word::Immediate => continue,
                Word::List(addr) | Word::Boxed(addr) => addr,
            };
            let j = match index.get(&addr) {
                // Nothing can point back at the root of an acyclic term.
                Some(&0) => {
                    return Err(Stop::Layout(LayoutError::new("cycle in a term", at, term)))
                }
                Some(&j) => j,
                None => {
                    let (_, child) = object_of(mem, layout, term, at)?.expect("not an immediate");
                    work.spend(child.flat_words())?;
                    reserve(&mut nodes, work)?;
                    nodes.push(new_node(child));
                    let j = nodes.len() - 1;
                    reserve_map(&mut index, work)?;
                    index.insert(addr, j);
                    reserve(&mut unexpanded, work)?;
                    unexpanded.push(j);
                    j
                }
            };
            nodes[j].in_degree += 1;
            reserve(&mut edges, work)?;
            edges.push(j);
        }
        nodes[i].edge_count = edges.len() - nodes[i].first_edge;
    }
    drop(index);

    work.allocate(nodes.len().saturating_mul(std::mem::size_of::<u128>()))?;
    let mut paths: Vec<u128> = Vec::new();
    paths
        .try_reserve_exact(nodes.len())
        .map_err(|_| Stop::OutOfMemory)?;
    paths.resize(nodes.len(), 0);
    paths[0] = 1;
    let mut ready = Vec::new();
    reserve(&mut ready, work)?;
    ready.push(0usize);
    let mut total: u128 = 0;
    let mut done = 0usize;
    while let Some(i) = ready.pop() {
        done += 1;
        let here = paths[i];
        let words = (nodes[i].object.flat_words() as u128)
            .checked_mul(here)
            .ok_or(Stop::Overflow)?;
        total = total.checked_add(words).ok_or(Stop::Overflow)?;
        let first = nodes[i].first_edge;
        for &j in &edges[first..first + nodes[i].edge_count] {
            paths[j] = paths[j].checked_add(here).ok_or(Stop::Overflow)?;
            nodes[j].in_degree -= 1;
            if nodes[j].in_degree == 0 {
                reserve(&mut ready, work)?;
                ready.push(j);
            }
        }
    }
    if done != nodes.len() {
        // Erlang terms are immutable and acyclic; a cycle is a broken layout.
        return Err(Stop::Layout(LayoutError::new(
            "cycle in a term",
            root_addr,
            root,
        )));
    }
    Ok(total)
}

/// How many paths a plain walk may count, per distinct word, before the
/// DAG walk is cheaper. Real terms with this much sharing are rare; below it
/// the plain walk (no hashing) wins.
const PATHS_PER_DISTINCT_WORD: u64 = 4;
/// Slack so that small terms never need the DAG walk.
const PATH_SLACK: u64 = 1 << 16;
/// The slack once a scan has found sharing and counted the distinct words:
/// fewer paths than the DAG walk's tables cost to set up (~1 µs, some 400
/// paths of a plain walk), so a small DAG (12 levels of doubling: 36
/// distinct words, 12k paths) is not walked path by path.
const SHARED_PATH_SLACK: u64 = 1 << 8;

/// Flat words when sharing is known to exist and the distinct words are known.
fn flat_with_sharing<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    distinct_words: u64,
    work: &mut Work,
) -> Result<u128, Stop> {
    let path_limit = distinct_words
        .saturating_mul(PATHS_PER_DISTINCT_WORD)
        .saturating_add(SHARED_PATH_SLACK);
    match flat_words(mem, layout, root, path_limit, work)? {
        Some(words) => Ok(words as u128),
        None => flat_words_dag(mem, layout, root, work),
    }
}

/// Flat words of `root`. `heap_words` is the caller's heap size: a term
/// without sharing cannot have many more (non-literal) flat words than that,
/// so a plain walk that goes far past it is walking shared paths again and
/// hands over to a sharing-aware count. 0 means unknown: then only the work
/// allowance bounds the plain walk (a budgeted first attempt, which need not
/// ask the VM for the heap size).
///
/// The plain walk is inlined here: one call less, and one `Result` less
/// passed through memory, on every small term's walk.
#[inline(never)]
pub fn flat<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    heap_words: u64,
    work: &mut Work,
) -> Result<u128, Stop> {
    let path_limit = match heap_words {
        0 => u64::MAX,
        _ => heap_words.saturating_mul(2).saturating_add(PATH_SLACK),
    };
    match counted_flat_words(mem, layout, root, path_limit, work)? {
        Some(words) => Ok(words as u128),
        None => flat_past_limit(mem, layout, root, work),
    }
}

/// [`flat`] once the plain walk passed its path limit: shared paths, or a
/// term larger than the heap size said.
#[cold]
#[inline(never)]
fn flat_past_limit<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    work: &mut Work,
) -> Result<u128, Stop> {
    let found = scan(mem, layout, root, Detail::Words, work)?;
    if !found.repeats {
        return Ok(found.distinct_words() as u128);
    }
    flat_with_sharing(mem, layout, root, found.distinct_words(), work)
}

/// Everything `MemProbe.term_size/1` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    pub flat_words: u128,
    pub scan: Scan,
}

/// One scan; the flat size follows from it when nothing is shared or only
/// objects whose children are immediates are met again, and from a second
/// walk otherwise.
pub fn term_size<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    work: &mut Work,
) -> Result<TermSize, Stop> {
    let (found, repeats) = scan_with_repeats::<M, true>(mem, layout, root, Detail::OffHeap, work)?;
    let flat_words = if repeats.deep {
        flat_with_sharing(mem, layout, root, found.distinct_words(), work)?
    } else {
        // Each path to an object met again adds its own words only (its
        // children are immediates), and an attached object counts with each
        // of its owners: the flat size without another walk.
        found.distinct_words() as u128
            + found.attached_repeat_words as u128
            + repeats.leaf_words as u128
    };
    Ok(TermSize {
        flat_words,
        scan: found,
    })
}

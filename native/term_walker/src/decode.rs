//! Decoding one term word, or one object, at a time. Every header is checked
//! against the layout's invariants (docs/LAYOUT.md §6); anything unexpected
//! is a [`LayoutError`] that ends the walk. Nothing here guesses.

use crate::layout::{BinRefLayout, FunHeader, Kind, Layout, RefcBinaryLayout, SubBitsLayout};
use crate::memory::Memory;
use crate::tags::*;

/// Why a walk stopped on an unexpected layout: what was wrong, where, and the
/// word found there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutError {
    pub what: &'static str,
    pub addr: usize,
    pub word: u64,
}

impl LayoutError {
    pub fn new(what: &'static str, addr: usize, word: u64) -> Self {
        LayoutError { what, addr, word }
    }
}

/// What a term word refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// Atoms, small integers, local pids and ports, `[]`: no heap words.
    Immediate,
    /// A cons cell at this address.
    List(usize),
    /// A boxed object (header word) at this address.
    Boxed(usize),
}

/// Addresses below this are never heap objects; a pointer into this page is
/// a broken layout assumption, not a term.
const LOWEST_VALID_ADDRESS: u64 = 4096;
/// User-space addresses of the 64-bit platforms the walker runs on are
/// below 2^56 (2^47 or 2^48 usually); a pointer above is not one, and no
/// object offset added to a pointer below can wrap around.
const HIGHEST_VALID_ADDRESS: u64 = 1 << 56;

/// Classifies a term word. `at` is where the word was read (for errors).
#[inline(always)]
pub fn classify(word: u64, at: usize) -> Result<Word, LayoutError> {
    // Tested in order of frequency inside terms, as plain branches (a jump
    // table on the tag costs an indirect branch per word).
    let tag = word & PRIMARY_MASK;
    if tag == PRIMARY_LIST {
        // Bit 2 set would be a tagged literal pointer: a build this
        // layout table does not describe.
        if word & !POINTER_MASK != PRIMARY_LIST || !plausible_address(word) {
            return Err(LayoutError::new("bad list pointer", at, word));
        }
        Ok(Word::List((word & POINTER_MASK) as usize))
    } else if tag == PRIMARY_BOXED {
        if word & !POINTER_MASK != PRIMARY_BOXED || !plausible_address(word) {
            return Err(LayoutError::new("bad boxed pointer", at, word));
        }
        Ok(Word::Boxed((word & POINTER_MASK) as usize))
    } else if tag == PRIMARY_IMMEDIATE {
        check_immediate(word, at)?;
        Ok(Word::Immediate)
    } else {
        Err(LayoutError::new(
            "header word where a term was expected",
            at,
            word,
        ))
    }
}

/// Whether a term word is an immediate (no heap words; still to be checked
/// with [`check_immediate`]).
#[inline(always)]
pub fn is_immediate(word: u64) -> bool {
    word & PRIMARY_MASK == PRIMARY_IMMEDIATE
}

/// The six-bit immediate tags never valid inside a term, as a bit set.
const INVALID_IMMEDIATES: u64 = (1 << IMMEDIATE_CATCH) | (1 << IMMEDIATE_UNUSED);

/// Checks an immediate term word as [`classify`] does, in one bit test.
#[inline(always)]
pub fn check_immediate(word: u64, at: usize) -> Result<(), LayoutError> {
    if (INVALID_IMMEDIATES >> (word & IMMEDIATE2_MASK)) & 1 != 0 {
        return Err(LayoutError::new("invalid immediate in a term", at, word));
    }
    Ok(())
}

/// An off-heap `Binary` kept alive by a term: its address (the identity used
/// to count it once), its allocated size, the reference count read, and the
/// handle that holds the reference (the ProcBin, or on OTP 27 the BinRef;
/// for a sub-binary, the ProcBin it is a slice of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffHeapBinary {
    pub addr: usize,
    pub orig_size: u64,
    pub refc: u64,
    pub holder: usize,
}

/// How much of an object to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Sizes only: a ProcBin's off-heap `Binary` is not read (only its
    /// pointer is checked), which keeps flat and shared walks off that memory.
    Words,
    /// Also read and check the off-heap `Binary` each binary pins.
    OffHeap,
}

/// An object that belongs to another and is reachable only through it
/// (OTP 27: the BinRef of a SubBits, the FunRef of a local fun). It has no
/// children. A copy always takes it along, so flat walks count it with its
/// owner on every path; but several owners may share one, so walks that
/// count each object once count it once, by its own address — as
/// `erts_debug:size_shared/1` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    pub addr: usize,
    pub words: u64,
}

/// One heap object as the size rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    /// Words this object adds to a size (the copy rule for sub-binaries).
    pub words: u64,
    /// Address of the first child term word; children are contiguous.
    pub children: usize,
    pub child_count: usize,
    /// The off-heap binary this object keeps alive, if any.
    pub binary: Option<OffHeapBinary>,
    /// A hashmap head or inner node (counted twice by `size_shared`).
    pub hashmap_node: bool,
    /// The object this one owns, if any (never on OTP ≤ 26).
    pub attached: Option<Attached>,
}

impl Object {
    /// A cons cell: two words, head and tail as children.
    #[inline]
    pub fn cons(addr: usize) -> Object {
        Object {
            words: CONS_WORDS,
            children: addr,
            child_count: 2,
            binary: None,
            hashmap_node: false,
            attached: None,
        }
    }

    fn leaf(words: u64) -> Object {
        Object {
            words,
            children: 0,
            child_count: 0,
            binary: None,
            hashmap_node: false,
            attached: None,
        }
    }

    /// Words a copy of this object takes, its attached part included: what
    /// `erts_debug:flat_size/1` counts for it on every path.
    #[inline]
    pub fn flat_words(&self) -> u64 {
        self.words + self.attached.map_or(0, |a| a.words)
    }
}

#[inline]
fn word_at<M: Memory>(mem: &M, addr: usize, index: usize) -> Result<u64, LayoutError> {
    mem.word(addr + index * WORD_BYTES)
}

/// A byte inside an object, read through its (aligned) word; little-endian.
#[inline]
fn byte_at<M: Memory>(mem: &M, addr: usize, byte: usize) -> Result<u64, LayoutError> {
    let word = mem.word(addr + (byte / WORD_BYTES) * WORD_BYTES)?;
    Ok((word >> ((byte % WORD_BYTES) * 8)) & 0xFF)
}

/// Decodes the boxed object at `addr`, checking its header.
///
/// The most common objects (see [`shape`]) are decoded inline, with exactly
/// the checks of the general decoder; everything else (and every header
/// these paths refuse) takes the general decoder, which says what is wrong.
#[inline(always)]
pub fn boxed<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    detail: Detail,
) -> Result<Object, LayoutError> {
    match shape(mem, layout, addr, detail)? {
        Some(shape) => Ok(shape.object()),
        None => boxed_any(mem, layout, addr, detail),
    }
}

/// A boxed object with no off-heap binary read: what the walks need of it,
/// in plain words (an [`Object`], with its optional parts, is too large to
/// stay in registers in a walk's hot loop). An attached part (OTP 27: the
/// BinRef of a SubBits) is its address, 0 for none, and its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub words: u64,
    pub children: usize,
    pub child_count: usize,
    pub hashmap_node: bool,
    pub attached: usize,
    pub attached_words: u64,
}

impl Shape {
    #[inline(always)]
    fn leaf(words: u64) -> Shape {
        Shape {
            words,
            children: 0,
            child_count: 0,
            hashmap_node: false,
            attached: 0,
            attached_words: 0,
        }
    }

    /// Words a copy of this object takes, its attached part included (as
    /// [`Object::flat_words`]).
    #[inline(always)]
    pub fn flat_words(&self) -> u64 {
        self.words + self.attached_words
    }

    #[inline(always)]
    pub fn object(self) -> Object {
        Object {
            words: self.words,
            children: self.children,
            child_count: self.child_count,
            hashmap_node: self.hashmap_node,
            attached: (self.attached != 0).then_some(Attached {
                addr: self.attached,
                words: self.attached_words,
            }),
            ..Object::leaf(0)
        }
    }
}

/// The common objects, decoded inline with exactly the checks of the
/// general decoder: non-empty tuples, floats, heap binaries, flatmaps,
/// hashmap nodes whose children are leaves and inner nodes, and ProcBins
/// and SubBits over a BinRef (OTP 27) when only their words are asked for
/// (at [`Detail::OffHeap`] see [`pinning_shape`]). `None` for anything
/// else, and for every header these paths refuse: [`boxed`]'s general
/// decoder then decodes it, or says what is wrong.
#[inline(always)]
pub fn shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    detail: Detail,
) -> Result<Option<Shape>, LayoutError> {
    let header = mem.word(addr)?;
    let arity = header >> HEADER_ARITY_SHIFT;
    if header & HEADER_TAG_MASK == 0 {
        if arity != 0 && arity <= layout.max_tuple_arity && layout.kinds[0] == Some(Kind::Tuple) {
            return Ok(Some(Shape {
                words: arity + 1,
                children: addr + WORD_BYTES,
                child_count: arity as usize,
                ..Shape::leaf(0)
            }));
        }
    } else if header == layout.float_header {
        return Ok(Some(Shape::leaf(layout.float_words)));
    } else if header == layout.flatmap_header {
        return flatmap_shape(mem, layout, addr);
    } else if header & PRIMARY_MASK == PRIMARY_HEADER {
        // Plain compares, most frequent kind first: a `match` here became a
        // jump table, an indirect branch on every object that gets here.
        let kind = layout.kind_of(header);
        if kind == Some(Kind::HeapBinary) {
            let hb = &layout.heap_binary;
            let size = word_at(mem, addr, hb.size_word)?;
            if size <= hb.max_size && arity + 1 == layout.heap_binary_words(size) {
                return Ok(Some(Shape::leaf(arity + 1)));
            }
        } else if kind == Some(Kind::Map) {
            return hashmap_shape(mem, layout, addr, header);
        } else if detail == Detail::Words {
            return binary_handle_shape(mem, layout, addr, header, kind);
        }
    }
    Ok(None)
}

/// The rest of [`shape`] at [`Detail::Words`]: a ProcBin, or a SubBits over
/// a BinRef. Out of line, so that the compares before it stay plain
/// branches (more cases in one place became a jump table).
#[inline(never)]
fn binary_handle_shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    kind: Option<Kind>,
) -> Result<Option<Shape>, LayoutError> {
    if kind == Some(Kind::RefcBinary) {
        return Ok(refc_binary_shape(mem, layout, addr, header)?.map(|(shape, _)| shape));
    }
    if kind == Some(Kind::SubBits) {
        if let (Some(sl), Some(br)) = (&layout.sub_bits, &layout.bin_ref) {
            if header == sl.header {
                return Ok(sub_bits_shape(mem, sl, br, addr)?.map(|(shape, _)| shape));
            }
        }
    }
    Ok(None)
}

/// A ProcBin with the layout's header and a plausible `Binary*`: its shape
/// and that pointer (not read). `None` for anything else.
#[inline(always)]
fn refc_binary_shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
) -> Result<Option<(Shape, usize)>, LayoutError> {
    if let Some(rl) = &layout.refc_binary {
        // The pointer is read only once the header says the object has it.
        if header == rl.header {
            let binary = word_at(mem, addr, rl.binary_word)?;
            if plausible_pointer(binary) {
                return Ok(Some((Shape::leaf(rl.words), binary as usize)));
            }
        }
    }
    Ok(None)
}

/// A ProcBin, or a SubBits over a BinRef (OTP 27), checked as [`shape`]
/// checks it at [`Detail::Words`], with the `Binary*` it pins (plausible,
/// not read): a walk at [`Detail::OffHeap`] prefetches that `Binary` and
/// reads and checks it later with [`pinned_binary`]. `None` for anything
/// else, and for every refusal (the general decoder then says why).
#[inline]
pub fn pinning_shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
) -> Result<Option<(Shape, usize)>, LayoutError> {
    let header = mem.word(addr)?;
    if header & PRIMARY_MASK != PRIMARY_HEADER {
        return Ok(None);
    }
    match layout.kind_of(header) {
        Some(Kind::RefcBinary) => refc_binary_shape(mem, layout, addr, header),
        Some(Kind::SubBits) => match (&layout.sub_bits, &layout.bin_ref) {
            (Some(sl), Some(br)) if header == sl.header => sub_bits_shape(mem, sl, br, addr),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// A SubBits with the layout's header over a BinRef, when only its words
/// are asked for: the checks [`sub_bits`] makes at `Detail::Words` (start
/// not after end, a boxed `orig` with the BinRef header, a plausible
/// `Binary*` in it), the BinRef attached, and that `Binary*`. `None` for
/// anything else (heap bits, and every refusal: the general decoder then
/// says what is wrong).
#[inline(always)]
fn sub_bits_shape<M: Memory>(
    mem: &M,
    sl: &SubBitsLayout,
    br: &BinRefLayout,
    addr: usize,
) -> Result<Option<(Shape, usize)>, LayoutError> {
    let start = word_at(mem, addr, sl.start_word)?;
    let end = word_at(mem, addr, sl.end_word)?;
    let orig_at = addr + sl.orig_word * WORD_BYTES;
    let orig_word = mem.word(orig_at)?;
    if start > end || orig_word & PRIMARY_MASK != PRIMARY_BOXED {
        return Ok(None);
    }
    let Word::Boxed(orig) = classify(orig_word, orig_at)? else {
        return Ok(None);
    };
    // The exact BinRef header is a header word of kind BinRef (the layout
    // tests check the table), as the general decoder requires.
    if mem.word(orig)? != br.header {
        return Ok(None);
    }
    let binary = word_at(mem, orig, br.binary_word)?;
    if !plausible_pointer(binary) {
        return Ok(None);
    }
    Ok(Some((
        Shape {
            attached: orig,
            attached_words: br.words,
            ..Shape::leaf(sl.words)
        },
        binary as usize,
    )))
}

/// A hashmap head or inner node whose header passes the checks of [`map`]
/// and whose children are leaf cells and inner nodes; `None` otherwise
/// (collision nodes, and every refusal, are left to [`map`]).
#[inline(always)]
fn hashmap_shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
) -> Result<Option<Shape>, LayoutError> {
    let map_type = (header >> MAP_TYPE_SHIFT) & MAP_TYPE_MASK;
    let map_arity = (header >> MAP_ARITY_SHIFT) & MAP_ARITY_MASK;
    let val = (header >> MAP_VAL_SHIFT) & MAP_VAL_MASK;
    let valid = header >> (MAP_VAL_SHIFT + 16) == 0
        && match map_type {
            MAP_TYPE_HASHMAP_HEAD_ARRAY => map_arity == 1 && val == MAP_VAL_FULL,
            MAP_TYPE_HASHMAP_HEAD_BITMAP => map_arity == 1 && val != 0,
            MAP_TYPE_HASHMAP_NODE => map_arity == 0 && val != 0,
            _ => false, // a flatmap with another header: refused by `map`
        };
    if !valid {
        return Ok(None);
    }
    let child_count = val.count_ones() as usize;
    let children = addr + (1 + map_arity as usize) * WORD_BYTES;
    for i in 0..child_count {
        let at = children + i * WORD_BYTES;
        let child = mem.word(at)?;
        let ok = match child & PRIMARY_MASK {
            // A leaf cell; its pointer is checked when it is visited.
            PRIMARY_LIST => true,
            PRIMARY_BOXED => match classify(child, at)? {
                Word::Boxed(node) => {
                    let node_header = mem.word(node)?;
                    node_header & PRIMARY_MASK == PRIMARY_HEADER
                        && layout.kind_of(node_header) == Some(Kind::Map)
                        && (node_header >> MAP_TYPE_SHIFT) & MAP_TYPE_MASK == MAP_TYPE_HASHMAP_NODE
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some(Shape {
        words: 1 + map_arity + child_count as u64,
        children,
        child_count,
        hashmap_node: true,
        ..Shape::leaf(0)
    }))
}

/// A flatmap whose header is the layout's flatmap header, when it passes the
/// checks of [`map`]; `None` when not (the general decoder then says why).
#[inline(always)]
fn flatmap_shape<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
) -> Result<Option<Shape>, LayoutError> {
    let keys_count = word_at(mem, addr, 1)?;
    if keys_count > layout.flatmap_max_keys {
        return Ok(None);
    }
    // The keys tuple has one element per key (the global `{}` when empty).
    let keys_at = addr + 2 * WORD_BYTES;
    let keys_word = mem.word(keys_at)?;
    if !points_to_tuple_of(mem, layout, keys_word, keys_at, keys_count)? {
        return Ok(None);
    }
    Ok(Some(Shape {
        words: layout.flatmap_base_words + keys_count,
        children: keys_at,
        child_count: 1 + keys_count as usize,
        ..Shape::leaf(0)
    }))
}

/// The off-heap `Binary` of an object that [`pinning_shape`] took (a
/// ProcBin, or a SubBits over a BinRef), read and
/// checked as the general decoder reads and checks it; `None` if the object
/// pins none after all.
#[inline]
pub fn pinned_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
) -> Result<Option<OffHeapBinary>, LayoutError> {
    let header = mem.word(addr)?;
    if let Some(rl) = &layout.refc_binary {
        if header == rl.header && layout.kind_of(header) == Some(Kind::RefcBinary) {
            return refc_binary(mem, layout, rl, addr).map(Some);
        }
    }
    Ok(boxed_any(mem, layout, addr, Detail::OffHeap)?.binary)
}

/// A ProcBin (OTP ≤ 26) with the layout's header, decoded at
/// [`Detail::OffHeap`] exactly as [`boxed_any`] decodes it (the same
/// [`refc_binary`] checks of its `Binary`), without the general decoder's
/// dispatch; `None` for any other object.
#[inline]
pub fn proc_bin<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
) -> Result<Option<Object>, LayoutError> {
    let Some(rl) = &layout.refc_binary else {
        return Ok(None);
    };
    let header = mem.word(addr)?;
    if header != rl.header || layout.kind_of(header) != Some(Kind::RefcBinary) {
        return Ok(None);
    }
    Ok(Some(Object {
        binary: Some(refc_binary(mem, layout, rl, addr)?),
        ..Object::leaf(rl.words)
    }))
}

/// The general decoder: every kind, every check, and the reason for a refusal.
#[cold]
#[inline(never)]
pub fn boxed_any<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    detail: Detail,
) -> Result<Object, LayoutError> {
    let header = mem.word(addr)?;
    if header & PRIMARY_MASK != PRIMARY_HEADER {
        return Err(LayoutError::new(
            "boxed pointer to a non-header word",
            addr,
            header,
        ));
    }
    let arity = header >> HEADER_ARITY_SHIFT;
    let bad = |what| Err(LayoutError::new(what, addr, header));
    let kind = match layout.kind_of(header) {
        Some(kind) => kind,
        None => return bad("unexpected header tag"),
    };
    match kind {
        Kind::Tuple => {
            if arity > layout.max_tuple_arity {
                return bad("tuple arity above the maximum");
            }
            if arity == 0 {
                if layout.empty_tuple_is_literal && !mem.is_literal(addr) {
                    return bad("empty tuple outside the literal area");
                }
                return Ok(Object::leaf(0));
            }
            Ok(Object {
                words: arity + 1,
                children: addr + WORD_BYTES,
                child_count: arity as usize,
                ..Object::leaf(0)
            })
        }
        Kind::PositiveBignum | Kind::NegativeBignum => {
            if arity == 0 || arity > layout.max_bignum_digits {
                return bad("bignum digit count out of range");
            }
            if word_at(mem, addr, arity as usize)? == 0 {
                return bad("bignum with a zero top digit");
            }
            Ok(Object::leaf(arity + 1))
        }
        Kind::Ref => {
            if !layout.ref_headers.contains(&header) {
                return bad("unexpected reference header");
            }
            Ok(Object::leaf(arity + 1))
        }
        Kind::Float => {
            if header != layout.float_header {
                return bad("unexpected float header");
            }
            Ok(Object::leaf(layout.float_words))
        }
        Kind::ExternalPid | Kind::ExternalPort => {
            let expected = if kind == Kind::ExternalPid {
                layout.external_pid_header
            } else {
                layout.external_port_header
            };
            if header != expected {
                return bad("unexpected external pid or port header");
            }
            Ok(Object::leaf(layout.external_pid_words))
        }
        Kind::ExternalRef => {
            if arity < layout.external_ref_min_arity || arity > layout.external_ref_max_arity {
                return bad("external reference arity out of range");
            }
            Ok(Object::leaf(arity + 1))
        }
        Kind::Fun => match layout.fun.header {
            FunHeader::Fixed {
                header: fun_header,
                num_free_byte,
            } => fixed_fun(mem, layout, addr, header, fun_header, num_free_byte),
            FunHeader::EnvSize {
                arity_shift,
                env_size_shift,
                max_env_size,
            } => env_size_fun(
                mem,
                layout,
                addr,
                header,
                arity_shift,
                env_size_shift,
                max_env_size,
            ),
            FunHeader::KindBit {
                arity_shift,
                num_free_shift,
                num_free_mask,
                external_shift,
            } => kind_bit_fun(
                mem,
                layout,
                addr,
                header,
                FunBits {
                    arity_shift,
                    num_free_shift,
                    num_free_mask,
                    external_shift,
                },
            ),
        },
        // Both belong to one owner and are decoded only through it.
        Kind::FunRef => bad("FunRef outside a fun"),
        Kind::BinRef => bad("BinRef outside a sub-bitstring"),
        Kind::RefcBinary => {
            let rl = part(&layout.refc_binary, addr, header)?;
            if header != rl.header {
                return bad("unexpected refc binary header");
            }
            let binary = match detail {
                Detail::OffHeap => Some(refc_binary(mem, layout, rl, addr)?),
                Detail::Words => {
                    binary_pointer(
                        mem,
                        addr,
                        rl.binary_word,
                        "refc binary with a bad Binary pointer",
                    )?;
                    None
                }
            };
            Ok(Object {
                binary,
                ..Object::leaf(rl.words)
            })
        }
        Kind::HeapBinary => {
            let hb = &layout.heap_binary;
            let size = word_at(mem, addr, hb.size_word)?;
            if size > hb.max_size || arity + 1 != layout.heap_binary_words(size) {
                return bad("heap binary size does not match its header");
            }
            Ok(Object::leaf(arity + 1))
        }
        Kind::SubBinary => sub_binary(mem, layout, addr, header, detail),
        Kind::SubBits => sub_bits(mem, layout, addr, header, detail),
        Kind::Map => map(mem, layout, addr, header),
        Kind::Record => record(mem, layout, addr, header),
    }
}

/// The sub-table of an object family the kind table names; a kind without
/// its sub-table is a broken table (the layout tests rule it out).
#[inline]
fn part<T>(table: &Option<T>, addr: usize, header: u64) -> Result<&T, LayoutError> {
    table.as_ref().ok_or(LayoutError::new(
        "layout table has no entry for this kind",
        addr,
        header,
    ))
}

/// `Ok` when `header` is exactly `expected`.
fn exact_header(
    header: u64,
    expected: u64,
    addr: usize,
    what: &'static str,
) -> Result<(), LayoutError> {
    if header == expected {
        Ok(())
    } else {
        Err(LayoutError::new(what, addr, header))
    }
}

/// The object a boxed field of the object at `addr` points to (a
/// sub-binary's or sub-bitstring's `orig`); `what` when it is not boxed.
fn boxed_field<M: Memory>(
    mem: &M,
    addr: usize,
    index: usize,
    what: &'static str,
) -> Result<usize, LayoutError> {
    let at = addr + index * WORD_BYTES;
    let word = mem.word(at)?;
    match classify(word, at)? {
        Word::Boxed(target) => Ok(target),
        _ => Err(LayoutError::new(what, at, word)),
    }
}

/// Outside the first page and below the top of user space.
#[inline]
fn plausible_address(word: u64) -> bool {
    (LOWEST_VALID_ADDRESS..HIGHEST_VALID_ADDRESS).contains(&word)
}

/// An `ErlFunEntry*`, `Export*` or `Binary*`: a plausible address, 8-aligned.
fn plausible_pointer(word: u64) -> bool {
    plausible_address(word) && word.is_multiple_of(WORD_BYTES as u64)
}

/// OTP ≤ 26: every fun has the same header; a creator pid, then the free
/// variables.
fn fixed_fun<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    fun_header: u64,
    num_free_byte: usize,
) -> Result<Object, LayoutError> {
    let fl = &layout.fun;
    if header != fun_header {
        return Err(LayoutError::new("unexpected fun header", addr, header));
    }
    let num_free = byte_at(mem, addr, num_free_byte)?;
    let creator_word = part(&fl.creator_word, addr, header)?;
    let creator_at = addr + creator_word * WORD_BYTES;
    // The creator is normally a local pid, a boxed external pid, or the atom
    // `external` for export funs; but binary_to_term takes any term there
    // (the adversarial tests decode such funs), and size_object counts it as
    // an ordinary child. So it must only be a valid term word.
    let creator = mem.word(creator_at)?;
    classify(creator, creator_at)?;
    Ok(Object {
        words: fl.base_words + num_free,
        children: creator_at,
        child_count: 1 + num_free as usize,
        ..Object::leaf(0)
    })
}

/// The fun entry word (`ErlFunEntry*` or `Export*`), checked for
/// plausibility; never followed.
fn fun_entry<M: Memory>(mem: &M, layout: &Layout, addr: usize) -> Result<u64, LayoutError> {
    let entry_word = layout.fun.entry_word;
    let entry = word_at(mem, addr, entry_word)?;
    if !plausible_pointer(entry) {
        return Err(LayoutError::new(
            "fun with a bad entry pointer",
            addr + entry_word * WORD_BYTES,
            entry,
        ));
    }
    Ok(entry)
}

/// Where the fields of an OTP 28+ fun header are.
struct FunBits {
    arity_shift: u32,
    num_free_shift: u32,
    num_free_mask: u64,
    external_shift: u32,
}

/// OTP 28+: arity, number of free variables and the export bit in the
/// header; the environment is the free variables alone (no FunRef), and an
/// export fun has none.
fn kind_bit_fun<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    bits: FunBits,
) -> Result<Object, LayoutError> {
    let fl = &layout.fun;
    let bad = |what| Err(LayoutError::new(what, addr, header));
    // Zero: the two bits between the tag and the arity, the bits between the
    // free-variable count and the kind bit, and everything above the kind bit.
    let tag_gap = ((1u64 << bits.arity_shift) - 1) & !HEADER_TAG_MASK;
    let num_free_field = bits.num_free_mask << bits.num_free_shift;
    let free_gap = ((1u64 << bits.external_shift) - 1) & !((1u64 << bits.num_free_shift) - 1);
    let above = !((1u64 << (bits.external_shift + 1)) - 1);
    if header & (tag_gap | (free_gap & !num_free_field) | above) != 0 {
        return bad("unexpected fun header");
    }
    let num_free = (header >> bits.num_free_shift) & bits.num_free_mask;
    let external = (header >> bits.external_shift) & 1 == 1;
    if external && num_free != 0 {
        return bad("export fun with free variables");
    }
    fun_entry(mem, layout, addr)?;
    Ok(Object {
        words: fl.base_words + num_free,
        children: addr + fl.env_word * WORD_BYTES,
        child_count: num_free as usize,
        ..Object::leaf(0)
    })
}

/// Whether the term word `word` (read at `at`) is a boxed pointer to a tuple
/// of exactly `arity` elements: a flatmap's keys, a record's definition.
#[inline(always)]
fn points_to_tuple_of<M: Memory>(
    mem: &M,
    layout: &Layout,
    word: u64,
    at: usize,
    arity: u64,
) -> Result<bool, LayoutError> {
    Ok(match classify(word, at)? {
        Word::Boxed(tuple) => {
            let header = mem.word(tuple)?;
            header & PRIMARY_MASK == PRIMARY_HEADER
                && layout.kind_of(header) == Some(Kind::Tuple)
                && header >> HEADER_ARITY_SHIFT == arity
        }
        _ => false,
    })
}

/// OTP 29 native record: header, definition, values. The definition is an
/// ordinary tuple child (normally literal), checked here to have the arity
/// the record's field count implies.
fn record<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
) -> Result<Object, LayoutError> {
    let rl = part(&layout.record, addr, header)?;
    let arity = header >> HEADER_ARITY_SHIFT;
    if arity == 0 || arity > layout.max_tuple_arity {
        return Err(LayoutError::new("record arity out of range", addr, header));
    }
    let fields = arity - 1;
    let definition_at = addr + rl.definition_word * WORD_BYTES;
    let definition = mem.word(definition_at)?;
    let arity_wanted = rl.definition_base_arity + fields;
    if !points_to_tuple_of(mem, layout, definition, definition_at, arity_wanted)? {
        return Err(LayoutError::new(
            "record definition is not a tuple of its field count",
            definition_at,
            definition,
        ));
    }
    // The definition and the values are contiguous term words.
    Ok(Object {
        words: arity + 1,
        children: definition_at,
        child_count: arity as usize,
        ..Object::leaf(0)
    })
}

/// OTP 27: arity and environment size in the header. An export fun has no
/// environment; a local fun's environment is its free variables and then its
/// FunRef, which is attached to it rather than a child (erl_fun.h).
fn env_size_fun<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    arity_shift: u32,
    env_size_shift: u32,
    max_env_size: u64,
) -> Result<Object, LayoutError> {
    let fl = &layout.fun;
    let bad = |what| Err(LayoutError::new(what, addr, header));
    // The bits between the tag and the arity byte are zero.
    let tag_bits = (1u64 << arity_shift) - 1;
    if header & tag_bits & !HEADER_TAG_MASK != 0 {
        return bad("unexpected fun header");
    }
    let env_size = header >> env_size_shift;
    if env_size > max_env_size {
        return bad("fun environment larger than the maximum");
    }
    let entry = fun_entry(mem, layout, addr)?;
    let env_at = addr + fl.env_word * WORD_BYTES;
    if env_size == 0 {
        // An export fun: header and `Export*`.
        return Ok(Object::leaf(fl.base_words));
    }
    let fr = part(&fl.fun_ref, addr, header)?;
    let num_free = env_size as usize - 1;
    let ref_at = env_at + num_free * WORD_BYTES;
    let ref_word = mem.word(ref_at)?;
    let fun_ref = match classify(ref_word, ref_at)? {
        Word::Boxed(fun_ref)
            if mem.word(fun_ref)? == fr.header
                && word_at(mem, fun_ref, fr.entry_word)? == entry =>
        {
            fun_ref
        }
        _ => {
            return Err(LayoutError::new(
                "local fun's last environment slot is not its FunRef",
                ref_at,
                ref_word,
            ))
        }
    };
    Ok(Object {
        words: fl.base_words + env_size,
        children: env_at,
        child_count: num_free,
        attached: Some(Attached {
            addr: fun_ref,
            words: fr.words,
        }),
        ..Object::leaf(0)
    })
}

/// A `Binary*` field of a handle at `addr`, checked for plausibility (not read).
fn binary_pointer<M: Memory>(
    mem: &M,
    addr: usize,
    word: usize,
    what: &'static str,
) -> Result<usize, LayoutError> {
    let binary = word_at(mem, addr, word)?;
    if !plausible_pointer(binary) {
        return Err(LayoutError::new(what, addr, binary));
    }
    Ok(binary as usize)
}

/// Reads a `Binary`'s refc and `orig_size`, checking both; `holder` is the
/// handle at whose pointer it was found.
fn read_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    binary: usize,
    holder: usize,
) -> Result<OffHeapBinary, LayoutError> {
    let bl = &layout.binary;
    // Other schedulers change the count atomically while this one reads it.
    let refc = mem.shared_word(binary + bl.refc_offset)? as i64;
    let orig_size = mem.word(binary + bl.orig_size_offset)? as i64;
    if refc < 1 || orig_size < 0 {
        return Err(LayoutError::new(
            "Binary with a bad refc or size",
            binary,
            orig_size as u64,
        ));
    }
    Ok(OffHeapBinary {
        addr: binary,
        orig_size: orig_size as u64,
        refc: refc as u64,
        holder,
    })
}

/// Checks a ProcBin and the `Binary` it points to; returns that `Binary`.
fn refc_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    rl: &RefcBinaryLayout,
    addr: usize,
) -> Result<OffHeapBinary, LayoutError> {
    let size = word_at(mem, addr, rl.size_word)?;
    let bytes = word_at(mem, addr, rl.bytes_word)?;
    let binary = binary_pointer(
        mem,
        addr,
        rl.binary_word,
        "refc binary with a bad Binary pointer",
    )?;
    let found = read_binary(mem, layout, binary, addr)?;
    let data = (binary + layout.binary.data_offset) as u64;
    let orig_size = found.orig_size;
    let end = bytes
        .checked_sub(data)
        .and_then(|offset| offset.checked_add(size));
    if size > orig_size || end.is_none_or(|end| end > orig_size) {
        return Err(LayoutError::new(
            "refc binary outside its Binary",
            addr,
            size,
        ));
    }
    Ok(found)
}

/// A sub-binary counts what its copy would take (docs/LAYOUT.md §3); its
/// `orig` is never a child, but a refc `orig` names the `Binary` it pins.
fn sub_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    detail: Detail,
) -> Result<Object, LayoutError> {
    let sl = part(&layout.sub_binary, addr, header)?;
    exact_header(header, sl.header, addr, "unexpected sub binary header")?;
    let size = word_at(mem, addr, sl.size_word)?;
    let offset = word_at(mem, addr, sl.offset_word)?;
    let bitsize = byte_at(mem, addr, sl.bitsize_byte)?;
    let bitoffs = byte_at(mem, addr, sl.bitoffs_byte)?;
    if bitsize > 7 || bitoffs > 7 {
        return Err(LayoutError::new(
            "sub binary bit fields out of range",
            addr,
            header,
        ));
    }
    let orig = boxed_field(mem, addr, sl.orig_word, "sub binary orig is not boxed")?;
    // Checks the orig as any object: a refc or heap binary, never a sub binary.
    let orig_object = boxed(mem, layout, orig, detail)?;
    let orig_header = mem.word(orig)?;
    // What a copy of a slice of a refc binary keeps: a new ProcBin (`None`
    // for a heap binary, whose copy holds only the slice's bytes).
    let (orig_bytes, binary, refc_words) = match layout.kind_of(orig_header) {
        Some(Kind::RefcBinary) => {
            let rl = part(&layout.refc_binary, orig, orig_header)?;
            (
                word_at(mem, orig, rl.size_word)?,
                orig_object.binary,
                Some(rl.words),
            )
        }
        Some(Kind::HeapBinary) => (
            word_at(mem, orig, layout.heap_binary.size_word)?,
            None,
            None,
        ),
        _ => {
            return Err(LayoutError::new(
                "sub binary orig is not a binary",
                orig,
                orig_header,
            ))
        }
    };
    // In 128 bits: the words read may be anything, and must not wrap.
    let end_bits = (offset as u128 + size as u128) * 8 + (bitoffs + bitsize) as u128;
    if end_bits > orig_bytes as u128 * 8 {
        return Err(LayoutError::new(
            "sub binary reaches past its orig",
            addr,
            size,
        ));
    }
    let bits = bitoffs + bitsize;
    let (mut words, extra_bytes) = match bits {
        0 => (0, 0),
        1..=8 => (sl.words, 1),
        _ => (sl.words, 2),
    };
    words += match refc_words {
        Some(refc_words) => refc_words,
        None => layout.heap_binary.base_words + words_for_bytes(size + extra_bytes),
    };
    Ok(Object {
        binary,
        ..Object::leaf(words)
    })
}

/// OTP 27 SubBits (docs/LAYOUT.md §3, copy.c). Over a BinRef it is 5 words
/// with the 3-word BinRef attached (a copy takes both: `ERL_REFC_BITS_SIZE`;
/// `size_shared` counts the BinRef once per address). Over heap bits it can
/// only be a match context, which a copy replaces by the matched bits alone.
fn sub_bits<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    detail: Detail,
) -> Result<Object, LayoutError> {
    let sl = part(&layout.sub_bits, addr, header)?;
    exact_header(header, sl.header, addr, "unexpected sub-bitstring header")?;
    let base_flags = word_at(mem, addr, sl.base_flags_word)?;
    let flags = base_flags & sl.flags_mask;
    let base = base_flags & !sl.flags_mask;
    let start = word_at(mem, addr, sl.start_word)?;
    let end = word_at(mem, addr, sl.end_word)?;
    if start > end {
        return Err(LayoutError::new(
            "sub-bitstring starts after its end",
            addr,
            start,
        ));
    }
    let orig = boxed_field(mem, addr, sl.orig_word, "sub-bitstring orig is not boxed")?;
    let orig_header = mem.word(orig)?;
    match layout.kind_of(orig_header) {
        Some(Kind::BinRef) if orig_header & PRIMARY_MASK == PRIMARY_HEADER => {
            let br = part(&layout.bin_ref, orig, orig_header)?;
            exact_header(orig_header, br.header, orig, "unexpected BinRef header")?;
            let binary = binary_pointer(
                mem,
                orig,
                br.binary_word,
                "BinRef with a bad Binary pointer",
            )?;
            let binary = match detail {
                Detail::Words => None,
                Detail::OffHeap => {
                    let found = read_binary(mem, layout, binary, orig)?;
                    let data = (binary + layout.binary.data_offset) as u128;
                    let capacity_bits = found.orig_size as u128 * 8;
                    // A volatile (writable or once writable) SubBits reads
                    // its data from the Binary's start, not from the stored
                    // base, which may be stale (ERTS_GET_BITSTRING_REF).
                    let from_bits = if flags & sl.volatile_flag != 0 {
                        Some(0)
                    } else {
                        (base as u128).checked_sub(data).map(|b| b * 8)
                    };
                    match from_bits {
                        Some(from) if from + end as u128 <= capacity_bits => {}
                        _ => {
                            return Err(LayoutError::new(
                                "sub-bitstring outside its Binary",
                                addr,
                                base_flags,
                            ))
                        }
                    }
                    Some(found)
                }
            };
            Ok(Object {
                binary,
                attached: Some(Attached {
                    addr: orig,
                    words: br.words,
                }),
                ..Object::leaf(sl.words)
            })
        }
        Some(Kind::HeapBinary) if orig_header & PRIMARY_MASK == PRIMARY_HEADER => {
            if flags != sl.match_context_flags {
                return Err(LayoutError::new(
                    "sub-bitstring over heap bits is not a match context",
                    addr,
                    base_flags,
                ));
            }
            boxed(mem, layout, orig, detail)?;
            let hb = &layout.heap_binary;
            let data = (orig + hb.base_words as usize * WORD_BYTES) as u64;
            let orig_bits = word_at(mem, orig, hb.size_word)? as u128 * hb.size_unit_bits as u128;
            if base != data || end as u128 > orig_bits {
                return Err(LayoutError::new(
                    "sub-bitstring reaches past its orig",
                    addr,
                    end,
                ));
            }
            // heap_bits_size(end - start); the size unit is bits here.
            let bits = end - start;
            Ok(Object::leaf(
                hb.base_words + words_for_bytes(bits.div_ceil(8)),
            ))
        }
        _ => Err(LayoutError::new(
            "sub-bitstring orig is neither a BinRef nor heap bits",
            orig,
            orig_header,
        )),
    }
}

fn map<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
) -> Result<Object, LayoutError> {
    let bad = |what| Err(LayoutError::new(what, addr, header));
    let map_type = (header >> MAP_TYPE_SHIFT) & MAP_TYPE_MASK;
    let map_arity = (header >> MAP_ARITY_SHIFT) & MAP_ARITY_MASK;
    let val = (header >> MAP_VAL_SHIFT) & MAP_VAL_MASK;
    if header >> (MAP_VAL_SHIFT + 16) != 0 {
        return bad("map header with bits above its value");
    }
    if map_type == MAP_TYPE_FLATMAP {
        if header != layout.flatmap_header {
            return bad("unexpected flatmap header");
        }
        if word_at(mem, addr, 1)? > layout.flatmap_max_keys {
            return bad("flatmap larger than the flatmap limit");
        }
        return match flatmap_shape(mem, layout, addr)? {
            Some(shape) => Ok(shape.object()),
            None => {
                let keys_at = addr + 2 * WORD_BYTES;
                Err(LayoutError::new(
                    "flatmap keys are not a tuple of its size",
                    keys_at,
                    mem.word(keys_at)?,
                ))
            }
        };
    }
    let valid = match map_type {
        MAP_TYPE_HASHMAP_HEAD_ARRAY => map_arity == 1 && val == MAP_VAL_FULL,
        MAP_TYPE_HASHMAP_HEAD_BITMAP => map_arity == 1 && val != 0,
        _ => map_arity == 0 && val != 0, // inner node
    };
    if !valid {
        return bad("hashmap node header out of range");
    }
    let child_count = val.count_ones() as usize;
    let children = addr + (1 + map_arity as usize) * WORD_BYTES;
    // A hashmap child is a leaf cons cell [K | V], an inner node, or (where
    // the layout has them) a collision node.
    for i in 0..child_count {
        let at = children + i * WORD_BYTES;
        let child = mem.word(at)?;
        let ok = match classify(child, at)? {
            Word::List(_) => true,
            Word::Boxed(node) => hashmap_child_node(mem, layout, node)?,
            Word::Immediate => false,
        };
        if !ok {
            return Err(LayoutError::new(
                "hashmap child is neither a leaf nor a node",
                at,
                child,
            ));
        }
    }
    Ok(Object {
        words: 1 + map_arity + child_count as u64,
        children,
        child_count,
        hashmap_node: true,
        ..Object::leaf(0)
    })
}

/// Whether the boxed child of a hashmap node at `node` is an inner node, or a
/// collision node: a tuple of at least two `[K | V]` leaf cells (erl_map.h).
fn hashmap_child_node<M: Memory>(
    mem: &M,
    layout: &Layout,
    node: usize,
) -> Result<bool, LayoutError> {
    let header = mem.word(node)?;
    if header & PRIMARY_MASK != PRIMARY_HEADER {
        return Ok(false);
    }
    Ok(match layout.kind_of(header) {
        Some(Kind::Map) => (header >> MAP_TYPE_SHIFT) & MAP_TYPE_MASK == MAP_TYPE_HASHMAP_NODE,
        Some(Kind::Tuple) if layout.hashmap_collision_nodes => {
            let arity = header >> HEADER_ARITY_SHIFT;
            if !(2..=layout.max_tuple_arity).contains(&arity) {
                return Ok(false);
            }
            for i in 1..=arity as usize {
                let at = node + i * WORD_BYTES;
                if !matches!(classify(mem.word(at)?, at)?, Word::List(_)) {
                    return Ok(false);
                }
            }
            true
        }
        _ => false,
    })
}

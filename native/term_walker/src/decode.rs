//! Decoding one term word, or one object, at a time. Every header is checked
//! against the layout's invariants (ERTS_LAYOUT.md §5.1); anything unexpected
//! is a [`LayoutError`] that ends the walk. Nothing here guesses.

use crate::layout::{Kind, Layout};
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

/// Classifies a term word. `at` is where the word was read (for errors).
#[inline]
pub fn classify(word: u64, at: usize) -> Result<Word, LayoutError> {
    match word & PRIMARY_MASK {
        PRIMARY_IMMEDIATE => {
            if word & IMMEDIATE1_MASK == IMMEDIATE1_IMMED2 {
                let immed2 = word & IMMEDIATE2_MASK;
                if immed2 == IMMEDIATE_CATCH || immed2 == IMMEDIATE_UNUSED {
                    return Err(LayoutError::new("invalid immediate in a term", at, word));
                }
            }
            Ok(Word::Immediate)
        }
        PRIMARY_LIST => {
            // Bit 2 set would be a tagged literal pointer: a build this
            // layout table does not describe.
            if word & !POINTER_MASK != PRIMARY_LIST || word < LOWEST_VALID_ADDRESS {
                return Err(LayoutError::new("bad list pointer", at, word));
            }
            Ok(Word::List((word & POINTER_MASK) as usize))
        }
        PRIMARY_BOXED => {
            if word & !POINTER_MASK != PRIMARY_BOXED || word < LOWEST_VALID_ADDRESS {
                return Err(LayoutError::new("bad boxed pointer", at, word));
            }
            Ok(Word::Boxed((word & POINTER_MASK) as usize))
        }
        _ => Err(LayoutError::new(
            "header word where a term was expected",
            at,
            word,
        )),
    }
}

/// An off-heap `Binary` kept alive by a term: its address (the identity used
/// to count it once) and its allocated size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffHeapBinary {
    pub addr: usize,
    pub orig_size: u64,
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
        }
    }

    fn leaf(words: u64) -> Object {
        Object {
            words,
            children: 0,
            child_count: 0,
            binary: None,
            hashmap_node: false,
        }
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
pub fn boxed<M: Memory>(
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
                binary: None,
                hashmap_node: false,
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
        Kind::Fun => fun(mem, layout, addr, header),
        Kind::RefcBinary => {
            if header != layout.refc_binary.header {
                return bad("unexpected refc binary header");
            }
            let binary = match detail {
                Detail::OffHeap => Some(refc_binary(mem, layout, addr)?),
                Detail::Words => {
                    binary_pointer(mem, layout, addr)?;
                    None
                }
            };
            Ok(Object {
                binary,
                ..Object::leaf(layout.refc_binary.words)
            })
        }
        Kind::HeapBinary => {
            let size = word_at(mem, addr, 1)?;
            if size > layout.heap_binary_max_bytes
                || arity + 1 != layout.heap_binary_base_words + words_for_bytes(size)
            {
                return bad("heap binary size does not match its header");
            }
            Ok(Object::leaf(arity + 1))
        }
        Kind::SubBinary => sub_binary(mem, layout, addr, header, detail),
        Kind::Map => map(mem, layout, addr, header),
    }
}

fn fun<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
) -> Result<Object, LayoutError> {
    let fl = &layout.fun;
    if header != fl.header {
        return Err(LayoutError::new("unexpected fun header", addr, header));
    }
    let num_free = byte_at(mem, addr, fl.num_free_byte)?;
    let creator_at = addr + fl.creator_word * WORD_BYTES;
    let creator = mem.word(creator_at)?;
    // The creator is a local pid, a boxed external pid, or the atom
    // `external` for export funs, which have no free variables.
    const LOCAL_PID_TAG: u64 = 0x3;
    const ATOM_TAG: u64 = 0x0B;
    let creator_ok = match classify(creator, creator_at)? {
        Word::Immediate if creator & IMMEDIATE1_MASK == LOCAL_PID_TAG => true,
        Word::Immediate if creator & IMMEDIATE2_MASK == ATOM_TAG => num_free == 0,
        Word::Boxed(pid) => mem.word(pid)? == layout.external_pid_header,
        _ => false,
    };
    if !creator_ok {
        return Err(LayoutError::new(
            "fun creator is not a pid or an export marker",
            creator_at,
            creator,
        ));
    }
    Ok(Object {
        words: fl.base_words + num_free,
        children: creator_at,
        child_count: 1 + num_free as usize,
        binary: None,
        hashmap_node: false,
    })
}

/// A ProcBin's `Binary` pointer, checked for plausibility (not read).
fn binary_pointer<M: Memory>(mem: &M, layout: &Layout, addr: usize) -> Result<usize, LayoutError> {
    let binary = word_at(mem, addr, layout.refc_binary.binary_word)?;
    if binary < LOWEST_VALID_ADDRESS || binary % WORD_BYTES as u64 != 0 {
        return Err(LayoutError::new(
            "refc binary with a bad Binary pointer",
            addr,
            binary,
        ));
    }
    Ok(binary as usize)
}

/// Checks a ProcBin and the `Binary` it points to; returns that `Binary`.
fn refc_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
) -> Result<OffHeapBinary, LayoutError> {
    let rl = &layout.refc_binary;
    let size = word_at(mem, addr, rl.size_word)?;
    let bytes = word_at(mem, addr, rl.bytes_word)?;
    let binary = binary_pointer(mem, layout, addr)?;
    let refc = mem.word(binary + rl.binary_refc_offset)? as i64;
    let orig_size = mem.word(binary + rl.binary_orig_size_offset)? as i64;
    let data = (binary + rl.binary_data_offset) as u64;
    if refc < 1 || orig_size < 0 {
        return Err(LayoutError::new(
            "Binary with a bad refc or size",
            binary,
            orig_size as u64,
        ));
    }
    let orig_size = orig_size as u64;
    if size > orig_size || bytes < data || bytes - data + size > orig_size {
        return Err(LayoutError::new(
            "refc binary outside its Binary",
            addr,
            size,
        ));
    }
    Ok(OffHeapBinary {
        addr: binary,
        orig_size,
    })
}

/// A sub-binary counts what its copy would take (ERTS_LAYOUT.md §2.11); its
/// `orig` is never a child, but a refc `orig` names the `Binary` it pins.
fn sub_binary<M: Memory>(
    mem: &M,
    layout: &Layout,
    addr: usize,
    header: u64,
    detail: Detail,
) -> Result<Object, LayoutError> {
    let sl = &layout.sub_binary;
    if header != sl.header {
        return Err(LayoutError::new(
            "unexpected sub binary header",
            addr,
            header,
        ));
    }
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
    let orig_at = addr + sl.orig_word * WORD_BYTES;
    let orig_word = mem.word(orig_at)?;
    let orig = match classify(orig_word, orig_at)? {
        Word::Boxed(orig) => orig,
        _ => {
            return Err(LayoutError::new(
                "sub binary orig is not boxed",
                orig_at,
                orig_word,
            ))
        }
    };
    // Checks the orig as any object: a refc or heap binary, never a sub binary.
    let orig_object = boxed(mem, layout, orig, detail)?;
    let orig_header = mem.word(orig)?;
    let (orig_bytes, binary) = match layout.kind_of(orig_header) {
        Some(Kind::RefcBinary) => (
            word_at(mem, orig, layout.refc_binary.size_word)?,
            orig_object.binary,
        ),
        Some(Kind::HeapBinary) => (word_at(mem, orig, 1)?, None),
        _ => {
            return Err(LayoutError::new(
                "sub binary orig is not a binary",
                orig,
                orig_header,
            ))
        }
    };
    let end_bits = (offset + size) * 8 + bitoffs + bitsize;
    if end_bits > orig_bytes * 8 {
        return Err(LayoutError::new(
            "sub binary reaches past its orig",
            addr,
            size,
        ));
    }
    let bits = bitoffs + bitsize;
    let over_refc = layout.kind_of(orig_header) == Some(Kind::RefcBinary);
    let (mut words, extra_bytes) = match bits {
        0 => (0, 0),
        1..=8 => (sl.words, 1),
        _ => (sl.words, 2),
    };
    words += if over_refc {
        layout.refc_binary.words
    } else {
        layout.heap_binary_base_words + words_for_bytes(size + extra_bytes)
    };
    Ok(Object {
        binary,
        ..Object::leaf(words)
    })
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
        let keys_count = word_at(mem, addr, 1)?;
        if keys_count > layout.flatmap_max_keys {
            return bad("flatmap larger than the flatmap limit");
        }
        // The keys tuple has one element per key (the global `{}` when empty).
        let keys_at = addr + 2 * WORD_BYTES;
        let keys_word = mem.word(keys_at)?;
        let keys_ok = match classify(keys_word, keys_at)? {
            Word::Boxed(keys) => {
                let keys_header = mem.word(keys)?;
                layout.kind_of(keys_header) == Some(Kind::Tuple)
                    && keys_header & PRIMARY_MASK == PRIMARY_HEADER
                    && keys_header >> HEADER_ARITY_SHIFT == keys_count
            }
            _ => false,
        };
        if !keys_ok {
            return Err(LayoutError::new(
                "flatmap keys are not a tuple of its size",
                keys_at,
                keys_word,
            ));
        }
        return Ok(Object {
            words: layout.flatmap_base_words + keys_count,
            children: keys_at,
            child_count: 1 + keys_count as usize,
            binary: None,
            hashmap_node: false,
        });
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
    // A hashmap child is a leaf cons cell [K | V] or another node.
    for i in 0..child_count {
        let at = children + i * WORD_BYTES;
        let child = mem.word(at)?;
        if !matches!(classify(child, at)?, Word::List(_) | Word::Boxed(_)) {
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
        binary: None,
        hashmap_node: true,
    })
}

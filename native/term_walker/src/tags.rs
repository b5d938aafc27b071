//! The tag scheme common to every supported release on 64-bit builds
//! (docs/LAYOUT.md §1). Values that differ between releases live in [`crate::layout`].

/// Bytes in a machine word; the walker supports 64-bit emulators only.
pub const WORD_BYTES: usize = 8;

/// The two low bits of every word.
pub const PRIMARY_MASK: u64 = 0b11;
/// A header word (first word of a boxed object); never a term value.
pub const PRIMARY_HEADER: u64 = 0;
/// A pointer to a cons cell.
pub const PRIMARY_LIST: u64 = 1;
/// A pointer to a boxed object.
pub const PRIMARY_BOXED: u64 = 2;
/// An immediate.
pub const PRIMARY_IMMEDIATE: u64 = 3;

/// Clearing these bits from a list or boxed term gives the object address.
pub const POINTER_MASK: u64 = !0b111;

/// The six low bits of an immediate that are never valid inside a term:
/// the catch tag (stack only) and the unused immed2 value.
pub const IMMEDIATE_CATCH: u64 = 0x1B;
pub const IMMEDIATE_UNUSED: u64 = 0x2B;
pub const IMMEDIATE2_MASK: u64 = 0x3F;
/// The four low bits that select the "immed2" class.
pub const IMMEDIATE1_MASK: u64 = 0xF;
pub const IMMEDIATE1_IMMED2: u64 = 0xB;

/// A header's low six bits (subtag and primary tag).
pub const HEADER_TAG_MASK: u64 = 0x3F;
/// The header subtag, an index into the layout's kind table.
pub const HEADER_SUBTAG_SHIFT: u32 = 2;
pub const HEADER_SUBTAG_MASK: u64 = 0xF;
/// For most objects, the number of words after the header.
pub const HEADER_ARITY_SHIFT: u32 = 6;

/// Map headers split the bits above the tag (docs/LAYOUT.md §1): type, arity of
/// non-term words after the header, and a 16-bit value (bitmap or 0xFFFF).
pub const MAP_TYPE_SHIFT: u32 = 6;
pub const MAP_TYPE_MASK: u64 = 0b11;
pub const MAP_ARITY_SHIFT: u32 = 8;
pub const MAP_ARITY_MASK: u64 = 0xFF;
pub const MAP_VAL_SHIFT: u32 = 16;
pub const MAP_VAL_MASK: u64 = 0xFFFF;
pub const MAP_TYPE_FLATMAP: u64 = 0;
pub const MAP_TYPE_HASHMAP_NODE: u64 = 1;
pub const MAP_TYPE_HASHMAP_HEAD_ARRAY: u64 = 2;
pub const MAP_TYPE_HASHMAP_HEAD_BITMAP: u64 = 3;
/// The value of an array-form hashmap head: all 16 slots present.
pub const MAP_VAL_FULL: u64 = 0xFFFF;

/// Words of a cons cell: head and tail.
pub const CONS_WORDS: u64 = 2;

/// Number of words needed for `bytes` bytes.
pub const fn words_for_bytes(bytes: u64) -> u64 {
    bytes.div_ceil(WORD_BYTES as u64)
}

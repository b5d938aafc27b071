//! Per-release layout tables: every tag value, fixed header word, object size
//! and field offset the decoder relies on, for each OTP release whose layout
//! was read in its exact source and checked against the VM
//! (ERTS_LAYOUT.md §1.4, §1.6, §2, §4.1, §5.1).
//!
//! A release without a table here gets no native walker at all: the Erlang
//! side then runs in fallback mode. Adding a release means adding a table and
//! passing the load-time calibration on it, never loosening a check.

/// What a boxed object is, decided by its header subtag through
/// [`Layout::kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tuple,
    PositiveBignum,
    NegativeBignum,
    /// Ordinary, magic and pid references.
    Ref,
    /// Local and export funs.
    Fun,
    Float,
    /// ProcBin: a handle to an off-heap `Binary`.
    RefcBinary,
    HeapBinary,
    SubBinary,
    ExternalPid,
    ExternalPort,
    ExternalRef,
    /// Flatmaps and every hashmap node.
    Map,
}

/// Where a fun keeps its counts and what it costs (OTP ≤ 26 shape).
#[derive(Debug)]
pub struct FunLayout {
    /// The only valid fun header word.
    pub header: u64,
    /// Words of the fun object without its free variables: header, entry,
    /// off-heap link, arity/num_free word, creator.
    pub base_words: u64,
    /// Byte offset of the one-byte count of free variables.
    pub num_free_byte: usize,
    /// Word index of the creator pid; the environment follows it.
    pub creator_word: usize,
}

/// A ProcBin (refc binary handle) and the `Binary` it points to.
#[derive(Debug)]
pub struct RefcBinaryLayout {
    pub header: u64,
    /// Words of the ProcBin, which is also what a copy of a sub-binary over
    /// a refc binary costs (`PROC_BIN_SIZE`).
    pub words: u64,
    pub size_word: usize,
    pub binary_word: usize,
    pub bytes_word: usize,
    /// Byte offsets inside the off-heap `Binary` struct.
    pub binary_refc_offset: usize,
    pub binary_orig_size_offset: usize,
    pub binary_data_offset: usize,
}

/// Sub-binaries (OTP ≤ 26): arity 3 in the header but five words.
#[derive(Debug)]
pub struct SubBinaryLayout {
    pub header: u64,
    /// `ERL_SUB_BIN_SIZE`: what a copy keeps when the slice is not byte aligned.
    pub words: u64,
    pub size_word: usize,
    pub offset_word: usize,
    pub bitsize_byte: usize,
    pub bitoffs_byte: usize,
    pub orig_word: usize,
}

#[derive(Debug)]
pub struct Layout {
    /// Human-readable name, reported by `MemProbe.info()`.
    pub name: &'static str,
    pub otp_release: u32,
    /// Header subtag (bits 2–5) to object kind; `None` is an invalid header.
    pub kinds: [Option<Kind>; 16],
    /// `MAX_ARITYVAL`.
    pub max_tuple_arity: u64,
    /// `BIG_ARITY_MAX`, in 64-bit digits.
    pub max_bignum_digits: u64,
    pub float_header: u64,
    pub float_words: u64,
    /// Valid internal reference headers (ordinary or magic, pid-ref).
    pub ref_headers: [u64; 2],
    pub external_pid_header: u64,
    pub external_port_header: u64,
    pub external_pid_words: u64,
    /// Valid header arities of an external reference.
    pub external_ref_min_arity: u64,
    pub external_ref_max_arity: u64,
    pub fun: FunLayout,
    pub refc_binary: RefcBinaryLayout,
    pub sub_binary: SubBinaryLayout,
    /// `ERL_ONHEAP_BIN_LIMIT`: larger binaries are off-heap.
    pub heap_binary_max_bytes: u64,
    /// Words of a heap binary besides its data: header and size.
    pub heap_binary_base_words: u64,
    pub flatmap_header: u64,
    /// `MAP_SMALL_MAP_LIMIT`.
    pub flatmap_max_keys: u64,
    /// Words of a flatmap besides its values: header, size, keys pointer.
    pub flatmap_base_words: u64,
    /// Whether every arity-0 tuple is the global `{}` literal.
    pub empty_tuple_is_literal: bool,
}

/// OTP 25 (erts-13.x), 64-bit, little-endian, non-debug, no `TAG_LITERAL_PTR`.
/// Read in the exact 25.2.3 source and confirmed by raw header dumps [E].
pub static OTP_25: Layout = Layout {
    name: "OTP 25 (erts-13)",
    otp_release: 25,
    kinds: [
        Some(Kind::Tuple),          // 0x00
        None,                       // 0x04 match state: never inside a term
        Some(Kind::PositiveBignum), // 0x08
        Some(Kind::NegativeBignum), // 0x0C
        Some(Kind::Ref),            // 0x10
        Some(Kind::Fun),            // 0x14
        Some(Kind::Float),          // 0x18
        None,                       // 0x1C unused since OTP 25 (EXPORT before)
        Some(Kind::RefcBinary),     // 0x20
        Some(Kind::HeapBinary),     // 0x24
        Some(Kind::SubBinary),      // 0x28
        None,                       // 0x2C unused
        Some(Kind::ExternalPid),    // 0x30
        Some(Kind::ExternalPort),   // 0x34
        Some(Kind::ExternalRef),    // 0x38
        Some(Kind::Map),            // 0x3C
    ],
    max_tuple_arity: (1 << 24) - 1,
    max_bignum_digits: (1 << 19) - 1,
    float_header: 0x58,
    float_words: 2,
    ref_headers: [0x90, 0xD0],
    external_pid_header: 0xF0,
    external_port_header: 0xF4,
    external_pid_words: 4,
    external_ref_min_arity: 3,
    external_ref_max_arity: 5,
    fun: FunLayout {
        header: 0xD4,
        base_words: 5,
        num_free_byte: 25,
        creator_word: 4,
    },
    refc_binary: RefcBinaryLayout {
        header: 0x160,
        words: 6,
        size_word: 1,
        binary_word: 3,
        bytes_word: 4,
        binary_refc_offset: 8,
        binary_orig_size_offset: 16,
        binary_data_offset: 24,
    },
    sub_binary: SubBinaryLayout {
        header: 0xE8,
        words: 5,
        size_word: 1,
        offset_word: 2,
        bitsize_byte: 24,
        bitoffs_byte: 25,
        orig_word: 4,
    },
    heap_binary_max_bytes: 64,
    heap_binary_base_words: 2,
    flatmap_header: 0x13C,
    flatmap_max_keys: 32,
    flatmap_base_words: 3,
    empty_tuple_is_literal: true,
};

/// The layout for an OTP release, or `None` when the release was never read
/// and calibrated: the walker then stays off.
pub fn for_release(otp_release: u32) -> Option<&'static Layout> {
    match otp_release {
        25 => Some(&OTP_25),
        _ => None,
    }
}

impl Layout {
    /// The kind named by a header word's subtag.
    #[inline]
    pub fn kind_of(&self, header: u64) -> Option<Kind> {
        use crate::tags::{HEADER_SUBTAG_MASK, HEADER_SUBTAG_SHIFT};
        self.kinds[((header >> HEADER_SUBTAG_SHIFT) & HEADER_SUBTAG_MASK) as usize]
    }
}

//! Per-release layout tables: every tag value, fixed header word, object size
//! and field offset the decoder relies on (docs/LAYOUT.md has the reasons).
//!
//! A table is *verified* when its release was read in its exact source or
//! dumped word by word on a real VM of that release, and the whole test
//! suite passed there (OTP 25, 27, 29). A table is *unverified* when it
//! follows from the facts of its neighbours only (OTP 26: the 25 table; OTP
//! 28: the 29 table without native records): the NIF then runs the load-time
//! calibration with guarded reads (every word read through a call that fails
//! instead of faulting), so a wrong table ends in a refusal, never a crash.
//!
//! A release without a table here gets no native walker at all: the Erlang
//! side then runs in fallback mode. Adding a release means adding a table and
//! passing the load-time calibration on it, never loosening a check.
//!
//! What differs between releases is data here: which header subtag means
//! which kind of object ([`Layout::kinds`]), and one sub-table per object
//! family. A family a release does not have (ProcBins and sub binaries after
//! OTP 26, SubBits/BinRef/FunRef before 27) is `None`, and its subtags map to
//! no kind, so the decoder can never reach it.

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
    /// OTP 27: the `FunRef` a local fun keeps in its last environment slot;
    /// valid only there ([`FunLayout::fun_ref`]).
    FunRef,
    Float,
    /// OTP ≤ 26: ProcBin, a handle to an off-heap `Binary`.
    RefcBinary,
    /// Binary data on the heap: a heap binary (OTP ≤ 26, size in bytes) or
    /// HeapBits (OTP 27, size in bits); see [`HeapBinaryLayout`].
    HeapBinary,
    /// OTP ≤ 26 sub binary.
    SubBinary,
    /// OTP 27 SubBits: an off-heap bitstring (or a match context).
    SubBits,
    /// OTP 27: the handle to an off-heap `Binary`, valid only as the `orig`
    /// of a SubBits ([`SubBitsLayout`]).
    BinRef,
    ExternalPid,
    ExternalPort,
    ExternalRef,
    /// Flatmaps and every hashmap node.
    Map,
    /// OTP 29 native record: header, a boxed pointer to its definition (an
    /// ordinary tuple, normally literal), then the field values
    /// ([`RecordLayout`]).
    Record,
}

/// How a fun header is checked and where the size of its environment is.
#[derive(Debug)]
pub enum FunHeader {
    /// OTP ≤ 26: one header word for every fun; the number of free variables
    /// is a byte inside the object.
    Fixed { header: u64, num_free_byte: usize },
    /// OTP 27: `tag | arity << arity_shift | env_size << env_size_shift`, the
    /// two bits between the tag and the arity zero. `env_size` is 0 for
    /// export funs and `num_free + 1` for local ones (the FunRef slot).
    EnvSize {
        arity_shift: u32,
        env_size_shift: u32,
        /// `MAX_ARG` + 1: at most 255 free variables plus the FunRef.
        max_env_size: u64,
    },
    /// OTP 28+: `tag | arity << arity_shift | num_free << num_free_shift |
    /// external << external_shift`; no FunRef, so the environment is the free
    /// variables alone, and an export fun (kind bit set) has none.
    KindBit {
        arity_shift: u32,
        num_free_shift: u32,
        num_free_mask: u64,
        external_shift: u32,
    },
}

/// Funs, local and export.
#[derive(Debug)]
pub struct FunLayout {
    pub header: FunHeader,
    /// Words of the fun object besides its environment slots: header,
    /// entry, and on OTP ≤ 26 the off-heap link, counts word and creator.
    /// A fun object is `base_words + env_len` words, where `env_len` is
    /// the number of free variables (≤ 26) or the header's env size (27).
    pub base_words: u64,
    /// Word index of the `ErlFunEntry*` (or `Export*`).
    pub entry_word: usize,
    /// OTP ≤ 26: word index of the creator pid, a term visited before the
    /// environment (which follows it). `None` on 27, where funs have no creator.
    pub creator_word: Option<usize>,
    /// Word index of the first environment slot.
    pub env_word: usize,
    /// OTP 27: the FunRef in a local fun's last environment slot.
    pub fun_ref: Option<FunRefLayout>,
}

/// OTP 27 `FunRef`: header, `ErlFunEntry*`, off-heap link (erl_fun.h).
#[derive(Debug)]
pub struct FunRefLayout {
    pub header: u64,
    /// `ERL_FUN_REF_SIZE`.
    pub words: u64,
    /// Word index of the entry pointer, which equals the fun's own entry.
    pub entry_word: usize,
}

/// The off-heap `Binary` struct that refc binaries (≤ 26) and BinRefs (27)
/// point to: byte offsets of its fields (erl_binary.h).
#[derive(Debug)]
pub struct BinaryLayout {
    pub refc_offset: usize,
    pub orig_size_offset: usize,
    /// `orig_bytes`: where the data starts.
    pub data_offset: usize,
}

/// Binary data on the heap: header, size word, data words.
#[derive(Debug)]
pub struct HeapBinaryLayout {
    /// Words besides the data: header and size.
    pub base_words: u64,
    pub size_word: usize,
    /// Bits per unit of the size word: 8 (bytes, ≤ 26) or 1 (bits, 27).
    pub size_unit_bits: u64,
    /// Largest size (in size units) kept on the heap: `ERL_ONHEAP_BIN_LIMIT`
    /// (64 bytes) or `ERL_ONHEAP_BITS_LIMIT` (512 bits).
    pub max_size: u64,
}

/// A ProcBin (OTP ≤ 26 refc binary handle).
#[derive(Debug)]
pub struct RefcBinaryLayout {
    pub header: u64,
    /// Words of the ProcBin, which is also what a copy of a sub-binary over
    /// a refc binary costs (`PROC_BIN_SIZE`).
    pub words: u64,
    pub size_word: usize,
    pub binary_word: usize,
    pub bytes_word: usize,
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

/// OTP 27 `ErlSubBits` (erl_bits.h): header, base pointer with two flag bits,
/// start and end offsets in bits, `orig` (a BinRef, or for a match context
/// the HeapBits it matches).
#[derive(Debug)]
pub struct SubBitsLayout {
    pub header: u64,
    /// `ERL_SUB_BITS_SIZE`.
    pub words: u64,
    pub base_flags_word: usize,
    pub flags_mask: u64,
    /// `ERL_SUB_BITS_FLAG_VOLATILE`: the data may have moved since the base
    /// pointer was stored (writable binaries), so the base is not checked.
    pub volatile_flag: u64,
    /// `ERL_SUB_BITS_FLAGS_MATCH_CONTEXT`: the only flags a SubBits over
    /// heap data may have.
    pub match_context_flags: u64,
    pub start_word: usize,
    pub end_word: usize,
    pub orig_word: usize,
}

/// OTP 29 native records (erl_term.h of the 29 line, checked by dumping
/// record words on 29.1.2): `(1 + n) << 6 | tag`, then the definition
/// pointer and the n values; the definition is a tuple of arity
/// `definition_base_arity + n`. A copy takes it like a tuple (`size_object`
/// and `size_shared` treat records as tuples).
#[derive(Debug)]
pub struct RecordLayout {
    pub definition_word: usize,
    pub definition_base_arity: u64,
}

/// OTP 27 `BinRef`: header, `Binary*`, off-heap link.
#[derive(Debug)]
pub struct BinRefLayout {
    pub header: u64,
    /// `ERL_BIN_REF_SIZE`; a SubBits and its BinRef copy as
    /// `ERL_REFC_BITS_SIZE` = SubBits words + these.
    pub words: u64,
    pub binary_word: usize,
}

#[derive(Debug)]
pub struct Layout {
    /// Human-readable name, reported by `MemProbe.info()`.
    pub name: &'static str,
    pub otp_release: u32,
    /// Whether the table was checked on a real VM of its release (see the
    /// module doc); an unverified table is calibrated with guarded reads.
    pub verified: bool,
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
    /// The off-heap `Binary` struct.
    pub binary: BinaryLayout,
    pub heap_binary: HeapBinaryLayout,
    /// OTP ≤ 26 refc binaries and sub binaries.
    pub refc_binary: Option<RefcBinaryLayout>,
    pub sub_binary: Option<SubBinaryLayout>,
    /// OTP 27 off-heap bitstrings.
    pub sub_bits: Option<SubBitsLayout>,
    pub bin_ref: Option<BinRefLayout>,
    /// OTP 29 native records.
    pub record: Option<RecordLayout>,
    pub flatmap_header: u64,
    /// `MAP_SMALL_MAP_LIMIT`.
    pub flatmap_max_keys: u64,
    /// Words of a flatmap besides its values: header, size, keys pointer.
    pub flatmap_base_words: u64,
    /// Whether a hashmap node may have collision nodes as children: tuples
    /// (arity ≥ 2) of `[K | V]` leaf cells, when all hash bits are used up.
    pub hashmap_collision_nodes: bool,
    /// Whether every arity-0 tuple is the global `{}` literal.
    pub empty_tuple_is_literal: bool,
}

/// OTP 25 (erts-13.x), 64-bit, little-endian, non-debug, no `TAG_LITERAL_PTR`.
/// Read in the exact 25.2.3 source and confirmed by raw header dumps.
pub static OTP_25: Layout = OTP_25_TABLE;

const OTP_25_TABLE: Layout = Layout {
    name: "OTP 25 (erts-13)",
    otp_release: 25,
    verified: true,
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
        header: FunHeader::Fixed {
            header: 0xD4,
            num_free_byte: 25,
        },
        base_words: 5,
        entry_word: 1,
        creator_word: Some(4),
        env_word: 5,
        fun_ref: None,
    },
    binary: BinaryLayout {
        refc_offset: 8,
        orig_size_offset: 16,
        data_offset: 24,
    },
    heap_binary: HeapBinaryLayout {
        base_words: 2,
        size_word: 1,
        size_unit_bits: 8,
        max_size: 64,
    },
    refc_binary: Some(RefcBinaryLayout {
        header: 0x160,
        words: 6,
        size_word: 1,
        binary_word: 3,
        bytes_word: 4,
    }),
    sub_binary: Some(SubBinaryLayout {
        header: 0xE8,
        words: 5,
        size_word: 1,
        offset_word: 2,
        bitsize_byte: 24,
        bitoffs_byte: 25,
        orig_word: 4,
    }),
    sub_bits: None,
    bin_ref: None,
    record: None,
    flatmap_header: 0x13C,
    flatmap_max_keys: 32,
    flatmap_base_words: 3,
    // OTP 25 rehashes deeper levels with a salt instead (docs/LAYOUT.md).
    hashmap_collision_nodes: false,
    empty_tuple_is_literal: true,
};

/// OTP 26 (erts-14.x): unverified. No OTP 26 VM or release source can be had
/// here; the upstream fragments of the 26 line show the fun, binary and tag
/// layout of 25, so this is the 25 table, trusted only after the guarded
/// load-time calibration agrees with the VM. One difference: the hash
/// refactoring that 26 shipped (upstream PR 7249) mentions hashmap collision
/// nodes, which a 32-bit hash makes reachable, so they are accepted (a check
/// that admits them refuses nothing 25 has).
pub static OTP_26: Layout = Layout {
    name: "OTP 26 (erts-14, unverified)",
    otp_release: 26,
    verified: false,
    hashmap_collision_nodes: true,
    ..OTP_25_TABLE
};

/// OTP 27 (erts-15.x), 64-bit, little-endian, non-debug, no `TAG_LITERAL_PTR`.
/// Read in the exact 27.3.4.1 source (erts-15.2.7: erl_term.h, erl_bits.h,
/// erl_binary.h, erl_fun.h, erl_map.h, copy.c) and calibrated on Debian's
/// build of that release.
pub static OTP_27: Layout = OTP_27_TABLE;

const OTP_27_TABLE: Layout = Layout {
    name: "OTP 27 (erts-15)",
    otp_release: 27,
    verified: true,
    kinds: [
        Some(Kind::Tuple),          // 0x00
        Some(Kind::FunRef),         // 0x04 FUN_REF (only as a fun's last env slot)
        Some(Kind::PositiveBignum), // 0x08
        Some(Kind::NegativeBignum), // 0x0C
        Some(Kind::Ref),            // 0x10
        Some(Kind::Fun),            // 0x14
        Some(Kind::Float),          // 0x18
        None,                       // 0x1C free
        Some(Kind::HeapBinary),     // 0x20 HEAP_BITS
        Some(Kind::SubBits),        // 0x24 SUB_BITS
        Some(Kind::BinRef),         // 0x28 BIN_REF (only as a SubBits orig)
        Some(Kind::Map),            // 0x2C
        Some(Kind::ExternalPid),    // 0x30
        Some(Kind::ExternalPort),   // 0x34
        Some(Kind::ExternalRef),    // 0x38
        None,                       // 0x3C free, reserved for external things
    ],
    max_tuple_arity: (1 << 24) - 1,
    max_bignum_digits: (1 << 16) - 1,
    float_header: 0x58,
    float_words: 2,
    ref_headers: [0x90, 0xD0],
    external_pid_header: 0xF0,
    external_port_header: 0xF4,
    external_pid_words: 4,
    external_ref_min_arity: 3,
    external_ref_max_arity: 5,
    fun: FunLayout {
        header: FunHeader::EnvSize {
            arity_shift: 8,
            env_size_shift: 16,
            max_env_size: 256,
        },
        base_words: 2,
        entry_word: 1,
        creator_word: None,
        env_word: 2,
        fun_ref: Some(FunRefLayout {
            header: 0x84,
            words: 3,
            entry_word: 1,
        }),
    },
    binary: BinaryLayout {
        refc_offset: 16,
        orig_size_offset: 24,
        data_offset: 32,
    },
    heap_binary: HeapBinaryLayout {
        base_words: 2,
        size_word: 1,
        size_unit_bits: 1,
        max_size: 512,
    },
    refc_binary: None,
    sub_binary: None,
    sub_bits: Some(SubBitsLayout {
        header: 0x124,
        words: 5,
        base_flags_word: 1,
        flags_mask: 0b11,
        volatile_flag: 0b10,
        match_context_flags: 0b01,
        start_word: 2,
        end_word: 3,
        orig_word: 4,
    }),
    bin_ref: Some(BinRefLayout {
        header: 0xA8,
        words: 3,
        binary_word: 1,
    }),
    record: None,
    flatmap_header: 0x12C,
    flatmap_max_keys: 32,
    flatmap_base_words: 3,
    hashmap_collision_nodes: true,
    empty_tuple_is_literal: true,
};

/// The kinds of OTP 28 and 29: the 27 table without FunRef (tag 0x04 is free
/// again); 29 adds native records at 0x1C.
const FUN_REF_FREE_KINDS: [Option<Kind>; 16] = {
    let mut kinds = OTP_27_TABLE.kinds;
    kinds[0x04 >> 2] = None;
    kinds
};

/// OTP 29 (erts-17.x): the 27 layout with funs that lost their FunRef and a
/// kind bit in the header, and native records. Checked word by word on
/// Debian's 29.1.2 (fun headers `0x14 | arity << 8 | num_free << 16 |
/// external << 24`, record header `(1 + n) << 6 | 0x1C`, definition tuples
/// of arity `5 + n`), and by the whole suite there.
pub static OTP_29: Layout = OTP_29_TABLE;

const OTP_29_TABLE: Layout = Layout {
    name: "OTP 29 (erts-17)",
    otp_release: 29,
    verified: true,
    kinds: {
        let mut kinds = FUN_REF_FREE_KINDS;
        kinds[0x1C >> 2] = Some(Kind::Record);
        kinds
    },
    fun: FunLayout {
        header: FunHeader::KindBit {
            arity_shift: 8,
            num_free_shift: 16,
            num_free_mask: 0xFF,
            external_shift: 24,
        },
        base_words: 2,
        entry_word: 1,
        creator_word: None,
        env_word: 2,
        fun_ref: None,
    },
    record: Some(RecordLayout {
        definition_word: 1,
        definition_base_arity: 5,
    }),
    ..OTP_27_TABLE
};

/// OTP 28 (erts-16.x): unverified. No OTP 28 VM or source can be had here;
/// the FunRef removal (upstream PR 8674) landed before 28 branched and native
/// records after, so this is the 29 table without records, trusted only
/// after the guarded load-time calibration agrees with the VM.
pub static OTP_28: Layout = Layout {
    name: "OTP 28 (erts-16, unverified)",
    otp_release: 28,
    verified: false,
    kinds: FUN_REF_FREE_KINDS,
    record: None,
    ..OTP_29_TABLE
};

/// Every layout table, for the consistency tests.
pub static ALL: [&Layout; 5] = [&OTP_25, &OTP_26, &OTP_27, &OTP_28, &OTP_29];

/// The layout for an OTP release, or `None` for a release without a table
/// (24 and older, 30 and later): the walker then stays off.
pub fn for_release(otp_release: u32) -> Option<&'static Layout> {
    match otp_release {
        25 => Some(&OTP_25),
        26 => Some(&OTP_26),
        27 => Some(&OTP_27),
        28 => Some(&OTP_28),
        29 => Some(&OTP_29),
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

    /// Words of on-heap binary data holding `size` size units (bytes on
    /// ≤ 26, bits on 27): `heap_bin_size` / `heap_bits_size`.
    #[inline]
    pub fn heap_binary_words(&self, size: u64) -> u64 {
        let hb = &self.heap_binary;
        let bytes = (size * hb.size_unit_bits).div_ceil(8);
        hb.base_words + crate::tags::words_for_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind in a table has its sub-table, and no sub-table is orphaned.
    #[test]
    fn every_layout_is_consistent() {
        for layout in ALL {
            let has = |k| layout.kinds.contains(&Some(k));
            assert_eq!(has(Kind::RefcBinary), layout.refc_binary.is_some());
            assert_eq!(has(Kind::SubBinary), layout.sub_binary.is_some());
            assert_eq!(has(Kind::SubBits), layout.sub_bits.is_some());
            assert_eq!(has(Kind::BinRef), layout.bin_ref.is_some());
            assert_eq!(has(Kind::FunRef), layout.fun.fun_ref.is_some());
            assert_eq!(has(Kind::Record), layout.record.is_some());
            // Off-heap binaries are reachable through exactly one family.
            assert!(layout.refc_binary.is_some() != layout.bin_ref.is_some());
            for (subtag, kind) in layout.kinds.iter().enumerate() {
                let header = (subtag as u64) << 2;
                assert_eq!(layout.kind_of(header), *kind);
            }
            // decode::shape takes these headers for their kinds on sight.
            use crate::tags::{PRIMARY_HEADER, PRIMARY_MASK};
            if let (Some(sb), Some(br)) = (&layout.sub_bits, &layout.bin_ref) {
                assert_eq!(layout.kind_of(sb.header), Some(Kind::SubBits));
                assert_eq!(layout.kind_of(br.header), Some(Kind::BinRef));
                assert_eq!(br.header & PRIMARY_MASK, PRIMARY_HEADER);
                assert_eq!(sb.header & PRIMARY_MASK, PRIMARY_HEADER);
            }
            assert_eq!(layout.kind_of(layout.float_header), Some(Kind::Float));
            assert_eq!(layout.kind_of(layout.flatmap_header), Some(Kind::Map));
            assert_eq!(
                layout.kind_of(layout.external_pid_header),
                Some(Kind::ExternalPid)
            );
            assert_eq!(for_release(layout.otp_release).unwrap().name, layout.name);
        }
        for release in [23, 24, 30, 31] {
            assert!(for_release(release).is_none());
        }
        // Only the releases tested on a real VM here are verified.
        let verified: Vec<u32> = ALL
            .iter()
            .filter(|l| l.verified)
            .map(|l| l.otp_release)
            .collect();
        assert_eq!(verified, [25, 27, 29]);
    }

    #[test]
    fn unverified_tables_are_their_neighbours_tables() {
        // 26 is 25 in every field but its name, its verdict and its accepting
        // hashmap collision nodes.
        assert!(OTP_26.hashmap_collision_nodes && !OTP_25.hashmap_collision_nodes);
        assert_eq!(OTP_26.kinds, OTP_25.kinds);
        assert_eq!(format!("{:?}", OTP_26.fun), format!("{:?}", OTP_25.fun));
        assert_eq!(
            format!("{:?}", OTP_26.binary),
            format!("{:?}", OTP_25.binary)
        );
        // 28 is 29 without records: tag 0x1C is invalid there.
        assert_eq!(OTP_28.kind_of(0xDC), None);
        assert_eq!(OTP_29.kind_of(0xDC), Some(Kind::Record));
        assert_eq!(OTP_28.kind_of(0x84), None);
        assert_eq!(OTP_27.kind_of(0x84), Some(Kind::FunRef));
        assert_eq!(format!("{:?}", OTP_28.fun), format!("{:?}", OTP_29.fun));
        assert_eq!(OTP_28.flatmap_header, OTP_29.flatmap_header);
    }

    #[test]
    fn otp27_fixed_headers_follow_from_the_struct_sizes() {
        // _make_header(words - 1, tag) for each fixed-size object.
        let make = |words: u64, tag: u64| ((words - 1) << 6) | tag;
        let sb = OTP_27.sub_bits.as_ref().unwrap();
        assert_eq!(sb.header, make(sb.words, 0x24));
        let br = OTP_27.bin_ref.as_ref().unwrap();
        assert_eq!(br.header, make(br.words, 0x28));
        let fr = OTP_27.fun.fun_ref.as_ref().unwrap();
        assert_eq!(fr.header, make(fr.words, 0x04));
        // MAKE_MAP_HEADER(FLATMAP_HEAD, 1, 0) with the 0x2C map tag.
        assert_eq!(OTP_27.flatmap_header, (1 << 8) | 0x2C);
        // heap_bits_size: 0 bits = 2 words, 7 bits = 3, 512 bits = 10.
        assert_eq!(OTP_27.heap_binary_words(0), 2);
        assert_eq!(OTP_27.heap_binary_words(7), 3);
        assert_eq!(OTP_27.heap_binary_words(512), 10);
        assert_eq!(OTP_25.heap_binary_words(64), 10);
    }
}

//! Builders for objects laid out as OTP 27 lays them out (docs/LAYOUT.md
//! §2, §3, §5; erl_bits.h, erl_fun.h, erl_binary.h, erl_map.h of
//! 27.3.4.1). Everything else (tuples, lists, floats, refs, external things)
//! has the same words as on OTP 25 and uses the builders of `super`.

use super::{boxed_term, TestHeap};

pub const SUB_BITS_HEADER: u64 = 0x124;
pub const BIN_REF_HEADER: u64 = 0xA8;
pub const FUN_REF_HEADER: u64 = 0x84;
pub const FLATMAP_HEADER: u64 = 0x12C;
/// `Binary.orig_bytes`: flags, apparent_size, refc, orig_size, then data.
pub const BINARY_DATA_OFFSET: u64 = 32;
/// Stands for an `ErlFunEntry*` / `Export*` (never read by the walker).
pub const FUN_ENTRY: u64 = 0x7000_0000;
pub const EXPORT_ENTRY: u64 = 0x7100_0000;

/// ERL_SUB_BITS_FLAG_*.
pub const FLAG_MUTABLE: u64 = 1;
pub const FLAG_VOLATILE: u64 = 2;

impl TestHeap {
    /// An off-heap OTP 27 `Binary` of `orig_size` bytes. Returns its address.
    pub fn binary27(&mut self, orig_size: u64) -> usize {
        let addr = self.off_heap.alloc(&[0, 0, 1, orig_size]);
        self.off_heap
            .alloc(&vec![0; orig_size.div_ceil(8).max(1) as usize]);
        addr
    }

    pub fn bin_ref(&mut self, binary: usize) -> u64 {
        boxed_term(self.alloc(&[BIN_REF_HEADER, binary as u64, 0]))
    }

    pub fn literal_bin_ref(&mut self, binary: usize) -> u64 {
        boxed_term(self.alloc_literal(&[BIN_REF_HEADER, binary as u64, 0]))
    }

    /// A SubBits over `orig` (a BinRef term over `binary`), bits
    /// `start..end` from the Binary's data, with these flags.
    pub fn sub_bits(&mut self, orig: u64, binary: usize, start: u64, end: u64, flags: u64) -> u64 {
        let base = binary as u64 + BINARY_DATA_OFFSET;
        boxed_term(self.alloc(&[SUB_BITS_HEADER, base | flags, start, end, orig]))
    }

    pub fn literal_sub_bits(&mut self, orig: u64, binary: usize, start: u64, end: u64) -> u64 {
        let base = binary as u64 + BINARY_DATA_OFFSET;
        boxed_term(self.alloc_literal(&[SUB_BITS_HEADER, base, start, end, orig]))
    }

    /// A whole off-heap binary of `bytes` bytes: Binary, BinRef, SubBits.
    /// Returns the SubBits term and the Binary's address.
    pub fn off_heap_bits(&mut self, bytes: u64) -> (u64, usize) {
        let binary = self.binary27(bytes);
        let br = self.bin_ref(binary);
        (self.sub_bits(br, binary, 0, bytes * 8, 0), binary)
    }

    /// A HeapBits of `bits` bits.
    pub fn heap_bits(&mut self, bits: u64) -> u64 {
        let data_words = bits.div_ceil(8).div_ceil(8);
        let mut words = vec![((1 + data_words) << 6) | 0x20, bits];
        words.extend(std::iter::repeat_n(0xCD, data_words as usize));
        boxed_term(self.alloc(&words))
    }

    /// A match context over the HeapBits `orig`, bits `start..end`.
    pub fn match_context(&mut self, orig: u64, start: u64, end: u64, flags: u64) -> u64 {
        let data = (orig & !7) + 16;
        boxed_term(self.alloc(&[SUB_BITS_HEADER, data | flags, start, end, orig]))
    }

    pub fn fun_ref(&mut self, entry: u64) -> u64 {
        boxed_term(self.alloc(&[FUN_REF_HEADER, entry, 0]))
    }

    pub fn literal_fun_ref(&mut self, entry: u64) -> u64 {
        boxed_term(self.alloc_literal(&[FUN_REF_HEADER, entry, 0]))
    }

    /// The header of a fun: `0x14 | arity << 8 | env_size << 16`.
    pub fn fun27_header(arity: u64, env_size: u64) -> u64 {
        0x14 | (arity << 8) | (env_size << 16)
    }

    /// A local fun of `entry` with these free variables and FunRef term.
    pub fn fun27(&mut self, arity: u64, env: &[u64], fun_ref: u64, entry: u64) -> u64 {
        let mut words = vec![Self::fun27_header(arity, env.len() as u64 + 1), entry];
        words.extend_from_slice(env);
        words.push(fun_ref);
        boxed_term(self.alloc(&words))
    }

    /// A loader-built fun without free variables: fun and FunRef, literal.
    pub fn literal_fun27(&mut self, arity: u64, entry: u64) -> u64 {
        let fun_ref = self.literal_fun_ref(entry);
        boxed_term(self.alloc_literal(&[Self::fun27_header(arity, 1), entry, fun_ref]))
    }

    /// An export fun: header (env size 0) and `Export*`.
    pub fn export_fun27(&mut self, arity: u64) -> u64 {
        boxed_term(self.alloc(&[Self::fun27_header(arity, 0), EXPORT_ENTRY]))
    }

    pub fn literal_export_fun27(&mut self, arity: u64) -> u64 {
        boxed_term(self.alloc_literal(&[Self::fun27_header(arity, 0), EXPORT_ENTRY]))
    }

    pub fn flatmap27(&mut self, keys: u64, values: &[u64]) -> u64 {
        let mut words = vec![FLATMAP_HEADER, values.len() as u64, keys];
        words.extend_from_slice(values);
        boxed_term(self.alloc(&words))
    }

    pub fn hashmap_head27(&mut self, bitmap: u64, size: u64, children: &[u64]) -> u64 {
        let map_type = if bitmap == 0xFFFF { 2 } else { 3 };
        let header = (bitmap << 16) | (1 << 8) | (map_type << 6) | 0x2C;
        let mut words = vec![header, size];
        words.extend_from_slice(children);
        boxed_term(self.alloc(&words))
    }

    pub fn hashmap_node27(&mut self, bitmap: u64, children: &[u64]) -> u64 {
        let header = (bitmap << 16) | (1 << 6) | 0x2C;
        let mut words = vec![header];
        words.extend_from_slice(children);
        boxed_term(self.alloc(&words))
    }
}

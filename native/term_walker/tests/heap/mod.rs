//! Synthetic heaps built word by word, laid out as OTP 25 lays them out
//! (docs/LAYOUT.md §1–§5). Reads outside what was built are errors, so a
//! walker bug shows up as a failed test, never as a wild read.

#![allow(dead_code)]

use std::cell::RefCell;

use term_walker::decode::LayoutError;
use term_walker::Memory;

pub const HEAP_BASE: usize = 0x0010_0000;
pub const LITERAL_BASE: usize = 0x4000_0000;
pub const OFF_HEAP_BASE: usize = 0x8000_0000;

pub const NIL: u64 = 0x3B;

pub fn small(i: i64) -> u64 {
    ((i as u64) << 4) | 0xF
}

pub fn atom(index: u64) -> u64 {
    (index << 6) | 0x0B
}

pub fn local_pid(n: u64) -> u64 {
    (n << 4) | 0x3
}

pub fn list_term(addr: usize) -> u64 {
    addr as u64 | 1
}

pub fn boxed_term(addr: usize) -> u64 {
    addr as u64 | 2
}

struct Region {
    base: usize,
    words: Vec<u64>,
}

impl Region {
    fn alloc(&mut self, words: &[u64]) -> usize {
        let addr = self.base + self.words.len() * 8;
        self.words.extend_from_slice(words);
        addr
    }

    fn get(&self, addr: usize) -> Option<u64> {
        if addr < self.base || !addr.is_multiple_of(8) {
            return None;
        }
        self.words.get((addr - self.base) / 8).copied()
    }
}

/// A process heap, a literal area and off-heap memory, all synthetic.
pub struct TestHeap {
    heap: Region,
    literals: Region,
    off_heap: Region,
    /// Every word read, for tests that check the walker never writes or wanders.
    pub reads: RefCell<u64>,
    /// The global empty tuple, in the literal area.
    pub empty_tuple: u64,
}

impl Memory for TestHeap {
    fn word(&self, addr: usize) -> Result<u64, LayoutError> {
        *self.reads.borrow_mut() += 1;
        self.heap
            .get(addr)
            .or_else(|| self.literals.get(addr))
            .or_else(|| self.off_heap.get(addr))
            .ok_or(LayoutError::new("read outside the synthetic heap", addr, 0))
    }

    fn is_literal(&self, addr: usize) -> bool {
        addr >= LITERAL_BASE && addr < LITERAL_BASE + self.literals.words.len() * 8
    }
}

impl Default for TestHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHeap {
    pub fn new() -> Self {
        let mut heap = TestHeap {
            heap: Region {
                base: HEAP_BASE,
                words: Vec::new(),
            },
            literals: Region {
                base: LITERAL_BASE,
                words: Vec::new(),
            },
            off_heap: Region {
                base: OFF_HEAP_BASE,
                words: Vec::new(),
            },
            reads: RefCell::new(0),
            empty_tuple: 0,
        };
        heap.empty_tuple = boxed_term(heap.literals.alloc(&[0]));
        heap
    }

    /// Words for an object on the heap, returning its address.
    pub fn alloc(&mut self, words: &[u64]) -> usize {
        self.heap.alloc(words)
    }

    pub fn alloc_literal(&mut self, words: &[u64]) -> usize {
        self.literals.alloc(words)
    }

    /// Overwrites one heap word (to craft broken layouts).
    pub fn poke(&mut self, addr: usize, word: u64) {
        let i = (addr - HEAP_BASE) / 8;
        self.heap.words[i] = word;
    }

    /// Overwrites one off-heap word.
    pub fn poke_off_heap(&mut self, addr: usize, word: u64) {
        let i = (addr - OFF_HEAP_BASE) / 8;
        self.off_heap.words[i] = word;
    }

    pub fn cons(&mut self, head: u64, tail: u64) -> u64 {
        list_term(self.alloc(&[head, tail]))
    }

    pub fn literal_cons(&mut self, head: u64, tail: u64) -> u64 {
        list_term(self.alloc_literal(&[head, tail]))
    }

    pub fn list(&mut self, items: &[u64]) -> u64 {
        items
            .iter()
            .rev()
            .fold(NIL, |tail, &head| self.cons(head, tail))
    }

    pub fn tuple(&mut self, items: &[u64]) -> u64 {
        let mut words = vec![(items.len() as u64) << 6];
        words.extend_from_slice(items);
        boxed_term(self.alloc(&words))
    }

    pub fn literal_tuple(&mut self, items: &[u64]) -> u64 {
        let mut words = vec![(items.len() as u64) << 6];
        words.extend_from_slice(items);
        boxed_term(self.alloc_literal(&words))
    }

    pub fn float(&mut self, value: f64) -> u64 {
        boxed_term(self.alloc(&[0x58, value.to_bits()]))
    }

    pub fn bignum(&mut self, digits: &[u64], negative: bool) -> u64 {
        let tag = if negative { 0x0C } else { 0x08 };
        let mut words = vec![((digits.len() as u64) << 6) | tag];
        words.extend_from_slice(digits);
        boxed_term(self.alloc(&words))
    }

    pub fn ordinary_ref(&mut self) -> u64 {
        boxed_term(self.alloc(&[0x90, 0xFFFF_FFFF, 7]))
    }

    pub fn pid_ref(&mut self) -> u64 {
        boxed_term(self.alloc(&[0xD0, 0xFFFF_FFFF, 7, local_pid(5)]))
    }

    pub fn external_pid(&mut self) -> u64 {
        boxed_term(self.alloc(&[0xF0, 0x1234_5678, 0, 42]))
    }

    pub fn external_port(&mut self) -> u64 {
        boxed_term(self.alloc(&[0xF4, 0x1234_5678, 0, 42]))
    }

    /// An external ref with `data_words` words of numbers (2 or 3).
    pub fn external_ref(&mut self, data_words: u64) -> u64 {
        let arity = 2 + data_words;
        let mut words = vec![(arity << 6) | 0x38, 0x1234_5678, 0];
        words.extend(std::iter::repeat_n(9, data_words as usize));
        boxed_term(self.alloc(&words))
    }

    /// A local fun (creator a local pid) with these free variables.
    pub fn fun(&mut self, env: &[u64]) -> u64 {
        let arity_and_free = 1 | ((env.len() as u64) << 8);
        let mut words = vec![0xD4, 0x7000_0000, 0, arity_and_free, local_pid(1)];
        words.extend_from_slice(env);
        boxed_term(self.alloc(&words))
    }

    /// An export fun: creator is the atom `external`, no environment.
    pub fn export_fun(&mut self) -> u64 {
        boxed_term(self.alloc(&[0xD4, 0x7000_0000, 0, 2, atom(77)]))
    }

    pub fn heap_binary(&mut self, bytes: u64) -> u64 {
        let data_words = bytes.div_ceil(8);
        let mut words = vec![((1 + data_words) << 6) | 0x24, bytes];
        words.extend(std::iter::repeat_n(0xAB, data_words as usize));
        boxed_term(self.alloc(&words))
    }

    /// An off-heap `Binary` of `orig_size` bytes (header words only; the
    /// data area is not needed by the walker). Returns its address.
    pub fn off_heap_binary(&mut self, orig_size: u64) -> usize {
        // flags, refc, orig_size, then data
        let addr = self.off_heap.alloc(&[0, 1, orig_size]);
        self.off_heap
            .alloc(&vec![0; orig_size.div_ceil(8).max(1) as usize]);
        addr
    }

    /// A ProcBin over `binary` showing `size` bytes from byte `offset`.
    pub fn proc_bin(&mut self, binary: usize, size: u64, offset: u64) -> u64 {
        let data = binary as u64 + 24 + offset;
        boxed_term(self.alloc(&[0x160, size, 0, binary as u64, data, 0]))
    }

    pub fn literal_proc_bin(&mut self, binary: usize, size: u64) -> u64 {
        boxed_term(self.alloc_literal(&[0x160, size, 0, binary as u64, binary as u64 + 24, 0]))
    }

    /// A sub-binary of `orig` (a boxed binary term).
    pub fn sub_binary(
        &mut self,
        orig: u64,
        size: u64,
        offset: u64,
        bitsize: u64,
        bitoffs: u64,
    ) -> u64 {
        // bytes 24, 25, 26: bitsize, bitoffs, is_writable; the rest is garbage.
        let packed = bitsize | (bitoffs << 8) | 0xDEAD_BE00_0000_0000;
        boxed_term(self.alloc(&[0xE8, size, offset, packed, orig]))
    }

    /// A flatmap with this keys tuple term and these values.
    pub fn flatmap(&mut self, keys: u64, values: &[u64]) -> u64 {
        let mut words = vec![0x13C, values.len() as u64, keys];
        words.extend_from_slice(values);
        boxed_term(self.alloc(&words))
    }

    /// A hashmap head (array form when `bitmap` is 0xFFFF) with `size` keys.
    pub fn hashmap_head(&mut self, bitmap: u64, size: u64, children: &[u64]) -> u64 {
        let map_type = if bitmap == 0xFFFF { 2 } else { 3 };
        let header = (bitmap << 16) | (1 << 8) | (map_type << 6) | 0x3C;
        let mut words = vec![header, size];
        words.extend_from_slice(children);
        boxed_term(self.alloc(&words))
    }

    pub fn hashmap_node(&mut self, bitmap: u64, children: &[u64]) -> u64 {
        let header = (bitmap << 16) | (1 << 6) | 0x3C;
        let mut words = vec![header];
        words.extend_from_slice(children);
        boxed_term(self.alloc(&words))
    }

    /// The address of a boxed or list term.
    pub fn addr(term: u64) -> usize {
        (term & !7) as usize
    }
}

pub mod check;
pub mod otp27;
pub mod otp29;

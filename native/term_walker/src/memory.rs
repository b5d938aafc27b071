//! How the walker reads words. The NIF implements this over real VM memory
//! (its one `unsafe` boundary); the tests implement it over synthetic heaps
//! that reject any address outside what they built.

use crate::decode::LayoutError;

pub trait Memory {
    /// The 64-bit word at `addr` (8-byte aligned).
    fn word(&self, addr: usize) -> Result<u64, LayoutError>;
    /// A word other threads may change while it is read (a `Binary`'s
    /// reference count): read atomically where that matters.
    fn shared_word(&self, addr: usize) -> Result<u64, LayoutError> {
        self.word(addr)
    }
    /// A hint that the word at `addr` will be read soon (a `Binary` a
    /// ProcBin points to: a cache miss, taken a few objects ahead). Reads
    /// nothing and may be given any address; by default it does nothing.
    #[inline(always)]
    fn prefetch(&self, _addr: usize) {}
    /// Whether `addr` lies in the literal area (module constants,
    /// `persistent_term`, global literals).
    fn is_literal(&self, addr: usize) -> bool;
}

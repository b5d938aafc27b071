//! The one `unsafe` boundary: reading words of the running VM's memory.
//!
//! Everything else in MemProbe reads through [`VmMemory`], and the walker
//! only asks for addresses it derived from a term word or from fields of an
//! object whose header it has already checked against the release's layout
//! (`term_walker::decode`). Reads are valid for the whole NIF call: the
//! calling process cannot be garbage-collected, nor its literals purged,
//! while it runs a NIF (ERTS_LAYOUT.md §6.2). No address is kept past the
//! call that read it.

use rustler::sys::ErlNifTerm;
use rustler::Term;
use term_walker::decode::LayoutError;
use term_walker::Memory;

/// The literal area's address range, or an empty range when the emulator does
/// not export it (the calibration then fails and the library falls back).
#[derive(Clone, Copy, Debug, Default)]
pub struct LiteralRange {
    pub start: usize,
    pub size: usize,
}

impl LiteralRange {
    /// Reads `erts_literals_start` and `erts_literals_size` from the running
    /// emulator. They are set once when the emulator reserves the literal
    /// area and never change afterwards, so reading them at load is enough.
    pub fn of_running_emulator() -> Option<LiteralRange> {
        // SAFETY: dlsym with RTLD_DEFAULT only looks symbols up. When found,
        // the symbols are `char *erts_literals_start` and
        // `UWord erts_literals_size` (erl_mmap.c), both pointer-sized.
        unsafe {
            let start = libc::dlsym(libc::RTLD_DEFAULT, c"erts_literals_start".as_ptr());
            let size = libc::dlsym(libc::RTLD_DEFAULT, c"erts_literals_size".as_ptr());
            if start.is_null() || size.is_null() {
                return None;
            }
            let range = LiteralRange {
                start: *(start as *const usize),
                size: *(size as *const usize),
            };
            (range.start != 0 && range.size != 0).then_some(range)
        }
    }
}

/// The memory of the running VM, as seen during one NIF call.
pub struct VmMemory {
    literals: LiteralRange,
}

impl VmMemory {
    pub fn new(literals: LiteralRange) -> Self {
        VmMemory { literals }
    }
}

impl Memory for VmMemory {
    #[inline(always)]
    fn word(&self, addr: usize) -> Result<u64, LayoutError> {
        // SAFETY: `addr` is 8-aligned (the walker masks pointers with !7 and
        // adds whole words) and points into an object reachable from a NIF
        // argument whose header the walker checked, or into the `Binary` of
        // a checked ProcBin. Such memory stays valid and unchanged for the
        // duration of the NIF call.
        Ok(unsafe { std::ptr::read(addr as *const u64) })
    }

    #[inline(always)]
    fn is_literal(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.literals.start) < self.literals.size
    }
}

/// The raw term word behind a rustler term (the `Eterm` itself).
#[inline]
pub fn term_word(term: Term) -> u64 {
    let raw: ErlNifTerm = term.as_c_arg();
    // SAFETY: `ErlNifTerm` is `repr(transparent)` over `ERL_NIF_UINT`
    // (`usize`), and erl_nif passes the `Eterm` word through unchanged
    // (ERTS_LAYOUT.md §1.1); transmute checks the sizes at compile time.
    (unsafe { std::mem::transmute::<ErlNifTerm, usize>(raw) }) as u64
}

//! The one `unsafe` boundary: reading words of the running VM's memory, and
//! the few symbols of the emulator MemProbe looks up.
//!
//! Everything else in MemProbe reads through [`VmMemory`] or
//! [`GuardedMemory`], and the walker only asks for addresses it derived from
//! a term word or from fields of an object whose header it has already
//! checked against the release's layout (`term_walker::decode`). Reads are
//! valid for the whole NIF call: the calling process cannot be
//! garbage-collected, nor its literals purged, while it runs a NIF
//! (docs/LAYOUT.md, "Scheduling"). No address is kept past the call that
//! read it.

use std::cell::RefCell;
use std::collections::HashMap;

use rustler::sys::ErlNifTerm;
use rustler::{Encoder, Env, Term};
use term_walker::decode::LayoutError;
use term_walker::literal_area::Range;
use term_walker::Memory;

/// The literal area's bounds from `erts_literals_start` and
/// `erts_literals_size`, where `beam.smp` exports them (OTP 25 and 27; not
/// OTP 29). They are set once when the emulator reserves the literal area
/// and never change afterwards, so reading them at load is enough.
pub fn exported_literal_range() -> Option<Range> {
    // SAFETY: dlsym with RTLD_DEFAULT only looks symbols up. When found,
    // the symbols are `char *erts_literals_start` and
    // `UWord erts_literals_size` (erl_mmap.c), both pointer-sized and
    // written once before any NIF can load.
    unsafe {
        let start = libc::dlsym(libc::RTLD_DEFAULT, c"erts_literals_start".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"erts_literals_size".as_ptr());
        if start.is_null() || size.is_null() {
            return None;
        }
        let range = Range {
            start: *(start as *const usize),
            size: *(size as *const usize),
        };
        (range.start != 0 && range.size != 0).then_some(range)
    }
}

/// `size_t enif_term_size(ERL_NIF_TERM)` (NIF 2.18, OTP 29): the flat size
/// in bytes. Looked up at run time so that one library serves every release.
pub type TermSizeFn = unsafe extern "C" fn(ErlNifTerm) -> usize;

pub fn enif_term_size() -> Option<TermSizeFn> {
    // SAFETY: a symbol lookup; when present the symbol is the NIF API
    // function of the signature above (erl_nif_api_funcs.h of OTP 29).
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"enif_term_size".as_ptr());
        (!f.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, TermSizeFn>(f))
    }
}

/// The CPU time of the calling thread, in nanoseconds (a scheduler thread
/// that the OS preempts spends none).
pub fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// The memory of the running VM, as seen during one NIF call, read directly.
pub struct VmMemory {
    literals: Range,
}

impl VmMemory {
    /// # Safety
    ///
    /// While the reader is used:
    /// * the calling process is inside a NIF call (so it is neither
    ///   garbage-collected nor has its literals purged), and only terms of
    ///   that call (its arguments) are walked;
    /// * the layout table handed to the walker is the running emulator's:
    ///   a verified table chosen by the release, or one the guarded
    ///   calibration accepted (`set_native/1`).
    ///
    /// Under these conditions every address the walker reads (`decode`
    /// derives them from checked headers, within the object's declared
    /// size, or the `Binary` header of a checked handle) lies in a live
    /// object of this VM.
    pub unsafe fn new(literals: Range) -> Self {
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

    fn shared_word(&self, addr: usize) -> Result<u64, LayoutError> {
        // SAFETY: as `word`; the field is an `erts_atomic_t` that other
        // schedulers update atomically, so it is loaded atomically too.
        Ok(
            unsafe { std::sync::atomic::AtomicU64::from_ptr(addr as *mut u64) }
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    #[inline(always)]
    fn prefetch(&self, addr: usize) {
        // SAFETY: `prefetcht0` reads nothing the program sees and cannot
        // fault, on any address (an unmapped one is dropped by the CPU);
        // SSE, the feature it needs, is part of every x86-64 CPU.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }

    #[inline(always)]
    fn is_literal(&self, addr: usize) -> bool {
        self.literals.contains(addr)
    }
}

const PAGE_BYTES: usize = 4096;
const PAGE_WORDS: usize = PAGE_BYTES / 8;

/// Memory read through `process_vm_readv` on this process: a read of an
/// address that is not mapped readable fails with `EFAULT` instead of
/// faulting, so a walk with a wrong layout table ends in a layout error,
/// never a crash. Pages are copied once per walk. Used by the load-time
/// calibration, which is what decides whether direct reads are trusted.
pub struct GuardedMemory {
    literals: Range,
    pages: RefCell<HashMap<usize, Box<[u64; PAGE_WORDS]>>>,
}

impl GuardedMemory {
    pub fn new(literals: Range) -> Self {
        GuardedMemory {
            literals,
            pages: RefCell::new(HashMap::new()),
        }
    }

    /// Whether the system lets this process read itself this way (a
    /// seccomp profile or a kernel without the call says no).
    pub fn available() -> bool {
        let probe: u64 = 0x5EED;
        let mut copy = [0u64; 1];
        read_self(&probe as *const u64 as usize, &mut copy).is_ok() && copy[0] == probe
    }
}

/// Copies `out.len()` words at `addr` of this process's memory into `out`.
fn read_self(addr: usize, out: &mut [u64]) -> Result<(), ()> {
    let bytes = std::mem::size_of_val(out);
    let local = libc::iovec {
        iov_base: out.as_mut_ptr() as *mut libc::c_void,
        iov_len: bytes,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes,
    };
    // SAFETY: the kernel writes at most `bytes` bytes into `out`, which we
    // own; the remote side is only read, by the kernel, which checks it.
    let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if copied == bytes as isize {
        Ok(())
    } else {
        Err(())
    }
}

impl Memory for GuardedMemory {
    fn word(&self, addr: usize) -> Result<u64, LayoutError> {
        let page = addr & !(PAGE_BYTES - 1);
        let index = (addr - page) / 8;
        let mut pages = self.pages.borrow_mut();
        if let Some(words) = pages.get(&page) {
            return Ok(words[index]);
        }
        let mut words = Box::new([0u64; PAGE_WORDS]);
        read_self(page, &mut words[..])
            .map_err(|_| LayoutError::new("read outside readable memory", addr, 0))?;
        let word = words[index];
        pages.insert(page, words);
        Ok(word)
    }

    fn is_literal(&self, addr: usize) -> bool {
        self.literals.contains(addr)
    }
}

/// The raw term word behind a rustler term (the `Eterm` itself).
#[inline]
pub fn term_word(term: Term) -> u64 {
    let raw: ErlNifTerm = term.as_c_arg();
    // SAFETY: `ErlNifTerm` is `repr(transparent)` over `ERL_NIF_UINT`
    // (`usize`), and erl_nif passes the `Eterm` word through unchanged
    // (docs/LAYOUT.md, "Words and tags"); transmute checks the sizes at
    // compile time.
    (unsafe { std::mem::transmute::<ErlNifTerm, usize>(raw) }) as u64
}

/// The largest small integer of a 64-bit emulator: 60 bits of value and
/// sign above the 4-bit tag.
const MAX_SMALL: u64 = (1 << 59) - 1;

/// The immediate word of the small integer `n` (at most [`MAX_SMALL`]):
/// `n << 4 | 0b1111` (docs/LAYOUT.md §1).
#[inline(always)]
fn small_word(n: u64) -> usize {
    ((n << 4) | 0xF) as usize
}

/// Whether the VM's small integers are what [`small_word`] makes: asked
/// once, at load, of `enif_make_uint64`.
pub fn small_ints_as_documented(env: Env) -> bool {
    [0, 1, 20, 0x1234_5678_9ABC, MAX_SMALL]
        .iter()
        .all(|&n: &u64| term_word(n.encode(env)) == small_word(n) as u64)
}

/// `n` as a term: when `as_documented` (the load's
/// [`small_ints_as_documented`]) and `n` is small, the immediate made here,
/// without a call into the VM; otherwise by the VM (a bignum beyond).
#[inline(always)]
pub fn uint_term(env: Env, n: u128, as_documented: bool) -> Term {
    if as_documented && n <= MAX_SMALL as u128 {
        // SAFETY: `ErlNifTerm` is `repr(transparent)` over `ERL_NIF_UINT`
        // (see `term_word`), and an immediate is a whole term, valid in any
        // environment; this one is a small integer, as the load checked.
        unsafe {
            Term::new(
                env,
                std::mem::transmute::<usize, ErlNifTerm>(small_word(n as u64)),
            )
        }
    } else {
        n.encode(env)
    }
}

/// A tuple of `N` terms, made from the array itself (rustler's
/// `make_tuple` copies the elements into a `Vec` first: an allocation and a
/// free per answer).
#[inline(always)]
pub fn tuple<'a, const N: usize>(env: Env<'a>, elements: [Term<'a>; N]) -> Term<'a> {
    let raw: [ErlNifTerm; N] = elements.map(|t| t.as_c_arg());
    // SAFETY: `raw` holds `N` terms of this environment and outlives the
    // call, which copies them onto the process heap.
    unsafe {
        Term::new(
            env,
            rustler::sys::enif_make_tuple_from_array(env.as_c_arg(), raw.as_ptr(), N as u32),
        )
    }
}

/// A non-negative integer argument: read from the word when it is a small
/// integer (the tag test of docs/LAYOUT.md §1; the walker reads every
/// immediate so), by the VM otherwise (a bignum); `None` for anything else.
#[inline(always)]
pub fn uint_of(term: Term) -> Option<u64> {
    let word = term_word(term);
    if word & 0xF == 0xF && (word as i64) >= 0 {
        return Some(word >> 4);
    }
    term.decode::<u64>().ok()
}

//! MemProbe's NIF: sizes terms with `term_walker` over the VM's own memory.
//!
//! Entry points (see `src/mem_probe_nif.erl`):
//! * `walk/3` runs on the caller's normal scheduler with a budget of 10k
//!   words and at most 1 ms of CPU time, and answers `budget_exceeded` when
//!   the term is larger (modes `flat`, `shared`, `full`, and `calibrate`:
//!   `full` through guarded reads, plus the `erts_debug:size/1` count and
//!   `enif_term_size`);
//! * `breakdown/6` and `breakdown_dirty/6` (breakdown.rs): retained sizes by
//!   position, scheduled the same way;
//! * `walk_dirty/3` runs the same walk from the root on a dirty CPU scheduler;
//! * `native_info/0` says which layout was selected at load and how the
//!   literal area was found;
//! * `set_native/1` is the calibration's verdict: until it says `true`, only
//!   `calibrate` walks run (guarded), every other walk is refused.

mod alloc;
mod breakdown;
mod entry;
mod vm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rustler::types::tuple::make_tuple;
use rustler::{Atom, Encoder, Env, Term};
use term_walker::literal_area::{self, LiteralCarrier, Range};
use term_walker::walk::{self, Deadline, Stop, Work};
use term_walker::{layout, Detail, Layout, Memory};

use vm::{term_word, GuardedMemory, TermSizeFn, VmMemory};

rustler::atoms! {
    ok,
    error,
    flat,
    shared,
    full,
    calibrate,
    undefined,
    budget_exceeded,
    limit,
    layout_error,
    flat_size_overflow,
    unknown_release_layout,
    bad_walk_mode,
    not_calibrated,
    guarded_reads_unavailable,
    symbols,
    proc_maps,
    agrees,
    disagrees,
    not_checked,
    no_carrier_info,
    maps_unreadable,
    layout,
    verified,
    literal_range,
    literal_cross_check,
    guarded_reads,
    term_size_check,
    otp_release,
    literal_carrier,
    literal_probes,
    heap_probes,
    layout_release,
    walk_memory_limit,
    inject_layout_error,
    out_of_memory,
}

/// Work a walk may do on a normal scheduler before it hands over to a dirty
/// one, which walks again from the root. Small, so that the work thrown away
/// when a term turns out to be large stays under a tenth of what a term of
/// 100k words or more costs in all (bench/term_size.exs prints it), and so
/// that a slice is some tens of microseconds.
const NORMAL_SCHEDULER_FLAT_WORDS: u64 = 10_000;
/// A scan spends one unit per object besides its words (at most 1.5 units
/// per word), so this too stops before ~10k words.
const NORMAL_SCHEDULER_SCAN_WORDS: u64 = 15_000;
/// The distinct words a flat walk that ran out of its budget may still size
/// on the normal scheduler, as a DAG ([`flat_after_budget`]): some tens of
/// microseconds at most, thrown away when the term is not one.
const DAG_PROBE_WORDS: u64 = 4096;
/// Whatever the words, a normal-scheduler walk ends after this much of its
/// thread's CPU time (read every few thousand words): slow memory cannot
/// stretch a slice.
const NORMAL_SCHEDULER_SLICE_NS: u64 = 1_000_000;

/// How the literal area was found.
#[derive(Clone, Copy)]
enum LiteralMethod {
    /// `erts_literals_start` / `erts_literals_size` (OTP 25, 27).
    Symbols,
    /// `/proc/self/maps`, the carrier's sizes and known addresses (OTP 29).
    ProcMaps,
}

struct Loaded {
    layout: Option<&'static Layout>,
    /// Whether the layout table may be walked with direct reads before the
    /// calibration passed: only a verified table chosen by the release itself
    /// (a table forced by `layout_release` is treated as unverified).
    verified: bool,
    literals: Result<(Range, LiteralMethod), &'static str>,
    /// Where both methods work: whether the maps found the symbols' range.
    cross_check: Option<bool>,
    guarded: bool,
    term_size: Option<TermSizeFn>,
    /// Bytes one walk may allocate for itself (`walk_memory_limit`).
    memory_limit: u64,
    /// The `inject_layout_error` test switch: every walk but the
    /// calibration ends in a layout error, to exercise the fault policy.
    inject_layout_error: bool,
    /// Whether the VM's small integers are the immediates docs/LAYOUT.md §1
    /// describes (checked at load against `enif_make_uint64`): then the
    /// walks' answers make them without a call into the VM.
    small_ints: bool,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
/// The calibration's verdict (`set_native/1`).
static NATIVE: AtomicBool = AtomicBool::new(false);

/// Addresses of the boxed and list terms in a list of probes.
fn probe_addresses(list: Option<Term>) -> Vec<usize> {
    list.and_then(|l| l.decode::<Vec<Term>>().ok())
        .unwrap_or_default()
        .into_iter()
        .map(term_word)
        .filter(|w| matches!(w & 0b11, 1 | 2))
        .map(|w| (w & !0b111) as usize)
        .collect()
}

/// The literal area from `/proc/self/maps`, proven with the load info's
/// probes (term_walker::literal_area).
fn literal_range_from_maps(load_info: Term) -> Result<Range, &'static str> {
    let get = |key: Atom| load_info.map_get(key).ok();
    let (size, used_bottom, used_top) = get(literal_carrier())
        .and_then(|c| c.decode::<(usize, usize, usize)>().ok())
        .ok_or("no_carrier_info")?;
    let carrier = LiteralCarrier {
        size,
        used_bottom,
        used_top,
    };
    let text = std::fs::read_to_string("/proc/self/maps").map_err(|_| "maps_unreadable")?;
    let maps = literal_area::parse_maps(&text);
    let literals = probe_addresses(get(literal_probes()));
    let heap = probe_addresses(get(heap_probes()));
    literal_area::locate(&maps, &carrier, &literals, &heap).map_err(|r| r.as_str())
}

/// The load (and upgrade) callback, called through [`entry`].
fn load(env: Env, load_info: Term) -> bool {
    // load_info: #{otp_release => Binary, layout_release => N | undefined,
    // literal_carrier => {Scs, TotalSa, TotalSua} | undefined,
    // literal_probes => [Literal], heap_probes => [T]}.
    let release = load_info
        .map_get(otp_release())
        .ok()
        .and_then(|t| t.decode::<String>().ok())
        .and_then(|otp| otp.parse::<u32>().ok());
    let forced = load_info
        .map_get(layout_release())
        .ok()
        .and_then(|t| t.decode::<u32>().ok());
    let layout = forced.or(release).and_then(layout::for_release);
    let memory_limit = load_info
        .map_get(walk_memory_limit())
        .ok()
        .and_then(|t| t.decode::<u64>().ok())
        .unwrap_or(u64::MAX);
    let inject_layout_error = load_info
        .map_get(inject_layout_error())
        .ok()
        .and_then(|t| t.decode::<bool>().ok())
        .unwrap_or(false);
    let from_maps = literal_range_from_maps(load_info);
    let (literals, cross_check) = match vm::exported_literal_range() {
        Some(range) => (
            Ok((range, LiteralMethod::Symbols)),
            from_maps.ok().map(|found| found == range),
        ),
        None => (
            from_maps.map(|range| (range, LiteralMethod::ProcMaps)),
            None,
        ),
    };
    let _ = LOADED.set(Loaded {
        layout,
        verified: forced.is_none() && layout.is_some_and(|l| l.verified),
        literals,
        cross_check,
        guarded: GuardedMemory::available(),
        term_size: vm::enif_term_size(),
        memory_limit,
        inject_layout_error,
        small_ints: vm::small_ints_as_documented(env),
    });
    true // the Erlang side reports what is missing and falls back
}

/// The `inject_layout_error` test switch's error, when the switch is on:
/// what a walk of `root` answers instead of walking (the calibration is
/// never affected).
fn injected_fault(loaded: &Loaded, root: u64) -> Option<Stop> {
    loaded.inject_layout_error.then(|| {
        Stop::Layout(term_walker::LayoutError::new(
            "layout error injected by the inject_layout_error test switch",
            (root & !0b111) as usize,
            root,
        ))
    })
}

/// The layout and literal range, when both are known.
fn ready() -> Option<(&'static Layout, Range, &'static Loaded)> {
    let loaded = LOADED.get()?;
    let layout = loaded.layout?;
    let (range, _) = loaded.literals.ok()?;
    Some((layout, range, loaded))
}

/// A walk's mode, from its atom.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flat,
    Shared,
    Full,
    Calibrate,
}

impl Mode {
    /// The mode `term` names. An atom is one immediate word, the same word
    /// wherever it occurs, so a comparison of words is an atom comparison
    /// and needs no call into the VM. `Err(true)` for another atom (answered
    /// `{error, bad_walk_mode}`), `Err(false)` for a term that is no atom
    /// (`badarg`).
    #[inline]
    fn of(term: Term) -> Result<Mode, bool> {
        let word = term_word(term);
        let is = |atom: Atom| word == term_word(atom.to_term(term.get_env()));
        if is(flat()) {
            Ok(Mode::Flat)
        } else if is(full()) {
            Ok(Mode::Full)
        } else if is(shared()) {
            Ok(Mode::Shared)
        } else if is(calibrate()) {
            Ok(Mode::Calibrate)
        } else {
            Err(term.is_atom())
        }
    }
}

fn walk_with<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    mode: Mode,
    heap_words: u64,
    work: &mut Work,
) -> Result<(u128, term_walker::Scan), Stop> {
    match mode {
        Mode::Flat => {
            walk::flat(mem, layout, root, heap_words, work).map(|words| (words, Default::default()))
        }
        Mode::Shared => walk::scan(mem, layout, root, Detail::Words, work).map(|found| (0, found)),
        Mode::Full | Mode::Calibrate => {
            walk::term_size(mem, layout, root, work).map(|size| (size.flat_words, size.scan))
        }
    }
}

/// A walk of a user's term (modes `flat`, `shared`, `full`): refused until
/// the calibration's verdict is native, then with direct reads. The
/// calibration's own walks go to [`run_calibration`].
#[inline(always)]
fn run<'a>(env: Env<'a>, term: Term<'a>, mode: Mode, heap_words: u64, normal: bool) -> Term<'a> {
    let Some((layout, literals, loaded)) = ready() else {
        return (error(), unknown_release_layout()).encode(env);
    };
    if mode == Mode::Calibrate {
        // The calibration set is small and fixed: no memory limit (that is
        // for users' terms).
        let work = allowance(normal, mode, u64::MAX);
        return run_calibration(env, term, layout, literals, loaded, heap_words, work);
    }
    if !NATIVE.load(Ordering::Acquire) {
        return (error(), not_calibrated()).encode(env);
    }
    let root = term_word(term);
    if let Some(fault) = injected_fault(loaded, root) {
        return stopped(env, fault);
    }
    // Made here, in its place: a `Work` built elsewhere and moved cost a
    // stalled copy (its fields stored one by one, then loaded in pairs).
    let mut work = allowance(normal, mode, loaded.memory_limit);
    // SAFETY: this is a NIF call walking its own argument; the table is the
    // running emulator's, proven by the calibration (`NATIVE` is its yes).
    let mem = unsafe { VmMemory::new(literals) };
    let small = loaded.small_ints;
    match mode {
        // A flat or shared size is the answer alone: no tuple to build here
        // or to take apart in Erlang.
        Mode::Flat => match walk::flat(&mem, layout, root, heap_words, &mut work)
            .or_else(|stop| flat_after_budget(stop, &mem, layout, root, loaded.memory_limit))
        {
            Ok(words) => vm::uint_term(env, words, small),
            Err(stop) => stopped(env, stop),
        },
        Mode::Shared => match walk::scan(&mem, layout, root, Detail::Words, &mut work) {
            Ok(found) => vm::uint_term(env, found.shared_words as u128, small),
            Err(stop) => stopped(env, stop),
        },
        _ => match walk::term_size(&mem, layout, root, &mut work) {
            Ok(size) => {
                // The fields of the map MemProbe.term_size/1 returns, which
                // the Erlang side builds with its literal keys (cheaper than
                // a map made here, whose keys the VM must sort).
                let found = size.scan;
                let bytes = found
                    .shared_words
                    .saturating_mul(term_walker::tags::WORD_BYTES as u64)
                    .saturating_add(found.off_heap_bytes);
                let uint = |n: u64| vm::uint_term(env, n as u128, small);
                vm::tuple(
                    env,
                    [
                        ok().encode(env),
                        vm::uint_term(env, size.flat_words, small),
                        uint(found.shared_words),
                        uint(found.literal_words),
                        uint(found.off_heap_binaries),
                        uint(found.off_heap_bytes),
                        uint(bytes),
                    ],
                )
            }
            Err(stop) => stopped(env, stop),
        },
    }
}

/// A flat walk that ran out of its normal-scheduler budget may have met a
/// small DAG: many paths, few distinct objects. A scan with a small budget
/// of its own tells; when it finishes, the DAG walk (linear in the distinct
/// objects) sizes the term here, without the dirty scheduler's hop. A term
/// with more distinct words than that, or any other stop, is answered as
/// before (`budget_exceeded` sends it to the dirty scheduler).
#[cold]
#[inline(never)]
fn flat_after_budget<M: Memory>(
    stop: Stop,
    mem: &M,
    layout: &Layout,
    root: u64,
    memory_limit: u64,
) -> Result<u128, Stop> {
    if stop != Stop::Budget {
        return Err(stop);
    }
    let probe = || {
        let mut work = Work::limited(DAG_PROBE_WORDS).with_memory_limit(memory_limit);
        let found = walk::scan(mem, layout, root, Detail::Words, &mut work)?;
        if !found.repeats {
            return Ok(found.distinct_words() as u128);
        }
        walk::flat_words_dag(
            mem,
            layout,
            root,
            &mut Work::limited(DAG_PROBE_WORDS).with_memory_limit(memory_limit),
        )
    };
    // The probe's own memory is not the flat size's: past the limit, the
    // dirty walk (which needs no visited set for a tree) decides.
    probe().map_err(|stop| match stop {
        Stop::OutOfMemory => Stop::Budget,
        other => other,
    })
}

/// A walk's allowance: on a normal scheduler its budget of words and
/// time, on a dirty one no limit but memory.
#[inline(always)]
fn allowance(normal: bool, mode: Mode, memory_limit: u64) -> Work {
    let words = match (normal, mode) {
        (false, _) => return Work::unlimited().with_memory_limit(memory_limit),
        (true, Mode::Flat) => NORMAL_SCHEDULER_FLAT_WORDS,
        (true, _) => NORMAL_SCHEDULER_SCAN_WORDS,
    };
    Work::limited(words)
        .with_deadline(normal_slice())
        .with_memory_limit(memory_limit)
}

/// The answer of a walk that stopped.
#[cold]
#[inline(never)]
fn stopped(env: Env, stop: Stop) -> Term {
    match stop {
        Stop::Budget => budget_exceeded().encode(env),
        Stop::Overflow => (error(), flat_size_overflow()).encode(env),
        Stop::OutOfMemory => (error(), out_of_memory()).encode(env),
        Stop::Layout(e) => {
            let detail = (layout_error(), e.what, e.addr as u64, e.word);
            (error(), detail).encode(env)
        }
    }
}

/// A walk of the calibration set (mode `calibrate`): allowed before the
/// verdict, through guarded reads where the system has them; direct reads
/// only for a verified table chosen by the release itself.
#[cold]
#[inline(never)]
fn run_calibration<'a>(
    env: Env<'a>,
    term: Term<'a>,
    layout: &Layout,
    literals: Range,
    loaded: &Loaded,
    heap_words: u64,
    mut work: Work,
) -> Term<'a> {
    let root = term_word(term);
    let mode = Mode::Calibrate;
    let result = if loaded.guarded {
        walk_with(
            &GuardedMemory::new(literals),
            layout,
            root,
            mode,
            heap_words,
            &mut work,
        )
    } else if !loaded.verified {
        // An unverified table is never walked with direct reads before the
        // calibration has passed.
        return (error(), guarded_reads_unavailable()).encode(env);
    } else {
        // SAFETY: a NIF call walking its own argument with a verified table
        // chosen by the release itself.
        let mem = unsafe { VmMemory::new(literals) };
        walk_with(&mem, layout, root, mode, heap_words, &mut work)
    };
    match result {
        Ok((flat_words, found)) => {
            // The calibration compares everything with the VM's functions:
            // size_shared/1 counts hashmap nodes twice, size/1 counts OTP
            // 27's shared BinRefs and FunRefs once per owner, and (NIF 2.18)
            // enif_term_size gives the VM's own flat size in bytes. Every
            // integer is made by the VM here: the calibration does not
            // depend on `small_ints`.
            let term_size = match loaded.term_size {
                // SAFETY: the VM's own function on a live term of this call
                // (the calibration terms are small).
                Some(term_size) => (unsafe { term_size(term.as_c_arg()) } as u64).encode(env),
                None => undefined().encode(env),
            };
            let fields = [
                ok().encode(env),
                flat_words.encode(env),
                found.shared_words.encode(env),
                found.literal_words.encode(env),
                found.hashmap_node_words.encode(env),
                found.off_heap_binaries.encode(env),
                found.off_heap_bytes.encode(env),
                found.erts_size_words().encode(env),
                term_size,
            ];
            make_tuple(env, &fields)
        }
        Err(stop) => stopped(env, stop),
    }
}

/// `walk/3` and `walk_dirty/3`: the term, its mode and the caller's heap
/// size; `None` (badarg) for arguments of the wrong types. `normal`: on a
/// normal scheduler, with its budget.
#[inline(always)]
fn walk_on<'a>(env: Env<'a>, args: [Term<'a>; 3], normal: bool) -> Option<Term<'a>> {
    let [term, mode, heap_words] = args;
    let heap_words = vm::uint_of(heap_words)?;
    let mode = match Mode::of(mode) {
        Ok(mode) => mode,
        Err(true) => return Some((error(), bad_walk_mode()).encode(env)),
        Err(false) => return None,
    };
    Some(run(env, term, mode, heap_words, normal))
}

// walk(Term, Mode, HeapWords): a raw NIF (entry::raw_nif!), the hot entry
// point of every small size.
entry::raw_nif!("walk", 3, rustler::SchedulerFlags::Normal, walk);

fn walk<'a>(env: Env<'a>, args: [Term<'a>; 3]) -> Option<Term<'a>> {
    walk_on(env, args, true)
}

/// A normal-scheduler slice of this thread's CPU time (read only once a
/// walk passes its first few thousand words: small walks read no clock).
fn normal_slice() -> Deadline {
    Deadline {
        now: vm::thread_cpu_ns,
        after: NORMAL_SCHEDULER_SLICE_NS,
    }
}

// walk_dirty(Term, Mode, HeapWords): the same walk on a dirty CPU scheduler.
entry::raw_nif!(
    "walk_dirty",
    3,
    rustler::SchedulerFlags::DirtyCpu,
    walk_dirty
);

fn walk_dirty<'a>(env: Env<'a>, args: [Term<'a>; 3]) -> Option<Term<'a>> {
    walk_on(env, args, false)
}

/// The plain path-counting walk alone, for the tests of the DAG switch.
#[rustler::nif(schedule = "DirtyCpu")]
fn walk_flat_raw<'a>(env: Env<'a>, term: Term<'a>, path_limit: u64) -> Term<'a> {
    let Some((layout, literals, _)) = ready() else {
        return (error(), unknown_release_layout()).encode(env);
    };
    if !NATIVE.load(Ordering::Acquire) {
        return (error(), not_calibrated()).encode(env);
    }
    // SAFETY: as in `run`: this call's own argument, a calibrated table.
    let mem = unsafe { VmMemory::new(literals) };
    match walk::flat_words(
        &mem,
        layout,
        term_word(term),
        path_limit,
        &mut Work::unlimited(),
    ) {
        Ok(Some(words)) => (ok(), words).encode(env),
        Ok(None) => limit().encode(env),
        Err(_) => error().encode(env),
    }
}

/// `echo/1`: returns its argument. The fixed cost of calling a NIF at all
/// on this VM, for bench/nif_floor.exs: a bare C-ABI function, without
/// rustler's wrapper (which copies the arguments into a `Vec` and catches
/// panics), so nothing is cheaper.
///
/// # Safety
/// Called by the VM only, with its one argument in `argv`.
unsafe extern "C" fn echo(
    _env: *mut rustler::sys::ErlNifEnv,
    _argc: std::ffi::c_int,
    argv: *const rustler::sys::ErlNifTerm,
) -> rustler::sys::ErlNifTerm {
    *argv
}

rustler::codegen_runtime::inventory::submit!(rustler::Nif {
    name: c"echo".as_ptr(),
    arity: 1,
    flags: rustler::SchedulerFlags::Normal as std::ffi::c_uint,
    raw_func: echo,
});

/// `echo_rustler/1`: the same through `#[rustler::nif]`, to show what
/// rustler's wrapper adds to every call.
#[rustler::nif]
fn echo_rustler(term: Term) -> Term {
    term
}

/// The calibration's verdict: `true` lets every walk run with direct reads.
#[rustler::nif]
fn set_native(native: bool) -> bool {
    NATIVE.store(native && ready().is_some(), Ordering::Release);
    NATIVE.load(Ordering::Acquire)
}

#[rustler::nif]
fn native_info(env: Env) -> Term {
    let loaded = LOADED.get();
    let layout_term = match loaded.and_then(|l| l.layout) {
        Some(l) => l.name.encode(env),
        None => undefined().encode(env),
    };
    let verified_term = loaded.is_some_and(|l| l.verified);
    let range_term = match loaded.map(|l| l.literals) {
        Some(Ok((range, method))) => {
            let method = match method {
                LiteralMethod::Symbols => symbols(),
                LiteralMethod::ProcMaps => proc_maps(),
            };
            (method, range.start as u64, range.size as u64).encode(env)
        }
        Some(Err(why)) => (error(), Atom::from_str(env, why).unwrap_or(error())).encode(env),
        None => (error(), undefined()).encode(env),
    };
    let cross = match loaded.and_then(|l| l.cross_check) {
        Some(true) => agrees(),
        Some(false) => disagrees(),
        None => not_checked(),
    };
    let pairs = [
        (layout().encode(env), layout_term),
        (verified().encode(env), verified_term.encode(env)),
        (literal_range().encode(env), range_term),
        (literal_cross_check().encode(env), cross.encode(env)),
        (
            guarded_reads().encode(env),
            loaded.is_some_and(|l| l.guarded).encode(env),
        ),
        (
            term_size_check().encode(env),
            loaded.is_some_and(|l| l.term_size.is_some()).encode(env),
        ),
    ];
    Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| error().encode(env))
}

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
fn load(_env: Env, load_info: Term) -> bool {
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

fn walk_with<M: Memory>(
    mem: &M,
    layout: &Layout,
    root: u64,
    mode: Atom,
    heap_words: u64,
    work: &mut Work,
) -> Result<(u128, term_walker::Scan), Stop> {
    if mode == flat() {
        walk::flat(mem, layout, root, heap_words, work).map(|words| (words, Default::default()))
    } else if mode == shared() {
        walk::scan(mem, layout, root, Detail::Words, work).map(|found| (0, found))
    } else {
        walk::term_size(mem, layout, root, work).map(|size| (size.flat_words, size.scan))
    }
}

fn run<'a>(env: Env<'a>, term: Term<'a>, mode: Atom, heap_words: u64, work: Work) -> Term<'a> {
    let Some((layout, literals, loaded)) = ready() else {
        return (error(), unknown_release_layout()).encode(env);
    };
    let calibrating = mode == calibrate();
    if !(calibrating || mode == flat() || mode == shared() || mode == full()) {
        return (error(), bad_walk_mode()).encode(env);
    }
    if !calibrating && !NATIVE.load(Ordering::Acquire) {
        return (error(), not_calibrated()).encode(env);
    }
    let root = term_word(term);
    // The calibration set is small and fixed: the limit is for users' terms.
    let mut work = if calibrating {
        work
    } else {
        work.with_memory_limit(loaded.memory_limit)
    };
    let injected = injected_fault(loaded, root).filter(|_| !calibrating);
    let result = if let Some(fault) = injected {
        Err(fault)
    } else if calibrating && loaded.guarded {
        walk_with(
            &GuardedMemory::new(literals),
            layout,
            root,
            mode,
            heap_words,
            &mut work,
        )
    } else if calibrating && !loaded.verified {
        // An unverified table is never walked with direct reads before the
        // calibration has passed.
        return (error(), guarded_reads_unavailable()).encode(env);
    } else {
        // SAFETY: this is a NIF call walking its own argument; the table is
        // the running emulator's, proven by the calibration (or, while it
        // runs, verified and chosen by the release itself).
        let mem = unsafe { VmMemory::new(literals) };
        walk_with(&mem, layout, root, mode, heap_words, &mut work)
    };
    match result {
        Ok((flat_words, _)) if mode == flat() => (ok(), flat_words).encode(env),
        Ok((_, found)) if mode == shared() => (ok(), found.shared_words).encode(env),
        Ok((flat_words, found)) if mode == full() => {
            // The fields of the map MemProbe.term_size/1 returns, which the
            // Erlang side builds with its literal keys (cheaper than a map
            // made here, whose keys the VM must sort).
            let bytes = found
                .shared_words
                .saturating_mul(term_walker::tags::WORD_BYTES as u64)
                .saturating_add(found.off_heap_bytes);
            let fields = [
                ok().encode(env),
                flat_words.encode(env),
                found.shared_words.encode(env),
                found.literal_words.encode(env),
                found.off_heap_binaries.encode(env),
                found.off_heap_bytes.encode(env),
                bytes.encode(env),
            ];
            make_tuple(env, &fields)
        }
        Ok((flat_words, found)) => {
            // The calibration compares everything with the VM's functions:
            // size_shared/1 counts hashmap nodes twice, size/1 counts OTP
            // 27's shared BinRefs and FunRefs once per owner, and (NIF 2.18)
            // enif_term_size gives the VM's own flat size in bytes.
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
        Err(Stop::Budget) => budget_exceeded().encode(env),
        Err(Stop::Overflow) => (error(), flat_size_overflow()).encode(env),
        Err(Stop::OutOfMemory) => (error(), out_of_memory()).encode(env),
        Err(Stop::Layout(e)) => {
            let detail = (layout_error(), e.what, e.addr as u64, e.word);
            (error(), detail).encode(env)
        }
    }
}

#[rustler::nif]
fn walk<'a>(env: Env<'a>, term: Term<'a>, mode: Atom, heap_words: u64) -> Term<'a> {
    let budget = if mode == flat() {
        NORMAL_SCHEDULER_FLAT_WORDS
    } else {
        NORMAL_SCHEDULER_SCAN_WORDS
    };
    run(
        env,
        term,
        mode,
        heap_words,
        Work::limited(budget).with_deadline(normal_slice()),
    )
}

/// A normal-scheduler slice of this thread's CPU time (read only once a
/// walk passes its first few thousand words: small walks read no clock).
fn normal_slice() -> Deadline {
    Deadline {
        now: vm::thread_cpu_ns,
        after: NORMAL_SCHEDULER_SLICE_NS,
    }
}

#[rustler::nif(schedule = "DirtyCpu")]
fn walk_dirty<'a>(env: Env<'a>, term: Term<'a>, mode: Atom, heap_words: u64) -> Term<'a> {
    run(env, term, mode, heap_words, Work::unlimited())
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

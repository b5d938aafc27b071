//! The breakdown NIFs: retained sizes by position (`term_walker::breakdown`).
//!
//! * `breakdown/4` runs on the caller's normal scheduler with a work budget
//!   and answers `budget_exceeded` when the term is larger;
//! * `breakdown_dirty/4` runs it from the root on a dirty CPU scheduler.
//!
//! Arguments: the term, `MinShare` (a float in 0..1), `MaxRows`, `MaxDepth`,
//! `MaxObjects` (past it: `{error, too_many_objects}`).
//! Answer: `{ok, {Words, OffHeapBytes, OffHeapBinaries, LiteralWords,
//! Objects, Nodes, PeakBytes}, Rows}`, each row `{Path, Words, OffHeapBytes,
//! Objects, Kind}` and each step `{elem, I}`, `{key, Key}`, `{list, First,
//! Last}` or `{env, I}` (0-based); or `budget_exceeded`, or `{error, _}`.

use rustler::sys::ErlNifTerm;
use rustler::{Encoder, Env, Term};
use term_walker::breakdown::{self, Breakdown, Budget, RowKind, Settings, Step};
use term_walker::walk::Stop;

use std::sync::atomic::Ordering;

use crate::vm::{term_word, VmMemory};

rustler::atoms! {
    elem,
    key,
    list,
    env_atom = "env",
    tuple,
    map,
    binary,
    fun_atom = "fun",
    integer,
    float,
    reference,
    pid,
    port,
    record,
    other,
    too_many_objects,
}

/// Words a breakdown may visit on a normal scheduler before it hands over to
/// a dirty one: a scan's allowance (`NORMAL_SCHEDULER_SCAN_WORDS`), so that
/// the work thrown away on a large term is no more than `term_size/1`'s.
const NORMAL_SCHEDULER_WORDS: u64 = 15_000;

/// A term word read from inside the argument term, as a term of `env`.
fn term_of(env: Env<'_>, word: u64) -> Term<'_> {
    // SAFETY: `word` is a key word the walker read from a checked map object
    // (or leaf cell) reachable from the NIF argument: a valid term of the
    // calling process (or a literal) for the whole call, which is what
    // `env` is bound to. `ErlNifTerm` is `repr(transparent)` over the
    // `Eterm` word (see `vm::term_word`).
    unsafe { Term::new(env, std::mem::transmute::<usize, ErlNifTerm>(word as usize)) }
}

fn kind_atom(kind: RowKind) -> rustler::Atom {
    match kind {
        RowKind::Tuple => tuple(),
        RowKind::Map => map(),
        RowKind::List => list(),
        RowKind::Binary => binary(),
        RowKind::Fun => fun_atom(),
        RowKind::Integer => integer(),
        RowKind::Float => float(),
        RowKind::Reference => reference(),
        RowKind::Pid => pid(),
        RowKind::Port => port(),
        RowKind::Record => record(),
        RowKind::Other => other(),
    }
}

fn step_term<'a>(env: Env<'a>, step: Step) -> Term<'a> {
    match step {
        Step::Elem(i) => (elem(), i).encode(env),
        Step::Key(word) => (key(), term_of(env, word)).encode(env),
        Step::List(first, last) => (list(), first, last).encode(env),
        Step::Env(i) => (env_atom(), i).encode(env),
    }
}

fn encode<'a>(env: Env<'a>, found: &Breakdown) -> Term<'a> {
    let total = (
        found.total.words,
        found.total.off_heap_bytes,
        found.off_heap_binaries,
        found.literal_words,
        found.total.objects,
        found.nodes,
        found.peak_bytes,
    );
    let rows: Vec<Term<'a>> = found
        .rows
        .iter()
        .map(|row| {
            let path: Vec<Term<'a>> = row.path.iter().map(|&s| step_term(env, s)).collect();
            (
                path,
                row.retained.words,
                row.retained.off_heap_bytes,
                row.retained.objects,
                kind_atom(row.kind),
            )
                .encode(env)
        })
        .collect();
    (crate::ok(), total, rows).encode(env)
}

fn run<'a>(
    env: Env<'a>,
    term: Term<'a>,
    min_share: f64,
    max_rows: u64,
    max_depth: u64,
    max_objects: u64,
    mut budget: Budget,
) -> Term<'a> {
    let Some((layout, literals, loaded)) = crate::ready() else {
        return (crate::error(), crate::unknown_release_layout()).encode(env);
    };
    // Direct reads only once the calibration has passed (`set_native/1`).
    if !crate::NATIVE.load(Ordering::Acquire) {
        return (crate::error(), crate::not_calibrated()).encode(env);
    }
    let settings = Settings {
        min_share,
        max_rows: max_rows as usize,
        max_depth: max_depth as usize,
        max_objects: max_objects as usize,
        accumulation_only: true,
    };
    // The same limit on the walk's own memory as every other walk.
    budget = budget.with_memory_limit(loaded.memory_limit);
    // SAFETY: as in `run` (lib.rs): this call's own argument, walked with a
    // table the calibration proved (`NATIVE` is checked above).
    let mem = unsafe { VmMemory::new(literals) };
    let root = term_word(term);
    let result = match crate::injected_fault(loaded, root) {
        Some(fault) => Err(fault),
        None => breakdown::breakdown(&mem, layout, root, &settings, &mut budget),
    };
    match result {
        Ok(found) => encode(env, &found),
        Err(Stop::Budget) => crate::budget_exceeded().encode(env),
        Err(Stop::Overflow) => (crate::error(), crate::flat_size_overflow()).encode(env),
        Err(Stop::OutOfMemory) => (crate::error(), crate::out_of_memory()).encode(env),
        Err(Stop::Layout(e)) if e.what == breakdown::TOO_MANY_OBJECTS => {
            (crate::error(), too_many_objects()).encode(env)
        }
        Err(Stop::Layout(e)) => {
            let detail = (crate::layout_error(), e.what, e.addr as u64, e.word);
            (crate::error(), detail).encode(env)
        }
    }
}

#[rustler::nif(name = "breakdown")]
fn breakdown_nif<'a>(
    env: Env<'a>,
    term: Term<'a>,
    min_share: f64,
    max_rows: u64,
    max_depth: u64,
    max_objects: u64,
) -> Term<'a> {
    // The same slice as the term-size walks: words, and CPU time.
    let budget = Budget::limited(NORMAL_SCHEDULER_WORDS).with_deadline(crate::normal_slice());
    run(
        env,
        term,
        min_share,
        max_rows,
        max_depth,
        max_objects,
        budget,
    )
}

#[rustler::nif(schedule = "DirtyCpu")]
fn breakdown_dirty<'a>(
    env: Env<'a>,
    term: Term<'a>,
    min_share: f64,
    max_rows: u64,
    max_depth: u64,
    max_objects: u64,
) -> Term<'a> {
    let budget = Budget::unlimited();
    run(
        env,
        term,
        min_share,
        max_rows,
        max_depth,
        max_objects,
        budget,
    )
}

//! MemProbe's NIF: sizes terms with `term_walker` over the VM's own memory.
//!
//! Entry points (see `src/mem_probe_nif.erl`):
//! * `walk/3` runs on the caller's normal scheduler with a work budget of
//!   about a millisecond and answers `budget_exceeded` when the term is larger
//!   (modes `flat`, `shared`, `full`, and `calibrate`: `full` plus the
//!   `erts_debug:size/1` count as a ninth element);
//! * `walk_dirty/3` runs the same walk from the root on a dirty CPU scheduler;
//! * `native_info/0` says which layout was selected at load.

mod breakdown;
mod vm;

use std::sync::OnceLock;

use rustler::types::tuple::make_tuple;
use rustler::{Atom, Encoder, Env, Term};
use term_walker::walk::{self, Stop, Work};
use term_walker::{layout, Detail, Layout};

use vm::{term_word, LiteralRange, VmMemory};

rustler::atoms! {
    ok,
    error,
    flat,
    shared,
    full,
    calibrate,
    unknown,
    budget_exceeded,
    limit,
    layout_error,
    flat_size_overflow,
    unknown_release_layout,
    no_literal_range,
    bad_walk_mode,
}

/// Words a walk may visit on a normal scheduler before it hands over to a
/// dirty one, which walks again from the root: about 0.1–0.2 ms on this class
/// of machine (a flat walk visits about a million words per millisecond, a
/// scan about 700k). Small enough that the work thrown away when a term turns
/// out to be large stays a small part of its total; bench/term_size.exs
/// prints the resulting stall.
const NORMAL_SCHEDULER_FLAT_WORDS: u64 = 150_000;
const NORMAL_SCHEDULER_SCAN_WORDS: u64 = 100_000;

struct Loaded {
    layout: Option<&'static Layout>,
    literals: LiteralRange,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

fn load(_env: Env, load_info: Term) -> bool {
    // load_info is {OtpRelease, ErtsVersion} as binaries.
    let release = load_info
        .decode::<(String, String)>()
        .ok()
        .and_then(|(otp, _erts)| otp.parse::<u32>().ok());
    let literals = LiteralRange::of_running_emulator();
    let layout = match (release, literals) {
        (Some(otp), Some(_)) => layout::for_release(otp),
        _ => None,
    };
    let _ = LOADED.set(Loaded {
        layout,
        literals: literals.unwrap_or_default(),
    });
    true // the Erlang side reports a missing layout and falls back
}

fn run<'a>(env: Env<'a>, term: Term<'a>, mode: Atom, heap_words: u64, mut work: Work) -> Term<'a> {
    let Some(loaded) = LOADED.get() else {
        return (error(), unknown_release_layout()).encode(env);
    };
    let Some(layout) = loaded.layout else {
        return (error(), unknown_release_layout()).encode(env);
    };
    let mem = VmMemory::new(loaded.literals);
    let root = term_word(term);
    let result = if mode == flat() {
        walk::flat(&mem, layout, root, heap_words, &mut work)
            .map(|words| (words, Default::default()))
    } else if mode == shared() {
        walk::scan(&mem, layout, root, Detail::Words, &mut work).map(|found| (0, found))
    } else if mode == full() || mode == calibrate() {
        walk::term_size(&mem, layout, root, &mut work).map(|size| (size.flat_words, size.scan))
    } else {
        return (error(), bad_walk_mode()).encode(env);
    };
    match result {
        Ok((flat_words, found)) => {
            let mut fields = vec![
                ok().encode(env),
                ((flat_words >> 64) as u64).encode(env),
                (flat_words as u64).encode(env),
                found.shared_words.encode(env),
                found.literal_words.encode(env),
                found.hashmap_node_words.encode(env),
                found.off_heap_binaries.encode(env),
                found.off_heap_bytes.encode(env),
            ];
            if mode == calibrate() {
                // The calibration also checks erts_debug:size/1, which
                // counts OTP 27's shared BinRefs and FunRefs once per owner.
                fields.push(found.erts_size_words().encode(env));
            }
            make_tuple(env, &fields)
        }
        Err(Stop::Budget) => budget_exceeded().encode(env),
        Err(Stop::Overflow) => (error(), flat_size_overflow()).encode(env),
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
    run(env, term, mode, heap_words, Work::limited(budget))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn walk_dirty<'a>(env: Env<'a>, term: Term<'a>, mode: Atom, heap_words: u64) -> Term<'a> {
    run(env, term, mode, heap_words, Work::unlimited())
}

/// The plain path-counting walk alone, for the tests of the DAG switch.
#[rustler::nif(schedule = "DirtyCpu")]
fn walk_flat_raw<'a>(env: Env<'a>, term: Term<'a>, path_limit: u64) -> Term<'a> {
    let Some(layout) = LOADED.get().and_then(|l| l.layout) else {
        return (error(), unknown_release_layout()).encode(env);
    };
    let mem = VmMemory::new(LOADED.get().map(|l| l.literals).unwrap_or_default());
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

#[rustler::nif]
fn native_info(env: Env) -> Term {
    let loaded = LOADED.get();
    let name = loaded.and_then(|l| l.layout).map(|l| l.name);
    let literals = loaded.map(|l| l.literals).unwrap_or_default();
    // Without a layout: `no_literal_range` when the emulator does not export
    // its literal area (the walker cannot tell literals apart), otherwise the
    // release has no layout table.
    let name = match name {
        Some(name) => name.encode(env),
        None if loaded.is_some() && literals.size == 0 => no_literal_range().encode(env),
        None => unknown().encode(env),
    };
    (name, literals.start as u64, literals.size as u64).encode(env)
}

rustler::init!("mem_probe_nif", load = load);

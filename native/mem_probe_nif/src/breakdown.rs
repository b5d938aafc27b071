//! The breakdown NIFs: retained sizes by position (`term_walker::breakdown`).
//!
//! * `breakdown/6` runs on the caller's normal scheduler with a work budget
//!   and answers `budget_exceeded` when the term is larger;
//! * `breakdown_dirty/6` runs it from the root on a dirty CPU scheduler.
//!
//! Arguments: the term, `MinShare` (a float in 0..1), `MaxRows`, `MaxDepth`,
//! `MaxObjects` (past it: `{error, too_many_objects}`), `Style`:
//! `{Ranges, Name}` (`Ranges`: list runs as Elixir ranges; `Name`: the
//! root's label, a binary, or `false` for no labels).
//! Answer: `{ok, {Bytes, Words, OffHeapBytes, OffHeapBinaries, LiteralWords,
//! Objects, Nodes, PeakBytes}, Rows}`, each row `{Path, Label, Bytes, Words,
//! OffHeapBytes, Share, Objects, Kind}` (`Bytes` the words' bytes plus the
//! off-heap bytes, `Share` those bytes over the total's, a float) and each
//! step `{elem, I}`, `{key, Key}`, `{list, First, Last}` (with [`RANGES`]:
//! `{list, First..Last}`, an Elixir `Range`) or `{env, I}` (0-based); or
//! `budget_exceeded`, or `{error, _}`. `Label` is the path as text
//! (`state{1}[0..2]`, `state.sessions`) when a name was given and every
//! step can be written here (tuple elements, list runs, fun environments,
//! keys that are atoms written as fields); otherwise `false`, and the
//! Erlang side writes it (key formats, record fields).
use rustler::sys::ErlNifTerm;
use rustler::types::tuple::make_tuple;
use rustler::{Binary, Encoder, Env, NewBinary, Term};
use term_walker::breakdown::{self, Breakdown, Budget, Retained, RowKind, Settings, Step};
use term_walker::tags::WORD_BYTES;
use term_walker::walk::Stop;

use std::sync::atomic::Ordering;

use crate::vm::{term_word, VmMemory};

rustler::atoms! {
    elem,
    false_atom = "false",
    struct_atom = "__struct__",
    range_module = "Elixir.Range",
    first,
    last,
    step_atom = "step",
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

fn step_term<'a>(env: Env<'a>, step: Step, ranges: bool) -> Term<'a> {
    match step {
        Step::Elem(i) => (elem(), i).encode(env),
        Step::Key(word) => (key(), term_of(env, word)).encode(env),
        Step::List(first_index, last_index) if ranges => {
            // `first..last` as the struct Elixir builds: keys in term order,
            // which is the order the VM keeps a small map's keys in.
            let keys = [struct_atom(), first(), last(), step_atom()].map(|k| k.encode(env));
            let values = [
                range_module().encode(env),
                first_index.encode(env),
                last_index.encode(env),
                1u64.encode(env),
            ];
            match Term::map_from_arrays(env, &keys, &values) {
                Ok(range) => (list(), range).encode(env),
                Err(_) => (list(), first_index, last_index).encode(env),
            }
        }
        Step::List(first_index, last_index) => (list(), first_index, last_index).encode(env),
        Step::Env(i) => (env_atom(), i).encode(env),
    }
}

/// Appends the decimal digits of `n`.
fn push_decimal(text: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text.extend_from_slice(&digits[at..]);
}

/// Whether an atom's name reads as a field (`.sessions`): what the Erlang
/// side's `^[a-z_][a-zA-Z0-9_]*[?!]?$` accepts, ASCII only (any other
/// name is left to the Erlang side, which decides the same way).
fn is_field_name(name: &[u8]) -> bool {
    let Some((&head, rest)) = name.split_first() else {
        return false;
    };
    if !(head.is_ascii_lowercase() || head == b'_') {
        return false;
    }
    let body = match rest.last() {
        Some(b'?' | b'!') => &rest[..rest.len() - 1],
        _ => rest,
    };
    body.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Appends `.name` for a key that is an atom read as a field; `false` for
/// any other key.
fn push_key(env: Env<'_>, text: &mut Vec<u8>, word: u64) -> bool {
    let key = term_of(env, word);
    if !key.is_atom() {
        return false;
    }
    let mut name = [0u8; 256];
    // SAFETY: `key` is an atom term of `env`; enif_get_atom writes at most
    // `name.len()` bytes (the name and a NUL) and returns how many, or 0
    // when the name does not fit or is not Latin-1.
    let written = unsafe {
        rustler::sys::enif_get_atom(
            env.as_c_arg(),
            key.as_c_arg(),
            name.as_mut_ptr() as *mut _,
            name.len() as _,
            rustler::sys::ErlNifCharEncoding::ERL_NIF_LATIN1,
        )
    };
    if written < 1 {
        return false;
    }
    let name = &name[..written as usize - 1];
    if !is_field_name(name) {
        return false;
    }
    text.push(b'.');
    text.extend_from_slice(name);
    true
}

/// The label, the root's name then the steps, when every step can be
/// written here (see the module doc), into `text`.
fn label_text(env: Env<'_>, name: &[u8], path: &[Step], text: &mut Vec<u8>) -> bool {
    text.clear();
    text.extend_from_slice(name);
    for &step in path {
        match step {
            Step::Elem(i) => {
                text.push(b'{');
                push_decimal(text, i as u64);
                text.push(b'}');
            }
            Step::List(f, l) => {
                text.push(b'[');
                push_decimal(text, f);
                if f != l {
                    text.extend_from_slice(b"..");
                    push_decimal(text, l);
                }
                text.push(b']');
            }
            Step::Env(i) => {
                text.extend_from_slice(b".env[");
                push_decimal(text, i as u64);
                text.push(b']');
            }
            Step::Key(word) => {
                if !push_key(env, text, word) {
                    return false;
                }
            }
        }
    }
    true
}

fn bytes_of(retained: &Retained) -> u64 {
    retained
        .words
        .saturating_mul(WORD_BYTES as u64)
        .saturating_add(retained.off_heap_bytes)
}

/// How rows are written: list runs as Elixir ranges, and the root's name
/// for the labels (none: the Erlang side labels every row).
struct Style<'a> {
    ranges: bool,
    name: Option<Binary<'a>>,
}

impl<'a> Style<'a> {
    /// `{Ranges, Name}`: a name that is no binary (`false`) asks for no
    /// labels.
    fn new((ranges, name): (bool, Term<'a>)) -> Self {
        Style {
            ranges,
            name: name.decode::<Binary<'a>>().ok(),
        }
    }
}

fn encode<'a>(env: Env<'a>, found: &Breakdown, style: &Style<'a>) -> Term<'a> {
    let total_bytes = bytes_of(&found.total);
    let total = make_tuple(
        env,
        &[
            total_bytes.encode(env),
            found.total.words.encode(env),
            found.total.off_heap_bytes.encode(env),
            found.off_heap_binaries.encode(env),
            found.literal_words.encode(env),
            found.total.objects.encode(env),
            found.nodes.encode(env),
            found.peak_bytes.encode(env),
        ],
    );
    let ranges = style.ranges;
    let mut text = Vec::with_capacity(64);
    let mut rows = Term::list_new_empty(env);
    for row in found.rows.iter().rev() {
        let mut path = Term::list_new_empty(env);
        for &step in row.path.iter().rev() {
            path = path.list_prepend(step_term(env, step, ranges));
        }
        let label = match &style.name {
            Some(name) if label_text(env, name.as_slice(), &row.path, &mut text) => {
                NewBinary::from_slice(env, &text).into()
            }
            _ => false_atom().encode(env),
        };
        let bytes = bytes_of(&row.retained);
        let share = match total_bytes {
            0 => 0.0,
            whole => bytes as f64 / whole as f64,
        };
        let encoded = make_tuple(
            env,
            &[
                path,
                label,
                bytes.encode(env),
                row.retained.words.encode(env),
                row.retained.off_heap_bytes.encode(env),
                share.encode(env),
                row.retained.objects.encode(env),
                kind_atom(row.kind).encode(env),
            ],
        );
        rows = rows.list_prepend(encoded);
    }
    make_tuple(env, &[crate::ok().encode(env), total, rows])
}

fn settings(min_share: f64, max_rows: u64, max_depth: u64, max_objects: u64) -> Settings {
    Settings {
        min_share,
        max_rows: max_rows as usize,
        max_depth: max_depth as usize,
        max_objects: max_objects as usize,
        accumulation_only: true,
    }
}

fn run<'a>(
    env: Env<'a>,
    term: Term<'a>,
    settings: &Settings,
    style: Style<'a>,
    mut budget: Budget,
) -> Term<'a> {
    let Some((layout, literals, loaded)) = crate::ready() else {
        return (crate::error(), crate::unknown_release_layout()).encode(env);
    };
    // Direct reads only once the calibration has passed (`set_native/1`).
    if !crate::NATIVE.load(Ordering::Acquire) {
        return (crate::error(), crate::not_calibrated()).encode(env);
    }
    // The same limit on the walk's own memory as every other walk.
    budget = budget.with_memory_limit(loaded.memory_limit);
    // SAFETY: as in `run` (lib.rs): this call's own argument, walked with a
    // table the calibration proved (`NATIVE` is checked above).
    let mem = unsafe { VmMemory::new(literals) };
    let root = term_word(term);
    let result = match crate::injected_fault(loaded, root) {
        Some(fault) => Err(fault),
        None => breakdown::breakdown(&mem, layout, root, settings, &mut budget),
    };
    match result {
        Ok(found) => encode(env, &found, &style),
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
    style: (bool, Term<'a>),
) -> Term<'a> {
    // The same slice as the term-size walks: words, and CPU time.
    let budget = Budget::limited(NORMAL_SCHEDULER_WORDS).with_deadline(crate::normal_slice());
    let settings = settings(min_share, max_rows, max_depth, max_objects);
    run(env, term, &settings, Style::new(style), budget)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn breakdown_dirty<'a>(
    env: Env<'a>,
    term: Term<'a>,
    min_share: f64,
    max_rows: u64,
    max_depth: u64,
    max_objects: u64,
    style: (bool, Term<'a>),
) -> Term<'a> {
    let settings = settings(min_share, max_rows, max_depth, max_objects);
    run(env, term, &settings, Style::new(style), Budget::unlimited())
}

//! The library's entry point, written out instead of `rustler::init!`, which
//! registers no `upgrade` callback: without one, loading a new instance of
//! `mem_probe_nif` (a release upgrade, `l(mem_probe_nif)`, iex's `recompile`)
//! while the old instance still has the library fails, and the new module is
//! left with its `nif_not_loaded` stubs. Here `upgrade` does what `load`
//! does; the library keeps no per-instance data (`priv_data` stays null).
//!
//! Only rustler's public runtime (the functions its macros call) is used:
//! the `#[rustler::nif]` functions are collected from its inventory.

use std::ptr::addr_of_mut;

use rustler::codegen_runtime::{
    c_int, c_void, inventory, ErlNifEntry, ErlNifEnv, ErlNifFunc, ErlNifTerm, ResourceRegistration,
};
use rustler::{Env, Term};

/// The body of both callbacks: 0 accepts the library.
///
/// # Safety
/// `env` and `load_info` are what the VM passes to a load callback.
unsafe fn accept(env: *mut ErlNifEnv, load_info: ErlNifTerm) -> c_int {
    let marker = ();
    let env = Env::new_init_env(&marker, env);
    if ResourceRegistration::register_all_collected(env).is_err() {
        return 1;
    }
    let load_info = Term::new(env, load_info);
    match std::panic::catch_unwind(|| crate::load(env, load_info)) {
        Ok(true) => 0,
        _ => 1,
    }
}

unsafe extern "C" fn on_load(
    env: *mut ErlNifEnv,
    _priv_data: *mut *mut c_void,
    load_info: ErlNifTerm,
) -> c_int {
    accept(env, load_info)
}

unsafe extern "C" fn on_upgrade(
    env: *mut ErlNifEnv,
    _priv_data: *mut *mut c_void,
    _old_priv_data: *mut *mut c_void,
    load_info: ErlNifTerm,
) -> c_int {
    accept(env, load_info)
}

static mut ENTRY: Option<ErlNifEntry> = None;

/// What the VM looks up when it loads the library (once per `load_nif`).
///
/// # Safety
/// Called by the VM only, one `load_nif` at a time (it holds the code
/// loading lock), so the static entry is never written concurrently.
#[no_mangle]
pub unsafe extern "C" fn nif_init() -> *const ErlNifEntry {
    rustler::codegen_runtime::internal_write_symbols();
    let slot = &mut *addr_of_mut!(ENTRY);
    if let Some(entry) = slot {
        return entry as *const ErlNifEntry;
    }
    let funcs: Box<[ErlNifFunc]> = inventory::iter::<rustler::Nif>()
        .map(rustler::Nif::get_def)
        .collect();
    let mut entry = ErlNifEntry::new(c"mem_probe_nif", Box::leak(funcs), on_load);
    entry.upgrade = Some(on_upgrade);
    slot.insert(entry) as *const ErlNifEntry
}

/// Registers a NIF whose body gets its arguments as an array, without the
/// `Vec` rustler's `#[rustler::nif]` wrapper allocates and frees on every
/// call (a third of the cost of sizing a small term). The body runs inside
/// `catch_unwind` as rustler's does: a panic raises `nif_panicked`, never
/// unwinds into the VM; `None` raises `badarg`.
///
/// `raw_nif!("name", ARITY, flags, body)` with
/// `body: for<'a> fn(Env<'a>, [Term<'a>; ARITY]) -> Option<Term<'a>>`.
macro_rules! raw_nif {
    ($name:literal, $arity:literal, $flags:expr, $body:path) => {
        rustler::codegen_runtime::inventory::submit!(rustler::Nif {
            name: concat!($name, "\0").as_ptr() as *const std::ffi::c_char,
            arity: $arity,
            flags: $flags as std::ffi::c_uint,
            raw_func: {
                unsafe extern "C" fn nif(
                    env: *mut rustler::sys::ErlNifEnv,
                    argc: std::ffi::c_int,
                    argv: *const rustler::sys::ErlNifTerm,
                ) -> rustler::sys::ErlNifTerm {
                    $crate::entry::call::<$arity>(env, argc, argv, $body)
                }
                nif
            },
        });
    };
}
pub(crate) use raw_nif;

/// The body of every [`raw_nif!`] function.
///
/// # Safety
/// `env`, `argc` and `argv` are what the VM passes to a NIF registered with
/// arity `N` (the VM calls it with exactly `N` arguments).
#[inline(always)]
pub(crate) unsafe fn call<const N: usize>(
    env: *mut ErlNifEnv,
    argc: c_int,
    argv: *const ErlNifTerm,
    body: for<'a> fn(Env<'a>, [Term<'a>; N]) -> Option<Term<'a>>,
) -> ErlNifTerm {
    let lifetime = ();
    let env = Env::new(&lifetime, env);
    if argc as usize != N {
        return rustler::sys::enif_make_badarg(env.as_c_arg());
    }
    let args: [Term; N] = std::array::from_fn(|i| Term::new(env, *argv.add(i)));
    // The answer crosses catch_unwind as its bare word, 0 for badarg (0 is
    // never a term: docs/LAYOUT.md §1): a word written and read back whole,
    // where an `Option<Term>` cost a stalled load of its tag byte per call.
    match std::panic::catch_unwind(move || body(env, args).map_or(0, crate::vm::term_word)) {
        Ok(0) => rustler::sys::enif_make_badarg(env.as_c_arg()),
        Ok(word) => std::mem::transmute::<usize, ErlNifTerm>(word as usize),
        Err(_) => rustler::sys::enif_raise_exception(
            env.as_c_arg(),
            rustler::types::atom::nif_panicked().as_c_arg(),
        ),
    }
}

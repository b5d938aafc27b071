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

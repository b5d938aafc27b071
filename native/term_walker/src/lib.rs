//! Sizes Erlang terms by reading their tagged words, with no VM attached.
//!
//! The crate knows nothing about NIFs: it reads words through the [`Memory`]
//! trait, so the tests build synthetic heaps word by word and the NIF crate
//! supplies the one `unsafe` reader of real VM memory.
//!
//! * [`tags`] — the tag scheme shared by every supported release.
//! * [`layout`] — the per-release table: header tags, fixed header words,
//!   object sizes, field offsets. Nothing else holds a layout literal.
//! * [`decode`] — one word or one object at a time, every header checked.
//! * [`literal_area`] — finding the literal area from `/proc/self/maps` where
//!   the emulator does not export it (OTP 29).
//! * [`walk`] — the walks (flat, shared, DAG-aware flat), iterative, with a
//!   work budget.

// Every layout table, tag mask and byte offset is for 64-bit little-endian
// emulators; another target would read garbage, so it does not build.
#[cfg(not(all(target_pointer_width = "64", target_endian = "little")))]
compile_error!("term_walker reads the terms of 64-bit little-endian emulators only");

pub mod breakdown;
pub mod decode;
pub mod layout;
pub mod literal_area;
pub mod memory;
pub mod tags;
pub mod visited;
pub mod walk;

pub use decode::{Detail, LayoutError};
pub use layout::Layout;
pub use memory::Memory;
pub use walk::{flat, flat_words, flat_words_dag, scan, term_size, Scan, Stop, TermSize, Work};

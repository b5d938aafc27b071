//! Builders for the objects OTP 29 lays out differently from OTP 27
//! (docs/LAYOUT.md): funs without FunRef, with the export kind in the header,
//! and native records. Everything else is built as on OTP 27 (`super::otp27`).

use super::otp27::{EXPORT_ENTRY, FUN_ENTRY};
use super::{boxed_term, TestHeap};

pub const RECORD_TAG: u64 = 0x1C;

/// `0x14 | arity << 8 | num_free << 16 | external << 24`.
pub fn fun29_header(arity: u64, num_free: u64, external: bool) -> u64 {
    0x14 | (arity << 8) | (num_free << 16) | ((external as u64) << 24)
}

impl TestHeap {
    /// A local fun: header, entry, free variables.
    pub fn fun29(&mut self, arity: u64, env: &[u64]) -> u64 {
        let mut words = vec![fun29_header(arity, env.len() as u64, false), FUN_ENTRY];
        words.extend_from_slice(env);
        boxed_term(self.alloc(&words))
    }

    pub fn literal_fun29(&mut self, arity: u64) -> u64 {
        boxed_term(self.alloc_literal(&[fun29_header(arity, 0, false), FUN_ENTRY]))
    }

    /// An export fun: kind bit set, no environment.
    pub fn export_fun29(&mut self, arity: u64) -> u64 {
        boxed_term(self.alloc(&[fun29_header(arity, 0, true), EXPORT_ENTRY]))
    }

    /// A record definition for `fields` fields: a tuple of arity 5 + fields
    /// (here of atoms and a defaults tuple), in the literal area.
    pub fn literal_record_definition(&mut self, fields: u64) -> u64 {
        let defaults = self.literal_tuple(&[super::small(0), super::small(1)]);
        let mut items = vec![
            defaults,
            super::small(7),
            super::atom(1),
            super::atom(2),
            super::NIL,
        ];
        items.extend((0..fields).map(|i| super::atom(10 + i)));
        self.literal_tuple(&items)
    }

    /// A native record: header, definition, values.
    pub fn record(&mut self, definition: u64, values: &[u64]) -> u64 {
        let mut words = vec![((1 + values.len() as u64) << 6) | RECORD_TAG, definition];
        words.extend_from_slice(values);
        boxed_term(self.alloc(&words))
    }
}

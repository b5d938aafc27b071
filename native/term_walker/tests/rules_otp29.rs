//! The OTP 29 size rules on synthetic heaps (docs/LAYOUT.md; copy.c of the 29
//! line treats a record as a tuple), and the checks that keep OTP 27's and
//! OTP 28's tables from reading OTP 29 words.

mod heap;

use heap::otp27::*;
use heap::otp29::*;
use heap::*;
use term_walker::layout::{OTP_27, OTP_28, OTP_29};
use term_walker::Scan;

fn measure(h: &TestHeap, term: u64) -> (u128, Scan) {
    check::measure(&OTP_29, h, term)
}

/// (flat, shared, literal words, erts_debug:size/1 without records).
fn sizes(h: &TestHeap, term: u64) -> (u128, u64, u64, u64) {
    let (flat, s) = measure(h, term);
    (flat, s.shared_words, s.literal_words, s.erts_size_words())
}

#[test]
fn funs_are_two_words_plus_their_free_variables() {
    let mut h = TestHeap::new();
    let x = h.list(&[small(1), small(2)]);
    // One free variable holding a 4-word list: 2 + 1 + 4 (OTP_MATRIX.md).
    let f = h.fun29(0, &[x]);
    assert_eq!(sizes(&h, f), (7, 7, 0, 7));
    for n in 0..5u64 {
        let env: Vec<u64> = (0..n as i64).map(small).collect();
        let g = h.fun29(2, &env);
        let n = n as u128;
        assert_eq!(measure(&h, g).0, 2 + n);
    }
    // A fun shared twice: once in shared words, twice in flat.
    let pair = h.tuple(&[f, f]);
    assert_eq!(sizes(&h, pair), (17, 10, 0, 10));
    // Loader-built funs without free variables and export funs: 2 words.
    let lit = h.literal_fun29(0);
    assert_eq!(sizes(&h, lit), (2, 0, 2, 2));
    let export = h.export_fun29(3);
    assert_eq!(sizes(&h, export), (2, 2, 0, 2));
}

#[test]
fn fun_headers_outside_the_29_shape_are_refused() {
    let mut h = TestHeap::new();
    let export_with_env = boxed_term(h.alloc(&[fun29_header(1, 1, true), EXPORT_ENTRY, small(1)]));
    assert_eq!(
        check::refused(&OTP_29, &h, export_with_env),
        "export fun with free variables"
    );
    // Bits between the tag and the arity, or above the kind bit.
    for header in [
        fun29_header(0, 0, false) | 0x40,
        fun29_header(0, 0, false) | (1 << 25),
    ] {
        let f = boxed_term(h.alloc(&[header, FUN_ENTRY]));
        assert_eq!(check::refused(&OTP_29, &h, f), "unexpected fun header");
    }
    let null_entry = boxed_term(h.alloc(&[fun29_header(0, 0, false), 0]));
    assert_eq!(
        check::refused(&OTP_29, &h, null_entry),
        "fun with a bad entry pointer"
    );
    // OTP 27's table reads the kind bit as an environment of 256 words and
    // looks for a FunRef 2 KB past this 2-word object: why a table is only
    // used on its own release, and why an unverified one is calibrated with
    // guarded reads, which refuse such a read instead of faulting.
    let export = h.export_fun29(2);
    assert_eq!(
        check::refused(&OTP_27, &h, export),
        "read outside the synthetic heap"
    );
}

#[test]
fn a_record_is_a_tuple_of_its_definition_and_values() {
    let mut h = TestHeap::new();
    let definition = h.literal_record_definition(2);
    let list = h.list(&[small(1), small(2)]);
    // #point{x = [1, 2], y = 5}: 2 + 2 words, the list 4; the definition (a
    // 7-ary tuple, 8 words, and its 3-word defaults) is literal.
    let point = h.record(definition, &[list, small(5)]);
    assert_eq!(sizes(&h, point), (4 + 4 + 11, 8, 11, 19));
    // Records of 0 and 1 fields; a record twice; inside a map.
    let d0 = h.literal_record_definition(0);
    let empty = h.record(d0, &[]);
    assert_eq!(sizes(&h, empty), (2 + 9, 2, 9, 11));
    let pair = h.tuple(&[point, point]);
    assert_eq!(measure(&h, pair).0, 3 + 2 * 19);
    assert_eq!(measure(&h, pair).1.shared_words, 3 + 8);
    // A definition on the heap (a record of a module without that record).
    let heap_def = h.tuple(&[small(0), small(7), atom(1), atom(2), NIL, atom(10)]);
    let one = h.record(heap_def, &[small(3)]);
    assert_eq!(sizes(&h, one), (3 + 7, 10, 0, 10));
}

#[test]
fn records_with_a_wrong_definition_are_refused() {
    let mut h = TestHeap::new();
    let d2 = h.literal_record_definition(2);
    // Three values against a two-field definition.
    let wrong = h.record(d2, &[small(1), small(2), small(3)]);
    assert_eq!(
        check::refused(&OTP_29, &h, wrong),
        "record definition is not a tuple of its field count"
    );
    let not_boxed = h.record(small(1), &[small(1)]);
    assert_eq!(
        check::refused(&OTP_29, &h, not_boxed),
        "record definition is not a tuple of its field count"
    );
    let no_arity = boxed_term(h.alloc(&[RECORD_TAG]));
    assert_eq!(
        check::refused(&OTP_29, &h, no_arity),
        "record arity out of range"
    );
    // OTP 27 and 28 have no records: the same words are an unknown header.
    let point = h.record(d2, &[small(1), small(2)]);
    for layout in [&OTP_27, &OTP_28] {
        assert_eq!(check::refused(layout, &h, point), "unexpected header tag");
    }
}

#[test]
fn fun_refs_are_gone_on_28_and_29() {
    let mut h = TestHeap::new();
    let fun_ref = h.literal_fun_ref(FUN_ENTRY);
    let in_tuple = h.tuple(&[fun_ref]);
    for layout in [&OTP_28, &OTP_29] {
        assert_eq!(
            check::refused(layout, &h, in_tuple),
            "unexpected header tag"
        );
    }
    // Everything OTP 29 kept from 27: bitstrings, maps.
    let (bits, _) = h.off_heap_bits(1000);
    assert_eq!(sizes(&h, bits), (8, 8, 0, 8));
    let keys = h.tuple(&[atom(1)]);
    let map = h.flatmap27(keys, &[small(1)]);
    assert_eq!(sizes(&h, map), (6, 6, 0, 6));
}

//! The walks' fast paths (immediates skipped in a tight loop, tuples, floats,
//! heap binaries, flatmaps and ProcBins decoded inline): the same sizes as
//! the general decoder, and the same refusals, wherever in a term the object
//! sits (the root, the middle of a tuple, after a run of immediates, a list
//! element), on every walk.

mod heap;

use heap::*;
use term_walker::layout::{Layout, OTP_25, OTP_27, OTP_29};
use term_walker::{flat_words, scan, term_size, Detail, Stop, Work};

/// The places an object can be met: as the root, and deep inside ranges.
fn placements(h: &mut TestHeap, object: u64) -> Vec<u64> {
    let mid_tuple = h.tuple(&[small(1), atom(2), object, NIL, small(3)]);
    let after_immediates = h.tuple(&[small(0), small(1), small(2), small(3), object]);
    let in_list = h.list(&[small(7), object, small(8)]);
    let nested = h.tuple(&[small(9), in_list, atom(4)]);
    vec![object, mid_tuple, after_immediates, in_list, nested]
}

/// Every walk refuses every placement of `object` with `what`.
fn refused_everywhere(layout: &Layout, h: &mut TestHeap, object: u64, what: &str) {
    for term in placements(h, object) {
        let flat = flat_words(h, layout, term, u64::MAX, &mut Work::unlimited());
        let words = scan(h, layout, term, Detail::Words, &mut Work::unlimited());
        let off_heap = term_size(h, layout, term, &mut Work::unlimited());
        for (walk, got) in [
            ("flat", flat.map(|_| ())),
            ("scan", words.map(|_| ())),
            ("term_size", off_heap.map(|_| ())),
        ] {
            match got {
                Err(Stop::Layout(e)) => assert_eq!(e.what, what, "{walk} on {term:#x}"),
                other => panic!("{walk} accepted {term:#x}: {other:?}"),
            }
        }
    }
}

/// Every walk gives `words` more words for each placement than without it.
fn sized_everywhere(layout: &Layout, h: &mut TestHeap, object: u64, words: u64) {
    let bare = placements(h, NIL);
    for (term, without) in placements(h, object).into_iter().zip(bare) {
        let flat = |t| flat_words(h, layout, t, u64::MAX, &mut Work::unlimited());
        let shared = |t| {
            scan(h, layout, t, Detail::Words, &mut Work::unlimited())
                .unwrap()
                .shared_words
        };
        let full = |t| {
            term_size(h, layout, t, &mut Work::unlimited())
                .unwrap()
                .scan
                .shared_words
        };
        assert_eq!(
            flat(term).unwrap().unwrap(),
            flat(without).unwrap().unwrap() + words
        );
        assert_eq!(shared(term), shared(without) + words);
        assert_eq!(full(term), full(without) + words);
    }
}

#[test]
fn invalid_immediates_are_refused_inside_ranges() {
    for bad in [0x1B, 0x2B, (5 << 6) | 0x1B, (9 << 6) | 0x2B] {
        let mut h = TestHeap::new();
        refused_everywhere(&OTP_25, &mut h, bad, "invalid immediate in a term");
    }
    // Every other immediate is accepted (the bit set holds exactly two tags).
    let mut h = TestHeap::new();
    for tag in (0u64..64).filter(|t| t & 3 == 3 && *t != 0x1B && *t != 0x2B) {
        sized_everywhere(&OTP_25, &mut h, (3 << 6) | tag, 0);
    }
}

#[test]
fn header_words_and_bad_pointers_inside_ranges_are_refused() {
    let mut h = TestHeap::new();
    refused_everywhere(
        &OTP_25,
        &mut h,
        0x40,
        "header word where a term was expected",
    );
    let c = h.cons(NIL, NIL);
    refused_everywhere(&OTP_25, &mut h, c | 4, "bad list pointer");
    refused_everywhere(&OTP_25, &mut h, 0x12, "bad boxed pointer");
}

#[test]
fn tuples_floats_and_heap_binaries_inline() {
    let mut h = TestHeap::new();
    let t = h.tuple(&[small(1), small(2)]);
    sized_everywhere(&OTP_25, &mut h, t, 3);
    let f = h.float(2.5);
    sized_everywhere(&OTP_25, &mut h, f, 2);
    for (bytes, words) in [(0, 2), (1, 3), (9, 4), (64, 10)] {
        let b = h.heap_binary(bytes);
        sized_everywhere(&OTP_25, &mut h, b, words);
    }
    // Refused inline as the general decoder refuses them.
    let huge = boxed_term(h.alloc(&[(1 << 30) << 6]));
    refused_everywhere(&OTP_25, &mut h, huge, "tuple arity above the maximum");
    let bad_float = boxed_term(h.alloc(&[0x98, 0, 0]));
    refused_everywhere(&OTP_25, &mut h, bad_float, "unexpected float header");
    let short = boxed_term(h.alloc(&[(5 << 6) | 0x24, 1, 0, 0, 0, 0]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        short,
        "heap binary size does not match its header",
    );
    let too_big = boxed_term(h.alloc(&[(10 << 6) | 0x24, 65, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        too_big,
        "heap binary size does not match its header",
    );
}

#[test]
fn flatmaps_inline() {
    let mut h = TestHeap::new();
    let keys = h.tuple(&[atom(1), atom(2)]);
    let m = h.flatmap(keys, &[small(1), small(2)]);
    sized_everywhere(&OTP_25, &mut h, m, 5 + 3);
    let wrong_keys = h.tuple(&[atom(1)]);
    let bad = h.flatmap(wrong_keys, &[small(1), small(2)]);
    refused_everywhere(
        &OTP_25,
        &mut h,
        bad,
        "flatmap keys are not a tuple of its size",
    );
    let immediate_keys = boxed_term(h.alloc(&[0x13C, 1, small(1), small(2)]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        immediate_keys,
        "flatmap keys are not a tuple of its size",
    );
    let too_big_keys = h.tuple(&vec![small(0); 33]);
    let too_big = h.flatmap(too_big_keys, &vec![small(0); 33]);
    refused_everywhere(
        &OTP_25,
        &mut h,
        too_big,
        "flatmap larger than the flatmap limit",
    );
}

#[test]
fn proc_bins_inline_when_only_words_are_asked_for() {
    let mut h = TestHeap::new();
    let bin = h.off_heap_binary(1000);
    let b = h.proc_bin(bin, 1000, 0);
    sized_everywhere(&OTP_25, &mut h, b, 6);
    for pointer in [0u64, 8, 0x8000_0004, 1 << 60] {
        let bad = boxed_term(h.alloc(&[0x160, 10, 0, pointer, 0, 0]));
        refused_everywhere(
            &OTP_25,
            &mut h,
            bad,
            "refc binary with a bad Binary pointer",
        );
    }
    let wrong_arity = boxed_term(h.alloc(&[0x120, 10, 0, bin as u64, 0, 0]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        wrong_arity,
        "unexpected refc binary header",
    );
}

#[test]
fn heap_bits_inline_on_27_and_29() {
    for layout in [&OTP_27, &OTP_29] {
        let mut h = TestHeap::new();
        for (bits, words) in [(0, 2), (1, 3), (65, 4), (512, 10)] {
            let b = h.heap_bits(bits);
            sized_everywhere(layout, &mut h, b, words);
        }
        let keys = h.tuple(&[atom(1)]);
        let m = h.flatmap27(keys, &[small(1)]);
        sized_everywhere(layout, &mut h, m, 4 + 2);
        let wrong = boxed_term(h.alloc(&[(2 << 6) | 0x20, 65, 0, 0]));
        refused_everywhere(
            layout,
            &mut h,
            wrong,
            "heap binary size does not match its header",
        );
        // An OTP 25 flatmap header is no map on 27 and 29.
        let old_map = boxed_term(h.alloc(&[0x13C, 0, h.empty_tuple]));
        refused_everywhere(layout, &mut h, old_map, "unexpected header tag");
    }
}

/// `term_size`'s flat words and a plain walk's, which must agree; and how
/// many words `term_size` read against a scan alone.
fn flat_from_term_size(layout: &Layout, h: &TestHeap, term: u64) -> (u128, u64, u64) {
    let plain = flat_words(h, layout, term, u64::MAX, &mut Work::unlimited())
        .unwrap()
        .unwrap() as u128;
    *h.reads.borrow_mut() = 0;
    scan(h, layout, term, Detail::OffHeap, &mut Work::unlimited()).unwrap();
    let scan_reads = *h.reads.borrow();
    *h.reads.borrow_mut() = 0;
    let both = term_size(h, layout, term, &mut Work::unlimited()).unwrap();
    assert_eq!(
        both.flat_words, plain,
        "term_size and the plain walk disagree"
    );
    (plain, scan_reads, *h.reads.borrow())
}

#[test]
fn term_size_counts_repeated_leaves_without_walking_again() {
    let mut h = TestHeap::new();
    // Records sharing one keys tuple (of atoms) and one float: 100 flatmaps.
    let keys = h.literal_tuple(&[atom(1), atom(2)]);
    let f = h.float(1.0);
    let items: Vec<u64> = (0..100)
        .map(|i| {
            let cell = h.cons(small(i), NIL);
            h.flatmap(keys, &[f, cell])
        })
        .collect();
    let records = h.list(&items);
    let (flat, scan_reads, reads) = flat_from_term_size(&OTP_25, &h, records);
    assert_eq!(flat, 100 * 2 + 100 * (5 + 3 + 2 + 2));
    // One scan, plus a look at each repeated leaf's children: no second walk.
    assert!(
        reads < scan_reads * 2,
        "{reads} reads, a scan takes {scan_reads}"
    );
    // A repeated cons of immediates, and a repeated tuple with a boxed child
    // (which needs every path walked).
    let cell = h.cons(small(1), NIL);
    let twice = h.tuple(&[cell, cell, cell]);
    assert_eq!(flat_from_term_size(&OTP_25, &h, twice).0, 4 + 6);
    let inner = h.tuple(&[f]);
    let deep = h.tuple(&[inner, inner]);
    assert_eq!(flat_from_term_size(&OTP_25, &h, deep).0, 3 + 2 * (2 + 2));
    // More children than looked at: walked again too.
    let wide = h.tuple(&[small(0); 40]);
    let wide_twice = h.tuple(&[wide, wide]);
    assert_eq!(flat_from_term_size(&OTP_25, &h, wide_twice).0, 3 + 2 * 41);
}

#[test]
fn term_size_counts_repeated_owners_and_attached_objects_on_27() {
    let mut h = TestHeap::new();
    let binary = h.binary27(100);
    let br = h.bin_ref(binary);
    // Two SubBits over one BinRef, one of them twice: a copy takes the
    // BinRef with every SubBits on every path (5 + 3 each).
    let a = h.sub_bits(br, binary, 0, 800, 0);
    let b = h.sub_bits(br, binary, 8, 800, 0);
    let t = h.tuple(&[a, b, a]);
    assert_eq!(flat_from_term_size(&OTP_27, &h, t).0, 4 + 3 * 8);
    let mut h = TestHeap::new();
    let entry = 0x7000_0000;
    let fr = h.fun_ref(entry);
    let fun = h.fun27(1, &[small(1)], fr, entry);
    let funs = h.list(&[fun, fun]);
    let (flat, _, _) = flat_from_term_size(&OTP_27, &h, funs);
    assert_eq!(
        flat,
        4 + 2 * flat_words(&h, &OTP_27, fun, u64::MAX, &mut Work::unlimited())
            .unwrap()
            .unwrap() as u128
    );
}

#[test]
fn hashmap_nodes_inline() {
    let mut h = TestHeap::new();
    let leaf1 = h.cons(small(1), small(10));
    let leaf2 = h.cons(small(2), small(20));
    let leaf3 = h.cons(small(3), small(30));
    let inner = h.hashmap_node(0b101, &[leaf2, leaf3]);
    let head = h.hashmap_head(0b11, 3, &[leaf1, inner]);
    // head 2 + 2, inner 1 + 2, three leaves of 2
    sized_everywhere(&OTP_25, &mut h, head, 13);
    let leaves: Vec<u64> = (0..16).map(|i| h.cons(small(i), NIL)).collect();
    let array = h.hashmap_head(0xFFFF, 16, &leaves);
    sized_everywhere(&OTP_25, &mut h, array, 18 + 32);
    // Refused as the general decoder refuses them, whichever child is wrong.
    let zero_bitmap = h.hashmap_node(0, &[]);
    refused_everywhere(
        &OTP_25,
        &mut h,
        zero_bitmap,
        "hashmap node header out of range",
    );
    let flatmap_keys = h.tuple(&[small(1)]);
    let flatmap = h.flatmap(flatmap_keys, &[small(2)]);
    let tuple = h.tuple(&[small(1), small(2)]);
    for bad_child in [small(1), flatmap, tuple, head] {
        let node = h.hashmap_node(0b111, &[leaf1, leaf2, bad_child]);
        refused_everywhere(
            &OTP_25,
            &mut h,
            node,
            "hashmap child is neither a leaf nor a node",
        );
    }
    let bad_leaf = h.hashmap_node(0b11, &[leaf1, leaf2 | 4]);
    refused_everywhere(&OTP_25, &mut h, bad_leaf, "bad list pointer");
    let bad_node = h.hashmap_node(0b11, &[leaf1, 0x12]);
    refused_everywhere(&OTP_25, &mut h, bad_node, "bad boxed pointer");
    // Bits above the value, and an array head that is not full.
    let above = boxed_term(h.alloc(&[(1 << 32) | (0b1 << 16) | (1 << 6) | 0x3C, leaf1]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        above,
        "map header with bits above its value",
    );
    let not_full = boxed_term(h.alloc(&[(0b1 << 16) | (1 << 8) | (2 << 6) | 0x3C, 1, leaf1]));
    refused_everywhere(
        &OTP_25,
        &mut h,
        not_full,
        "hashmap node header out of range",
    );
}

#[test]
fn list_spines_with_every_kind_of_head_and_tail() {
    let mut h = TestHeap::new();
    let pair = |h: &mut TestHeap| h.tuple(&[small(1), small(2)]);
    let inner = |h: &mut TestHeap| {
        let t = pair(h);
        h.list(&[small(1), t])
    };
    // Heads: immediates, objects with children, lists; an improper tail
    // that is an immediate, and one that is an object (nothing shared, so
    // that every walk gives the same words).
    let (t, i) = (pair(&mut h), inner(&mut h));
    let first = h.list(&[small(1), t, i, small(2), NIL]);
    let (i1, i2, t) = (inner(&mut h), inner(&mut h), pair(&mut h));
    let second = h.list(&[i1, i2, t]);
    let improper = h.cons(small(5), small(6));
    let t = pair(&mut h);
    let boxed_tail = h.cons(small(5), t);
    let (a, t) = (h.cons(small(5), small(6)), pair(&mut h));
    let b = h.cons(small(5), t);
    let both = h.list(&[a, b]);
    // Tuple heads whose first child with children is in the middle, last,
    // or first.
    let (a, b, c) = (pair(&mut h), pair(&mut h), pair(&mut h));
    let (mid, last, head_first) = (
        h.tuple(&[small(1), a, small(2)]),
        h.tuple(&[small(1), small(2), b]),
        h.tuple(&[c, small(2)]),
    );
    let tuple_heads = h.list(&[mid, small(0), last, head_first]);
    let cases = [
        (tuple_heads, 8 + (4 + 3) + (4 + 3) + (3 + 3)),
        (first, 10 + 3 + 7),
        (second, 6 + 7 + 7 + 3),
        (improper, 2),
        (boxed_tail, 2 + 3),
        (both, 4 + 2 + 5),
    ];
    for (term, words) in cases {
        sized_everywhere(&OTP_25, &mut h, term, words);
    }
    let t = pair(&mut h);
    // A bad word as a head or as a tail, first or deep in the spine.
    for bad in [0x1B, 0x40, 0x12] {
        let tail = h.cons(small(1), bad);
        let head = h.cons(bad, NIL);
        let what = match bad {
            0x1B => "invalid immediate in a term",
            0x40 => "header word where a term was expected",
            _ => "bad boxed pointer",
        };
        for term in [tail, head] {
            let long = h.list(&[small(1), t, term]);
            refused_everywhere(&OTP_25, &mut h, term, what);
            refused_everywhere(&OTP_25, &mut h, long, what);
        }
    }
}

/// A tree of pairs `depth` levels deep: the stack of pending ranges passes
/// its inline part and comes back many times.
fn pairs(h: &mut TestHeap, depth: u32) -> u64 {
    if depth == 0 {
        return h.tuple(&[small(1)]);
    }
    let left = pairs(h, depth - 1);
    let right = pairs(h, depth - 1);
    let list = h.list(&[left, small(0)]);
    h.tuple(&[list, right])
}

#[test]
fn deep_terms_spill_the_pending_ranges_and_take_them_back() {
    let mut h = TestHeap::new();
    for depth in [4, 15, 16, 17, 18] {
        let term = pairs(&mut h, depth);
        // 2^depth leaves of 2 words, 2^depth - 1 pairs of 3 + 4 list words.
        let n = 1u64 << depth;
        let words = 2 * n + 7 * (n - 1);
        assert_eq!(
            flat_words(&h, &OTP_25, term, u64::MAX, &mut Work::unlimited()),
            Ok(Some(words))
        );
        let found = scan(&h, &OTP_25, term, Detail::Words, &mut Work::unlimited()).unwrap();
        assert_eq!((found.shared_words, found.repeats), (words, false));
        // The heap part of the stack is charged to the memory allowance.
        let mut work = Work::unlimited().with_memory_limit(0);
        let got = flat_words(&h, &OTP_25, term, u64::MAX, &mut work);
        // Two ranges wait per level: a shallow tree needs no heap at all.
        if depth > 8 {
            assert_eq!(got, Err(Stop::OutOfMemory));
        } else {
            assert_eq!(got, Ok(Some(words)));
        }
    }
}

#[test]
fn a_list_head_met_again_is_counted_once_by_the_scans() {
    let mut h = TestHeap::new();
    let inner = h.tuple(&[small(1), small(2)]);
    let shared = h.tuple(&[small(1), inner]);
    let list = h.list(&[shared, shared, inner, small(3)]);
    let flat = flat_words(&h, &OTP_25, list, u64::MAX, &mut Work::unlimited());
    assert_eq!(flat, Ok(Some(8 + 2 * (3 + 3) + 3)));
    let found = scan(&h, &OTP_25, list, Detail::Words, &mut Work::unlimited()).unwrap();
    assert_eq!((found.shared_words, found.repeats), (8 + 3 + 3, true));
    let size = term_size(&h, &OTP_25, list, &mut Work::unlimited()).unwrap();
    assert_eq!(size.flat_words, 8 + 2 * (3 + 3) + 3);
    assert_eq!(size.scan, found);
}

#[test]
fn sub_bits_over_a_bin_ref_inline_on_27_and_29() {
    use heap::otp27::{BIN_REF_HEADER, SUB_BITS_HEADER};
    for layout in [&OTP_27, &OTP_29] {
        let mut h = TestHeap::new();
        // A SubBits and its BinRef: 5 + 3 words, whatever the slice.
        let (whole, binary) = h.off_heap_bits(1000);
        sized_everywhere(layout, &mut h, whole, 8);
        let br = h.bin_ref(binary);
        for (start, end) in [(8, 808), (3, 23), (0, 0), (8000, 8000)] {
            let s = h.sub_bits(br, binary, start, end, 0);
            sized_everywhere(layout, &mut h, s, 8);
        }
        // Three SubBits over one BinRef as list elements (the spine's own
        // decoding) and in a tuple: flat 8 each, the BinRef shared once.
        let slices: Vec<u64> = [(0, 80), (8, 88), (16, 96)]
            .iter()
            .map(|&(start, end)| h.sub_bits(br, binary, start, end, 0))
            .collect();
        let list = h.list(&slices);
        let tuple = h.tuple(&slices);
        for (term, own) in [(list, 6), (tuple, 4)] {
            let flat = flat_words(&h, layout, term, u64::MAX, &mut Work::unlimited());
            assert_eq!(flat.unwrap().unwrap(), own + 3 * 8);
            let found = scan(&h, layout, term, Detail::Words, &mut Work::unlimited()).unwrap();
            assert_eq!(found.shared_words, own + 3 * 5 + 3);
            assert_eq!(found.attached_repeat_words, 6);
            assert!(found.repeats);
            let full = term_size(&h, layout, term, &mut Work::unlimited()).unwrap();
            assert_eq!(full.scan.shared_words, found.shared_words);
            assert_eq!(full.scan.attached_repeat_words, 6);
            assert_eq!(full.flat_words, (own + 3 * 8) as u128);
        }
        // The same SubBits twice: met again, its BinRef not counted again.
        let twice = h.tuple(&[whole, whole]);
        let found = scan(&h, layout, twice, Detail::Words, &mut Work::unlimited()).unwrap();
        assert_eq!(
            (found.shared_words, found.attached_repeat_words),
            (3 + 8, 0)
        );
        assert_eq!(
            flat_words(&h, layout, twice, u64::MAX, &mut Work::unlimited())
                .unwrap()
                .unwrap(),
            3 + 2 * 8
        );
        // A literal BinRef under a heap SubBits: 5 shared, 3 literal.
        let lit_br = h.literal_bin_ref(binary);
        let over_lit = h.sub_bits(lit_br, binary, 0, 80, 0);
        let found = scan(&h, layout, over_lit, Detail::Words, &mut Work::unlimited()).unwrap();
        assert_eq!((found.shared_words, found.literal_words), (5, 3));

        // Refused inline as the general decoder refuses them.
        let backwards = h.sub_bits(br, binary, 80, 8, 0);
        refused_everywhere(
            layout,
            &mut h,
            backwards,
            "sub-bitstring starts after its end",
        );
        let not_boxed = h.sub_bits(small(1), binary, 0, 8, 0);
        refused_everywhere(layout, &mut h, not_boxed, "sub-bitstring orig is not boxed");
        let bad_pointer = h.sub_bits(0x12, binary, 0, 8, 0);
        refused_everywhere(layout, &mut h, bad_pointer, "bad boxed pointer");
        let t = h.tuple(&[small(1)]);
        let over_tuple = h.sub_bits(t, binary, 0, 8, 0);
        refused_everywhere(
            layout,
            &mut h,
            over_tuple,
            "sub-bitstring orig is neither a BinRef nor heap bits",
        );
        let over_sub = h.sub_bits(whole, binary, 0, 8, 0);
        refused_everywhere(
            layout,
            &mut h,
            over_sub,
            "sub-bitstring orig is neither a BinRef nor heap bits",
        );
        let bad_br = boxed_term(h.alloc(&[(3 << 6) | 0x28, binary as u64, 0, 0]));
        let over_bad_br = h.sub_bits(bad_br, binary, 0, 8, 0);
        refused_everywhere(layout, &mut h, over_bad_br, "unexpected BinRef header");
        for pointer in [0u64, 8, 0x8000_0004, 1 << 60] {
            let null_br = boxed_term(h.alloc(&[BIN_REF_HEADER, pointer, 0]));
            let over_null = h.sub_bits(null_br, binary, 0, 8, 0);
            refused_everywhere(
                layout,
                &mut h,
                over_null,
                "BinRef with a bad Binary pointer",
            );
        }
        let base = binary as u64 + heap::otp27::BINARY_DATA_OFFSET;
        let wrong_arity = boxed_term(h.alloc(&[SUB_BITS_HEADER + (1 << 6), base, 0, 8, br, 0]));
        refused_everywhere(
            layout,
            &mut h,
            wrong_arity,
            "unexpected sub-bitstring header",
        );
    }
}

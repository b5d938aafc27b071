//! Every size rule of docs/LAYOUT.md §3–§5 (OTP 25), on synthetic heaps.

mod heap;

use heap::*;
use term_walker::layout::OTP_25;
use term_walker::{flat, flat_words, flat_words_dag, scan, term_size, Detail, Scan, Stop, Work};

fn measure(h: &TestHeap, term: u64) -> (u128, Scan) {
    check::measure(&OTP_25, h, term)
}

fn flat_of(h: &TestHeap, term: u64) -> u128 {
    measure(h, term).0
}

fn shared_of(h: &TestHeap, term: u64) -> u64 {
    measure(h, term).1.shared_words
}

fn refused(h: &TestHeap, term: u64) -> &'static str {
    check::refused(&OTP_25, h, term)
}

fn refused_off_heap(h: &TestHeap, term: u64) -> &'static str {
    check::refused_off_heap(&OTP_25, h, term)
}

#[test]
fn immediates_take_no_words() {
    let h = TestHeap::new();
    for term in [
        NIL,
        atom(3),
        small(42),
        small(-7),
        local_pid(9),
        (5 << 4) | 0x7,
    ] {
        assert_eq!(measure(&h, term), (0, Scan::default()));
    }
}

#[test]
fn invalid_immediates_and_headers_are_refused() {
    let mut h = TestHeap::new();
    assert_eq!(refused(&h, 0x1B), "invalid immediate in a term");
    assert_eq!(refused(&h, 0x2B), "invalid immediate in a term");
    assert_eq!(refused(&h, 0x40), "header word where a term was expected");
    let t = h.tuple(&[0x1B]);
    assert_eq!(refused(&h, t), "invalid immediate in a term");
    // A tagged-literal pointer (bit 2 set) is a build this table does not describe.
    let c = h.cons(NIL, NIL);
    assert_eq!(refused(&h, c | 4), "bad list pointer");
    assert_eq!(refused(&h, 0x12), "bad boxed pointer");
}

#[test]
fn cons_cells_are_two_words() {
    let mut h = TestHeap::new();
    let one = h.list(&[small(1)]);
    assert_eq!(flat_of(&h, one), 2);
    let improper = h.cons(small(1), small(2));
    assert_eq!(flat_of(&h, improper), 2);
    let three = h.list(&[small(1), small(2), small(3)]);
    assert_eq!(measure(&h, three).1.shared_words, 6);
    assert_eq!(flat_of(&h, three), 6);
}

#[test]
fn tuples_are_arity_plus_one_and_empty_tuple_is_free() {
    let mut h = TestHeap::new();
    let t = h.tuple(&[small(1), small(2)]);
    assert_eq!(flat_of(&h, t), 3);
    let empty = h.empty_tuple;
    assert_eq!(
        measure(&h, empty).1,
        Scan {
            literal_words: 0,
            ..Scan::default()
        }
    );
    assert_eq!(flat_of(&h, empty), 0);
    let heap_empty = h.tuple(&[]);
    assert_eq!(
        refused(&h, heap_empty),
        "empty tuple outside the literal area"
    );
    let huge = boxed_term(h.alloc(&[1 << 30]));
    assert_eq!(refused(&h, huge), "tuple arity above the maximum");
}

#[test]
fn bignums_are_digits_plus_one() {
    let mut h = TestHeap::new();
    let pos = h.bignum(&[0, 1], false);
    let neg = h.bignum(&[0, 1], true);
    let big = h.bignum(&[0, 0, 1], false);
    assert_eq!(
        (flat_of(&h, pos), flat_of(&h, neg), flat_of(&h, big)),
        (3, 3, 4)
    );
    let zero_top = h.bignum(&[1, 0], false);
    assert_eq!(refused(&h, zero_top), "bignum with a zero top digit");
    let no_digits = h.bignum(&[], false);
    assert_eq!(refused(&h, no_digits), "bignum digit count out of range");
}

#[test]
fn floats_refs_and_external_things() {
    let mut h = TestHeap::new();
    let f = h.float(1.5);
    let r = h.ordinary_ref();
    let pr = h.pid_ref();
    let ep = h.external_pid();
    let eport = h.external_port();
    let er3 = h.external_ref(2);
    let er5 = h.external_ref(3);
    let got: Vec<u128> = [f, r, pr, ep, eport, er3, er5]
        .iter()
        .map(|&t| flat_of(&h, t))
        .collect();
    assert_eq!(got, [2, 3, 4, 4, 4, 5, 6]);
    let bad_float = boxed_term(h.alloc(&[0x98, 0, 0]));
    assert_eq!(refused(&h, bad_float), "unexpected float header");
    let bad_ref = boxed_term(h.alloc(&[0x110, 0, 0, 0, 0]));
    assert_eq!(refused(&h, bad_ref), "unexpected reference header");
    let bad_ext_ref = boxed_term(h.alloc(&[(7 << 6) | 0x38, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(
        refused(&h, bad_ext_ref),
        "external reference arity out of range"
    );
    let match_state = boxed_term(h.alloc(&[(3 << 6) | 0x04, 0, 0, 0]));
    assert_eq!(refused(&h, match_state), "unexpected header tag");
    let unused = boxed_term(h.alloc(&[(1 << 6) | 0x2C, 0]));
    assert_eq!(refused(&h, unused), "unexpected header tag");
}

#[test]
fn funs_are_five_words_plus_free_variables_and_their_contents() {
    let mut h = TestHeap::new();
    let no_env = h.fun(&[]);
    assert_eq!(flat_of(&h, no_env), 5);
    let x = h.tuple(&[small(1), small(2)]);
    let with_env = h.fun(&[x, x]);
    // 5 + 2 free variables + the shared tuple twice (flat) or once (shared).
    assert_eq!(measure(&h, with_env).0, 7 + 6);
    assert_eq!(measure(&h, with_env).1.shared_words, 7 + 3);
    let export = h.export_fun();
    assert_eq!(flat_of(&h, export), 5);
    // A remote creator is a boxed external pid: 4 more words.
    let remote = h.external_pid();
    let remote_fun = boxed_term(h.alloc(&[0xD4, 0x7000_0000, 0, 1, remote]));
    assert_eq!(flat_of(&h, remote_fun), 9);
    // binary_to_term takes any term as the creator (a decoded fun may have
    // an atom or a tuple there, free variables or not): an ordinary child.
    let odd = boxed_term(h.alloc(&[0xD4, 0x7000_0000, 0, 1 | (1 << 8), atom(77), small(1)]));
    assert_eq!(flat_of(&h, odd), 6);
    let boxed_creator = boxed_term(h.alloc(&[0xD4, 0x7000_0000, 0, 1, x]));
    assert_eq!(measure(&h, boxed_creator).0, 5 + 3);
    // It must still be a term: a header word there is refused.
    let broken = boxed_term(h.alloc(&[0xD4, 0x7000_0000, 0, 1, 0xD4]));
    assert_eq!(refused(&h, broken), "header word where a term was expected");
}

#[test]
fn flatmaps_count_values_and_keys_tuple() {
    let mut h = TestHeap::new();
    let keys = h.tuple(&[atom(1), atom(2)]);
    let m = h.flatmap(keys, &[small(1), small(2)]);
    assert_eq!(flat_of(&h, m), 8); // 2n + 4
    let empty = h.empty_tuple;
    let empty_map = h.flatmap(empty, &[]);
    assert_eq!(
        measure(&h, empty_map),
        (
            3,
            Scan {
                shared_words: 3,
                ..Scan::default()
            }
        )
    );
    // Constant keys live in the literal area: counted flat, not shared.
    let literal_keys = h.literal_tuple(&[atom(1), atom(2)]);
    let m2 = h.flatmap(literal_keys, &[local_pid(3), small(2)]);
    let (flat, found) = measure(&h, m2);
    assert_eq!((flat, found.shared_words, found.literal_words), (8, 5, 3));
    let wrong_keys = h.tuple(&[atom(1)]);
    let bad = h.flatmap(wrong_keys, &[small(1), small(2)]);
    assert_eq!(refused(&h, bad), "flatmap keys are not a tuple of its size");
    let too_big_keys = h.tuple(&vec![small(0); 33]);
    let too_big = h.flatmap(too_big_keys, &vec![small(0); 33]);
    assert_eq!(
        refused(&h, too_big),
        "flatmap larger than the flatmap limit"
    );
}

#[test]
fn hashmaps_count_each_node_once_and_report_node_words() {
    let mut h = TestHeap::new();
    // head (bitmap 0b11) -> leaf, inner node (bitmap 0b101) -> two leaves
    let leaf1 = h.cons(small(1), small(10));
    let leaf2 = h.cons(small(2), small(20));
    let leaf3 = h.cons(small(3), small(30));
    let inner = h.hashmap_node(0b101, &[leaf2, leaf3]);
    let head = h.hashmap_head(0b11, 3, &[leaf1, inner]);
    let (flat, found) = measure(&h, head);
    // head 2 + 2, inner 1 + 2, three leaves of 2
    assert_eq!(flat, 4 + 3 + 6);
    assert_eq!(found.shared_words, 13);
    assert_eq!(found.hashmap_node_words, 7);
    // array head: 18 words
    let leaves: Vec<u64> = (0..16).map(|i| h.cons(small(i), NIL)).collect();
    let array = h.hashmap_head(0xFFFF, 16, &leaves);
    assert_eq!(flat_of(&h, array), 18 + 32);
    let zero_bitmap = h.hashmap_node(0, &[]);
    assert_eq!(refused(&h, zero_bitmap), "hashmap node header out of range");
    let immediate_child = h.hashmap_node(0b1, &[small(1)]);
    assert_eq!(
        refused(&h, immediate_child),
        "hashmap child is neither a leaf nor a node"
    );
}

#[test]
fn heap_binaries_are_two_words_plus_data() {
    let mut h = TestHeap::new();
    let sizes: Vec<u128> = [0, 1, 8, 9, 64]
        .iter()
        .map(|&n| {
            let b = h.heap_binary(n);
            flat_of(&h, b)
        })
        .collect();
    assert_eq!(sizes, [2, 3, 3, 4, 10]);
    let bad = boxed_term(h.alloc(&[(5 << 6) | 0x24, 1, 0, 0, 0, 0]));
    assert_eq!(
        refused(&h, bad),
        "heap binary size does not match its header"
    );
    let too_big = boxed_term(h.alloc(&[(10 << 6) | 0x24, 65, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(
        refused(&h, too_big),
        "heap binary size does not match its header"
    );
}

#[test]
fn refc_binaries_are_six_words_and_pin_their_binary_once() {
    let mut h = TestHeap::new();
    let bin = h.off_heap_binary(1000);
    let b = h.proc_bin(bin, 1000, 0);
    let (flat, found) = measure(&h, b);
    assert_eq!(flat, 6);
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    // Two ProcBins over one Binary: one binary, counted once. The VM counts
    // one reference per ProcBin.
    h.poke_off_heap(bin + 8, 2);
    let other = h.proc_bin(bin, 500, 500);
    let pair = h.tuple(&[b, other, b]);
    let (flat, found) = measure(&h, pair);
    assert_eq!((flat, found.shared_words), (4 + 18, 4 + 12));
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    // Broken handles are refused.
    let null = boxed_term(h.alloc(&[0x160, 10, 0, 0, 0, 0]));
    assert_eq!(refused(&h, null), "refc binary with a bad Binary pointer");
    let outside = h.proc_bin(bin, 1000, 10);
    assert_eq!(
        refused_off_heap(&h, outside),
        "refc binary outside its Binary"
    );
    let dead = h.off_heap_binary(10);
    h.poke_off_heap(dead + 8, 0); // refc 0
    let dead_ref = h.proc_bin(dead, 10, 0);
    assert_eq!(
        refused_off_heap(&h, dead_ref),
        "Binary with a bad refc or size"
    );
}

#[test]
fn a_binary_with_one_reference_is_counted_by_its_procbin_without_the_set() {
    let mut h = TestHeap::new();
    let bin = h.off_heap_binary(1000);
    let b = h.proc_bin(bin, 1000, 0);
    // The one ProcBin reached three times: one object, one binary.
    let thrice = h.tuple(&[b, b, b]);
    let found = measure(&h, thrice).1;
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    // Its slices, before and after it and without it: the Binary once.
    let s1 = h.sub_binary(b, 100, 1, 0, 0);
    let s2 = h.sub_binary(b, 10, 5, 0, 0);
    for items in [
        vec![s1, b, s2],
        vec![b, s1, s2],
        vec![s1, s2],
        vec![s2, s1, b, s1],
    ] {
        let t = h.tuple(&items);
        let found = measure(&h, t).1;
        assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    }
    // The count is what says there is no other holder: two ProcBins over a
    // Binary whose count says 1 (a state the VM never makes) count it twice,
    // which shows that a count of 1 is never looked up in the set.
    let other = h.proc_bin(bin, 500, 500);
    let lying = h.tuple(&[b, other]);
    assert_eq!(measure(&h, lying).1.off_heap_binaries, 2);
    // With the count the VM keeps (2), once, and a slice of either changes
    // nothing.
    h.poke_off_heap(bin + 8, 2);
    let s3 = h.sub_binary(other, 10, 0, 0, 0);
    for items in [
        vec![b, other],
        vec![s3, b],
        vec![s1, s3],
        vec![s3, other, b, s1],
    ] {
        let t = h.tuple(&items);
        let found = measure(&h, t).1;
        assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    }
}

#[test]
fn binaries_read_ahead_are_all_counted_and_checked() {
    // More ProcBins than the walk keeps prefetched, some sharing a Binary
    // (count 3), some each their own: every one counted, each Binary once.
    let mut h = TestHeap::new();
    let shared = h.off_heap_binary(64);
    h.poke_off_heap(shared + 8, 3);
    let mut items = Vec::new();
    let mut bytes = 64;
    for i in 0..100u64 {
        if i % 40 == 7 {
            items.push(h.proc_bin(shared, 64, 0));
        } else {
            let own = h.off_heap_binary(100 + i);
            bytes += 100 + i;
            items.push(h.proc_bin(own, 100 + i, 0));
        }
    }
    let list = h.list(&items);
    let found = measure(&h, list).1;
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (98, bytes));
    // A bad Binary is refused wherever it is: read when the prefetched ones
    // overflow (first), or at the end (last).
    for at in [0, 99] {
        let dead = h.off_heap_binary(10);
        h.poke_off_heap(dead + 8, 0);
        let mut with_dead = items.clone();
        with_dead[at] = h.proc_bin(dead, 10, 0);
        let list = h.list(&with_dead);
        assert_eq!(refused_off_heap(&h, list), "Binary with a bad refc or size");
    }
}

#[test]
fn sub_binaries_count_their_copy_and_pin_the_whole_parent() {
    let mut h = TestHeap::new();
    let bin = h.off_heap_binary(1000);
    let b = h.proc_bin(bin, 1000, 0);
    let aligned = h.sub_binary(b, 100, 1, 0, 0);
    let unaligned = h.sub_binary(b, 2, 0, 4, 3);
    let trailing = h.sub_binary(b, 100, 1, 3, 0);
    let hb = h.heap_binary(40);
    let heap_aligned = h.sub_binary(hb, 10, 1, 0, 0);
    let heap_unaligned = h.sub_binary(hb, 2, 0, 4, 3);
    let got: Vec<u128> = [aligned, unaligned, trailing, heap_aligned, heap_unaligned]
        .iter()
        .map(|&t| flat_of(&h, t))
        .collect();
    assert_eq!(got, [6, 11, 11, 4, 8]);
    // A 100-byte slice keeps the whole 1000-byte parent alive.
    let found = measure(&h, aligned).1;
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    assert_eq!(measure(&h, heap_aligned).1.off_heap_bytes, 0);
    // {B, S1, S2}: the ProcBin and both subs count, the Binary once.
    let all = h.tuple(&[b, aligned, trailing]);
    let (flat, found) = measure(&h, all);
    assert_eq!(
        (flat, found.shared_words, found.off_heap_bytes),
        (27, 27, 1000)
    );
    // orig must be a refc or heap binary, bit fields small, slice inside.
    let sub_of_sub = h.sub_binary(aligned, 1, 0, 0, 0);
    assert_eq!(refused(&h, sub_of_sub), "sub binary orig is not a binary");
    let big_bits = h.sub_binary(b, 1, 0, 9, 0);
    assert_eq!(refused(&h, big_bits), "sub binary bit fields out of range");
    let past_end = h.sub_binary(b, 1000, 1, 0, 0);
    assert_eq!(refused(&h, past_end), "sub binary reaches past its orig");
    let not_boxed = h.sub_binary(small(1), 1, 0, 0, 0);
    assert_eq!(refused(&h, not_boxed), "sub binary orig is not boxed");
}

#[test]
fn sharing_is_counted_once_in_shared_and_per_path_in_flat() {
    let mut h = TestHeap::new();
    let l = h.list(&[small(1), small(2)]);
    let ll = h.list(&[l, l]);
    let (flat, found) = measure(&h, ll);
    assert_eq!((flat, found.shared_words, found.repeats), (12, 8, true));
    let t = h.tuple(&[atom(1), atom(2)]);
    let ttt = h.tuple(&[t, t, t]);
    assert_eq!((flat_of(&h, ttt), shared_of(&h, ttt)), (13, 7));
    let f = h.float(1.5);
    let ff = h.list(&[f, f]);
    assert_eq!((flat_of(&h, ff), shared_of(&h, ff)), (8, 6));
    assert!(!measure(&h, l).1.repeats);
}

#[test]
fn literals_count_flat_but_not_shared() {
    let mut h = TestHeap::new();
    let lit_tail = h.literal_cons(small(3), NIL);
    let lit_mid = h.literal_cons(small(2), lit_tail);
    let lit = h.literal_cons(small(1), lit_mid);
    let (flat, found) = measure(&h, lit);
    assert_eq!((flat, found.shared_words, found.literal_words), (6, 0, 6));
    // {Lit, Lit}: the heap tuple is shared words, the literal counted once.
    let pair = h.tuple(&[lit, lit]);
    let (flat, found) = measure(&h, pair);
    assert_eq!((flat, found.shared_words, found.literal_words), (15, 3, 6));
    // A literal refc binary is still an off-heap binary kept alive.
    let bin = h.off_heap_binary(70);
    let lit_bin = h.literal_proc_bin(bin, 70);
    let found = measure(&h, lit_bin).1;
    assert_eq!((found.literal_words, found.off_heap_bytes), (6, 70));
}

/// {t, t} nested `levels` times over an atom.
fn doubling_dag(h: &mut TestHeap, levels: u32) -> u64 {
    (0..levels).fold(atom(1), |t, _| h.tuple(&[t, t]))
}

#[test]
fn a_forty_level_doubling_dag_is_sized_without_walking_its_paths() {
    let mut h = TestHeap::new();
    let dag = doubling_dag(&mut h, 40);
    let expected = 3 * ((1u128 << 40) - 1);
    *h.reads.borrow_mut() = 0;
    assert_eq!(
        flat(&h, &OTP_25, dag, 1000, &mut Work::unlimited()).unwrap(),
        expected
    );
    let size = term_size(&h, &OTP_25, dag, &mut Work::unlimited()).unwrap();
    assert_eq!(size.flat_words, expected);
    assert_eq!(size.scan.shared_words, 120);
    // Bounded plain attempts, then linear in the distinct objects: not 2^40.
    assert!(
        *h.reads.borrow() < 1_000_000,
        "read {} words",
        h.reads.borrow()
    );
    // The plain walk gives up at its limit instead.
    assert_eq!(
        flat_words(&h, &OTP_25, dag, 1 << 20, &mut Work::unlimited()),
        Ok(None)
    );
}

#[test]
fn flat_sizes_beyond_128_bits_are_an_overflow_not_a_wrong_number() {
    let mut h = TestHeap::new();
    let dag = doubling_dag(&mut h, 130);
    assert_eq!(
        flat_words_dag(&h, &OTP_25, dag, &mut Work::unlimited()),
        Err(Stop::Overflow)
    );
}

#[test]
fn a_million_levels_of_nesting_need_no_recursion() {
    let mut h = TestHeap::new();
    let deep_list = (0..1_000_000).fold(NIL, |t, _| h.cons(t, NIL));
    assert_eq!(flat_of(&h, deep_list), 2_000_000);
    let deep_tuple = (0..1_000_000).fold(atom(0), |t, _| h.tuple(&[t]));
    assert_eq!(flat_of(&h, deep_tuple), 2_000_000);
    let long_list = h.list(&vec![small(1); 1_000_000]);
    assert_eq!(shared_of(&h, long_list), 2_000_000);
}

#[test]
fn the_work_budget_stops_every_walk() {
    let mut h = TestHeap::new();
    let long_list = h.list(&vec![small(1); 10_000]);
    let budget = || Work::limited(1000);
    assert_eq!(
        flat_words(&h, &OTP_25, long_list, u64::MAX, &mut budget()),
        Err(Stop::Budget)
    );
    assert_eq!(
        scan(&h, &OTP_25, long_list, Detail::OffHeap, &mut budget()),
        Err(Stop::Budget)
    );
    assert_eq!(
        term_size(&h, &OTP_25, long_list, &mut budget()).map(|_| ()),
        Err(Stop::Budget)
    );
    let dag = doubling_dag(&mut h, 40);
    assert_eq!(flat(&h, &OTP_25, dag, 0, &mut budget()), Err(Stop::Budget));
    assert!(
        flat_words(&h, &OTP_25, long_list, u64::MAX, &mut Work::limited(40_000))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_cycle_is_a_layout_error_not_a_hang() {
    let mut h = TestHeap::new();
    let t = h.tuple(&[NIL]);
    h.poke(TestHeap::addr(t) + 8, t);
    assert!(
        scan(&h, &OTP_25, t, Detail::OffHeap, &mut Work::unlimited())
            .unwrap()
            .repeats
    );
    match flat(&h, &OTP_25, t, 10, &mut Work::unlimited()) {
        Err(Stop::Layout(e)) => assert_eq!(e.what, "cycle in a term"),
        other => panic!("expected a cycle error, got {other:?}"),
    }
}

#[test]
fn reads_outside_the_heap_are_errors() {
    let mut h = TestHeap::new();
    let dangling = boxed_term(HEAP_BASE + 1_000_000);
    assert_eq!(refused(&h, dangling), "read outside the synthetic heap");
    let t = h.tuple(&[list_term(HEAP_BASE + 2_000_000)]);
    assert_eq!(refused(&h, t), "read outside the synthetic heap");
}

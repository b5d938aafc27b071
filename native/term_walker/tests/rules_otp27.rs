//! The OTP 27 size rules (docs/LAYOUT.md §2–§5;
//! copy.c `size_object` / `size_shared` of 27.3.4.1) on synthetic heaps, and
//! the checks that keep one release's layout from being read as another's.

mod heap;

use heap::otp27::*;
use heap::*;
use term_walker::layout::{Layout, OTP_25, OTP_26, OTP_27};
use term_walker::Scan;

fn measure_with(layout: &Layout, h: &TestHeap, term: u64) -> (u128, Scan) {
    check::measure(layout, h, term)
}

fn measure(h: &TestHeap, term: u64) -> (u128, Scan) {
    check::measure(&OTP_27, h, term)
}

/// (flat, size_shared without the hashmap double count, literal words,
/// erts_debug:size/1).
fn sizes(h: &TestHeap, term: u64) -> (u128, u64, u64, u64) {
    let (flat, s) = measure(h, term);
    (flat, s.shared_words, s.literal_words, s.erts_size_words())
}

fn refused_with(layout: &Layout, h: &TestHeap, term: u64) -> &'static str {
    check::refused(layout, h, term)
}

fn refused(h: &TestHeap, term: u64) -> &'static str {
    check::refused(&OTP_27, h, term)
}

fn refused_off_heap(h: &TestHeap, term: u64) -> &'static str {
    check::refused_off_heap(&OTP_27, h, term)
}

#[test]
fn heap_bits_count_their_size_in_bits() {
    let mut h = TestHeap::new();
    // heap_bits_size(bits) = 2 + ceil(ceil(bits / 8) / 8)
    let got: Vec<u128> = [0, 1, 7, 8, 64, 65, 511, 512]
        .iter()
        .map(|&bits| {
            let b = h.heap_bits(bits);
            measure(&h, b).0
        })
        .collect();
    assert_eq!(got, [2, 3, 3, 3, 3, 4, 10, 10]);
    // More than ERL_ONHEAP_BITS_LIMIT, or a header that disagrees with the size.
    let too_big = boxed_term(h.alloc(&[(10 << 6) | 0x20, 513, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(
        refused(&h, too_big),
        "heap binary size does not match its header"
    );
    let wrong = boxed_term(h.alloc(&[(2 << 6) | 0x20, 65, 0, 0]));
    assert_eq!(
        refused(&h, wrong),
        "heap binary size does not match its header"
    );
    // The same words read as bytes (OTP 25) would be a 65-byte heap binary.
    let bits_65 = h.heap_bits(65);
    assert_eq!(measure(&h, bits_65).0, 4);
}

#[test]
fn an_off_heap_bitstring_is_sub_bits_plus_bin_ref() {
    let mut h = TestHeap::new();
    let (b, binary) = h.off_heap_bits(1000);
    let (flat, found) = measure(&h, b);
    // ERL_REFC_BITS_SIZE = 5 + 3, whatever the size or alignment.
    assert_eq!(
        (
            flat,
            found.shared_words,
            found.literal_words,
            found.erts_size_words()
        ),
        (8, 8, 0, 8)
    );
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    // Slices of the same Binary through their own BinRefs, unaligned or not.
    let br2 = h.bin_ref(binary);
    for (start, end) in [(8, 808), (3, 23), (8, 811), (0, 0)] {
        let s = h.sub_bits(br2, binary, start, end, 0);
        assert_eq!(sizes(&h, s), (8, 8, 0, 8));
    }
}

#[test]
fn sub_bits_sharing_one_bin_ref_count_it_once_except_in_size_1() {
    let mut h = TestHeap::new();
    let binary = h.binary27(1000);
    let br = h.bin_ref(binary);
    let whole = h.sub_bits(br, binary, 0, 8000, 0);
    let aligned = h.sub_bits(br, binary, 8, 808, 0);
    let trailing = h.sub_bits(br, binary, 8, 811, 0);
    // {B, S1, S2} (docs/LAYOUT.md §3 on 27): flat 4 + 3 × 8 = 28; shared
    // 4 + 3 × 5 + 3 = 22 (one BinRef); size/1 counts 8 per SubBits = 28.
    let all = h.tuple(&[whole, aligned, trailing]);
    let (flat, found) = measure(&h, all);
    assert_eq!(
        (flat, found.shared_words, found.erts_size_words()),
        (28, 22, 28)
    );
    assert_eq!(found.attached_repeat_words, 6);
    assert!(found.repeats);
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
    // {B, Sub}: 19 flat / 16 shared (docs/LAYOUT.md §3).
    let pair = h.tuple(&[whole, aligned]);
    assert_eq!(sizes(&h, pair), (19, 16, 0, 19));
    // The same SubBits twice: one object, one BinRef, nothing attached twice.
    let same = h.tuple(&[whole, whole]);
    assert_eq!(sizes(&h, same), (19, 11, 0, 11));
    assert_eq!(measure(&h, same).1.attached_repeat_words, 0);
    // Two BinRefs over one Binary (a copy from another process): both count,
    // the Binary once. The VM counts one reference per BinRef.
    h.poke_off_heap(binary + 16, 2);
    let other_br = h.bin_ref(binary);
    let other = h.sub_bits(other_br, binary, 0, 8000, 0);
    let copies = h.tuple(&[whole, other]);
    let (flat, found) = measure(&h, copies);
    assert_eq!(
        (flat, found.shared_words, found.erts_size_words()),
        (19, 19, 19)
    );
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 1000));
}

#[test]
fn sub_bits_read_ahead_count_each_binary_once() {
    // More SubBits than the walk keeps prefetched: slices sharing one
    // BinRef (count 1), copies with their own BinRefs over one Binary
    // (count 3), and whole binaries of their own.
    let mut h = TestHeap::new();
    let one = h.binary27(500);
    let one_br = h.bin_ref(one);
    let three = h.binary27(300);
    h.poke_off_heap(three + 16, 3);
    let mut items = Vec::new();
    let mut bytes = 500 + 300;
    for i in 0..90u64 {
        items.push(match i % 30 {
            3 => h.sub_bits(one_br, one, 8 * i, 8 * i + 8, 0),
            5 => {
                let br = h.bin_ref(three);
                h.sub_bits(br, three, 0, 800, 0)
            }
            _ => {
                bytes += 10 + i;
                h.off_heap_bits(10 + i).0
            }
        });
    }
    let list = h.list(&items);
    let found = measure(&h, list).1;
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (86, bytes));
}

#[test]
fn literal_bin_refs_and_sub_bits_count_as_literal_words() {
    let mut h = TestHeap::new();
    let binary = h.binary27(70);
    let lit_br = h.literal_bin_ref(binary);
    let lit = h.literal_sub_bits(lit_br, binary, 0, 560);
    assert_eq!(sizes(&h, lit), (8, 0, 8, 8));
    // A literal binary is still an off-heap binary kept alive.
    assert_eq!(measure(&h, lit).1.off_heap_bytes, 70);
    // A heap SubBits over a literal BinRef: 5 shared, 3 literal.
    let heap_sub = h.sub_bits(lit_br, binary, 8, 400, 0);
    assert_eq!(sizes(&h, heap_sub), (8, 5, 3, 8));
    // {Lit, Lit}
    let pair = h.tuple(&[lit, lit]);
    assert_eq!(sizes(&h, pair), (19, 3, 8, 11));
}

#[test]
fn writable_sub_bits_are_checked_against_the_binary_not_a_stale_base() {
    let mut h = TestHeap::new();
    // A writable binary: 200 visible bytes, capacity 402 (docs/LAYOUT.md §5).
    let binary = h.binary27(402);
    let br = h.bin_ref(binary);
    let writable = boxed_term(h.alloc(&[
        SUB_BITS_HEADER,
        0x10_0000_0000 | FLAG_MUTABLE | FLAG_VOLATILE, // base moved away
        0,
        1600,
        br,
    ]));
    let found = measure(&h, writable).1;
    assert_eq!((found.shared_words, found.off_heap_bytes), (8, 402));
    // A non-volatile SubBits must lie inside its Binary.
    let stale = boxed_term(h.alloc(&[SUB_BITS_HEADER, 0x10_0000_0000, 0, 1600, br]));
    assert_eq!(
        refused_off_heap(&h, stale),
        "sub-bitstring outside its Binary"
    );
    let past_end = h.sub_bits(br, binary, 0, 402 * 8 + 1, 0);
    assert_eq!(
        refused_off_heap(&h, past_end),
        "sub-bitstring outside its Binary"
    );
    let past_capacity = h.sub_bits(br, binary, 0, 402 * 8 + 1, FLAG_VOLATILE);
    assert_eq!(
        refused_off_heap(&h, past_capacity),
        "sub-bitstring outside its Binary"
    );
    let dead = h.binary27(10);
    h.poke_off_heap(dead + 16, 0); // refc 0
    let dead_br = h.bin_ref(dead);
    let dead_sub = h.sub_bits(dead_br, dead, 0, 80, 0);
    assert_eq!(
        refused_off_heap(&h, dead_sub),
        "Binary with a bad refc or size"
    );
}

#[test]
fn bin_refs_and_sub_bits_are_only_read_in_their_place() {
    let mut h = TestHeap::new();
    let binary = h.binary27(100);
    let br = h.bin_ref(binary);
    assert_eq!(refused(&h, br), "BinRef outside a sub-bitstring");
    let in_tuple = h.tuple(&[br]);
    assert_eq!(refused(&h, in_tuple), "BinRef outside a sub-bitstring");
    let backwards = h.sub_bits(br, binary, 80, 8, 0);
    assert_eq!(refused(&h, backwards), "sub-bitstring starts after its end");
    let not_boxed = h.sub_bits(small(1), binary, 0, 8, 0);
    assert_eq!(refused(&h, not_boxed), "sub-bitstring orig is not boxed");
    let t = h.tuple(&[small(1)]);
    let over_tuple = h.sub_bits(t, binary, 0, 8, 0);
    assert_eq!(
        refused(&h, over_tuple),
        "sub-bitstring orig is neither a BinRef nor heap bits"
    );
    let (s, _) = h.off_heap_bits(100);
    let over_sub = h.sub_bits(s, binary, 0, 8, 0);
    assert_eq!(
        refused(&h, over_sub),
        "sub-bitstring orig is neither a BinRef nor heap bits"
    );
    let bad_br = boxed_term(h.alloc(&[(3 << 6) | 0x28, binary as u64, 0, 0]));
    let over_bad_br = h.sub_bits(bad_br, binary, 0, 8, 0);
    assert_eq!(refused(&h, over_bad_br), "unexpected BinRef header");
    let null_br = boxed_term(h.alloc(&[BIN_REF_HEADER, 0, 0]));
    let over_null = h.sub_bits(null_br, binary, 0, 8, 0);
    assert_eq!(refused(&h, over_null), "BinRef with a bad Binary pointer");
    let long = boxed_term(h.alloc(&[(5 << 6) | 0x24, 0, 0, 0, br, 0]));
    assert_eq!(refused(&h, long), "unexpected sub-bitstring header");
}

#[test]
fn a_match_context_over_heap_bits_counts_the_matched_bits() {
    let mut h = TestHeap::new();
    let hb = h.heap_bits(400);
    // 80 bits matched: heap_bits_size(80) = 2 + 2.
    let ctx = h.match_context(hb, 10, 90, FLAG_MUTABLE);
    assert_eq!(sizes(&h, ctx), (4, 4, 0, 4));
    let not_ctx = h.match_context(hb, 10, 90, 0);
    assert_eq!(
        refused(&h, not_ctx),
        "sub-bitstring over heap bits is not a match context"
    );
    let past = h.match_context(hb, 10, 401, FLAG_MUTABLE);
    assert_eq!(refused(&h, past), "sub-bitstring reaches past its orig");
}

#[test]
fn local_funs_are_two_words_plus_environment_plus_fun_ref() {
    let mut h = TestHeap::new();
    let fun_ref = h.literal_fun_ref(FUN_ENTRY);
    let x = h.tuple(&[small(1), small(2)]);
    // fun() -> {X, X} end: 2 + (1 + 1) words, FunRef 3 (literal), X 3.
    let f = h.fun27(0, &[x], fun_ref, FUN_ENTRY);
    assert_eq!(sizes(&h, f), (10, 7, 3, 10));
    // n free variables: n + 6 flat, n + 3 shared (docs/LAYOUT.md §3), plus their contents.
    for n in 0..4u64 {
        let env: Vec<u64> = (0..n as i64).map(small).collect();
        let g = h.fun27(1, &env, fun_ref, FUN_ENTRY);
        let n = n as u128;
        assert_eq!(sizes(&h, g), (n + 6, n as u64 + 3, 3, n as u64 + 6));
    }
    // [Fn, Fn]: one fun.
    let ff = h.list(&[f, f]);
    assert_eq!(sizes(&h, ff), (4 + 20, 4 + 7, 3, 4 + 10));
    // Two closures of one lambda share its FunRef: size/1 counts it per fun.
    let g = h.fun27(0, &[small(5)], fun_ref, FUN_ENTRY);
    let fg = h.list(&[f, g]);
    let (flat, found) = measure(&h, fg);
    assert_eq!(flat, 4 + 10 + 7);
    assert_eq!(
        (
            found.shared_words,
            found.literal_words,
            found.attached_repeat_words
        ),
        (4 + 7 + 4, 3, 3)
    );
    assert_eq!(found.erts_size_words(), 4 + 10 + 7);
    // A FunRef copied to the heap (ETS, binary_to_term) is shared words.
    let heap_ref = h.fun_ref(FUN_ENTRY);
    let copied = h.fun27(0, &[], heap_ref, FUN_ENTRY);
    assert_eq!(sizes(&h, copied), (6, 6, 0, 6));
}

#[test]
fn funs_without_environment_and_export_funs_are_literal_or_two_words() {
    let mut h = TestHeap::new();
    // fun() -> ok end: a loader-built literal (6 flat, 0 shared).
    let lit = h.literal_fun27(0, FUN_ENTRY);
    assert_eq!(sizes(&h, lit), (6, 0, 6, 6));
    // fun lists:map/2: Export.lambda, 2 literal words.
    let export = h.literal_export_fun27(2);
    assert_eq!(sizes(&h, export), (2, 0, 2, 2));
    // An export fun copied to a heap (ETS) is 2 heap words.
    let copied = h.export_fun27(2);
    assert_eq!(sizes(&h, copied), (2, 2, 0, 2));
}

#[test]
fn broken_funs_and_stray_fun_refs_are_refused() {
    let mut h = TestHeap::new();
    let fun_ref = h.literal_fun_ref(FUN_ENTRY);
    assert_eq!(refused(&h, fun_ref), "FunRef outside a fun");
    let in_list = h.list(&[fun_ref]);
    assert_eq!(refused(&h, in_list), "FunRef outside a fun");
    // The last slot must be the FunRef of the fun's own entry.
    let no_ref = h.fun27(0, &[small(1)], small(2), FUN_ENTRY);
    assert_eq!(
        refused(&h, no_ref),
        "local fun's last environment slot is not its FunRef"
    );
    let other_entry = h.fun27(0, &[], fun_ref, FUN_ENTRY + 64);
    assert_eq!(
        refused(&h, other_entry),
        "local fun's last environment slot is not its FunRef"
    );
    let t = h.tuple(&[small(1), small(2)]);
    let tuple_slot = h.fun27(0, &[], t, FUN_ENTRY);
    assert_eq!(
        refused(&h, tuple_slot),
        "local fun's last environment slot is not its FunRef"
    );
    // Bits 6–7 of a fun header are zero; at most 255 free variables + FunRef.
    let odd = boxed_term(h.alloc(&[TestHeap::fun27_header(0, 0) | 0x40, EXPORT_ENTRY]));
    assert_eq!(refused(&h, odd), "unexpected fun header");
    let huge = boxed_term(h.alloc(&[TestHeap::fun27_header(0, 257), FUN_ENTRY]));
    assert_eq!(refused(&h, huge), "fun environment larger than the maximum");
    let null_entry = boxed_term(h.alloc(&[TestHeap::fun27_header(1, 0), 0]));
    assert_eq!(refused(&h, null_entry), "fun with a bad entry pointer");
    // The OTP 25 fun shape is not an OTP 27 fun.
    let fun25 = h.fun(&[]);
    assert_eq!(refused(&h, fun25), "unexpected fun header");
}

#[test]
fn maps_use_tag_0x2c_and_the_otp25_map_tag_is_refused() {
    let mut h = TestHeap::new();
    let keys = h.tuple(&[atom(1), atom(2)]);
    let m = h.flatmap27(keys, &[small(1), small(2)]);
    assert_eq!(sizes(&h, m), (8, 8, 0, 8));
    let empty = h.empty_tuple;
    let empty_map = h.flatmap27(empty, &[]);
    assert_eq!(sizes(&h, empty_map), (3, 3, 0, 3));
    let old = h.flatmap(keys, &[small(1), small(2)]);
    assert_eq!(refused(&h, old), "unexpected header tag");
    // And on OTP 25 the 0x2C tag is unused.
    assert_eq!(refused_with(&OTP_25, &h, m), "unexpected header tag");
    let leaf1 = h.cons(small(1), small(10));
    let leaf2 = h.cons(small(2), small(20));
    let leaf3 = h.cons(small(3), small(30));
    let inner = h.hashmap_node27(0b101, &[leaf2, leaf3]);
    let head = h.hashmap_head27(0b11, 3, &[leaf1, inner]);
    let (flat, found) = measure(&h, head);
    assert_eq!(
        (flat, found.shared_words, found.hashmap_node_words),
        (13, 13, 7)
    );
}

#[test]
fn hashmap_collision_nodes_are_tuples_of_leaves() {
    let mut h = TestHeap::new();
    // head -> inner node -> collision node {[K1|V1], [K2|V2]} (keys whose
    // 64-bit hashes are equal), plus an ordinary leaf.
    let c1 = h.cons(small(1), small(10));
    let c2 = h.cons(small(2), small(20));
    let collision = h.tuple(&[c1, c2]);
    let inner = h.hashmap_node27(0b1, &[collision]);
    let leaf = h.cons(small(3), small(30));
    let head = h.hashmap_head27(0b11, 3, &[leaf, inner]);
    let (flat, found) = measure(&h, head);
    // head 2 + 2, inner 1 + 1, collision tuple 3, three leaves 6.
    assert_eq!(flat, 4 + 2 + 3 + 6);
    assert_eq!(found.shared_words, 15);
    // size_shared counts hashmap nodes twice, never the collision tuple.
    assert_eq!(found.hashmap_node_words, 6);
    assert_eq!(found.erts_size_words(), 15);
    // A collision node holds at least two leaves, and only leaves.
    let lonely = h.tuple(&[c1]);
    let bad_inner = h.hashmap_node27(0b1, &[lonely]);
    assert_eq!(
        refused(&h, bad_inner),
        "hashmap child is neither a leaf nor a node"
    );
    // OTP 25 has no collision nodes; OTP 26's table admits them (in the 25
    // tag layout: map tag 0x3C).
    let inner25 = h.hashmap_node(0b1, &[collision]);
    let head25 = h.hashmap_head(0b11, 3, &[leaf, inner25]);
    assert_eq!(
        check::refused(&OTP_25, &h, head25),
        "hashmap child is neither a leaf nor a node"
    );
    assert_eq!(check::measure(&OTP_26, &h, head25).0, 4 + 2 + 3 + 6);
    let mixed = h.tuple(&[c1, small(4)]);
    let bad_inner = h.hashmap_node27(0b1, &[mixed]);
    assert_eq!(
        refused(&h, bad_inner),
        "hashmap child is neither a leaf nor a node"
    );
    // A flatmap or a head is never a child.
    let keys = h.tuple(&[atom(1)]);
    let flatmap = h.flatmap27(keys, &[small(1)]);
    let bad_inner = h.hashmap_node27(0b1, &[flatmap]);
    assert_eq!(
        refused(&h, bad_inner),
        "hashmap child is neither a leaf nor a node"
    );
}

#[test]
fn otp25_hashmaps_have_no_collision_nodes() {
    let mut h = TestHeap::new();
    let c1 = h.cons(small(1), small(10));
    let c2 = h.cons(small(2), small(20));
    let collision = h.tuple(&[c1, c2]);
    let inner = h.hashmap_node(0b1, &[collision]);
    assert_eq!(
        refused_with(&OTP_25, &h, inner),
        "hashmap child is neither a leaf nor a node"
    );
    let leaf = h.cons(small(3), NIL);
    let inner = h.hashmap_node(0b1, &[leaf]);
    let head = h.hashmap_head(0b1, 1, &[inner]);
    assert_eq!(measure_with(&OTP_25, &h, head).0, 3 + 2 + 2);
}

#[test]
fn bignum_limit_is_two_to_the_sixteen_minus_one_digits() {
    let mut h = TestHeap::new();
    let max = h.bignum(&vec![1; (1 << 16) - 1], false);
    assert_eq!(measure(&h, max).0, 1 << 16);
    let over = h.bignum(&vec![1; 1 << 16], true);
    assert_eq!(refused(&h, over), "bignum digit count out of range");
    // OTP 25 allowed up to 2^19 - 1 digits.
    assert_eq!(measure_with(&OTP_25, &h, over).0, (1 << 16) + 1);
}

#[test]
fn otp25_binaries_are_not_otp27_binaries_and_back() {
    let mut h = TestHeap::new();
    // A ProcBin header (0x160) is a HeapBits tag on 27 with the wrong size.
    let bin = h.off_heap_binary(1000);
    let proc_bin = h.proc_bin(bin, 1000, 0);
    assert_eq!(
        refused(&h, proc_bin),
        "heap binary size does not match its header"
    );
    // A 25 sub binary header (0xE8) is a BinRef tag on 27.
    let sub = h.sub_binary(proc_bin, 10, 0, 0, 0);
    assert_eq!(refused(&h, sub), "BinRef outside a sub-bitstring");
    // A 27 SubBits header (0x124) is a 25 heap binary whose size disagrees.
    let (s, _) = h.off_heap_bits(100);
    assert_eq!(
        refused_with(&OTP_25, &h, s),
        "heap binary size does not match its header"
    );
    // A FunRef header is a 25 match state.
    let fr = h.fun_ref(FUN_ENTRY);
    assert_eq!(refused_with(&OTP_25, &h, fr), "unexpected header tag");
    // 0x1C and 0x3C are free on 27.
    for tag in [0x1C, 0x3C] {
        let t = boxed_term(h.alloc(&[(1 << 6) | tag, 0]));
        assert_eq!(refused(&h, t), "unexpected header tag");
    }
}

#[test]
fn everything_else_keeps_its_otp25_words() {
    let mut h = TestHeap::new();
    let f = h.float(1.5);
    let r = h.ordinary_ref();
    let pr = h.pid_ref();
    let ep = h.external_pid();
    let eport = h.external_port();
    let er3 = h.external_ref(2);
    let er5 = h.external_ref(3);
    let big = h.bignum(&[0, 1], false);
    let l = h.list(&[small(1), small(2)]);
    let t = h.tuple(&[l, l, f]);
    let got: Vec<u128> = [f, r, pr, ep, eport, er3, er5, big, t]
        .iter()
        .map(|&x| measure(&h, x).0)
        .collect();
    assert_eq!(got, [2, 3, 4, 4, 4, 5, 6, 3, 4 + 8 + 2]);
    let heap_empty = h.tuple(&[]);
    assert_eq!(
        refused(&h, heap_empty),
        "empty tuple outside the literal area"
    );
}

#[test]
fn a_doubling_dag_of_sub_bits_and_funs_agrees_on_every_route() {
    let mut h = TestHeap::new();
    let (b, _) = h.off_heap_bits(300);
    let fun_ref = h.literal_fun_ref(FUN_ENTRY);
    let f = h.fun27(0, &[b], fun_ref, FUN_ENTRY);
    let dag = (0..20).fold(f, |t, _| h.tuple(&[t, t]));
    let (flat, found) = measure(&h, dag);
    // 2^20 paths to the fun: each copies fun (4), FunRef (3) and SubBits+BinRef (8).
    let leaves = 1u128 << 20;
    assert_eq!(flat, 3 * (leaves - 1) + leaves * (4 + 3 + 8));
    assert_eq!(found.shared_words, 3 * 20 + 4 + 8);
    assert_eq!(found.literal_words, 3);
    assert_eq!((found.off_heap_binaries, found.off_heap_bytes), (1, 300));
}

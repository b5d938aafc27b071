//! What a breakdown of a small term asks of the allocator: the benchmark's
//! small term (`{ok, [1, 2, 3], #{a => 1}, <<"abc">>}`, 20 words) is broken
//! down with a counting global allocator (this test binary's own). It counts
//! per thread: the test harness's own thread allocates while a test runs
//! (seen once under load on OTP 27's CI leg: "10 allocations").

mod heap;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use heap::*;
use term_walker::breakdown::{breakdown, Budget, Settings, Step};
use term_walker::layout::OTP_25;

struct Counting;

thread_local! {
    // A const-initialised Cell: reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: a thread being torn down has no counter any more.
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_small_terms_breakdown_allocates_only_its_answer_and_one_vector() {
    let mut h = TestHeap::new();
    let list = h.list(&[small(1), small(2), small(3)]);
    let keys = h.tuple(&[atom(1)]);
    let map = h.flatmap(keys, &[small(1)]);
    let bin = h.heap_binary(3);
    let root = h.tuple(&[atom(2), list, map, bin]);
    let settings = Settings::default();
    let before = allocations();
    let b = breakdown(&h, &OTP_25, root, &settings, &mut Budget::unlimited()).unwrap();
    let allocations = allocations() - before;
    assert_eq!(b.total.words, 20);
    let paths: Vec<&[Step]> = b.rows.iter().map(|r| r.path.as_slice()).collect();
    assert_eq!(
        paths,
        [
            &[Step::Elem(1), Step::List(0, 2)][..],
            &[Step::Elem(2)][..],
            &[Step::Elem(3)][..]
        ]
    );
    // The rows and their paths (one vector each) and the one vector the
    // search finds each place's children in; the tree pass's stack of open
    // objects (none here: the root's slots are closed at once), the
    // search's stacks, list runs, paths being built and re-read values stay
    // inline, and no value is read again.
    assert!(allocations <= 5, "{allocations} allocations");
}

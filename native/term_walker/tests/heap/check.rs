//! The assertions every rule test makes, for any release's layout.

use super::TestHeap;
use term_walker::layout::Layout;
use term_walker::{flat, flat_words, flat_words_dag, scan, term_size, Detail, Scan, Stop, Work};

/// Flat words by every route (plain, DAG, picked, term_size), which must
/// agree, and the scan (whose shared and literal words a size-only scan
/// must repeat).
pub fn measure(layout: &Layout, h: &TestHeap, term: u64) -> (u128, Scan) {
    let plain = flat_words(h, layout, term, u64::MAX, &mut Work::unlimited())
        .unwrap()
        .unwrap() as u128;
    let dag = flat_words_dag(h, layout, term, &mut Work::unlimited()).unwrap();
    let picked = flat(h, layout, term, 0, &mut Work::unlimited()).unwrap();
    let found = scan(h, layout, term, Detail::OffHeap, &mut Work::unlimited()).unwrap();
    let words_only = scan(h, layout, term, Detail::Words, &mut Work::unlimited()).unwrap();
    let both = term_size(h, layout, term, &mut Work::unlimited()).unwrap();
    assert_eq!(plain, dag, "plain and DAG flat sizes differ");
    assert_eq!(plain, picked);
    assert_eq!(both.flat_words, plain);
    assert_eq!(both.scan, found);
    assert_eq!(
        (words_only.shared_words, words_only.literal_words),
        (found.shared_words, found.literal_words)
    );
    (plain, found)
}

/// The reason a scan (and a flat walk, with the same reason) refuses the term.
pub fn refused(layout: &Layout, h: &TestHeap, term: u64) -> &'static str {
    let from_scan = match scan(h, layout, term, Detail::OffHeap, &mut Work::unlimited()) {
        Err(Stop::Layout(e)) => e.what,
        other => panic!("expected a layout error, got {other:?}"),
    };
    match flat_words(h, layout, term, u64::MAX, &mut Work::unlimited()) {
        Err(Stop::Layout(e)) => assert_eq!(e.what, from_scan),
        other => panic!("flat walk accepted a term the scan refused: {other:?}"),
    }
    from_scan
}

/// The reason a walk that reads off-heap `Binary`s refuses the term, which
/// size-only walks (that never read that memory) accept.
pub fn refused_off_heap(layout: &Layout, h: &TestHeap, term: u64) -> &'static str {
    assert!(scan(h, layout, term, Detail::Words, &mut Work::unlimited()).is_ok());
    match term_size(h, layout, term, &mut Work::unlimited()) {
        Err(Stop::Layout(e)) => e.what,
        other => panic!("expected a layout error, got {other:?}"),
    }
}

//! The work allowance: words, and a deadline read at chunk boundaries.

mod heap;

use heap::*;
use term_walker::layout::OTP_25;
use term_walker::walk::{Deadline, CLOCK_CHECK_WORDS};
use term_walker::{flat_words, scan, Detail, Stop, Work};

/// A clock that never moves: with no time allowed, the walk stops at the
/// second reading; with any time allowed, never.
fn frozen() -> u64 {
    0
}

/// A list of `n` one-tuples: 4 words per element, an object on every word.
fn tuples(h: &mut TestHeap, n: usize) -> u64 {
    let items: Vec<u64> = (0..n as i64).map(|i| h.tuple(&[small(i)])).collect();
    h.list(&items)
}

#[test]
fn a_used_up_time_allowance_stops_the_walk_at_a_clock_check() {
    let mut h = TestHeap::new();
    let term = tuples(&mut h, 10_000);
    let gone = Deadline {
        now: frozen,
        after: 0,
    };
    let mut work = Work::unlimited().with_deadline(gone);
    assert_eq!(
        flat_words(&h, &OTP_25, term, u64::MAX, &mut work),
        Err(Stop::Budget)
    );
    let mut work = Work::unlimited().with_deadline(gone);
    assert_eq!(
        scan(&h, &OTP_25, term, Detail::Words, &mut work).map(|_| ()),
        Err(Stop::Budget)
    );
    // A term smaller than one chunk never reads the clock.
    let few = tuples(&mut h, (CLOCK_CHECK_WORDS / 8) as usize);
    let mut work = Work::unlimited().with_deadline(gone);
    assert!(flat_words(&h, &OTP_25, few, u64::MAX, &mut work).is_ok());
}

#[test]
fn a_deadline_that_does_not_pass_changes_nothing() {
    let mut h = TestHeap::new();
    let term = tuples(&mut h, 10_000);
    let far = Deadline {
        now: frozen,
        after: 1,
    };
    let mut work = Work::unlimited().with_deadline(far);
    assert_eq!(
        flat_words(&h, &OTP_25, term, u64::MAX, &mut work),
        Ok(Some(40_000))
    );
    let mut work = Work::unlimited().with_deadline(far);
    let found = scan(&h, &OTP_25, term, Detail::Words, &mut work).unwrap();
    assert_eq!(found.shared_words, 40_000);
}

#[test]
fn the_word_allowance_still_holds_across_chunks() {
    let mut h = TestHeap::new();
    let term = tuples(&mut h, 10_000);
    let far = Deadline {
        now: frozen,
        after: 1,
    };
    // 39,999 words allowed for a 40,000-word term, in chunks of 4096.
    let mut work = Work::limited(39_999).with_deadline(far);
    assert_eq!(
        flat_words(&h, &OTP_25, term, u64::MAX, &mut work),
        Err(Stop::Budget)
    );
    let mut work = Work::limited(40_000).with_deadline(far);
    assert_eq!(
        flat_words(&h, &OTP_25, term, u64::MAX, &mut work),
        Ok(Some(40_000))
    );
    // A path limit below the allowance is still a limit, not a budget stop.
    let mut work = Work::limited(40_000).with_deadline(far);
    assert_eq!(flat_words(&h, &OTP_25, term, 20_000, &mut work), Ok(None));
}

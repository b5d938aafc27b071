//! A set of visited object addresses, kept as bitmaps over 32 KiB pages.
//!
//! Objects of one term sit close together (a heap, a literal chunk), so a
//! walk touches few pages and almost every lookup hits the page it touched
//! last: a shift and a bit test, no hashing. Memory is one bit per heap word
//! of the pages touched, never written into the term itself.

use ahash::AHashMap;

use crate::walk::{reserve, reserve_map, Stop, Work};

const PAGE_SHIFT: u32 = 15;
const WORD_SHIFT: u32 = 3;
const BITS_PER_PAGE: usize = 1 << (PAGE_SHIFT - WORD_SHIFT);
type Page = [u64; BITS_PER_PAGE / 64];

pub struct VisitedSet {
    index: AHashMap<usize, usize>,
    pages: Vec<Page>,
    last_page: usize,
    last_slot: usize,
}

impl Default for VisitedSet {
    fn default() -> Self {
        Self::new()
    }
}

impl VisitedSet {
    pub fn new() -> Self {
        VisitedSet {
            index: AHashMap::new(),
            pages: Vec::new(),
            last_page: usize::MAX,
            last_slot: 0,
        }
    }

    /// Marks `addr`; returns `true` if it was not marked before. A new page
    /// is charged to `work` and may end the walk (never the VM).
    #[inline]
    pub fn insert(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        let page = addr >> PAGE_SHIFT;
        if page != self.last_page {
            self.switch_page(page, work)?;
        }
        let bit = (addr >> WORD_SHIFT) & (BITS_PER_PAGE - 1);
        let cell = &mut self.pages[self.last_slot][bit >> 6];
        let mask = 1u64 << (bit & 63);
        let fresh = *cell & mask == 0;
        *cell |= mask;
        Ok(fresh)
    }

    /// Whether `addr` is marked (no page is switched to).
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        let page = addr >> PAGE_SHIFT;
        let slot = if page == self.last_page {
            self.last_slot
        } else {
            match self.index.get(&page) {
                Some(&slot) => slot,
                None => return false,
            }
        };
        let bit = (addr >> WORD_SHIFT) & (BITS_PER_PAGE - 1);
        self.pages[slot][bit >> 6] & (1u64 << (bit & 63)) != 0
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    #[cold]
    fn switch_page(&mut self, page: usize, work: &mut Work) -> Result<(), Stop> {
        let next = self.pages.len();
        reserve_map(&mut *self.index, work)?;
        let slot = *self.index.entry(page).or_insert(next);
        if slot == next {
            reserve(&mut self.pages, work)?;
            self.pages.push([0; BITS_PER_PAGE / 64]);
        }
        self.last_page = page;
        self.last_slot = slot;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_each_address_once_across_pages() {
        let mut set = VisitedSet::new();
        let mut work = Work::unlimited();
        let addrs = [
            0x10000usize,
            0x10008,
            0x18000,
            0x10000,
            0x7fff_fff8,
            0x18000,
        ];
        let fresh: Vec<bool> = addrs
            .iter()
            .map(|&a| set.insert(a, &mut work).unwrap())
            .collect();
        assert_eq!(fresh, [true, true, true, false, true, false]);
        assert!(set.contains(0x10008) && set.contains(0x7fff_fff8));
        assert!(!set.contains(0x10010) && !set.contains(0x9000_0000));
    }

    #[test]
    fn a_new_page_past_the_memory_limit_ends_the_walk() {
        let mut set = VisitedSet::new();
        // Room for the page index, not for a 512-byte page.
        let mut work = Work::unlimited().with_memory_limit(16 * 17);
        assert_eq!(set.insert(0x10000, &mut work), Err(Stop::OutOfMemory));
        let mut work = Work::unlimited().with_memory_limit(1 << 20);
        assert_eq!(set.insert(0x10000, &mut work), Ok(true));
    }
}

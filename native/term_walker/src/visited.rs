//! A set of visited object addresses: the first few in a small array
//! searched linearly (a small term's scan allocates nothing and sets up no
//! table), then as bitmaps over 32 KiB pages.
//!
//! Objects of one term sit close together (a heap, a literal chunk), so a
//! walk touches few pages and almost every lookup hits the page it touched
//! last: a shift and a bit test, no hashing. Memory is one bit per heap word
//! of the pages touched, never written into the term itself.

use std::collections::HashMap;

use ahash::RandomState;

use crate::walk::{reserve, reserve_map, Stop, Work};

/// The hasher of the walks' tables. Their keys are addresses (pages, objects),
/// which no caller chooses, so fixed seeds do: a per-table random seed cost a
/// small walk more than its hashing.
pub(crate) const fn fixed_hasher() -> RandomState {
    RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    )
}

const PAGE_SHIFT: u32 = 15;
const WORD_SHIFT: u32 = 3;
const BITS_PER_PAGE: usize = 1 << (PAGE_SHIFT - WORD_SHIFT);
type Page = [u64; BITS_PER_PAGE / 64];

/// Addresses kept in the array before the set moves to pages.
const FEW: usize = 24;

pub struct VisitedSet {
    /// The first addresses marked, while `paged` is `None`.
    few: [usize; FEW],
    few_len: usize,
    /// The bitmaps, made when the array is full: a small scan never pays
    /// for their tables (setting them up cost a small term's scan more than
    /// its walk).
    paged: Option<Box<Paged>>,
}

/// The bitmaps over pages, and the tables that find them.
struct Paged {
    index: HashMap<usize, usize, RandomState>,
    pages: Vec<Page>,
    /// (page, slot) of pages met lately, by the page's low bits: a walk
    /// goes back and forth between a few pages (list cells in one place,
    /// the objects they hold in another), and each finds its slot here in
    /// one compare, without the index.
    recent: [(usize, usize); RECENT],
    /// For each entry of `recent`, the page it held before.
    older: [(usize, usize); RECENT],
}

/// Entries of [`Paged::recent`] (a power of two).
const RECENT: usize = 16;

impl Default for VisitedSet {
    fn default() -> Self {
        Self::new()
    }
}

impl VisitedSet {
    #[inline(always)]
    pub fn new() -> Self {
        VisitedSet {
            few: [0; FEW],
            few_len: 0,
            paged: None,
        }
    }

    /// Marks `addr`; returns `true` if it was not marked before. A new page
    /// is charged to `work` and may end the walk (never the VM).
    ///
    /// Inline: one compare against the recent-page table and a bit test.
    /// While the set is still the array, it is looked at out of line.
    #[inline(always)]
    pub fn insert(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        match &mut self.paged {
            Some(paged) => {
                let page = addr >> PAGE_SHIFT;
                let (recent_page, recent_slot) = paged.recent[page & (RECENT - 1)];
                if recent_page == page {
                    return Ok(paged.mark(recent_slot, addr));
                }
                paged.insert_elsewhere(addr, work)
            }
            None => self.insert_few(addr, work),
        }
    }

    /// [`VisitedSet::insert`] while the set is the array.
    #[inline(never)]
    fn insert_few(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        if self.few[..self.few_len].contains(&addr) {
            return Ok(false);
        }
        if self.few_len < FEW {
            self.few[self.few_len] = addr;
            self.few_len += 1;
            return Ok(true);
        }
        let paged = self.move_to_pages(work)?;
        paged.insert_elsewhere(addr, work)
    }

    /// Whether `addr` is marked (no page is switched to).
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        let Some(paged) = &self.paged else {
            return self.few[..self.few_len].contains(&addr);
        };
        let page = addr >> PAGE_SHIFT;
        let (recent_page, recent_slot) = paged.recent[page & (RECENT - 1)];
        let slot = if page == recent_page {
            recent_slot
        } else {
            match paged.index.get(&page) {
                Some(&slot) => slot,
                None => return false,
            }
        };
        let bit = (addr >> WORD_SHIFT) & (BITS_PER_PAGE - 1);
        paged.pages[slot][bit >> 6] & (1u64 << (bit & 63)) != 0
    }

    /// Bytes of its pages and their tables (the inline array aside).
    pub fn bytes(&self) -> usize {
        self.paged.as_ref().map_or(0, |paged| {
            std::mem::size_of::<Paged>()
                + paged.pages.len() * std::mem::size_of::<Page>()
                + paged.index.len() * (2 * std::mem::size_of::<usize>() + 1)
        })
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        self.few_len == 0 && self.paged.is_none()
    }

    /// The array is full: its addresses go to pages, which keep every
    /// address from now on.
    #[cold]
    fn move_to_pages(&mut self, work: &mut Work) -> Result<&mut Paged, Stop> {
        work.allocate(std::mem::size_of::<Paged>())?;
        let paged = self.paged.insert(Box::new(Paged {
            index: HashMap::with_hasher(fixed_hasher()),
            pages: Vec::new(),
            // No page is recent: the table holds a page no address has.
            recent: [(usize::MAX, 0); RECENT],
            older: [(usize::MAX, 0); RECENT],
        }));
        for &addr in &self.few[..self.few_len] {
            let slot = paged.slot(addr >> PAGE_SHIFT, work)?;
            paged.mark(slot, addr);
        }
        self.few_len = 0;
        Ok(paged)
    }
}

impl Paged {
    /// [`VisitedSet::insert`] off the recent pages.
    #[inline(never)]
    fn insert_elsewhere(&mut self, addr: usize, work: &mut Work) -> Result<bool, Stop> {
        let slot = self.slot(addr >> PAGE_SHIFT, work)?;
        Ok(self.mark(slot, addr))
    }

    /// Sets `addr`'s bit in the page at `slot`; whether it was clear.
    #[inline(always)]
    fn mark(&mut self, slot: usize, addr: usize) -> bool {
        let bit = (addr >> WORD_SHIFT) & (BITS_PER_PAGE - 1);
        let cell = &mut self.pages[slot][bit >> 6];
        let mask = 1u64 << (bit & 63);
        let fresh = *cell & mask == 0;
        *cell |= mask;
        fresh
    }

    /// The slot of `page`'s bitmap, made when new.
    #[inline(always)]
    fn slot(&mut self, page: usize, work: &mut Work) -> Result<usize, Stop> {
        let set = page & (RECENT - 1);
        let (recent_page, recent_slot) = self.recent[set];
        if recent_page == page {
            return Ok(recent_slot);
        }
        // The page met before the last one in this entry: the two swap, so
        // a walk going back and forth between two pages that share an entry
        // (a literal and the heap, say) never looks in the index.
        let (older_page, older_slot) = self.older[set];
        if older_page == page {
            self.older[set] = (recent_page, recent_slot);
            self.recent[set] = (page, older_slot);
            return Ok(older_slot);
        }
        self.switch_page(page, work)
    }

    #[cold]
    fn switch_page(&mut self, page: usize, work: &mut Work) -> Result<usize, Stop> {
        let next = self.pages.len();
        reserve_map(&mut self.index, work)?;
        let slot = *self.index.entry(page).or_insert(next);
        if slot == next {
            reserve(&mut self.pages, work)?;
            self.pages.push([0; BITS_PER_PAGE / 64]);
        }
        let set = page & (RECENT - 1);
        self.older[set] = self.recent[set];
        self.recent[set] = (page, slot);
        Ok(slot)
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
    fn the_first_addresses_need_no_page_and_move_to_pages_when_many() {
        let mut set = VisitedSet::new();
        // No memory at all: the array takes the first FEW addresses.
        let mut work = Work::unlimited().with_memory_limit(0);
        for i in 0..FEW {
            assert_eq!(set.insert(0x10000 + i * 0x9008, &mut work), Ok(true));
            assert_eq!(set.insert(0x10000 + i * 0x9008, &mut work), Ok(false));
        }
        assert!(set.contains(0x10000) && !set.contains(0x10008) && !set.is_empty());
        // One more needs pages, which the allowance refuses.
        assert_eq!(set.insert(0x8, &mut work), Err(Stop::OutOfMemory));
        // With memory, every address marked before is still marked after the move.
        let mut set = VisitedSet::new();
        let mut work = Work::unlimited();
        let addrs: Vec<usize> = (0..3 * FEW).map(|i| 0x10000 + i * 0x9008).collect();
        for &a in &addrs {
            assert_eq!(set.insert(a, &mut work), Ok(true));
        }
        for &a in &addrs {
            assert!(set.contains(a));
            assert_eq!(set.insert(a, &mut work), Ok(false));
            assert!(!set.contains(a + 8));
        }
    }

    #[test]
    fn a_new_page_past_the_memory_limit_ends_the_walk() {
        let mut set = VisitedSet::new();
        for i in 0..FEW {
            set.insert(0x100000 + i * 8, &mut Work::unlimited())
                .unwrap();
        }
        // Room for the tables and the page index, not for a 512-byte page.
        let mut work =
            Work::unlimited().with_memory_limit(std::mem::size_of::<Paged>() as u64 + 16 * 17);
        assert_eq!(set.insert(0x10000, &mut work), Err(Stop::OutOfMemory));
        let mut set = VisitedSet::new();
        for i in 0..FEW {
            set.insert(0x100000 + i * 8, &mut Work::unlimited())
                .unwrap();
        }
        let mut work = Work::unlimited().with_memory_limit(1 << 20);
        assert_eq!(set.insert(0x10000, &mut work), Ok(true));
    }
}

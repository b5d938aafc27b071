//! Finding the literal area when the emulator does not export its bounds.
//!
//! OTP 25 and 27 export `erts_literals_start` / `erts_literals_size` from
//! `beam.smp`; Debian's OTP 29 exports only the NIF API. What stays visible:
//!
//! * `erlang:system_info({allocator, erts_mmap})` gives the literal super
//!   carrier's size (`scs`) and how much of it is in use, from the bottom
//!   (`total_sa`, super-aligned carriers) and from the top (`total_sua`);
//! * `/proc/self/maps`: the super carrier is one reservation; its unused
//!   middle is a `---p` mapping (no access, private, anonymous). The used
//!   bottom usually merges with a neighbouring `rw-p` mapping, so the start
//!   cannot be read off the maps, but the end can: the unused middle ends
//!   `total_sua` bytes below the end of the area, and the area starts `scs`
//!   bytes below its end.
//!
//! Every candidate is then proven with addresses the caller knows: module
//! constants and `persistent_term` values must lie in the used parts, fresh
//! heap terms outside, and the whole range must be mapped. Exactly one
//! candidate must pass; anything else is a refusal, and the walker stays off.

/// One line of `/proc/self/maps`: an address range and its permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    /// `---p` with no file: reserved address space, as the unused part of a
    /// super carrier is.
    pub reserved: bool,
}

/// Parses the text of `/proc/self/maps`; lines it cannot read are skipped
/// (they can only remove candidates, never add a wrong one).
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let _offset = fields.next()?;
            let _device = fields.next()?;
            let inode = fields.next()?;
            let path = fields.next();
            (start < end).then_some(Mapping {
                start,
                end,
                readable: perms.starts_with('r'),
                reserved: perms == "---p" && inode == "0" && path.is_none(),
            })
        })
        .collect()
}

/// What `erlang:system_info({allocator, erts_mmap})` says of the literal
/// super carrier (`literal_mmap`), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiteralCarrier {
    /// `scs`: the size of the literal area.
    pub size: usize,
    /// `total_sa`: in use from the bottom.
    pub used_bottom: usize,
    /// `total_sua`: in use from the top.
    pub used_top: usize,
}

/// An address range `[start, start + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub size: usize,
}

impl Range {
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.start) < self.size
    }

    fn end(&self) -> Option<usize> {
        self.start.checked_add(self.size)
    }
}

/// Why no range was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No reserved mapping fits the carrier's sizes.
    NoCandidate,
    /// Candidates fit, but none holds every known literal and no heap term.
    ProbesDisagree,
    /// More than one candidate passed: the maps do not say which.
    Ambiguous,
    /// Nothing to prove a candidate with.
    NoProbes,
}

impl Refusal {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::NoCandidate => "no_reserved_mapping_fits",
            Refusal::ProbesDisagree => "probes_disagree",
            Refusal::Ambiguous => "ambiguous",
            Refusal::NoProbes => "no_probes",
        }
    }
}

/// The literal area, from the maps, the carrier's sizes and known addresses:
/// `literals` must lie in its used parts, `heap` outside it.
pub fn locate(
    maps: &[Mapping],
    carrier: &LiteralCarrier,
    literals: &[usize],
    heap: &[usize],
) -> Result<Range, Refusal> {
    if literals.is_empty() || heap.is_empty() {
        return Err(Refusal::NoProbes);
    }
    let used_both = carrier.used_bottom.checked_add(carrier.used_top);
    if carrier.size == 0 || used_both.is_none_or(|used| used >= carrier.size) {
        return Err(Refusal::NoCandidate);
    }
    let candidates: Vec<Range> = maps
        .iter()
        .filter(|m| m.reserved)
        .filter_map(|m| {
            let end = m.end.checked_add(carrier.used_top)?;
            let start = end.checked_sub(carrier.size)?;
            // The unused middle starts at or below the top of the used
            // bottom (lower when its topmost carrier was freed).
            let middle_ok =
                m.start >= start && m.start <= start.checked_add(carrier.used_bottom)?;
            (middle_ok && start % 4096 == 0).then_some(Range {
                start,
                size: carrier.size,
            })
        })
        .collect();
    if candidates.is_empty() {
        return Err(Refusal::NoCandidate);
    }
    let proven: Vec<Range> = candidates
        .into_iter()
        .filter(|range| proves(range, maps, carrier, literals, heap))
        .collect();
    match proven.as_slice() {
        [range] => Ok(*range),
        [] => Err(Refusal::ProbesDisagree),
        _ => Err(Refusal::Ambiguous),
    }
}

fn proves(
    range: &Range,
    maps: &[Mapping],
    carrier: &LiteralCarrier,
    literals: &[usize],
    heap: &[usize],
) -> bool {
    let Some(end) = range.end() else {
        return false;
    };
    let used_bottom = Range {
        start: range.start,
        size: carrier.used_bottom,
    };
    let used_top = Range {
        start: end - carrier.used_top,
        size: carrier.used_top,
    };
    literals
        .iter()
        .all(|&a| used_bottom.contains(a) || used_top.contains(a))
        && heap.iter().all(|&a| !range.contains(a))
        && covered(range.start, end, maps)
}

/// Whether `[start, end)` is mapped without a gap (the super carrier is one
/// reservation).
fn covered(start: usize, end: usize, maps: &[Mapping]) -> bool {
    let mut sorted: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.end > start && m.start < end)
        .collect();
    sorted.sort_by_key(|m| m.start);
    let mut reached = start;
    for m in sorted {
        if m.start > reached {
            return false;
        }
        reached = reached.max(m.end);
        if reached >= end {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // The maps around OTP 29.1.2's literal area on this machine (trimmed):
    // the used bottom merged with an rw-p mapping below it, the unused rest
    // reserved up to the end.
    const MAPS_29: &str = "\
7f4375622000-7f4375df8000 rw-p 00000000 00:00 0
7f4375df8000-7f43b5a00000 ---p 00000000 00:00 0
7f43b5a1e000-7f43b5a44000 r--p 00000000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f43b5c00000-7f43b5c01000 ---p 00000000 00:00 0
7f43b5c01000-7f43b5d00000 rw-p 00000000 00:00 0
";
    const CARRIER_29: LiteralCarrier = LiteralCarrier {
        size: 1_073_676_288,
        used_bottom: 4_096_000,
        used_top: 0,
    };
    const START_29: usize = 0x7F43_75A1_0000;

    #[test]
    fn parses_permissions_and_reservations() {
        let maps = parse_maps(MAPS_29);
        assert_eq!(maps.len(), 5);
        assert!(maps[0].readable && !maps[0].reserved);
        assert!(!maps[1].readable && maps[1].reserved);
        assert!(maps[2].readable && !maps[2].reserved);
        assert_eq!(parse_maps("garbage\n\n1-0 rw-p 0 0 0"), vec![]);
    }

    #[test]
    fn finds_the_area_that_holds_every_literal_and_no_heap_term() {
        let maps = parse_maps(MAPS_29);
        let literals = [START_29 + 0x100, START_29 + 4_095_000];
        let heap = [0x7F43_7562_2008, 0x7F43_B5C0_1008];
        let range = locate(&maps, &CARRIER_29, &literals, &heap).unwrap();
        assert_eq!(
            range,
            Range {
                start: START_29,
                size: CARRIER_29.size
            }
        );
    }

    #[test]
    fn refuses_when_a_probe_disagrees() {
        let maps = parse_maps(MAPS_29);
        // A "literal" in the unused middle, or below the area.
        for literal in [START_29 + 8_000_000, START_29 - 8] {
            assert_eq!(
                locate(&maps, &CARRIER_29, &[literal], &[0x1000]),
                Err(Refusal::ProbesDisagree)
            );
        }
        // A heap term inside.
        assert_eq!(
            locate(&maps, &CARRIER_29, &[START_29 + 8], &[START_29 + 16]),
            Err(Refusal::ProbesDisagree)
        );
        assert_eq!(
            locate(&maps, &CARRIER_29, &[], &[0x1000]),
            Err(Refusal::NoProbes)
        );
    }

    #[test]
    fn refuses_when_no_reservation_fits_the_sizes() {
        let maps = parse_maps(MAPS_29);
        let bigger = LiteralCarrier {
            used_bottom: 1 << 20,
            ..CARRIER_29
        };
        assert_eq!(
            locate(&maps, &bigger, &[START_29 + 8], &[0x1000]),
            Err(Refusal::NoCandidate)
        );
        let nothing = LiteralCarrier {
            size: 0,
            ..CARRIER_29
        };
        assert_eq!(
            locate(&maps, &nothing, &[START_29 + 8], &[0x1000]),
            Err(Refusal::NoCandidate)
        );
    }

    #[test]
    fn refuses_a_range_with_a_hole() {
        // The same area with its bottom unmapped: not one reservation.
        let holed = MAPS_29.replace("7f4375622000-7f4375df8000", "7f4375b00000-7f4375df8000");
        let maps = parse_maps(&holed);
        assert_eq!(
            locate(&maps, &CARRIER_29, &[START_29 + 0x200000], &[0x1000]),
            Err(Refusal::ProbesDisagree)
        );
    }

    #[test]
    fn a_carrier_used_from_the_top_ends_above_the_reservation() {
        let text = "\
10000000-10400000 rw-p 00000000 00:00 0
10400000-4fe00000 ---p 00000000 00:00 0
4fe00000-50000000 rw-p 00000000 00:00 0
";
        let carrier = LiteralCarrier {
            size: 0x4000_0000,
            used_bottom: 0x40_0000,
            used_top: 0x20_0000,
        };
        let range = locate(
            &parse_maps(text),
            &carrier,
            &[0x1000_0008, 0x4FF0_0000],
            &[0x8],
        )
        .unwrap();
        assert_eq!(
            range,
            Range {
                start: 0x1000_0000,
                size: 0x4000_0000
            }
        );
    }
}

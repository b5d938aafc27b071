//! How fast the walks go over a synthetic OTP 25 heap, against a loop that
//! trusts every word (what `erts_debug:flat_size/1` does: no checks), in the
//! thread's CPU time, so other load on the machine moves it less.
//!
//!   cargo run --release --example walk_speed

use term_walker::decode::LayoutError;
use term_walker::layout::OTP_25;
use term_walker::{flat_words, scan, term_size, Detail, Memory, Work};

const BASE: usize = 0x0010_0000;
const NIL: u64 = 0x3B;

/// One heap region; reads outside it are errors (one compare per read).
struct Heap {
    words: Vec<u64>,
}

impl Memory for Heap {
    #[inline(always)]
    fn word(&self, addr: usize) -> Result<u64, LayoutError> {
        self.words
            .get(addr.wrapping_sub(BASE) >> 3)
            .copied()
            .ok_or(LayoutError::new("outside", addr, 0))
    }
    fn is_literal(&self, _addr: usize) -> bool {
        false
    }
}

impl Heap {
    fn alloc(&mut self, words: &[u64]) -> usize {
        let addr = BASE + self.words.len() * 8;
        self.words.extend_from_slice(words);
        addr
    }
    fn tuple(&mut self, items: &[u64]) -> u64 {
        let mut w = vec![(items.len() as u64) << 6];
        w.extend_from_slice(items);
        self.alloc(&w) as u64 | 2
    }
    fn cons(&mut self, head: u64, tail: u64) -> u64 {
        self.alloc(&[head, tail]) as u64 | 1
    }
    fn list(&mut self, items: &[u64]) -> u64 {
        let mut tail = NIL;
        for &item in items.iter().rev() {
            tail = self.cons(item, tail);
        }
        tail
    }
    fn flatmap(&mut self, keys: u64, values: &[u64]) -> u64 {
        let mut w = vec![0x13C, values.len() as u64, keys];
        w.extend_from_slice(values);
        self.alloc(&w) as u64 | 2
    }
    fn heap_binary(&mut self, bytes: u64) -> u64 {
        let data = bytes.div_ceil(8);
        let mut w = vec![((1 + data) << 6) | 0x24, bytes];
        w.extend(std::iter::repeat_n(0xAB, data as usize));
        self.alloc(&w) as u64 | 2
    }
    /// A ProcBin over a new 100-byte off-heap `Binary` (header words:
    /// flags, refc, orig_size; then the data).
    fn refc_binary(&mut self) -> u64 {
        let binary = self.alloc(&[0, 1, 100]);
        self.alloc(&[0; 13]);
        self.alloc(&[0x160, 100, 0, binary as u64, binary as u64 + 24, 0]) as u64 | 2
    }
    fn hashmap_node(&mut self, bitmap: u64, children: &[u64]) -> u64 {
        let mut w = vec![(bitmap << 16) | (1 << 6) | 0x3C];
        w.extend_from_slice(children);
        self.alloc(&w) as u64 | 2
    }
    fn hashmap_head(&mut self, size: u64, children: &[u64]) -> u64 {
        let mut w = vec![(0xFFFF << 16) | (1 << 8) | (2 << 6) | 0x3C, size];
        w.extend_from_slice(children);
        self.alloc(&w) as u64 | 2
    }
    /// A hashmap of 16^levels * 3 keys; each leaf `[K | V]` of small integers.
    fn hashmap(&mut self, levels: u32) -> u64 {
        let mut next = 0;
        let mut nodes: Vec<u64> = (0..16u64.pow(levels))
            .map(|_| {
                let leaves: Vec<u64> = (0..3)
                    .map(|_| {
                        next += 1;
                        self.cons(small(next), small(next))
                    })
                    .collect();
                self.hashmap_node(0b111, &leaves)
            })
            .collect();
        while nodes.len() > 16 {
            nodes = nodes
                .chunks(16)
                .map(|c| self.hashmap_node(0xFFFF, c))
                .collect();
        }
        self.hashmap_head(next, &nodes)
    }
    fn float(&mut self) -> u64 {
        self.alloc(&[0x58, 0]) as u64 | 2
    }
}

fn small(i: u64) -> u64 {
    (i << 4) | 0xF
}

/// Flat words as the VM's size_object loop counts them, trusting the heap
/// (tuples, conses, flatmaps, heap binaries and floats only).
fn trusting(h: &Heap, root: u64) -> u64 {
    let w = |a: u64| h.words[((a & !7) as usize - BASE) >> 3];
    let mut stack = vec![root];
    let mut sum = 0;
    while let Some(mut t) = stack.pop() {
        loop {
            match t & 3 {
                1 => {
                    sum += 2;
                    let head = w(t);
                    let tail = w((t & !7) + 8);
                    if head & 3 != 3 {
                        stack.push(head);
                    }
                    t = tail;
                    if t & 3 == 3 {
                        break;
                    }
                }
                2 => {
                    let hdr = w(t);
                    let n = hdr >> 6;
                    let base = t & !7;
                    match hdr & 0x3F {
                        0 => {
                            sum += n + 1;
                            for i in 1..=n {
                                let c = w(base + i * 8);
                                if c & 3 != 3 {
                                    stack.push(c);
                                }
                            }
                        }
                        0x3C if (hdr >> 6) & 3 != 0 => {
                            let n = ((hdr >> 16) & 0xFFFF).count_ones() as u64;
                            let skip = (hdr >> 8) & 0xFF;
                            sum += 1 + skip + n;
                            for i in 1 + skip..1 + skip + n {
                                let c = w(base + i * 8);
                                if c & 3 != 3 {
                                    stack.push(c);
                                }
                            }
                        }
                        0x3C => {
                            let k = w(base + 8);
                            sum += 3 + k;
                            for i in 2..3 + k {
                                let c = w(base + i * 8);
                                if c & 3 != 3 {
                                    stack.push(c);
                                }
                            }
                        }
                        _ => sum += n + 1,
                    }
                    break;
                }
                _ => break,
            }
        }
    }
    sum
}

fn cpu_ns() -> u64 {
    let mut t = libc_timespec::default();
    // SAFETY: writes one timespec we own.
    unsafe { clock_gettime(3, &mut t) };
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

#[repr(C)]
#[derive(Default)]
struct libc_timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, t: *mut libc_timespec) -> i32;
}

fn best<F: FnMut() -> u64>(mut f: F) -> (f64, u64) {
    let mut best = u64::MAX;
    let mut out = 0;
    // WALK_SPEED_RUNS=N times N runs (more samples for a profile).
    let runs = std::env::var("WALK_SPEED_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(15);
    for _ in 0..runs {
        let t0 = cpu_ns();
        out = std::hint::black_box(f());
        best = best.min(cpu_ns() - t0);
    }
    (best as f64 / 1000.0, out)
}

fn main() {
    let mut workloads: Vec<(&str, Heap, u64)> = Vec::new();
    {
        let mut h = Heap { words: Vec::new() };
        let items: Vec<u64> = (0..2_000_000).map(small).collect();
        let t = h.list(&items);
        workloads.push(("2M list", h, t));
    }
    {
        let mut h = Heap { words: Vec::new() };
        let items: Vec<u64> = (0..100_000)
            .map(|i| h.tuple(&[small(i), small(i + 1), 0x4B]))
            .collect();
        let t = h.list(&items);
        workloads.push(("100k 3-tuples", h, t));
    }
    {
        let mut h = Heap { words: Vec::new() };
        let keys = h.tuple(&[0x8B, 0xCB]);
        let items: Vec<u64> = (0..10_000)
            .map(|i| {
                let name = h.heap_binary(10);
                let tag = h.heap_binary(2);
                let m = h.flatmap(keys, &[small(i), tag]);
                let f = h.float();
                h.tuple(&[0x4B, name, m, f])
            })
            .collect();
        let t = h.list(&items);
        workloads.push(("10k records", h, t));
    }
    {
        let mut h = Heap { words: Vec::new() };
        let items: Vec<u64> = (0..10_000)
            .map(|i| {
                let ks: Vec<u64> = (1..=10).map(small).collect();
                let keys = h.tuple(&ks);
                let vs: Vec<u64> = (0..10).map(|_| small(i)).collect();
                h.flatmap(keys, &vs)
            })
            .collect();
        let t = h.list(&items);
        workloads.push(("10k flatmaps", h, t));
    }
    {
        let mut h = Heap { words: Vec::new() };
        let items: Vec<u64> = (0..50_000)
            .map(|i| {
                let l = h.list(&[small(i), small(i)]);
                h.tuple(&[small(i), l])
            })
            .collect();
        let t = h.list(&items);
        workloads.push(("mid-size", h, t));
    }
    {
        let mut h = Heap { words: Vec::new() };
        let items: Vec<u64> = (0..50_000).map(|_| h.refc_binary()).collect();
        let t = h.list(&items);
        workloads.push(("50k refc bins", h, t));
    }
    // `walk_speed NAME` times only the workloads whose name contains NAME
    // (to profile one).
    let only = std::env::args().nth(1).unwrap_or_default();
    {
        let mut h = Heap { words: Vec::new() };
        let t = h.hashmap(4);
        workloads.push(("196k-key hashmap", h, t));
    }
    {
        // A small term, {ok, [1, 2, 3], #{a => 1}, <<"abc">>}, sized 10,000
        // times per timing (its fixed per-walk cost is what shows).
        let mut h = Heap { words: Vec::new() };
        let l = h.list(&[small(1), small(2), small(3)]);
        let keys = h.tuple(&[0x8B]);
        let m = h.flatmap(keys, &[small(1)]);
        let b = h.heap_binary(3);
        let t = h.tuple(&[0x4B, l, m, b]);
        workloads.push(("small x10000", h, t));
    }
    let repeat = |name: &str| if name.starts_with("small") { 10_000 } else { 1 };
    println!("workload          trusting µs   flat µs (x)        scan µs (x)   term_size µs (x)");
    for (name, h, t) in workloads.iter().filter(|(name, _, _)| name.contains(&only)) {
        let n = repeat(name);
        let times = |f: &dyn Fn() -> u64| (0..n).map(|_| f()).last().unwrap_or(0);
        let (tr, words) = best(|| times(&|| trusting(h, std::hint::black_box(*t))));
        let (fl, fw) = best(|| {
            times(&|| {
                flat_words(
                    h,
                    &OTP_25,
                    std::hint::black_box(*t),
                    u64::MAX,
                    &mut Work::unlimited(),
                )
                .unwrap()
                .unwrap()
            })
        });
        let (sc, sw) = best(|| {
            times(&|| {
                scan(
                    h,
                    &OTP_25,
                    std::hint::black_box(*t),
                    Detail::Words,
                    &mut Work::unlimited(),
                )
                .unwrap()
                .shared_words
            })
        });
        let (ts, tw) = best(|| {
            times(&|| {
                term_size(h, &OTP_25, std::hint::black_box(*t), &mut Work::unlimited())
                    .unwrap()
                    .scan
                    .shared_words
            })
        });
        assert_eq!(fw, words);
        assert!(sw <= words && tw == sw);
        println!(
            "{name:<16} {tr:>10.0}   {fl:>8.0} ({:.2}x)   {sc:>8.0} ({:.2}x)   {ts:>8.0} ({:.2}x)",
            fl / tr,
            sc / tr,
            ts / tr
        );
    }
}

//! Retained sizes by dominators, on synthetic OTP 25 heaps: each case is
//! checked against sizes worked out by hand or by a brute-force dominator
//! computation over the same graph.

mod heap;

use std::collections::{HashMap, HashSet};

use heap::*;
use term_walker::breakdown::{
    breakdown, Breakdown, Budget, Retained, RowKind, Settings, Step, TOO_MANY_OBJECTS,
};
use term_walker::layout::OTP_25;
use term_walker::{term_size, Stop, Work};

/// Every position above zero bytes, not only accumulation points.
fn every_position() -> Settings {
    Settings {
        min_share: 0.0,
        max_rows: usize::MAX,
        max_depth: 1000,
        max_objects: usize::MAX,
        accumulation_only: false,
    }
}

fn run(h: &TestHeap, term: u64, settings: &Settings) -> Breakdown {
    breakdown(h, &OTP_25, term, settings, &mut Budget::unlimited()).unwrap()
}

/// The same answer by the graph and its dominators, the pass that needs no
/// tree: what the tree pass must agree with.
fn run_by_graph(h: &TestHeap, term: u64, settings: &Settings) -> Breakdown {
    term_walker::breakdown::breakdown_by_graph(h, &OTP_25, term, settings, &mut Budget::unlimited())
        .unwrap()
}

fn positions(b: &Breakdown) -> HashMap<Vec<Step>, Retained> {
    b.rows
        .iter()
        .map(|r| (r.path.clone(), r.retained))
        .collect()
}

fn words(w: u64) -> Retained {
    Retained {
        words: w,
        off_heap_bytes: 0,
        objects: 0,
    }
}

/// The root retains what `term_size` reports.
fn assert_total_matches_term_size(h: &TestHeap, term: u64, b: &Breakdown) {
    let size = term_size(h, &OTP_25, term, &mut Work::unlimited()).unwrap();
    assert_eq!(b.total.words, size.scan.shared_words);
    assert_eq!(b.total.off_heap_bytes, size.scan.off_heap_bytes);
    assert_eq!(b.off_heap_binaries, size.scan.off_heap_binaries);
    assert_eq!(b.literal_words, size.scan.literal_words);
}

#[test]
fn unshared_children_retain_their_own_size() {
    let mut h = TestHeap::new();
    let a = h.tuple(&[small(1), small(2), small(3)]);
    let l = h.list(&[small(1), small(2), small(3)]);
    let root = h.tuple(&[a, l, atom(1)]);
    let b = run(&h, root, &every_position());
    assert_eq!(b.total.words, 4 + 4 + 6);
    assert_eq!(b.total.objects, 5);
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Elem(0)]].words, 4);
    assert_eq!(p[&vec![Step::Elem(1)]].words, 6);
    // The list's one run of elements holds all of it (its cons cells).
    assert_eq!(p[&vec![Step::Elem(1), Step::List(0, 2)]].words, 6);
    assert_eq!(p.len(), 3, "{:?}", b.rows);
    assert_total_matches_term_size(&h, root, &b);
}

#[test]
fn a_shared_subterm_is_charged_to_the_common_parent() {
    let mut h = TestHeap::new();
    let shared = h.tuple(&[small(1), small(2), small(3), small(4), small(5)]);
    let a = h.tuple(&[shared]);
    let b2 = h.tuple(&[shared, small(0)]);
    let root = h.tuple(&[a, b2]);
    let b = run(&h, root, &every_position());
    let p = positions(&b);
    assert_eq!(b.total.words, 3 + 2 + 3 + 6);
    // Neither field retains the shared tuple; the root does.
    assert_eq!(
        p[&vec![Step::Elem(0)]],
        Retained {
            objects: 1,
            ..words(2)
        }
    );
    assert_eq!(
        p[&vec![Step::Elem(1)]],
        Retained {
            objects: 1,
            ..words(3)
        }
    );
    assert!(!p.contains_key(&vec![Step::Elem(0), Step::Elem(0)]));
    assert!(!p.contains_key(&vec![Step::Elem(1), Step::Elem(0)]));
    assert_total_matches_term_size(&h, root, &b);

    // Deeper: shared by two grandchildren of one child, it stays in that child.
    let mut h = TestHeap::new();
    let shared = h.tuple(&[small(1), small(2), small(3)]);
    let x = h.tuple(&[shared]);
    let y = h.tuple(&[shared]);
    let child = h.tuple(&[x, y]);
    let root = h.tuple(&[child, small(9)]);
    let p = positions(&run(&h, root, &every_position()));
    assert_eq!(p[&vec![Step::Elem(0)]].words, 3 + 2 + 2 + 4);
    assert_eq!(p[&vec![Step::Elem(0), Step::Elem(0)]].words, 2);
    assert_eq!(p[&vec![Step::Elem(0), Step::Elem(1)]].words, 2);
}

#[test]
fn the_same_subterm_twice_in_one_tuple_is_the_tuples() {
    let mut h = TestHeap::new();
    let x = h.tuple(&[small(1), small(2)]);
    let root = h.tuple(&[x, x]);
    let b = run(&h, root, &every_position());
    assert!(b.rows.is_empty(), "{:?}", b.rows);
    assert_eq!(b.total.words, 3 + 3);
}

/// A small DAG model: node k is a tuple of earlier nodes and immediates.
struct Dag {
    children: Vec<Vec<Option<usize>>>,
}

impl Dag {
    /// A deterministic pseudo-random DAG; the last node is the root and
    /// reaches every node.
    fn random(seed: u64, n: usize) -> Dag {
        let mut state = seed;
        let mut next = move |m: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % m
        };
        let mut children: Vec<Vec<Option<usize>>> = Vec::new();
        let mut referenced = vec![false; n];
        for k in 0..n - 1 {
            let arity = 1 + next(3);
            let mut row = Vec::new();
            for _ in 0..arity {
                if k == 0 || next(4) == 0 {
                    row.push(None);
                } else {
                    let c = next(k);
                    referenced[c] = true;
                    row.push(Some(c));
                }
            }
            children.push(row);
        }
        let roots: Vec<Option<usize>> = (0..n - 1).filter(|&k| !referenced[k]).map(Some).collect();
        children.push(roots);
        Dag { children }
    }

    /// Builds it on a heap; `reverse` lays each tuple's children out in the
    /// opposite order (a different walk order over the same graph).
    fn build(&self, h: &mut TestHeap, reverse: bool) -> Vec<u64> {
        let mut terms: Vec<u64> = Vec::new();
        for row in &self.children {
            let mut items: Vec<u64> = row
                .iter()
                .map(|c| c.map_or(small(7), |c| terms[c]))
                .collect();
            if reverse {
                items.reverse();
            }
            terms.push(h.tuple(&items));
        }
        terms
    }

    fn words(&self, k: usize) -> u64 {
        self.children[k].len() as u64 + 1
    }

    fn root(&self) -> usize {
        self.children.len() - 1
    }

    fn reachable_without(&self, removed: Option<usize>) -> HashSet<usize> {
        let mut seen = HashSet::new();
        let mut stack = vec![self.root()];
        while let Some(k) = stack.pop() {
            if Some(k) == removed || !seen.insert(k) {
                continue;
            }
            stack.extend(self.children[k].iter().flatten());
        }
        seen
    }

    /// Brute force: `v` retains every node that is unreachable once `v` is
    /// removed.
    fn retained_words(&self, v: usize) -> u64 {
        let all = self.reachable_without(None);
        let rest = self.reachable_without(Some(v));
        all.difference(&rest).map(|&k| self.words(k)).sum()
    }

    fn in_degree(&self, v: usize) -> usize {
        self.children
            .iter()
            .flatten()
            .flatten()
            .filter(|&&c| c == v)
            .count()
    }

    /// The node a path ends at (steps are tuple elements).
    fn at(&self, path: &[Step], reverse: bool) -> usize {
        let mut k = self.root();
        for step in path {
            let Step::Elem(i) = *step else {
                panic!("unexpected step {step:?}")
            };
            let row = &self.children[k];
            let i = if reverse {
                row.len() - 1 - i as usize
            } else {
                i as usize
            };
            k = row[i].expect("a position is never an immediate");
        }
        k
    }
}

#[test]
fn retained_sizes_equal_brute_force_dominators_in_any_walk_order() {
    for seed in 1..40 {
        let dag = Dag::random(seed, 40);
        let mut by_node: Vec<HashMap<usize, u64>> = Vec::new();
        for reverse in [false, true] {
            let mut h = TestHeap::new();
            let terms = dag.build(&mut h, reverse);
            let root = terms[dag.root()];
            let b = run(&h, root, &every_position());
            assert_eq!(b.total.words, dag.retained_words(dag.root()), "seed {seed}");
            assert_total_matches_term_size(&h, root, &b);
            let mut found = HashMap::new();
            for row in &b.rows {
                let v = dag.at(&row.path, reverse);
                assert_eq!(dag.in_degree(v), 1, "seed {seed}: shared node {v} is a row");
                assert_eq!(
                    row.retained.words,
                    dag.retained_words(v),
                    "seed {seed} node {v}"
                );
                found.insert(v, row.retained.words);
            }
            // Every node referenced once, from a node that is itself a
            // position (or the root), is a position.
            let expected = (0..dag.root())
                .filter(|&v| dag.in_degree(v) == 1)
                .filter(|&v| {
                    let mut path_ok = true;
                    let mut k = v;
                    while k != dag.root() {
                        let parents: Vec<usize> = (0..=dag.root())
                            .filter(|&p| dag.children[p].contains(&Some(k)))
                            .collect();
                        if parents.len() != 1 || dag.in_degree(k) != 1 {
                            path_ok = false;
                            break;
                        }
                        k = parents[0];
                    }
                    path_ok
                })
                .count();
            assert_eq!(found.len(), expected, "seed {seed}");
            by_node.push(found);
        }
        assert_eq!(
            by_node[0], by_node[1],
            "seed {seed}: walk order changed the answer"
        );
    }
}

#[test]
fn a_sub_binary_charges_the_whole_parent_where_it_is_pinned() {
    let mut h = TestHeap::new();
    let binary = h.off_heap_binary(1000);
    let proc_bin = h.proc_bin(binary, 1000, 0);
    let slice = h.sub_binary(proc_bin, 10, 5, 0, 0);
    let holder = h.tuple(&[slice]);
    let root = h.tuple(&[holder, atom(2)]);
    let b = run(&h, root, &every_position());
    assert_eq!(b.total.off_heap_bytes, 1000);
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Elem(0)]].off_heap_bytes, 1000);
    assert_eq!(p[&vec![Step::Elem(0), Step::Elem(0)]].off_heap_bytes, 1000);
    assert_total_matches_term_size(&h, root, &b);
    let kinds: Vec<RowKind> = b.rows.iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&RowKind::Binary));

    // The same Binary pinned from two fields: the common parent keeps it.
    let mut h = TestHeap::new();
    let binary = h.off_heap_binary(1000);
    let proc_bin = h.proc_bin(binary, 1000, 0);
    let slice = h.sub_binary(proc_bin, 10, 5, 0, 0);
    let a = h.tuple(&[slice]);
    let b2 = h.tuple(&[proc_bin]);
    let root = h.tuple(&[a, b2]);
    let b = run(&h, root, &every_position());
    let p = positions(&b);
    assert_eq!(b.total.off_heap_bytes, 1000);
    assert_eq!(p[&vec![Step::Elem(0)]].off_heap_bytes, 0);
    assert_eq!(p[&vec![Step::Elem(1)]].off_heap_bytes, 0);
    assert_total_matches_term_size(&h, root, &b);
}

/// A `Binary` whose count is 1 needs no set in the tree pass: its one
/// ProcBin holds it. OTP 25 sub-binaries slice that ProcBin without holding
/// a count of their own, so with the ProcBin met before or after them, or
/// two slices and no ProcBin, the `Binary` is found shared all the same and
/// lands on the common parent, as the graph says.
#[test]
fn a_binary_counted_once_by_its_procbin_is_shared_with_its_slices() {
    for order in 0..4 {
        let mut h = TestHeap::new();
        let binary = h.off_heap_binary(1000);
        let proc_bin = h.proc_bin(binary, 1000, 0);
        let slice = h.sub_binary(proc_bin, 10, 5, 0, 0);
        let other_slice = h.sub_binary(proc_bin, 20, 50, 0, 0);
        let fields = match order {
            0 => [slice, proc_bin],
            1 => [proc_bin, slice],
            2 => [slice, other_slice],
            _ => [proc_bin, atom(3)],
        };
        let (a, b2) = (h.tuple(&[fields[0]]), h.tuple(&[fields[1]]));
        let root = h.tuple(&[a, b2]);
        let b = run(&h, root, &every_position());
        let graph = run_by_graph(&h, root, &every_position());
        assert_eq!(b.rows, graph.rows, "order {order}");
        assert_total_matches_term_size(&h, root, &b);
        assert_eq!(b.total.off_heap_bytes, 1000, "order {order}");
        let p = positions(&b);
        let (first, second) = (
            p[&vec![Step::Elem(0)]].off_heap_bytes,
            p[&vec![Step::Elem(1)]].off_heap_bytes,
        );
        if order == 3 {
            // Alone, the ProcBin's position keeps its Binary.
            assert_eq!((first, second), (1000, 0));
        } else {
            assert_eq!((first, second), (0, 0), "order {order}");
        }
    }
}

#[test]
fn literal_parts_are_apart_and_not_charged() {
    let mut h = TestHeap::new();
    let lit = h.literal_tuple(&[small(1), small(2), small(3), small(4)]);
    let own = h.tuple(&[small(1)]);
    let root = h.tuple(&[lit, own]);
    let b = run(&h, root, &every_position());
    assert_eq!(b.literal_words, 5);
    assert_eq!(b.total.words, 3 + 2);
    let p = positions(&b);
    assert!(!p.contains_key(&vec![Step::Elem(0)]), "{:?}", b.rows);
    assert_eq!(p[&vec![Step::Elem(1)]].words, 2);
    assert_total_matches_term_size(&h, root, &b);
}

#[test]
fn literals_that_pin_nothing_are_left_out_and_shared_ones_keep_the_term_a_tree() {
    let mut h = TestHeap::new();
    let keys = h.literal_tuple(&[atom(1), atom(2)]);
    let tail = h.literal_cons(small(1), NIL);
    let maps: Vec<u64> = (0..50)
        .map(|i| {
            let value = h.tuple(&[small(i)]);
            let list = h.cons(value, tail);
            h.flatmap(keys, &[list, small(i)])
        })
        .collect();
    let root = h.tuple(&maps);
    let b = run(&h, root, &every_position());
    assert_total_matches_term_size(&h, root, &b);
    // Root, 50 maps, 50 lists and 50 tuples: no node for the literals.
    assert_eq!(b.nodes, 151);
    let p = positions(&b);
    let at = vec![Step::Elem(3), Step::Key(atom(1))];
    assert_eq!(p[&at].words, 2 + 2);
    assert_eq!(
        p[&vec![Step::Elem(3), Step::Key(atom(1)), Step::List(0, 0)]].words,
        4
    );

    // A literal that pins a binary is charged where it is referenced.
    let mut h = TestHeap::new();
    let binary = h.off_heap_binary(5000);
    let lit_bin = h.literal_proc_bin(binary, 5000);
    let lit = h.literal_tuple(&[lit_bin, small(1)]);
    let holder = h.tuple(&[lit]);
    let root = h.tuple(&[holder, small(0)]);
    let b = run(&h, root, &every_position());
    assert_total_matches_term_size(&h, root, &b);
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Elem(0)]].off_heap_bytes, 5000);
    assert_eq!(p[&vec![Step::Elem(0)]].words, 2);
}

#[test]
fn list_elements_are_runs_split_by_powers_of_ten() {
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..25).map(|i| h.tuple(&[small(i), small(i)])).collect();
    let list = h.list(&items);
    let root = h.tuple(&[list]);
    let b = run(&h, root, &every_position());
    let p = positions(&b);
    let at = |step| vec![Step::Elem(0), step];
    assert_eq!(p[&at(Step::List(0, 24))].words, 25 * 5);
    assert_eq!(p[&at(Step::List(0, 9))].words, 10 * 5);
    assert_eq!(p[&at(Step::List(20, 24))].words, 5 * 5);
    // One element: its value (3 words) and its cons cell (2).
    assert_eq!(p[&at(Step::List(7, 7))].words, 5);
    assert_eq!(p[&at(Step::List(7, 7))].objects, 2);
    assert!(!p.contains_key(&at(Step::List(0, 0))) || p[&at(Step::List(0, 0))].words == 5);

    // Evenly spread, each element below 1%: the whole run is the one
    // accumulation point, not the list around it, the root's tuple, nor the
    // slices of the run.
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..250).map(|i| h.tuple(&[small(i), small(i)])).collect();
    let list = h.list(&items);
    let root = h.tuple(&[list]);
    let rows = run(&h, root, &Settings::default()).rows;
    assert_eq!(rows[0].path, at(Step::List(0, 249)));
    assert_eq!(rows[0].kind, RowKind::List);
    assert_eq!(rows.len(), 1, "{rows:?}");
    // 120 even elements: the first hundred hold most of the run only
    // because that is where the power of ten falls; the run is the row.
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..120).map(|i| h.tuple(&[small(i), small(i)])).collect();
    let list = h.list(&items);
    let root = h.tuple(&[list]);
    let rows = run(&h, root, &Settings::default()).rows;
    assert_eq!(rows[0].path, at(Step::List(0, 119)), "{rows:?}");
    assert!(rows.iter().all(|r| r.path != at(Step::List(0, 99))));
    // A hot slice is the row, not the run around it.
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..250)
        .map(|i| {
            let fields = if (100..110).contains(&i) { 300 } else { 1 };
            h.tuple(&vec![small(i); fields])
        })
        .collect();
    let list = h.list(&items);
    let root = h.tuple(&[list]);
    let rows = run(&h, root, &Settings::default()).rows;
    assert_eq!(rows[0].path, at(Step::List(100, 109)), "{rows:?}");
}

#[test]
fn list_runs_are_the_same_with_or_without_sharing_elsewhere() {
    // The same improper list of 37 tuples, in a tree and in a DAG (a tuple
    // shared by two other fields): the list's positions must not change.
    let mut found = Vec::new();
    for shared in [false, true] {
        let mut h = TestHeap::new();
        let mut tail = h.tuple(&[small(1), small(2)]); // improper tail
        for i in 0..37 {
            let item = h.tuple(&vec![small(i); 1 + (i as usize % 5)]);
            tail = h.cons(item, tail);
        }
        let x = h.tuple(&[small(1)]);
        let y = if shared { x } else { h.tuple(&[small(1)]) };
        let root = h.tuple(&[tail, x, y]);
        let b = run(&h, root, &every_position());
        assert_total_matches_term_size(&h, root, &b);
        let mut list: Vec<(Vec<Step>, Retained)> = b
            .rows
            .iter()
            .filter(|r| r.path.first() == Some(&Step::Elem(0)))
            .map(|r| (r.path.clone(), r.retained))
            .collect();
        list.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        found.push(list);
    }
    assert!(found[0].len() > 40, "{:?}", found[0]);
    assert_eq!(found[0], found[1]);
}

#[test]
fn wrappers_are_not_rows_their_heavy_part_is() {
    let mut h = TestHeap::new();
    let big: Vec<u64> = (0..20).map(|i| h.tuple(&[small(i)])).collect();
    let small_part = h.tuple(&[small(1)]);
    let heavy = h.tuple(&big);
    let wrapper = h.tuple(&[heavy, small_part]);
    let root = h.tuple(&[wrapper]);
    let rows = run(&h, root, &Settings::default()).rows;
    assert_eq!(rows[0].path, vec![Step::Elem(0), Step::Elem(0)]);
    assert!(rows.iter().all(|r| r.path != vec![Step::Elem(0)]));
    // Rows never exceed the total, even nested ones alone.
    let b = run(&h, root, &Settings::default());
    assert!(b.rows.iter().all(|r| r.retained.bytes() <= b.total.bytes()));
    // Depth 1 looks no deeper than the root's own elements.
    let shallow = Settings {
        max_depth: 1,
        ..Settings::default()
    };
    let rows = run(&h, root, &shallow).rows;
    assert!(rows.iter().all(|r| r.path.len() <= 1), "{rows:?}");
}

#[test]
fn map_values_are_positions_under_their_keys() {
    let mut h = TestHeap::new();
    let v1 = h.tuple(&[small(1), small(2), small(3)]);
    let v2 = h.tuple(&[small(1)]);
    let keys = h.tuple(&[atom(10), atom(11)]);
    let map = h.flatmap(keys, &[v1, v2]);
    let b = run(&h, map, &every_position());
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Key(atom(10))]].words, 4);
    assert_eq!(p[&vec![Step::Key(atom(11))]].words, 2);
    assert_total_matches_term_size(&h, map, &b);

    // A hashmap: a head with two leaves and an inner node with one.
    let mut h = TestHeap::new();
    let va = h.tuple(&[small(1), small(2)]);
    let vb = h.tuple(&[small(1), small(2), small(3), small(4)]);
    let vc = h.tuple(&[small(5)]);
    let la = h.cons(atom(20), va);
    let lb = h.cons(atom(21), vb);
    let lc = h.cons(atom(22), vc);
    let inner = h.hashmap_node(0b11, &[lc, small(0)]);
    // Replace the filler with a second leaf so the node is valid.
    let ld = h.cons(atom(23), small(4));
    h.poke(TestHeap::addr(inner) + 16, ld);
    let head = h.hashmap_head(0b111, 4, &[la, lb, inner]);
    let b = run(&h, head, &every_position());
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Key(atom(20))]].words, 3);
    assert_eq!(p[&vec![Step::Key(atom(21))]].words, 5);
    assert_eq!(p[&vec![Step::Key(atom(22))]].words, 2);
    assert_eq!(p.len(), 3, "{:?}", b.rows);
    assert_total_matches_term_size(&h, head, &b);
}

#[test]
fn fun_environments_are_positions() {
    let mut h = TestHeap::new();
    let captured = h.tuple(&[small(1), small(2)]);
    let fun = h.fun(&[small(3), captured]);
    let b = run(&h, fun, &every_position());
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Env(1)]].words, 3);
    assert_total_matches_term_size(&h, fun, &b);
}

#[test]
fn a_small_budget_stops_the_walk() {
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..100).map(|i| h.tuple(&[small(i)])).collect();
    let list = h.list(&items);
    let stop = breakdown(
        &h,
        &OTP_25,
        list,
        &Settings::default(),
        &mut Budget::limited(50),
    );
    assert_eq!(stop, Err(Stop::Budget));
}

#[test]
fn a_term_with_more_objects_than_allowed_is_refused() {
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..100).map(|i| h.tuple(&[small(i)])).collect();
    let list = h.list(&items);
    let limited = Settings {
        max_objects: 150,
        ..Settings::default()
    };
    let stop = breakdown(&h, &OTP_25, list, &limited, &mut Budget::unlimited());
    assert!(matches!(stop, Err(Stop::Layout(e)) if e.what == TOO_MANY_OBJECTS));
    let enough = Settings {
        max_objects: 200,
        ..Settings::default()
    };
    assert!(breakdown(&h, &OTP_25, list, &enough, &mut Budget::unlimited()).is_ok());
}

#[test]
fn the_walk_memory_limit_ends_the_walk_not_the_vm() {
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..10_000).map(|i| h.tuple(&[small(i)])).collect();
    let list = h.list(&items);
    let tight = Budget::unlimited().with_memory_limit(10_000);
    let stop = breakdown(&h, &OTP_25, list, &Settings::default(), &mut tight.clone());
    assert_eq!(stop, Err(Stop::OutOfMemory));
    let roomy = Budget::unlimited().with_memory_limit(10_000_000);
    assert!(breakdown(&h, &OTP_25, list, &Settings::default(), &mut roomy.clone()).is_ok());
}

#[test]
fn deep_terms_need_no_native_stack() {
    let mut h = TestHeap::new();
    let mut term = NIL;
    for _ in 0..200_000 {
        term = h.cons(term, NIL);
    }
    let b = run(&h, term, &Settings::default());
    assert_eq!(b.total.words, 400_000);
    assert_total_matches_term_size(&h, term, &b);
}

#[test]
fn shared_list_elements_charge_the_list_not_one_run() {
    let mut h = TestHeap::new();
    let shared = h.tuple(&[small(1), small(2), small(3)]);
    let items: Vec<u64> = (0..12)
        .map(|i| if i == 3 || i == 11 { shared } else { small(i) })
        .collect();
    let list = h.list(&items);
    let root = h.tuple(&[list]);
    let b = run(&h, root, &every_position());
    let p = positions(&b);
    assert_eq!(p[&vec![Step::Elem(0)]].words, 24 + 4);
    // Runs hold only cons cells: the shared tuple is the list's.
    assert_eq!(p[&vec![Step::Elem(0), Step::List(0, 11)]].words, 24);
    assert_total_matches_term_size(&h, root, &b);
}

#[test]
fn memory_per_object_stays_small() {
    let mut h = TestHeap::new();
    let items: Vec<u64> = (0..10_000)
        .map(|i| h.tuple(&[small(i), small(i)]))
        .collect();
    let list = h.list(&items);
    let b = run(&h, list, &Settings::default());
    assert_eq!(b.nodes, 20_000);
    assert!(b.peak_bytes <= 32 * b.nodes, "{} bytes", b.peak_bytes);
}

/// Random terms without sharing, of every shape the search reads: tuples,
/// lists (long, short, improper), flatmaps, hashmaps (with list values in
/// their leaves), funs, heap and off-heap binaries, sub-binaries and shared
/// literals that pin nothing.
struct TreeGen {
    state: u64,
    literal: u64,
}

impl TreeGen {
    fn next(&mut self, m: u64) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.state >> 33) % m
    }

    fn value(&mut self, h: &mut TestHeap, depth: u32) -> u64 {
        if depth == 0 {
            return small(self.next(100) as i64);
        }
        let d = depth - 1;
        match self.next(11) {
            0 => small(self.next(100) as i64),
            1 | 2 => {
                let n = 1 + self.next(4) as usize;
                let items: Vec<u64> = (0..n).map(|_| self.value(h, d)).collect();
                h.tuple(&items)
            }
            3 | 4 => {
                let n = [0, 1, 3, 12, 25, 130][self.next(6) as usize];
                let items: Vec<u64> = (0..n).map(|_| self.value(h, d)).collect();
                let mut tail = NIL;
                if self.next(4) == 0 {
                    let improper = self.value(h, d);
                    tail = h.tuple(&[improper]);
                }
                items.iter().rev().fold(tail, |t, &x| h.cons(x, t))
            }
            5 => {
                let keys = if self.next(2) == 0 {
                    self.literal
                } else {
                    h.tuple(&[atom(1), atom(2)])
                };
                let (a, b) = (self.value(h, d), self.value(h, d));
                h.flatmap(keys, &[a, b])
            }
            6 => {
                let leaf = |g: &mut TreeGen, h: &mut TestHeap, k: u64| {
                    let v = g.value(h, d);
                    h.cons(atom(30 + k), v)
                };
                let (l1, l2) = (leaf(self, h, 0), leaf(self, h, 1));
                let inner = h.hashmap_node(0b11, &[l1, l2]);
                let (l3, l4) = (leaf(self, h, 2), leaf(self, h, 3));
                h.hashmap_head(0b111, 4, &[l3, inner, l4])
            }
            7 => {
                let binary = h.off_heap_binary(100 + self.next(5000));
                let proc_bin = h.proc_bin(binary, 100, 0);
                if self.next(2) == 0 {
                    proc_bin
                } else {
                    h.sub_binary(proc_bin, 10, 5, 0, 0)
                }
            }
            8 => h.heap_binary(1 + self.next(60)),
            9 => self.literal,
            _ => {
                let (a, b) = (self.value(h, d), self.value(h, d));
                h.fun(&[a, small(1), b])
            }
        }
    }
}

/// The tree pass (no graph, no dominators) answers exactly what the graph
/// and its dominators do, on terms without sharing.
#[test]
fn the_tree_pass_agrees_with_the_dominators() {
    let shallow = Settings {
        max_depth: 2,
        ..Settings::default()
    };
    let few = Settings {
        min_share: 0.2,
        max_rows: 3,
        ..Settings::default()
    };
    for seed in 1..300 {
        let mut h = TestHeap::new();
        let literal = h.literal_tuple(&[small(1), atom(3)]);
        let mut gen = TreeGen {
            state: seed,
            literal,
        };
        let root = gen.value(&mut h, 1 + (seed % 5) as u32);
        for settings in [every_position(), Settings::default(), shallow, few] {
            let fast = run(&h, root, &settings);
            let graph = run_by_graph(&h, root, &settings);
            assert_eq!(fast.total, graph.total, "seed {seed}");
            assert_eq!(fast.rows, graph.rows, "seed {seed}");
            assert_eq!(fast.nodes, graph.nodes, "seed {seed}");
            assert_eq!(fast.literal_words, graph.literal_words, "seed {seed}");
            assert_eq!(fast.off_heap_binaries, graph.off_heap_binaries);
            assert_total_matches_term_size(&h, root, &fast);
        }
    }
}

/// The tree pass keeps its first visited addresses in an inline array and
/// moves them to bitmap sets by page past it: sharing is found on either
/// side of that move and across pages (the graph then answers), and a tree
/// stays a tree.
#[test]
fn sharing_is_found_before_and_after_the_visited_set_grows() {
    // 20,000 elements: 100,000 words, about 25 pages of 32 KiB.
    for n in [1usize, 2, 7, 14, 15, 16, 17, 18, 40, 20_000] {
        for shared_at in [0, n / 2, n - 1] {
            let mut h = TestHeap::new();
            let items: Vec<u64> = (0..n)
                .map(|i| h.tuple(&[small(i as i64), small(0)]))
                .collect();
            let mut with_repeat = items.clone();
            with_repeat.push(items[shared_at]);
            let list = h.list(&with_repeat);
            let root = h.tuple(&[list, atom(1)]);
            for settings in [every_position(), Settings::default()] {
                let fast = run(&h, root, &settings);
                let graph = run_by_graph(&h, root, &settings);
                assert_total_matches_term_size(&h, root, &fast);
                assert_eq!(fast, graph, "n {n}, shared at {shared_at}");
                // The repeated tuple is counted once: the list's cells and
                // the n tuples, under the list.
                let list_words = 2 * (n as u64 + 1) + 3 * n as u64;
                assert_eq!(fast.total.words, 3 + list_words, "n {n}");
            }
            // Without the repeat: a tree, every position its own size.
            let tree_list = h.list(&items);
            let b = run(&h, tree_list, &every_position());
            assert_eq!(b.total.words, 5 * n as u64, "n {n}");
            assert_eq!(b.total.objects, 2 * n as u64, "n {n}");
        }
    }
}

/// A small term keeps no position in the pass's tables (all are under the
/// keep floor; the pass notes a small term's positions inline, so the search
/// need not read them again), and its rows are still every child's own
/// size: the small-term shape `{ok, [1, 2, 3], #{a => 1}, <<"abc">>}`.
#[test]
fn a_small_term_keeps_only_its_root_and_reads_its_children_again() {
    let mut h = TestHeap::new();
    let list = h.list(&[small(1), small(2), small(3)]);
    let keys = h.tuple(&[atom(1)]);
    let map = h.flatmap(keys, &[small(1)]);
    let bin = h.heap_binary(3);
    let root = h.tuple(&[atom(2), list, map, bin]);
    let b = run(&h, root, &Settings::default());
    assert_total_matches_term_size(&h, root, &b);
    assert_eq!(b.total.words, 5 + 6 + (4 + 2) + 3);
    assert_eq!(b.nodes, 7);
    assert!(b.peak_bytes <= 32 * b.nodes, "{} bytes", b.peak_bytes);
    let found = positions(&b);
    assert_eq!(found[&vec![Step::Elem(1), Step::List(0, 2)]].words, 6);
    assert_eq!(found[&vec![Step::Elem(2)]].words, 4 + 2);
    assert_eq!(found[&vec![Step::Elem(3)]].words, 3);
    let graph = run_by_graph(&h, root, &Settings::default());
    assert_eq!(b.rows, graph.rows);
}

/// Around the number of positions the tree pass notes inline for a small
/// term (16): with fewer, more, or nested ones, the rows are the graph's,
/// whether the search finds a value's size noted or reads it again.
#[test]
fn small_terms_around_the_inline_positions_have_the_graphs_rows() {
    for n in [1usize, 7, 14, 15, 16, 17, 30] {
        let mut h = TestHeap::new();
        let items: Vec<u64> = (0..n)
            .map(|i| {
                let inner = h.list(&[small(i as i64), small(1)]);
                h.tuple(&[small(i as i64), inner])
            })
            .collect();
        let list = h.list(&items);
        let bin = h.heap_binary(5);
        let root = h.tuple(&[list, bin, atom(3)]);
        for settings in [Settings::default(), every_position()] {
            let b = run(&h, root, &settings);
            assert_total_matches_term_size(&h, root, &b);
            let graph = run_by_graph(&h, root, &settings);
            assert_eq!(b.rows, graph.rows, "n {n}");
            assert_eq!(b.total, graph.total, "n {n}");
        }
    }
}

/// A word that is no header where an object should start, and a cycle,
/// are refused in a small term as in a large one (before and after the
/// visited set grows), never read past.
#[test]
fn a_bad_header_or_a_cycle_is_refused_in_small_and_large_terms() {
    for n in [1usize, 20] {
        let mut h = TestHeap::new();
        let items: Vec<u64> = (0..n).map(|i| h.tuple(&[small(i as i64)])).collect();
        let broken = h.tuple(&[small(1), small(2)]);
        h.poke(TestHeap::addr(broken), small(7));
        let mut all = items.clone();
        all.push(broken);
        let root = h.list(&all);
        let found = breakdown(
            &h,
            &OTP_25,
            root,
            &Settings::default(),
            &mut Budget::unlimited(),
        );
        assert!(matches!(found, Err(Stop::Layout(_))), "n {n}: {found:?}");

        let mut h = TestHeap::new();
        let items: Vec<u64> = (0..n).map(|i| h.tuple(&[small(i as i64)])).collect();
        let looped = h.tuple(&[small(1), small(2)]);
        h.poke(TestHeap::addr(looped) + 16, looped);
        let mut all = items.clone();
        all.push(looped);
        let root = h.list(&all);
        let found = breakdown(
            &h,
            &OTP_25,
            root,
            &Settings::default(),
            &mut Budget::unlimited(),
        );
        assert!(
            matches!(&found, Err(Stop::Layout(e)) if e.what == "cycle in a term"),
            "n {n}: {found:?}"
        );
    }
}

/// The tree pass walks a long list's spine in one loop, and closes small
/// elements (a record of a binary and a map whose keys are a literal, the
/// map's own binary) without frames, counting their parts in place. Each
/// part of one element is also shared with a field beside the list, met
/// before or after the list: wherever the pass meets it again (in the spine,
/// a record, its map, the map's value), the graph takes over, the shared
/// part is the root's, and the list retains the rest.
#[test]
fn long_lists_of_small_records_share_with_a_sibling_field() {
    const N: usize = 2000;
    const AT: usize = 1234;
    // Which part of element AT is also the root's other field.
    #[derive(Clone, Copy, Debug)]
    enum Part {
        Record,
        Binary,
        Map,
        MapValue,
        Tail,
    }
    for part in [
        Part::Record,
        Part::Binary,
        Part::Map,
        Part::MapValue,
        Part::Tail,
    ] {
        for shared_first in [false, true] {
            let mut h = TestHeap::new();
            let keys = h.literal_tuple(&[atom(2), atom(3)]);
            let mut records = Vec::new();
            let mut parts = Vec::new();
            for i in 0..N {
                let bin = h.heap_binary(5);
                let text = h.heap_binary(1);
                let map = h.flatmap(keys, &[small(i as i64), text]);
                let record = h.tuple(&[atom(1), bin, map, small(i as i64)]);
                records.push(record);
                parts.push([record, bin, map, text]);
            }
            let tail = h.list(&records[AT..]);
            let list = records[..AT]
                .iter()
                .rev()
                .fold(tail, |acc, &r| h.cons(r, acc));
            let shared = match part {
                Part::Record => parts[AT][0],
                Part::Binary => parts[AT][1],
                Part::Map => parts[AT][2],
                Part::MapValue => parts[AT][3],
                Part::Tail => tail,
            };
            let (root, list_at) = if shared_first {
                (h.tuple(&[shared, list]), 1)
            } else {
                (h.tuple(&[list, shared]), 0)
            };
            let what = format!("{part:?}, shared first: {shared_first}");
            for settings in [every_position(), Settings::default()] {
                let fast = run(&h, root, &settings);
                let graph = run_by_graph(&h, root, &settings);
                assert_eq!(fast.total, graph.total, "{what}");
                assert_eq!(fast.rows, graph.rows, "{what}");
                assert_total_matches_term_size(&h, root, &fast);
            }
            let b = run(&h, root, &every_position());
            let p = positions(&b);
            let shared_words = term_size(&h, &OTP_25, shared, &mut Work::unlimited())
                .unwrap()
                .scan
                .shared_words;
            // The root's own 3 words and the shared part are nobody's field.
            assert_eq!(
                p[&vec![Step::Elem(list_at)]].words,
                b.total.words - 3 - shared_words,
                "{what}"
            );
            // An element the sharing does not touch: its cell, the record
            // (5), its binary (3), its map (5) and the map's binary (3).
            let other = vec![Step::Elem(list_at), Step::List(7, 7)];
            assert_eq!(p[&other].words, 2 + 16, "{what}");
            let map_value = vec![
                Step::Elem(list_at),
                Step::List(7, 7),
                Step::Elem(2),
                Step::Key(atom(3)),
            ];
            assert_eq!(p[&map_value].words, 3, "{what}");
        }
    }
}

/// The same records with nothing shared: the tree pass answers alone, and
/// its sizes are the graph's, with every element closed in place.
#[test]
fn long_lists_of_small_records_without_sharing_have_the_graphs_sizes() {
    let mut h = TestHeap::new();
    let keys = h.literal_tuple(&[atom(2), atom(3)]);
    let short = h.list(&[small(1), small(2), small(3)]);
    let records: Vec<u64> = (0..3000)
        .map(|i| {
            let bin = h.heap_binary(5);
            let list = h.list(&[small(i), small(i)]);
            let map = h.flatmap(keys, &[small(i), list]);
            h.tuple(&[atom(1), bin, map, small(i)])
        })
        .collect();
    let list = h.list(&records);
    let root = h.tuple(&[list, short]);
    for settings in [every_position(), Settings::default()] {
        let fast = run(&h, root, &settings);
        let graph = run_by_graph(&h, root, &settings);
        assert_eq!(fast.total, graph.total);
        assert_eq!(fast.rows, graph.rows);
        assert_total_matches_term_size(&h, root, &fast);
    }
    let p = positions(&run(&h, root, &every_position()));
    // Cell 2, record 5, binary 3, map 5, the map's list 4.
    assert_eq!(p[&vec![Step::Elem(0), Step::List(42, 42)]].words, 19);
    assert_eq!(
        p[&vec![Step::Elem(0), Step::List(42, 42), Step::Elem(2)]].words,
        9
    );
}

/// Two handles on one off-heap `Binary`: the tree pass keeps the Binaries
/// it met in a visited set (an inline array, then bitmaps by page), and
/// finds the second handle on either side of that move, met before or
/// after the first; the graph then charges the Binary to the common parent.
#[test]
fn a_binary_behind_two_handles_is_found_wherever_the_pass_meets_it() {
    const N: usize = 100;
    for k in [5, 90] {
        for second_first in [false, true] {
            let mut h = TestHeap::new();
            let binaries: Vec<usize> = (0..N).map(|i| h.off_heap_binary(100 + i as u64)).collect();
            let handles: Vec<u64> = binaries
                .iter()
                .enumerate()
                .map(|(i, &b)| h.proc_bin(b, 100 + i as u64, 0))
                .collect();
            let list = h.list(&handles);
            let second = h.proc_bin(binaries[k], 100 + k as u64, 0);
            // The VM counts one reference per ProcBin.
            h.poke_off_heap(binaries[k] + 8, 2);
            let (root, list_at) = if second_first {
                (h.tuple(&[second, list]), 1)
            } else {
                (h.tuple(&[list, second]), 0)
            };
            let what = format!("binary {k}, second handle first: {second_first}");
            let b = run(&h, root, &every_position());
            let graph = run_by_graph(&h, root, &every_position());
            assert_eq!(b.rows, graph.rows, "{what}");
            assert_total_matches_term_size(&h, root, &b);
            let all: u64 = (0..N as u64).map(|i| 100 + i).sum();
            assert_eq!(b.total.off_heap_bytes, all, "{what}");
            let p = positions(&b);
            assert_eq!(
                p[&vec![Step::Elem(list_at)]].off_heap_bytes,
                all - (100 + k as u64),
                "{what}"
            );
            assert_eq!(
                p[&vec![Step::Elem(1 - list_at)]].off_heap_bytes,
                0,
                "{what}"
            );
        }
    }
}

/// ProcBins, decoded by the tree pass without the general decoder: the
/// same size as `term_size`, and each broken one refused with the reason
/// `term_size` gives, as a list element, in a tuple and as the root, by
/// the tree pass and by the graph.
#[test]
fn proc_bins_are_sized_and_refused_as_term_size_does() {
    let mut h = TestHeap::new();
    let bin = h.off_heap_binary(1000);
    let good = h.proc_bin(bin, 1000, 0);
    let dead = h.off_heap_binary(10);
    h.poke_off_heap(dead + 8, 0); // refc 0
    let broken = [
        (
            boxed_term(h.alloc(&[0x160, 10, 0, 0, 0, 0])),
            "refc binary with a bad Binary pointer",
        ),
        (h.proc_bin(bin, 1000, 10), "refc binary outside its Binary"),
        (h.proc_bin(dead, 10, 0), "Binary with a bad refc or size"),
    ];
    let placed = |h: &mut TestHeap, object: u64| {
        let in_list = h.list(&[small(1), object, small(2)]);
        let in_tuple = h.tuple(&[atom(1), object]);
        [object, in_list, in_tuple]
    };
    for term in placed(&mut h, good) {
        let b = run(&h, term, &every_position());
        assert_eq!((b.off_heap_binaries, b.total.off_heap_bytes), (1, 1000));
        assert_total_matches_term_size(&h, term, &b);
        assert_eq!(
            positions(&b),
            positions(&run_by_graph(&h, term, &every_position()))
        );
    }
    for (object, what) in broken {
        for term in placed(&mut h, object) {
            let size = term_size(&h, &OTP_25, term, &mut Work::unlimited());
            let Err(Stop::Layout(e)) = size else {
                panic!("term_size accepted {term:#x}: {size:?}");
            };
            assert_eq!(e.what, what);
            for (pass, got) in [
                (
                    "tree",
                    breakdown(
                        &h,
                        &OTP_25,
                        term,
                        &every_position(),
                        &mut Budget::unlimited(),
                    ),
                ),
                (
                    "graph",
                    term_walker::breakdown::breakdown_by_graph(
                        &h,
                        &OTP_25,
                        term,
                        &every_position(),
                        &mut Budget::unlimited(),
                    ),
                ),
            ] {
                match got {
                    Err(Stop::Layout(e)) => assert_eq!(e.what, what, "{pass} on {term:#x}"),
                    other => panic!("{pass} accepted {term:#x}: {other:?}"),
                }
            }
        }
    }
}

//! One small stable sort for the filter's lists, instead of std's.
//!
//! std's `sort`/`sort_unstable` (driftsort, ipnsort) are fast on long inputs but each
//! instantiation, one per element type and comparator, costs several KB of wasm (about 70 KB
//! for the filter's dozen sorts). The lists sorted here are short: an object's keys, the rules
//! that apply to a caller, the header names a request loses, a text's matches. A short list
//! (20 elements or fewer, where std also uses insertion sort) is sorted by insertion, a few
//! hundred bytes per instantiation. A longer one sorts a list of positions with one heapsort
//! shared by every caller (O(n log n), no quadratic input) and then moves the elements in
//! place. Both are stable: equal elements keep their order.

/// Lists up to this length are sorted by insertion (std's `sort` and `sort_unstable` do the
/// same below the same bound).
const SHORT: usize = 20;

/// Sorts `v` in ascending order, stable.
#[inline(always)]
pub(crate) fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a < b);
}

/// Sorts `v` by `is_less` (a strict weak order: `is_less(a, b)` when `a` goes before `b`),
/// stable: elements neither less than the other keep their order.
#[inline(always)]
pub(crate) fn sort_by<T>(v: &mut [T], is_less: impl FnMut(&T, &T) -> bool) {
    // At the call site, as std's sort does: most lists here have one element or none.
    if v.len() >= 2 {
        sort_any(v, is_less);
    }
}

fn sort_any<T>(v: &mut [T], mut is_less: impl FnMut(&T, &T) -> bool) {
    if v.len() <= SHORT {
        insertion(v, &mut is_less);
        return;
    }
    let mut order = sorted_order(v.len(), &mut |a, b| match (v.get(a), v.get(b)) {
        (Some(x), Some(y)) => is_less(x, y),
        _ => false,
    });
    permute(v, &mut order);
}

fn insertion<T>(v: &mut [T], is_less: &mut impl FnMut(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 {
            match v.get(j - 1..=j) {
                Some([a, b]) if is_less(b, a) => v.swap(j - 1, j),
                _ => break,
            }
            j -= 1;
        }
    }
}

/// The positions `0..len` in the order `less` (on positions) sorts them, equal ones by
/// position: a heapsort, not generic, so there is one in the module.
fn sorted_order(len: usize, less: &mut dyn FnMut(usize, usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    for node in (0..len / 2).rev() {
        sift_down(&mut order, node, len, less);
    }
    for end in (1..len).rev() {
        order.swap(0, end);
        sift_down(&mut order, 0, end, less);
    }
    order
}

/// Whether the element at position `x` goes before the one at `y`: by `less`, then by
/// position (one call of `less` either way).
fn before(less: &mut dyn FnMut(usize, usize) -> bool, x: usize, y: usize) -> bool {
    if x < y {
        !less(y, x)
    } else {
        less(x, y)
    }
}

/// Restores the max-heap of `heap[..end]` below `node`.
fn sift_down(
    heap: &mut [usize],
    mut node: usize,
    end: usize,
    less: &mut dyn FnMut(usize, usize) -> bool,
) {
    loop {
        let left = 2 * node + 1;
        let mut child = left;
        if let (Some(&l), Some(&r)) = (heap.get(left), heap.get(left + 1)) {
            if left + 1 < end && before(less, l, r) {
                child = left + 1;
            }
        }
        if child >= end {
            return;
        }
        match (heap.get(node), heap.get(child)) {
            (Some(&n), Some(&c)) if before(less, n, c) => heap.swap(node, child),
            _ => return,
        }
        node = child;
    }
}

/// Moves `v[order[k]]` to `k` for every `k`, following each cycle of the permutation
/// (`order` is left as the identity).
fn permute<T>(v: &mut [T], order: &mut [usize]) {
    for start in 0..order.len() {
        let mut at = start;
        while let Some(slot) = order.get_mut(at) {
            let from = std::mem::replace(slot, at);
            if from == start || from == at {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift).
    fn numbers(seed: u64, n: usize, range: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % range
            })
            .collect()
    }

    #[test]
    fn sorts_like_std_stable_sort() {
        for len in 0..150 {
            for (seed, range) in [(1, 3), (2, 10), (3, 1000), (4, u64::MAX)] {
                let keys = numbers(seed + len as u64 * 7, len, range);
                let mut ours: Vec<(u64, usize)> = keys.iter().copied().zip(0..).collect();
                let mut theirs = ours.clone();
                sort_by(&mut ours, |a, b| a.0 < b.0);
                theirs.sort_by_key(|p| p.0);
                assert_eq!(ours, theirs, "len {len} range {range}");
            }
        }
    }

    #[test]
    fn sorted_and_reversed_inputs() {
        for len in [0, 1, 2, 20, 21, 64, 1000] {
            let mut up: Vec<String> = (0..len).map(|i| format!("{i:05}")).collect();
            let want = up.clone();
            sort(&mut up);
            assert_eq!(up, want);
            up.reverse();
            sort(&mut up);
            assert_eq!(up, want);
        }
    }
}

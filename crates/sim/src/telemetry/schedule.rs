//! Periodic reporting spread evenly over the period: item `i` of `n` reports
//! at `k × period + i × period / n`, so 34,000 lights reporting every ten
//! minutes make a steady ~57 messages per second, never a wall.

/// Calls `f(item, at_ms)` for every report due in `(from_ms, to_ms]`, in time order.
pub fn for_each_due(period_ms: i64, count: usize, from_ms: i64, to_ms: i64, mut f: impl FnMut(usize, i64)) {
    if count == 0 || period_ms <= 0 || to_ms <= from_ms {
        return;
    }
    let n = count as i128;
    let period = i128::from(period_ms);
    let phase = |i: usize| (i as i128 * period / n) as i64;
    // The first item whose phase exceeds `x` (phases are non-decreasing in i).
    let first_after = |x: i64| -> usize {
        if x < 0 {
            return 0;
        }
        let i = ((i128::from(x) + 1) * n + period - 1) / period;
        i.clamp(0, n) as usize
    };
    let first_cycle = from_ms.div_euclid(period_ms);
    let last_cycle = to_ms.div_euclid(period_ms);
    for cycle in first_cycle..=last_cycle {
        let base = cycle * period_ms;
        let lo = first_after(from_ms - base);
        let hi = first_after(to_ms - base);
        for i in lo..hi {
            f(i, base + phase(i));
        }
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic noise in [-1, 1) for an item at an instant: stateless
/// streams (a lamp's wattage, a loop's count) need no random state to replay.
pub fn noise(seed: u64, item: usize, at_ms: i64, salt: u64) -> f64 {
    let h = mix(seed ^ mix(item as u64 ^ mix(at_ms as u64 ^ salt.rotate_left(17))));
    (h >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_reports_once_per_period_evenly_spread() {
        let mut seen = vec![0; 7];
        let mut times = Vec::new();
        for_each_due(700, 7, 1_000, 1_700, |i, t| {
            seen[i] += 1;
            times.push(t);
        });
        assert_eq!(seen, vec![1; 7]);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        // Split windows see the same reports as one window.
        let mut split = 0;
        for (a, b) in [(1_000, 1_234), (1_234, 1_500), (1_500, 1_700)] {
            for_each_due(700, 7, a, b, |_, _| split += 1);
        }
        assert_eq!(split, 7);
    }

    #[test]
    fn noise_is_bounded_and_replayable() {
        for i in 0..1000 {
            let v = noise(1, i, 5, 9);
            assert!((-1.0..1.0).contains(&v));
            assert_eq!(v, noise(1, i, 5, 9));
        }
    }
}

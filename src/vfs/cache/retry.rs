//! When the write-back thread tries an upload again: `--vfs-write-back` doubled for each
//! failed try, at most five minutes, with ±20% jitter so that many items that failed
//! together do not all come back at once. It never gives up.

use std::time::Duration;

/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Jitter: the delay is scaled by a factor in `1 ± JITTER`.
pub const JITTER: f64 = 0.2;

/// The wait after `failures` failed tries (0: the first try, after `base`). `unit` is a
/// number in `[0, 1)` that picks the jitter.
pub fn delay(base: Duration, failures: u32, unit: f64) -> Duration {
    let doubled = base
        .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY);
    if failures == 0 {
        return doubled;
    }
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    doubled.mul_f64(factor)
}

/// A small, fast source of jitter (xorshift64*): not for secrets, only to spread retries.
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// The next number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_five_minutes() {
        let base = Duration::from_secs(5);
        // The middle of the jitter range is the plain doubling.
        let plain: Vec<u64> = (0..9).map(|n| delay(base, n, 0.5).as_secs()).collect();
        assert_eq!(plain, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(delay(base, 1000, 0.5), MAX_DELAY);
        assert_eq!(delay(Duration::ZERO, 3, 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let base = Duration::from_secs(10);
        assert_eq!(delay(base, 1, 0.0), Duration::from_secs(16));
        assert_eq!(delay(base, 1, 1.0), Duration::from_secs(24));
        let mut j = Jitter::new(42);
        for _ in 0..10_000 {
            let u = j.next_unit();
            assert!((0.0..1.0).contains(&u));
            let d = delay(base, 2, u);
            assert!(
                d >= Duration::from_secs(32) && d <= Duration::from_secs(48),
                "{d:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads() {
        let mut j = Jitter::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            buckets[(j.next_unit() * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
    }
}

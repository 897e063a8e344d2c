//! A fast hasher for counter keys (rustc's FxHash).
//!
//! Counter keys come from the control plane's snapshot (budget and principal ids), never
//! from client input, so hash flooding is not a concern — and SipHash was most of the cost
//! of the admission fast path.

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash over 8-byte words.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CounterHasher(u64);

/// Builds [`CounterHasher`]s.
pub(crate) type BuildCounterHasher = BuildHasherDefault<CounterHasher>;

impl CounterHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for CounterHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let word = rest
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, b)| w | (u64::from(*b) << (8 * i)));
            self.add(word);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i.cast_unsigned());
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use tollgate_policy::CounterKey;

    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_fields_matter() {
        let build = BuildCounterHasher::default();
        let key = |b: &str, s: &str, w: i64| CounterKey {
            budget_id: b.into(),
            subject_id: s.into(),
            window_start_unix_s: w,
        };
        let a = build.hash_one(key("budget-1", "", 86_400));
        assert_eq!(a, build.hash_one(key("budget-1", "", 86_400)));
        assert_ne!(a, build.hash_one(key("budget-1", "", 172_800)));
        assert_ne!(a, build.hash_one(key("budget-1", "u", 86_400)));
        assert_ne!(a, build.hash_one(key("budget-", "1", 86_400)));
    }
}

//! Deterministic pseudo-random bytes for tests, benches and fuzz targets: one
//! generator, so data is the same wherever it is made and a failure
//! reproduces from its seed. The server never calls it; it lives in the pure
//! core (no feature needed) so that the integration tests, the benches and the
//! fuzz crate, which builds without RocksDB, all reach the same one.

/// `n` bytes of xorshift64* from `seed`: incompressible, the same on every
/// run and platform.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    fill_random(&mut out, n, seed);
    out
}

/// Appends to `out` until it holds `n` bytes, the bytes [`pseudo_random`]
/// would give for `seed`; a caller reusing one buffer avoids an allocation.
pub fn fill_random(out: &mut Vec<u8>, n: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (n - out.len()).min(8);
        out.extend_from_slice(&v[..take]);
    }
}

/// The input of the chunker's golden vectors: xorshift64 from a fixed seed,
/// one byte (bits 32..39 of the state) a step. Ports of the chunker check
/// themselves against the same vectors over the same bytes (the Python
/// client's `fastcdc.xorshift_bytes`), so this must never change.
pub fn golden_input(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// u64s from everywhere for property tests, the extremes weighted in: 0,
/// 1, `u64::MAX` and the one below it, the `top` values up to `u64::MAX`,
/// those up to `low`, and any.
#[cfg(test)]
pub fn extreme_u64(top: u64, low: u64) -> impl proptest::strategy::Strategy<Value = u64> {
    use proptest::prelude::*;
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        (u64::MAX - top)..=u64::MAX,
        0u64..=low,
        any::<u64>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_distinct_by_seed() {
        assert_eq!(pseudo_random(1000, 3), pseudo_random(1000, 3));
        assert_ne!(pseudo_random(1000, 3), pseudo_random(1000, 4));
        // A prefix of a longer run, whatever the length (no 8-byte rounding).
        assert_eq!(pseudo_random(13, 9)[..], pseudo_random(64, 9)[..13]);
        let mut reused = vec![1, 2, 3];
        reused.clear();
        fill_random(&mut reused, 77, 5);
        assert_eq!(reused, pseudo_random(77, 5));
        // The first golden bytes, as the Python port computes them.
        assert_eq!(golden_input(8), [174, 185, 145, 12, 224, 206, 68, 46]);
    }
}

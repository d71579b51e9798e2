//! SipHash-c-d with 64- or 128-bit output (Aumasson & Bernstein, "SipHash: a fast short-input
//! PRF", <https://github.com/veorq/SipHash>). The duplicate scan uses SipHash-1-3-128 — the
//! rounds of std's `RandomState` hasher, with the reference 128-bit output — because std
//! offers only 64-bit outputs, and two of those cost twice the compression.

/// A 128-bit SipHash key.
#[derive(Clone, Copy)]
pub(super) struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    /// A key drawn from std's per-process OS randomness (via `RandomState`).
    pub(super) fn random() -> SipKey {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        SipKey {
            k0: state.hash_one(0u8),
            k1: state.hash_one(1u8),
        }
    }

    /// SipHash-1-3 of `data`, 128-bit output as (first, second) little-endian halves.
    pub(super) fn hash13_128(&self, data: &[u8]) -> (u64, u64) {
        sip::<1, 3>(self.k0, self.k1, data, true)
    }
}

/// SipHash-`C`-`D`; `wide` selects the 128-bit variant (else the second half is 0).
fn sip<const C: usize, const D: usize>(k0: u64, k1: u64, data: &[u8], wide: bool) -> (u64, u64) {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    if wide {
        v[1] ^= 0xee;
    }
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        compress::<C>(&mut v, u64::from_le_bytes(bytes));
    }
    let mut last = [0u8; 8];
    let tail = words.remainder();
    last[..tail.len()].copy_from_slice(tail);
    // The final word carries the length mod 256 in its top byte.
    compress::<C>(&mut v, u64::from_le_bytes(last) | ((data.len() as u64) << 56));
    v[2] ^= if wide { 0xee } else { 0xff };
    rounds::<D>(&mut v);
    let first = v[0] ^ v[1] ^ v[2] ^ v[3];
    if !wide {
        return (first, 0);
    }
    v[1] ^= 0xdd;
    rounds::<D>(&mut v);
    (first, v[0] ^ v[1] ^ v[2] ^ v[3])
}

fn compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    rounds::<C>(v);
    v[0] ^= m;
}

#[inline(always)]
fn rounds<const N: usize>(v: &mut [u64; 4]) {
    for _ in 0..N {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    /// Key `00 01 … 0f`, as in the reference vectors.
    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    fn bytes((a, b): (u64, u64)) -> Vec<u8> {
        [a.to_le_bytes(), b.to_le_bytes()].concat()
    }

    #[test]
    fn siphash24_128_matches_the_reference_vectors() {
        // vectors_sip128[0..3] of the reference implementation (message 00 01 … len-1).
        let expected: [[u8; 16]; 3] = [
            [
                0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93,
            ],
            [
                0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45,
            ],
            [
                0x81, 0x77, 0x22, 0x8d, 0xa4, 0xa4, 0x5d, 0xc7, 0xfc, 0xa3, 0x8b, 0xde, 0xf6, 0x0a, 0xff, 0xe4,
            ],
        ];
        for (len, want) in expected.iter().enumerate() {
            let message: Vec<u8> = (0..len as u8).collect();
            assert_eq!(bytes(sip::<2, 4>(K0, K1, &message, true)), want, "length {len}");
        }
    }

    #[test]
    #[allow(deprecated)] // std::hash::SipHasher is SipHash-2-4, kept stable for this kind of use.
    fn siphash24_64_matches_std_at_every_length() {
        let data: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..=data.len() {
            let mut std_hasher = std::hash::SipHasher::new_with_keys(K0, K1);
            std_hasher.write(&data[..len]);
            assert_eq!(
                sip::<2, 4>(K0, K1, &data[..len], false).0,
                std_hasher.finish(),
                "length {len}"
            );
        }
    }

    #[test]
    fn random_keys_differ_and_halves_differ() {
        let (a, b) = (SipKey::random(), SipKey::random());
        assert_ne!(a.hash13_128(b"x@example.com"), b.hash13_128(b"x@example.com"));
        let (hi, lo) = a.hash13_128(b"x@example.com");
        assert_ne!(hi, lo);
    }
}

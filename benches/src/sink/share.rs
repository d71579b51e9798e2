//! Shares of recipients chosen by address, the same on every run and in every sink: a stable
//! hash (FNV-1a 64) of `local@domain` (domain lowercased) puts each address in one of 10,000
//! buckets. Greylisting takes a share from the bottom of the bucket space, late feedback
//! (complaints, then late bounces) from the top, so a test can tell in advance which
//! recipients get what.

/// Buckets of the hash space: a share is counted in hundredths of a percent.
pub(crate) const BUCKETS: u32 = 10_000;

/// The bucket (`0..BUCKETS`) of `address`; the part after the last `@` is lowercased, so
/// `a@X.test` and `a@x.test` share a bucket (RFC 5321 §2.4: only the local part may be
/// case-sensitive).
pub(crate) fn bucket(address: &str) -> u32 {
    let domain_start = address.rfind('@').map_or(address.len(), |at| at + 1);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, byte) in address.bytes().enumerate() {
        let byte = if i >= domain_start {
            byte.to_ascii_lowercase()
        } else {
            byte
        };
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(BUCKETS)) as u32
}

/// Whether `address` falls in the first `pct` percent of the buckets.
pub(crate) fn in_bottom_share(address: &str, pct: f64) -> bool {
    f64::from(bucket(address)) < pct * 100.0
}

/// Whether `address` falls in the band of buckets between `from_top` and `from_top + pct`
/// percent below the top of the space (`from_top` 0: the last `pct` percent).
pub(crate) fn in_top_band(address: &str, from_top: f64, pct: f64) -> bool {
    let distance = f64::from(BUCKETS - 1 - bucket(address));
    distance >= from_top * 100.0 && distance < (from_top + pct) * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_case_does_not_move_an_address() {
        assert_eq!(bucket("Jo@Example.TEST"), bucket("Jo@example.test"));
        assert_ne!(bucket("Jo@example.test"), bucket("jo@example.test"));
        assert!(bucket("no-at-sign") < BUCKETS);
    }

    #[test]
    fn bottom_and_top_shares_are_close_to_their_size_and_disjoint() {
        let addresses: Vec<String> = (0..20_000).map(|i| format!("u{i}@tail{i}.test")).collect();
        let bottom = addresses.iter().filter(|a| in_bottom_share(a, 30.0)).count();
        assert!((5_600..6_400).contains(&bottom), "{bottom} of 20,000 at 30 %");
        let top = addresses.iter().filter(|a| in_top_band(a, 0.0, 2.0)).count();
        let band = addresses.iter().filter(|a| in_top_band(a, 2.0, 5.0)).count();
        assert!((320..480).contains(&top), "{top} of 20,000 at 2 %");
        assert!((850..1_150).contains(&band), "{band} of 20,000 at 5 %");
        assert!(
            !addresses
                .iter()
                .any(|a| in_top_band(a, 0.0, 2.0) && in_top_band(a, 2.0, 5.0)),
            "the bands do not overlap"
        );
        assert!(addresses.iter().all(|a| in_top_band(a, 0.0, 100.0)));
        assert!(!addresses.iter().any(|a| in_top_band(a, 0.0, 0.0)));
    }
}

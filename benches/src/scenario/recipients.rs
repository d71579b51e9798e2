//! The generated inputs of a run: the recipient CSV (a deterministic, seeded shuffle of the
//! weighted domain mix) and the message body padded to `message_size`.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::domains::DomainGroup;
use super::error::ScenarioError;
use super::spec::Scenario;

/// How many recipients one domain group received.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupCount {
    /// The group's name.
    pub name: String,
    /// Its number of domains.
    pub domains: u32,
    /// Recipients written for it.
    pub recipients: u64,
}

/// Splits `total` in proportion to `weights` (largest remainder): the parts add up to
/// `total` and each is within one of its exact share.
pub fn apportion(weights: &[f64], total: u64) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut parts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = total.saturating_sub(parts.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest fractional part first; ties by position, so the split is deterministic.
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// The group index of every recipient, in file order: the apportioned counts, shuffled with
/// `seed` (the same seed gives the same order).
pub fn assign_groups(groups: &[DomainGroup], total: u64, seed: u64) -> Vec<u16> {
    let weights: Vec<f64> = groups.iter().map(|g| g.weight).collect();
    let counts = apportion(&weights, total);
    let mut order: Vec<u16> = Vec::with_capacity(total as usize);
    for (g, count) in counts.iter().enumerate() {
        order.extend(std::iter::repeat_n(g as u16, *count as usize));
    }
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    order
}

/// Writes `email,first_name` rows: recipient `i` is `u{i}@<domain>`, where the domain is the
/// next one (round-robin) of the group the shuffle gave row `i`. Returns the count per group.
pub fn write_recipients(path: &Path, scenario: &Scenario) -> Result<Vec<GroupCount>, ScenarioError> {
    let groups = &scenario.domains;
    if groups.len() > usize::from(u16::MAX) {
        return Err(ScenarioError::Invalid {
            file: path.to_path_buf(),
            field: "domains".to_owned(),
            value: groups.len().to_string(),
            reason: format!("at most {} groups", u16::MAX),
        });
    }
    if let Some(index) = groups.iter().position(DomainGroup::is_empty) {
        return Err(ScenarioError::Invalid {
            file: path.to_path_buf(),
            field: format!("domains[{index}].count"),
            value: "0".to_owned(),
            reason: "a group needs at least one domain".to_owned(),
        });
    }
    let order = assign_groups(groups, scenario.recipients, scenario.seed);
    let file = std::fs::File::create(path).map_err(ScenarioError::io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let names: Vec<Vec<String>> = groups.iter().map(|g| g.domains().collect()).collect();
    let mut next = vec![0u64; groups.len()];
    let write = |out: &mut BufWriter<std::fs::File>, next: &mut [u64]| -> std::io::Result<()> {
        out.write_all(b"email,first_name\n")?;
        for (i, &g) in order.iter().enumerate() {
            let (g, k) = (usize::from(g), &mut next[usize::from(g)]);
            let domains = &names[g];
            let domain = &domains[(*k % domains.len().max(1) as u64) as usize];
            *k += 1;
            writeln!(out, "u{i}@{domain},Reader{i}")?;
        }
        out.flush()
    };
    write(&mut out, &mut next).map_err(ScenarioError::io(path))?;
    Ok(groups
        .iter()
        .zip(next)
        .map(|(g, recipients)| GroupCount {
            name: g.name.clone(),
            domains: g.len(),
            recipients,
        })
        .collect())
}

/// A text body of exactly `size` bytes (ASCII, LF line ends, lines under 78 characters): a
/// personalised greeting, then filler lines.
pub fn body(size: usize) -> String {
    const GREETING: &str = "Hello {{first_name}}, this is a volley-bench scenario message.\n\n";
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut text = String::with_capacity(size);
    text.push_str(&GREETING[..GREETING.len().min(size)]);
    let mut start = 0usize;
    while text.len() < size {
        let room = size - text.len();
        let line_len = 63.min(room.saturating_sub(1));
        for j in 0..line_len {
            text.push(char::from(ALPHABET[(start + j) % ALPHABET.len()]));
        }
        text.push('\n');
        start += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn apportion_adds_up_and_stays_within_one() {
        let weights = [30.0, 15.0, 10.0, 45.0];
        for total in [0u64, 1, 7, 999, 100_000, 123_457] {
            let parts = apportion(&weights, total);
            assert_eq!(parts.iter().sum::<u64>(), total);
            for (w, p) in weights.iter().zip(&parts) {
                let exact = w / 100.0 * total as f64;
                assert!((*p as f64 - exact).abs() < 1.0, "{p} vs {exact}");
            }
        }
        // Weights need not add up to 100.
        assert_eq!(apportion(&[1.0, 3.0], 8), [2, 6]);
    }

    #[test]
    fn the_default_mix_is_written_deterministically() {
        let scenario = Scenario::builtin().unwrap();
        let scenario = Scenario {
            recipients: 20_000,
            ..scenario
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        let counts = write_recipients(&a, &scenario).unwrap();
        write_recipients(&b, &scenario).unwrap();
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text, std::fs::read_to_string(&b).unwrap(), "same seed, same file");
        let got: Vec<u64> = counts.iter().map(|c| c.recipients).collect();
        assert_eq!(got, [6_000, 3_000, 2_000, 9_000]);

        // Count per domain from the file itself.
        let mut per_domain = std::collections::HashMap::<&str, u64>::new();
        let mut rows = 0;
        for line in text.lines().skip(1) {
            let domain = line.split('@').nth(1).unwrap().split(',').next().unwrap();
            *per_domain.entry(domain).or_default() += 1;
            rows += 1;
        }
        assert_eq!(rows, 20_000);
        assert_eq!(per_domain["gmail-like.bench.test"], 6_000);
        assert_eq!(per_domain["yahoo-like.bench.test"], 2_000);
        let tail: Vec<u64> = (0..1000)
            .map(|i| per_domain[format!("tail{i}.bench.test").as_str()])
            .collect();
        assert!(tail.iter().all(|&n| n == 9), "9,000 over 1,000 tail domains: {tail:?}");
        // Shuffled: the first 1,000 rows hold every group, near its share.
        let head_gmail = text
            .lines()
            .skip(1)
            .take(1000)
            .filter(|l| l.contains("@gmail-like"))
            .count();
        assert!(
            (200..=400).contains(&head_gmail),
            "{head_gmail} gmail-like rows in the first 1,000"
        );

        let other = Scenario { seed: 2, ..scenario };
        let c = dir.path().join("c.csv");
        write_recipients(&c, &other).unwrap();
        assert_ne!(
            text,
            std::fs::read_to_string(&c).unwrap(),
            "another seed, another order"
        );
        assert!(write_recipients(Path::new("/nonexistent/dir/r.csv"), &other).is_err());
    }

    #[test]
    fn body_has_the_exact_size() {
        for size in [64, 100, 4096, 65_537] {
            let text = body(size);
            assert_eq!(text.len(), size);
            assert!(text.starts_with("Hello {{first_name}}"));
            assert!(text.lines().all(|l| l.len() < 78));
        }
    }
}

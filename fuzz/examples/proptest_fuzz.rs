//! Fallback fuzz runner for machines where cargo-fuzz cannot build: runs one harness of
//! `volley_fuzz` for N proptest cases (arbitrary bytes, and seeds from `fuzz/corpus/TARGET/`
//! mutated by byte edits), shrinks a failing input and saves it to
//! `fuzz/artifacts/TARGET/proptest-crash-N`.
//!
//! `cargo run --release --no-default-features --example proptest_fuzz -- TARGET RUNS`

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// One byte edit applied to a seed: (kind, position, byte).
type Edit = (u8, usize, u8);

fn mutate(mut seed: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for &(kind, at, byte) in edits {
        let at = if seed.is_empty() { 0 } else { at % (seed.len() + 1) };
        match kind % 5 {
            0 => seed.insert(at, byte),
            1 if at < seed.len() => {
                seed.remove(at);
            }
            2 if at < seed.len() => seed[at] = byte,
            3 => {
                // Insert one of the bytes parsers care about.
                let special = b"\r\n\0\",={}[]#.-: \\\t\xEF\xFF9";
                seed.insert(at, special[usize::from(byte) % special.len()]);
            }
            _ => {
                // Duplicate a short run (repeats lines, brackets, placeholders).
                let end = (at + usize::from(byte % 32)).min(seed.len());
                let run = seed[at.min(end)..end].to_vec();
                seed.splice(at..at, run);
            }
        }
    }
    seed
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(runs)) = (args.get(1), args.get(2).and_then(|r| r.parse::<u32>().ok())) else {
        eprintln!("usage: proptest_fuzz TARGET RUNS");
        return ExitCode::from(2);
    };
    let Some(&(_, harness)) = volley_fuzz::TARGETS.iter().find(|(n, _)| n == name) else {
        eprintln!("unknown target {name}");
        return ExitCode::from(2);
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<Vec<u8>> = fs::read_dir(root.join("corpus").join(name))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::read(e.path()).ok())
        .filter(|s| s.len() <= 64 * 1024)
        .collect();
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let seeds_n = seeds.len();
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (0..seeds_n, prop::collection::vec(any::<Edit>(), 0..8))
            .prop_map(move |(i, edits)| mutate(seeds[i].clone(), &edits)),
    ];
    let config = Config {
        cases: runs,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    // Keep the output to the shrunk failure, not every panic met while shrinking.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let result = runner.run(&strategy, |data| {
        std::panic::catch_unwind(|| harness(&data)).map_err(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            TestCaseError::fail(msg)
        })
    });
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!("{name}: {runs} runs in {secs:.1} s, no crash");
            ExitCode::SUCCESS
        }
        Err(TestError::Fail(reason, input)) => {
            let dir = root.join("artifacts").join(name);
            let _ = fs::create_dir_all(&dir);
            let file = dir.join(format!("proptest-crash-{}", std::process::id()));
            let _ = fs::write(&file, &input);
            println!("{name}: CRASH after {secs:.1} s: {reason}");
            println!(
                "  input ({} bytes) saved to {}: {:?}",
                input.len(),
                file.display(),
                String::from_utf8_lossy(&input)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

//! Times a duplicate scan of a recipient file, or (with `--read-only`) a plain
//! `RecipientReader` pass over it, for comparison. Peak RSS via `/usr/bin/time -v`:
//!
//! ```text
//! awk 'BEGIN{print "email,name"; for(i=0;i<10000000;i++) printf "u%d@d%d.test,N%d\n", i%9000000, i%10000, i}' > /tmp/r.csv
//! cargo build --release -p volley-scheduler --example scan_duplicates
//! /usr/bin/time -v target/release/examples/scan_duplicates /tmp/r.csv email /tmp
//! /usr/bin/time -v target/release/examples/scan_duplicates /tmp/r.csv email /tmp --read-only
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use volley_scheduler::recipients::{scan_duplicates, RecipientReader, Row};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, column, work_dir, rest @ ..] = args.as_slice() else {
        eprintln!("usage: scan_duplicates FILE EMAIL_COLUMN WORK_DIR [--read-only]");
        return ExitCode::from(2);
    };
    let (path, work_dir) = (PathBuf::from(path), PathBuf::from(work_dir));
    let start = Instant::now();
    let outcome = if rest.iter().any(|a| a == "--read-only") {
        read_only(&path, column)
    } else {
        scan_duplicates(&path, column, &work_dir)
            .map(|scan| {
                format!(
                    "rows {} distinct {} duplicates {} (line set {} bytes)",
                    scan.rows,
                    scan.distinct,
                    scan.duplicates.len(),
                    scan.duplicates.memory_bytes()
                )
            })
            .map_err(|e| e.to_string())
    };
    match outcome {
        Ok(summary) => {
            println!("{summary} in {:.2?}", start.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_only(path: &std::path::Path, column: &str) -> Result<String, String> {
    let (mut rows, mut valid) = (0u64, 0u64);
    for row in RecipientReader::open(path, column).map_err(|e| e.to_string())? {
        rows += 1;
        valid += u64::from(matches!(row.map_err(|e| e.to_string())?, Row::Recipient(_)));
    }
    Ok(format!("rows {rows} valid {valid} (read only)"))
}

//! The scripts a developer runs (`scripts/*.sh`, `.ci/run`) never stop, restart or kill a
//! service of the machine: the test suite starts private instances on free loopback ports
//! instead (a `service postfix stop` in scripts/test.sh once stopped a developer's mail server).

use std::path::Path;

/// Commands that stop or restart something the scripts did not start.
const FORBIDDEN: &[&str] = &[
    "service ",
    "systemctl ",
    "invoke-rc.d",
    "/etc/init.d/",
    "pkill",
    "killall",
    "postfix stop",
    "postfix reload",
];

#[test]
fn scripts_leave_the_machines_services_alone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<_> = std::fs::read_dir(repo.join("scripts"))
        .expect("scripts/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(repo.join(".ci/run"));
    // The benchmark scripts too (benches/peers.sh once ran `service postfix stop`).
    for bench in [
        "benches/peers.sh",
        "benches/peers/postfix-relay.sh",
        "benches/dns-run.sh",
    ] {
        scripts.push(repo.join(bench));
    }
    assert!(scripts.iter().any(|p| p.ends_with("test.sh")), "{scripts:?}");
    for script in &scripts {
        let text = std::fs::read_to_string(script).expect("read script");
        for (i, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or_default();
            for bad in FORBIDDEN {
                assert!(
                    !code.contains(bad),
                    "{}:{}: {bad:?} would touch a service of the machine: {line}",
                    script.display(),
                    i + 1
                );
            }
        }
    }
}

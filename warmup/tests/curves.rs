//! The shipped warm-up curves load and never decrease; bad curve files are refused with errors
//! that name the file, day, provider, field and value.

use std::path::{Path, PathBuf};

use volley_warmup::{Curve, CurveSet, Providers};

const SHIPPED: [&str; 3] = ["conservative", "standard", "aggressive"];

fn curves_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/warmup")
}

#[test]
fn shipped_curves_load_cover_every_group_and_never_decrease() {
    let dir = curves_dir();
    let set = CurveSet::load(&dir, SHIPPED).expect("shipped curves");
    for name in SHIPPED {
        let curve = set.get(name).expect("loaded");
        curve
            .check_covers(&Providers::default(), &dir.join(format!("{name}.toml")))
            .expect("covers the default groups");
        for provider in ["gmail", "microsoft", "yahoo", "other"] {
            let mut prev = curve.caps(1, provider).expect("day 1 caps");
            for day in 2..=curve.last_day() {
                let caps = curve.caps(day, provider).expect("caps until last_day");
                assert!(
                    caps.daily >= prev.daily && caps.hourly >= prev.hourly,
                    "{name} day {day} {provider}"
                );
                assert!(caps.hourly <= caps.daily);
                prev = caps;
            }
            assert_eq!(
                curve.caps(curve.last_day() + 1, provider),
                None,
                "{name} is warm after its end"
            );
        }
    }
    let standard = set.get("standard").expect("standard");
    let day1 = standard.caps(1, "gmail").expect("caps");
    assert_eq!((day1.daily, day1.hourly), (150, 20));
    assert_eq!(
        standard.caps(2, "gmail").map(|c| c.daily),
        Some(210),
        "about x1.4 per day"
    );
    assert_eq!(standard.last_day(), 30);
    // A group the curve does not list gets "other"'s caps.
    assert_eq!(standard.caps(1, "corp"), standard.caps(1, "other"));
}

fn error_of(text: &str) -> String {
    match Curve::parse(text, Path::new("config/warmup/bad.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const DAY1: &str = "name = \"bad\"\nlast_day = 5\n[[day]]\nday = 1\n\
                    gmail = { daily = 100, hourly = 10 }\nother = { daily = 200, hourly = 20 }\n";

#[test]
fn a_valid_curve_holds_unlisted_days_and_partial_days() {
    let text = format!("{DAY1}[[day]]\nday = 3\ngmail = {{ daily = 300, hourly = 30 }}\n");
    let curve = Curve::parse(&text, Path::new("ok.toml")).expect("valid");
    assert_eq!(curve.caps(2, "gmail").map(|c| c.daily), Some(100));
    assert_eq!(curve.caps(3, "gmail").map(|c| c.daily), Some(300));
    assert_eq!(curve.caps(5, "other").map(|c| c.daily), Some(200));
    assert_eq!(curve.caps(6, "gmail"), None);
    assert_eq!(
        curve.caps(0, "gmail"),
        curve.caps(1, "gmail"),
        "before the start counts as day 1"
    );
}

#[test]
fn bad_curves_name_file_day_provider_field_and_value() {
    let cases = [
        (
            DAY1.replace("hourly = 10", "hourly = 0"),
            "config/warmup/bad.toml: day 1, gmail.hourly = 0: caps must be positive",
        ),
        (
            DAY1.replace("hourly = 10", "hourly = 101"),
            "day 1, gmail.hourly = 101: the hourly cap must not exceed the daily cap (100)",
        ),
        (
            format!("{DAY1}[[day]]\nday = 2\ngmail = {{ daily = 90, hourly = 10 }}\n"),
            "day 2, gmail.daily = 90: caps must not decrease",
        ),
        (
            format!("{DAY1}[[day]]\nday = 2\nother = {{ daily = 200, hourly = 19 }}\n"),
            "day 2, other.hourly = 19: caps must not decrease",
        ),
        (
            format!("{DAY1}[[day]]\nday = 1\ngmail = {{ daily = 200, hourly = 10 }}\n"),
            "day = 1: days must increase",
        ),
        (
            format!("{DAY1}[[day]]\nday = 2\nyahoo = {{ daily = 200, hourly = 10 }}\n"),
            "day 2, yahoo: every provider group must be listed on day 1",
        ),
        (
            DAY1.replace("other = { daily = 200, hourly = 20 }", ""),
            "day 1, other: day 1 must list the fallback group",
        ),
        (
            DAY1.replace("day = 1", "day = 2"),
            "day = 2: the first [[day]] must be day 1",
        ),
        (
            DAY1.replace("hourly = 10 }", "hourly = 10, monthly = 5 }"),
            "day 1, gmail.monthly = 5: unknown field",
        ),
        (
            DAY1.replace("daily = 100", "daily = -3"),
            "day 1, gmail.daily = -3: caps must be positive",
        ),
        (
            DAY1.replace("last_day = 5", "last_day = 0"),
            "last_day = 0: last_day must be at least",
        ),
        (format!("{DAY1}warm = true\n"), "bad.toml"),
    ];
    for (text, expected) in cases {
        let e = error_of(&text);
        assert!(e.contains(expected), "expected {expected:?} in {e:?}");
    }
}

#[test]
fn a_curve_file_must_be_named_after_its_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fast.toml"), DAY1).expect("write");
    let e = CurveSet::load(dir.path(), ["fast"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("fast.toml: name = \"bad\""), "{e}");
}

#[test]
fn a_misspelled_curve_name_lists_the_shipped_curves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = CurveSet::load(dir.path(), ["standrad"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("no warm-up curve \"standrad\"")
            && e.contains("conservative, standard, aggressive")
            && e.contains("standrad.toml"),
        "{e}"
    );
    assert!(!e.contains("No such file"), "{e}");
    // A curve file that exists but cannot be read is named as such.
    std::fs::create_dir(dir.path().join("odd.toml")).expect("a folder named like a curve");
    let e = CurveSet::load(dir.path(), ["odd"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("odd.toml: cannot read warm-up curve: not a regular file"),
        "{e}"
    );
}

#[test]
fn shipped_curves_are_used_when_the_folder_has_no_such_file_and_a_file_overrides_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = CurveSet::load(dir.path(), SHIPPED).expect("embedded curves");
    let shipped = CurveSet::load(&curves_dir(), SHIPPED).expect("shipped files");
    for name in SHIPPED {
        assert_eq!(set.get(name), shipped.get(name), "{name}");
    }
    let own = DAY1.replace("name = \"bad\"", "name = \"standard\"");
    std::fs::write(dir.path().join("standard.toml"), own).expect("write");
    let set = CurveSet::load(dir.path(), ["standard"]).expect("own standard");
    assert_ne!(set.get("standard"), shipped.get("standard"));
}

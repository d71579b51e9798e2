//! Warm-up curves: per day since an IP's warm-up start, a daily and an hourly cap per provider
//! group, read from TOML files under `config/warmup/` (the format is described in the header of
//! each shipped file) and validated at load.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::provider::{Providers, OTHER};

/// How much one source IP may send to one provider group on one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Messages per UTC day.
    pub daily: u64,
    /// Messages per UTC hour.
    pub hourly: u64,
}

/// A named warm-up curve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Curve {
    name: String,
    last_day: u32,
    /// (first day, caps per provider) sorted by day; every entry lists every provider.
    steps: Vec<(u32, BTreeMap<String, Caps>)>,
}

/// A curve file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CurveError {
    /// The file could not be read.
    #[error("{path}: cannot read warm-up curve: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: volley_files::FileError,
    },
    /// Neither a shipped curve nor a file of that name: a misspelling, most likely.
    #[error("no warm-up curve {name:?}: not a shipped curve ({}) and no file {}", shipped_names(), .path.display())]
    Unknown {
        /// The name asked for.
        name: String,
        /// Where its file would be: `<curves_dir>/<name>.toml`.
        path: PathBuf,
    },
    /// The file is not valid TOML or has unknown or mistyped top-level fields.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        source: Box<toml::de::Error>,
    },
    /// A value breaks a rule of the format.
    #[error("{path}: {at}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where in the file: day, provider, field and value.
        at: Box<Place>,
        /// The rule broken.
        reason: String,
    },
}

/// Where in a curve file a problem is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The `[[day]]` entry's day, when the problem is in one.
    pub day: Option<u32>,
    /// The provider group, when the problem is in its caps.
    pub provider: Option<String>,
    /// The field (`daily`, `hourly`, `day`, `last_day`, `name`).
    pub field: Option<String>,
    /// The offending value, as written.
    pub value: Option<String>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(day) = self.day {
            parts.push(format!("day {day}"));
        }
        let field = match (&self.provider, &self.field) {
            (Some(p), Some(field)) => Some(format!("{p}.{field}")),
            (Some(p), None) => Some(p.clone()),
            (None, Some(field)) => Some(field.clone()),
            (None, None) => None,
        };
        match (field, &self.value) {
            (Some(field), Some(v)) => parts.push(format!("{field} = {v}")),
            (Some(field), None) => parts.push(field),
            (None, Some(v)) => parts.push(format!("value {v}")),
            (None, None) => {}
        }
        if parts.is_empty() {
            parts.push("curve".into());
        }
        f.write_str(&parts.join(", "))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurve {
    name: String,
    last_day: u32,
    day: Vec<toml::Table>,
}

impl Curve {
    /// Reads and validates a curve file.
    pub fn load(path: &Path) -> Result<Curve, CurveError> {
        let text =
            volley_files::read_config_file(path, volley_files::CONFIG_MAX).map_err(|source| CurveError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Curve::parse(&text, path)
    }

    /// Parses and validates a curve; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Curve, CurveError> {
        let raw: RawCurve = toml::from_str(text).map_err(|e| CurveError::Toml {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let invalid = |at: Place, reason: &str| CurveError::Invalid {
            path: path.to_path_buf(),
            at: Box::new(at),
            reason: reason.to_string(),
        };
        let top = |field: &str, value: String| Place {
            field: Some(field.into()),
            value: Some(value),
            ..Place::default()
        };
        if raw.name.trim().is_empty() {
            return Err(invalid(
                top("name", format!("{:?}", raw.name)),
                "the name must not be empty",
            ));
        }
        let mut steps: Vec<(u32, BTreeMap<String, Caps>)> = Vec::new();
        for table in &raw.day {
            let (day, listed) = parse_day(table).map_err(|(at, reason)| invalid(at, &reason))?;
            let at = |provider: &str, field: &str, value: u64| Place {
                day: Some(day),
                provider: Some(provider.into()),
                field: Some(field.into()),
                value: Some(value.to_string()),
            };
            let mut caps = match steps.last() {
                None if day != 1 => {
                    return Err(invalid(top("day", day.to_string()), "the first [[day]] must be day 1"))
                }
                None => BTreeMap::new(),
                Some((prev, _)) if day <= *prev => {
                    let reason = format!("days must increase (the previous entry is day {prev})");
                    return Err(invalid(top("day", day.to_string()), &reason));
                }
                Some((_, prev)) => prev.clone(),
            };
            for (provider, new) in listed {
                for (field, value) in [("daily", new.daily), ("hourly", new.hourly)] {
                    if value == 0 {
                        return Err(invalid(
                            at(&provider, field, value),
                            "caps must be positive whole numbers",
                        ));
                    }
                }
                if new.hourly > new.daily {
                    let reason = format!("the hourly cap must not exceed the daily cap ({})", new.daily);
                    return Err(invalid(at(&provider, "hourly", new.hourly), &reason));
                }
                match caps.get(&provider) {
                    None if day != 1 => {
                        let place = Place {
                            day: Some(day),
                            provider: Some(provider.clone()),
                            ..Place::default()
                        };
                        return Err(invalid(place, "every provider group must be listed on day 1"));
                    }
                    Some(old) if new.daily < old.daily => {
                        let reason = format!("caps must not decrease (the day before allows {})", old.daily);
                        return Err(invalid(at(&provider, "daily", new.daily), &reason));
                    }
                    Some(old) if new.hourly < old.hourly => {
                        let reason = format!("caps must not decrease (the day before allows {})", old.hourly);
                        return Err(invalid(at(&provider, "hourly", new.hourly), &reason));
                    }
                    _ => {}
                }
                caps.insert(provider, new);
            }
            if day == 1 && !caps.contains_key(OTHER) {
                let place = Place {
                    day: Some(1),
                    provider: Some(OTHER.into()),
                    ..Place::default()
                };
                return Err(invalid(place, "day 1 must list the fallback group \"other\""));
            }
            steps.push((day, caps));
        }
        let Some(&(last_listed, _)) = steps.last() else {
            return Err(invalid(Place::default(), "a curve needs at least one [[day]] (day 1)"));
        };
        if raw.last_day < last_listed {
            let reason = format!("last_day must be at least the last listed day ({last_listed})");
            return Err(invalid(top("last_day", raw.last_day.to_string()), &reason));
        }
        Ok(Curve {
            name: raw.name,
            last_day: raw.last_day,
            steps,
        })
    }

    /// The curve's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last day with caps; from the next day on the IP is warm.
    pub fn last_day(&self) -> u32 {
        self.last_day
    }

    /// The provider groups the curve lists.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.steps
            .first()
            .into_iter()
            .flat_map(|(_, caps)| caps.keys().map(String::as_str))
    }

    /// The caps on warm-up day `day` (1 = the start date; 0, before the start, counts as day 1)
    /// for `provider`; a group the curve does not list gets the caps of `"other"`. `None`: no
    /// limit, the IP is warm (past `last_day`).
    pub fn caps(&self, day: u32, provider: &str) -> Option<Caps> {
        if day > self.last_day {
            return None;
        }
        let day = day.max(1);
        let (_, caps) = self.steps.iter().rev().find(|(first, _)| *first <= day)?;
        caps.get(provider).or_else(|| caps.get(OTHER)).copied()
    }

    /// Checks that the curve lists every configured provider group.
    pub fn check_covers(&self, providers: &Providers, path: &Path) -> Result<(), CurveError> {
        match providers.names().iter().find(|n| self.caps_listed(n).is_none()) {
            None => Ok(()),
            Some(missing) => Err(CurveError::Invalid {
                path: path.to_path_buf(),
                at: Box::new(Place {
                    day: Some(1),
                    provider: Some(missing.clone()),
                    ..Place::default()
                }),
                reason: "a configured provider group has no caps in this curve".into(),
            }),
        }
    }

    fn caps_listed(&self, provider: &str) -> Option<Caps> {
        self.steps.first().and_then(|(_, caps)| caps.get(provider)).copied()
    }
}

type Problem = (Place, String);

/// One `[[day]]` table: `day = N` and `provider = { daily = D, hourly = H }` entries.
fn parse_day(table: &toml::Table) -> Result<(u32, Vec<(String, Caps)>), Problem> {
    let place = |day: Option<u32>, provider: Option<&str>, field: &str, value: &toml::Value| Place {
        day,
        provider: provider.map(str::to_string),
        field: Some(field.into()),
        value: Some(value.to_string()),
    };
    let day = match table.get("day") {
        None => return Err((Place::default(), "a [[day]] entry has no `day = N`".into())),
        Some(v) => match v.as_integer().and_then(|d| u32::try_from(d).ok()).filter(|d| *d >= 1) {
            Some(d) => d,
            None => return Err((place(None, None, "day", v), "day must be a whole number >= 1".into())),
        },
    };
    let mut listed = Vec::new();
    for (provider, value) in table.iter().filter(|(k, _)| *k != "day") {
        let Some(fields) = value.as_table() else {
            let reason = "expected caps { daily = N, hourly = N }".to_string();
            return Err((place(Some(day), Some(provider), "caps", value), reason));
        };
        if let Some((field, v)) = fields.iter().find(|(k, _)| *k != "daily" && *k != "hourly") {
            return Err((
                place(Some(day), Some(provider), field, v),
                "unknown field (expected daily, hourly)".into(),
            ));
        }
        let get = |field: &str| match fields.get(field) {
            None => Err((
                Place {
                    day: Some(day),
                    provider: Some(provider.clone()),
                    field: Some(field.into()),
                    value: None,
                },
                "missing".to_string(),
            )),
            Some(v) => v.as_integer().and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
                (
                    place(Some(day), Some(provider), field, v),
                    "caps must be positive whole numbers".into(),
                )
            }),
        };
        let caps = Caps {
            daily: get("daily")?,
            hourly: get("hourly")?,
        };
        listed.push((provider.clone(), caps));
    }
    Ok((day, listed))
}

/// The curves Volley ships (`config/warmup/<name>.toml`), by name.
pub const SHIPPED: [(&str, &str); 3] = [
    ("conservative", include_str!("../../config/warmup/conservative.toml")),
    ("standard", include_str!("../../config/warmup/standard.toml")),
    ("aggressive", include_str!("../../config/warmup/aggressive.toml")),
];

/// The curves IPs name, loaded from `<dir>/<name>.toml`.
#[derive(Clone, Debug, Default)]
pub struct CurveSet {
    curves: BTreeMap<String, Curve>,
}

/// The names of the shipped curves, comma-separated.
fn shipped_names() -> String {
    SHIPPED.map(|(name, _)| name).join(", ")
}

impl CurveSet {
    /// Loads each named curve from `dir/<name>.toml` (a shipped curve when there is no such
    /// file); a file's `name` must match its file name.
    pub fn load<'a>(dir: &Path, names: impl IntoIterator<Item = &'a str>) -> Result<CurveSet, CurveError> {
        let mut set = CurveSet::default();
        for name in names {
            if set.curves.contains_key(name) {
                continue;
            }
            let path = dir.join(format!("{name}.toml"));
            let shipped = SHIPPED.iter().find(|(n, _)| *n == name);
            let curve = match (path.exists(), shipped) {
                (false, Some((_, text))) => Curve::parse(text, &Path::new("(shipped)").join(format!("{name}.toml")))?,
                (false, None) => {
                    return Err(CurveError::Unknown {
                        name: name.to_owned(),
                        path,
                    })
                }
                (true, _) => Curve::load(&path)?,
            };
            if curve.name != name {
                return Err(CurveError::Invalid {
                    path,
                    at: Box::new(Place {
                        field: Some("name".into()),
                        value: Some(format!("{:?}", curve.name)),
                        ..Place::default()
                    }),
                    reason: format!("the curve's name must match its file name ({name:?})"),
                });
            }
            set.insert(curve);
        }
        Ok(set)
    }

    /// Adds (or replaces) a curve under its name.
    pub fn insert(&mut self, curve: Curve) {
        self.curves.insert(curve.name.clone(), curve);
    }

    /// The curve of that name.
    pub fn get(&self, name: &str) -> Option<&Curve> {
        self.curves.get(name)
    }

    /// Every curve, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Curve> {
        self.curves.values()
    }
}

//! When an event runs: by hand only, on a cron expression in a time zone,
//! every fixed interval, or once at a time.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::job::RunPolicy;

/// Shortest interval accepted for `every`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Longest interval accepted for `every` (a year).
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 86_400);

/// A validated schedule. Serialized as a tagged object, e.g.
/// `{"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}`,
/// `{"type": "every", "every": "15m"}`, `{"type": "at", "at": "2026-12-01T10:00:00Z"}`
/// or `{"type": "manual"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Schedule {
    /// Only manual or API triggers.
    Manual,
    /// A 5- or 6-field cron expression (seconds optional), evaluated in an IANA time zone.
    Cron { cron: String, timezone: String },
    /// A true fixed interval, in seconds, from the event's anchor.
    Every {
        #[serde(with = "interval_text")]
        every: Duration,
    },
    /// Once, at this instant.
    At { at: DateTime<Utc> },
}

impl Schedule {
    /// A cron schedule; the expression and the time zone are checked.
    pub fn cron(expression: &str, timezone: &str) -> Result<Schedule, ValidationError> {
        let expression = expression.trim();
        let fields = expression.split_whitespace().count();
        if !expression.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ValidationError::new(
                "schedule.cron",
                format!(
                    "{expression:?} has {fields} fields; expected 5 (minute first) or 6 (second first)"
                ),
            ));
        }
        parser().parse(expression).map_err(|e| {
            ValidationError::new(
                "schedule.cron",
                format!("invalid cron expression {expression:?}: {e}"),
            )
        })?;
        chrono_tz::Tz::from_str(timezone).map_err(|_| {
            ValidationError::new(
                "schedule.timezone",
                format!(
                    "unknown time zone {timezone:?} (use an IANA name such as Europe/Berlin or UTC)"
                ),
            )
        })?;
        Ok(Schedule::Cron {
            cron: expression.to_string(),
            timezone: timezone.to_string(),
        })
    }

    /// A fixed interval written like `90s`, `15m`, `1h30m` or `1d`.
    pub fn every(text: &str) -> Result<Schedule, ValidationError> {
        let every = parse_interval(text)
            .map_err(|message| ValidationError::new("schedule.every", message))?;
        Ok(Schedule::Every { every })
    }

    /// Checks a schedule that arrived already structured (e.g. deserialized
    /// from a request or a row), applying the same rules as the constructors.
    pub fn validate(self) -> Result<Schedule, ValidationError> {
        match self {
            Schedule::Cron { cron, timezone } => Schedule::cron(&cron, &timezone),
            Schedule::Every { every } if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&every) => {
                Err(ValidationError::new(
                    "schedule.every",
                    format!("{} is outside 1s..366d", format_interval(every)),
                ))
            }
            other => Ok(other),
        }
    }
}

/// The fires one scheduler step records for an event, from
/// [`Schedule::plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// Every fire time from the due one up to now, oldest first, each marked
    /// whether it runs (`false`: recorded as missed).
    pub fires: Vec<PlannedFire>,
    /// The next fire time after now, or `None` if the schedule is done.
    pub next: Option<DateTime<Utc>>,
    /// Fires that were missed but are not in `fires` because there were too
    /// many to record one by one ([`MAX_RECORDED_FIRES`]).
    pub unrecorded_misses: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedFire {
    pub at: DateTime<Utc>,
    pub run: bool,
}

/// Most fires one scheduler step records; after a long downtime the older
/// misses are only counted.
pub const MAX_RECORDED_FIRES: usize = 1000;

impl Schedule {
    /// The first fire strictly after `after`. `every` fires at
    /// `anchor + k·interval` (k ≥ 0); `at` fires once; `manual` never.
    pub fn next_fire(&self, anchor: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let _ = (anchor, after);
        todo!()
    }

    /// Where a schedule set (or resumed) at `now` starts: its anchor (the
    /// policy's `start_at`, else `now`) and its first fire, none before
    /// `start_at` and none at or before `now`.
    pub fn start(
        &self,
        policy: &RunPolicy,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let _ = (policy, now);
        todo!()
    }

    /// One scheduler step for a schedule whose next fire `due` has come
    /// (`due <= now`): every fire in `[due, now]`, the misfire policy applied
    /// to those more than [`crate::job::MISFIRE_GRACE`] late, `max_executions`
    /// respected (given `fired` so far), and the next fire after `now`.
    pub fn plan(
        &self,
        policy: &RunPolicy,
        anchor: DateTime<Utc>,
        due: DateTime<Utc>,
        fired: u64,
        now: DateTime<Utc>,
    ) -> FirePlan {
        let _ = (policy, anchor, due, fired, now);
        todo!()
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses `90s`, `15m`, `1h30m`, `2d` (or bare seconds) into a duration within the allowed range.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("invalid interval {text:?} (examples: 30s, 15m, 1h30m, 1d)");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    if let Ok(secs) = text.parse::<u64>() {
        total = secs;
    } else {
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let unit = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            if digits == 0 || unit == 0 {
                return Err(invalid());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            let scale = match &rest[digits..digits + unit] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(invalid()),
            };
            total = value
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(invalid)?;
            rest = &rest[digits + unit..];
        }
    }
    let interval = Duration::from_secs(total);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Err(format!("{text:?} is outside 1s..366d"));
    }
    Ok(interval)
}

/// `90` seconds as `1m30s`, `3600` as `1h`: the largest units first, the
/// form [`parse_interval`] reads back (whole seconds; a fraction is dropped).
/// Public so every place that shows an interval (schedules, event timeouts
/// in the API) writes it the same way.
pub fn format_interval(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 || out.is_empty() {
        out.push_str(&format!("{secs}s"));
    }
    out
}

/// `every` travels as text (`"15m"`), the way users write it.
mod interval_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_interval(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_interval(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_table() {
        let table: [(&str, &str, Result<(), &str>); 10] = [
            ("0 3 * * *", "Europe/Berlin", Ok(())),
            ("*/5 * * * * *", "UTC", Ok(())),
            ("0 0 L * *", "America/New_York", Ok(())),
            ("0 9 * * 1#2", "UTC", Ok(())),
            ("@daily", "UTC", Ok(())),
            ("0 3 * *", "UTC", Err("schedule.cron")),
            ("0 3 * * * * 2026", "UTC", Err("schedule.cron")),
            ("61 3 * * *", "UTC", Err("schedule.cron")),
            ("0 3 * * *", "Mars/Olympus", Err("schedule.timezone")),
            ("0 3 * * *", "", Err("schedule.timezone")),
        ];
        for (expr, tz, want) in table {
            let got = Schedule::cron(expr, tz).map(drop).map_err(|e| e.field);
            assert_eq!(got, want.map_err(String::from), "{expr:?} in {tz:?}");
        }
    }

    #[test]
    fn interval_table() {
        let ok = [
            ("30s", 30),
            ("15m", 900),
            ("1h30m", 5400),
            ("1d", 86_400),
            ("90", 90),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
            assert_eq!(
                parse_interval(&format_interval(Duration::from_secs(secs))),
                Ok(Duration::from_secs(secs)),
                "{text} formats back"
            );
        }
        for bad in ["", "0", "0s", "x", "15 m", "5w", "400d", "-1m"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} should be refused");
        }
    }

    /// The one interval formatter, shared with the server (which used to
    /// keep a copy for event timeouts).
    #[test]
    fn format_interval_writes_what_parse_interval_reads() {
        for (secs, text) in [
            (1, "1s"),
            (90, "1m30s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (86_400 + 5, "1d5s"),
            (366 * 86_400, "366d"),
        ] {
            assert_eq!(format_interval(Duration::from_secs(secs)), text);
            assert_eq!(parse_interval(text), Ok(Duration::from_secs(secs)));
        }
        assert_eq!(format_interval(Duration::ZERO), "0s");
        assert_eq!(format_interval(Duration::from_millis(1500)), "1s");
    }

    #[test]
    fn schedules_travel_as_tagged_json() {
        let table = [
            (Schedule::Manual, r#"{"type":"manual"}"#),
            (
                Schedule::cron("0 3 * * *", "Europe/Berlin").unwrap(),
                r#"{"type":"cron","cron":"0 3 * * *","timezone":"Europe/Berlin"}"#,
            ),
            (
                Schedule::every("1h30m").unwrap(),
                r#"{"type":"every","every":"1h30m"}"#,
            ),
            (
                Schedule::At {
                    at: "2026-12-01T10:00:00Z".parse().unwrap(),
                },
                r#"{"type":"at","at":"2026-12-01T10:00:00Z"}"#,
            ),
        ];
        for (schedule, json) in table {
            assert_eq!(serde_json::to_string(&schedule).unwrap(), json);
            let back: Schedule = serde_json::from_str(json).unwrap();
            assert_eq!(back.validate().unwrap(), schedule);
        }
        let bad: Schedule =
            serde_json::from_str(r#"{"type":"cron","cron":"nope","timezone":"UTC"}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "schedule.cron");
    }
}

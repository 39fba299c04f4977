//! Cron fire times against an independent evaluator of Debian cron's rules.
//!
//! Thousands of generated cases (expression × time zone × start instant,
//! many of them just before, inside or after a DST change) are given to
//! `tests/debian_cron.py`, which evaluates them with croniter (Debian's
//! `python3-croniter`, a third-party implementation that shares no code
//! with Cronium or croner) and Python's own time-zone data, under Debian
//! cron's rules. Cronium's next fire times must be exactly the ones it
//! expects: Debian's, with only the DST choices `docs/scheduling.md` lists
//! as differences applied, each by name. Every difference met is counted
//! and printed.
//!
//! The generator is seeded: the seed is printed, and
//! `CRONIUM_CRON_SEED=<seed> cargo test -p cronium-core --test debian_cron`
//! runs the same cases again (`CRONIUM_CRON_CASES` changes how many;
//! `CRONIUM_CRON_DUMP=FILE` keeps the evaluator's input, one JSON case a
//! line, to feed `tests/debian_cron.py` by hand).
//!
//! The evaluator must be installed (`scripts/test.sh` installs
//! `python3-croniter`); without it this test fails, it does not skip.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, Datelike, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use cronium_core::schedule::Schedule;
use serde_json::{Value, json};

const PYTHON: &str = "/usr/bin/python3";
const EVALUATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/debian_cron.py");
const DEFAULT_SEED: u64 = 0x15_c7_0b_de_b1_a0;
const DEFAULT_CASES: usize = 4000;
/// Next fires compared per case.
const FIRES: usize = 8;
/// Fires are compared up to this long after the start (rare expressions
/// such as Feb 29 on a Monday have fewer than `FIRES` in it).
const HORIZON_DAYS: i64 = 8 * 366;
/// Zones with hour-long DST changes at different local hours, a half-hour
/// one (Lord Howe), one at 02:45 (Chatham), and two without DST.
const ZONES: [&str; 6] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "UTC",
];
/// Starts are drawn from these years, where every zone above has kept its
/// current rules (and both time-zone databases agree).
const YEARS: std::ops::Range<i32> = 2008..2031;

/// SplitMix64: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.range(1, 100) <= percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u32 - 1) as usize]
    }
}

/// One field in Debian's syntax: `*`, `*/n`, `a`, `a-b`, `a-b/n` and lists
/// of these (ascending ranges only; Debian silently sets nothing for
/// `5-2`). `hot` values are drawn more often (the hours of DST changes).
fn field(rng: &mut Rng, lo: u32, hi: u32, hot: &[u32]) -> String {
    let value = |rng: &mut Rng| {
        if !hot.is_empty() && rng.chance(50) {
            *rng.pick(hot)
        } else {
            rng.range(lo, hi)
        }
    };
    let step = |rng: &mut Rng| rng.range(2, ((hi - lo) / 2).max(2));
    let part = |rng: &mut Rng| match rng.range(0, 9) {
        0..=4 => value(rng).to_string(),
        5..=6 => {
            let a = value(rng);
            let b = rng.range(a, hi);
            format!("{a}-{b}")
        }
        7..=8 => {
            let a = value(rng);
            let b = rng.range(a, hi);
            format!("{a}-{b}/{}", step(rng))
        }
        _ => format!("*/{}", step(rng)),
    };
    match rng.range(0, 19) {
        0..=5 => "*".to_string(),
        6..=8 => format!("*/{}", step(rng)),
        9..=15 => part(rng),
        _ => {
            let n = rng.range(2, 3);
            (0..n).map(|_| part(rng)).collect::<Vec<_>>().join(",")
        }
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Values to draw more often: those of a DST change the start is near, so
/// that many cases fire in a skipped or repeated hour.
#[derive(Default)]
struct Hint {
    hours: Vec<u32>,
    day: Vec<u32>,
    month: Vec<u32>,
    weekday: Vec<u32>,
}

fn expression(rng: &mut Rng, hint: &Hint) -> String {
    match rng.range(0, 99) {
        0..=1 => {
            return rng
                .pick(&["45 10 */9 */3 */2", "0 22 */9 10 4"])
                .to_string();
        }
        2..=4 => {
            return rng
                .pick(&[
                    "@hourly",
                    "@daily",
                    "@weekly",
                    "@monthly",
                    "@yearly",
                    "@annually",
                ])
                .to_string();
        }
        _ => {}
    }
    let minute = field(rng, 0, 59, &[0, 30, 45]);
    let hot_hours = if hint.hours.is_empty() {
        &[0, 1, 2, 3][..]
    } else {
        &hint.hours
    };
    let hour = field(rng, 0, 23, hot_hours);
    // Near a DST change, half the expressions fire every day (or every
    // such weekday), so that they reach the change.
    if !hint.hours.is_empty() && rng.chance(50) {
        let dow = if rng.chance(70) {
            "*".to_string()
        } else {
            field(rng, 0, 7, &hint.weekday)
        };
        return format!("{minute} {hour} * * {dow}");
    }
    let dom = if rng.chance(4) {
        "1-31".to_string()
    } else {
        field(rng, 1, 31, &hint.day)
    };
    let month = if rng.chance(8) {
        let a = rng.range(0, 11) as usize;
        if rng.chance(50) {
            MONTHS[a].to_uppercase()
        } else {
            let b = rng.range(a as u32, 11) as usize;
            format!("{}-{}", MONTHS[a], MONTHS[b])
        }
    } else {
        field(rng, 1, 12, &hint.month)
    };
    let dow = match rng.range(0, 24) {
        0 => rng.pick(&["0-6", "1-7", "0-7", "sun-sat"]).to_string(),
        1..=2 => {
            let a = rng.range(0, 6) as usize;
            let b = rng.range(a as u32, 6) as usize;
            format!("{}-{}", DAYS[a], DAYS[b])
        }
        _ => field(rng, 0, 7, &hint.weekday),
    };
    let five = format!("{minute} {hour} {dom} {month} {dow}");
    if rng.chance(12) {
        format!("{} {five}", field(rng, 0, 59, &[0]))
    } else {
        five
    }
}

/// The instants at which `zone`'s offset changes in `YEARS`, to the second.
fn transitions(zone: Tz) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let mut t = Utc.with_ymd_and_hms(YEARS.start, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(YEARS.end, 1, 1, 0, 0, 0).unwrap();
    let step = TimeDelta::hours(6);
    while t < end {
        let next = t + step;
        if offset(t) != offset(next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(t) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        t = next;
    }
    out
}

/// A start instant, and what to favour in the expression: a third of the
/// starts anywhere in `YEARS`, the others near one of the zone's DST
/// changes (right at the edges of the skipped or repeated hour, or within
/// three days before and a day after).
fn start(rng: &mut Rng, zone: Tz, changes: &[DateTime<Utc>]) -> (DateTime<Utc>, Hint) {
    if changes.is_empty() || rng.chance(30) {
        let from = Utc
            .with_ymd_and_hms(YEARS.start, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let to = Utc
            .with_ymd_and_hms(YEARS.end, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let secs = from + (rng.next() % (to - from) as u64) as i64;
        return (DateTime::from_timestamp(secs, 0).unwrap(), Hint::default());
    }
    let change = *rng.pick(changes);
    let offset = if rng.chance(60) {
        *rng.pick(&[
            -5400, -3601, -3600, -3599, -1801, -1800, -60, -1, 0, 1, 59, 1799, 1800, 3599, 3600,
            3601,
        ])
    } else {
        i64::from(rng.range(0, 4 * 86_400)) - 3 * 86_400
    };
    // The wall-clock hours the change skips or repeats, and its date.
    let before = (change - TimeDelta::seconds(1)).with_timezone(&zone);
    let after = change.with_timezone(&zone);
    let (low, high) = (
        before.hour().min(after.hour()),
        before.hour().max(after.hour()),
    );
    let hint = Hint {
        hours: (low..=high).collect(),
        day: vec![after.day()],
        month: vec![after.month()],
        weekday: vec![after.weekday().num_days_from_sunday()],
    };
    (change + TimeDelta::seconds(offset), hint)
}

/// Up to `FIRES` fires after `start`, at or before `horizon`.
fn cronium_fires(schedule: &Schedule, start: DateTime<Utc>, horizon: DateTime<Utc>) -> Vec<i64> {
    let mut out = Vec::new();
    let mut last = start;
    while out.len() < FIRES {
        match schedule.next_fire(start, last) {
            Some(fire) if fire <= horizon => {
                out.push(fire.timestamp());
                last = fire;
            }
            _ => break,
        }
    }
    out
}

fn show(list: &[i64]) -> String {
    let shown: Vec<String> = list
        .iter()
        .map(|s| {
            DateTime::from_timestamp(*s, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .collect();
    format!("[{}]", shown.join(", "))
}

fn ints(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

#[test]
fn cron_fires_match_debian_cron_rules() {
    let seed = std::env::var("CRONIUM_CRON_SEED")
        .ok()
        .map(|s| s.trim().parse::<u64>().expect("CRONIUM_CRON_SEED is a u64"))
        .unwrap_or(DEFAULT_SEED);
    let count = std::env::var("CRONIUM_CRON_CASES")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .expect("CRONIUM_CRON_CASES is a count")
        })
        .unwrap_or(DEFAULT_CASES);
    println!("seed {seed} ({count} cases): rerun with CRONIUM_CRON_SEED={seed}");

    let changes: BTreeMap<&str, Vec<DateTime<Utc>>> = ZONES
        .iter()
        .map(|z| (*z, transitions(z.parse().unwrap())))
        .collect();
    assert!(
        changes["Europe/Berlin"].len() >= 40 && changes["Australia/Lord_Howe"].len() >= 40,
        "the DST changes of the zones were not found"
    );

    let mut rng = Rng(seed);
    let cases: Vec<(String, &str, DateTime<Utc>)> = (0..count)
        .map(|_| {
            let zone = *rng.pick(&ZONES);
            let (start, hint) = start(&mut rng, zone.parse().unwrap(), &changes[zone]);
            (expression(&mut rng, &hint), zone, start)
        })
        .collect();
    let horizon = TimeDelta::days(HORIZON_DAYS);
    let input: String = cases
        .iter()
        .map(|(expr, zone, start)| {
            json!({
                "cron": expr,
                "tz": zone,
                "start": start.timestamp(),
                "horizon": (*start + horizon).timestamp(),
                "n": FIRES,
            })
            .to_string()
                + "\n"
        })
        .collect();

    if let Ok(path) = std::env::var("CRONIUM_CRON_DUMP") {
        std::fs::write(&path, &input).unwrap();
        println!("cases written to {path}");
    }
    let began = Instant::now();
    let mut child = Command::new(PYTHON)
        .arg(EVALUATOR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {PYTHON} (install python3 and python3-croniter; scripts/test.sh does): {e}")
        });
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // A broken pipe means the evaluator died; its stderr says why.
        let _ = stdin.write_all(input.as_bytes());
    });
    let answers: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).expect("evaluator output is JSON"))
        .collect();
    writer.join().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && answers.len() == cases.len(),
        "the Debian cron evaluator failed ({} of {} answers; is python3-croniter installed? \
         scripts/test.sh installs it): {}",
        answers.len(),
        cases.len(),
        String::from_utf8_lossy(&output.stderr)
    );

    let evaluated = began.elapsed();
    let began = Instant::now();
    let mut slowest = (std::time::Duration::ZERO, 0);
    let mut failures = Vec::new();
    let mut differences: BTreeMap<String, usize> = BTreeMap::new();
    let (mut compared, mut dst_cases, mut empty) = (0, 0, 0);
    for (i, ((expr, zone, start), answer)) in cases.iter().zip(&answers).enumerate() {
        let case = format!(
            "case {i} (seed {seed}): {expr:?} in {zone} after {}",
            start.to_rfc3339()
        );
        if let Some(error) = answer.get("error") {
            failures.push(format!("{case}: the evaluator refused it: {error}"));
            continue;
        }
        let schedule = match Schedule::cron(expr, zone) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{case}: Cronium refused it: {e}"));
                continue;
            }
        };
        let want = ints(&answer["cronium"]);
        let one = Instant::now();
        let got = cronium_fires(&schedule, *start, *start + horizon);
        slowest = slowest.max((one.elapsed(), i));
        compared += got.len();
        empty += usize::from(want.is_empty());
        dst_cases += usize::from(answer["dst"].as_bool() == Some(true));
        for name in answer["differences"].as_array().into_iter().flatten() {
            *differences
                .entry(name.as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        if got != want {
            failures.push(format!(
                "{case}\n  Cronium:  {}\n  expected: {}\n  Debian:   {} (differences: {})",
                show(&got),
                show(&want),
                show(&ints(&answer["debian"])),
                answer["differences"]
            ));
        }
    }
    println!(
        "{} cases, {compared} fire times compared, {dst_cases} cases met a skipped or repeated \
         wall-clock time, {empty} cases without fires in {HORIZON_DAYS} days",
        cases.len()
    );
    println!(
        "evaluator {evaluated:.1?}, Cronium {:.1?} (slowest: case {}, {:.1?})",
        began.elapsed(),
        slowest.1,
        slowest.0
    );
    println!("cases whose fires differ from Debian's by a documented DST choice: {differences:?}");
    for failure in failures.iter().take(10) {
        eprintln!("{failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (seed {seed}; the first are above)",
        failures.len(),
        cases.len()
    );
    // The cases must really cover DST changes, and stay cases of real fires.
    assert!(
        dst_cases * 25 >= cases.len(),
        "only {dst_cases} cases met a DST change"
    );
    assert!(empty * 10 < cases.len(), "{empty} cases without fires");
}

//! When an event runs: by hand only, on a cron expression in a time zone,
//! every fixed interval, or once at a time.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::{GapInfo, Tz};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::job::{CATCH_UP_LIMIT, MISFIRE_GRACE, MisfirePolicy, RunPolicy};

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
        parse(expression).map_err(|e| {
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
    /// `anchor + k·interval` (k ≥ 0); `at` fires once; `manual` never; `cron`
    /// fires as described in `docs/scheduling.md` (DST included). A cron
    /// schedule that does not validate, or that matches no date before the
    /// year 5000, has no next fire.
    ///
    /// The result is always later than `after`, so a caller that passes the
    /// last fire it recorded can never get that fire again, whatever the
    /// clock says.
    pub fn next_fire(&self, anchor: DateTime<Utc>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::At { at } => (*at > after).then_some(*at),
            Schedule::Every { every } => Grid::new(anchor, *every)?.after(after),
            Schedule::Cron { cron, timezone } => {
                CronClock::new(cron, timezone)?.walk_after(after).next()
            }
        }
    }

    /// Where a schedule set (or resumed) at `now` starts: its anchor (the
    /// policy's `start_at`, else `now`) and its first fire, none before
    /// `start_at` and none at or before `now`. A fire exactly at a future
    /// `start_at` counts (an `every` schedule fires at its anchor first).
    pub fn start(
        &self,
        policy: &RunPolicy,
        now: DateTime<Utc>,
    ) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        let anchor = policy.start_at.unwrap_or(now);
        let after = match policy.start_at {
            Some(start) if start > now => start - TimeDelta::nanoseconds(1),
            _ => now,
        };
        (anchor, self.next_fire(anchor, after))
    }

    /// One scheduler step for a schedule whose next fire `due` has come
    /// (`due <= now`): every fire in `[due, now]` (`due` counts as one), the
    /// misfire policy applied to those more than [`crate::job::MISFIRE_GRACE`]
    /// late, `max_executions` respected (given `fired` runs so far), and the
    /// next fire after `now`.
    ///
    /// Runs are counted in time order: the fire that uses up
    /// `max_executions` is the last one listed, and `next` is then `None`.
    /// Only the newest [`MAX_RECORDED_FIRES`] fires are listed (every fire
    /// that runs is among them); older ones are counted in
    /// `unrecorded_misses`, exactly for `every`, and for `cron` up to
    /// [`CRON_COUNT_LIMIT`] (a larger backlog is reported as that many).
    ///
    /// If `now` is before `due` (the clock went back), nothing is listed and
    /// `next` stays `due`: a fire is never moved earlier or handed out twice.
    pub fn plan(
        &self,
        policy: &RunPolicy,
        anchor: DateTime<Utc>,
        due: DateTime<Utc>,
        fired: u64,
        now: DateTime<Utc>,
    ) -> FirePlan {
        let done = FirePlan {
            fires: Vec::new(),
            next: None,
            unrecorded_misses: 0,
        };
        let remaining = policy
            .max_executions
            .map(|max| u64::from(max).saturating_sub(fired));
        if remaining == Some(0) {
            return done;
        }
        if now < due {
            return FirePlan {
                next: Some(due),
                ..done
            };
        }
        let (window, next) = match self {
            Schedule::Manual => return done,
            Schedule::At { .. } => {
                let mut newest = vec![due];
                let mut last = due;
                while let Some(fire) = self.next_fire(anchor, last).filter(|f| *f <= now) {
                    newest.push(fire);
                    last = fire;
                }
                let window = Window { newest, older: 0 };
                (window, self.next_fire(anchor, now))
            }
            Schedule::Every { every } => match Grid::new(anchor, *every) {
                Some(grid) => (grid.window(due, now), grid.after(now)),
                None => return done,
            },
            Schedule::Cron { cron, timezone } => match CronClock::new(cron, timezone) {
                Some(clock) => (clock.window(due, now), clock.walk_after(now).next()),
                None => return done,
            },
        };
        decide(policy.misfire, remaining, now, window, next)
    }
}

/// Most fires one `plan` step of a `cron` schedule counts one by one beyond
/// the [`MAX_RECORDED_FIRES`] it records; past this the count of unrecorded
/// misses is reported as exactly this number (a lower bound). A backlog that
/// large takes a schedule firing every second about 28 hours to build.
pub const CRON_COUNT_LIMIT: u64 = 100_000;

// Every fire that runs must be recorded: runs are the on-time fires (fires are
// at least a second apart, so at most GRACE+1 of them) and at most
// CATCH_UP_LIMIT missed ones, all among the newest.
const _: () = assert!(CATCH_UP_LIMIT + MISFIRE_GRACE.as_secs() as usize + 1 < MAX_RECORDED_FIRES);

/// The newest fires of one step, oldest first, and how many older ones there
/// were.
struct Window {
    newest: Vec<DateTime<Utc>>,
    older: u64,
}

/// Applies the misfire policy and `max_executions` to the fires of a step.
fn decide(
    misfire: MisfirePolicy,
    mut remaining: Option<u64>,
    now: DateTime<Utc>,
    window: Window,
    mut next: Option<DateTime<Utc>>,
) -> FirePlan {
    let grace = TimeDelta::from_std(MISFIRE_GRACE).expect("the grace window is small");
    // Fires are ascending, so the missed ones are a prefix and the on-time
    // ones the rest.
    let missed = window
        .newest
        .iter()
        .take_while(|fire| now - **fire > grace)
        .count();
    let on_time = window.newest.len() - missed;
    let missed_runs = match misfire {
        MisfirePolicy::Skip => 0,
        MisfirePolicy::RunOnce => usize::from(on_time == 0 && missed > 0),
        MisfirePolicy::CatchUp => CATCH_UP_LIMIT.min(missed),
    };
    // Runs are exactly the fires from this index on: the newest missed ones
    // the policy picked, then every on-time one.
    let first_run = missed - missed_runs;
    let mut fires = Vec::with_capacity(window.newest.len());
    for (i, at) in window.newest.into_iter().enumerate() {
        let run = i >= first_run;
        fires.push(PlannedFire { at, run });
        if let (true, Some(left)) = (run, remaining.as_mut()) {
            *left -= 1;
            if *left == 0 {
                next = None;
                break;
            }
        }
    }
    FirePlan {
        fires,
        next,
        unrecorded_misses: window.older,
    }
}

/// The fires of an `every` schedule: `anchor + k·step`, k ≥ 0, in
/// nanoseconds, so that any instant maps to its place on the grid by one
/// division and nothing accumulates.
struct Grid {
    anchor: DateTime<Utc>,
    step: i128,
}

impl Grid {
    fn new(anchor: DateTime<Utc>, every: Duration) -> Option<Grid> {
        let step = i128::try_from(every.as_nanos()).ok()?;
        (step > 0).then_some(Grid { anchor, step })
    }

    /// The k-th fire, if it is a representable instant.
    fn at(&self, k: i128) -> Option<DateTime<Utc>> {
        let offset = k.checked_mul(self.step)?;
        let secs = i64::try_from(offset.div_euclid(1_000_000_000)).ok()?;
        let nanos = offset.rem_euclid(1_000_000_000) as u32;
        self.anchor.checked_add_signed(TimeDelta::new(secs, nanos)?)
    }

    /// How many fires are at or before `t`.
    fn count_upto(&self, t: DateTime<Utc>) -> i128 {
        if t < self.anchor {
            return 0;
        }
        nanos_between(self.anchor, t) / self.step + 1
    }

    fn after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.at(self.count_upto(t))
    }

    /// `due` and the grid's fires in `(due, now]`. `due` is normally on the
    /// grid; if it is not (the interval was changed), it still counts once.
    fn window(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Window {
        let first = self.count_upto(due);
        let last = self.count_upto(now); // exclusive index
        let on_grid = u64::try_from(last - first).unwrap_or(u64::MAX);
        let total = on_grid.saturating_add(1);
        let keep = MAX_RECORDED_FIRES.min(usize::try_from(total).unwrap_or(usize::MAX));
        let mut newest = Vec::with_capacity(keep);
        if total <= MAX_RECORDED_FIRES as u64 {
            newest.push(due);
        }
        let from_grid = (keep - newest.len()) as i128;
        newest.extend(((last - from_grid)..last).filter_map(|k| self.at(k)));
        Window {
            older: total - newest.len() as u64,
            newest,
        }
    }
}

fn nanos_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i128 {
    let d = to - from;
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

/// A cron expression bound to its time zone.
///
/// Croner is used only to find matching wall-clock times (it is given naive
/// times, so it never sees a time zone); turning a wall-clock time into
/// instants, and with it all DST behaviour, is decided here:
///
/// - a wall-clock time that exists once fires at that instant;
/// - a repeated wall-clock time (the clock went back) fires at its first
///   occurrence, and also at its second if the hour field is `*` or a step
///   (the schedule then follows real time, so an hourly job runs every real
///   hour);
/// - a skipped wall-clock time (the clock went forward) fires at the first
///   instant after the gap, once however many times fell into it, if the hour
///   field names hours; with `*` or a step it does not fire, as no real time
///   passed there.
///
/// Croner's own time-zone handling differs for expressions with fixed hours
/// but several seconds or minutes (`*/15 2 * * *`, `0,30 1 * * *`): it runs
/// those twice in a repeated hour and not at all in a skipped one.
struct CronClock {
    cron: Cron,
    tz: Tz,
    /// The hour field names hours (no `*`, no step).
    fixed_hours: bool,
}

impl CronClock {
    fn new(expression: &str, timezone: &str) -> Option<CronClock> {
        let cron = parse(expression.trim()).ok()?;
        let tz = Tz::from_str(timezone).ok()?;
        let hours = &cron.pattern.hours;
        let fixed_hours = !hours.from_wildcard && hours.step <= 1;
        Some(CronClock {
            cron,
            tz,
            fixed_hours,
        })
    }

    /// The next (or previous) wall-clock time the expression matches.
    fn wall_step(
        &self,
        from: NaiveDateTime,
        inclusive: bool,
        forward: bool,
    ) -> Option<NaiveDateTime> {
        let found = if forward {
            self.cron.find_next_occurrence(&from, inclusive)
        } else {
            self.cron.find_previous_occurrence(&from, inclusive)
        };
        found.ok()
    }

    /// The instants a matching wall-clock time fires at: the first, and the
    /// repeat of a repeated time when it fires twice.
    fn instants(&self, wall: NaiveDateTime) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => (Some(t.to_utc()), None),
            LocalResult::Ambiguous(first, _) if self.fixed_hours => (Some(first.to_utc()), None),
            LocalResult::Ambiguous(first, second) => (Some(first.to_utc()), Some(second.to_utc())),
            LocalResult::None if self.fixed_hours => (
                GapInfo::new(&wall, &self.tz)
                    .and_then(|gap| gap.end)
                    .map(|end| end.to_utc()),
                None,
            ),
            LocalResult::None => (None, None),
        }
    }

    /// The fold length if `wall` is a repeated wall-clock time, and its
    /// second instant.
    fn repeat(&self, wall: NaiveDateTime) -> Option<(TimeDelta, DateTime<Utc>)> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Ambiguous(first, second) => {
                Some((second.to_utc() - first.to_utc(), second.to_utc()))
            }
            _ => None,
        }
    }

    /// Fires strictly after `after`, ascending.
    fn walk_after(&self, after: DateTime<Utc>) -> Walk<'_> {
        let mut wall = floor_second(after.with_timezone(&self.tz).naive_local());
        // In the first pass of a repeated hour, the second passes of the
        // wall-clock times before `after` are still ahead.
        if let Some((fold, second)) = self.repeat(wall)
            && after < second
        {
            wall -= fold;
        }
        Walk::new(self, wall, true, after)
    }

    /// Fires at or before `upto`, descending.
    fn walk_upto(&self, upto: DateTime<Utc>) -> Walk<'_> {
        let mut wall = floor_second(upto.with_timezone(&self.tz).naive_local());
        // In the second pass of a repeated hour, the first passes of the
        // wall-clock times after `upto` are already behind.
        if let Some((fold, second)) = self.repeat(wall)
            && upto >= second
        {
            wall += fold;
        }
        Walk::new(self, wall, false, upto + TimeDelta::nanoseconds(1))
    }

    /// `due` and the fires in `(due, now]`, counted from `now` backwards so
    /// the newest are found first and a long backlog costs only its count.
    fn window(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Window {
        let mut newest = Vec::new();
        let mut older = 0u64;
        let mut reached_due = false;
        for fire in self.walk_upto(now) {
            if fire <= due {
                reached_due = true;
                break;
            }
            if newest.len() < MAX_RECORDED_FIRES {
                newest.push(fire);
            } else {
                older += 1;
                if older >= CRON_COUNT_LIMIT {
                    break;
                }
            }
        }
        // A walk that ran out of matches (no earlier date matches) also
        // reached `due`.
        let capped = older >= CRON_COUNT_LIMIT && !reached_due;
        if newest.len() < MAX_RECORDED_FIRES {
            newest.push(due);
        } else if !capped {
            older += 1;
        }
        newest.reverse();
        Window { newest, older }
    }
}

fn floor_second(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

/// Walks the fires of a cron schedule in one direction from a wall-clock
/// time. Instants grow with wall-clock time except for the second pass of a
/// repeated hour, which lies after every first pass in it and before
/// everything after it; those are held back until the walk passes them.
struct Walk<'a> {
    clock: &'a CronClock,
    forward: bool,
    wall: Option<NaiveDateTime>,
    inclusive: bool,
    ahead: Option<DateTime<Utc>>,
    held: VecDeque<DateTime<Utc>>,
    /// The last instant yielded (or the bound): everything yielded lies
    /// strictly beyond it, which also drops duplicates.
    last: DateTime<Utc>,
}

impl<'a> Walk<'a> {
    fn new(clock: &'a CronClock, wall: NaiveDateTime, forward: bool, bound: DateTime<Utc>) -> Self {
        Walk {
            clock,
            forward,
            wall: Some(wall),
            inclusive: true,
            ahead: None,
            held: VecDeque::new(),
            last: bound,
        }
    }

    /// Whether `a` comes before `b` in the walk's direction.
    fn before(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
        if self.forward { a < b } else { a > b }
    }

    fn pull(&mut self) {
        let Some(from) = self.wall.take() else {
            return;
        };
        let Some(wall) = self.clock.wall_step(from, self.inclusive, self.forward) else {
            return;
        };
        self.wall = Some(wall);
        self.inclusive = false;
        match (self.clock.instants(wall), self.forward) {
            ((first, Some(second)), true) => {
                self.ahead = first;
                self.held.push_back(second);
            }
            ((first, Some(second)), false) => {
                self.ahead = Some(second);
                self.held.extend(first);
            }
            ((only, None), _) => self.ahead = only,
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            while self.ahead.is_none() && self.wall.is_some() {
                self.pull();
            }
            let fire = match (self.held.front(), self.ahead) {
                (Some(&held), Some(ahead)) if !self.before(held, ahead) => self.ahead.take(),
                (Some(_), _) => self.held.pop_front(),
                (None, _) => self.ahead.take(),
            }?;
            if self.before(self.last, fire) {
                self.last = fire;
                return Some(fire);
            }
        }
    }
}

/// Parses 5 or 6 fields (seconds first), no year, with the day fields
/// decided the way the Linux crons decide them.
fn parse(expression: &str) -> Result<Cron, croner::errors::CronError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(days_must_match_both(expression))
        .build()
        .parse(&sunday_ranges(expression))
}

/// Croner reads a weekday range that ends in `SUN` as ending at 7, so that
/// `FRI-SUN` is Friday to Sunday, but that also turns `SUN-SUN` and `0-SUN`
/// into `0-7`, every day. They mean Sunday (as in Debian cron), and are
/// handed to croner as `0-0`.
fn sunday_ranges(expression: &str) -> Cow<'_, str> {
    let mut fields: Vec<String> = expression.split_whitespace().map(str::to_string).collect();
    let day_of_week = match fields.len() {
        5 => 4,
        6 => 5,
        _ => return Cow::Borrowed(expression),
    };
    let field = fields[day_of_week].to_uppercase();
    if !field.contains("SUN-SUN") && !field.contains("0-SUN") {
        return Cow::Borrowed(expression);
    }
    fields[day_of_week] = field.replace("SUN-SUN", "0-0").replace("0-SUN", "0-0");
    Cow::Owned(fields.join(" "))
}

/// Whether a day must match both day fields (day of month, day of week)
/// rather than either: Vixie cron, cronie and Debian cron ask for both when
/// either field *begins with* `*` (`*`, but also `*/2`), and for either
/// otherwise (`0 0 1,15 * 5`: the 1st, the 15th and every Friday).
///
/// Croner ORs the two fields unless one is exactly `*` (which it then
/// ignores), so `45 10 */9 */3 */2` would fire on every even weekday of its
/// months as well as on the 1st, 10th, 19th and 28th. A star-prefixed field
/// switches it to its AND mode instead; with a plain `*` that is the same
/// day set as before (`*` matches every day). `?` is Cronium's synonym for
/// `*` in the day fields, and a `+` before the weekday field asks for both
/// anyway. Aliases (`@weekly`, `@monthly`) have a `*` day field and need
/// nothing.
fn days_must_match_both(expression: &str) -> bool {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let (day_of_month, day_of_week) = match fields[..] {
        [_, _, dom, _, dow] | [_, _, _, dom, _, dow] => (dom, dow),
        _ => return false,
    };
    let starred = |field: &str| field.starts_with(['*', '?']);
    starred(day_of_month) || starred(day_of_week.trim_start_matches('+'))
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

//! Fire times of schedules against an injected clock: DST, cron extensions, intervals, misfires and limits.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use cronium_core::job::{CATCH_UP_LIMIT, MISFIRE_GRACE, MisfirePolicy, RunPolicy};
use cronium_core::schedule::{CRON_COUNT_LIMIT, FirePlan, MAX_RECORDED_FIRES, Schedule};

fn t(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|e| panic!("bad time {text:?}: {e}"))
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn cron(expression: &str, timezone: &str) -> Schedule {
    Schedule::cron(expression, timezone).unwrap()
}

fn every(text: &str) -> Schedule {
    Schedule::every(text).unwrap()
}

fn policy(misfire: MisfirePolicy) -> RunPolicy {
    RunPolicy {
        misfire,
        ..RunPolicy::default()
    }
}

/// `n` consecutive fires after `after`, each found from the one before.
fn chain(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut last = after;
    while out.len() < n {
        match schedule.next_fire(anchor, last) {
            Some(fire) => {
                assert!(fire > last, "{schedule:?}: {fire} is not after {last}");
                out.push(fire);
                last = fire;
            }
            None => break,
        }
    }
    out
}

fn times(list: &[&str]) -> Vec<DateTime<Utc>> {
    list.iter().map(|s| t(s)).collect()
}

fn at(plan: &FirePlan) -> Vec<DateTime<Utc>> {
    plan.fires.iter().map(|f| f.at).collect()
}

fn runs(plan: &FirePlan) -> Vec<bool> {
    plan.fires.iter().map(|f| f.run).collect()
}

/// Berlin: 2026-03-29 02:00 CET → 03:00 CEST (01:00Z), 2026-10-25 03:00 CEST →
/// 02:00 CET (01:00Z). New York: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z),
/// 2026-11-01 02:00 EDT → 01:00 EST (06:00Z).
#[test]
fn dst_transitions_fire_at_defined_instants() {
    let table: &[(&str, &str, &str, &[&str])] = &[
        // Spring forward, fixed time in the gap: once, at the end of the gap.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            &[
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first instant after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ],
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-06T12:00:00Z",
            &[
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ],
        ),
        // Fixed hours with several minutes in the gap: one fire for all of them.
        (
            "*/15 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            &[
                "2026-03-29T01:00:00Z", // 03:00 CEST, once for 02:00..02:45
                "2026-03-30T00:00:00Z", // 02:00 CEST
                "2026-03-30T00:15:00Z",
            ],
        ),
        // A fixed time just after the gap and one in it land on the same instant: once.
        (
            "0 2,3 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            &[
                "2026-03-29T01:00:00Z", // 03:00 CEST (02:00 moved here, and 03:00 itself)
                "2026-03-30T00:00:00Z", // 02:00 CEST
                "2026-03-30T01:00:00Z", // 03:00 CEST
            ],
        ),
        // Spring forward, hourly and stepped: real time is followed, nothing is moved.
        (
            "0 * * * *",
            "Europe/Berlin",
            "2026-03-28T23:30:00Z",
            &[
                "2026-03-29T00:00:00Z", // 01:00 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, an hour later
                "2026-03-29T02:00:00Z", // 04:00 CEST
            ],
        ),
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-03-08T06:40:00Z",
            &[
                "2026-03-08T06:45:00Z", // 01:45 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT, fifteen minutes later
                "2026-03-08T07:15:00Z",
            ],
        ),
        // Fall back, fixed time in the repeated hour: the first occurrence only.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST, not again at 02:30 CET
                "2026-10-26T01:30:00Z", // 02:30 CET
            ],
        ),
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-30T12:00:00Z",
            &[
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT, not again at 01:30 EST
                "2026-11-02T06:30:00Z", // 01:30 EST
            ],
        ),
        (
            "0,30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            &[
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T05:30:00Z", // 01:30 EDT
                "2026-11-02T06:00:00Z", // 01:00 EST
            ],
        ),
        (
            "*/15 2 * * *",
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            &[
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:15:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z", // 02:45 CEST; the CET pass does not fire
                "2026-10-26T01:00:00Z", // 02:00 CET
            ],
        ),
        // Fall back, hourly and stepped: both passes of the repeated hour.
        (
            "0 * * * *",
            "America/New_York",
            "2026-11-01T04:30:00Z",
            &[
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T07:00:00Z", // 02:00 EST
            ],
        ),
        (
            "0 * * * *",
            "Europe/Berlin",
            "2026-10-24T23:30:00Z",
            &[
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
            ],
        ),
        // Starting inside the first pass: the second pass is still ahead.
        (
            "*/15 * * * *",
            "Europe/Berlin",
            "2026-10-25T00:40:00Z",
            &[
                "2026-10-25T00:45:00Z", // 02:45 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:15:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z", // 02:45 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
            ],
        ),
        // Starting inside the second pass: the first is behind.
        (
            "*/15 * * * *",
            "America/New_York",
            "2026-11-01T06:20:00Z",
            &[
                "2026-11-01T06:30:00Z", // 01:30 EST
                "2026-11-01T06:45:00Z",
                "2026-11-01T07:00:00Z", // 02:00 EST
            ],
        ),
        // `@hourly` is `0 * * * *`.
        (
            "@hourly",
            "America/New_York",
            "2026-11-01T04:30:00Z",
            &[
                "2026-11-01T05:00:00Z", // 01:00 EDT
                "2026-11-01T06:00:00Z", // 01:00 EST
                "2026-11-01T07:00:00Z", // 02:00 EST
            ],
        ),
        // A stepped hour follows real time too.
        (
            "0 */2 * * *",
            "Europe/Berlin",
            "2026-10-24T21:30:00Z",
            &[
                "2026-10-24T22:00:00Z", // 00:00 CEST
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T03:00:00Z", // 04:00 CET
            ],
        ),
    ];
    for (expression, timezone, after, want) in table {
        let schedule = cron(expression, timezone);
        let want = times(want);
        let after = t(after);
        assert_eq!(
            chain(&schedule, after, after, want.len()),
            want,
            "{expression:?} in {timezone} after {after}"
        );
        // Planning walks the same fires backwards from `now`: it must list
        // exactly these, whether `now` is in the first or second pass.
        let plan = schedule.plan(
            &policy(MisfirePolicy::CatchUp),
            after,
            want[0],
            0,
            *want.last().unwrap(),
        );
        assert_eq!(at(&plan), want, "plan of {expression:?} in {timezone}");
        assert!(plan.fires.iter().all(|f| f.run));
        assert_eq!(plan.next, schedule.next_fire(after, *want.last().unwrap()));
    }
}

/// Walking two days around a DST change in uneven scheduler ticks lists
/// every fire once: nothing doubled, nothing dropped between plans. Counts
/// are of fires in (from, from + 48h]: real time for `*` and steps in the
/// hour field, named wall-clock times otherwise.
#[test]
fn plans_across_dst_days_list_each_fire_once() {
    let cases = [
        // 6 an hour for 48 real hours, whatever the clocks do.
        ("*/10 * * * *", "Europe/Berlin", "2026-10-24T22:00:00Z", 288),
        (
            "*/10 * * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            288,
        ),
        ("*/10 * * * *", "Europe/Berlin", "2026-03-28T23:00:00Z", 288),
        // 01:30 EDT and 02:30 EST on Nov 1 (01:30 EST is the repeat), two on Nov 2.
        (
            "30 1,2 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            4,
        ),
        // 02:01..02:59 CEST on Oct 25 (the CET pass is the repeat), 60 on Oct 26.
        ("* 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", 119),
        // One fire at 03:00 CEST for the missing hour on Mar 29, 60 on Mar 30.
        ("* 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 61),
    ];
    for (expression, timezone, from, expected) in cases {
        let schedule = cron(expression, timezone);
        let from = t(from);
        let end = from + TimeDelta::days(2);
        let p = policy(MisfirePolicy::CatchUp);
        let (anchor, mut due) = schedule.start(&p, from);
        let mut seen = Vec::new();
        let mut now = from;
        let mut tick = 0;
        while now < end {
            tick += 1;
            now += secs(17 + (tick * 37) % 200);
            let Some(d) = due else { break };
            if d > now {
                continue;
            }
            let plan = schedule.plan(&p, anchor, d, seen.len() as u64, now);
            assert_eq!(plan.fires.first().map(|f| f.at), Some(d));
            seen.extend(at(&plan));
            due = plan.next;
        }
        let want = chain(&schedule, anchor, from, seen.len());
        assert_eq!(seen, want, "{expression:?} in {timezone}");
        let counted = seen.iter().filter(|fire| **fire <= end).count();
        assert_eq!(counted, expected, "{expression:?} in {timezone}");
    }
}

#[test]
fn cron_extensions_and_seconds() {
    let table: &[(&str, &str, &str, &[&str])] = &[
        // Last day of the month across February, leap and not.
        (
            "0 0 L * *",
            "UTC",
            "2024-01-31T00:00:00Z",
            &[
                "2024-02-29T00:00:00Z",
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z",
            ],
        ),
        (
            "0 0 L * *",
            "UTC",
            "2026-01-31T00:00:00Z",
            &["2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"],
        ),
        // In a zone, the last day is the zone's.
        (
            "0 0 L * *",
            "America/New_York",
            "2024-02-01T00:00:00Z",
            &["2024-02-29T05:00:00Z", "2024-03-31T04:00:00Z"],
        ),
        // Second Monday.
        (
            "0 9 * * 1#2",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-12T09:00:00Z",
                "2026-02-09T09:00:00Z",
                "2026-03-09T09:00:00Z",
            ],
        ),
        // Last Friday.
        (
            "0 12 * * 5L",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-30T12:00:00Z",
                "2026-02-27T12:00:00Z",
                "2026-03-27T12:00:00Z",
            ],
        ),
        // Weekday nearest the 15th (Feb and Mar 15 are Sundays in 2026).
        (
            "0 8 15W * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-15T08:00:00Z",
                "2026-02-16T08:00:00Z",
                "2026-03-16T08:00:00Z",
            ],
        ),
        // Both day fields: either matches, unless `+` asks for both.
        (
            "0 0 13 * 5",
            "UTC",
            "2026-02-10T00:00:00Z",
            &[
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z",
                "2026-02-27T00:00:00Z",
                "2026-03-06T00:00:00Z",
            ],
        ),
        (
            "0 0 13 * +5",
            "UTC",
            "2026-01-01T00:00:00Z",
            &[
                "2026-02-13T00:00:00Z",
                "2026-03-13T00:00:00Z",
                "2026-11-13T00:00:00Z",
            ],
        ),
        // Six fields: seconds first.
        (
            "*/20 * * * * *",
            "UTC",
            "2026-05-01T10:00:05Z",
            &[
                "2026-05-01T10:00:20Z",
                "2026-05-01T10:00:40Z",
                "2026-05-01T10:01:00Z",
            ],
        ),
        (
            "15 30 9 * * *",
            "Europe/Berlin",
            "2026-07-01T00:00:00Z",
            &["2026-07-01T07:30:15Z", "2026-07-02T07:30:15Z"],
        ),
        // Leap day only.
        (
            "0 0 29 2 *",
            "UTC",
            "2025-01-01T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
    ];
    for (expression, timezone, after, want) in table {
        let after = t(after);
        assert_eq!(
            chain(&cron(expression, timezone), after, after, want.len()),
            times(want),
            "{expression:?} in {timezone}"
        );
    }
    // A date that never comes has no fire.
    let never = cron("0 0 30 2 *", "UTC");
    assert_eq!(
        never.next_fire(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:00Z")),
        None
    );
    // Sub-second `after` still gives the next whole-second match.
    let s = cron("*/20 * * * * *", "UTC");
    let after = t("2026-05-01T10:00:20.5Z");
    assert_eq!(s.next_fire(after, after), Some(t("2026-05-01T10:00:40Z")));
}

/// Debian cron (and Vixie cron, cronie) read `*/9` in the day-of-month
/// field as "every ninth day" that must *also* match the weekday field,
/// because it begins with `*`. Cronium ORed the two, so this also fired on
/// every Sunday, Tuesday, Thursday and Saturday of January, April, July
/// and October.
#[test]
fn star_9_day_of_month_was_ored_with_star_2_weekdays() {
    let after = t("2026-01-01T00:00:00Z");
    assert_eq!(
        chain(&cron("45 10 */9 */3 */2", "UTC"), after, after, 8),
        times(&[
            "2026-01-01T10:45:00Z", // Thursday the 1st
            "2026-01-10T10:45:00Z", // Saturday the 10th
            "2026-04-19T10:45:00Z", // Sunday the 19th
            "2026-04-28T10:45:00Z", // Tuesday the 28th
            "2026-07-19T10:45:00Z",
            "2026-07-28T10:45:00Z",
            "2026-10-01T10:45:00Z",
            "2026-10-10T10:45:00Z",
        ])
    );
    // Not 2026-01-03 (a Saturday but the 3rd), as the ORed reading had.
    assert_eq!(
        cron("45 10 */9 */3 */2", "UTC").next_fire(after, t("2026-01-01T10:45:00Z")),
        Some(t("2026-01-10T10:45:00Z"))
    );
}

/// `0 22 */9 10 4`: the 1st, 10th, 19th or 28th of October *when it is a
/// Thursday*, not every Thursday of October plus those days. In Berlin, so
/// 22:00 CEST is 20:00 UTC (all these dates are before the clocks go back).
#[test]
fn star_9_day_of_month_was_ored_with_thursdays() {
    let after = t("2026-01-01T00:00:00Z");
    assert_eq!(
        chain(&cron("0 22 */9 10 4", "Europe/Berlin"), after, after, 4),
        times(&[
            "2026-10-01T20:00:00Z",
            "2027-10-28T20:00:00Z",
            "2028-10-19T20:00:00Z",
            "2030-10-10T20:00:00Z",
        ])
    );
    // Not 2026-10-08, the next Thursday, as the ORed reading had.
    assert_eq!(
        cron("0 22 */9 10 4", "Europe/Berlin").next_fire(after, t("2026-10-01T20:00:00Z")),
        Some(t("2027-10-28T20:00:00Z"))
    );
}

/// The day-field rule of the Linux crons, case by case: a day field that
/// begins with `*` (or `?`) makes a day match both fields; otherwise either
/// is enough, even when a field happens to cover every day. 2026-05-01 is a
/// Friday.
#[test]
fn day_fields_follow_the_linux_crons() {
    let table: &[(&str, &[&str])] = &[
        // Both restricted, neither starred: either.
        (
            "0 12 2,16 * 5",
            &[
                "2026-05-01",
                "2026-05-02",
                "2026-05-08",
                "2026-05-15",
                "2026-05-16",
            ],
        ),
        // `*/1` covers every day but begins with `*`: both, so Fridays.
        ("0 12 */1 * 5", &["2026-05-01", "2026-05-08", "2026-05-15"]),
        // `1-31` covers every day and does not: either, so every day.
        ("0 12 1-31 * 5", &["2026-05-01", "2026-05-02", "2026-05-03"]),
        ("0 12 * * 5", &["2026-05-01", "2026-05-08", "2026-05-15"]),
        ("0 12 ? * 5", &["2026-05-01", "2026-05-08", "2026-05-15"]),
        // The day of month starred: both (May 31 is a Sunday).
        (
            "0 12 */10 * 1-5",
            &["2026-05-01", "2026-05-11", "2026-05-21", "2026-06-01"],
        ),
        (
            "0 0 12 */10 * MON-FRI",
            &["2026-05-01", "2026-05-11", "2026-05-21", "2026-06-01"],
        ),
        // The weekday starred: the 10th on a Sunday, Wednesday or Saturday.
        ("0 12 10 * */3", &["2026-05-10", "2026-06-10", "2026-10-10"]),
        // `+` asks for both whatever the fields.
        ("0 12 */2 * +5", &["2026-05-01", "2026-05-15", "2026-05-29"]),
        (
            "0 12 2,16 * +6",
            &["2026-05-02", "2026-05-16", "2027-01-02"],
        ),
        // A weekday range from Sunday to Sunday is Sunday, not every day;
        // one that ends in Sunday still runs to it.
        (
            "0 12 */15 * sun-sun",
            &["2026-05-31", "2026-08-16", "2026-11-01"],
        ),
        (
            "0 12 */15 * 0-SUN",
            &["2026-05-31", "2026-08-16", "2026-11-01"],
        ),
        (
            "0 12 */15 * fri-sun",
            &["2026-05-01", "2026-05-16", "2026-05-31"],
        ),
    ];
    let after = t("2026-05-01T00:00:00Z");
    for (expression, days) in table {
        let want: Vec<DateTime<Utc>> = days.iter().map(|d| t(&format!("{d}T12:00:00Z"))).collect();
        assert_eq!(
            chain(&cron(expression, "UTC"), after, after, want.len()),
            want,
            "{expression:?}"
        );
    }
    // Aliases have a `*` day field and mean what they always meant.
    assert_eq!(
        chain(&cron("@weekly", "UTC"), after, after, 2),
        times(&["2026-05-03T00:00:00Z", "2026-05-10T00:00:00Z"])
    );
    assert_eq!(
        chain(&cron("@monthly", "UTC"), after, after, 2),
        times(&["2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"])
    );
}

#[test]
fn every_is_a_true_interval_from_its_anchor() {
    let s = every("7m");
    let anchor = t("2026-01-01T00:00:13Z");
    let table = [
        ("2025-12-31T23:00:00Z", "2026-01-01T00:00:13Z"), // before the anchor: the anchor
        ("2026-01-01T00:00:13Z", "2026-01-01T00:07:13Z"), // strictly after
        ("2026-01-01T00:07:12.999Z", "2026-01-01T00:07:13Z"),
        ("2026-01-01T10:03:00Z", "2026-01-01T10:09:13Z"), // not minutes divisible by 7
        ("2027-01-01T00:00:00Z", "2027-01-01T00:02:13Z"), // 75 086 intervals on
    ];
    for (after, want) in table {
        assert_eq!(
            s.next_fire(anchor, t(after)),
            Some(t(want)),
            "after {after}"
        );
    }
    let fires = chain(&s, anchor, anchor, 500);
    for pair in fires.windows(2) {
        assert_eq!(pair[1] - pair[0], secs(420));
    }
    // Far from the anchor, still on the grid (computed, not stepped).
    let far = s.next_fire(anchor, t("2126-06-01T00:00:00Z")).unwrap();
    assert_eq!((far - anchor).num_seconds() % 420, 0);
    assert_eq!((far - anchor).subsec_nanos(), 0);
}

/// The scheduler stores (anchor, next, fired). A restart after downtime
/// plans from that state and stays on the same grid.
#[test]
fn every_keeps_its_grid_across_restarts() {
    let s = every("7m");
    let p = policy(MisfirePolicy::RunOnce);
    let created = t("2026-01-01T00:00:13Z");
    let (anchor, first) = s.start(&p, created);
    assert_eq!(anchor, created);
    assert_eq!(first, Some(t("2026-01-01T00:07:13Z")));

    // Ticks a little late, then downtime of 3h17m5s, then late ticks again.
    let nows = [
        "2026-01-01T00:07:14Z",
        "2026-01-01T00:14:20Z",
        "2026-01-01T03:31:25Z",
        "2026-01-01T03:36:00Z",
        "2026-01-01T03:40:13Z",
    ];
    let (mut due, mut fired) = (first.unwrap(), 0u64);
    let mut all = Vec::new();
    for now in nows {
        let now = t(now);
        if due > now {
            continue;
        }
        let plan = s.plan(&p, anchor, due, fired, now);
        fired += plan.fires.iter().filter(|f| f.run).count() as u64;
        all.extend(at(&plan));
        due = plan.next.unwrap();
        assert!(due > now);
    }
    for fire in all.iter().chain([&due]) {
        assert_eq!(
            (*fire - anchor).num_seconds() % 420,
            0,
            "{fire} is off the grid"
        );
    }
    // Every grid point up to the last tick, each once, none skipped.
    assert_eq!(all, chain(&s, anchor, anchor, all.len()));
    assert_eq!(due, t("2026-01-01T03:44:13Z"));
    assert_eq!(fired, 4); // 00:07:13, 00:14:13, 03:30:13 (the newest missed), 03:37:13
}

/// every 5m from 00:00; due 00:05. Grace 60s: a fire is missed when now is
/// more than 60s after it.
#[test]
fn misfire_policies() {
    use MisfirePolicy::{CatchUp, RunOnce, Skip};
    assert_eq!(MISFIRE_GRACE, Duration::from_secs(60));
    let s = every("5m");
    let anchor = t("2026-01-01T00:00:00Z");
    let due = t("2026-01-01T00:05:00Z");
    let (f, tr) = (false, true);
    // (now, policy, run flags, next)
    let table: &[(&str, MisfirePolicy, &[bool], &str)] = &[
        // Nothing missed.
        ("00:05:30", Skip, &[tr], "00:10:00"),
        ("00:05:30", RunOnce, &[tr], "00:10:00"),
        ("00:05:30", CatchUp, &[tr], "00:10:00"),
        // Exactly the grace: still on time.
        ("00:06:00", Skip, &[tr], "00:10:00"),
        // One missed, nothing on time.
        ("00:06:01", Skip, &[f], "00:10:00"),
        ("00:06:01", RunOnce, &[tr], "00:10:00"),
        ("00:06:01", CatchUp, &[tr], "00:10:00"),
        // One missed and one on time.
        ("00:10:30", Skip, &[f, tr], "00:15:00"),
        ("00:10:30", RunOnce, &[f, tr], "00:15:00"),
        ("00:10:30", CatchUp, &[tr, tr], "00:15:00"),
        // Five missed, nothing on time.
        ("00:27:00", Skip, &[f, f, f, f, f], "00:30:00"),
        ("00:27:00", RunOnce, &[f, f, f, f, tr], "00:30:00"),
        ("00:27:00", CatchUp, &[tr, tr, tr, tr, tr], "00:30:00"),
        // Five missed and one on time.
        ("00:30:20", Skip, &[f, f, f, f, f, tr], "00:35:00"),
        ("00:30:20", RunOnce, &[f, f, f, f, f, tr], "00:35:00"),
        ("00:30:20", CatchUp, &[tr, tr, tr, tr, tr, tr], "00:35:00"),
    ];
    for (now, misfire, want, next) in table {
        let now = t(&format!("2026-01-01T{now}Z"));
        let plan = s.plan(&policy(*misfire), anchor, due, 0, now);
        assert_eq!(runs(&plan), *want, "{misfire:?} at {now}");
        assert_eq!(plan.fires[0].at, due);
        assert_eq!(plan.next, Some(t(&format!("2026-01-01T{next}Z"))));
        assert_eq!(plan.unrecorded_misses, 0);
    }
}

#[test]
fn catch_up_runs_at_most_its_limit() {
    let s = every("1m");
    let anchor = t("2026-01-01T00:00:00Z");
    let due = t("2026-01-01T00:01:00Z");
    // 150 missed fires (00:01 … 02:30) and one on time (02:31).
    let now = t("2026-01-01T02:31:30Z");
    let plan = s.plan(&policy(MisfirePolicy::CatchUp), anchor, due, 0, now);
    assert_eq!(plan.fires.len(), 151);
    let ran: Vec<usize> = (0..151).filter(|&i| plan.fires[i].run).collect();
    assert_eq!(ran.len(), CATCH_UP_LIMIT + 1);
    assert_eq!(ran[0], 150 - CATCH_UP_LIMIT, "the newest missed ones run");
    assert_eq!(plan.next, Some(t("2026-01-01T02:32:00Z")));
    // The same downtime under run_once: only the on-time fire runs.
    let plan = s.plan(&policy(MisfirePolicy::RunOnce), anchor, due, 0, now);
    assert_eq!(plan.fires.iter().filter(|f| f.run).count(), 1);
    assert!(plan.fires[150].run);
}

/// every 1s over a day of downtime: 86 401 fires, the newest 1000 listed.
#[test]
fn long_downtime_records_the_newest_fires_and_counts_the_rest() {
    let anchor = t("2026-01-01T00:00:00Z");
    let due = anchor + secs(1);
    let now = due + TimeDelta::days(1);
    let schedules = [every("1s"), cron("* * * * * *", "Europe/Berlin")];
    for s in &schedules {
        for (misfire, running) in [
            (MisfirePolicy::Skip, 61),
            (MisfirePolicy::RunOnce, 61),
            (MisfirePolicy::CatchUp, 61 + CATCH_UP_LIMIT),
        ] {
            let plan = s.plan(&policy(misfire), anchor, due, 0, now);
            assert_eq!(plan.fires.len(), MAX_RECORDED_FIRES, "{s:?}");
            assert_eq!(plan.unrecorded_misses, 86_401 - MAX_RECORDED_FIRES as u64);
            assert_eq!(plan.fires.last().unwrap().at, now);
            assert_eq!(plan.fires[0].at, now - secs(MAX_RECORDED_FIRES as i64 - 1));
            for pair in plan.fires.windows(2) {
                assert_eq!(pair[1].at - pair[0].at, secs(1));
            }
            let ran = plan.fires.iter().filter(|f| f.run).count();
            assert_eq!(ran, running, "{s:?} {misfire:?}");
            // Runs are a suffix: the newest fires.
            assert!(
                plan.fires[MAX_RECORDED_FIRES - running..]
                    .iter()
                    .all(|f| f.run)
            );
            assert_eq!(plan.next, Some(now + secs(1)));
        }
    }
    // A cron backlog beyond the counting limit reports the limit.
    let s = cron("* * * * * *", "UTC");
    let plan = s.plan(
        &policy(MisfirePolicy::Skip),
        anchor,
        due,
        0,
        due + TimeDelta::days(3),
    );
    assert_eq!(plan.fires.len(), MAX_RECORDED_FIRES);
    assert_eq!(plan.unrecorded_misses, CRON_COUNT_LIMIT);
    // An interval counts exactly, however long.
    let s = every("1s");
    let plan = s.plan(
        &policy(MisfirePolicy::Skip),
        anchor,
        due,
        0,
        due + TimeDelta::days(365),
    );
    assert_eq!(
        plan.unrecorded_misses,
        365 * 86_400 + 1 - MAX_RECORDED_FIRES as u64
    );
}

#[test]
fn max_executions_stops_exactly_at_the_limit() {
    let s = every("5m");
    let anchor = t("2026-01-01T00:00:00Z");
    let limited = |misfire, max| RunPolicy {
        misfire,
        max_executions: Some(max),
        ..RunPolicy::default()
    };
    // On time, one by one: the third run is the last.
    let p = limited(MisfirePolicy::RunOnce, 3);
    let mut due = Some(t("2026-01-01T00:05:00Z"));
    let mut fired = 0;
    let mut ran = Vec::new();
    while let Some(d) = due {
        let plan = s.plan(&p, anchor, d, fired, d + secs(2));
        fired += plan.fires.iter().filter(|f| f.run).count() as u64;
        ran.extend(at(&plan));
        due = plan.next;
    }
    assert_eq!(
        ran,
        times(&[
            "2026-01-01T00:05:00Z",
            "2026-01-01T00:10:00Z",
            "2026-01-01T00:15:00Z"
        ])
    );
    assert_eq!(fired, 3);

    let due = t("2026-01-01T00:05:00Z");
    let now = t("2026-01-01T00:27:00Z"); // five missed: 05 … 25
    // Catching up with one run left after one: stops after the second, lists nothing later.
    let plan = s.plan(&limited(MisfirePolicy::CatchUp, 3), anchor, due, 1, now);
    assert_eq!(runs(&plan), [true, true]);
    assert_eq!(plan.next, None);
    // Missed fires do not count: two allowed, one runs, the schedule goes on.
    let plan = s.plan(
        &limited(MisfirePolicy::Skip, 2),
        anchor,
        due,
        0,
        t("2026-01-01T00:30:20Z"),
    );
    assert_eq!(runs(&plan), [false, false, false, false, false, true]);
    assert_eq!(plan.next, Some(t("2026-01-01T00:35:00Z")));
    // Already used up: nothing listed, no next.
    let plan = s.plan(&limited(MisfirePolicy::CatchUp, 2), anchor, due, 2, now);
    assert_eq!(plan.fires, []);
    assert_eq!(plan.next, None);
    // A one-fire limit on a cron schedule.
    let s = cron("0 * * * *", "UTC");
    let plan = s.plan(
        &limited(MisfirePolicy::RunOnce, 1),
        anchor,
        t("2026-01-01T01:00:00Z"),
        0,
        t("2026-01-01T01:00:01Z"),
    );
    assert_eq!(runs(&plan), [true]);
    assert_eq!(plan.next, None);
}

#[test]
fn at_start_and_anchors() {
    let when = t("2026-06-01T12:00:00Z");
    let once = Schedule::At { at: when };
    let now = t("2026-05-01T00:00:00Z");
    let p = RunPolicy::default();
    // One-shot: fires once, then never.
    assert_eq!(once.start(&p, now), (now, Some(when)));
    let plan = once.plan(&p, now, when, 0, when + secs(3));
    assert_eq!(at(&plan), [when]);
    assert_eq!(runs(&plan), [true]);
    assert_eq!(plan.next, None);
    assert_eq!(once.next_fire(now, when), None);
    assert_eq!(once.start(&p, when).1, None, "not at or before now");
    // Missed one-shot: the misfire policy decides.
    let plan = once.plan(
        &policy(MisfirePolicy::Skip),
        now,
        when,
        0,
        when + TimeDelta::hours(1),
    );
    assert_eq!(runs(&plan), [false]);
    assert_eq!(plan.next, None);

    let starting = |s: &str| RunPolicy {
        start_at: Some(t(s)),
        ..RunPolicy::default()
    };
    // (schedule, start_at, now, anchor, first fire)
    let table: [(Schedule, &str, &str, &str, Option<&str>); 9] = [
        // A future start delays the first fire; a fire exactly at it counts.
        (
            cron("0 * * * *", "UTC"),
            "2026-05-03T10:00:00Z",
            "2026-05-01T00:20:00Z",
            "2026-05-03T10:00:00Z",
            Some("2026-05-03T10:00:00Z"),
        ),
        (
            cron("0 * * * *", "UTC"),
            "2026-05-03T10:00:01Z",
            "2026-05-01T00:20:00Z",
            "2026-05-03T10:00:01Z",
            Some("2026-05-03T11:00:00Z"),
        ),
        // A past start only anchors.
        (
            cron("0 * * * *", "UTC"),
            "2026-04-01T00:00:00Z",
            "2026-05-01T00:20:00Z",
            "2026-04-01T00:00:00Z",
            Some("2026-05-01T01:00:00Z"),
        ),
        // `every` starts on its anchor and keeps to its grid.
        (
            every("7m"),
            "2026-05-03T10:00:00Z",
            "2026-05-01T00:20:00Z",
            "2026-05-03T10:00:00Z",
            Some("2026-05-03T10:00:00Z"),
        ),
        (
            every("7m"),
            "2026-05-01T00:00:30Z",
            "2026-05-01T00:20:00Z",
            "2026-05-01T00:00:30Z",
            Some("2026-05-01T00:21:30Z"),
        ),
        (
            every("7m"),
            "2026-05-01T00:20:00Z",
            "2026-05-01T00:20:00Z",
            "2026-05-01T00:20:00Z",
            Some("2026-05-01T00:27:00Z"),
        ),
        // A one-shot before its start never fires; after it, it does.
        (
            Schedule::At { at: when },
            "2026-06-02T00:00:00Z",
            "2026-05-01T00:00:00Z",
            "2026-06-02T00:00:00Z",
            None,
        ),
        (
            Schedule::At { at: when },
            "2026-06-01T12:00:00Z",
            "2026-05-01T00:00:00Z",
            "2026-06-01T12:00:00Z",
            Some("2026-06-01T12:00:00Z"),
        ),
        (
            Schedule::Manual,
            "2026-06-01T12:00:00Z",
            "2026-05-01T00:00:00Z",
            "2026-06-01T12:00:00Z",
            None,
        ),
    ];
    for (schedule, start_at, now, anchor, first) in table {
        let got = schedule.start(&starting(start_at), t(now));
        assert_eq!(
            got,
            (t(anchor), first.map(t)),
            "{schedule:?} from {start_at} at {now}"
        );
    }
    // Without a start, `every` is anchored now and first fires one interval later.
    let now = t("2026-05-01T00:20:07Z");
    assert_eq!(
        every("7m").start(&p, now),
        (now, Some(t("2026-05-01T00:27:07Z")))
    );
    assert_eq!(Schedule::Manual.next_fire(now, now), None);
    assert_eq!(Schedule::Manual.plan(&p, now, now, 0, now).fires, []);
}

/// The scheduler never moves a stored next fire back; these pure functions
/// never hand out a fire that is not after the one they were given, whatever
/// `now` says.
#[test]
fn a_clock_going_back_never_repeats_a_fire() {
    let p = policy(MisfirePolicy::CatchUp);
    let schedules = [
        (every("7m"), t("2026-10-24T22:00:13Z")),
        (
            cron("*/15 * * * *", "Europe/Berlin"),
            t("2026-10-24T22:00:00Z"),
        ),
        (
            cron("30 2 * * *", "Europe/Berlin"),
            t("2026-10-20T00:00:00Z"),
        ),
    ];
    // The clock jumps back an hour twice, over the Berlin fall-back.
    let nows = [
        "2026-10-25T00:10:00Z",
        "2026-10-25T00:50:00Z",
        "2026-10-24T23:50:00Z",
        "2026-10-25T00:20:00Z",
        "2026-10-25T01:20:00Z",
        "2026-10-25T00:20:00Z",
        "2026-10-25T02:40:00Z",
        "2026-10-26T03:00:00Z",
    ];
    for (schedule, anchor) in &schedules {
        let (_, mut due) = schedule.start(&p, *anchor);
        let mut seen: Vec<DateTime<Utc>> = Vec::new();
        for now in nows {
            let now = t(now);
            let d = due.unwrap();
            let plan = schedule.plan(&p, *anchor, d, 0, now);
            if now < d {
                assert_eq!(plan.fires, [], "nothing is due yet at {now}");
                assert_eq!(plan.next, Some(d), "the due fire stays");
            }
            for fire in at(&plan) {
                assert!(
                    seen.last().is_none_or(|last| fire > *last),
                    "{schedule:?}: {fire} again"
                );
                seen.push(fire);
            }
            due = plan.next;
            // From the last fire handed out, the next is always later.
            if let Some(last) = seen.last() {
                assert!(schedule.next_fire(*anchor, *last).unwrap() > *last);
            }
        }
        let (_, first) = schedule.start(&p, *anchor);
        let want = chain(
            schedule,
            *anchor,
            first.unwrap() - TimeDelta::nanoseconds(1),
            seen.len(),
        );
        assert_eq!(seen, want, "{schedule:?}: each fire exactly once, in order");
    }
}

/// Planning (which walks backwards from `now`) and `next_fire` (forwards)
/// agree at every `now` around DST changes, including half-hour ones, with
/// `now` in either pass of a repeated hour.
#[test]
fn plan_and_next_fire_agree_around_transitions() {
    let zones = [
        (
            "Europe/Berlin",
            ["2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"],
        ),
        (
            "America/New_York",
            ["2026-03-08T04:00:00Z", "2026-11-01T03:00:00Z"],
        ),
        // +11 → +10:30 on Apr 5, +10:30 → +11 on Oct 4.
        (
            "Australia/Lord_Howe",
            ["2026-04-04T12:00:00Z", "2026-10-03T12:00:00Z"],
        ),
    ];
    let expressions = [
        "*/10 * * * *",
        "*/7 1,2 * * *",
        "0 1,2 * * *",
        "15,45 * * * *",
        "*/30 * 2 * * *",
    ];
    let p = policy(MisfirePolicy::CatchUp);
    for (timezone, starts) in zones {
        for start in starts {
            let from = t(start);
            let end = from + TimeDelta::hours(8);
            for expression in expressions {
                let schedule = cron(expression, timezone);
                let mut fires = vec![schedule.next_fire(from, from).unwrap()];
                while *fires.last().unwrap() <= end {
                    fires.push(schedule.next_fire(from, *fires.last().unwrap()).unwrap());
                }
                let first = fires[0];
                let mut now = first;
                while now <= end {
                    let want: Vec<_> = fires.iter().copied().filter(|f| *f <= now).collect();
                    let plan = schedule.plan(&p, from, first, 0, now);
                    assert_eq!(at(&plan), want, "{expression:?} in {timezone} at {now}");
                    assert_eq!(plan.next, fires.iter().copied().find(|f| *f > now));
                    now += secs(9 * 60 + 3);
                }
            }
        }
    }
}

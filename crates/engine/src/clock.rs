//! The time every server agrees on: the database's clock, read at each heartbeat and carried forward by this process's monotonic clock in between.
//!
//! Leases, fire times and retry times are compared across servers, so they
//! must come from one clock. Asking the database for every comparison would
//! cost a round trip each; instead each heartbeat anchors the database's
//! time to a monotonic instant, and [`now`] adds the time elapsed since.
//! A step of this server's own wall clock (an operator's `date -s`, a bad
//! NTP server) then changes nothing: the monotonic clock does not jump.
//! Before the first anchor (start-up, tests without a database) [`now`] is
//! the wall clock.

use std::sync::RwLock;
use std::time::Instant;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// The database's time at a monotonic instant, once read.
struct Anchored(RwLock<Option<(Instant, DateTime<Utc>)>>);

/// This process's clock: one, whatever the number of stores it opened
/// (tests open several, all on the same machine's clock or database).
static CLOCK: Anchored = Anchored(RwLock::new(None));

/// A new reading this close to the running estimate is not taken: the
/// estimate would step back and forth by the round trip's noise, and times
/// this process records (started, finished) must not run backwards.
const STEADY_WITHIN: TimeDelta = TimeDelta::milliseconds(5);

/// The current time by the database's clock, at microsecond precision
/// (which both databases store exactly).
pub fn now() -> DateTime<Utc> {
    CLOCK.at(Instant::now()).trunc_subsecs(6)
}

/// Takes `database`, the database's clock as read by a query sent at `asked`
/// and answered at `answered`, as the time halfway between the two.
pub fn anchor(database: DateTime<Utc>, asked: Instant, answered: Instant) {
    CLOCK.take(database, asked, answered);
}

impl Anchored {
    fn at(&self, at: Instant) -> DateTime<Utc> {
        match *self.0.read().expect("clock anchor lock") {
            Some((instant, database)) => database + elapsed(instant, at),
            None => Utc::now(),
        }
    }

    fn take(&self, database: DateTime<Utc>, asked: Instant, answered: Instant) {
        let half_way = answered.saturating_duration_since(asked) / 2;
        let midway = asked + half_way;
        // The reading may be off by half its round trip: one that agrees
        // with the estimate that closely tells nothing new.
        let uncertainty = TimeDelta::from_std(half_way).unwrap_or(TimeDelta::MAX);
        let mut anchor = self.0.write().expect("clock anchor lock");
        if let Some((instant, previous)) = *anchor
            && (previous + elapsed(instant, midway) - database).abs()
                <= uncertainty.max(STEADY_WITHIN)
        {
            return;
        }
        *anchor = Some((midway, database));
    }
}

fn elapsed(from: Instant, to: Instant) -> TimeDelta {
    match to.checked_duration_since(from) {
        Some(d) => TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX),
        None => -TimeDelta::from_std(from - to).unwrap_or(TimeDelta::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn close(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
        (a - b).abs() < TimeDelta::milliseconds(1)
    }

    #[test]
    fn before_any_reading_it_is_the_wall_clock() {
        let clock = Anchored(RwLock::new(None));
        assert!((clock.at(Instant::now()) - Utc::now()).abs() < TimeDelta::seconds(1));
    }

    #[test]
    fn the_database_clock_is_carried_forward_and_small_noise_ignored() {
        let clock = Anchored(RwLock::new(None));
        let asked = Instant::now();
        // This server's wall clock is two hours behind the database's.
        let database = Utc::now() + TimeDelta::hours(2);
        clock.take(database, asked, asked + Duration::from_millis(10));
        let later = asked + Duration::from_secs(3);
        let expected = database + TimeDelta::milliseconds(2995);
        assert!(close(clock.at(later), expected));

        // A reading 3 ms off is noise: the estimate does not step.
        clock.take(expected + TimeDelta::milliseconds(3), later, later);
        assert!(close(clock.at(later), expected));

        // A slow reading (20 s to answer, a database coming back) that
        // agrees within its uncertainty does not move it either.
        clock.take(
            expected + TimeDelta::seconds(8),
            later - Duration::from_secs(10),
            later + Duration::from_secs(10),
        );
        assert!(close(clock.at(later), expected));

        // A reading far off (the database's clock was set) is taken.
        clock.take(expected - TimeDelta::hours(2), later, later);
        assert!(close(clock.at(later), expected - TimeDelta::hours(2)));
    }
}

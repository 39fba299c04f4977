#!/usr/bin/python3
"""Debian cron's rules, evaluated independently of Cronium, for
crates/core/tests/debian_cron.rs (see docs/scheduling.md, "Checked against
Debian cron").

Which wall-clock times an expression matches is decided by croniter (Debian's
python3-croniter), a third-party cron evaluator that shares no code with
Cronium or croner. Two of croniter's own rules are not Debian's, and both are
corrected here, by name:

- croniter-day-rule: croniter ORs the two day fields unless one of them lists
  every value (which it then treats as `*`); Debian ANDs them when either
  *begins with* `*` and ORs them otherwise, even when one covers every day.
  So croniter is asked for days matching both fields (day_or=False) when a
  day field begins with `*`, and otherwise for each field on its own, the
  two walks merged (see Walls).
- croniter-month-end: croniter skips the first days of a month that follows
  a month shorter than a day the field lists; each month is walked afresh
  (see MonthWalk).
- croniter-sunday-7: with six fields croniter does not read weekday 7 as
  Sunday (with five it does); the weekday field is expanded the five-field
  way first (see Walls).
- croniter's time-zone and DST handling is not used at all: croniter walks
  naive wall-clock times, and the mapping of wall-clock times to instants is
  done below with Python's zoneinfo (the system's tzdata, not chrono-tz).

Wall-clock times become instants the way Debian's cron daemon runs them
(cron.c, "virtual time"): a job is *wildcard* when its minute or hour field
begins with `*` (@hourly too), *fixed-time* otherwise. When the clock jumps
forward, wildcard jobs do not run for the skipped minutes and fixed-time jobs
run once for each skipped minute they match, right after the jump; when it
goes back, wildcard jobs run again in the repeated minutes and fixed-time
jobs do not.

Cronium keeps two documented DST choices that differ; the expected Cronium
fires are Debian's with exactly these applied, and each case reports which of
them changed its fires:

- hour-field-decides: Cronium follows real time (Debian's "wildcard") when
  the hour field is `*` or a step, and names times of day (Debian's
  "fixed-time") otherwise; the minute field does not count, and a step that
  does not begin with `*` (`1-23/2`) counts as real time.
- skipped-times-fire-once: the fixed times a forward jump skips fire once,
  together, at the first instant after the jump, not once each.

Input: one JSON object a line, {"cron", "tz", "start", "horizon", "n"} (unix
seconds). Output: one line each, {"cronium": [...], "debian": [...],
"differences": [...], "dst": bool} with the first n fires strictly after start
and at or before horizon (unix seconds), or {"error": "..."}.
"""

import json
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter, CroniterBadDateError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def parse(expression):
    """Seconds (or None) and the five Debian fields."""
    text = expression.strip()
    text = ALIASES.get(text.lower(), text)
    fields = text.split()
    if len(fields) == 5:
        return [None] + fields
    if len(fields) == 6:
        return fields
    raise ValueError("expected 5 or 6 fields: %r" % expression)


class MonthWalk:
    """croniter's matches (days matching both day fields) after `after`.

    croniter-month-end: when the day-of-month field lists a day a month does
    not have (`*/10` has 31, February does not), croniter steps from the
    last match of that month by the missing days and lands a few days into
    the next one, skipping its first days (`0 0 1,31 * *` after February 22
    gives March 31, not March 1). A walk that crosses into another month is
    therefore started again on the first of the next month (the days it
    skips are only ever the first of the month after a short one, but the
    weekday field can carry the walk on from there, months away).
    """

    def __init__(self, text, after):
        self.text = text
        self.month = (after.year, after.month)
        self.it = croniter(text, after, day_or=False, ret_type=datetime)

    def pull(self):
        try:
            return self.it.get_next(datetime)
        except CroniterBadDateError:
            return None

    def next(self):
        w = self.pull()
        while w is not None and (w.year, w.month) != self.month:
            year, month = self.month
            self.month = (year + month // 12, month % 12 + 1)
            first = datetime(*self.month, 1) - timedelta(seconds=1)
            self.it = croniter(self.text, first, day_or=False, ret_type=datetime)
            w = self.pull()
        return w


class Walls:
    """The wall-clock times an expression matches, ascending, after `after`.

    Debian's day rule is applied here, around croniter (croniter-day-rule):
    when a day field begins with `*`, croniter is asked for days matching
    both fields (day_or=False, which it gets right); otherwise the walk is
    the union of two croniter walks, one for each day field with the other
    one `*`. croniter's own OR mode is not used: it reads a restricted field
    that lists every value (`1-31`, `0-6`) as `*` and then ignores it, and it
    gives up when one of the two fields never matches (`31` in June).

    croniter-sunday-7: with six fields croniter does not read weekday 7 as
    Sunday, so the weekday field is handed to it as the list of weekdays it
    expands to with five fields, where it does.
    """

    def __init__(self, expression, after):
        second, minute, hour, dom, month, dow = parse(expression)
        both = dom.startswith("*") or dow.startswith("*")
        if second is not None:
            expanded, nth = croniter.expand(" ".join([minute, hour, dom, month, dow]))
            assert not nth
            dow = ",".join(str(d) for d in expanded[4])

        def walk(d, w):
            parts = [minute, hour, d, month, w]
            text = " ".join(parts + ([second] if second is not None else []))
            return MonthWalk(text, after)

        if both:
            self.walks = [walk(dom, dow)]
        else:
            self.walks = [walk(dom, "*"), walk("*", dow)]
        self.heads = [self.pull(w) for w in self.walks]

    @staticmethod
    def pull(walk):
        return walk.next()

    def next(self):
        """The next matching wall-clock time, or None."""
        live = [h for h in self.heads if h is not None]
        if not live:
            return None
        w = min(live)
        for i, head in enumerate(self.heads):
            if head == w:
                self.heads[i] = self.pull(self.walks[i])
        return w


def debian_wildcard(expression):
    _, minute, hour, _, _, _ = parse(expression)
    return minute.startswith("*") or hour.startswith("*")


def cronium_real_time(expression):
    _, _, hour, _, _, _ = parse(expression)
    return "*" in hour or any(
        int(part.split("/")[1]) > 1 for part in hour.split(",") if "/" in part
    )


def utc(ts):
    return datetime.fromtimestamp(ts, timezone.utc)


def kind(zone, wall):
    """('single', t), ('repeated', first, second) or ('skipped', end)."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    a = first.astimezone(timezone.utc)
    b = second.astimezone(timezone.utc)
    if a.astimezone(zone).replace(tzinfo=None) != wall:
        # Does not exist: fold=0 read it with the offset before the jump (an
        # instant after it), fold=1 with the one after (an instant before).
        lo, hi = b, a
        after = second.utcoffset()
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            mid = mid.replace(microsecond=0)
            if mid <= lo:
                mid = lo + timedelta(seconds=1)
            if mid.astimezone(zone).utcoffset() == after:
                hi = mid
            else:
                lo = mid
        return ("skipped", hi)
    if a != b:
        return ("repeated", min(a, b), max(a, b))
    return ("single", a)


def instants(k, real_time):
    if k[0] == "single":
        return [k[1]]
    if k[0] == "repeated":
        return [k[1], k[2]] if real_time else [k[1]]
    return [] if real_time else [k[1]]


def fires(case):
    zone = ZoneInfo(case["tz"])
    start, horizon, n = utc(case["start"]), utc(case["horizon"]), case["n"]
    expression = case["cron"]
    wild = debian_wildcard(expression)
    real = cronium_real_time(expression)

    local = start.astimezone(zone)
    wall = local.replace(tzinfo=None, microsecond=0)
    k = kind(zone, wall)
    if k[0] == "repeated" and local.fold == 0:
        # In the first pass of a repeated hour the second passes of earlier
        # wall-clock times are still ahead.
        wall -= k[2] - k[1]
    walls = Walls(expression, wall - timedelta(seconds=1))
    end_wall = horizon.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)

    debian, cronium, changed = [], set(), set()
    while True:
        w = walls.next()
        if w is None or w > end_wall:
            break
        k = kind(zone, w)
        debian += [t for t in instants(k, wild) if start < t <= horizon]
        cronium.update(t for t in instants(k, real) if start < t <= horizon)
        if k[0] != "single":
            changed.update(instants(k, False) + instants(k, True))
        # Later wall-clock times only have instants at or after this one's
        # first (first passes and gap ends grow with the wall clock; second
        # passes come later still), so once it is past the n-th fire of both
        # lists, nothing later can change them.
        if len(debian) >= n and len(cronium) >= n:
            first = k[1]
            if first > sorted(debian)[n - 1] and first > sorted(cronium)[n - 1]:
                break
    debian = sorted(debian)[:n]
    cronium = sorted(cronium)[:n]
    # Whether a skipped or repeated wall-clock time is among the fires.
    dst = any(t in changed for t in debian + cronium)

    differences = []
    if debian != cronium:
        if wild != real:
            differences.append("hour-field-decides")
        if len(set(debian)) != len(debian):
            differences.append("skipped-times-fire-once")
        if not differences:
            raise AssertionError("unexplained difference from Debian")
    return {
        "cronium": [int(t.timestamp()) for t in cronium],
        "debian": [int(t.timestamp()) for t in debian],
        "differences": differences,
        "dst": dst,
    }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = fires(json.loads(line))
        except Exception as e:  # reported per case, with the case
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

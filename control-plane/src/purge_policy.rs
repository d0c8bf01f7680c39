//! Request-log retention rules: which retentions are allowed, which cron schedules are (at most
//! daily), the cutoff, and which daily partitions a purge drops whole. Pure; the I/O is `purge`.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// How long request logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    OneDay,
    ThreeDays,
    SevenDays,
}

impl FromStr for Retention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1d" => Ok(Retention::OneDay),
            "3d" => Ok(Retention::ThreeDays),
            "7d" => Ok(Retention::SevenDays),
            other => Err(format!("retention must be 1d, 3d or 7d, not {other:?}")),
        }
    }
}

impl Retention {
    /// Its name, e.g. `7d`.
    pub fn name(self) -> &'static str {
        match self {
            Retention::OneDay => "1d",
            Retention::ThreeDays => "3d",
            Retention::SevenDays => "7d",
        }
    }

    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::days(match self {
            Retention::OneDay => 1,
            Retention::ThreeDays => 3,
            Retention::SevenDays => 7,
        })
    }

    /// Logs created before this instant go.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.duration()
    }
}

/// A purge schedule: a standard 5-field cron expression in UTC that fires at most once a day.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    text: String,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.split(' ').count() != 5 {
            return Err(format!(
                "schedule {s:?} must be a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\""
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|e| format!("schedule {s:?} is not a valid cron expression: {e}"))?;
        // Every day the schedule fires on has the same hours and minutes, so its first two
        // occurrences tell whether it fires more than once on a day.
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .ok_or("clock")?;
        let first = cron
            .find_next_occurrence(&from, true)
            .map_err(|e| format!("schedule {s:?} never fires: {e}"))?;
        if let Ok(second) = cron.find_next_occurrence(&first, false) {
            if second.date_naive() == first.date_naive() {
                return Err(format!(
                    "schedule {s:?} runs more than once a day (at {} and {} UTC); purge runs at most daily, e.g. \"0 3 * * *\"",
                    first.format("%H:%M"),
                    second.format("%H:%M")
                ));
            }
        }
        Ok(Schedule { cron, text })
    }
}

impl Schedule {
    /// The expression, normalised.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The next firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}

/// Default schedule: 03:00 UTC every day.
pub const DEFAULT_SCHEDULE: &str = "0 3 * * *";

/// The purge settings of the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct PurgePolicy {
    /// Whether the schedule runs (manual runs work either way).
    pub enabled: bool,
    pub retention: Retention,
    pub schedule: Schedule,
}

impl Default for PurgePolicy {
    fn default() -> Self {
        PurgePolicy {
            enabled: false,
            retention: Retention::SevenDays,
            schedule: DEFAULT_SCHEDULE
                .parse()
                .expect("the default schedule is valid"),
        }
    }
}

/// What a purge does to the daily partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Days wholly before the cutoff: their partitions are dropped.
    pub drop: Vec<NaiveDate>,
    /// The day holding the cutoff, when it has a partition and the cutoff is not midnight: its
    /// rows before the cutoff are deleted row by row.
    pub boundary: Option<NaiveDate>,
}

/// Plans a purge of the partitions of `days` for `cutoff`.
pub fn plan(days: &[NaiveDate], cutoff: DateTime<Utc>) -> Plan {
    let cut_day = cutoff.date_naive();
    let at_midnight = cutoff.time() == chrono::NaiveTime::MIN;
    let mut drop: Vec<NaiveDate> = days.iter().copied().filter(|d| *d < cut_day).collect();
    drop.sort();
    drop.dedup();
    let boundary = (!at_midnight && days.contains(&cut_day)).then_some(cut_day);
    Plan { drop, boundary }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_are_1_3_or_7_days() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap();
        for (s, days) in [("1d", 1), ("3d", 3), ("7d", 7)] {
            let r: Retention = s.parse().unwrap();
            assert_eq!(r.name(), s);
            assert_eq!(r.cutoff(now), now - Duration::days(days));
        }
        for bad in ["2d", "7", "1w", "", "7D", "30d"] {
            let e = bad.parse::<Retention>().unwrap_err();
            assert!(e.contains("1d, 3d or 7d"), "{bad}: {e}");
        }
    }

    #[test]
    fn schedules_fire_at_most_daily() {
        let ok = [
            "0 3 * * *",
            "30 23 * * *",
            "0 0 * * 0",
            "15 4 1 * *",
            "0 12 29 2 *",
            " 0   3 * * * ",
            "0 3 * * MON-FRI",
        ];
        for s in ok {
            let sched: Schedule = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!(sched.next_after(Utc::now()).is_some(), "{s}");
        }
        let too_often = [
            "* * * * *",
            "*/5 * * * *",
            "0 * * * *",
            "0 3,15 * * *",
            "0,30 3 * * *",
            "0 */12 * * *",
            "0 1-2 * * 1",
        ];
        for s in too_often {
            let e = s.parse::<Schedule>().unwrap_err();
            assert!(e.contains("more than once a day"), "{s}: {e}");
        }
        let invalid = [
            "",
            "0 3 * *",
            "0 0 3 * * *",
            "61 3 * * *",
            "0 25 * * *",
            "a b c d e",
            "0 3 * * * 2027",
            "0 0 31 2 *",
        ];
        for s in invalid {
            assert!(s.parse::<Schedule>().is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn next_run_is_strictly_after() {
        let s: Schedule = "0 3 * * *".parse().unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 29, h, m, 0).unwrap();
        assert_eq!(s.next_after(at(2, 59)), Some(at(3, 0)));
        assert_eq!(
            s.next_after(at(3, 0)),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn plans_drop_whole_days_and_trim_the_boundary() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let days: Vec<NaiveDate> = (10..=29).map(d).collect();
        let cutoff = Utc.with_ymd_and_hms(2026, 11, 22, 10, 30, 0).unwrap();
        let p = plan(&days, cutoff);
        assert_eq!(p.drop, (10..=21).map(d).collect::<Vec<_>>());
        assert_eq!(p.boundary, Some(d(22)));
        // At midnight there is no boundary: the day before is the last dropped.
        let p = plan(&days, Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap());
        assert_eq!(p.drop.last(), Some(&d(21)));
        assert_eq!(p.boundary, None);
        // No partition for the cutoff's day: nothing to trim.
        let p = plan(&[d(1), d(2)], cutoff);
        assert_eq!(p.drop, vec![d(1), d(2)]);
        assert_eq!(p.boundary, None);
        assert_eq!(
            plan(&[], cutoff),
            Plan {
                drop: vec![],
                boundary: None
            }
        );
    }
}

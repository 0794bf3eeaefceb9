//! Time as rules see it: Paris local time, five-field cron schedules and the
//! sun at an equipment's position. Nothing here reads a clock: every function
//! takes the instant it reasons about.

use std::sync::OnceLock;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use crate::Timestamp;

/// The city's time zone. The system database is preferred; the POSIX rule
/// keeps schedules right on a host without one (a container built `FROM scratch`).
pub fn paris() -> &'static TimeZone {
    static PARIS: OnceLock<TimeZone> = OnceLock::new();
    PARIS.get_or_init(|| {
        TimeZone::get("Europe/Paris")
            .or_else(|_| TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3"))
            .unwrap_or(TimeZone::UTC)
    })
}

/// Local civil time in Paris.
pub fn local(now: Timestamp) -> DateTime {
    now.to_zoned(paris().clone()).datetime()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("a cron expression has 5 fields (minute hour day-of-month month day-of-week), this one has {0}")]
    FieldCount(usize),
    #[error("cron field {field} ('{text}'): {problem}")]
    Field {
        field: &'static str,
        text: String,
        problem: String,
    },
}

/// A five-field cron schedule (`*/15 6-22 * * 1-5`), in Paris time. Supports
/// `*`, numbers, ranges `a-b`, steps `/n` and lists `a,b`; day of week 0 or 7
/// is Sunday. As in Vixie cron, when both day fields are restricted a day
/// matches if either does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

fn parse_field(index: usize, text: &str) -> Result<u64, CronError> {
    let (field, min, max) = FIELDS[index];
    let err = |problem: String| CronError::Field {
        field,
        text: text.to_owned(),
        problem,
    };
    let number = |s: &str| -> Result<u32, CronError> {
        let n: u32 = s.parse().map_err(|_| err(format!("'{s}' is not a number")))?;
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(err(format!("{n} is outside {min}-{max}")))
        }
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| err(format!("step '{s}' is not a number")))?;
                if step == 0 || step > max {
                    return Err(err(format!("step {step} must be from 1 to {max}")));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, max),
                None => {
                    let n = number(r)?;
                    (n, n)
                }
            },
        };
        if lo > hi {
            return Err(err(format!("range {lo}-{hi} runs backwards")));
        }
        let mut n = lo;
        while n <= hi {
            bits |= 1 << n;
            n += step;
        }
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let mut weekdays = parse_field(4, fields[4])?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Self {
            minutes: parse_field(0, fields[0])?,
            hours: parse_field(1, fields[1])?,
            days: parse_field(2, fields[2])?,
            months: parse_field(3, fields[3])?,
            weekdays,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        })
    }

    /// Whether the schedule fires in the minute of local time `t`.
    pub fn matches(&self, t: DateTime) -> bool {
        let bit = |set: u64, n: i8| u8::try_from(n).is_ok_and(|n| n < 64 && set & (1 << n) != 0);
        let day = bit(self.days, t.day());
        let weekday = bit(self.weekdays, t.weekday().to_sunday_zero_offset());
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        };
        bit(self.minutes, t.minute()) && bit(self.hours, t.hour()) && bit(self.months, t.month()) && day_ok
    }
}

/// Sunrise and sunset (upper rim on the horizon, refraction included) on
/// the UTC day `date` at (longitude, latitude); `None` in polar day or night
/// or for an invalid position.
pub fn sun_events(date: Date, lon: f64, lat: f64) -> Option<(Timestamp, Timestamp)> {
    let coords = sunrise::Coordinates::new(lat, lon)?;
    let day = chrono::NaiveDate::from_ymd_opt(
        i32::from(date.year()),
        u32::try_from(date.month()).ok()?,
        u32::try_from(date.day()).ok()?,
    )?;
    let solar = sunrise::SolarDay::new(coords, day);
    let to_ts = |t: chrono::DateTime<chrono::Utc>| Timestamp::from_second(t.timestamp()).ok();
    let rise = to_ts(solar.event_time(sunrise::SolarEvent::Sunrise)?)?;
    let set = to_ts(solar.event_time(sunrise::SolarEvent::Sunset)?)?;
    Some((rise, set))
}

/// Whether the sun is below the horizon at (longitude, latitude) at `now`.
/// Unknown (polar regions, no position) counts as day: lighting rules then
/// stay quiet rather than raise false alarms.
pub fn is_night(now: Timestamp, lon: f64, lat: f64) -> bool {
    let date = now.to_zoned(TimeZone::UTC).date();
    sun_events(date, lon, lat).is_some_and(|(rise, set)| now < rise || now >= set)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    const DIJON: (f64, f64) = (5.0415, 47.3220);

    #[test]
    fn cron_fields() {
        let c = Cron::parse("*/15 6-22 * * 1-5").expect("valid");
        assert!(c.matches(date(2026, 12, 1).at(6, 45, 0, 0))); // a Tuesday
        assert!(!c.matches(date(2026, 12, 1).at(6, 46, 0, 0)));
        assert!(!c.matches(date(2026, 12, 1).at(23, 0, 0, 0)));
        assert!(!c.matches(date(2026, 12, 6).at(7, 0, 0, 0))); // a Sunday
        let sunday = Cron::parse("0 22 * * 7").expect("valid");
        assert!(sunday.matches(date(2026, 12, 6).at(22, 0, 0, 0)));
        let either = Cron::parse("0 0 1 * 1").expect("valid");
        assert!(either.matches(date(2026, 12, 1).at(0, 0, 0, 0)));
        assert!(either.matches(date(2026, 12, 7).at(0, 0, 0, 0)));
        assert!(!either.matches(date(2026, 12, 8).at(0, 0, 0, 0)));
    }

    #[test]
    fn cron_errors_name_the_field() {
        assert_eq!(Cron::parse("* * *"), Err(CronError::FieldCount(3)));
        let e = Cron::parse("0 25 * * *").expect_err("hour 25").to_string();
        assert!(e.contains("hour") && e.contains("25 is outside 0-23"), "{e}");
        let e = Cron::parse("*/0 * * * *").expect_err("step 0").to_string();
        assert!(e.contains("minute") && e.contains("step 0"), "{e}");
        assert!(Cron::parse("5-1 * * * *").is_err());
        assert!(Cron::parse("a * * * *").is_err());
    }

    #[test]
    fn paris_hours_follow_daylight_saving() {
        let winter: Timestamp = "2026-12-01T21:00:00Z".parse().expect("ts");
        let summer: Timestamp = "2026-07-01T21:00:00Z".parse().expect("ts");
        assert_eq!(local(winter).hour(), 22);
        assert_eq!(local(summer).hour(), 23);
    }

    #[test]
    fn dijon_sun() {
        let (rise, set) = sun_events(date(2026, 12, 1), DIJON.0, DIJON.1).expect("sun in Dijon");
        // Dijon, 1 December: sunrise about 07:0x UTC, sunset about 15:5x UTC.
        let rise_local = rise.to_zoned(TimeZone::UTC);
        let set_local = set.to_zoned(TimeZone::UTC);
        assert_eq!(rise_local.hour(), 7, "{rise}");
        assert!((15..=16).contains(&set_local.hour()), "{set}");
        assert!(is_night("2026-12-01T05:00:00Z".parse().expect("ts"), DIJON.0, DIJON.1));
        assert!(!is_night("2026-12-01T12:00:00Z".parse().expect("ts"), DIJON.0, DIJON.1));
        assert!(is_night("2026-12-01T20:00:00Z".parse().expect("ts"), DIJON.0, DIJON.1));
    }
}

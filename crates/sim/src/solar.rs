//! The astronomical clock: sunrise and sunset at Dijon's latitude, and the
//! legal time in France. A textbook solar formula (declination plus the
//! equation of time) is within a couple of minutes, as good as a cabinet's
//! astronomical clock, and needs no dependency nor time-zone database.

use jiff::Timestamp;

use crate::geo::{ORIGIN_LAT, ORIGIN_LON};

const MS_PER_DAY: i64 = 86_400_000;

/// Sunrise and sunset of the UTC day holding `at`, as Unix milliseconds.
pub fn sun_times(at_ms: i64) -> (i64, i64) {
    let day_start = at_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY;
    let day_of_year = day_of_year(day_start) as f64;
    let declination = 23.44_f64.to_radians() * (360.0 / 365.0 * (284.0 + day_of_year)).to_radians().sin();
    let b = (360.0 / 365.0 * (day_of_year - 81.0)).to_radians();
    let equation_of_time_min = 9.87 * (2.0 * b).sin() - 7.53 * b.cos() - 1.5 * b.sin();
    let solar_noon_min = 720.0 - 4.0 * ORIGIN_LON - equation_of_time_min;
    let lat = ORIGIN_LAT.to_radians();
    // -0.833°: refraction plus the sun's radius, the usual sunrise definition.
    let cos_h0 = ((-0.833_f64).to_radians().sin() - lat.sin() * declination.sin()) / (lat.cos() * declination.cos());
    let h0_deg = cos_h0.clamp(-1.0, 1.0).acos().to_degrees();
    let to_ms = |minutes: f64| day_start + (minutes * 60_000.0) as i64;
    (
        to_ms(solar_noon_min - 4.0 * h0_deg),
        to_ms(solar_noon_min + 4.0 * h0_deg),
    )
}

/// Whether the street lights should burn: from a few minutes after sunset to
/// a few minutes before sunrise, as a cabinet's astronomical clock switches them.
pub fn is_night(at_ms: i64) -> bool {
    const MARGIN_MS: i64 = 5 * 60_000;
    let (sunrise, sunset) = sun_times(at_ms);
    at_ms < sunrise - MARGIN_MS || at_ms > sunset + MARGIN_MS
}

/// Local (Europe/Paris) time of day in hours, 0.0..24.0. Central European
/// Summer Time runs from the last Sunday of March to the last Sunday of
/// October, 01:00 UTC both.
pub fn local_hour(at_ms: i64) -> f64 {
    let offset_h = if is_summer_time(at_ms) { 2 } else { 1 };
    let ms_of_day = (at_ms + offset_h * 3_600_000).rem_euclid(MS_PER_DAY);
    ms_of_day as f64 / 3_600_000.0
}

fn is_summer_time(at_ms: i64) -> bool {
    let Ok(t) = Timestamp::from_millisecond(at_ms) else {
        return false;
    };
    let year = t.to_zoned(jiff::tz::TimeZone::UTC).year();
    let last_sunday_1am = |month: i8| -> Option<i64> {
        let last_day = jiff::civil::date(year, month, 31);
        let back = i64::from(last_day.weekday().to_sunday_zero_offset());
        let sunday = last_day.checked_sub(jiff::Span::new().days(back)).ok()?;
        let ts = sunday
            .at(1, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp();
        Some(ts.as_millisecond())
    };
    match (last_sunday_1am(3), last_sunday_1am(10)) {
        (Some(start), Some(end)) => at_ms >= start && at_ms < end,
        _ => false,
    }
}

fn day_of_year(day_start_ms: i64) -> i16 {
    Timestamp::from_millisecond(day_start_ms)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).day_of_year())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn dijon_days_are_short_in_winter_and_long_in_summer() {
        // Dijon: winter solstice sunrise ≈ 07:20 UTC, sunset ≈ 15:55 UTC;
        // summer solstice sunrise ≈ 03:50 UTC, sunset ≈ 19:45 UTC.
        let (rise, set) = sun_times(ms("2026-12-21T12:00:00Z"));
        assert!((rise - ms("2026-12-21T07:20:00Z")).abs() < 15 * 60_000, "{rise}");
        assert!((set - ms("2026-12-21T15:55:00Z")).abs() < 15 * 60_000, "{set}");
        let (rise, set) = sun_times(ms("2026-06-21T12:00:00Z"));
        assert!((rise - ms("2026-06-21T03:50:00Z")).abs() < 15 * 60_000, "{rise}");
        assert!((set - ms("2026-06-21T19:45:00Z")).abs() < 15 * 60_000, "{set}");
        assert!(is_night(ms("2026-12-21T20:00:00Z")));
        assert!(!is_night(ms("2026-12-21T12:00:00Z")));
    }

    #[test]
    fn french_legal_time_switches_on_the_last_sundays() {
        assert_eq!(local_hour(ms("2026-01-15T12:00:00Z")), 13.0);
        assert_eq!(local_hour(ms("2026-07-15T12:00:00Z")), 14.0);
        // 2026: CEST from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(local_hour(ms("2026-03-29T00:59:00Z")).floor(), 1.0);
        assert_eq!(local_hour(ms("2026-03-29T01:00:00Z")), 3.0);
        assert_eq!(local_hour(ms("2026-10-25T01:00:00Z")), 2.0);
    }
}

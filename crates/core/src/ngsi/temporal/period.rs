//! `aggrPeriodDuration`: the ISO 8601 duration of one aggregation period
//! (ETSI GS CIM 009 §4.5.19.1), and the periods it cuts a time range into.
//!
//! Periods are computed in UTC. Days and weeks are then always 24 h and 7 × 24 h
//! long, so only years and months make a period calendar-dependent (a month
//! from 31 January ends on 28 or 29 February).

use std::fmt;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span};

use super::TemporalError;
use crate::Timestamp;

/// Most periods one query may cut its range into: more is refused as too
/// complex (a year by the hour is 8,760 periods).
pub const MAX_PERIODS: usize = 10_000;

/// Longest period accepted: a hundred years is already the whole history of
/// any city sensor; beyond it the duration is a typing error.
const MAX_NOMINAL_SECONDS: u64 = 100 * 366 * 86_400;

/// Longest duration text accepted, in bytes.
const MAX_DURATION_LEN: usize = 64;

const PARAM: &str = "aggrPeriodDuration";

/// An ISO 8601 duration as NGSI-LD accepts it: `P[n]Y[n]M[n]DT[n]H[n]M[n]S`
/// or `P[n]W`, integer components only. Zero (`PT0S`, `P0D`) means "the whole
/// time range of the query".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodDuration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
}

impl PeriodDuration {
    /// Parses the text of `aggrPeriodDuration`.
    pub fn parse(text: &str) -> Result<Self, TemporalError> {
        let invalid = |problem: String| TemporalError::invalid(PARAM, problem);
        if text.len() > MAX_DURATION_LEN {
            return Err(invalid(format!("is longer than {MAX_DURATION_LEN} characters")));
        }
        let expected = "expected an ISO 8601 duration such as PT1H, P1D, P1W, P1M or P1Y";
        let Some(body) = text.strip_prefix('P') else {
            return Err(invalid(format!("'{text}' does not start with 'P': {expected}")));
        };
        let (date, time) = match body.split_once('T') {
            Some((_, "")) => return Err(invalid(format!("'{text}' has nothing after 'T': {expected}"))),
            Some((date, time)) => (date, Some(time)),
            None => (body, None),
        };
        if date.is_empty() && time.is_none() {
            return Err(invalid(format!("'{text}' has no component: {expected}")));
        }
        let mut d = Self::default();
        {
            let mut date_fields = [
                ('Y', &mut d.years),
                ('M', &mut d.months),
                ('W', &mut d.weeks),
                ('D', &mut d.days),
            ];
            components(text, date, &mut date_fields)?;
        }
        if let Some(time) = time {
            let mut time_fields = [('H', &mut d.hours), ('M', &mut d.minutes), ('S', &mut d.seconds)];
            components(text, time, &mut time_fields)?;
        }
        // §4.5.19.1 allows weeks only on their own (`P[n]W`).
        if d.weeks > 0 && (d.years, d.months, d.days, d.hours, d.minutes, d.seconds) != (0, 0, 0, 0, 0, 0) {
            return Err(invalid(format!(
                "'{text}' mixes weeks with other components: write P[n]W alone"
            )));
        }
        if d.nominal_seconds() > MAX_NOMINAL_SECONDS {
            return Err(invalid(format!("'{text}' is longer than 100 years")));
        }
        Ok(d)
    }

    /// Whether the duration is zero: one period spanning the whole range.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the length of a period depends on where it starts (months, years).
    pub fn is_calendar(&self) -> bool {
        self.years > 0 || self.months > 0
    }

    /// The exact length, when it does not depend on the calendar.
    pub fn fixed_length(&self) -> Option<SignedDuration> {
        (!self.is_calendar()).then(|| SignedDuration::from_secs(self.fixed_seconds()))
    }

    fn fixed_seconds(&self) -> i64 {
        (i64::from(self.weeks) * 7 + i64::from(self.days)) * 86_400
            + i64::from(self.hours) * 3_600
            + i64::from(self.minutes) * 60
            + i64::from(self.seconds)
    }

    /// An upper bound of the length, to refuse absurd durations before any arithmetic.
    fn nominal_seconds(&self) -> u64 {
        let fixed = self.fixed_seconds().unsigned_abs();
        (u64::from(self.years) * 366 + u64::from(self.months) * 31) * 86_400 + fixed
    }

    /// The end of the `k`-th period of a series starting at `origin`:
    /// computed from the origin every time, so months do not drift (31 Jan +
    /// 2 months is 31 March, not 28 March).
    fn boundary(&self, origin: Timestamp, k: i64) -> Option<Timestamp> {
        let months = (i64::from(self.years) * 12 + i64::from(self.months)).checked_mul(k)?;
        let calendar = if months == 0 {
            origin
        } else {
            let span = Span::new().try_months(months).ok()?;
            origin.to_zoned(TimeZone::UTC).checked_add(span).ok()?.timestamp()
        };
        let fixed = SignedDuration::from_secs(self.fixed_seconds().checked_mul(k)?);
        calendar.checked_add(fixed).ok()
    }
}

/// Reads `<digits><designator>` pairs in the order of `fields`; each
/// designator at most once, none out of order.
fn components(text: &str, mut part: &str, fields: &mut [(char, &mut u32)]) -> Result<(), TemporalError> {
    let mut next = 0;
    while !part.is_empty() {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        let Some(designator) = part[digits..].chars().next() else {
            return Err(TemporalError::invalid(
                PARAM,
                format!("'{text}' ends with a number that has no designator (Y, M, W, D, H, M or S)"),
            ));
        };
        if designator == '.' || designator == ',' {
            return Err(TemporalError::invalid(
                PARAM,
                format!("'{text}' has a fraction: only whole numbers are supported"),
            ));
        }
        if digits == 0 {
            return Err(TemporalError::invalid(
                PARAM,
                format!("'{text}' has '{designator}' where a number is expected"),
            ));
        }
        let Some(offset) = fields[next..].iter().position(|(d, _)| *d == designator) else {
            return Err(TemporalError::invalid(
                PARAM,
                format!("'{text}' has an unexpected or misplaced '{designator}'"),
            ));
        };
        let value: u32 = part[..digits]
            .parse()
            .map_err(|_| TemporalError::invalid(PARAM, format!("'{text}' has a number too large")))?;
        *fields[next + offset].1 = value;
        next += offset + 1;
        part = &part[digits + designator.len_utf8()..];
    }
    Ok(())
}

impl fmt::Display for PeriodDuration {
    /// The shortest ISO 8601 form (`PT1H`, `P1M`, `PT0S`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("PT0S");
        }
        f.write_str("P")?;
        for (n, d) in [
            (self.years, 'Y'),
            (self.months, 'M'),
            (self.weeks, 'W'),
            (self.days, 'D'),
        ] {
            if n > 0 {
                write!(f, "{n}{d}")?;
            }
        }
        if (self.hours, self.minutes, self.seconds) != (0, 0, 0) {
            f.write_str("T")?;
            for (n, d) in [(self.hours, 'H'), (self.minutes, 'M'), (self.seconds, 'S')] {
                if n > 0 {
                    write!(f, "{n}{d}")?;
                }
            }
        }
        Ok(())
    }
}

/// The consecutive periods `[start, end)` that cover a time range, the first
/// starting at the range's start. The last one may end after the range: every
/// period has the requested duration, as in the specification's examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Periods {
    /// `len() + 1` increasing instants: period `i` is `[bounds[i], bounds[i + 1])`.
    bounds: Vec<Timestamp>,
    /// The common length when every period has it, so a store can compute a
    /// point's period with one division.
    fixed: Option<SignedDuration>,
}

impl Periods {
    /// Cuts `[start, end)` into periods of `duration` (zero: one period, the
    /// whole range). Refuses more than [`MAX_PERIODS`] periods with
    /// [`TemporalError::TooManyPeriods`]. An empty range has no period.
    pub fn new(start: Timestamp, end: Timestamp, duration: PeriodDuration) -> Result<Self, TemporalError> {
        if end <= start {
            return Ok(Self::default());
        }
        let range = end.as_microsecond().abs_diff(start.as_microsecond());
        match duration.fixed_length() {
            _ if duration.is_zero() => Ok(Self {
                bounds: vec![start, end],
                fixed: Some(end.duration_since(start)),
            }),
            Some(length) => {
                let step = u64::try_from(length.as_micros().unsigned_abs()).unwrap_or(u64::MAX);
                let count = range.div_ceil(step.max(1));
                if count > MAX_PERIODS as u64 {
                    return Err(TemporalError::TooManyPeriods {
                        count,
                        max: MAX_PERIODS,
                    });
                }
                let bounds = (0..=count as i64)
                    .map(|k| duration.boundary(start, k).ok_or_else(|| beyond_calendar(duration)))
                    .collect::<Result<_, _>>()?;
                Ok(Self {
                    bounds,
                    fixed: Some(length),
                })
            }
            None => {
                let mut bounds = vec![start];
                while bounds.last().is_some_and(|b| *b < end) {
                    if bounds.len() > MAX_PERIODS {
                        // The nominal length is an upper bound, so this undercounts.
                        let count = range / duration.nominal_seconds().saturating_mul(1_000_000).max(1);
                        return Err(TemporalError::TooManyPeriods {
                            count: count.max(MAX_PERIODS as u64 + 1),
                            max: MAX_PERIODS,
                        });
                    }
                    let k = bounds.len() as i64;
                    bounds.push(duration.boundary(start, k).ok_or_else(|| beyond_calendar(duration))?);
                }
                Ok(Self { bounds, fixed: None })
            }
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start of the first period.
    pub fn start(&self) -> Option<Timestamp> {
        self.bounds.first().copied()
    }

    /// The end of the last period.
    pub fn end(&self) -> Option<Timestamp> {
        self.bounds.last().copied()
    }

    /// The common length of every period, when they have one (no months, no years).
    pub fn fixed_length(&self) -> Option<SignedDuration> {
        self.fixed
    }

    /// The period boundaries: `len() + 1` increasing instants.
    pub fn boundaries(&self) -> &[Timestamp] {
        &self.bounds
    }

    /// Period `i` as `(start, end)`.
    pub fn get(&self, i: usize) -> Option<(Timestamp, Timestamp)> {
        Some((*self.bounds.get(i)?, *self.bounds.get(i + 1)?))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Timestamp, Timestamp)> + '_ {
        self.bounds.windows(2).map(|w| (w[0], w[1]))
    }

    /// The index of the period holding `t`, if any.
    pub fn index_of(&self, t: Timestamp) -> Option<usize> {
        let (start, end) = (self.start()?, self.end()?);
        if t < start || t >= end {
            return None;
        }
        match self.fixed {
            Some(length) => {
                let offset = t.as_microsecond() - start.as_microsecond();
                usize::try_from(offset / length.as_micros() as i64).ok()
            }
            None => Some(self.bounds.partition_point(|b| *b <= t) - 1),
        }
    }
}

fn beyond_calendar(duration: PeriodDuration) -> TemporalError {
    TemporalError::invalid(
        PARAM,
        format!("periods of {duration} run past the last representable date"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_forms_the_specification_lists() {
        let d = PeriodDuration::parse("P3Y6M4DT12H30M5S").unwrap();
        assert_eq!(
            (d.years, d.months, d.days, d.hours, d.minutes, d.seconds),
            (3, 6, 4, 12, 30, 5)
        );
        assert_eq!(d.to_string(), "P3Y6M4DT12H30M5S");
        for (text, seconds) in [
            ("PT1H", 3_600),
            ("P1D", 86_400),
            ("P1W", 604_800),
            ("PT4M", 240),
            ("PT90S", 90),
        ] {
            let d = PeriodDuration::parse(text).unwrap();
            assert_eq!(d.fixed_length(), Some(SignedDuration::from_secs(seconds)), "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert!(PeriodDuration::parse("P1M").unwrap().is_calendar());
        assert!(PeriodDuration::parse("P1Y").unwrap().is_calendar());
        assert!(PeriodDuration::parse("PT0S").unwrap().is_zero());
        assert!(PeriodDuration::parse("P0D").unwrap().is_zero());
    }

    #[test]
    fn malformed_durations_are_named() {
        let cases = [
            ("1H", "does not start with 'P'"),
            ("P", "no component"),
            ("PT", "nothing after 'T'"),
            ("PT1", "no designator"),
            ("P1H", "'H'"),
            ("PT1D", "'D'"),
            ("P1D1Y", "misplaced 'Y'"),
            ("P1M1M", "misplaced 'M'"),
            ("PT1.5H", "fraction"),
            ("PT-1H", "'-' where a number"),
            ("P1W1D", "weeks"),
            ("P101Y", "100 years"),
            ("PT99999999999S", "too large"),
            ("pt1h", "does not start with 'P'"),
        ];
        for (text, needle) in cases {
            let err = PeriodDuration::parse(text).unwrap_err().to_string();
            assert!(
                err.contains("aggrPeriodDuration") && err.contains(needle),
                "{text}: {err}"
            );
        }
        assert!(PeriodDuration::parse(&format!("PT{}S", "1".repeat(80))).is_err());
    }

    #[test]
    fn fixed_periods_cover_the_range_with_full_periods() {
        let p = Periods::new(
            ts("2018-08-01T12:00:00Z"),
            ts("2018-08-01T12:10:00Z"),
            PeriodDuration::parse("PT4M").unwrap(),
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(2), Some((ts("2018-08-01T12:08:00Z"), ts("2018-08-01T12:12:00Z"))));
        assert_eq!(p.index_of(ts("2018-08-01T12:03:59.999999Z")), Some(0));
        assert_eq!(p.index_of(ts("2018-08-01T12:04:00Z")), Some(1));
        assert_eq!(p.index_of(ts("2018-08-01T12:12:00Z")), None);
        assert_eq!(p.index_of(ts("2018-08-01T11:59:59Z")), None);
    }

    #[test]
    fn zero_is_one_period_over_the_whole_range() {
        let (a, b) = (ts("2026-01-01T00:00:00Z"), ts("2026-01-01T00:00:00.000001Z"));
        let p = Periods::new(a, b, PeriodDuration::default()).unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), [(a, b)]);
        assert!(Periods::new(b, a, PeriodDuration::default()).unwrap().is_empty());
    }

    #[test]
    fn months_follow_the_calendar_without_drifting() {
        let p = Periods::new(
            ts("2024-01-31T00:00:00Z"),
            ts("2024-04-01T00:00:00Z"),
            PeriodDuration::parse("P1M").unwrap(),
        )
        .unwrap();
        let starts: Vec<String> = p.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(
            starts,
            ["2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z"],
            "31 Jan + 2 months is 31 March (leap February in between)"
        );
        assert_eq!(p.fixed_length(), None);
        assert_eq!(p.index_of(ts("2024-03-30T23:59:59Z")), Some(1));
        assert_eq!(p.index_of(ts("2024-03-31T00:00:00Z")), Some(2));

        let years = Periods::new(
            ts("2020-02-29T00:00:00Z"),
            ts("2022-01-01T00:00:00Z"),
            PeriodDuration::parse("P1Y").unwrap(),
        )
        .unwrap();
        assert_eq!(years.get(1).map(|(s, _)| s), Some(ts("2021-02-28T00:00:00Z")));
    }

    #[test]
    fn too_many_periods_is_its_own_error() {
        let year = (ts("2025-01-01T00:00:00Z"), ts("2026-01-01T00:00:00Z"));
        assert_eq!(
            Periods::new(year.0, year.1, PeriodDuration::parse("PT1H").unwrap())
                .unwrap()
                .len(),
            8_760
        );
        let err = Periods::new(year.0, year.1, PeriodDuration::parse("PT1M").unwrap()).unwrap_err();
        assert_eq!(
            err,
            TemporalError::TooManyPeriods {
                count: 525_600,
                max: MAX_PERIODS
            }
        );
        let centuries = (ts("1000-01-01T00:00:00Z"), ts("9000-01-01T00:00:00Z"));
        assert!(matches!(
            Periods::new(centuries.0, centuries.1, PeriodDuration::parse("P1M").unwrap()),
            Err(TemporalError::TooManyPeriods { count, .. }) if count > MAX_PERIODS as u64
        ));
    }
}

//! Aggregation methods (`aggrMethods`, ETSI GS CIM 009 §4.5.19.1) computed per period.
//!
//! A period's values are first summarised into [`PeriodStats`] (counts, sums,
//! extremes), which a store can compute in SQL as well; every method is then
//! read from those statistics by [`PeriodStats::value`], so the in-memory
//! aggregation and a store's give the same answers by construction.
//!
//! How each JSON type is aggregated (Table 4.5.19.1-1):
//! - numbers, and booleans (true = 1, false = 0): every method;
//! - arrays: their sizes for `avg`, `sum`, `min`, `max`; no `stddev` nor `sumsq`;
//! - strings: `min` and `max` are the first and last in lexicographic order
//!   (Unicode code point order), used only when the period holds no number,
//!   boolean or array (a mixed period is compared numerically); no other
//!   numeric method;
//! - objects and null: `totalCount` and `distinctCount` only.
//!
//! Relationships get `totalCount` and `distinctCount` (of targets) only
//! (Table 4.5.19.1-3). A method that does not apply, or a period with nothing
//! to aggregate, yields `null`: every requested method appears for every
//! period, so clients read columns of equal length.
//!
//! Values are told apart for `distinctCount` as stored: numbers by value
//! (1 and 1.0 are one value), strings exactly, other JSON by its compact text.
//! `stddev` is the sample standard deviation (n − 1, as PostgreSQL's `stddev`
//! that peer brokers use), `null` under two values.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use super::Periods;
use crate::{AttributeKind, Timestamp};

/// One aggregation method of `aggrMethods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggrMethod {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl AggrMethod {
    pub const ALL: [Self; 8] = [
        Self::TotalCount,
        Self::DistinctCount,
        Self::Sum,
        Self::Avg,
        Self::Min,
        Self::Max,
        Self::Stddev,
        Self::Sumsq,
    ];

    /// The name used in requests and as the member of the aggregated representation.
    pub fn name(self) -> &'static str {
        match self {
            Self::TotalCount => "totalCount",
            Self::DistinctCount => "distinctCount",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Stddev => "stddev",
            Self::Sumsq => "sumsq",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for AggrMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Count, sum, sum of squares and extremes of a set of numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub sum: f64,
    pub sum_sq: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// What a period's values amount to, from which every method is read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeriodStats {
    /// Every instance in the period.
    pub total_count: u64,
    /// Distinct values, compared as stored (see the module documentation);
    /// `None` when not computed (a store skips it unless `distinctCount` is asked).
    pub distinct_count: Option<u64>,
    /// Numbers and booleans (true = 1, false = 0).
    pub numbers: Moments,
    /// Sizes of array values (`sum_sq` unused).
    pub array_sizes: Moments,
    /// Lexicographic extremes of string values.
    pub text_min: Option<String>,
    pub text_max: Option<String>,
}

impl PeriodStats {
    /// The method's result for an attribute of `kind`, `null` when the method
    /// does not apply or the period has nothing it can aggregate.
    pub fn value(&self, method: AggrMethod, kind: AttributeKind) -> Value {
        let counts_only = matches!(kind, AttributeKind::Relationship | AttributeKind::ListRelationship);
        let (n, a) = (&self.numbers, &self.array_sizes);
        match method {
            AggrMethod::TotalCount => Value::from(self.total_count),
            AggrMethod::DistinctCount => self.distinct_count.map_or(Value::Null, Value::from),
            _ if counts_only => Value::Null,
            _ if n.count + a.count == 0 && matches!(method, AggrMethod::Sum | AggrMethod::Avg) => Value::Null,
            AggrMethod::Sum => number(n.sum + a.sum),
            AggrMethod::Avg => number((n.sum + a.sum) / (n.count + a.count) as f64),
            AggrMethod::Min => match extreme(n.min, a.min, f64::min) {
                Some(x) => number(x),
                None => self.text_min.clone().map_or(Value::Null, Value::String),
            },
            AggrMethod::Max => match extreme(n.max, a.max, f64::max) {
                Some(x) => number(x),
                None => self.text_max.clone().map_or(Value::Null, Value::String),
            },
            AggrMethod::Stddev => {
                if n.count < 2 {
                    return Value::Null;
                }
                let count = n.count as f64;
                // From the sums, as a store computes it; clamped, as rounding can
                // leave a tiny negative variance for constant values.
                let variance = ((n.sum_sq - n.sum * n.sum / count) / (count - 1.0)).max(0.0);
                number(variance.sqrt())
            }
            AggrMethod::Sumsq if n.count == 0 => Value::Null,
            AggrMethod::Sumsq => number(n.sum_sq),
        }
    }
}

fn extreme(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// A JSON number, written as an integer when it is one (`120`, not `120.0`,
/// as in the specification's examples); `null` if not finite.
fn number(x: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: integers beyond are not exact
    if x.fract() == 0.0 && x.abs() < EXACT {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// Summarises `instances` (time, value) into one [`PeriodStats`] per period
/// of `periods`; instances outside every period are ignored.
pub fn aggregate<'a>(
    instances: impl IntoIterator<Item = (Timestamp, &'a Value)>,
    periods: &Periods,
) -> Vec<PeriodStats> {
    let mut acc: Vec<Accumulator<'a>> = (0..periods.len()).map(|_| Accumulator::default()).collect();
    for (t, value) in instances {
        if let Some(a) = periods.index_of(t).and_then(|i| acc.get_mut(i)) {
            a.push(value);
        }
    }
    acc.into_iter().map(Accumulator::finish).collect()
}

/// A value as `distinctCount` tells values apart.
#[derive(PartialEq, Eq, Hash)]
enum Distinct<'a> {
    /// The bits of the number as a double, with -0 as 0.
    Number(u64),
    Text(&'a str),
    Json(String),
}

#[derive(Default)]
struct Accumulator<'a> {
    total: u64,
    distinct: HashSet<Distinct<'a>>,
    numbers: MomentsAcc,
    sizes: MomentsAcc,
    text_min: Option<&'a str>,
    text_max: Option<&'a str>,
}

impl<'a> Accumulator<'a> {
    fn push(&mut self, value: &'a Value) {
        self.total += 1;
        let key = match value {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                self.numbers.push(x);
                Distinct::Number((x + 0.0).to_bits())
            }
            Value::Bool(b) => {
                self.numbers.push(f64::from(u8::from(*b)));
                Distinct::Json(value.to_string())
            }
            Value::String(s) => {
                self.text_min = Some(self.text_min.map_or(s, |m| m.min(s)));
                self.text_max = Some(self.text_max.map_or(s, |m| m.max(s)));
                Distinct::Text(s)
            }
            Value::Array(items) => {
                self.sizes.push(items.len() as f64);
                Distinct::Json(value.to_string())
            }
            Value::Object(_) | Value::Null => Distinct::Json(value.to_string()),
        };
        self.distinct.insert(key);
    }

    fn finish(self) -> PeriodStats {
        PeriodStats {
            total_count: self.total,
            distinct_count: Some(self.distinct.len() as u64),
            numbers: self.numbers.finish(),
            array_sizes: self.sizes.finish(),
            text_min: self.text_min.map(str::to_owned),
            text_max: self.text_max.map(str::to_owned),
        }
    }
}

#[derive(Default)]
struct MomentsAcc {
    count: u64,
    sum: Neumaier,
    sum_sq: Neumaier,
    min: Option<f64>,
    max: Option<f64>,
}

impl MomentsAcc {
    fn push(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        self.sum_sq.add(x * x);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    fn finish(self) -> Moments {
        Moments {
            count: self.count,
            sum: self.sum.total(),
            sum_sq: self.sum_sq.total(),
            min: self.min,
            max: self.max,
        }
    }
}

/// Compensated (Kahan–Babuška–Neumaier) summation: a long series of sensor
/// readings sums without drifting, as SQLite's `sum()` does.
#[derive(Default)]
struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        self.compensation += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
    }

    fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ngsi::temporal::PeriodDuration;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn hour_periods(hours: i64) -> Periods {
        let start = ts("2026-11-22T18:00:00Z");
        Periods::new(
            start,
            start + jiff::SignedDuration::from_hours(hours),
            PeriodDuration::parse("PT1H").unwrap(),
        )
        .unwrap()
    }

    fn stats_of(values: &[Value]) -> PeriodStats {
        let t = ts("2026-11-22T18:30:00Z");
        aggregate(values.iter().map(|v| (t, v)), &hour_periods(1)).remove(0)
    }

    fn all(stats: &PeriodStats, kind: AttributeKind) -> Vec<(&'static str, Value)> {
        AggrMethod::ALL
            .into_iter()
            .map(|m| (m.name(), stats.value(m, kind)))
            .collect()
    }

    #[test]
    fn numbers_get_every_method() {
        let s = stats_of(&[
            json!(2),
            json!(4),
            json!(4.0),
            json!(4),
            json!(5),
            json!(5),
            json!(7),
            json!(9),
        ]);
        let got = all(&s, AttributeKind::Property);
        assert_eq!(
            got,
            [
                ("totalCount", json!(8)),
                ("distinctCount", json!(5)),
                ("sum", json!(40)),
                ("avg", json!(5)),
                ("min", json!(2)),
                ("max", json!(9)),
                ("stddev", json!((32.0f64 / 7.0).sqrt())),
                ("sumsq", json!(232)),
            ]
        );
    }

    #[test]
    fn booleans_count_as_one_and_zero() {
        let s = stats_of(&[json!(true), json!(false), json!(true), json!(true)]);
        assert_eq!(s.value(AggrMethod::Sum, AttributeKind::Property), json!(3));
        assert_eq!(s.value(AggrMethod::Avg, AttributeKind::Property), json!(0.75));
        assert_eq!(s.value(AggrMethod::Min, AttributeKind::Property), json!(0));
        assert_eq!(s.value(AggrMethod::DistinctCount, AttributeKind::Property), json!(2));
        assert_eq!(
            stats_of(&[json!(true), json!(1)]).value(AggrMethod::DistinctCount, AttributeKind::Property),
            json!(2),
            "true and 1 are different values"
        );
    }

    #[test]
    fn strings_take_lexicographic_extremes_only() {
        let s = stats_of(&[json!("on"), json!("off"), json!("dimmed"), json!("on")]);
        let got = all(&s, AttributeKind::Property);
        assert_eq!(
            got,
            [
                ("totalCount", json!(4)),
                ("distinctCount", json!(3)),
                ("sum", Value::Null),
                ("avg", Value::Null),
                ("min", json!("dimmed")),
                ("max", json!("on")),
                ("stddev", Value::Null),
                ("sumsq", Value::Null),
            ]
        );
        let mixed = stats_of(&[json!("error"), json!(3)]);
        assert_eq!(mixed.value(AggrMethod::Max, AttributeKind::Property), json!(3));
    }

    #[test]
    fn arrays_aggregate_their_sizes_and_objects_only_count() {
        let s = stats_of(&[json!([1, 2]), json!([]), json!([1, 2, 3, 4])]);
        assert_eq!(s.value(AggrMethod::Avg, AttributeKind::Property), json!(2));
        assert_eq!(s.value(AggrMethod::Max, AttributeKind::Property), json!(4));
        assert_eq!(s.value(AggrMethod::Sum, AttributeKind::Property), json!(6));
        assert_eq!(s.value(AggrMethod::Stddev, AttributeKind::Property), Value::Null);
        assert_eq!(s.value(AggrMethod::Sumsq, AttributeKind::Property), Value::Null);

        let o = stats_of(&[json!({"a": 1}), json!({"a": 1}), json!({"a": 2}), Value::Null]);
        assert_eq!(o.value(AggrMethod::DistinctCount, AttributeKind::Property), json!(3));
        assert_eq!(o.value(AggrMethod::Max, AttributeKind::Property), Value::Null);
    }

    #[test]
    fn relationships_only_count() {
        let s = stats_of(&[json!("urn:a:1"), json!("urn:a:2"), json!("urn:a:1")]);
        let got = all(&s, AttributeKind::Relationship);
        assert_eq!(got[0], ("totalCount", json!(3)));
        assert_eq!(got[1], ("distinctCount", json!(2)));
        assert!(got[2..].iter().all(|(_, v)| v.is_null()), "{got:?}");
    }

    #[test]
    fn values_fall_into_their_period_and_empty_periods_are_null() {
        let values = [json!(10), json!(20), json!(40)];
        let times = ["2026-11-22T18:00:00Z", "2026-11-22T18:59:59Z", "2026-11-22T20:00:00Z"];
        let outside = json!(1000);
        let instances = times
            .iter()
            .map(|t| ts(t))
            .zip(&values)
            .chain([(ts("2026-11-22T21:00:00Z"), &outside)]);
        let stats = aggregate(instances, &hour_periods(3));
        let avg: Vec<Value> = stats
            .iter()
            .map(|s| s.value(AggrMethod::Avg, AttributeKind::Property))
            .collect();
        assert_eq!(avg, [json!(15), Value::Null, json!(40)]);
        assert_eq!(
            stats[1].value(AggrMethod::TotalCount, AttributeKind::Property),
            json!(0)
        );
    }

    #[test]
    fn long_sums_do_not_drift() {
        let values: Vec<Value> = (0..100_000).map(|_| json!(0.1)).collect();
        let s = stats_of(&values);
        assert_eq!(s.numbers.sum, 10_000.0);
        let sd = s.value(AggrMethod::Stddev, AttributeKind::Property);
        assert!(sd.as_f64().is_some_and(|x| x < 1e-6), "constant values: {sd}");
    }

    #[test]
    fn method_names_round_trip() {
        for m in AggrMethod::ALL {
            assert_eq!(AggrMethod::from_name(m.name()), Some(m));
        }
        assert_eq!(AggrMethod::from_name("mean"), None);
    }
}

//! The NGSI-LD temporal API's logic (ETSI GS CIM 009 §4.5.7–4.5.9, §4.5.19,
//! §6.18–6.22): the query parameters, the aggregation periods and methods, and
//! the three temporal representations of an entity (normalized,
//! `temporalValues`, `aggregatedValues`). No I/O: the API layer reads the
//! parameters, the store reads history, these functions decide and render.
//!
//! How the server answers `GET /temporal/entities[/{id}]`:
//! 1. [`TemporalQuery::parse`] the parameters (errors → 400 BadRequestData,
//!    except [`TemporalError::TooManyPeriods`] → 403 TooComplexQuery);
//! 2. [`TemporalQuery::bounds`] gives the time range to read;
//! 3. instances: read them, then [`render_instances`];
//!    aggregated: when [`TemporalQuery::needs_extent`], read the first and last
//!    instants in range, then [`TemporalQuery::periods`], aggregate per period
//!    (in the store, or [`aggregate`] in memory), then [`render_aggregated`].

mod aggregate;
mod period;
mod render;

use jiff::SignedDuration;

pub use aggregate::{AggrMethod, Moments, PeriodStats, aggregate};
pub use period::{MAX_PERIODS, PeriodDuration, Periods};
pub use render::{AttributeAggregate, AttributeHistory, Instance, render_aggregated, render_instances};

use crate::Timestamp;

/// Largest `lastN` accepted: more instances per attribute than any page a
/// client can be sent.
pub const MAX_LAST_N: usize = 10_000;

/// Longest `aggrMethods` text accepted (the eight names take 62 bytes).
const MAX_METHODS_LEN: usize = 256;

/// Why temporal query parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemporalError {
    /// A parameter is missing, malformed or contradicts another (400 BadRequestData).
    #[error("'{param}' {problem}")]
    Invalid { param: &'static str, problem: String },
    /// The aggregation would produce too many periods (403 TooComplexQuery).
    #[error(
        "the aggregation would produce {count} periods, more than the {max} allowed: \
         use a longer aggrPeriodDuration or a shorter time range"
    )]
    TooManyPeriods { count: u64, max: usize },
}

impl TemporalError {
    pub(crate) fn invalid(param: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            param,
            problem: problem.into(),
        }
    }
}

/// The raw temporal parameters of a request, as the URL carries them (an
/// empty value counts as absent, as the API layer's `Params::get` gives them).
#[derive(Debug, Clone, Copy, Default)]
pub struct TemporalParams<'a> {
    pub timerel: Option<&'a str>,
    pub time_at: Option<&'a str>,
    pub end_time_at: Option<&'a str>,
    pub timeproperty: Option<&'a str>,
    pub last_n: Option<&'a str>,
    pub aggr_methods: Option<&'a str>,
    pub aggr_period_duration: Option<&'a str>,
    pub options: Option<&'a str>,
    pub format: Option<&'a str>,
}

impl<'a> TemporalParams<'a> {
    /// Reads each parameter by its NGSI-LD name, e.g. `from_lookup(|k| params.get(k))`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            timerel: get("timerel"),
            time_at: get("timeAt"),
            end_time_at: get("endTimeAt"),
            timeproperty: get("timeproperty"),
            last_n: get("lastN"),
            aggr_methods: get("aggrMethods"),
            aggr_period_duration: get("aggrPeriodDuration"),
            options: get("options"),
            format: get("format"),
        }
    }
}

/// `timerel` with its instants. Ranges are half-open, as the store reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    /// Strictly before `timeAt`.
    Before(Timestamp),
    /// At or after `timeAt`.
    After(Timestamp),
    /// From `timeAt` (included) to `endTimeAt` (excluded).
    Between(Timestamp, Timestamp),
}

/// Which temporal property of an instance the range applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
}

impl TimeProperty {
    pub fn name(self) -> &'static str {
        match self {
            Self::ObservedAt => "observedAt",
            Self::CreatedAt => "createdAt",
            Self::ModifiedAt => "modifiedAt",
        }
    }
}

/// The requested aggregation: methods in request order, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregation {
    pub methods: Vec<AggrMethod>,
    /// Zero: one period over the whole range.
    pub period: PeriodDuration,
}

/// The representation of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TemporalRepresentation {
    /// Each attribute an array of instances (§4.5.7).
    #[default]
    Normalized,
    /// Simplified: `values` (or `objects`...) as `[value, time]` pairs (§4.5.9).
    TemporalValues,
    /// One `[value, start, end]` triple per period and method (§4.5.19).
    Aggregated(Aggregation),
}

/// A parsed, validated temporal query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TemporalQuery {
    /// `None`: the whole history.
    pub timerel: Option<TimeRel>,
    pub time_property: TimeProperty,
    /// Only the N most recent instances per attribute (periods, when aggregated),
    /// at most [`MAX_LAST_N`].
    pub last_n: Option<usize>,
    pub representation: TemporalRepresentation,
}

impl TemporalQuery {
    pub fn parse(p: &TemporalParams<'_>) -> Result<Self, TemporalError> {
        let timerel = parse_timerel(p)?;
        let time_property = match p.timeproperty {
            None | Some("observedAt") => TimeProperty::ObservedAt,
            Some("createdAt") => TimeProperty::CreatedAt,
            Some("modifiedAt") => TimeProperty::ModifiedAt,
            Some(other) => {
                return Err(TemporalError::invalid(
                    "timeproperty",
                    format!("'{other}' is not one of observedAt, createdAt, modifiedAt"),
                ));
            }
        };
        let last_n = p.last_n.map(parse_last_n).transpose()?;
        // Validated whenever given, used only with aggregatedValues (§4.5.19.1).
        let methods = p.aggr_methods.map(parse_methods).transpose()?;
        let period = p
            .aggr_period_duration
            .map(PeriodDuration::parse)
            .transpose()?
            .unwrap_or_default();
        let representation = match requested_form(p)? {
            Form::Normalized => TemporalRepresentation::Normalized,
            Form::TemporalValues => TemporalRepresentation::TemporalValues,
            Form::Aggregated => {
                let methods = methods.ok_or_else(|| {
                    TemporalError::invalid(
                        "aggrMethods",
                        "is required with aggregatedValues (e.g. aggrMethods=avg,min,max)",
                    )
                })?;
                TemporalRepresentation::Aggregated(Aggregation { methods, period })
            }
        };
        Ok(Self {
            timerel,
            time_property,
            last_n,
            representation,
        })
    }

    /// The range to read: from (included), to (excluded); `None` is open.
    pub fn bounds(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        match self.timerel {
            None => (None, None),
            Some(TimeRel::Before(t)) => (None, Some(t)),
            Some(TimeRel::After(t)) => (Some(t), None),
            Some(TimeRel::Between(a, b)) => (Some(a), Some(b)),
        }
    }

    /// Whether [`Self::periods`] needs the first and last instants in range:
    /// an open side of the range is closed by the data.
    pub fn needs_extent(&self) -> bool {
        !matches!(self.timerel, Some(TimeRel::Between(..)))
    }

    /// The aggregation periods. They start at `timeAt` (after, between) or at
    /// the first instant in range (before, no timerel), and cover up to
    /// `endTimeAt` (between), `timeAt` (before) or the last instant in range
    /// (after, no timerel). `extent` is (first, last) instant in range, `None`
    /// when the range holds nothing; then there is no period. Without
    /// aggregation, one period spans the range.
    pub fn periods(&self, extent: Option<(Timestamp, Timestamp)>) -> Result<Periods, TemporalError> {
        let period = match &self.representation {
            TemporalRepresentation::Aggregated(a) => a.period,
            _ => PeriodDuration::default(),
        };
        let (from, to) = self.bounds();
        // The last instant is included: the range ends just after it.
        let first = extent.map(|(first, _)| first);
        let after_last = extent.and_then(|(_, last)| last.checked_add(SignedDuration::from_micros(1)).ok());
        match (from.or(first), to.or(after_last)) {
            (Some(start), Some(end)) => Periods::new(start, end, period),
            _ => Ok(Periods::default()),
        }
    }
}

fn parse_timerel(p: &TemporalParams<'_>) -> Result<Option<TimeRel>, TemporalError> {
    let instant = |param: &'static str, text: &str| {
        text.parse::<Timestamp>().map_err(|_| {
            TemporalError::invalid(
                param,
                format!("'{text}' is not a DateTime (expected RFC 3339 with a zone, e.g. 2026-11-22T18:00:00Z)"),
            )
        })
    };
    let Some(timerel) = p.timerel else {
        if p.time_at.is_some() || p.end_time_at.is_some() {
            return Err(TemporalError::invalid(
                "timerel",
                "is required when timeAt or endTimeAt is given (before, after or between)",
            ));
        }
        return Ok(None);
    };
    let time_at = p
        .time_at
        .ok_or_else(|| TemporalError::invalid("timeAt", format!("is required with timerel={timerel}")))?;
    let time_at = instant("timeAt", time_at)?;
    let end = p.end_time_at.map(|t| instant("endTimeAt", t)).transpose()?;
    let rel = match (timerel, end) {
        ("before", None) => TimeRel::Before(time_at),
        ("after", None) => TimeRel::After(time_at),
        ("between", Some(end)) if end > time_at => TimeRel::Between(time_at, end),
        ("between", Some(_)) => {
            return Err(TemporalError::invalid("endTimeAt", "must be later than timeAt"));
        }
        ("between", None) => {
            return Err(TemporalError::invalid("endTimeAt", "is required with timerel=between"));
        }
        ("before" | "after", Some(_)) => {
            return Err(TemporalError::invalid(
                "endTimeAt",
                format!("applies only to timerel=between, not timerel={timerel}"),
            ));
        }
        (other, _) => {
            return Err(TemporalError::invalid(
                "timerel",
                format!("'{other}' is not one of before, after, between"),
            ));
        }
    };
    Ok(Some(rel))
}

fn parse_last_n(text: &str) -> Result<usize, TemporalError> {
    if !text.bytes().all(|b| b.is_ascii_digit()) || text.bytes().all(|b| b == b'0') {
        return Err(TemporalError::invalid(
            "lastN",
            format!("'{text}' is not a positive integer"),
        ));
    }
    // Only digits here: a parse failure is an overflow.
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_LAST_N => Ok(n),
        _ => Err(TemporalError::invalid(
            "lastN",
            format!("{text} exceeds the maximum of {MAX_LAST_N}"),
        )),
    }
}

fn parse_methods(text: &str) -> Result<Vec<AggrMethod>, TemporalError> {
    if text.len() > MAX_METHODS_LEN {
        return Err(TemporalError::invalid(
            "aggrMethods",
            format!("is longer than {MAX_METHODS_LEN} characters"),
        ));
    }
    let mut methods = Vec::new();
    for name in text.split(',').map(str::trim) {
        let method = AggrMethod::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = AggrMethod::ALL.iter().map(|m| m.name()).collect();
            TemporalError::invalid(
                "aggrMethods",
                format!("'{name}' is not an aggregation method (one of {})", known.join(", ")),
            )
        })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

enum Form {
    Normalized,
    TemporalValues,
    Aggregated,
}

/// `format` wins over `options`, as the specification orders them; `options`
/// may carry other flags (sysAttrs...) that are the API layer's business.
fn requested_form(p: &TemporalParams<'_>) -> Result<Form, TemporalError> {
    if let Some(format) = p.format {
        return match format {
            "normalized" => Ok(Form::Normalized),
            "temporalValues" | "simplified" => Ok(Form::TemporalValues),
            "aggregatedValues" => Ok(Form::Aggregated),
            other => Err(TemporalError::invalid(
                "format",
                format!("'{other}' is not one of normalized, temporalValues, aggregatedValues"),
            )),
        };
    }
    let options = p.options.unwrap_or("");
    let has = |flag: &str| options.split(',').any(|o| o.trim() == flag);
    match (has("temporalValues"), has("aggregatedValues")) {
        (true, true) => Err(TemporalError::invalid(
            "options",
            "cannot ask for both temporalValues and aggregatedValues",
        )),
        (true, false) => Ok(Form::TemporalValues),
        (false, true) => Ok(Form::Aggregated),
        (false, false) => Ok(Form::Normalized),
    }
}

#[cfg(test)]
mod tests;

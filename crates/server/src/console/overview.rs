//! The overview: equipment counts by status for each commune and each
//! business line, so a supervisor sees at once that every commune gets the
//! same service. Counted from the twin, in the caller's sight.

use std::collections::BTreeMap;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use vigie_core::status::AssetStatus;

use super::{Sight, Viewer, render};
use crate::api::{ApiError, AppState};
use crate::security::Caller;
use crate::twin::Sighting;

/// Counts of one group of assets.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub id: String,
    pub name: String,
    pub total: usize,
    pub located: usize,
    #[serde(rename = "byStatus")]
    pub by_status: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, status: AssetStatus, located: bool) {
        self.total += 1;
        self.located += usize::from(located);
        *self.by_status.entry(status.as_str()).or_default() += 1;
    }

    pub fn count(&self, status: &str) -> usize {
        self.by_status.get(status).copied().unwrap_or(0)
    }

    /// Per cent of the assets whose data is fresh (neither stale nor offline).
    pub fn fresh_percent(&self) -> u32 {
        if self.total == 0 {
            return 100;
        }
        let fresh = self.total - self.count("stale") - self.count("offline");
        (fresh * 100 / self.total) as u32
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Overview {
    pub total: usize,
    pub located: usize,
    pub communes: Vec<Tally>,
    #[serde(rename = "businessLines")]
    pub business_lines: Vec<Tally>,
}

impl Overview {
    pub fn compute(s: &AppState, caller: &Caller) -> Self {
        let sight = Sight::new(s, caller);
        let mut communes: BTreeMap<String, Tally> = BTreeMap::new();
        let mut lines: BTreeMap<String, Tally> = BTreeMap::new();
        let (mut total, mut located) = (0, 0);
        let mut count = |scope: Option<&vigie_core::Scope>, status: AssetStatus, has_location: bool| {
            total += 1;
            located += usize::from(has_location);
            let (commune, line) = scope.map_or(("", ""), |s| (s.commune.as_str(), s.business_line.as_str()));
            communes
                .entry(commune.to_owned())
                .or_default()
                .add(status, has_location);
            lines.entry(line.to_owned()).or_default().add(status, has_location);
        };
        // Located assets from their glances (no attribute read), the few
        // others from their attributes.
        s.twin.for_each_glance(&mut |sighting| match sighting {
            Sighting::Located(g) => {
                if sight.sees_scope(g.scope.as_deref()) {
                    count(g.scope.as_deref(), sight.glance_status(g), true);
                }
            }
            Sighting::Unlocated(e) => {
                if sight.sees(e) {
                    count(e.scope.as_ref(), sight.status(e), false);
                }
            }
        });
        let named = |(id, mut t): (String, Tally), name: &dyn Fn(&str) -> String| {
            t.name = name(&id);
            t.id = id;
            t
        };
        Self {
            total,
            located,
            communes: communes
                .into_iter()
                .map(|c| named(c, &|id| s.console.commune_name(id).to_owned()))
                .collect(),
            business_lines: lines.into_iter().map(|l| named(l, &|id| id.to_owned())).collect(),
        }
    }

    /// The business lines present, well-known ones first in the console's order.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.business_lines.iter().map(|t| t.id.clone()).collect();
        let rank = |l: &str| {
            vigie_core::BusinessLine::WELL_KNOWN
                .iter()
                .position(|w| *w == l)
                .unwrap_or(usize::MAX)
        };
        lines.sort_by_key(|l| (rank(l), l.clone()));
        lines
    }
}

/// `GET /console/api/overview`: the counts as JSON.
pub async fn json(State(s): State<AppState>, caller: Caller) -> Result<Json<Overview>, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    Ok(Json(Overview::compute(&s, &caller)))
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    viewer: Viewer,
    total: usize,
    /// Per commune, then per business line: the heading and the rows.
    tables: Vec<(&'static str, Vec<Tally>)>,
    statuses: Vec<(&'static str, &'static str)>,
}

/// `GET /console/overview`: the counts as a page.
pub async fn page(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<Response, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let mut overview = Overview::compute(&s, &caller);
    for line in &mut overview.business_lines {
        line.name = viewer.texts.line(&line.id).to_owned();
    }
    let statuses = viewer.texts_statuses();
    Ok(render(&OverviewPage {
        total: overview.total,
        tables: vec![
            (viewer.texts.commune, overview.communes),
            (viewer.texts.business_line, overview.business_lines),
        ],
        viewer,
        statuses,
    }))
}

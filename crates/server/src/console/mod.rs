//! The operator console: server-rendered pages (askama templates, htmx), a
//! MapLibre map fed by server-side clusters, live changes over server-sent
//! events, the equipment panel and the overview. Every asset is embedded in
//! the binary (control rooms are often offline), and every page and call goes
//! through the same authentication and sight as the APIs.
//!
//! - [`map`]: the assets in view, clustered on a screen grid.
//! - [`live`]: server-sent events of changes.
//! - [`panel`]: one piece of equipment, its history, relations and commands.
//! - [`overview`]: counts by commune, business line and status.
//! - [`assets`]: the embedded JavaScript, styles and vendored libraries.

mod alarms;
mod assets;
pub mod i18n;
mod live;
pub mod map;
mod overview;
mod panel;
mod rules;

use std::collections::BTreeMap;
use std::path::Path;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use vigie_core::account::Language;
use vigie_core::status::{AssetStatus, classify};
use vigie_core::{Entity, Principal, Timestamp};

use crate::api::{ApiError, AppState};
use crate::config::ConsoleConfig;
use crate::security::{Caller, Security};
use crate::twin::Glance;
use i18n::Texts;
use map::MapAsset;

/// Largest base-map file read at start (streets, communes).
const MAX_BASEMAP_FILE: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console.{setting}: cannot read {path}: {source}")]
    Read {
        setting: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("console.{setting}: {path} is larger than 64 MiB")]
    TooLarge { setting: &'static str, path: String },
    #[error("console.{setting}: {path} is not a GeoJSON FeatureCollection: {reason}")]
    NotGeoJson {
        setting: &'static str,
        path: String,
        reason: String,
    },
}

/// What the console loads once at start: the base map's files.
#[derive(Default)]
pub struct Console {
    streets: Option<Bytes>,
    communes: Option<Bytes>,
    /// Commune names by id, from the communes file.
    commune_names: BTreeMap<String, String>,
}

impl Console {
    pub fn load(config: &ConsoleConfig) -> Result<Self, ConsoleError> {
        let streets = read_feature_collection("streets_file", &config.streets_file)?;
        let communes = read_feature_collection("communes_file", &config.communes_file)?;
        let commune_names = communes
            .as_ref()
            .and_then(|(_, v)| v.get("features").and_then(Value::as_array))
            .map(|features| {
                features
                    .iter()
                    .filter_map(|f| {
                        let p = f.get("properties")?;
                        Some((p.get("id")?.as_str()?.to_owned(), p.get("name")?.as_str()?.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            streets: streets.map(|(bytes, _)| bytes),
            communes: communes.map(|(bytes, _)| bytes),
            commune_names,
        })
    }

    /// A commune's name, or its id when no communes file names it.
    pub fn commune_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.commune_names.get(id).map_or(id, String::as_str)
    }
}

fn read_feature_collection(setting: &'static str, path: &str) -> Result<Option<(Bytes, Value)>, ConsoleError> {
    if path.is_empty() {
        return Ok(None);
    }
    let read = |source| ConsoleError::Read {
        setting,
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(Path::new(path)).map_err(read)?.len();
    if size > MAX_BASEMAP_FILE {
        return Err(ConsoleError::TooLarge {
            setting,
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let not = |reason: String| ConsoleError::NotGeoJson {
        setting,
        path: path.to_owned(),
        reason,
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| not(e.to_string()))?;
    if value.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(not("its \"type\" is not \"FeatureCollection\"".into()));
    }
    Ok(Some((Bytes::from(bytes), value)))
}

/// The console's routes: assets are public, everything else needs a login
/// (pages redirect to the login form, data calls answer 401).
pub fn routes(state: &AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(map_page))
        .route("/console/overview", get(overview::page))
        .route("/console/alarms", get(alarms::page))
        .route("/console/alarms/rows", get(alarms::rows))
        .route("/console/alarms/events", get(live::alarm_events))
        .route("/console/alarms/{id}", get(alarms::detail))
        .route("/console/alarms/{id}/actions", post(alarms::act))
        .route("/console/rules", get(rules::list))
        .route("/console/rules/new", get(rules::new))
        .route("/console/rules/check", post(rules::check))
        .route("/console/rules/save", post(rules::save))
        .route("/console/rules/dry-run", post(rules::dry_run))
        .route("/console/rules/{id}", get(rules::edit))
        .route("/console/rules/{id}/switch", post(rules::switch))
        .route("/console/equipment/{id}", get(panel::panel))
        .route(
            "/console/equipment/{id}/commands",
            get(panel::commands).post(panel::send),
        )
        .route("/console/language", post(set_language))
        .route("/console/api/map", get(map::features))
        .route("/console/api/overview", get(overview::json))
        .route("/console/api/search", get(search))
        .route("/console/events", get(live::events))
        .route("/console/basemap/streets.geojson", get(streets))
        .route("/console/basemap/communes.geojson", get(communes))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_login));
    Router::new()
        .route("/console/assets/{*path}", get(assets::serve))
        .merge(protected)
}

/// Authenticates like the APIs; a page asked without a login goes to the
/// login form instead of a 401.
async fn require_login(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let source = crate::security::peer(req.extensions());
    match s.security.authenticate(req.method(), req.headers(), source).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(ApiError::Unauthorized(_)) if is_page(req.uri().path()) => Redirect::to("/auth/login").into_response(),
        Err(e) => e.into_response(),
    }
}

fn is_page(path: &str) -> bool {
    !path.starts_with("/console/api/") && path != "/console/events" && !path.starts_with("/console/basemap/")
}

/// What a caller sees, decided once per request or event batch: the
/// personal-data rule and the scope, and how assets are classified now.
pub(crate) struct Sight<'a> {
    security: &'a Security,
    principal: &'a Principal,
    everything: bool,
    now: Timestamp,
    config: &'a ConsoleConfig,
}

impl<'a> Sight<'a> {
    pub fn new(s: &'a AppState, caller: &'a Caller) -> Self {
        Self {
            security: &s.security,
            principal: &caller.principal,
            everything: s.security.sees_everything(&caller.principal),
            now: Timestamp::now(),
            config: &s.config.console,
        }
    }

    pub fn sees(&self, e: &Entity) -> bool {
        self.sees_scope(e.scope.as_ref())
    }

    pub fn sees_scope(&self, scope: Option<&vigie_core::Scope>) -> bool {
        self.everything || self.security.sees(self.principal, scope)
    }

    fn stale_after(&self, entity_type: &str) -> jiff::SignedDuration {
        let minutes = self
            .config
            .stale_after_by_type
            .get(entity_type)
            .copied()
            .unwrap_or(self.config.stale_after_minutes);
        jiff::SignedDuration::from_mins(i64::from(minutes))
    }

    pub fn status(&self, e: &Entity) -> AssetStatus {
        classify(e, self.now, self.stale_after(&e.entity_type))
    }

    /// A located asset's status from its glance (no attribute read).
    pub fn glance_status(&self, g: &Glance) -> AssetStatus {
        g.condition.status(self.now, self.stale_after(&g.entity_type))
    }

    pub fn asset(&self, e: &Entity, at: [f64; 2]) -> MapAsset {
        MapAsset {
            id: e.id.to_string(),
            entity_type: e.entity_type.clone(),
            line: e
                .scope
                .as_ref()
                .map_or_else(String::new, |s| s.business_line.to_string()),
            status: self.status(e),
            name: display_name(e),
            at,
        }
    }

    /// The asset of a glance, without its name (see [`map::Grid::name`]).
    pub fn glance_asset(&self, g: &Glance, status: AssetStatus) -> MapAsset {
        MapAsset {
            id: g.id.to_string(),
            entity_type: g.entity_type.to_string(),
            line: g
                .scope
                .as_ref()
                .map_or_else(String::new, |s| s.business_line.to_string()),
            status,
            name: String::new(),
            at: g.at,
        }
    }
}

/// Text percent-encoded for a URL's path segment or query value (entity ids
/// hold ':' and may hold more).
pub(crate) fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The entity's `name`, else the last part of its id.
pub(crate) fn display_name(e: &Entity) -> String {
    e.attributes.get("name").and_then(|a| a.value.as_str()).map_or_else(
        || e.id.as_str().rsplit(':').next().unwrap_or_default().to_owned(),
        str::to_owned,
    )
}

/// Who is looking, in which language, with the token their changes carry.
#[derive(Clone)]
pub(crate) struct Viewer {
    pub texts: &'static Texts,
    pub name: String,
    pub role: &'static str,
    pub csrf_token: String,
}

impl Viewer {
    /// Each status with its label, most urgent first (the legend).
    pub fn texts_statuses(&self) -> Vec<(&'static str, &'static str)> {
        AssetStatus::ALL
            .iter()
            .map(|s| (s.as_str(), self.texts.status(*s)))
            .collect()
    }

    /// The account's language, else the browser's, else French.
    pub async fn of(s: &AppState, caller: &Caller, headers: &HeaderMap) -> Self {
        let session = caller.session.as_deref().and_then(|h| s.security.session(h));
        let account = match &session {
            Some(session) => s.security.account_named(&session.account).await.ok(),
            None => None,
        };
        let language = account.as_ref().and_then(|a| a.language).unwrap_or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map(Language::from_accept_language)
                .unwrap_or_default()
        });
        let name = account
            .as_ref()
            .map(|a| a.display_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| caller.principal.subject.clone());
        Self {
            texts: Texts::of(language),
            name,
            role: caller.principal.role.label_fr(),
            csrf_token: session.map(|s| s.csrf_token).unwrap_or_default(),
        }
    }
}

/// Renders a template, or a 500 that names no internals.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::Internal(format!("console template: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/map.html")]
struct MapPage {
    viewer: Viewer,
    /// The map's settings for console.js, as JSON in a data attribute.
    map_config: String,
    lines: Vec<(String, String)>,
    communes: Vec<(String, String)>,
}

async fn map_page(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<Response, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let overview = overview::Overview::compute(&s, &caller);
    let texts = viewer.texts;
    let c = &s.config.console;
    let extent = s.twin.extent().map(|(min, max)| [min, max]);
    let map_config = json!({
        "extent": extent,
        "clusterBelowZoom": c.cluster_below_zoom,
        "styleUrl": c.basemap_style_url,
        "tilesUrl": c.basemap_tiles_url,
        "attribution": c.basemap_attribution,
        "streets": s.console.streets.is_some(),
        "communes": s.console.communes.is_some(),
        "statuses": AssetStatus::ALL.iter().map(|st| json!({"id": st.as_str(), "label": texts.status(*st)})).collect::<Vec<_>>(),
        "texts": {"assets": texts.assets, "noResult": texts.no_result, "live": texts.live, "reconnecting": texts.reconnecting,
                  "noChart": texts.no_chart},
    });
    let lines = overview
        .lines()
        .into_iter()
        .map(|l| {
            let label = texts.line(&l).to_owned();
            (l, label)
        })
        .collect();
    let communes = overview
        .communes
        .iter()
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    let mut res = render(&MapPage {
        viewer,
        map_config: map_config.to_string(),
        lines,
        communes,
    });
    if let Ok(csp) = HeaderValue::from_str(&map_policy(c)) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(res)
}

/// The map page's Content-Security-Policy: the default one, plus what
/// MapLibre needs (its worker, images it decodes from blobs) and the base
/// map's own host when one is configured. Still no inline script.
fn map_policy(c: &ConsoleConfig) -> String {
    let origins: Vec<String> = [&c.basemap_style_url, &c.basemap_tiles_url]
        .into_iter()
        .filter_map(|u| url::Url::parse(&u.replace("pmtiles://", "")).ok())
        .filter(|u| matches!(u.scheme(), "https" | "http"))
        .map(|u| u.origin().ascii_serialization())
        .collect();
    let extra = origins.join(" ");
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; worker-src 'self' blob:; \
         img-src 'self' data: blob: {extra}; connect-src 'self' {extra}; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action 'self'"
    )
}

#[derive(serde::Deserialize)]
struct LanguageForm {
    language: String,
}

/// `POST /console/language` (form `language=fr|en`): stores the choice on
/// the account and asks htmx to reload the page in it.
async fn set_language(State(s): State<AppState>, caller: Caller, body: Bytes) -> Result<Response, ApiError> {
    let form: LanguageForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("expected a form with 'language': {e}")))?;
    let language: Language = form.language.parse().map_err(ApiError::BadRequestData)?;
    let session = caller
        .session
        .as_deref()
        .and_then(|h| s.security.session(h))
        .ok_or_else(|| ApiError::BadRequestData("the language is a console preference: log in to set it".into()))?;
    let mut account = s.security.account_named(&session.account).await?;
    account.language = Some(language);
    s.security.update_account(account).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert("hx-refresh", HeaderValue::from_static("true"));
    Ok(res)
}

/// Most search results returned.
const MAX_SEARCH_RESULTS: usize = 20;
/// Longest search text accepted.
const MAX_SEARCH_TEXT: usize = 200;

/// `GET /console/api/search?q=...`: equipment whose id, name, address or
/// pole number contains the text (case-insensitive), in the caller's sight.
async fn search(State(s): State<AppState>, caller: Caller, params: crate::api::Params) -> Result<Response, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let text = params.get("q").unwrap_or_default().trim().to_lowercase();
    if text.chars().count() > MAX_SEARCH_TEXT {
        return Err(ApiError::BadRequestData(format!(
            "the search text exceeds {MAX_SEARCH_TEXT} characters"
        )));
    }
    if text.is_empty() {
        return Ok(axum::Json(json!([])).into_response());
    }
    let sight = Sight::new(&s, &caller);
    let mut found = Vec::new();
    let mut exact = None;
    s.twin.for_each(&mut |e| {
        if found.len() >= MAX_SEARCH_RESULTS && exact.is_some() {
            return;
        }
        if !sight.sees(e) {
            return;
        }
        let Some((x, y)) = e.point() else {
            return;
        };
        let id = e.id.as_str();
        let name = display_name(e);
        let address = e
            .attributes
            .get("address")
            .and_then(|a| a.value.get("streetAddress"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let commune = e
            .attributes
            .get("address")
            .and_then(|a| a.value.get("addressLocality"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let hit = json!({"id": id, "name": name, "type": e.entity_type, "address": format!("{address}, {commune}"),
                         "status": sight.status(e).as_str(), "c": [x, y]});
        if id.to_lowercase() == text {
            exact = Some(hit);
        } else if found.len() < MAX_SEARCH_RESULTS
            && (id.to_lowercase().contains(&text)
                || name.to_lowercase().contains(&text)
                || address.to_lowercase().contains(&text))
        {
            found.push(hit);
        }
    });
    // The exact id first: typing an id finds that one.
    if let Some(exact) = exact {
        found.insert(0, exact);
        found.truncate(MAX_SEARCH_RESULTS);
    }
    Ok(axum::Json(Value::Array(found)).into_response())
}

async fn streets(State(s): State<AppState>) -> Response {
    geojson(s.console.streets.clone())
}

async fn communes(State(s): State<AppState>) -> Response {
    geojson(s.console.communes.clone())
}

fn geojson(body: Option<Bytes>) -> Response {
    match body {
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/geo+json"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::NotFound("no such base-map file is configured".into()).into_response(),
    }
}

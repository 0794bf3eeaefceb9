//! The audit trail for auditors: query, export (with the hashes, so that
//! another party can re-verify it) and verify. Every use is itself audited.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream;
use serde_json::{Value, json};
use vigie_core::Timestamp;
use vigie_core::access::Action;
use vigie_core::audit::{AuditEvent, AuditRecord, Outcome, canonical_json};
use vigie_store::AuditQuery;

use super::{ApiError, AppState, Params};
use crate::audit::{event, read_anchor, verify_trail};
use crate::security::Caller;

/// Records per page of an export stream.
const EXPORT_PAGE: usize = 1_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(query))
        .route("/api/v1/audit/export", get(export))
        .route("/api/v1/audit/verify", get(verify))
}

fn time(p: &Params, key: &str) -> Result<Option<Timestamp>, ApiError> {
    p.get(key)
        .map(|v| {
            v.parse::<Timestamp>().map_err(|e| {
                ApiError::BadRequestData(format!(
                    "'{key}' must be an RFC 3339 time such as 2026-11-25T08:00:00Z, got '{v}': {e}"
                ))
            })
        })
        .transpose()
}

/// The filters shared by query and export.
fn filters(p: &Params) -> Result<AuditQuery, ApiError> {
    let outcome = p
        .get("outcome")
        .map(|o| {
            o.parse::<Outcome>()
                .map_err(|e| ApiError::BadRequestData(e.to_string()))
        })
        .transpose()?;
    let newest_first = match p.get("order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::BadRequestData(format!(
                "'order' must be asc or desc, got '{other}'"
            )));
        }
    };
    Ok(AuditQuery {
        from: time(p, "from")?,
        to: time(p, "to")?,
        actor: p.get("actor").map(str::to_owned),
        action: p.get("action").map(str::to_owned),
        target_prefix: p.get("target").map(str::to_owned),
        outcome,
        newest_first,
        ..Default::default()
    })
}

/// The query string as the auditor sent it, for the record of the read.
fn asked(p: &Params) -> Value {
    let mut keys: Vec<&String> = p.0.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), Value::String(p.0[k].clone())))
            .collect(),
    )
}

/// `GET /api/v1/audit`: records matching the filters, oldest first (or
/// `order=desc`), paged like the NGSI-LD API; `count=true` adds the total in
/// `Vigie-Results-Count`.
async fn query(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Response, ApiError> {
    s.audit.check(&caller, Action::ReadAudit, "audit.read", None).await?;
    let api = &s.config.api;
    let limit = params.usize("limit")?.unwrap_or(api.default_page_size);
    if limit > api.max_page_size {
        return Err(ApiError::TooManyResults(format!(
            "limit {limit} exceeds the maximum page size {}; page with offset, or use /api/v1/audit/export",
            api.max_page_size
        )));
    }
    let q = AuditQuery {
        limit,
        offset: params.usize("offset")?.unwrap_or(0),
        ..filters(&params)?
    };
    let records = s.store.audit_query(&q).await?;
    let mut headers = HeaderMap::new();
    if params.get("count") == Some("true") {
        headers.insert("Vigie-Results-Count", HeaderValue::from(s.store.audit_count(&q).await?));
    }
    s.audit
        .record(AuditEvent {
            detail: Some(format!("{} records read", records.len())),
            after: Some(json!({"query": asked(&params)})),
            ..event(&caller, "audit.read")
        })
        .await?;
    Ok((headers, Json(records)).into_response())
}

/// One CSV field: a value is always quoted, an absent one is empty and
/// unquoted, so that `None` and `Some("")` (which hash differently) stay apart.
fn csv_field(out: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

const CSV_HEADER: &str =
    "seq,at,actor,role,credential,source,action,target,outcome,detail,before,after,prev_hash,hash\r\n";

fn csv_line(r: &AuditRecord) -> String {
    let e = &r.event;
    let mut out = String::new();
    out.push_str(&r.seq.to_string());
    out.push(',');
    // Microseconds since the epoch: exactly what is hashed.
    out.push_str(&e.at.as_microsecond().to_string());
    for v in [
        Some(e.actor.as_str()),
        e.role.map(|x| x.as_str()),
        Some(e.credential.as_str()),
        e.source.as_deref(),
        Some(e.action.as_str()),
        e.target.as_deref(),
        Some(e.outcome.as_str()),
        e.detail.as_deref(),
        e.before.as_ref().map(canonical_json).as_deref(),
        e.after.as_ref().map(canonical_json).as_deref(),
        Some(r.prev_hash.as_str()),
        Some(r.hash.as_str()),
    ] {
        out.push(',');
        csv_field(&mut out, v);
    }
    out.push_str("\r\n");
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ndjson,
    Csv,
}

/// `GET /api/v1/audit/export`: every matching record in `seq` order, with
/// `prevHash` and `hash`, streamed page by page (NDJSON or CSV).
async fn export(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Response, ApiError> {
    s.audit.check(&caller, Action::ReadAudit, "audit.export", None).await?;
    let format = match params.get("format") {
        None | Some("ndjson") => Format::Ndjson,
        Some("csv") => Format::Csv,
        Some(other) => {
            return Err(ApiError::BadRequestData(format!(
                "'format' must be ndjson or csv, got '{other}'"
            )));
        }
    };
    let base = AuditQuery {
        newest_first: false,
        limit: EXPORT_PAGE,
        ..filters(&params)?
    };
    s.audit
        .record(AuditEvent {
            after: Some(json!({"query": asked(&params)})),
            ..event(&caller, "audit.export")
        })
        .await?;

    let store = s.store.clone();
    // State: the last seq sent, whether the CSV header is still due, whether done.
    let body = stream::unfold((0u64, format == Format::Csv, false), move |(after, header, done)| {
        let store = store.clone();
        let q = AuditQuery {
            after_seq: Some(after),
            ..base.clone()
        };
        async move {
            if done {
                return None;
            }
            let page = match store.audit_query(&q).await {
                Ok(p) => p,
                Err(e) => {
                    // The response is already under way: cut it, so the
                    // client sees an incomplete export rather than a short one.
                    tracing::error!(error = %e, after_seq = after, "audit export failed");
                    return Some((Err(std::io::Error::other(e.to_string())), (after, false, true)));
                }
            };
            let mut chunk = String::new();
            if header {
                chunk.push_str(CSV_HEADER);
            }
            for r in &page {
                match format {
                    Format::Csv => chunk.push_str(&csv_line(r)),
                    Format::Ndjson => {
                        chunk.push_str(&serde_json::to_string(r).unwrap_or_default());
                        chunk.push('\n');
                    }
                }
            }
            let last = page.last().map_or(after, |r| r.seq);
            let finished = page.len() < EXPORT_PAGE;
            if chunk.is_empty() {
                return None;
            }
            Some((Ok(Bytes::from(chunk)), (last, false, finished)))
        }
    });
    let (content_type, name) = match format {
        Format::Ndjson => ("application/x-ndjson", "vigie-audit.ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "vigie-audit.csv"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /api/v1/audit/verify`: re-verifies the whole trail against the anchor.
async fn verify(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    s.audit.check(&caller, Action::ReadAudit, "audit.verify", None).await?;
    let anchor = match s.audit.anchor_path() {
        Some(path) => read_anchor(path)?,
        None => None,
    };
    let result = verify_trail(s.store.as_ref(), anchor.clone()).await?;
    let (body, outcome, detail) = match result {
        Ok(v) => {
            let detail = format!("audit trail intact: {} records", v.records);
            (
                json!({"ok": true, "records": v.records, "head": v.head, "anchor": anchor, "anchored": v.anchored}),
                Outcome::Ok,
                detail,
            )
        }
        Err(problem) => {
            let message = problem.to_string();
            (
                json!({"ok": false, "problem": problem, "message": message, "anchor": anchor}),
                Outcome::Failed,
                message,
            )
        }
    };
    s.audit
        .record(AuditEvent {
            outcome,
            detail: Some(detail),
            ..event(&caller, "audit.verify")
        })
        .await?;
    Ok(Json(body).into_response())
}

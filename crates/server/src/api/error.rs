//! Every API failure, mapped once to an NGSI-LD ProblemDetails response.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::WriteError;

pub(crate) const ERROR_BASE: &str = "https://uri.etsi.org/ngsi-ld/errors/";
/// The media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Vigie's own error types, for what NGSI-LD does not name (access control).
const VIGIE_ERROR_BASE: &str = "urn:vigie:error:";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is syntactically wrong (not JSON, unknown parameter value).
    #[error("{0}")]
    InvalidRequest(String),
    /// The request is well-formed but its content is not acceptable.
    #[error("{0}")]
    BadRequestData(String),
    /// No valid credential: log in, or send an API key or bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role or the scope does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests from one API key or too many failed logins.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    TooManyResults(String),
    #[error("{0}")]
    TooComplexQuery(String),
    #[error("{0}")]
    OperationNotSupported(String),
    /// A read addressed a tenant that was never written.
    #[error("{0}")]
    NonexistentTenant(String),
    #[error("{0}")]
    NoMultiTenantSupport(String),
    /// The client accepts no media type Vigie answers with.
    #[error("{0}")]
    NotAcceptable(String),
    /// A JSON-LD @context could not be retrieved or is not valid.
    #[error("{0}")]
    LdContextNotAvailable(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A rule that does not validate: every problem, each naming its field.
    #[error("the rule is not valid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidRule(Vec<vigie_core::rules::RuleError>),
    /// `If-Match` names a version that is no longer the current one.
    #[error("{0}")]
    PreconditionFailed(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "InvalidRequest", "Invalid request"),
            Self::BadRequestData(_) => (StatusCode::BAD_REQUEST, "BadRequestData", "Bad request data"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden", "Forbidden"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many requests"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound", "Resource not found"),
            Self::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists", "Already exists"),
            Self::TooManyResults(_) => (StatusCode::FORBIDDEN, "TooManyResults", "Too many results"),
            Self::TooComplexQuery(_) => (StatusCode::FORBIDDEN, "TooComplexQuery", "Too complex query"),
            Self::OperationNotSupported(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "OperationNotSupported",
                "Operation not supported",
            ),
            Self::NonexistentTenant(_) => (StatusCode::NOT_FOUND, "NonexistentTenant", "Nonexistent tenant"),
            Self::NoMultiTenantSupport(_) => (
                StatusCode::NOT_IMPLEMENTED,
                "NoMultiTenantSupport",
                "No multi-tenant support",
            ),
            Self::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "InvalidRequest", "Not acceptable"),
            Self::LdContextNotAvailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "LdContextNotAvailable",
                "LD context not available",
            ),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "InvalidRequest", "Payload too large"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "InternalError", "Service unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "Internal error"),
            Self::InvalidRule(_) => (StatusCode::BAD_REQUEST, "BadRequestData", "Bad request data"),
            Self::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "Precondition failed",
            ),
        }
    }

    /// The ProblemDetails body (also used inside batch results).
    pub fn problem(&self) -> serde_json::Value {
        let (status, kind, title) = self.parts();
        let detail = match self {
            // Never leak engine internals (SQL, paths) to clients: they are in the log.
            Self::Internal(_) => "an internal error occurred; see the server log".to_owned(),
            other => other.to_string(),
        };
        let base = match self {
            Self::Unauthorized(_) | Self::Forbidden(_) | Self::TooManyRequests(_) | Self::PreconditionFailed(_) => {
                VIGIE_ERROR_BASE
            }
            _ => ERROR_BASE,
        };
        let mut problem =
            json!({"type": format!("{base}{kind}"), "title": title, "status": status.as_u16(), "detail": detail});
        if let Self::InvalidRule(errors) = self {
            // Where each problem is, for an editor to show it there.
            problem["errors"] = errors
                .iter()
                .map(|e| {
                    let mut item = json!({"field": e.field(), "message": e.problem()});
                    if let Some((line, column)) = e.position() {
                        item["line"] = line.into();
                        item["column"] = column.into();
                    }
                    item
                })
                .collect();
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            self.problem().to_string(),
        )
            .into_response()
    }
}

impl From<vigie_core::access::Denied> for ApiError {
    fn from(e: vigie_core::access::Denied) -> Self {
        Self::Forbidden(e.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotFound(_) => Self::NotFound(e.to_string()),
            WriteError::AlreadyExists(_) => Self::AlreadyExists(e.to_string()),
            WriteError::AttributeNotFound { .. } => Self::NotFound(e.to_string()),
            WriteError::Invalid(_) => Self::BadRequestData(e.to_string()),
            WriteError::NotSupported(_) => Self::OperationNotSupported(e.to_string()),
            WriteError::Unavailable(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<vigie_store::StoreError> for ApiError {
    fn from(e: vigie_store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_client() {
        let e =
            ApiError::Internal("error returned from database: UPDATE entities SET x = 1 (/var/lib/vigie.db)".into());
        let body = e.problem().to_string();
        assert!(!body.contains("UPDATE") && !body.contains("/var/lib"), "{body}");
        let res = e.into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}

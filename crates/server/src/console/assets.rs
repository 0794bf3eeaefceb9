//! The console's static files, embedded in the binary at build time (read
//! from disk in debug builds): Vigie's own script and styles, and the
//! vendored libraries with their licences (`assets/vendor/VERSIONS`).

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::api::ApiError;

#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// The content type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    if name.starts_with("LICENSE") || name == "VERSIONS" {
        return "text/plain; charset=utf-8";
    }
    match name.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /console/assets/{path}`, revalidated by ETag (the file's SHA-256),
/// so a new Vigie version is picked up at once and an unchanged file costs
/// a 304.
pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return ApiError::NotFound(format!("no console asset '{path}'")).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut res = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(&path))], file.data.into_owned()).into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_and_its_libraries_are_embedded() {
        for path in ["console.js", "console.css", "vendor/VERSIONS"] {
            assert!(Assets::get(path).is_some(), "{path} is missing");
        }
        assert_eq!(
            content_type("vendor/maplibre-gl/maplibre-gl.js"),
            "text/javascript; charset=utf-8"
        );
    }
}

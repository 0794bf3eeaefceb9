//! JSON-LD `@context` documents, offline first: the built-in core and Smart
//! Data Models contexts, files preloaded from the configuration, documents
//! registered through `/jsonldContexts`, and — when allowed — remote ones
//! fetched once, within a bounded time, then cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{self, header};
use http_body_util::Full;
use serde_json::Value;
use vigie_core::ngsi::context::{ContextError, EMBEDDED_CONTEXTS, context_of_document};
use vigie_core::ngsi::{ActiveContext, BuiltinContexts, ContextSource};

use crate::config::NgsiLdConfig;
use crate::outbound::HttpClient;

/// Most documents downloaded or registered (beyond, the oldest are not kept).
const MAX_DOCUMENTS: usize = 1_000;
/// Most distinct `@context` values whose processed form is kept.
const MAX_ACTIVE: usize = 256;
/// Largest context document fetched.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most remote documents one `@context` may pull in.
const MAX_FETCHES: usize = 8;

/// Where a document came from, for `/jsonldContexts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Origin {
    /// Embedded in Vigie (core and Smart Data Models contexts).
    Builtin,
    /// Preloaded from a file named in the configuration.
    Preloaded,
    /// Registered through `POST /jsonldContexts`.
    Hosted,
    /// Downloaded, then cached.
    Cached,
}

struct Document {
    body: Arc<Value>,
    origin: Origin,
}

pub struct Contexts {
    documents: RwLock<BTreeMap<String, Document>>,
    active: RwLock<HashMap<String, Arc<ActiveContext>>>,
    client: Option<HttpClient>,
}

/// The documents known now, as a source for [`ActiveContext::build`].
struct Known<'a>(&'a Contexts);

impl ContextSource for Known<'_> {
    fn document(&self, url: &str) -> Result<Arc<Value>, ContextError> {
        if let Some(doc) = BuiltinContexts::shared().get(url) {
            return Ok(Arc::clone(doc));
        }
        self.0
            .documents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .map(|d| Arc::clone(&d.body))
            .ok_or_else(|| ContextError::NotAvailable {
                url: url.to_owned(),
                reason: "not built in, preloaded nor cached".into(),
            })
    }
}

impl Contexts {
    /// Loads the configured files; `url=path` registers the file under `url`.
    pub fn from_config(c: &NgsiLdConfig) -> anyhow::Result<Self> {
        let client = if c.fetch_remote_contexts {
            Some(HttpClient::new(
                &c.outbound_ca_file,
                false,
                Duration::from_millis(c.context_timeout_ms.max(1)),
                MAX_DOCUMENT_BYTES,
            )?)
        } else {
            None
        };
        let this = Self {
            documents: RwLock::new(BTreeMap::new()),
            active: RwLock::new(HashMap::new()),
            client,
        };
        for entry in &c.context_files {
            let (url, path) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("ngsi_ld.context_files: '{entry}' must read URL=PATH"))?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("ngsi_ld.context_files: cannot read {path}: {e}"))?;
            let doc: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("ngsi_ld.context_files: {path} is not JSON: {e}"))?;
            this.check(&doc)
                .map_err(|e| anyhow::anyhow!("ngsi_ld.context_files: {path}: {e}"))?;
            this.insert(url, doc, Origin::Preloaded);
        }
        Ok(this)
    }

    fn insert(&self, url: &str, doc: Value, origin: Origin) {
        let mut docs = self.documents.write().unwrap_or_else(PoisonError::into_inner);
        if docs.len() >= MAX_DOCUMENTS && !docs.contains_key(url) {
            // Cached downloads go first; hosted and preloaded ones stay.
            let evict = docs
                .iter()
                .find(|(_, d)| d.origin == Origin::Cached)
                .map(|(u, _)| u.clone());
            match evict {
                Some(u) => {
                    docs.remove(&u);
                }
                None => return,
            }
        }
        docs.insert(
            url.to_owned(),
            Document {
                body: Arc::new(doc),
                origin,
            },
        );
        // A changed document changes what contexts built from it mean.
        self.active.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Whether a document is a valid context (its terms process).
    pub fn check(&self, doc: &Value) -> Result<(), ContextError> {
        let ctx = context_of_document(doc)?;
        ActiveContext::build(ctx, &Known(self)).map(|_| ())
    }

    /// Registers a document under `url` (`POST /jsonldContexts`).
    pub fn host(&self, url: &str, doc: Value) -> Result<(), ContextError> {
        self.check(&doc)?;
        self.insert(url, doc, Origin::Hosted);
        Ok(())
    }

    pub fn remove(&self, url: &str) -> bool {
        let removed = self
            .documents
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(url)
            .is_some();
        if removed {
            self.active.write().unwrap_or_else(PoisonError::into_inner).clear();
        }
        removed
    }

    /// Every document: (url, origin, body).
    pub fn list(&self) -> Vec<(String, Origin, Arc<Value>)> {
        let mut out: Vec<(String, Origin, Arc<Value>)> = EMBEDDED_CONTEXTS
            .iter()
            .filter_map(|c| {
                BuiltinContexts::shared()
                    .get(c.url)
                    .map(|doc| (c.url.to_owned(), Origin::Builtin, Arc::clone(doc)))
            })
            .collect();
        let docs = self.documents.read().unwrap_or_else(PoisonError::into_inner);
        out.extend(docs.iter().map(|(u, d)| (u.clone(), d.origin, Arc::clone(&d.body))));
        out
    }

    pub fn get(&self, url: &str) -> Option<(Origin, Arc<Value>)> {
        if let Some(doc) = BuiltinContexts::shared().get(url) {
            return Some((Origin::Builtin, Arc::clone(doc)));
        }
        let docs = self.documents.read().unwrap_or_else(PoisonError::into_inner);
        docs.get(url).map(|d| (d.origin, Arc::clone(&d.body)))
    }

    /// The processed form of a request's `@context`, fetching what is
    /// missing when allowed. Never waits longer than the configured timeout
    /// per document.
    pub async fn resolve(&self, context: &Value) -> Result<Arc<ActiveContext>, ContextError> {
        let key = context.to_string();
        if let Some(active) = self.active.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(Arc::clone(active));
        }
        let mut fetched = 0;
        loop {
            match ActiveContext::build(context, &Known(self)) {
                Ok(active) => {
                    let active = Arc::new(active);
                    let mut cache = self.active.write().unwrap_or_else(PoisonError::into_inner);
                    if cache.len() >= MAX_ACTIVE {
                        cache.clear();
                    }
                    cache.insert(key, Arc::clone(&active));
                    return Ok(active);
                }
                Err(ContextError::NotAvailable { url, reason }) => {
                    let Some(client) = &self.client else {
                        return Err(ContextError::NotAvailable {
                            url,
                            reason: format!(
                                "{reason}; fetching remote contexts is off (ngsi_ld.fetch_remote_contexts)"
                            ),
                        });
                    };
                    if fetched >= MAX_FETCHES {
                        return Err(ContextError::TooComplex {
                            what: "remote documents in one @context",
                            max: MAX_FETCHES,
                        });
                    }
                    fetched += 1;
                    let doc = fetch(client, &url).await?;
                    self.insert(&url, doc, Origin::Cached);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn fetch(client: &HttpClient, url: &str) -> Result<Value, ContextError> {
    let unavailable = |reason: String| ContextError::NotAvailable {
        url: url.to_owned(),
        reason,
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(unavailable("only http and https contexts can be fetched".into()));
    }
    let req = http::Request::get(url)
        .header(header::ACCEPT, "application/ld+json, application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| unavailable(e.to_string()))?;
    let (status, _, body) = client.send(req, url).await.map_err(|e| unavailable(e.to_string()))?;
    if !status.is_success() {
        return Err(unavailable(format!("answered {status}")));
    }
    tracing::info!(url, bytes = body.len(), "remote @context fetched and cached");
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
}

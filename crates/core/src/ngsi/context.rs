//! JSON-LD `@context` handling for the NGSI-LD API (ETSI GS CIM 009 §5.5.7,
//! §6.3.5, Annex B; JSON-LD 1.1 context processing), with no I/O.
//!
//! Vigie keeps attribute and type names in the form the NGSI-LD core context
//! compacts them to: `powerState` means
//! `https://uri.etsi.org/ngsi-ld/default-context/powerState`, and a name another
//! context maps elsewhere is kept as its full IRI. A request bringing another
//! `@context` (a `Link` header or an inline member) is translated at the
//! boundary: [`ActiveContext::build`] turns the `@context` into a term table,
//! and a [`Translation`] renames names from one context to the other.
//!
//! Only what names need is processed: term → IRI mappings (`@id`, compact IRIs,
//! `@vocab`, `@import`, `@protected`). Value coercion (`@type`), containers and
//! scoped contexts change no top-level name: they are accepted, not applied.
//!
//! Offline first: the core contexts v1.3 to v1.8 and the Smart Data Models
//! contexts Vigie ships are embedded ([`BuiltinContexts`]) and always preferred
//! to the server's [`ContextSource`], so a control room with no Internet access
//! still understands them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

/// The core context Vigie answers with (the unversioned URL names the same document).
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
/// The unversioned core context URL, an alias of the newest version Vigie ships.
pub const CORE_CONTEXT_LATEST_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";
/// Where the core context puts every name it does not define.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// The `rel` of a `Link` header carrying a JSON-LD context.
pub const CONTEXT_LINK_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// Deepest nesting of arrays and remote references inside one `@context`.
pub const MAX_DEPTH: usize = 8;
/// Most remote documents one `@context` may pull in (the core context is free).
pub const MAX_DOCUMENTS: usize = 16;
/// Most term definitions one `@context` may hold, all documents together
/// (the largest Smart Data Models context has about 500).
pub const MAX_TERMS: usize = 10_000;
/// Longest term, IRI or URL accepted, in bytes.
pub const MAX_IRI_LEN: usize = 2048;
/// Longest `Link` header value accepted, in bytes.
pub const MAX_LINK_HEADER_LEN: usize = 8192;
/// Deepest chain of terms defined through one another in one context object
/// (`a` → `b:x` → `c:y` …): bounds the recursion that resolves them.
const MAX_TERM_CHAIN: usize = 32;
/// Deepest nesting of sub-attributes a [`Translation`] renames.
pub const MAX_ATTRIBUTE_NESTING: usize = 16;

/// Why an `@context`, a `Link` header or a translation was refused.
///
/// The API maps [`ContextError::NotAvailable`] to `LdContextNotAvailable`
/// (503), [`ContextError::InvalidLink`] to `InvalidRequest` (400), and every
/// other variant to `BadRequestData` (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The document behind a URL could not be obtained.
    #[error("the @context '{url}' is not available: {reason}")]
    NotAvailable { url: String, reason: String },
    /// The `@context` (or a document it references) breaks JSON-LD's rules.
    #[error("invalid @context: {0}")]
    Invalid(String),
    /// A remote document references itself, directly or through others.
    #[error("the @context '{url}' includes itself")]
    Cycle { url: String },
    /// The `@context` is well formed but exceeds one of the bounds.
    #[error("@context too complex: {what} exceeds the maximum of {max}")]
    TooComplex { what: &'static str, max: usize },
    /// The `Link` header cannot be parsed or names several contexts.
    #[error("invalid Link header: {0}")]
    InvalidLink(String),
    /// Two members of one object translate to the same name.
    #[error("members '{first}' and '{second}' both denote '{iri}'")]
    NameClash { first: String, second: String, iri: String },
}

fn invalid(message: impl Into<String>) -> ContextError {
    ContextError::Invalid(message.into())
}

/// Where [`ActiveContext::build`] gets the documents behind `@context` URLs
/// that Vigie does not embed: the server's cache of downloaded and
/// `jsonldContexts`-registered documents.
pub trait ContextSource {
    /// The whole JSON-LD document (`{"@context": …}`) at `url`, or
    /// [`ContextError::NotAvailable`].
    fn document(&self, url: &str) -> Result<Arc<Value>, ContextError>;
}

/// A context document Vigie embeds, with the URL it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedContext {
    pub url: &'static str,
    /// The document as shipped, to serve byte for byte (`GET /jsonldContexts/{id}`).
    pub text: &'static str,
}

macro_rules! core_context {
    ($version:literal) => {
        EmbeddedContext {
            url: concat!(
                "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v",
                $version,
                ".jsonld"
            ),
            text: include_str!(concat!("../../contexts/ngsi-ld-core-context-v", $version, ".jsonld")),
        }
    };
}

/// The core contexts, the unversioned alias of the newest, and each Smart
/// Data Models subject's context under both URLs the programme publishes it at.
macro_rules! embedded_contexts {
    (core: [$($version:literal),*], latest: $latest:literal, smart_data_models: [$($subject:literal),*]) => {
        &[
            $(core_context!($version),)*
            EmbeddedContext {
                url: CORE_CONTEXT_LATEST_URL,
                text: core_context!($latest).text,
            },
            $(
                EmbeddedContext {
                    url: concat!(
                        "https://raw.githubusercontent.com/smart-data-models/",
                        $subject,
                        "/master/context.jsonld"
                    ),
                    text: include_str!(concat!("../../contexts/smart-data-models/", $subject, "/context.jsonld")),
                },
                EmbeddedContext {
                    url: concat!("https://smart-data-models.github.io/", $subject, "/context.jsonld"),
                    text: include_str!(concat!("../../contexts/smart-data-models/", $subject, "/context.jsonld")),
                },
            )*
        ]
    };
}

/// Every context document Vigie embeds (see `crates/core/contexts/README.md`).
pub const EMBEDDED_CONTEXTS: &[EmbeddedContext] = embedded_contexts!(
    core: ["1.3", "1.4", "1.5", "1.6", "1.7", "1.8"],
    latest: "1.8",
    smart_data_models: [
        "dataModel.Alert",
        "dataModel.Building",
        "dataModel.Device",
        "dataModel.IssueTracking",
        "dataModel.Parking",
        "dataModel.Streetlighting",
        "dataModel.Transportation",
        "dataModel.WasteManagement",
        "dataModel.Weather"
    ]
);

/// The embedded context documents, parsed once.
#[derive(Debug)]
pub struct BuiltinContexts {
    documents: HashMap<&'static str, Arc<Value>>,
}

impl BuiltinContexts {
    /// The process-wide instance: the documents are parsed on first use.
    pub fn shared() -> &'static BuiltinContexts {
        static SHARED: LazyLock<BuiltinContexts> = LazyLock::new(|| BuiltinContexts {
            documents: EMBEDDED_CONTEXTS
                .iter()
                .map(|c| {
                    // Shipped files, not input: the `embedded_documents_parse_and_process` test
                    // guards them, so a failure here is a broken build.
                    let doc: Value = serde_json::from_str(c.text)
                        .unwrap_or_else(|e| panic!("embedded @context {} is not JSON: {e}", c.url));
                    (c.url, Arc::new(doc))
                })
                .collect(),
        });
        &SHARED
    }

    /// The embedded document at `url`, if Vigie ships one.
    pub fn get(&self, url: &str) -> Option<&Arc<Value>> {
        self.documents.get(url)
    }
}

impl ContextSource for BuiltinContexts {
    fn document(&self, url: &str) -> Result<Arc<Value>, ContextError> {
        self.get(url).cloned().ok_or_else(|| ContextError::NotAvailable {
            url: url.to_owned(),
            reason: "not among the contexts Vigie embeds".into(),
        })
    }
}

/// The `@context` member of a JSON-LD context document (`{"@context": …}`),
/// as a remote reference or a `jsonldContexts` upload must be.
pub fn context_of_document(document: &Value) -> Result<&Value, ContextError> {
    document
        .as_object()
        .and_then(|d| d.get("@context"))
        .ok_or_else(|| invalid("a context document must be a JSON object with an '@context' member"))
}

/// One term's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TermDefinition {
    /// An absolute IRI, a blank node or a keyword (`"id": "@id"`).
    iri: String,
    /// Whether `term:suffix` expands to `iri` + `suffix` (JSON-LD 1.1 §4.1.5).
    prefix: bool,
    protected: bool,
}

/// A processed `@context`: term → IRI and IRI → term tables, built once so
/// that each [`expand`](Self::expand) and [`compact`](Self::compact) is a
/// hash lookup.
#[derive(Debug, Clone)]
pub struct ActiveContext {
    terms: HashMap<String, TermDefinition>,
    vocab: Option<String>,
    /// IRI → the term to compact it to.
    reverse: HashMap<String, String>,
    /// Whether this context maps every name as the core context alone does.
    core_equivalent: bool,
}

impl PartialEq for ActiveContext {
    fn eq(&self, other: &Self) -> bool {
        self.terms == other.terms && self.vocab == other.vocab
    }
}

/// The core context's terms, processed once.
static CORE: LazyLock<ActiveContext> = LazyLock::new(|| {
    let mut terms = HashMap::new();
    let mut vocab = None;
    let core = BuiltinContexts::shared()
        .get(CORE_CONTEXT_URL)
        .map(|doc| context_of_document(doc));
    // The embedded core is valid (the `core_context_is_processed` test).
    if let Some(Ok(Value::Object(definitions))) = core {
        let mut budget = usize::MAX;
        if let Err(e) = define_all(&mut terms, &mut vocab, definitions, false, &mut budget) {
            panic!("the embedded core context is invalid: {e}");
        }
    } else {
        panic!("the embedded core context is missing or not an object");
    }
    let mut ctx = ActiveContext {
        terms,
        vocab,
        reverse: HashMap::new(),
        core_equivalent: true,
    };
    ctx.reverse = ctx.reverse_map(None);
    ctx
});

impl ActiveContext {
    /// The NGSI-LD core context alone: the one Vigie's stored names are in.
    pub fn core() -> &'static ActiveContext {
        &CORE
    }

    /// Processes an `@context` value (a URL, an object, an array of both, or
    /// null) into a term table. The core context is applied first and last,
    /// so core terms can never be redefined (ETSI GS CIM 009 §5.5.7). URLs are
    /// looked up among the embedded documents, then in `source`.
    pub fn build(context: &Value, source: &dyn ContextSource) -> Result<ActiveContext, ContextError> {
        let core = Self::core();
        let mut processor = Processor {
            source,
            terms: core.terms.clone(),
            vocab: core.vocab.clone(),
            documents: 0,
            in_progress: Vec::new(),
            budget: MAX_TERMS,
        };
        processor.process(context, 0)?;
        let Processor {
            mut terms, mut vocab, ..
        } = processor;
        // Last application of the core: its terms and its @vocab win.
        for (term, definition) in &core.terms {
            terms.insert(term.clone(), definition.clone());
        }
        vocab.clone_from(&core.vocab);
        let mut ctx = ActiveContext {
            terms,
            vocab,
            reverse: HashMap::new(),
            core_equivalent: false,
        };
        ctx.core_equivalent = ctx == *core;
        ctx.reverse = ctx.reverse_map(Some(core));
        Ok(ctx)
    }

    /// Whether this context maps every name exactly as the core context does
    /// (translating between it and the core is then a no-op).
    pub fn is_core_equivalent(&self) -> bool {
        self.core_equivalent
    }

    /// The IRI a name (attribute or type) stands for: its term's IRI, a
    /// compact IRI expanded, an absolute IRI as it is, or the `@vocab` IRI
    /// plus the name.
    pub fn expand<'a>(&'a self, name: &'a str) -> Cow<'a, str> {
        if name.starts_with('@') {
            return Cow::Borrowed(name);
        }
        if let Some(definition) = self.terms.get(name) {
            return Cow::Borrowed(&definition.iri);
        }
        if let Some((prefix, suffix)) = name.split_once(':') {
            if prefix == "_" || suffix.starts_with("//") {
                return Cow::Borrowed(name);
            }
            return match self.terms.get(prefix) {
                Some(definition) if definition.prefix => Cow::Owned(format!("{}{suffix}", definition.iri)),
                _ => Cow::Borrowed(name),
            };
        }
        match &self.vocab {
            Some(vocab) => Cow::Owned(format!("{vocab}{name}")),
            None => Cow::Borrowed(name),
        }
    }

    /// The shortest name that expands back to `iri`: a term (the core's own
    /// when it defines one), else the `@vocab`-relative name, else the IRI.
    pub fn compact<'a>(&'a self, iri: &'a str) -> Cow<'a, str> {
        if let Some(term) = self.reverse.get(iri) {
            return Cow::Borrowed(term);
        }
        if let Some(rest) = self.vocab.as_deref().and_then(|v| iri.strip_prefix(v))
            && !rest.is_empty()
            && !rest.contains(':')
            && !rest.starts_with('@')
            && !self.terms.contains_key(rest)
        {
            return Cow::Borrowed(rest);
        }
        Cow::Borrowed(iri)
    }

    /// IRI → term, preferring the core's term for an IRI the core defines,
    /// then the shortest term, then the least; keywords and terms that are
    /// themselves IRIs are left out.
    fn reverse_map(&self, core: Option<&ActiveContext>) -> HashMap<String, String> {
        let mut reverse: HashMap<String, String> = HashMap::with_capacity(self.terms.len());
        for (term, definition) in &self.terms {
            if definition.iri.starts_with('@') || term.contains(':') {
                continue;
            }
            if let Some(core_term) = core.and_then(|c| c.reverse.get(&definition.iri))
                && core_term != term
            {
                continue;
            }
            match reverse.get(&definition.iri) {
                Some(kept) if (kept.len(), kept.as_str()) <= (term.len(), term.as_str()) => {}
                _ => {
                    reverse.insert(definition.iri.clone(), term.clone());
                }
            }
        }
        reverse
    }
}

/// State of one [`ActiveContext::build`].
struct Processor<'s> {
    source: &'s dyn ContextSource,
    terms: HashMap<String, TermDefinition>,
    vocab: Option<String>,
    documents: usize,
    /// URLs being processed, outermost first: a URL met again is a cycle.
    in_progress: Vec<String>,
    /// Term definitions still allowed.
    budget: usize,
}

impl Processor<'_> {
    fn process(&mut self, context: &Value, depth: usize) -> Result<(), ContextError> {
        if depth > MAX_DEPTH {
            return Err(ContextError::TooComplex {
                what: "@context nesting depth",
                max: MAX_DEPTH,
            });
        }
        match context {
            // JSON-LD: null resets the context; the core comes back last anyway.
            Value::Null => {
                self.terms.retain(|_, d| d.protected);
                self.vocab = None;
                Ok(())
            }
            Value::String(url) => self.process_remote(url, depth),
            Value::Array(items) => items.iter().try_for_each(|item| self.process(item, depth + 1)),
            Value::Object(definitions) => {
                if let Some(import) = definitions.get("@import") {
                    let url = import
                        .as_str()
                        .ok_or_else(|| invalid("'@import' must be a URL string"))?;
                    let imported = self.load(url)?;
                    match context_of_document(&imported)? {
                        Value::Object(imported_definitions) => {
                            if imported_definitions.contains_key("@import") {
                                return Err(invalid(format!("the context imported from '{url}' imports again")));
                            }
                            self.define(imported_definitions)?;
                        }
                        _ => return Err(invalid(format!("the context imported from '{url}' is not an object"))),
                    }
                    self.in_progress.pop();
                }
                self.define(definitions)
            }
            other => Err(invalid(format!(
                "an @context entry must be a URL, an object, an array or null, not {}",
                json_kind(other)
            ))),
        }
    }

    fn process_remote(&mut self, url: &str, depth: usize) -> Result<(), ContextError> {
        let document = self.load(url)?;
        let result = self.process(context_of_document(&document)?, depth + 1);
        self.in_progress.pop();
        result
    }

    /// Fetches `url` (embedded first) and pushes it on the in-progress stack;
    /// the caller pops it when done.
    fn load(&mut self, url: &str) -> Result<Arc<Value>, ContextError> {
        check_url(url)?;
        if self.in_progress.iter().any(|u| u == url) {
            return Err(ContextError::Cycle { url: url.to_owned() });
        }
        let document = match BuiltinContexts::shared().get(url) {
            Some(document) => document.clone(),
            None => {
                self.documents += 1;
                if self.documents > MAX_DOCUMENTS {
                    return Err(ContextError::TooComplex {
                        what: "number of remote @context documents",
                        max: MAX_DOCUMENTS,
                    });
                }
                self.source.document(url)?
            }
        };
        self.in_progress.push(url.to_owned());
        Ok(document)
    }

    fn define(&mut self, definitions: &Map<String, Value>) -> Result<(), ContextError> {
        define_all(&mut self.terms, &mut self.vocab, definitions, true, &mut self.budget)
    }
}

/// Applies one context object's definitions to `terms` and `vocab`.
/// Redefinitions of protected terms are ignored (the core is reapplied last,
/// so ignoring them gives the result JSON-LD's override rules would).
fn define_all(
    terms: &mut HashMap<String, TermDefinition>,
    vocab: &mut Option<String>,
    definitions: &Map<String, Value>,
    respect_protection: bool,
    budget: &mut usize,
) -> Result<(), ContextError> {
    check_context_keywords(definitions)?;
    if let Some(v) = definitions.get("@vocab") {
        *vocab = match v {
            Value::Null => None,
            Value::String(s) => {
                let expanded = LocalDefinitions {
                    terms,
                    vocab: vocab.as_deref(),
                    definitions,
                    state: HashMap::new(),
                    protected_default: false,
                    respect_protection,
                    depth: 0,
                }
                .expand_value(s)?;
                if !is_absolute(&expanded) {
                    return Err(invalid(format!("'@vocab' must be an absolute IRI, not '{s}'")));
                }
                Some(expanded)
            }
            other => {
                return Err(invalid(format!(
                    "'@vocab' must be a string or null, not {}",
                    json_kind(other)
                )));
            }
        };
    }
    let protected_default = match definitions.get("@protected") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "'@protected' must be true or false, not {}",
                json_kind(other)
            )));
        }
    };
    let vocab_now = vocab.clone();
    let mut local = LocalDefinitions {
        terms,
        vocab: vocab_now.as_deref(),
        definitions,
        state: HashMap::new(),
        protected_default,
        respect_protection,
        depth: 0,
    };
    for term in definitions.keys() {
        if term.starts_with('@') {
            continue;
        }
        if *budget == 0 {
            return Err(ContextError::TooComplex {
                what: "number of term definitions",
                max: MAX_TERMS,
            });
        }
        *budget -= 1;
        local.define(term)?;
    }
    Ok(())
}

/// Keywords a context object may hold besides terms.
const CONTEXT_KEYWORDS: [&str; 8] = [
    "@base",
    "@direction",
    "@import",
    "@language",
    "@propagate",
    "@protected",
    "@version",
    "@vocab",
];

fn check_context_keywords(definitions: &Map<String, Value>) -> Result<(), ContextError> {
    for key in definitions.keys().filter(|k| k.starts_with('@')) {
        if !CONTEXT_KEYWORDS.contains(&key.as_str()) {
            return Err(invalid(format!("'{key}' is not a keyword a context may hold")));
        }
    }
    match definitions.get("@version") {
        None => Ok(()),
        Some(v) if v.as_f64() == Some(1.1) => Ok(()),
        Some(v) => Err(invalid(format!("'@version' must be 1.1, not {v}"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefinitionState {
    InProgress,
    Done,
}

/// The definitions of one context object being applied: terms there may use
/// one another whatever their order (JSON-LD 1.1 "Create Term Definition").
struct LocalDefinitions<'a> {
    terms: &'a mut HashMap<String, TermDefinition>,
    vocab: Option<&'a str>,
    definitions: &'a Map<String, Value>,
    state: HashMap<String, DefinitionState>,
    protected_default: bool,
    respect_protection: bool,
    depth: usize,
}

/// Members an expanded term definition may hold.
const TERM_KEYWORDS: [&str; 11] = [
    "@container",
    "@context",
    "@direction",
    "@id",
    "@index",
    "@language",
    "@nest",
    "@prefix",
    "@protected",
    "@reverse",
    "@type",
];

impl LocalDefinitions<'_> {
    fn define(&mut self, term: &str) -> Result<(), ContextError> {
        match self.state.get(term) {
            Some(DefinitionState::Done) => return Ok(()),
            Some(DefinitionState::InProgress) => {
                return Err(invalid(format!(
                    "term '{term}' is defined through itself (cyclic IRI mapping)"
                )));
            }
            None => {}
        }
        if term.is_empty() || term.len() > MAX_IRI_LEN {
            return Err(invalid(format!("a term must hold 1 to {MAX_IRI_LEN} bytes")));
        }
        if self.depth >= MAX_TERM_CHAIN {
            return Err(ContextError::TooComplex {
                what: "chain of terms defined through one another",
                max: MAX_TERM_CHAIN,
            });
        }
        self.state.insert(term.to_owned(), DefinitionState::InProgress);
        self.depth += 1;
        let result = self.create(term);
        self.depth -= 1;
        self.state.insert(term.to_owned(), DefinitionState::Done);
        result
    }

    fn create(&mut self, term: &str) -> Result<(), ContextError> {
        let Some(value) = self.definitions.get(term) else {
            return Ok(());
        };
        let (id, explicit_prefix, protected) = match value {
            Value::Null => (None, None, self.protected_default),
            Value::String(id) => (Some(id.as_str()), None, self.protected_default),
            Value::Object(definition) => {
                if let Some(key) = definition.keys().find(|k| !TERM_KEYWORDS.contains(&k.as_str())) {
                    return Err(invalid(format!("term '{term}' has the unknown member '{key}'")));
                }
                if let Some(t) = definition.get("@type")
                    && !t.is_string()
                {
                    return Err(invalid(format!("the '@type' of term '{term}' must be a string")));
                }
                let id = match (definition.get("@id"), definition.get("@reverse")) {
                    (Some(Value::String(id)), _) | (None, Some(Value::String(id))) => Some(id.as_str()),
                    (Some(Value::Null), _) => None,
                    (None, None) => Some(term),
                    (Some(_), _) | (None, Some(_)) => {
                        return Err(invalid(format!("the '@id' of term '{term}' must be a string or null")));
                    }
                };
                let prefix = match definition.get("@prefix") {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return Err(invalid(format!("the '@prefix' of term '{term}' must be true or false"))),
                };
                let protected = match definition.get("@protected") {
                    None => self.protected_default,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(invalid(format!(
                            "the '@protected' of term '{term}' must be true or false"
                        )));
                    }
                };
                (id, prefix, protected)
            }
            other => {
                return Err(invalid(format!(
                    "term '{term}' must map to a string, an object or null, not {}",
                    json_kind(other)
                )));
            }
        };
        if self.respect_protection && self.terms.get(term).is_some_and(|d| d.protected) {
            // A protected term (the core's) keeps its meaning.
            return Ok(());
        }
        let Some(id) = id else {
            // Decoupled from @vocab in JSON-LD; Vigie keeps such names as they
            // are rather than dropping data, so the term is simply forgotten.
            self.terms.remove(term);
            return Ok(());
        };
        let iri = if id == term {
            self.expand_term_itself(term)?
        } else {
            self.expand_value(id)?
        };
        if iri.len() > MAX_IRI_LEN {
            return Err(invalid(format!(
                "the IRI of term '{term}' is longer than {MAX_IRI_LEN} bytes"
            )));
        }
        // JSON-LD 1.1: a simple term whose IRI ends with a gen-delim is a prefix.
        let simple = value.is_string();
        let prefix = explicit_prefix.unwrap_or(simple && !term.contains(':') && iri.ends_with(GEN_DELIMS));
        self.terms
            .insert(term.to_owned(), TermDefinition { iri, prefix, protected });
        Ok(())
    }

    /// The IRI of a term defined without `@id`: a compact IRI or IRI as
    /// written, else relative to `@vocab`.
    fn expand_term_itself(&mut self, term: &str) -> Result<String, ContextError> {
        if let Some(iri) = self.expand_compact_iri(term)? {
            return Ok(iri);
        }
        match self.vocab {
            Some(vocab) => Ok(format!("{vocab}{term}")),
            None => Err(invalid(format!("term '{term}' has no '@id' and no '@vocab' applies"))),
        }
    }

    /// Expands an IRI mapping written in this context object (IRI Expansion
    /// with `vocab` true and the local context).
    fn expand_value(&mut self, value: &str) -> Result<String, ContextError> {
        if value.starts_with('@') {
            return match value {
                "@id" | "@type" => Ok(value.to_owned()),
                _ => Err(invalid(format!("'{value}' is not a keyword a term can alias"))),
            };
        }
        if self.definitions.contains_key(value) {
            self.define(value)?;
        }
        if let Some(definition) = self.terms.get(value) {
            return Ok(definition.iri.clone());
        }
        if let Some(iri) = self.expand_compact_iri(value)? {
            return Ok(iri);
        }
        match self.vocab {
            Some(vocab) => Ok(format!("{vocab}{value}")),
            None => Err(invalid(format!(
                "'{value}' is neither an IRI nor a defined term, and no '@vocab' applies"
            ))),
        }
    }

    /// `prefix:suffix` with `prefix` a term, expanded; an absolute IRI or a
    /// blank node as it is; `None` for a value without `:`.
    fn expand_compact_iri(&mut self, value: &str) -> Result<Option<String>, ContextError> {
        let Some((prefix, suffix)) = value.split_once(':') else {
            return Ok(None);
        };
        if prefix == "_" || suffix.starts_with("//") {
            return Ok(Some(value.to_owned()));
        }
        if self.definitions.contains_key(prefix) {
            self.define(prefix)?;
        }
        Ok(Some(match self.terms.get(prefix) {
            Some(definition) if !definition.iri.starts_with('@') => format!("{}{suffix}", definition.iri),
            _ => value.to_owned(),
        }))
    }
}

const GEN_DELIMS: [char; 7] = [':', '/', '?', '#', '[', ']', '@'];

/// Whether `s` has a URI scheme (RFC 3986 §3.1) or is a blank node.
fn is_absolute(s: &str) -> bool {
    s.split_once(':').is_some_and(|(scheme, _)| {
        scheme == "_"
            || (scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    })
}

fn check_url(url: &str) -> Result<(), ContextError> {
    if url.len() > MAX_IRI_LEN {
        return Err(invalid(format!("an @context URL is longer than {MAX_IRI_LEN} bytes")));
    }
    if !is_absolute(url) || url.starts_with("_:") || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!(
            "'{url}' is not an absolute URL (relative @context references are not supported)"
        )));
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An entity's members that are not attributes.
const ENTITY_MEMBERS: [&str; 6] = ["id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"];
/// Attribute members whose string values are names (a VocabProperty's
/// `vocab`, a Relationship's `objectType`), renamed like attribute names.
const NAME_VALUED_MEMBERS: [&str; 3] = ["vocab", "objectType", "previousVocab"];

/// How an entity is rendered, which decides what its members' values hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// Every attribute is an object with a `type`; its other members not in
    /// the core context are sub-attributes.
    Normalized,
    /// Attributes as objects without `type`, or bare values: objects are read
    /// as in the normalized form (the concise form wraps object values in `value`).
    Concise,
    /// Attribute names map to bare values: only names are renamed.
    KeyValues,
}

/// Renames attribute and type names from one context to another: expanded
/// with `from`, compacted with `to`.
#[derive(Debug, Clone, Copy)]
pub struct Translation<'c> {
    from: &'c ActiveContext,
    to: &'c ActiveContext,
}

impl<'c> Translation<'c> {
    pub fn new(from: &'c ActiveContext, to: &'c ActiveContext) -> Self {
        Self { from, to }
    }

    /// From a request's context into Vigie's stored names.
    pub fn incoming(request: &'c ActiveContext) -> Self {
        Self::new(request, ActiveContext::core())
    }

    /// From Vigie's stored names into a request's context.
    pub fn outgoing(request: &'c ActiveContext) -> Self {
        Self::new(ActiveContext::core(), request)
    }

    /// Whether every name stays as it is (the fast path: both core).
    pub fn is_identity(&self) -> bool {
        std::ptr::eq(self.from, self.to) || (self.from.core_equivalent && self.to.core_equivalent)
    }

    /// One attribute or type name, translated.
    pub fn name<'n>(&self, name: &'n str) -> Cow<'n, str> {
        if self.is_identity() || name.starts_with('@') {
            return Cow::Borrowed(name);
        }
        let iri = self.from.expand(name);
        if iri.starts_with('@') {
            // `id` and `type` (in `pick`, say) alias keywords: names of no attribute.
            return Cow::Borrowed(name);
        }
        let translated = self.to.compact(&iri);
        if translated == name {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(translated.into_owned())
        }
    }

    /// A list of names in place (`attrs`, `pick`, `omit`, `watchedAttributes`,
    /// `type` lists).
    pub fn names(&self, names: &mut [String]) {
        if self.is_identity() {
            return;
        }
        for name in names {
            if let Cow::Owned(renamed) = self.name(name) {
                *name = renamed;
            }
        }
    }

    /// Renames an entity's type(s) and attribute names in place. `id`,
    /// `@context` and the core members keep their names; attribute values are
    /// never touched, except a VocabProperty's `vocab`, whose strings are names.
    pub fn entity(&self, entity: &mut Value, representation: Representation) -> Result<(), ContextError> {
        if self.is_identity() {
            return Ok(());
        }
        let Value::Object(members) = entity else {
            return Err(invalid("an entity must be a JSON object"));
        };
        for key in ["type", "@type"] {
            if let Some(types) = members.get_mut(key) {
                self.name_values(types);
            }
        }
        let descend = representation != Representation::KeyValues;
        self.rename_members(members, descend, 0)
    }

    /// Renames a list (or one) of entities, as returned by a query.
    pub fn entities(&self, entities: &mut Value, representation: Representation) -> Result<(), ContextError> {
        match entities {
            Value::Array(items) => items.iter_mut().try_for_each(|e| self.entity(e, representation)),
            entity => self.entity(entity, representation),
        }
    }

    /// Renames a string or the strings of an array holding names.
    fn name_values(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(renamed) = self.name(s) {
                    *s = renamed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.name_values(v)),
            _ => {}
        }
    }

    /// Renames the members of an entity (`depth` 0) or of an attribute that
    /// are attribute names. An entity's own members (id, type, scope, system
    /// times) and an attribute's core members (type, value, observedAt…) keep
    /// their names and their values.
    fn rename_members(
        &self,
        members: &mut Map<String, Value>,
        descend: bool,
        depth: usize,
    ) -> Result<(), ContextError> {
        if depth > MAX_ATTRIBUTE_NESTING {
            return Err(ContextError::TooComplex {
                what: "sub-attribute nesting depth",
                max: MAX_ATTRIBUTE_NESTING,
            });
        }
        let core = ActiveContext::core();
        let old = std::mem::take(members);
        // Output name → the member it came from, to refuse two becoming one.
        let mut origins: HashMap<String, String> = HashMap::with_capacity(old.len());
        for (key, mut value) in old {
            let structural = key.starts_with('@')
                || if depth == 0 {
                    ENTITY_MEMBERS.contains(&key.as_str())
                } else {
                    core.terms.contains_key(&key)
                };
            let renamed = if structural {
                if depth > 0 && NAME_VALUED_MEMBERS.contains(&key.as_str()) {
                    self.name_values(&mut value);
                }
                key.clone()
            } else {
                if descend {
                    self.rename_attribute(&mut value, depth)?;
                }
                self.name(&key).into_owned()
            };
            if let Some(first) = origins.insert(renamed.clone(), key.clone()) {
                return Err(ContextError::NameClash {
                    iri: self.from.expand(&key).into_owned(),
                    first,
                    second: key,
                });
            }
            members.insert(renamed, value);
        }
        Ok(())
    }

    /// An attribute's value in normalized or concise form: an object (or an
    /// array of instances with distinct `datasetId`s) whose non-core members
    /// are sub-attributes.
    fn rename_attribute(&self, attribute: &mut Value, depth: usize) -> Result<(), ContextError> {
        match attribute {
            Value::Object(members) => self.rename_members(members, true, depth + 1),
            Value::Array(instances) => instances.iter_mut().try_for_each(|instance| match instance {
                Value::Object(members) => self.rename_members(members, true, depth + 1),
                _ => Ok(()),
            }),
            _ => Ok(()),
        }
    }
}

/// The `Link` header value that names `context_url` as the JSON-LD context
/// of a response (ETSI GS CIM 009 §6.3.5).
pub fn link_header_value(context_url: &str) -> String {
    format!("<{context_url}>; rel=\"{CONTEXT_LINK_REL}\"; type=\"application/ld+json\"")
}

/// The context URL a request's `Link` header names, if any. `header` is the
/// header's value (several `Link` headers joined with `,` as HTTP allows).
/// Links with other relations are ignored; two context links are an error.
pub fn parse_link_header(header: &str) -> Result<Option<String>, ContextError> {
    if header.len() > MAX_LINK_HEADER_LEN {
        return Err(ContextError::InvalidLink(format!(
            "the header is longer than {MAX_LINK_HEADER_LEN} bytes"
        )));
    }
    let mut rest = header.trim_start();
    let mut found: Option<String> = None;
    while !rest.is_empty() {
        let after_open = rest
            .strip_prefix('<')
            .ok_or_else(|| ContextError::InvalidLink("a link must start with '<URL>'".into()))?;
        let (url, after_url) = after_open
            .split_once('>')
            .ok_or_else(|| ContextError::InvalidLink("a '<' has no matching '>'".into()))?;
        let (params, next) = split_link_params(after_url)?;
        let is_context = params
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("rel") && v.split_ascii_whitespace().any(|r| r == CONTEXT_LINK_REL));
        if is_context {
            if found.is_some() {
                return Err(ContextError::InvalidLink("several JSON-LD context links".into()));
            }
            let url = url.trim();
            check_url(url).map_err(|_| ContextError::InvalidLink(format!("'{url}' is not an absolute URL")))?;
            found = Some(url.to_owned());
        }
        rest = next.trim_start();
    }
    Ok(found)
}

/// A link's parameters: name, unquoted value.
type LinkParams<'a> = Vec<(&'a str, String)>;

/// Reads `; key=value` parameters up to the `,` ending a link (or the end);
/// returns them and what follows the `,`.
fn split_link_params(mut s: &str) -> Result<(LinkParams<'_>, &str), ContextError> {
    let mut params = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(next) = s.strip_prefix(',') {
            return Ok((params, next));
        }
        if s.is_empty() {
            return Ok((params, s));
        }
        s = s
            .strip_prefix(';')
            .ok_or_else(|| ContextError::InvalidLink("expected ';' or ',' after a link".into()))?
            .trim_start();
        let end = s.find(['=', ';', ',']).unwrap_or(s.len());
        let key = s[..end].trim();
        if key.is_empty() {
            return Err(ContextError::InvalidLink("a link parameter has no name".into()));
        }
        s = &s[end..];
        let Some(after_eq) = s.strip_prefix('=') else {
            params.push((key, String::new()));
            continue;
        };
        let after_eq = after_eq.trim_start();
        if let Some(quoted) = after_eq.strip_prefix('"') {
            let (value, after) = read_quoted(quoted)?;
            params.push((key, value));
            s = after;
        } else {
            let end = after_eq.find([';', ',']).unwrap_or(after_eq.len());
            params.push((key, after_eq[..end].trim().to_owned()));
            s = &after_eq[end..];
        }
    }
}

/// A quoted-string's content (RFC 9110 §5.6.4) and what follows it.
fn read_quoted(s: &str) -> Result<(String, &str), ContextError> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(ContextError::InvalidLink("a quoted parameter is not closed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STREETLIGHTING: &str =
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/master/context.jsonld";
    const SDM_POWER_STATE: &str = "https://smartdatamodels.org/dataModel.Streetlighting/powerState";
    const NGSI_LD: &str = "https://uri.etsi.org/ngsi-ld/";

    /// The server's side in tests: documents by URL, nothing else.
    struct Documents(HashMap<String, Arc<Value>>);

    impl Documents {
        fn new<'a>(docs: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
            Self(docs.into_iter().map(|(u, d)| (u.to_owned(), Arc::new(d))).collect())
        }
    }

    impl ContextSource for Documents {
        fn document(&self, url: &str) -> Result<Arc<Value>, ContextError> {
            self.0.get(url).cloned().ok_or_else(|| ContextError::NotAvailable {
                url: url.to_owned(),
                reason: "unknown".into(),
            })
        }
    }

    fn build(context: Value) -> Result<ActiveContext, ContextError> {
        ActiveContext::build(&context, BuiltinContexts::shared())
    }

    #[test]
    fn embedded_documents_parse_and_process() {
        for embedded in EMBEDDED_CONTEXTS {
            let ctx = build(json!(embedded.url)).unwrap_or_else(|e| panic!("{}: {e}", embedded.url));
            assert_eq!(ctx.expand("Property"), format!("{NGSI_LD}Property"), "{}", embedded.url);
        }
        let core_urls = EMBEDDED_CONTEXTS.iter().filter(|c| c.url.starts_with(NGSI_LD)).count();
        assert_eq!(core_urls, 7, "v1.3 to v1.8 and the unversioned alias");
    }

    #[test]
    fn core_context_is_processed() {
        let core = ActiveContext::core();
        assert!(core.is_core_equivalent());
        assert_eq!(core.expand("powerState"), format!("{DEFAULT_VOCAB}powerState"));
        assert_eq!(core.expand("location"), format!("{NGSI_LD}location"));
        assert_eq!(core.expand("value"), format!("{NGSI_LD}hasValue"));
        assert_eq!(core.expand("observedAt"), format!("{NGSI_LD}observedAt"));
        assert_eq!(core.expand("Point"), "https://purl.org/geojson/vocab#Point");
        assert_eq!(core.expand("ngsi-ld:foo"), format!("{NGSI_LD}foo"));
        assert_eq!(core.expand("type"), "@type");
        assert_eq!(core.expand("urn:x:y"), "urn:x:y");
        // A core term defined relative to @vocab.
        assert_eq!(core.expand("attributeCount"), format!("{DEFAULT_VOCAB}attributeCount"));

        assert_eq!(core.compact(&format!("{DEFAULT_VOCAB}powerState")), "powerState");
        assert_eq!(core.compact(&format!("{NGSI_LD}location")), "location");
        assert_eq!(core.compact(&format!("{NGSI_LD}hasObject")), "object");
        assert_eq!(core.compact(SDM_POWER_STATE), SDM_POWER_STATE);
        // `location` is a term, so it cannot also stand for the vocab IRI.
        let shadowed = format!("{DEFAULT_VOCAB}location");
        assert_eq!(core.compact(&shadowed), shadowed);
    }

    #[test]
    fn streetlighting_context_maps_power_state_and_back() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        assert!(!ctx.is_core_equivalent());
        assert_eq!(ctx.expand("powerState"), SDM_POWER_STATE);
        assert_eq!(ctx.compact(SDM_POWER_STATE), "powerState");
        assert_eq!(ctx.expand("location"), format!("{NGSI_LD}location"));

        let incoming = Translation::incoming(&ctx);
        assert_eq!(incoming.name("powerState"), SDM_POWER_STATE);
        assert_eq!(incoming.name("notInTheModel"), "notInTheModel");
        assert_eq!(Translation::outgoing(&ctx).name(SDM_POWER_STATE), "powerState");
        // Both published URLs name the same document.
        let github_io = build(json!(
            "https://smart-data-models.github.io/dataModel.Streetlighting/context.jsonld"
        ));
        assert_eq!(github_io.unwrap(), ctx);
    }

    #[test]
    fn expanded_term_definitions_and_prefixes_in_any_order() {
        let ctx = build(json!({
            "owner": {"@id": "ex:owner", "@type": "@id"},
            "ex": "http://example.org/",
            "colour": {"@id": "http://example.org/colour", "@container": "@set"},
            "ex:size": {"@type": "http://www.w3.org/2001/XMLSchema#integer"},
            "label": "http://www.w3.org/2000/01/rdf-schema#label",
        }))
        .unwrap();
        assert_eq!(ctx.expand("owner"), "http://example.org/owner");
        assert_eq!(ctx.expand("colour"), "http://example.org/colour");
        assert_eq!(ctx.expand("ex:size"), "http://example.org/size");
        assert_eq!(ctx.expand("ex:anything"), "http://example.org/anything");
        // `label`'s IRI ends with a letter: it is not a prefix.
        assert_eq!(ctx.expand("label:x"), "label:x");
        assert_eq!(ctx.compact("http://example.org/owner"), "owner");
    }

    #[test]
    fn arrays_mix_urls_and_objects_in_order() {
        let source = Documents::new([(
            "https://example.org/ctx.jsonld",
            json!({"@context": {"dimming": "https://example.org/dimming", "powerState": "https://example.org/ps"}}),
        )]);
        let ctx = ActiveContext::build(
            &json!([STREETLIGHTING, "https://example.org/ctx.jsonld", {"dimming": "https://example.org/d2"}]),
            &source,
        )
        .unwrap();
        assert_eq!(
            ctx.expand("powerState"),
            "https://example.org/ps",
            "later documents win"
        );
        assert_eq!(ctx.expand("dimming"), "https://example.org/d2", "later objects win");
        assert_eq!(
            ctx.expand("illuminanceLevel"),
            "https://smartdatamodels.org/dataModel.Streetlighting/illuminanceLevel"
        );
    }

    #[test]
    fn core_terms_are_protected_and_the_core_vocab_wins() {
        let ctx = build(json!({
            "location": "http://example.org/myLocation",
            "ngsi-ld": "http://example.org/evil/",
            "Property": "http://example.org/P",
            "@vocab": "http://example.org/",
            "size": "ngsi-ld:size",
        }))
        .unwrap();
        assert_eq!(ctx.expand("location"), format!("{NGSI_LD}location"));
        assert_eq!(ctx.expand("Property"), format!("{NGSI_LD}Property"));
        assert_eq!(
            ctx.expand("size"),
            format!("{NGSI_LD}size"),
            "the core prefix kept its meaning"
        );
        assert_eq!(ctx.expand("other"), format!("{DEFAULT_VOCAB}other"));
        // An alias of a core IRI does not replace the core's name for it.
        let aliased = build(json!({"created": "ngsi-ld:createdAt"})).unwrap();
        assert_eq!(aliased.expand("created"), format!("{NGSI_LD}createdAt"));
        assert_eq!(aliased.compact(&format!("{NGSI_LD}createdAt")), "createdAt");
    }

    #[test]
    fn contexts_adding_nothing_are_the_core() {
        for context in [
            json!(CORE_CONTEXT_URL),
            json!(CORE_CONTEXT_LATEST_URL),
            json!("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld"),
            json!([]),
            json!(null),
            json!({"location": "http://example.org/l"}),
        ] {
            let ctx = build(context.clone()).unwrap();
            assert!(ctx.is_core_equivalent(), "{context}");
            assert!(Translation::incoming(&ctx).is_identity());
        }
    }

    #[test]
    fn user_protected_terms_and_null_resets() {
        let ctx = build(json!([
            {"@protected": true, "a": "http://example.org/a"},
            {"a": "http://example.org/b", "b": "http://example.org/b"},
        ]))
        .unwrap();
        assert_eq!(ctx.expand("a"), "http://example.org/a");
        let reset = build(json!([{"x": "http://example.org/x"}, null])).unwrap();
        assert_eq!(reset.expand("x"), format!("{DEFAULT_VOCAB}x"));
        let forgotten = build(json!([{"x": "http://example.org/x"}, {"x": null}])).unwrap();
        assert_eq!(forgotten.expand("x"), format!("{DEFAULT_VOCAB}x"));
    }

    #[test]
    fn import_brings_definitions_the_importer_overrides() {
        let source = Documents::new([(
            "https://example.org/base.jsonld",
            json!({"@context": {"a": "http://example.org/a", "b": "http://example.org/b"}}),
        )]);
        let ctx = ActiveContext::build(
            &json!({"@import": "https://example.org/base.jsonld", "b": "http://example.org/b2"}),
            &source,
        )
        .unwrap();
        assert_eq!(ctx.expand("a"), "http://example.org/a");
        assert_eq!(ctx.expand("b"), "http://example.org/b2");
    }

    #[test]
    fn the_shortest_term_is_chosen_to_compact() {
        let ctx =
            build(json!({"vehicleSpeed": "http://example.org/speed", "speed": "http://example.org/speed"})).unwrap();
        assert_eq!(ctx.compact("http://example.org/speed"), "speed");
        assert_eq!(ctx.expand("vehicleSpeed"), "http://example.org/speed");
    }

    #[test]
    fn cycles_are_detected() {
        let source = Documents::new([
            ("https://example.org/a", json!({"@context": ["https://example.org/b"]})),
            ("https://example.org/b", json!({"@context": "https://example.org/a"})),
        ]);
        assert_eq!(
            ActiveContext::build(&json!("https://example.org/a"), &source),
            Err(ContextError::Cycle {
                url: "https://example.org/a".into()
            })
        );
        let err = build(json!({"a": "b:x", "b": "a:y"})).unwrap_err();
        assert!(err.to_string().contains("defined through itself"), "{err}");
    }

    #[test]
    fn bounds_are_enforced() {
        let mut deep = json!({});
        for _ in 0..=MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(matches!(
            build(deep),
            Err(ContextError::TooComplex { max: MAX_DEPTH, .. })
        ));

        let urls: Vec<String> = (0..=MAX_DOCUMENTS)
            .map(|i| format!("https://example.org/{i}"))
            .collect();
        let source = Documents::new(urls.iter().map(|u| (u.as_str(), json!({"@context": {}}))));
        let too_many = ActiveContext::build(&json!(urls), &source);
        assert!(matches!(
            too_many,
            Err(ContextError::TooComplex { max: MAX_DOCUMENTS, .. })
        ));
        assert!(ActiveContext::build(&json!(urls[..MAX_DOCUMENTS]), &source).is_ok());

        let terms: Map<String, Value> = (0..=MAX_TERMS)
            .map(|i| (format!("t{i}"), json!(format!("http://example.org/{i}"))))
            .collect();
        let err = build(Value::Object(terms)).unwrap_err();
        assert!(matches!(err, ContextError::TooComplex { max: MAX_TERMS, .. }), "{err}");

        let chain: Map<String, Value> = (0..40)
            .map(|i| (format!("p{i}"), json!(format!("p{}:x/", i + 1))))
            .collect();
        let err = build(Value::Object(chain)).unwrap_err();
        assert!(matches!(err, ContextError::TooComplex { .. }), "{err}");
    }

    #[test]
    fn unknown_urls_are_not_available() {
        let err = build(json!("https://example.org/nowhere.jsonld")).unwrap_err();
        assert!(matches!(&err, ContextError::NotAvailable { url, .. } if url == "https://example.org/nowhere.jsonld"));
        assert!(err.to_string().contains("https://example.org/nowhere.jsonld"));
    }

    #[test]
    fn invalid_contexts_are_named() {
        let cases = [
            (json!(3), "a URL, an object, an array or null"),
            (json!({"a": 3}), "term 'a'"),
            (json!({"a": {"@id": 3}}), "'@id' of term 'a'"),
            (json!({"a": {"@id": "http://e/a", "@colour": "red"}}), "'@colour'"),
            (json!({"@version": 1.0}), "'@version'"),
            (json!({"@vocab": 3}), "'@vocab'"),
            (json!({"@wat": 1}), "'@wat'"),
            (json!("relative.jsonld"), "not an absolute URL"),
            (json!({"a": "@graph"}), "'@graph'"),
        ];
        for (context, needle) in cases {
            let err = build(context.clone()).unwrap_err();
            assert!(matches!(err, ContextError::Invalid(_)), "{context}: {err:?}");
            assert!(err.to_string().contains(needle), "{context}: {err}");
        }
        let source = Documents::new([("https://example.org/bare", json!({"a": "http://e/a"}))]);
        let err = ActiveContext::build(&json!("https://example.org/bare"), &source).unwrap_err();
        assert!(err.to_string().contains("'@context' member"), "{err}");
    }

    fn streetlight_normalized() -> Value {
        json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:1",
            "type": "Streetlight",
            "scope": "/dijon/lighting",
            "@context": STREETLIGHTING,
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}},
            "powerState": {
                "type": "Property",
                "value": "on",
                "observedAt": "2026-11-22T18:00:00.000Z",
                "illuminanceLevel": {"type": "Property", "value": 0.8}
            },
            "circuit": {"type": "Property", "value": {"powerState": "kept", "lampId": 3}},
            "refStreetlightGroup": {"type": "Relationship", "object": "urn:ngsi-ld:StreetlightGroup:dijon:1"},
            "lanternHeight": [
                {"type": "Property", "value": 8, "datasetId": "urn:ngsi-ld:Dataset:a", "powerState": {"type": "Property", "value": 1}}
            ]
        })
    }

    #[test]
    fn normalized_entities_are_renamed_and_back() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        let original = streetlight_normalized();
        let mut stored = original.clone();
        Translation::incoming(&ctx)
            .entity(&mut stored, Representation::Normalized)
            .unwrap();
        let sdm = |n: &str| format!("https://smartdatamodels.org/dataModel.Streetlighting/{n}");
        assert_eq!(stored["type"], sdm("Streetlight"));
        assert_eq!(stored["id"], original["id"]);
        assert_eq!(stored["location"], original["location"]);
        let power = &stored[SDM_POWER_STATE];
        assert_eq!(power["value"], "on");
        assert_eq!(power["observedAt"], "2026-11-22T18:00:00.000Z");
        assert_eq!(
            power[sdm("illuminanceLevel")]["value"],
            0.8,
            "sub-attributes are renamed"
        );
        assert_eq!(
            stored[sdm("circuit")]["value"]["powerState"],
            "kept",
            "values are never renamed"
        );
        assert_eq!(
            stored[sdm("refStreetlightGroup")]["object"],
            "urn:ngsi-ld:StreetlightGroup:dijon:1"
        );
        assert_eq!(stored[sdm("lanternHeight")][0][SDM_POWER_STATE]["value"], 1);

        Translation::outgoing(&ctx)
            .entity(&mut stored, Representation::Normalized)
            .unwrap();
        assert_eq!(stored, original);
    }

    #[test]
    fn key_values_rename_names_only() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        let mut entity = json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:1",
            "type": ["Streetlight", "Device"],
            "powerState": {"powerState": "on"},
        });
        Translation::incoming(&ctx)
            .entity(&mut entity, Representation::KeyValues)
            .unwrap();
        assert_eq!(
            entity["type"],
            json!([
                "https://smartdatamodels.org/dataModel.Streetlighting/Streetlight",
                "Device"
            ])
        );
        assert_eq!(entity[SDM_POWER_STATE], json!({"powerState": "on"}));
    }

    #[test]
    fn vocab_values_are_names() {
        let ctx =
            build(json!({"category": "http://example.org/category", "street": "http://example.org/street"})).unwrap();
        let mut entity = json!({
            "id": "urn:x:1", "type": "T",
            "category": {"type": "VocabProperty", "vocab": ["street", "other"]}
        });
        Translation::incoming(&ctx)
            .entity(&mut entity, Representation::Normalized)
            .unwrap();
        assert_eq!(
            entity["http://example.org/category"]["vocab"],
            json!(["http://example.org/street", "other"])
        );
    }

    #[test]
    fn two_members_naming_one_attribute_clash() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        let mut entity = json!({
            "id": "urn:x:1", "type": "Streetlight",
            "powerState": {"type": "Property", "value": "on"},
            SDM_POWER_STATE: {"type": "Property", "value": "off"},
        });
        let err = Translation::incoming(&ctx)
            .entity(&mut entity, Representation::Normalized)
            .unwrap_err();
        assert!(
            matches!(&err, ContextError::NameClash { iri, .. } if iri == SDM_POWER_STATE),
            "{err}"
        );
        let mut not_an_entity = json!([1]);
        assert!(
            Translation::incoming(&ctx)
                .entity(&mut not_an_entity, Representation::Normalized)
                .is_err()
        );
    }

    #[test]
    fn deep_sub_attributes_are_bounded() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        let mut attribute = json!({"type": "Property", "value": 1});
        for _ in 0..=MAX_ATTRIBUTE_NESTING {
            attribute = json!({"type": "Property", "value": 1, "sub": attribute});
        }
        let mut entity = json!({"id": "urn:x:1", "type": "T", "a": attribute});
        let err = Translation::incoming(&ctx)
            .entity(&mut entity, Representation::Normalized)
            .unwrap_err();
        assert!(matches!(err, ContextError::TooComplex { .. }), "{err}");
    }

    #[test]
    fn the_core_translation_changes_nothing() {
        let core = ActiveContext::core();
        let translation = Translation::incoming(core);
        assert!(translation.is_identity());
        let mut entity = streetlight_normalized();
        translation.entity(&mut entity, Representation::Normalized).unwrap();
        assert_eq!(entity, streetlight_normalized());
        assert!(matches!(translation.name("powerState"), Cow::Borrowed("powerState")));
    }

    #[test]
    fn lists_of_names_are_renamed() {
        let ctx = build(json!(STREETLIGHTING)).unwrap();
        let mut pick: Vec<String> = ["id", "type", "powerState", "location", "custom"]
            .map(String::from)
            .into();
        Translation::incoming(&ctx).names(&mut pick);
        assert_eq!(pick, ["id", "type", SDM_POWER_STATE, "location", "custom"]);
        Translation::outgoing(&ctx).names(&mut pick);
        assert_eq!(pick, ["id", "type", "powerState", "location", "custom"]);
    }

    #[test]
    fn link_headers_are_parsed() {
        let url = "https://example.org/ctx.jsonld";
        assert_eq!(parse_link_header(&link_header_value(url)), Ok(Some(url.to_owned())));
        assert_eq!(
            parse_link_header(&format!("<{url}>; rel=http://www.w3.org/ns/json-ld#context")),
            Ok(Some(url.to_owned())),
            "an unquoted rel"
        );
        assert_eq!(
            parse_link_header(&format!(
                "<https://example.org/a,b>; rel=\"next\", <{url}>; type=\"application/ld+json\"; rel=\"alternate {CONTEXT_LINK_REL}\""
            )),
            Ok(Some(url.to_owned())),
            "other links and a rel list"
        );
        assert_eq!(parse_link_header("<https://example.org/n>; rel=\"next\""), Ok(None));
        assert_eq!(parse_link_header(""), Ok(None));

        let twice = format!("{}, {}", link_header_value(url), link_header_value(url));
        for bad in [
            twice.as_str(),
            "https://example.org/ctx.jsonld",
            "<https://example.org/ctx.jsonld; rel=\"x\"",
            "<relative.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"",
            "<https://example.org/c>; rel=\"http://www.w3.org/ns/json-ld#context",
            "<https://example.org/c> rel=x",
        ] {
            assert!(
                matches!(parse_link_header(bad), Err(ContextError::InvalidLink(_))),
                "{bad}"
            );
        }
        let long = format!("<https://example.org/{}>", "a".repeat(MAX_LINK_HEADER_LEN));
        assert!(parse_link_header(&long).is_err());
    }
}

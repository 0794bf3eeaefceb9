//! Vigie's configuration: a TOML file plus `VIGIE_<SECTION>_<KEY>` environment
//! overrides. Every setting is listed in [`SETTINGS`] with its documentation,
//! which `vigie config` prints with the defaults; a test keeps the list and the
//! structs in step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub mqtt: MqttConfig,
    pub ingest: IngestConfig,
    pub history: HistoryConfig,
    pub api: ApiConfig,
    pub ngsi_ld: NgsiLdConfig,
    pub console: ConsoleConfig,
    pub commands: CommandsConfig,
    pub alarms: AlarmsConfig,
    pub mail: MailConfig,
    pub tls: TlsConfig,
    pub security: SecurityConfig,
    pub audit: AuditConfig,
    pub sso: SsoConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    pub durability: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub embedded: bool,
    pub embedded_listen: SocketAddr,
    pub url: String,
    pub client_id: String,
    pub share_group: String,
    pub receive_maximum: u16,
    pub username: String,
    pub password: String,
    pub require_device_auth: bool,
    pub embedded_tls_listen: String,
    pub gateways: BTreeMap<String, GatewayConfig>,
}

/// A trusted MQTT client publishing for many devices (ChirpStack's MQTT
/// integration, a simulator): its password hash and the topic filters it
/// may publish and subscribe on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub password_hash: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub queue_capacity: usize,
    pub batch_max: usize,
    pub devices_file: String,
    pub dead_letter_payload_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    pub retention_days: u32,
    pub retention_per_attribute: BTreeMap<String, u32>,
    pub prune_interval_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// Most NGSI-LD tenants besides the default one.
    pub max_tenants: usize,
}

/// Accounts, sessions, logins and API keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    pub enabled: bool,
    pub session_idle_minutes: u32,
    pub session_hours: u32,
    pub login_max_failures: u32,
    pub lockout_minutes: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub api_key_requests_per_minute: u32,
    pub personal_data_business_lines: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_minutes: 60,
            session_hours: 12,
            login_max_failures: 10,
            lockout_minutes: 15,
            // OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            api_key_requests_per_minute: 600,
            personal_data_business_lines: vec!["cctv".into()],
        }
    }
}

/// The audit trail (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    pub anchor_file: String,
}

/// OpenID Connect single sign-on (`[sso]`): who may log in, and with which
/// role and scope, comes from the provider's claims.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    pub enabled: bool,
    pub issuer: String,
    pub client_id: String,
    /// Never logged nor printed (`vigie config` shows whether it is set).
    #[serde(deserialize_with = "scalar_as_string")]
    pub client_secret: String,
    pub token_endpoint_auth: String,
    pub redirect_url: String,
    pub scopes: String,
    pub username_claim: String,
    pub role_claim: String,
    pub role_map: BTreeMap<String, String>,
    pub communes_claim: String,
    pub business_lines_claim: String,
    pub ca_file: String,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            token_endpoint_auth: "client_secret_basic".into(),
            redirect_url: String::new(),
            scopes: "openid profile email".into(),
            username_claim: "preferred_username".into(),
            role_claim: "vigie_role".into(),
            role_map: BTreeMap::new(),
            communes_claim: "vigie_communes".into(),
            business_lines_claim: "vigie_business_lines".into(),
            ca_file: String::new(),
        }
    }
}

impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("enabled", &self.enabled)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &if self.client_secret.is_empty() { "" } else { "(set)" },
            )
            .field("token_endpoint_auth", &self.token_endpoint_auth)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("role_claim", &self.role_claim)
            .field("role_map", &self.role_map)
            .field("communes_claim", &self.communes_claim)
            .field("business_lines_claim", &self.business_lines_claim)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A secret from the environment may look like a TOML number or boolean
/// (`VIGIE_SSO_CLIENT_SECRET=123456`): take it as the text it is.
fn scalar_as_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Integer(n) => n.to_string(),
        Scalar::Float(x) => x.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

/// Settings whose values `vigie config` never prints.
const SECRET_SETTINGS: &[&str] = &["sso.client_secret", "mqtt.password"];

/// Certificate files shared by HTTPS and MQTTS. Empty paths: plain HTTP and MQTT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: String,
    pub reload_interval_secs: u64,
}

impl TlsConfig {
    /// Whether TLS is configured (both files named).
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            reload_interval_secs: 60,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            header_timeout_secs: 10,
            max_connections: 4_096,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://vigie-data/vigie.db".into(),
            durability: "full".into(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            embedded: true,
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            url: String::new(),
            client_id: "vigie".into(),
            share_group: "vigie".into(),
            receive_maximum: 4096,
            username: String::new(),
            password: String::new(),
            require_device_auth: true,
            embedded_tls_listen: String::new(),
            gateways: BTreeMap::new(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            batch_max: 8_192,
            devices_file: String::new(),
            dead_letter_payload_bytes: 4_096,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            retention_days: 400,
            // Vehicle positions are personal data (CNIL: two months).
            retention_per_attribute: [("location".to_owned(), 60)].into(),
            prune_interval_secs: 3_600,
        }
    }
}

/// NGSI-LD notifications and JSON-LD contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NgsiLdConfig {
    pub notification_timeout_secs: u64,
    pub notification_retry_max_secs: u64,
    pub notification_batch_max: usize,
    pub outbound_ca_file: String,
    pub fetch_remote_contexts: bool,
    pub context_timeout_ms: u64,
    pub context_files: Vec<String>,
}

impl Default for NgsiLdConfig {
    fn default() -> Self {
        Self {
            notification_timeout_secs: 10,
            notification_retry_max_secs: 60,
            notification_batch_max: 100,
            outbound_ca_file: String::new(),
            fetch_remote_contexts: true,
            context_timeout_ms: 2_000,
            context_files: Vec::new(),
        }
    }
}

/// Alarms: escalation of the ones nobody takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    pub escalate_after_secs: u64,
    pub escalation_webhooks: Vec<String>,
    pub escalation_emails: Vec<String>,
    pub procedures_file: String,
    pub rules_file: String,
}

/// Outgoing e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub smtp_url: String,
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: String::new(),
            from: "vigie@localhost".into(),
        }
    }
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        Self {
            escalate_after_secs: 900,
            escalation_webhooks: Vec::new(),
            escalation_emails: Vec::new(),
            procedures_file: String::new(),
            rules_file: String::new(),
        }
    }
}

/// Commands to equipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    pub timeout_secs: u64,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self { timeout_secs: 30 }
    }
}

/// The operator console: its base map and what counts as fresh data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub basemap_style_url: String,
    pub basemap_tiles_url: String,
    pub basemap_attribution: String,
    pub streets_file: String,
    pub communes_file: String,
    pub stale_after_minutes: u32,
    pub stale_after_by_type: BTreeMap<String, u32>,
    pub cluster_below_zoom: u8,
    pub live_interval_ms: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            basemap_style_url: String::new(),
            basemap_tiles_url: String::new(),
            basemap_attribution: String::new(),
            streets_file: String::new(),
            communes_file: String::new(),
            stale_after_minutes: 60,
            // Waste containers report every 6 hours, parking sensors daily
            // when nothing moves: silence is normal for longer.
            stale_after_by_type: BTreeMap::from([("WasteContainer".into(), 780), ("ParkingSpot".into(), 2_880)]),
            cluster_below_zoom: 16,
            live_interval_ms: 100,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            default_page_size: 20,
            max_page_size: 1_000,
            max_tenants: 100,
        }
    }
}

/// One documented setting.
pub struct Setting {
    pub key: &'static str,
    pub doc: &'static str,
}

/// Every setting, in the order `vigie config` prints them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "http.listen",
        doc: "Address and port of the HTTP API and console.",
    },
    Setting {
        key: "http.max_body_bytes",
        doc: "Largest request body accepted; larger ones get 413.",
    },
    Setting {
        key: "http.request_timeout_secs",
        doc: "A request taking longer is answered 408 and dropped.",
    },
    Setting {
        key: "http.header_timeout_secs",
        doc: "Seconds a client has for the TLS handshake, then for each request's headers (and an idle keep-alive connection); slower clients are disconnected.",
    },
    Setting {
        key: "http.max_connections",
        doc: "Most HTTP connections open at once; further clients wait in the listen backlog.",
    },
    Setting {
        key: "store.url",
        doc: "Database URL; sqlite://PATH is the embedded default (created if missing).",
    },
    Setting {
        key: "store.durability",
        doc: "'full': fsync at each batch commit (survives power loss); 'normal': survives a crash of Vigie, not of the machine.",
    },
    Setting {
        key: "mqtt.embedded",
        doc: "Run the embedded MQTT broker (ignored when mqtt.url is set).",
    },
    Setting {
        key: "mqtt.embedded_listen",
        doc: "Address and port of the embedded broker.",
    },
    Setting {
        key: "mqtt.url",
        doc: "External MQTT v5 broker, e.g. mqtt://broker:1883; empty uses the embedded broker.",
    },
    Setting {
        key: "mqtt.client_id",
        doc: "Vigie's MQTT client id; its session persists across restarts.",
    },
    Setting {
        key: "mqtt.share_group",
        doc: "Shared-subscription group: several Vigie nodes in one group split the device traffic.",
    },
    Setting {
        key: "mqtt.receive_maximum",
        doc: "Unacknowledged QoS 1 messages the broker may send Vigie at once (backpressure bound).",
    },
    Setting {
        key: "mqtt.username",
        doc: "Vigie's MQTT username on an external broker (empty: none). The embedded broker ignores it: Vigie logs in there as mqtt.client_id with a random password made at each start.",
    },
    Setting {
        key: "mqtt.password",
        doc: "Vigie's MQTT password on an external broker (prefer the environment variable to the file). Never printed.",
    },
    Setting {
        key: "mqtt.require_device_auth",
        doc: "Embedded broker: every client must authenticate (devices with their device_id and password or a client certificate, gateways, Vigie itself) and may only use its own topics. false: anyone on the network may publish anything.",
    },
    Setting {
        key: "mqtt.embedded_tls_listen",
        doc: "Address and port of the embedded broker's MQTTS listener, e.g. 0.0.0.0:8883, using tls.cert_file and tls.key_file; empty for none.",
    },
    Setting {
        key: "mqtt.gateways",
        doc: "Trusted clients publishing for many devices, by MQTT username: { chirpstack = { password_hash = \"sha256$...\", publish = [\"application/+/device/+/event/+\"], subscribe = [\"application/+/device/+/command/down\"] } }.",
    },
    Setting {
        key: "ingest.queue_capacity",
        doc: "Messages waiting to be written; when full, Vigie stops reading (backpressure).",
    },
    Setting {
        key: "ingest.batch_max",
        doc: "Most messages written in one transaction.",
    },
    Setting {
        key: "ingest.devices_file",
        doc: "IoT Agent provisioning file ({\"devices\": [...]}) loaded at start; empty for none.",
    },
    Setting {
        key: "ingest.dead_letter_payload_bytes",
        doc: "Bytes of a refused payload kept in the dead-letter table.",
    },
    Setting {
        key: "history.retention_days",
        doc: "Days of attribute history kept by default.",
    },
    Setting {
        key: "history.retention_per_attribute",
        doc: "Days kept for given attributes, e.g. { location = 60 }.",
    },
    Setting {
        key: "history.prune_interval_secs",
        doc: "How often expired history is deleted.",
    },
    Setting {
        key: "api.default_page_size",
        doc: "Entities per page when a query gives no limit.",
    },
    Setting {
        key: "api.max_page_size",
        doc: "Largest limit a query may ask; more gets TooManyResults.",
    },
    Setting {
        key: "api.max_tenants",
        doc: "Most NGSI-LD tenants (NGSILD-Tenant) besides the default; each is created on its first write.",
    },
    Setting {
        key: "ngsi_ld.notification_timeout_secs",
        doc: "How long a notification endpoint may take to answer before the delivery is retried.",
    },
    Setting {
        key: "ngsi_ld.notification_retry_max_secs",
        doc: "Longest wait between two attempts to deliver to a failing endpoint (the wait doubles from 0.5 s).",
    },
    Setting {
        key: "ngsi_ld.notification_batch_max",
        doc: "Most entities in one notification: pending changes of a subscription are sent together.",
    },
    Setting {
        key: "ngsi_ld.outbound_ca_file",
        doc: "Extra CA certificates (PEM) for HTTPS notification endpoints and remote contexts.",
    },
    Setting {
        key: "ngsi_ld.fetch_remote_contexts",
        doc: "Download @context documents not built in nor preloaded; false answers LdContextNotAvailable at once.",
    },
    Setting {
        key: "ngsi_ld.context_timeout_ms",
        doc: "How long fetching a remote @context may take before LdContextNotAvailable.",
    },
    Setting {
        key: "ngsi_ld.context_files",
        doc: "JSON-LD context files to preload, each served at the URL it is registered under, e.g. [\"https://example.org/ctx.jsonld=ctx.jsonld\"].",
    },
    Setting {
        key: "console.basemap_style_url",
        doc: "URL of a MapLibre style for the console's base map (your own tile server); empty uses the tiles or files below.",
    },
    Setting {
        key: "console.basemap_tiles_url",
        doc: "Raster tiles for the base map when no style is set: an XYZ template (https://tiles.example/{z}/{x}/{y}.png) or a pmtiles:// URL.",
    },
    Setting {
        key: "console.basemap_attribution",
        doc: "Attribution shown on the map for the base map's data (e.g. \"© OpenStreetMap contributors\").",
    },
    Setting {
        key: "console.streets_file",
        doc: "GeoJSON LineStrings drawn as the base map when neither style nor tiles are set (the demo writes its street network there).",
    },
    Setting {
        key: "console.communes_file",
        doc: "GeoJSON Polygons of the communes (properties id and name), drawn as boundaries on the map.",
    },
    Setting {
        key: "console.stale_after_minutes",
        doc: "An asset whose newest observation is older than this shows as 'no recent data'.",
    },
    Setting {
        key: "console.stale_after_by_type",
        doc: "Per entity type, minutes of silence before 'no recent data', for equipment that reports rarely.",
    },
    Setting {
        key: "console.cluster_below_zoom",
        doc: "Below this map zoom, nearby assets are grouped server-side into clusters; at or above it every asset is drawn.",
    },
    Setting {
        key: "console.live_interval_ms",
        doc: "How often each open console receives the changes gathered since the last delivery (server-sent events).",
    },
    Setting {
        key: "commands.timeout_secs",
        doc: "A command the device has not answered (IoT Agent JSON cmdexe) within this many seconds is marked expired.",
    },
    Setting {
        key: "alarms.escalate_after_secs",
        doc: "An active alarm nobody acknowledged is escalated after this many seconds, and again after each further period (0: never).",
    },
    Setting {
        key: "alarms.escalation_webhooks",
        doc: "Where escalations are POSTed as JSON ({level, alarm}): the first URL for level 1, the second for level 2, the last one beyond.",
    },
    Setting {
        key: "alarms.escalation_emails",
        doc: "Addresses escalations are mailed to (needs mail.smtp_url): the first for level 1, the second for level 2, the last one beyond.",
    },
    Setting {
        key: "alarms.procedures_file",
        doc: "TOML file of intervention procedures by alarm type ([[procedure]] alarm_type, title, steps, contacts); they replace the built-in ones of the same type.",
    },
    Setting {
        key: "alarms.rules_file",
        doc: "TOML file of the city's rules ([[rule]]: CEL conditions, triggers, actions; docs/automation.md); every error is named at start.",
    },
    Setting {
        key: "mail.smtp_url",
        doc: "The SMTP relay e-mail goes out through, smtp://host[:port] (plain SMTP: an internal relay); empty sends no e-mail.",
    },
    Setting {
        key: "mail.from",
        doc: "The sender address of Vigie's e-mail.",
    },
    Setting {
        key: "tls.cert_file",
        doc: "PEM certificate chain (server certificate first) for HTTPS and MQTTS; empty serves plain HTTP and MQTT.",
    },
    Setting {
        key: "tls.key_file",
        doc: "PEM private key (PKCS#8, PKCS#1 or SEC1) matching tls.cert_file; keep it readable by Vigie only.",
    },
    Setting {
        key: "tls.client_ca_file",
        doc: "PEM CA whose certificates devices may present on MQTTS instead of a password; empty for none.",
    },
    Setting {
        key: "tls.reload_interval_secs",
        doc: "How often (seconds) the certificate files are checked for change and reloaded without restart; 0 disables the check (SIGHUP still reloads).",
    },
    Setting {
        key: "security.enabled",
        doc: "Require authentication. false makes every caller an administrator: development and benchmarks only.",
    },
    Setting {
        key: "security.session_idle_minutes",
        doc: "A console session unused this long ends.",
    },
    Setting {
        key: "security.session_hours",
        doc: "A console session ends this long after login, whatever the activity.",
    },
    Setting {
        key: "security.login_max_failures",
        doc: "Failed logins in a row that lock an account name (and ten times as many a client address).",
    },
    Setting {
        key: "security.lockout_minutes",
        doc: "How long a lock lasts; also the window in which failures are counted.",
    },
    Setting {
        key: "security.argon2_memory_kib",
        doc: "argon2id memory cost of password hashes, in KiB.",
    },
    Setting {
        key: "security.argon2_iterations",
        doc: "argon2id time cost of password hashes.",
    },
    Setting {
        key: "security.api_key_requests_per_minute",
        doc: "Default rate limit of an API key (service tokens are not limited).",
    },
    Setting {
        key: "security.personal_data_business_lines",
        doc: "Business lines whose entities are personal data: only roles allowed personal data see them, and each read is audited.",
    },
    Setting {
        key: "audit.anchor_file",
        doc: "Where the audit trail's head (last seq and hash) is kept, outside the database; empty: the SQLite file's path + .audit-head.",
    },
    Setting {
        key: "sso.enabled",
        doc: "Offer OpenID Connect single sign-on on the login page (needs security.enabled).",
    },
    Setting {
        key: "sso.issuer",
        doc: "The OpenID provider's issuer URL (https; http only on a loopback address, for tests); its /.well-known/openid-configuration is read.",
    },
    Setting {
        key: "sso.client_id",
        doc: "Vigie's client id at the provider.",
    },
    Setting {
        key: "sso.client_secret",
        doc: "Vigie's client secret at the provider; better given in the environment. Never logged nor printed.",
    },
    Setting {
        key: "sso.token_endpoint_auth",
        doc: "How Vigie authenticates at the token endpoint, as registered at the provider: client_secret_basic or client_secret_post.",
    },
    Setting {
        key: "sso.redirect_url",
        doc: "The callback registered at the provider: Vigie's public address followed by /auth/sso/callback, e.g. https://vigie.example/auth/sso/callback.",
    },
    Setting {
        key: "sso.scopes",
        doc: "Scopes asked of the provider, space-separated; must include openid, and whatever scope releases the claims below.",
    },
    Setting {
        key: "sso.username_claim",
        doc: "Claim holding the account name (lowercased; 1 to 64 of a-z 0-9 . - _ @).",
    },
    Setting {
        key: "sso.role_claim",
        doc: "Claim holding the Vigie role: a role name, or a value of sso.role_map (a string, or an array of which exactly one role results). No valid role: login refused.",
    },
    Setting {
        key: "sso.role_map",
        doc: "Claim values to Vigie roles, e.g. { \"police-municipale\" = \"supervisor\" }; role names are also accepted as they are.",
    },
    Setting {
        key: "sso.communes_claim",
        doc: "Claim holding the communes granted: \"*\", \"a,b\" or a JSON array. Missing: login refused.",
    },
    Setting {
        key: "sso.business_lines_claim",
        doc: "Claim holding the business lines granted: \"*\", \"x,y\" or a JSON array. Missing: login refused.",
    },
    Setting {
        key: "sso.ca_file",
        doc: "PEM CA certificates trusted for the provider besides the system's (a private PKI); empty for the system's only.",
    },
];

impl Config {
    /// Reads the file (if given), then applies `VIGIE_*` environment overrides.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "(defaults)".to_owned()),
        };
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix("VIGIE_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some(setting) = SETTINGS.iter().find(|s| s.key.replacen('.', "_", 1) == lower) else {
                continue;
            };
            let (section, key) = setting.key.split_once('.').unwrap_or(("", setting.key));
            // A value that parses as TOML keeps its type (numbers, booleans, tables); anything else is a string.
            let value = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(raw));
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry.as_table_mut() {
                Some(t) => {
                    t.insert(key.to_owned(), value);
                }
                None => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("[{section}] in the file is not a table"),
                    });
                }
            }
        }
        Config::deserialize(table).map_err(|e| ConfigError::Parse {
            path: origin,
            message: e.to_string(),
        })
    }

    /// Every setting with its documentation and value, as TOML with comments.
    pub fn describe(&self) -> String {
        let values = toml::Table::try_from(self).unwrap_or_default();
        let mut out = String::new();
        let mut section = "";
        for s in SETTINGS {
            let (sec, key) = s.key.split_once('.').unwrap_or(("", s.key));
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let value = values
                .get(sec)
                .and_then(|t| t.get(key))
                .map_or_else(|| "\"\"".to_owned(), |v| v.to_string());
            let value = if SECRET_SETTINGS.contains(&s.key) && value != "\"\"" {
                "\"(set, not shown)\"".to_owned()
            } else {
                value
            };
            let env = format!("VIGIE_{}", s.key.replacen('.', "_", 1).to_ascii_uppercase());
            out.push_str(&format!("# {} (env {env})\n{key} = {value}\n", s.doc));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented_and_every_documented_setting_exists() {
        let values = toml::Table::try_from(Config::default()).unwrap();
        let mut actual: Vec<String> = values
            .iter()
            .flat_map(|(sec, t)| t.as_table().unwrap().keys().map(move |k| format!("{sec}.{k}")))
            .collect();
        let mut documented: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        actual.sort();
        documented.sort();
        assert_eq!(actual, documented);
    }

    #[test]
    fn file_and_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigie.toml");
        std::fs::write(
            &path,
            "[http]\nlisten = \"0.0.0.0:9000\"\n[history]\nretention_per_attribute = { speed = 30 }\n",
        )
        .unwrap();
        let env = [
            ("VIGIE_STORE_URL".to_owned(), "sqlite:///tmp/x.db".to_owned()),
            ("VIGIE_INGEST_BATCH_MAX".to_owned(), "100".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let c = Config::load(Some(&path), env).unwrap();
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(c.store.url, "sqlite:///tmp/x.db");
        assert_eq!(c.ingest.batch_max, 100);
        assert_eq!(c.history.retention_per_attribute["speed"], 30);
        assert!(c.describe().contains("VIGIE_INGEST_BATCH_MAX"));
    }

    #[test]
    fn the_sso_client_secret_comes_from_the_environment_and_is_never_shown() {
        let env = [
            ("VIGIE_SSO_CLIENT_SECRET".to_owned(), "0123456789".to_owned()),
            (
                "VIGIE_SSO_ROLE_MAP".to_owned(),
                "{ \"police-municipale\" = \"supervisor\" }".to_owned(),
            ),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.sso.client_secret, "0123456789", "digits stay text");
        assert_eq!(c.sso.role_map["police-municipale"], "supervisor");
        assert!(!c.describe().contains("0123456789"));
        assert!(c.describe().contains("client_secret = \"(set, not shown)\""));
        assert!(!format!("{c:?}").contains("0123456789"));
        assert!(Config::default().describe().contains("client_secret = \"\""));
    }

    #[test]
    fn the_reference_documents_every_default() {
        let doc = include_str!("../../../docs/configuration.md");
        let defaults = Config::default().describe();
        assert!(
            doc.contains(defaults.trim()),
            "docs/configuration.md is out of date: paste `vigie config` into it:\n{defaults}"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigie.toml");
        std::fs::write(&path, "[http]\nlisten_addr = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = Config::load(None, [("VIGIE_INGEST_BATCH_MAX".into(), "lots".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_max"), "{err}");
    }
}

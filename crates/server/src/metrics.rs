//! Operational counters, rendered in the Prometheus text format at `/metrics`.
//! Plain atomics owned by the server (no process-global registry), so
//! servers started side by side in tests count separately.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds, in seconds, of the store-commit latency histogram.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

#[derive(Default)]
pub struct Metrics {
    pub mqtt_messages: AtomicU64,
    pub points_written: AtomicU64,
    pub http_writes: AtomicU64,
    pub unknown_devices: AtomicU64,
    pub malformed_messages: AtomicU64,
    pub dead_letters: AtomicU64,
    pub batches: AtomicU64,
    pub store_errors: AtomicU64,
    pub queue_depth: AtomicU64,
    pub mqtt_connected: AtomicU64,
    /// MQTT operations the embedded broker refused, by [`Refused`] reason.
    pub mqtt_refused: [AtomicU64; Refused::ALL.len()],
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    commit_count: AtomicU64,
    commit_micros_sum: AtomicU64,
}

/// Why the embedded broker refused an MQTT operation (the `reason` label of
/// `vigie_mqtt_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A CONNECT with neither credentials nor a client certificate.
    Unauthenticated,
    /// A CONNECT with an unknown username or a wrong password.
    BadCredentials,
    /// A CONNECT whose client id is not the one its identity must use.
    ClientId,
    /// A PUBLISH on a topic the client does not own.
    ForeignTopic,
    /// A SUBSCRIBE to a filter the client may not read.
    ForeignSubscription,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::Unauthenticated,
        Refused::BadCredentials,
        Refused::ClientId,
        Refused::ForeignTopic,
        Refused::ForeignSubscription,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refused::Unauthenticated => "unauthenticated",
            Refused::BadCredentials => "bad_credentials",
            Refused::ClientId => "client_id",
            Refused::ForeignTopic => "foreign_topic",
            Refused::ForeignSubscription => "foreign_subscription",
        }
    }
}

pub fn inc(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Metrics {
    pub fn refused(&self, reason: Refused) {
        self.mqtt_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused_count(&self, reason: Refused) -> u64 {
        self.mqtt_refused[reason as usize].load(Ordering::Relaxed)
    }

    pub fn observe_commit(&self, seconds: f64) {
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_micros_sum
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Prometheus exposition text; `entities` is sampled by the caller.
    pub fn render(&self, entities: usize) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric(
            "vigie_mqtt_messages_total",
            "counter",
            "MQTT messages received from devices.",
            get(&self.mqtt_messages),
        );
        metric(
            "vigie_points_written_total",
            "counter",
            "Attribute values durably written to history.",
            get(&self.points_written),
        );
        metric(
            "vigie_http_writes_total",
            "counter",
            "NGSI-LD write operations applied.",
            get(&self.http_writes),
        );
        metric(
            "vigie_unknown_device_messages_total",
            "counter",
            "Messages refused because no device is provisioned for them.",
            get(&self.unknown_devices),
        );
        metric(
            "vigie_malformed_messages_total",
            "counter",
            "Messages refused because their topic or payload is malformed.",
            get(&self.malformed_messages),
        );
        metric(
            "vigie_dead_letters_total",
            "counter",
            "Refused messages kept in the dead-letter table.",
            get(&self.dead_letters),
        );
        metric(
            "vigie_store_batches_total",
            "counter",
            "Batches committed to the store.",
            get(&self.batches),
        );
        metric(
            "vigie_store_errors_total",
            "counter",
            "Failed store commits (retried).",
            get(&self.store_errors),
        );
        metric(
            "vigie_ingest_queue_depth",
            "gauge",
            "Messages waiting to be written.",
            get(&self.queue_depth),
        );
        metric(
            "vigie_mqtt_connected",
            "gauge",
            "1 when Vigie's MQTT consumer is connected.",
            get(&self.mqtt_connected),
        );
        metric("vigie_entities", "gauge", "Entities in the live twin.", entities as u64);
        let _ = writeln!(
            out,
            "# HELP vigie_mqtt_refused_total MQTT connects, publishes and subscribes the embedded broker refused.\n# TYPE vigie_mqtt_refused_total counter"
        );
        for reason in Refused::ALL {
            let _ = writeln!(
                out,
                "vigie_mqtt_refused_total{{reason=\"{}\"}} {}",
                reason.label(),
                self.refused_count(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vigie_store_commit_seconds Time to commit one batch.\n# TYPE vigie_store_commit_seconds histogram"
        );
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(
                out,
                "vigie_store_commit_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.commit_count);
        let _ = writeln!(out, "vigie_store_commit_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "vigie_store_commit_seconds_sum {}",
            get(&self.commit_micros_sum) as f64 / 1e6
        );
        let _ = writeln!(out, "vigie_store_commit_seconds_count {count}");
        out
    }
}

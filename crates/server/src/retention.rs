//! Enforces history retention: expired points are deleted periodically.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vigie_core::Timestamp;
use vigie_store::{Retention, Store};

use crate::audit::Audit;
use crate::config::HistoryConfig;

pub async fn run(store: Arc<dyn Store>, audit: Arc<Audit>, config: HistoryConfig, stop: CancellationToken) {
    let retention = Retention {
        default_days: config.retention_days,
        per_attribute_days: config.retention_per_attribute.into_iter().collect(),
    };
    let interval = Duration::from_secs(config.prune_interval_secs.max(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store.prune_history(Timestamp::now(), &retention).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(points = n, "expired history pruned");
                // Deleting history deletes personal data (vehicle positions): audited.
                let after = serde_json::json!({"points": n, "retention": &retention});
                if let Err(e) = audit
                    .record_system(
                        "history.prune",
                        Some(format!("{n} expired history points deleted")),
                        Some(after),
                    )
                    .await
                {
                    tracing::error!(error = %e, "the history pruning could not be audited");
                }
            }
            Err(e) => tracing::error!(error = %e, "history pruning failed; will retry"),
        }
    }
}

//! Live updates: every open console gets the changes in its sight as
//! server-sent events, gathered and sent every `console.live_interval_ms`
//! (one event per interval, however many changes), so 50 consoles and
//! thousands of changes a second cost little. A console that falls behind
//! the twin's feed is told to reload its view (`resync`), never given a
//! partial picture.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::Sight;
use crate::api::{ApiError, AppState};
use crate::security::Caller;

/// `GET /console/events`: `changes` events, each a JSON array of
/// `{"id", "t", "l", "s", "n", "c": [lon, lat]}` (the asset now) or
/// `{"id", "gone": true}` (deleted, moved out of sight or of the map);
/// `resync` when this console fell behind.
pub async fn events(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let feed = s.twin.subscribe();
    let interval = Duration::from_millis(s.config.console.live_interval_ms.max(20));
    let stop = s.stop.clone();
    let state = (s, caller, feed, tokio::time::interval(interval), stop);
    let stream = futures::stream::unfold(state, |(s, caller, mut feed, mut tick, stop)| async move {
        // Latest state per entity since the last event: a lamp that changed
        // ten times in the interval is sent once.
        let mut pending: HashMap<String, Value> = HashMap::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                _ = tick.tick() => {
                    if !pending.is_empty() {
                        let batch: Vec<Value> = pending.into_values().collect();
                        let event = Event::default().event("changes").data(Value::Array(batch).to_string());
                        return Some((Ok(event), (s, caller, feed, tick, stop)));
                    }
                }
                received = feed.recv() => match received {
                    Ok(committed) => {
                        let sight = Sight::new(&s, &caller);
                        for (id, after) in committed.iter() {
                            let change = after
                                .as_deref()
                                .filter(|e| sight.sees(e))
                                .and_then(|e| e.point().map(|(x, y)| (e, [x, y])))
                                .map_or_else(
                                    || json!({"id": id.as_str(), "gone": true}),
                                    |(e, at)| sight.asset(e, at).live(),
                                );
                            pending.insert(id.to_string(), change);
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a console fell behind the live feed: resync");
                        let event = Event::default().event("resync").data("{}");
                        return Some((Ok(event), (s, caller, feed, tick, stop)));
                    }
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /console/alarms/events`: an `alarms` event (data: how many alarms
/// in the caller's sight changed) at most every `console.live_interval_ms`
/// when alarms change, so the board re-reads its rows at once instead of
/// waiting for its slow poll. A console that fell behind is told too.
pub async fn alarm_events(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let feed = s.alarms.subscribe();
    let interval = Duration::from_millis(s.config.console.live_interval_ms.max(20));
    let stop = s.stop.clone();
    let state = (s, caller, feed, tokio::time::interval(interval), stop);
    let stream = futures::stream::unfold(state, |(s, caller, mut feed, mut tick, stop)| async move {
        let mut changed = 0usize;
        loop {
            tokio::select! {
                () = stop.cancelled() => return None,
                _ = tick.tick() => {
                    if changed > 0 {
                        let event = Event::default().event("alarms").data(changed.to_string());
                        return Some((Ok(event), (s, caller, feed, tick, stop)));
                    }
                }
                received = feed.recv() => match received {
                    Ok(alarm) => {
                        if s.security.sees(&caller.principal, alarm.scope.as_ref()) {
                            changed += 1;
                        }
                    }
                    // Missed some: whatever they were, the board re-reads.
                    Err(RecvError::Lagged(missed)) => changed += usize::try_from(missed).unwrap_or(usize::MAX),
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

//! The ceiling Vigie's ingestion is measured against: history rows inserted
//! straight into a fresh SQLite file with the same schema, durability and
//! statement shape as the engine, and none of Vigie's pipeline (no MQTT, no
//! decoding, no twin, no entity bodies).

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{QueryBuilder, Sqlite};
use vigie_store::{Result, Store};

use crate::{Durability, ROWS_PER_STATEMENT, SqliteStore, engine};

/// Attribute names and whether each holds text, as a street light reports them.
const ATTRIBUTES: [(&str, bool); 5] = [
    ("status", true),
    ("powerState", true),
    ("illuminanceLevel", false),
    ("powerConsumption", false),
    ("voltage", false),
];

/// What the baseline measured.
#[derive(Debug, Clone, Copy)]
pub struct BaselineRun {
    pub rows: usize,
    pub elapsed: Duration,
}

impl BaselineRun {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// The shape of the load to replay: `messages` messages, round-robin over
/// `entities` lights, each carrying `readings` timestamped readings of the
/// five attributes, committed `per_commit` messages at a time, as Vigie's
/// writer commits what its MQTT window holds.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub messages: usize,
    pub entities: usize,
    pub readings: usize,
    pub per_commit: usize,
}

impl Load {
    pub fn rows(&self) -> usize {
        self.messages * self.readings.max(1) * ATTRIBUTES.len()
    }
}

/// Inserts the rows of `load` into a new database at `path`.
pub async fn raw_history_inserts(path: &Path, load: Load) -> Result<BaselineRun> {
    let store = SqliteStore::open(path, Durability::Full).await?;
    store.migrate().await?;
    let (entities, readings) = (load.entities.max(1), load.readings.max(1));
    let mut tx = store.pool.begin().await.map_err(engine)?;
    for key in 0..entities {
        sqlx::query("INSERT INTO entities (key, id, type, body) VALUES (?, ?, 'Streetlight', '{}')")
            .bind(key as i64)
            .bind(format!("urn:ngsi-ld:Streetlight:baseline:{key}"))
            .execute(&mut *tx)
            .await
            .map_err(engine)?;
    }
    tx.commit().await.map_err(engine)?;

    // Row `i` of the whole load, in the order messages carry them.
    let row = |i: usize| {
        let per_message = readings * ATTRIBUTES.len();
        let (message, within) = (i / per_message, i % per_message);
        let (reading, attribute) = (within / ATTRIBUTES.len(), within % ATTRIBUTES.len());
        let entity = message % entities;
        let at = 1_780_000_000_000_000_i64 + (((message / entities) * readings + reading) as i64) * 1_000;
        (entity as i64, attribute, at, i)
    };
    let rows_per_commit = load.per_commit.max(1) * readings * ATTRIBUTES.len();
    let total = load.rows();
    let started = Instant::now();
    let mut written = 0;
    while written < total {
        let commit_end = (written + rows_per_commit).min(total);
        let mut tx = store.pool.begin().await.map_err(engine)?;
        let mut next = written;
        while next < commit_end {
            let end = (next + ROWS_PER_STATEMENT).min(commit_end);
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO history (entity_key, attribute, observed_at, num, txt, json, unit_code) ",
            );
            qb.push_values((next..end).map(row), |mut b, (entity, attribute, at, i)| {
                let (name, text) = ATTRIBUTES[attribute];
                let (num, txt) = if text {
                    (None, Some("ok"))
                } else {
                    (Some(i as f64 * 0.5), None)
                };
                b.push_bind(entity)
                    .push_bind(name)
                    .push_bind(at)
                    .push_bind(num)
                    .push_bind(txt)
                    .push_bind(None::<String>)
                    .push_bind(None::<String>);
            });
            qb.build().execute(&mut *tx).await.map_err(engine)?;
            next = end;
        }
        tx.commit().await.map_err(engine)?;
        written = commit_end;
    }
    Ok(BaselineRun {
        rows: total,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_baseline_writes_every_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.db");
        let load = Load {
            messages: 300,
            entities: 100,
            readings: 2,
            per_commit: 64,
        };
        let run = raw_history_inserts(&path, load).await.expect("baseline");
        assert_eq!(run.rows, 3_000);
        let store = SqliteStore::open(&path, Durability::Full).await.expect("open");
        assert_eq!(
            store.count_history().await.expect("count"),
            3_000,
            "every row is distinct"
        );
    }
}

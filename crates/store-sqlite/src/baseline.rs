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

/// Inserts `rows` light readings spread over `entities` entities into a new
/// database at `path`, committing every `per_commit` rows.
pub async fn raw_history_inserts(path: &Path, rows: usize, entities: usize, per_commit: usize) -> Result<BaselineRun> {
    let store = SqliteStore::open(path, Durability::Full).await?;
    store.migrate().await?;
    let entities = entities.max(1);
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

    let started = Instant::now();
    let per_commit = per_commit.max(1);
    let mut written = 0;
    while written < rows {
        let commit_rows = per_commit.min(rows - written);
        let mut tx = store.pool.begin().await.map_err(engine)?;
        let mut done = 0;
        while done < commit_rows {
            let n = ROWS_PER_STATEMENT.min(commit_rows - done);
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT OR REPLACE INTO history (entity_key, attribute, observed_at, num, txt, json, unit_code) ",
            );
            qb.push_values(written + done..written + done + n, |mut row, i| {
                let (attribute, text) = ATTRIBUTES[i % ATTRIBUTES.len()];
                let reading = i / ATTRIBUTES.len();
                let (num, txt) = if text {
                    (None, Some("ok"))
                } else {
                    (Some(i as f64 * 0.5), None)
                };
                row.push_bind((reading % entities) as i64)
                    .push_bind(attribute)
                    .push_bind(1_780_000_000_000_000_i64 + (reading / entities) as i64 * 1_000)
                    .push_bind(num)
                    .push_bind(txt)
                    .push_bind(None::<String>)
                    .push_bind(None::<String>);
            });
            qb.build().execute(&mut *tx).await.map_err(engine)?;
            done += n;
        }
        tx.commit().await.map_err(engine)?;
        written += commit_rows;
    }
    Ok(BaselineRun {
        rows,
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
        let run = raw_history_inserts(&path, 3_000, 100, 1_000).await.expect("baseline");
        assert_eq!(run.rows, 3_000);
        let store = SqliteStore::open(&path, Durability::Full).await.expect("open");
        assert_eq!(store.count_history().await.expect("count"), 3_000);
    }
}

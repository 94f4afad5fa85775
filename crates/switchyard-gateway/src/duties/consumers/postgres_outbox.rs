//! `kind = "postgres_outbox"`: rows of an outbox table, one partition (the
//! rows whose `partition` is N) per lease. A row is read only once its
//! transaction committed (never one that rolled back), published, and then
//! deleted; one that cannot be published moves to `<table>_dead` with the
//! reason. `LISTEN <table>` wakes the reader when the optional trigger
//! (docs/consumers.md) notifies; without it the table is read every
//! `poll_interval`.

use super::entry::Entry;
use std::time::Duration;
use switchyard_core::config::ConsumerConfig;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

pub struct PostgresOutbox {
    client: Client,
    table: String,
    partition: i32,
    poll_interval: Duration,
    /// Notifications from the trigger (any row of the table).
    notified: mpsc::Receiver<()>,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresOutbox {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl PostgresOutbox {
    pub async fn open(config: &ConsumerConfig, partition: u32) -> Result<PostgresOutbox, String> {
        let url = config.postgres_url.as_deref().ok_or("no postgres_url")?;
        let (client, mut connection) =
            tokio_postgres::connect(url, NoTls).await.map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        let (notify, notified) = mpsc::channel(1);
        let connection = tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        let _ = notify.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "the PostgreSQL connection ended");
                        break;
                    }
                }
            }
        });
        let table = config.table.clone();
        // The dead letters: the outbox's columns, and why.
        let dead = format!(
            "CREATE TABLE IF NOT EXISTS {table}_dead (id bigint PRIMARY KEY, channel text, data jsonb, \
             idempotency_key text, tags jsonb, partition int, created_at timestamptz, \
             reason text NOT NULL, set_aside_at timestamptz NOT NULL DEFAULT now())"
        );
        client.batch_execute(&dead).await.map_err(|e| format!("cannot make {table}_dead: {e}"))?;
        // The trigger notifies on the table's name (without its schema).
        let listen = format!("LISTEN \"{}\"", table.rsplit('.').next().unwrap_or(&table));
        client.batch_execute(&listen).await.map_err(|e| format!("cannot LISTEN: {e}"))?;
        Ok(PostgresOutbox {
            client,
            table,
            partition: partition as i32,
            poll_interval: config.poll_interval,
            notified,
            connection,
        })
    }

    /// The partition's oldest rows, by id; waits (for a notification, or a
    /// poll) up to `wait` when there are none.
    pub async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<Entry>, String> {
        let rows = self.read(max).await?;
        if !rows.is_empty() {
            return Ok(rows);
        }
        let _ = tokio::time::timeout(wait.min(self.poll_interval), self.notified.recv()).await;
        self.read(max).await
    }

    async fn read(&mut self, max: usize) -> Result<Vec<Entry>, String> {
        let query = format!(
            "SELECT id, channel, data::text, idempotency_key, tags::text, \
             (extract(epoch FROM created_at) * 1000000)::bigint \
             FROM {} WHERE partition = $1 ORDER BY id LIMIT $2",
            self.table
        );
        let rows = self
            .client
            .query(&query, &[&self.partition, &(max as i64)])
            .await
            .map_err(|e| format!("cannot read {}: {e}", self.table))?;
        Ok(rows
            .iter()
            .map(|row| {
                let id: i64 = row.get(0);
                let channel: Option<String> = row.get(1);
                let data: Option<String> = row.get(2);
                let tags: Option<String> = row.get(4);
                let created: Option<i64> = row.get(5);
                let mut entry = Entry {
                    position: id.to_string(),
                    channel: channel.unwrap_or_default(),
                    data: data.unwrap_or_default().into(),
                    idempotency_key: row.get::<_, Option<String>>(3).filter(|k| !k.is_empty()),
                    created_at_us: created.map(|us| us.max(0) as u64),
                    ..Entry::default()
                };
                if let Some(tags) = tags.filter(|t| t != "null") {
                    match Entry::tags_from_json(tags.as_bytes()) {
                        Ok(tags) => entry.tags = tags,
                        Err(why) => entry.malformed = Some(why),
                    }
                }
                entry
            })
            .collect())
    }

    /// Published: the rows are deleted, in one statement.
    pub async fn confirm(&mut self, entries: &[Entry]) -> Result<(), String> {
        let ids = entries.iter().map(|e| e.position.parse::<i64>()).collect::<Result<Vec<_>, _>>();
        let ids = ids.map_err(|_| "not a row id")?;
        if ids.is_empty() {
            return Ok(());
        }
        let delete = format!("DELETE FROM {} WHERE id = ANY($1)", self.table);
        self.client.execute(&delete, &[&ids]).await.map_err(|e| format!("cannot delete rows: {e}"))?;
        Ok(())
    }

    /// Cannot be published: the row moves to `<table>_dead` with `why`.
    pub async fn set_aside(&mut self, entry: &Entry, why: &str) -> Result<(), String> {
        let id: i64 = entry.position.parse().map_err(|_| "not a row id")?;
        let table = &self.table;
        let statement = format!(
            "WITH moved AS (DELETE FROM {table} WHERE id = $1 RETURNING *) \
             INSERT INTO {table}_dead (id, channel, data, idempotency_key, tags, partition, created_at, reason) \
             SELECT id, channel, data, idempotency_key, tags, partition, created_at, $2 FROM moved \
             ON CONFLICT (id) DO NOTHING"
        );
        self.client.execute(&statement, &[&id, &why]).await.map_err(|e| format!("cannot set row {id} aside: {e}"))?;
        Ok(())
    }

    /// Rows of the partition not yet published.
    pub async fn lag(&mut self) -> Result<u64, String> {
        let query = format!("SELECT count(*) FROM {} WHERE partition = $1", self.table);
        let row = self.client.query_one(&query, &[&self.partition]).await.map_err(|e| e.to_string())?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

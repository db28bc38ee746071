//! Configurations queued for a search's next draws (`sweep enqueue`): each is taken by one draw,
//! inside the draw's own transaction.

use super::{Backend, Store};
use crate::error::Result;
use crate::search::Fixed;

impl Store {
    /// Queues the configuration `fixed` (described by `label`) for sweep `sweep_id`'s next draw.
    pub fn enqueue(&self, sweep_id: i64, fixed: &Fixed, label: &str) -> Result<()> {
        self.runtime
            .block_on(
                sqlx::query(self.backend.sql(
                    "INSERT INTO enqueued_trials (sweep_id, point_json, label, created_at)
                     VALUES (?, ?, ?, now_utc())",
                ))
                .bind(sweep_id)
                .bind(serde_json::to_string(fixed).expect("coordinates serialise"))
                .bind(label)
                .execute(&self.pool),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// How many configurations wait for a draw of sweep `sweep_id`.
    pub fn waiting_enqueued(&self, sweep_id: i64) -> Result<usize> {
        self.runtime
            .block_on(
                sqlx::query_scalar::<_, i64>(self.backend.sql(
                    "SELECT COUNT(*) FROM enqueued_trials WHERE sweep_id = ? AND draw IS NULL",
                ))
                .bind(sweep_id)
                .fetch_one(&self.pool),
            )
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }
}

/// The oldest configuration waiting for a draw of `sweep_id`, read inside the draw's
/// transaction.
pub(super) async fn next_enqueued(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    sweep_id: i64,
) -> std::result::Result<Option<(i64, Fixed)>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(backend.sql(
        "SELECT id, point_json FROM enqueued_trials WHERE sweep_id = ? AND draw IS NULL
         ORDER BY id LIMIT 1",
    ))
    .bind(sweep_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(id, json)| {
        serde_json::from_str(&json)
            .map(|fixed| (id, fixed))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    })
    .transpose()
}

/// Marks queued configuration `id` as taken by draw `draw`.
pub(super) async fn take_enqueued(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    id: i64,
    draw: u64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(backend.sql("UPDATE enqueued_trials SET draw = ? WHERE id = ?"))
        .bind(draw as i64)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

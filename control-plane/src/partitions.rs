//! Daily partitions of the request-log tables.
//!
//! All four request-log tables are range-partitioned by UTC day on `created_at`, with the same
//! boundaries, so a day can be dropped as a whole (see ADR 0001). Partitions are created ahead of
//! time at start and hourly, and on demand for any day a batch touches that does not have one yet
//! (a node with a skewed clock, say). Creation is serialised across replicas with an advisory lock.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{Duration, NaiveDate, Utc};
use sqlx::PgPool;

/// The partitioned tables, parent names.
pub const TABLES: [&str; 4] = [
    "request_logs",
    "request_log_payloads",
    "request_log_tags",
    "request_log_attempts",
];

/// How many days ahead of today partitions exist.
pub const DAYS_AHEAD: i64 = 3;

/// Advisory lock key serialising partition DDL across replicas.
const LOCK_KEY: i64 = 0x7765_6972_7061_7274; // "weirpart"

/// Remembers which days already have partitions, so the ingest path checks memory, not the
/// catalog.
#[derive(Debug, Default)]
pub struct Partitions {
    known: Mutex<HashSet<NaiveDate>>,
}

impl Partitions {
    /// Ensures today and the next [`DAYS_AHEAD`] days have partitions.
    pub async fn ensure_ahead(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let today = Utc::now().date_naive();
        let days: Vec<NaiveDate> = (0..=DAYS_AHEAD)
            .map(|d| today + Duration::days(d))
            .collect();
        self.ensure(pool, &days).await
    }

    /// Ensures every day in `days` has partitions in all four tables.
    pub async fn ensure(&self, pool: &PgPool, days: &[NaiveDate]) -> Result<(), sqlx::Error> {
        let missing: Vec<NaiveDate> = {
            let known = self.known.lock().expect("partition set lock");
            let mut m: Vec<NaiveDate> = days
                .iter()
                .filter(|d| !known.contains(d))
                .copied()
                .collect();
            m.sort();
            m.dedup();
            m
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        for day in &missing {
            for ddl in partition_ddl(*day) {
                sqlx::query(&ddl).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        self.known
            .lock()
            .expect("partition set lock")
            .extend(missing);
        Ok(())
    }
}

impl Partitions {
    /// Forgets `day` after its partitions were dropped, so a late record recreates them.
    pub fn forget(&self, day: NaiveDate) {
        self.known.lock().expect("partition set lock").remove(&day);
    }
}

/// The partition name of `table` for `day`, e.g. `request_logs_p20261128`.
pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// `CREATE TABLE IF NOT EXISTS … PARTITION OF …` for each table, for one day.
pub fn partition_ddl(day: NaiveDate) -> Vec<String> {
    let next = day + Duration::days(1);
    TABLES
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {t} FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
                partition_name(t, day)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounds() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(
            partition_name("request_logs", day),
            "request_logs_p20261231"
        );
        let ddl = partition_ddl(day);
        assert_eq!(ddl.len(), 4);
        assert!(ddl[0].contains("FROM ('2026-12-31 00:00:00+00') TO ('2027-01-01 00:00:00+00')"));
        assert!(ddl[3].starts_with("CREATE TABLE IF NOT EXISTS request_log_attempts_p20261231"));
    }
}

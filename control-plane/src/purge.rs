//! Request-log purge: whole daily partitions before the cutoff are dropped (all four tables of a
//! day in one transaction), the boundary day's rows before the cutoff are deleted from all four
//! tables in one transaction; dry runs count. The spend ledger, rollups, identities and
//! config are never touched. Scheduled runs claim their UTC day in `purge_runs`, so a fleet of
//! replicas purges at most once a day (docs/retention.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgPool, Row};

use crate::partitions::{partition_name, Partitions, TABLES};
use crate::purge_policy::{plan, PurgePolicy, Retention};

/// How long a partition drop waits for the parent tables' lock before backing off, so ingest
/// (which holds a lighter lock on them) never waits long behind a purge.
const LOCK_TIMEOUT: &str = "200ms";
/// How long it waits for the old day's own partitions (longer than Postgres' default
/// deadlock_timeout of 1 s, after which an autovacuum holding them cancels itself).
const PARTITION_LOCK_TIMEOUT: &str = "3s";
/// Days whose partitions one transaction drops.
const DAYS_PER_DROP: usize = 7;
/// Attempts at dropping a group of days' partitions before giving up on that run.
const DROP_ATTEMPTS: u32 = 50;

/// Why a purge failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not take the request-log tables' lock for {0} after {DROP_ATTEMPTS} tries; partitions kept, try again later")]
    Busy(NaiveDate),
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// Rows (to be) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub partitions_dropped: i32,
    pub request_logs: i64,
    pub payloads: i64,
    pub tags: i64,
    pub attempts: i64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.partitions_dropped += o.partitions_dropped;
        self.request_logs += o.request_logs;
        self.payloads += o.payloads;
        self.tags += o.tags;
        self.attempts += o.attempts;
    }
}

/// Rows a batch added per UTC day, by table (logs, payloads, tags, attempts).
#[derive(Debug, Default)]
pub struct DayCounts(std::collections::BTreeMap<NaiveDate, [i64; 4]>);

impl DayCounts {
    /// Counts rows created at `ats` in table `table` (0 logs, 1 payloads, 2 tags, 3 attempts).
    pub fn add(&mut self, table: usize, ats: impl IntoIterator<Item = DateTime<Utc>>) {
        for at in ats {
            self.0.entry(at.date_naive()).or_default()[table] += 1;
        }
    }

    /// Appends the counts to `request_log_day_counts_pending`.
    pub async fn record(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), sqlx::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let days: Vec<NaiveDate> = self.0.keys().copied().collect();
        let col = |i: usize| self.0.values().map(|c| c[i]).collect::<Vec<i64>>();
        sqlx::query(
            "INSERT INTO request_log_day_counts_pending (day, logs, payloads, tags, attempts)
             SELECT * FROM UNNEST($1::date[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])",
        )
        .bind(days)
        .bind(col(0))
        .bind(col(1))
        .bind(col(2))
        .bind(col(3))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Runs purges for one control-plane replica.
pub struct Purger {
    pool: PgPool,
    partitions: Arc<Partitions>,
    /// The configured policy.
    pub policy: PurgePolicy,
    replica: String,
}

impl Purger {
    /// A purger on `pool`.
    pub fn new(
        pool: PgPool,
        partitions: Arc<Partitions>,
        policy: PurgePolicy,
        replica: String,
    ) -> Self {
        Purger {
            pool,
            partitions,
            policy,
            replica,
        }
    }

    /// A run now, by an operator: `retention` overrides the configured one. Returns its record.
    pub async fn run_manual(
        &self,
        retention: Option<Retention>,
        dry_run: bool,
    ) -> Result<i64, PurgeError> {
        let id = self
            .claim(
                Trigger::Manual,
                retention.unwrap_or(self.policy.retention),
                dry_run,
            )
            .await?
            // A manual run claims no day, so its insert cannot conflict.
            .ok_or(PurgeError::Database(sqlx::Error::RowNotFound))?;
        self.execute(id, dry_run).await?;
        Ok(id)
    }

    /// The scheduled run: purges unless a replica already did today (UTC, database clock).
    /// Returns the run's id, or `None` when the day was already taken.
    pub async fn run_scheduled(&self) -> Result<Option<i64>, PurgeError> {
        let Some(id) = self
            .claim(Trigger::Schedule, self.policy.retention, false)
            .await?
        else {
            return Ok(None);
        };
        self.execute(id, false).await?;
        Ok(Some(id))
    }

    /// Fires on the schedule for as long as the task runs (nothing when disabled).
    pub async fn keep_scheduling(self: Arc<Self>) {
        if !self.policy.enabled {
            return;
        }
        loop {
            let now = Utc::now();
            let Some(next) = self.policy.schedule.next_after(now) else {
                tracing::warn!(schedule = %self.policy.schedule.text(), "the purge schedule never fires again");
                return;
            };
            let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            match self.run_scheduled().await {
                Ok(Some(id)) => tracing::info!(run = id, "scheduled purge done"),
                Ok(None) => tracing::info!("another replica purged today already"),
                Err(e) => tracing::warn!(error = %e, "scheduled purge failed"),
            }
        }
    }

    /// Records a run's start; for a scheduled one, only if its UTC day is still free.
    async fn claim(
        &self,
        trigger: Trigger,
        retention: Retention,
        dry_run: bool,
    ) -> Result<Option<i64>, sqlx::Error> {
        let days = retention.duration().num_days() as i32;
        sqlx::query_scalar(
            "INSERT INTO purge_runs (scheduled_day, trigger, dry_run, replica, retention, cutoff)
             VALUES (CASE WHEN $1 THEN (now() AT TIME ZONE 'UTC')::date END, $2, $3, $4, $5,
                     now() - make_interval(days => $6))
             ON CONFLICT (scheduled_day) DO NOTHING
             RETURNING id",
        )
        .bind(trigger == Trigger::Schedule)
        .bind(trigger.name())
        .bind(dry_run)
        .bind(&self.replica)
        .bind(retention.name())
        .bind(days)
        .fetch_optional(&self.pool)
        .await
    }

    /// Does (or, dry, counts) run `id`'s work and records the outcome.
    async fn execute(&self, id: i64, dry_run: bool) -> Result<(), PurgeError> {
        let started = Instant::now();
        let cutoff: DateTime<Utc> =
            sqlx::query_scalar("SELECT cutoff FROM purge_runs WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        let mut counts = Counts::default();
        let result = if dry_run {
            self.count(cutoff)
                .await
                .map(|c| counts = c)
                .map_err(PurgeError::from)
        } else {
            self.purge(cutoff, &mut counts).await
        };
        let error = result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        sqlx::query(
            "UPDATE purge_runs SET finished_at = now(), duration_ms = $2, partitions_dropped = $3,
                 request_logs = $4, payloads = $5, tags = $6, attempts = $7, error = $8
             WHERE id = $1",
        )
        .bind(id)
        .bind(started.elapsed().as_millis() as i64)
        .bind(counts.partitions_dropped)
        .bind(counts.request_logs)
        .bind(counts.payloads)
        .bind(counts.tags)
        .bind(counts.attempts)
        .bind(&error)
        .execute(&self.pool)
        .await?;
        result
    }

    /// Rows older than `cutoff`, per table: whole days from the day counts, the cutoff's own day
    /// by counting its rows before the cutoff.
    async fn count(&self, cutoff: DateTime<Utc>) -> Result<Counts, sqlx::Error> {
        let p = plan(&self.days().await?, cutoff);
        let mut total = Counts {
            partitions_dropped: p.drop.len() as i32,
            ..Counts::default()
        };
        for day in &p.drop {
            total += day_counts(&self.pool, *day).await?;
        }
        if let Some(day) = p.boundary {
            let from = day.and_time(chrono::NaiveTime::MIN).and_utc();
            let row = sqlx::query(
                "SELECT (SELECT count(*) FROM request_logs WHERE created_at >= $1 AND created_at < $2) AS logs,
                        (SELECT count(*) FROM request_log_payloads WHERE created_at >= $1 AND created_at < $2) AS payloads,
                        (SELECT count(*) FROM request_log_tags WHERE created_at >= $1 AND created_at < $2) AS tags,
                        (SELECT count(*) FROM request_log_attempts_all WHERE created_at >= $1 AND created_at < $2) AS attempts",
            )
            .bind(from)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
            total += Counts {
                partitions_dropped: 0,
                request_logs: row.get("logs"),
                payloads: row.get("payloads"),
                tags: row.get("tags"),
                attempts: row.get("attempts"),
            };
        }
        Ok(total)
    }

    /// The days the request-log table has partitions for.
    async fn days(&self) -> Result<Vec<NaiveDate>, sqlx::Error> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'request_logs'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix("request_logs_p"))
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .collect())
    }

    async fn purge(&self, cutoff: DateTime<Utc>, counts: &mut Counts) -> Result<(), PurgeError> {
        let p = plan(&self.days().await?, cutoff);
        // A few days per transaction: one wait for the parent tables' lock covers them all, and
        // the lock is never held for long.
        for days in p.drop.chunks(DAYS_PER_DROP) {
            *counts += self.drop_days(days).await?;
        }
        if let Some(day) = p.boundary {
            let started = Instant::now();
            let trimmed = self.trim(day, cutoff).await?;
            tracing::info!(%day, ms = started.elapsed().as_millis() as u64,
                logs = trimmed.request_logs, "trimmed the cutoff's day");
            *counts += trimmed;
        }
        Ok(())
    }

    /// Drops the partitions of `days` in all four tables together.
    async fn drop_days(&self, days: &[NaiveDate]) -> Result<Counts, PurgeError> {
        let started = Instant::now();
        for attempt in 0..DROP_ATTEMPTS {
            match self.try_drop_days(days).await {
                Ok(counts) => {
                    for day in days {
                        self.partitions.forget(*day);
                    }
                    tracing::info!(first = %days[0], days = days.len(), attempts = attempt + 1,
                        ms = started.elapsed().as_millis() as u64, logs = counts.request_logs,
                        "dropped days of request logs");
                    return Ok(counts);
                }
                // 55P03 lock_not_available: writers hold the parents (or autovacuum the days'
                // partitions); the transaction rolled back, let them through and try again.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                    tracing::debug!(first = %days[0], attempt, "partition drop backed off");
                    tokio::time::sleep(Duration::from_millis(50 + 20 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(PurgeError::Busy(days[0]))
    }

    /// One attempt at dropping `days`' partitions, in one transaction.
    async fn try_drop_days(&self, days: &[NaiveDate]) -> Result<Counts, sqlx::Error> {
        let names: Vec<String> = days
            .iter()
            .flat_map(|d| TABLES.iter().map(|t| partition_name(t, *d)))
            .collect();
        let mut tx = self.pool.begin().await?;
        // Nothing writes to past days' partitions, so waiting for them blocks no ingest; it
        // outlasts deadlock_timeout so an autovacuum of them gives way to the purge.
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"
        ))
        .execute(&mut *tx)
        .await?;
        // Late records for those days wait on the partitions' lock rather than land in a
        // partition that is about to go uncounted.
        sqlx::query(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            names.join(", ")
        ))
        .execute(&mut *tx)
        .await?;
        // The folding job must not move these days' pending counts while they are read.
        sqlx::query(&format!(
            "SELECT pg_advisory_xact_lock({})",
            crate::usage_rollup::FOLD_LOCK
        ))
        .execute(&mut *tx)
        .await?;
        let mut counts = Counts::default();
        for day in days {
            counts += day_counts(&mut *tx, *day).await?;
        }
        counts.partitions_dropped = days.len() as i32;
        // Dropping takes the parent tables' lock, which every ingest batch also takes: wait
        // briefly, and back off rather than queue writers behind us.
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("DROP TABLE {}", names.join(", ")))
            .execute(&mut *tx)
            .await?;
        for t in ["request_log_day_counts", "request_log_day_counts_pending"] {
            sqlx::query(&format!("DELETE FROM {t} WHERE day = ANY($1)"))
                .bind(days)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// Deletes the rows of `day` before `cutoff` from all four tables in one transaction, so a
    /// log and its child rows go together. Range deletes touch only that day's partitions and
    /// rows no writer uses, so ingest does not wait on them.
    async fn trim(&self, day: NaiveDate, cutoff: DateTime<Utc>) -> Result<Counts, PurgeError> {
        let from = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let mut tx = self.pool.begin().await?;
        let mut deleted = [0i64; 4];
        // Attempts carried on summary rows (migration 0020) go with them and count as attempts.
        let mut inline_attempts = 0i64;
        for (n, table) in deleted.iter_mut().zip(TABLES) {
            let (rows, inline): (i64, i64) = sqlx::query_as(&format!(
                "WITH d AS (DELETE FROM {table} WHERE created_at >= $1 AND created_at < $2
                            RETURNING {})
                 SELECT count(*), count(*) FILTER (WHERE inline) FROM d",
                if table == "request_logs" {
                    "attempt_duration_us IS NOT NULL AS inline"
                } else {
                    "false AS inline"
                }
            ))
            .bind(from)
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
            *n = rows;
            inline_attempts += inline;
        }
        let [request_logs, payloads, tags, stored_attempts] = deleted;
        let attempts = stored_attempts + inline_attempts;
        sqlx::query(
            "INSERT INTO request_log_day_counts_pending (day, logs, payloads, tags, attempts)
             VALUES ($1, -$2, -$3, -$4, -$5)",
        )
        .bind(day)
        .bind(request_logs)
        .bind(payloads)
        .bind(tags)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Counts {
            partitions_dropped: 0,
            request_logs,
            payloads,
            tags,
            attempts,
        })
    }
}

/// What `day` holds per table, by the day counts (folded and pending).
async fn day_counts<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    day: NaiveDate,
) -> Result<Counts, sqlx::Error> {
    let row = sqlx::query(
        "SELECT coalesce(sum(logs), 0)::bigint AS logs, coalesce(sum(payloads), 0)::bigint AS payloads,
                coalesce(sum(tags), 0)::bigint AS tags, coalesce(sum(attempts), 0)::bigint AS attempts
         FROM (SELECT logs, payloads, tags, attempts FROM request_log_day_counts WHERE day = $1
               UNION ALL
               SELECT logs, payloads, tags, attempts FROM request_log_day_counts_pending WHERE day = $1) c",
    )
    .bind(day)
    .fetch_one(db)
    .await?;
    Ok(Counts {
        partitions_dropped: 0,
        request_logs: row.get("logs"),
        payloads: row.get("payloads"),
        tags: row.get("tags"),
        attempts: row.get("attempts"),
    })
}

//! Log ingest: the `weir.logs.v1.LogIngest` service and the batch writer behind it.
//!
//! Each batch is written in one transaction and acked only after commit. Almost every batch is
//! new, so it goes in by `COPY` into every table (no per-row conflict probe, no arrays to
//! unnest). A batch holding a record that is already stored (the resend after a lost ack) fails
//! that `COPY` on the primary key and is written again on the dedupe path: summaries and ledger
//! rows (the same binary rows) are staged in temporary tables and inserted with `ON CONFLICT DO
//! NOTHING RETURNING log_id`, and children are written only for the ids that returned, so a
//! resent batch writes nothing twice.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Stream;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;
use weir_proto::logs::log_ingest_server::LogIngest;
use weir_proto::logs::{BatchAck, LogBatch, RequestLog};

use crate::partitions::Partitions;
use crate::pg_copy::BinaryRows;
use crate::purge::DayCounts;
use crate::usage_rollup;
use weir_proto::pricing::{self, PriceSheet};

/// Batches of one stream written at once.
const CONCURRENT_BATCHES: usize = 4;

/// Why a batch was not written; the data plane keeps it and resends.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Status {
        Status::unavailable(format!("batch not written, resend it: {e}"))
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// New request logs.
    pub inserted: u32,
    /// Request logs that were already there.
    pub duplicates: u32,
    /// Records that can never be written.
    pub rejected: u32,
    /// The batch held a record already stored, so it took the dedupe path.
    pub deduplicated: bool,
}

/// How a batch's rows go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Every row by `COPY`; fails on the first record already stored.
    Fresh,
    /// Summaries and ledger rows skip records already stored.
    Dedupe,
}

/// Postgres `unique_violation`: the fresh path met a record already stored.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Writes batches of request logs.
pub struct LogWriter {
    pool: PgPool,
    partitions: Arc<Partitions>,
}

/// A record with its id and time decoded.
struct Decoded<'a> {
    id: Uuid,
    at: DateTime<Utc>,
    rec: &'a RequestLog,
    /// The caller's ids, parsed once: api key, user, team, service account.
    caller: [Option<Uuid>; 4],
    cost: Option<i64>,
    pricing_status: Option<&'static str>,
    price_id: Option<i64>,
    /// The provider's and the key's cost multipliers applied, parts per million.
    multipliers: [u32; 2],
    /// The attempt the summary row carries (migration 0020), decided once for both the summary
    /// and the attempts encoder.
    inline_attempt: Option<&'a weir_proto::logs::Attempt>,
}

impl Decoded<'_> {
    /// Starts a row of one of the request-log tables, all keyed by `(log_id, created_at)`.
    fn begin_row(&self, copy: &mut BinaryRows) {
        copy.begin_row();
        copy.uuid(Some(self.id));
        copy.timestamptz(self.at);
    }

    /// What the record adds to the usage rollups.
    fn usage(&self) -> usage_rollup::Usage<'_> {
        let harness = self.rec.harness.as_ref();
        let usage = self.rec.usage.as_ref();
        usage_rollup::Usage {
            at: self.at,
            api_key_id: self.caller[0],
            user_id: self.caller[1],
            team_id: self.caller[2],
            model_key: &self.rec.model_key,
            harness_key: harness.map_or("", |h| h.key.as_str()),
            harness_label: harness.map_or("", |h| h.label.as_str()),
            cost_pusd: self.cost,
            input_tokens: usage.and_then(|u| u.input_tokens),
            output_tokens: usage.and_then(|u| u.output_tokens),
            exposed_tools: self.rec.exposed_tool_count,
            invoked_tools: self.rec.invoked_tool_count,
        }
    }
}

impl LogWriter {
    /// A writer on `pool`.
    pub fn new(pool: PgPool, partitions: Arc<Partitions>) -> Self {
        LogWriter { pool, partitions }
    }

    /// Writes one batch in one transaction.
    pub async fn write(&self, records: &[RequestLog]) -> Result<WriteOutcome, IngestError> {
        let mut out = WriteOutcome::default();
        let mut rows: Vec<Decoded<'_>> = Vec::with_capacity(records.len());
        for rec in records {
            match decode_log_id(&rec.log_id) {
                Some((id, at)) => rows.push(Decoded {
                    id,
                    at,
                    rec,
                    caller: rec.caller.as_ref().map_or([None; 4], |c| {
                        [
                            opt_uuid(&c.api_key_id),
                            opt_uuid(&c.user_id),
                            opt_uuid(&c.team_id),
                            opt_uuid(&c.service_account_id),
                        ]
                    }),
                    cost: None,
                    pricing_status: None,
                    price_id: None,
                    multipliers: [pricing::PPM_ONE; 2],
                    inline_attempt: inline_attempt(rec),
                }),
                None => {
                    out.rejected += 1;
                    tracing::error!(
                        request_id = %rec.request_id,
                        "rejected a request log whose log id is not a UUIDv7"
                    );
                }
            }
        }
        if rows.is_empty() {
            return Ok(out);
        }
        let days: Vec<NaiveDate> = rows.iter().map(|r| r.at.date_naive()).collect();
        self.partitions.ensure(&self.pool, &days).await?;
        self.price(&mut rows).await?;

        let (ledger_only, logged): (Vec<Decoded<'_>>, Vec<Decoded<'_>>) =
            rows.into_iter().partition(|r| r.rec.ledger_only);
        let written = match self.write_rows(&logged, &ledger_only, Path::Fresh).await {
            Err(e) if is_unique_violation(&e) => {
                tracing::debug!(
                    "batch holds records already stored; writing it on the dedupe path"
                );
                out.deduplicated = true;
                self.write_rows(&logged, &ledger_only, Path::Dedupe).await?
            }
            written => written?,
        };
        out.inserted = written as u32;
        out.duplicates = (logged.len() + ledger_only.len() - written) as u32;
        Ok(out)
    }

    /// Writes the rows in one transaction; returns how many records were new.
    async fn write_rows(
        &self,
        logged: &[Decoded<'_>],
        ledger_only: &[Decoded<'_>],
        path: Path,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let summaries = summary_rows(logged);
        let new_rows: Vec<&Decoded<'_>> = match path {
            Path::Fresh => {
                copy_in(&mut tx, "request_logs", SUMMARY_COLUMNS, summaries).await?;
                logged.iter().collect()
            }
            Path::Dedupe => {
                let inserted =
                    insert_new(&mut tx, "request_logs", SUMMARY_COLUMNS, summaries).await?;
                logged.iter().filter(|r| inserted.contains(&r.id)).collect()
            }
        };
        // Rows per day and table, so a purge knows what a day holds without scanning it.
        let mut days = DayCounts::default();
        days.add(0, new_rows.iter().map(|r| r.at));
        days.add(1, insert_payloads(&mut tx, &new_rows).await?);
        days.add(2, insert_tags(&mut tx, &new_rows).await?);
        days.add(3, insert_attempts(&mut tx, &new_rows).await?);
        days.record(&mut tx).await?;
        // Opted-out owners: spend is still recorded (the ledger is idempotent on its own).
        let ledger = ledger_rows(new_rows.iter().copied().chain(ledger_only));
        let priced = ledger_only.iter().filter(|r| r.pricing_status.is_some());
        let ledger_new: Vec<&Decoded<'_>> = match path {
            Path::Fresh => {
                copy_in(&mut tx, "usage_cost_events", LEDGER_COLUMNS, ledger).await?;
                priced.collect()
            }
            Path::Dedupe => {
                let inserted =
                    insert_new(&mut tx, "usage_cost_events", LEDGER_COLUMNS, ledger).await?;
                priced.filter(|r| inserted.contains(&r.id)).collect()
            }
        };
        // Leaderboard totals count each request once: only rows this batch actually added.
        usage_rollup::record(
            &mut tx,
            new_rows
                .iter()
                .chain(&ledger_new)
                .copied()
                .map(Decoded::usage),
        )
        .await?;
        tx.commit().await?;
        Ok(new_rows.len() + ledger_new.len())
    }

    /// Prices every provider-backed record with the price valid at its time.
    async fn price(&self, rows: &mut [Decoded<'_>]) -> Result<(), sqlx::Error> {
        let models: Vec<String> = rows
            .iter()
            .filter(|r| !r.rec.attempts.is_empty())
            .map(|r| r.rec.model_key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        type Versions = Vec<(i64, DateTime<Utc>, Option<PriceSheet>)>;
        let mut prices: HashMap<String, Versions> = HashMap::new();
        if !models.is_empty() {
            let fetched = sqlx::query(
                "SELECT id, model_key, valid_from, input_pusd_per_token, cached_input_pusd_per_token,
                        output_pusd_per_token, extra
                 FROM prices WHERE model_key = ANY($1) ORDER BY valid_from DESC, id DESC",
            )
            .bind(&models)
            .fetch_all(&self.pool)
            .await?;
            for r in fetched {
                let id: i64 = r.get("id");
                let sheet = crate::prices::sheet_from_row(&r)
                    // Stored by the admin API after validation; a row that no longer reads prices
                    // nothing rather than something wrong.
                    .inspect_err(|e| tracing::error!(price_id = id, "unreadable price row: {e}"))
                    .ok();
                prices.entry(r.get("model_key")).or_default().push((
                    id,
                    r.get("valid_from"),
                    sheet,
                ));
            }
        }
        // Discount multipliers as they are now (they apply to requests ingested after a change).
        let provider_keys: Vec<String> = rows
            .iter()
            .map(|r| r.rec.provider_key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let key_ids: Vec<Uuid> = rows
            .iter()
            .filter_map(|r| r.caller[0])
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // Both kinds of multiplier in one round trip: a batch's fixed cost is mostly round trips.
        let mut provider_ppm: HashMap<String, i32> = HashMap::new();
        let mut key_ppm: HashMap<Uuid, i32> = HashMap::new();
        let multipliers: Vec<(Option<String>, Option<Uuid>, i32)> = sqlx::query_as(
            "SELECT key, NULL::uuid, price_multiplier_ppm FROM providers
             WHERE key = ANY($1) AND price_multiplier_ppm <> 1000000
             UNION ALL
             SELECT NULL, id, price_multiplier_ppm FROM api_keys
             WHERE id = ANY($2) AND price_multiplier_ppm <> 1000000",
        )
        .bind(&provider_keys)
        .bind(&key_ids)
        .fetch_all(&self.pool)
        .await?;
        for (provider, key, ppm) in multipliers {
            match (provider, key) {
                (Some(p), _) => {
                    provider_ppm.insert(p, ppm);
                }
                (None, Some(k)) => {
                    key_ppm.insert(k, ppm);
                }
                (None, None) => {}
            }
        }
        for row in rows.iter_mut().filter(|r| !r.rec.attempts.is_empty()) {
            let key_id = row.caller[0];
            row.multipliers = [
                provider_ppm
                    .get(&row.rec.provider_key)
                    .map_or(pricing::PPM_ONE, |p| (*p).max(0) as u32),
                key_id
                    .and_then(|k| key_ppm.get(&k))
                    .map_or(pricing::PPM_ONE, |p| (*p).max(0) as u32),
            ];
            let valid = prices
                .get(&row.rec.model_key)
                .and_then(|ps| ps.iter().find(|(_, from, _)| *from <= row.at));
            let sheet = valid.and_then(|(_, _, s)| s.as_ref());
            let settled = pricing::settle(row.rec.usage.as_ref(), sheet, &row.multipliers);
            row.pricing_status = Some(settled.status());
            row.cost = settled.cost();
            let provider_cost = row
                .rec
                .usage
                .as_ref()
                .is_some_and(|u| u.provider_cost_pusd.is_some());
            if settled.cost().is_some() && !provider_cost {
                row.price_id = valid.map(|(id, _, _)| *id);
            }
        }
        Ok(())
    }
}

/// The usage kinds beyond the ledger's own columns, and multipliers other than 1, as stored in
/// `usage_extra`.
fn usage_extra(u: &weir_proto::logs::Usage, multipliers: [u32; 2]) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    let kinds = [
        ("cache_write_5m_tokens", u.cache_write_5m_tokens),
        ("cache_write_1h_tokens", u.cache_write_1h_tokens),
        ("audio_input_tokens", u.audio_input_tokens),
        ("audio_output_tokens", u.audio_output_tokens),
        ("image_input_tokens", u.image_input_tokens),
        ("image_output_tokens", u.image_output_tokens),
    ];
    for (k, v) in kinds {
        if let Some(v) = v {
            o.insert(k.into(), v.into());
        }
    }
    if let Some(c) = u.provider_cost_pusd {
        o.insert("provider_cost_pusd".into(), c.into());
    }
    if !u.service_tier.is_empty() {
        o.insert("service_tier".into(), pg_text(&u.service_tier).into());
    }
    if u.estimated {
        o.insert("estimated".into(), true.into());
    }
    // Provider-reported costs are the bill as is: no multiplier was applied to them.
    if u.provider_cost_pusd.is_none() {
        for (name, ppm) in ["provider_multiplier_ppm", "key_multiplier_ppm"]
            .into_iter()
            .zip(multipliers)
        {
            if ppm != pricing::PPM_ONE {
                o.insert(name.into(), ppm.into());
            }
        }
    }
    serde_json::Value::Object(o)
}

/// A UUIDv7 and the instant it names.
fn decode_log_id(bytes: &[u8]) -> Option<(Uuid, DateTime<Utc>)> {
    let id = Uuid::from_slice(bytes).ok()?;
    if id.get_version_num() != 7 {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    let at = DateTime::from_timestamp(secs as i64, nanos)?;
    // Postgres microsecond precision: round to what will be stored, so the key matches exactly.
    Some((id, DateTime::from_timestamp_micros(at.timestamp_micros())?))
}

/// Postgres text cannot hold NUL.
fn pg_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// Payload bytes as text Postgres will accept as json and can read back as text: valid JSON
/// with no `\u0000` escape (which `->>` cannot turn into text).
/// The common case (valid UTF-8 JSON without NUL escapes) is checked without building a value
/// and passed through as is.
fn pg_json(bytes: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if bytes.is_empty() {
        return None;
    }
    let valid = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    if valid && !memchr_u0000(bytes) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Some(text.into());
        }
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(mut v) => {
            scrub_nul(&mut v);
            serde_json::to_string(&v).ok().map(Into::into)
        }
        Err(_) => Some(
            serde_json::json!({ "weir_invalid_payload": String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}") })
                .to_string()
                .into(),
        ),
    }
}

fn memchr_u0000(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\\u0000").is_some()
}

fn scrub_nul(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub_nul),
        serde_json::Value::Object(o) => {
            let keys: Vec<String> = o.keys().filter(|k| k.contains('\0')).cloned().collect();
            for k in keys {
                if let Some(val) = o.remove(&k) {
                    o.insert(k.replace('\0', "\u{FFFD}"), val);
                }
            }
            o.values_mut().for_each(scrub_nul);
        }
        _ => {}
    }
}

fn opt_uuid(s: &str) -> Option<Uuid> {
    Uuid::parse_str(s).ok()
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Sends `rows` with `COPY {table} ({columns}) FROM STDIN (FORMAT binary)`: new rows by
/// construction (the batch's summaries, or the children of those just inserted), so they skip
/// `ON CONFLICT` and go in with COPY's multi-row inserts.
async fn copy_in(
    tx: &mut Tx<'_>,
    table: &str,
    columns: &str,
    rows: BinaryRows,
) -> Result<(), sqlx::Error> {
    if rows.rows() == 0 {
        return Ok(());
    }
    let statement = format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)");
    let mut copy = (**tx).copy_in_raw(&statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

/// The dedupe path: stages `rows` in a temporary copy of `table`, then inserts those whose log
/// id is not stored yet; returns their ids.
async fn insert_new(
    tx: &mut Tx<'_>,
    table: &str,
    columns: &str,
    rows: BinaryRows,
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if rows.rows() == 0 {
        return Ok(HashSet::new());
    }
    let stage = format!("weir_stage_{table}");
    // Once per connection (resends are rare); emptied by every commit.
    sqlx::query(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS)
         ON COMMIT DELETE ROWS"
    ))
    .execute(&mut **tx)
    .await?;
    copy_in(tx, &stage, columns, rows).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage}
         ON CONFLICT DO NOTHING RETURNING log_id"
    ))
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().collect())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The columns `summary_rows` writes, in order.
const SUMMARY_COLUMNS: &str = "log_id, created_at, request_id, operation, stream, model_key,
    provider_key, upstream_model, status_code, outcome, error_message, duration_us, ttfb_us,
    input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, total_tokens, cost_pusd,
    pricing_status, api_key_id, user_id, team_id, service_account_id, node_id, fleet_group,
    harness_key, harness_label, harness_version, user_agent, service, component, env,
    exposed_tool_count, invoked_tool_count, attempt_count, request_payload_truncated,
    response_payload_truncated, capture_mode, request_max_bytes, response_max_bytes,
    stream_max_events, policy_version, session_id, session_source, turn_kind,
    attempt_duration_us, attempt_ttfb_us";

/// The `request_logs` rows of `rows`.
fn summary_rows(rows: &[Decoded<'_>]) -> BinaryRows {
    // About what a row takes: 48 field lengths, ids, and short text.
    let mut copy = BinaryRows::with_capacity(rows.len() * 640);
    for r in rows {
        let rec = r.rec;
        let usage = rec.usage.as_ref();
        let harness = rec.harness.as_ref();
        let tokens = |f: fn(&weir_proto::logs::Usage) -> Option<u64>| opt_i64(usage.and_then(f));
        let tag = |k: &str| {
            rec.tags
                .iter()
                .find(|t| t.key == k)
                .map(|t| t.value.as_str())
        };
        r.begin_row(&mut copy);
        copy.text(&rec.request_id);
        copy.text(&rec.operation);
        copy.bool(rec.stream);
        copy.text(&rec.model_key);
        copy.text(&rec.provider_key);
        copy.text(&rec.upstream_model);
        copy.int4(Some(rec.status_code as i32));
        copy.text(&rec.outcome);
        copy.text(&rec.error_message);
        copy.int8(Some(opt_i64(Some(rec.duration_us)).unwrap_or(i64::MAX)));
        copy.int8(opt_i64(rec.ttfb_us));
        copy.int8(tokens(|u| u.input_tokens));
        copy.int8(tokens(|u| u.output_tokens));
        copy.int8(tokens(|u| u.cached_input_tokens));
        copy.int8(tokens(|u| u.reasoning_tokens));
        copy.int8(tokens(|u| u.total_tokens));
        copy.int8(r.cost);
        copy.opt_text(r.pricing_status);
        for id in r.caller {
            copy.uuid(id);
        }
        copy.text(&rec.node_id);
        copy.text(&rec.fleet_group);
        let harness_key = harness.map_or("", |h| h.key.as_str());
        copy.text(if harness_key.is_empty() {
            "unknown"
        } else {
            harness_key
        });
        copy.text(harness.map_or("", |h| h.label.as_str()));
        copy.text(harness.map_or("", |h| h.version.as_str()));
        copy.text(harness.map_or("", |h| h.user_agent.as_str()));
        copy.opt_text(tag("service"));
        copy.opt_text(tag("component"));
        copy.opt_text(tag("env"));
        copy.int4(rec.exposed_tool_count.map(|v| v as i32));
        copy.int4(rec.invoked_tool_count.map(|v| v as i32));
        copy.int2(rec.attempts.len().min(i16::MAX as usize) as i16);
        copy.bool(rec.request_payload_truncated);
        copy.bool(rec.response_payload_truncated);
        // The policy as typed columns (migration 0019): a jsonb document per row cost Postgres
        // a parse each.
        let policy = rec.policy.as_ref();
        copy.text(policy.map_or("", |p| p.capture_mode.as_str()));
        copy.int8(Some(policy.map_or(0, |p| p.request_max_bytes).into()));
        copy.int8(Some(policy.map_or(0, |p| p.response_max_bytes).into()));
        copy.int8(Some(policy.map_or(0, |p| p.stream_max_events).into()));
        copy.text(policy.map_or("", |p| p.policy_version.as_str()));
        copy.opt_text(non_empty(&rec.session_id));
        copy.opt_text(non_empty(&rec.session_source));
        copy.opt_text(non_empty(&rec.turn_kind));
        // The attempt carried here instead of in request_log_attempts (migration 0020).
        let inline = r.inline_attempt;
        copy.int8(inline.map(|a| opt_i64(Some(a.duration_us)).unwrap_or(i64::MAX)));
        copy.int8(inline.and_then(|a| opt_i64(a.ttfb_us)));
        copy.end_row();
    }
    copy
}

/// The columns `ledger_rows` writes, in order.
const LEDGER_COLUMNS: &str = "log_id, created_at, api_key_id, user_id, team_id,
    service_account_id, model_key, provider_key, upstream_model, input_tokens,
    cached_input_tokens, output_tokens, reasoning_tokens, pricing_status, cost_pusd, price_id,
    usage_extra";

/// The `usage_cost_events` rows of the provider-backed records among `rows`.
fn ledger_rows<'a, 'r: 'a>(rows: impl Iterator<Item = &'a Decoded<'r>>) -> BinaryRows {
    let mut copy = BinaryRows::with_capacity(rows.size_hint().0 * 320);
    let no_usage = weir_proto::logs::Usage::default();
    for r in rows {
        let Some(status) = r.pricing_status else {
            continue;
        };
        let usage = r.rec.usage.as_ref();
        let tokens = |f: fn(&weir_proto::logs::Usage) -> Option<u64>| opt_i64(usage.and_then(f));
        r.begin_row(&mut copy);
        for id in r.caller {
            copy.uuid(id);
        }
        copy.text(&r.rec.model_key);
        copy.text(&r.rec.provider_key);
        copy.text(&r.rec.upstream_model);
        copy.int8(tokens(|u| u.input_tokens));
        copy.int8(tokens(|u| u.cached_input_tokens));
        copy.int8(tokens(|u| u.output_tokens));
        copy.int8(tokens(|u| u.reasoning_tokens));
        copy.text(status);
        copy.int8(r.cost);
        copy.int8(r.price_id);
        copy.jsonb(&usage_extra(usage.unwrap_or(&no_usage), r.multipliers).to_string());
        copy.end_row();
    }
    copy
}

async fn insert_payloads(
    tx: &mut Tx<'_>,
    rows: &[&Decoded<'_>],
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let bytes: usize = rows
        .iter()
        .map(|r| 64 + r.rec.request_payload.len() + r.rec.response_payload.len())
        .sum();
    let mut copy = BinaryRows::with_capacity(bytes);
    let mut days = Vec::new();
    for r in rows {
        let (req, resp) = (
            pg_json(&r.rec.request_payload),
            pg_json(&r.rec.response_payload),
        );
        if req.is_none() && resp.is_none() {
            continue;
        }
        r.begin_row(&mut copy);
        for doc in [&req, &resp] {
            match doc {
                Some(doc) => copy.json(doc),
                None => copy.null(),
            }
        }
        copy.end_row();
        days.push(r.at);
    }
    copy_in(
        tx,
        "request_log_payloads",
        "log_id, created_at, request, response",
        copy,
    )
    .await?;
    Ok(days)
}

async fn insert_tags(
    tx: &mut Tx<'_>,
    rows: &[&Decoded<'_>],
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let mut copy = BinaryRows::default();
    let mut days = Vec::new();
    for r in rows {
        let mut seen = HashSet::new();
        for t in &r.rec.tags {
            if seen.insert(t.key.as_str()) {
                r.begin_row(&mut copy);
                copy.text(&t.key);
                copy.text(&t.value);
                copy.end_row();
                days.push(r.at);
            }
        }
    }
    copy_in(
        tx,
        "request_log_tags",
        "log_id, created_at, key, value",
        copy,
    )
    .await?;
    Ok(days)
}

/// The request's attempt when its summary row can carry it whole: the only attempt, number 1,
/// it produced the response without an error, at the summary's provider, upstream model and
/// status. Everything else (retries, fallbacks, failures) is stored in request_log_attempts.
fn inline_attempt(rec: &RequestLog) -> Option<&weir_proto::logs::Attempt> {
    match rec.attempts.as_slice() {
        [a] if a.number == 1
            && a.produced_response
            && a.error_kind.is_empty()
            && a.error_message.is_empty()
            && a.provider_key == rec.provider_key
            && a.upstream_model == rec.upstream_model
            && a.status_code == rec.status_code =>
        {
            Some(a)
        }
        _ => None,
    }
}

async fn insert_attempts(
    tx: &mut Tx<'_>,
    rows: &[&Decoded<'_>],
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let mut copy = BinaryRows::with_capacity(rows.len() * 160);
    let mut days = Vec::new();
    for r in rows {
        // Counted for the purge's report like a stored one.
        if r.inline_attempt.is_some() {
            days.push(r.at);
            continue;
        }
        // A record repeating an attempt number keeps the first, as the key would.
        let mut seen = HashSet::new();
        for a in &r.rec.attempts {
            let no = a.number.min(i16::MAX as u32) as i16;
            if !seen.insert(no) {
                continue;
            }
            r.begin_row(&mut copy);
            copy.int2(no);
            copy.text(&a.provider_key);
            copy.text(&a.upstream_model);
            copy.int4(Some(a.status_code as i32));
            copy.text(&a.error_kind);
            copy.text(&a.error_message);
            copy.int8(Some(opt_i64(Some(a.duration_us)).unwrap_or(i64::MAX)));
            copy.int8(opt_i64(a.ttfb_us));
            copy.bool(a.produced_response);
            copy.end_row();
            days.push(r.at);
        }
    }
    copy_in(
        tx,
        "request_log_attempts",
        "log_id, created_at, attempt_no, provider_key, upstream_model, status_code, error_kind,
         error_message, duration_us, ttfb_us, produced_response",
        copy,
    )
    .await?;
    Ok(days)
}

/// Serves `weir.logs.v1.LogIngest`.
pub struct IngestService {
    writer: Arc<LogWriter>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl IngestService {
    /// A service writing through `writer`.
    pub fn new(writer: Arc<LogWriter>, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        IngestService { writer, stopping }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl LogIngest for IngestService {
    type IngestStream = AckStream;

    async fn ingest(
        &self,
        request: Request<Streaming<LogBatch>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let writer = self.writer.clone();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            // Several batches of one stream are written concurrently (each in its own
            // transaction, so commits overlap their WAL flushes), and acked strictly in order:
            // a node treats an ack as covering every earlier sequence.
            let mut in_flight = FuturesOrdered::new();
            let mut input_open = true;
            loop {
                tokio::select! {
                    // Stopping: take no more batches; those in flight still get their acks.
                    _ = stopping.changed(), if input_open => input_open = false,
                    msg = inbound.message(), if input_open && in_flight.len() < CONCURRENT_BATCHES => {
                        match msg {
                            Ok(Some(batch)) => {
                                let writer = writer.clone();
                                in_flight.push_back(async move {
                                    let result = writer.write(&batch.records).await;
                                    (batch.sequence, result)
                                });
                            }
                            Ok(None) => input_open = false,
                            Err(status) => {
                                tracing::debug!(%status, "ingest stream ended");
                                input_open = false;
                            }
                        }
                    }
                    Some((sequence, result)) = in_flight.next(), if !in_flight.is_empty() => {
                        match result {
                            Ok(o) => {
                                let ack = BatchAck {
                                    sequence,
                                    inserted: o.inserted,
                                    duplicates: o.duplicates,
                                    rejected: o.rejected,
                                };
                                if tx.send(Ok(ack)).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, sequence, "batch not written");
                                let _ = tx.send(Err(Status::from(e))).await;
                                break;
                            }
                        }
                    }
                    else => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_must_be_v7() {
        let v7 = Uuid::now_v7();
        let (id, at) = decode_log_id(v7.as_bytes()).expect("v7 decodes");
        assert_eq!(id, v7);
        assert!((Utc::now() - at).num_seconds().abs() < 5);
        assert!(decode_log_id(Uuid::new_v4().as_bytes()).is_none());
        assert!(decode_log_id(&[1, 2, 3]).is_none());
        assert!(decode_log_id(&[]).is_none());
    }

    #[test]
    fn only_a_clean_single_attempt_rides_on_the_summary_row() {
        use weir_proto::logs::Attempt;
        let ok = Attempt {
            number: 1,
            provider_key: "openai".into(),
            upstream_model: "gpt-4o".into(),
            status_code: 200,
            duration_us: 900,
            ttfb_us: Some(300),
            produced_response: true,
            ..Attempt::default()
        };
        let rec = |attempts: Vec<Attempt>| RequestLog {
            provider_key: "openai".into(),
            upstream_model: "gpt-4o".into(),
            status_code: 200,
            attempts,
            ..RequestLog::default()
        };
        let with = |f: fn(&mut Attempt)| {
            let mut a = ok.clone();
            f(&mut a);
            a
        };
        let failed = with(|a| {
            a.status_code = 503;
            a.produced_response = false;
        });
        let cases: Vec<(&str, Vec<Attempt>, bool)> = vec![
            ("the usual request", vec![ok.clone()], true),
            ("no attempt (refused before the provider)", vec![], false),
            (
                "a fallback",
                vec![failed.clone(), with(|a| a.number = 2)],
                false,
            ),
            ("the only attempt failed", vec![failed], false),
            (
                "an error kind",
                vec![with(|a| a.error_kind = "timeout".into())],
                false,
            ),
            (
                "an error message",
                vec![with(|a| a.error_message = "cut".into())],
                false,
            ),
            (
                "another provider",
                vec![with(|a| a.provider_key = "azure".into())],
                false,
            ),
            (
                "another upstream model",
                vec![with(|a| a.upstream_model = "x".into())],
                false,
            ),
            ("another status", vec![with(|a| a.status_code = 201)], false),
            ("numbered 2", vec![with(|a| a.number = 2)], false),
            (
                "not the response",
                vec![with(|a| a.produced_response = false)],
                false,
            ),
        ];
        for (name, attempts, inline) in cases {
            let r = rec(attempts);
            assert_eq!(inline_attempt(&r).is_some(), inline, "{name}");
        }
        let r = rec(vec![ok.clone()]);
        assert_eq!(inline_attempt(&r), Some(&ok));
    }

    #[test]
    fn payload_text_is_always_storable() {
        assert_eq!(pg_json(b""), None);
        assert_eq!(pg_json(br#"{"a":1}"#).as_deref(), Some(r#"{"a":1}"#));
        let nul = pg_json(br#"{"a":"x\u0000y","k\u0000":[1]}"#).unwrap();
        assert!(!nul.contains("\\u0000"), "{nul}");
        assert!(nul.contains("x\u{FFFD}y"), "{nul}");
        let bad = pg_json(b"{not json").unwrap();
        let v: serde_json::Value = serde_json::from_str(&bad).unwrap();
        assert_eq!(v["weir_invalid_payload"], "{not json");
        assert_eq!(pg_text("a\0b"), "a\u{FFFD}b");
    }
}

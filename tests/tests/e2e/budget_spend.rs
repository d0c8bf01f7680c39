//! Budget spend from the spend rollups (migration 0017) against the ledger sum it replaced:
//! equal for every subject kind, period and cut-off, with totals pending, folded or both, and
//! for history written before the migration.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use weir_control_plane::budget_spend::{spends, Subject};
use weir_control_plane::database::{connect, MIGRATOR};
use weir_control_plane::log_ingest::LogWriter;
use weir_control_plane::partitions::Partitions;
use weir_control_plane::usage_rollup;
use weir_proto::logs::Caller;

const PERIODS: [&str; 3] = ["day", "month", "total"];

/// The ledger sum budgets used before the rollups: the oracle.
async fn ledger_sum(pool: &PgPool, s: &Subject, as_of_ms: i64) -> i64 {
    let column = match s.kind.as_str() {
        "key" => "api_key_id",
        "user" => "user_id",
        _ => "team_id",
    };
    let since = match s.period.as_str() {
        "day" => "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        "total" => "'-infinity'::timestamptz",
        _ => "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    };
    let sum: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT sum(cost_pusd)::bigint FROM usage_cost_events
         WHERE {column} = $1 AND created_at >= {since}
           AND created_at <= to_timestamp($2::double precision / 1000)"
    ))
    .bind(s.id)
    .bind(as_of_ms)
    .fetch_one(pool)
    .await
    .unwrap();
    sum.unwrap_or(0)
}

struct Callers {
    keys: [Uuid; 3],
    users: [Uuid; 2],
    team: Uuid,
}

impl Callers {
    fn new() -> Self {
        Callers {
            keys: [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()],
            users: [Uuid::now_v7(), Uuid::now_v7()],
            team: Uuid::now_v7(),
        }
    }

    fn subjects(&self) -> Vec<Subject> {
        let ids = self
            .keys
            .iter()
            .map(|k| ("key", *k))
            .chain(self.users.iter().map(|u| ("user", *u)))
            .chain([("team", self.team)]);
        ids.flat_map(|(kind, id)| {
            PERIODS.map(|p| Subject {
                kind: kind.into(),
                id,
                period: p.into(),
            })
        })
        .collect()
    }

    /// Caller `i` of a rotation over keys, users with and without a team, and a service
    /// account's key (team, no user).
    fn caller(&self, i: usize) -> Caller {
        let key = self.keys[i % 3];
        match i % 4 {
            0 => Caller {
                api_key_id: key.to_string(),
                user_id: self.users[0].to_string(),
                team_id: self.team.to_string(),
                ..Default::default()
            },
            1 => Caller {
                api_key_id: key.to_string(),
                user_id: self.users[1].to_string(),
                ..Default::default()
            },
            2 => Caller {
                api_key_id: key.to_string(),
                team_id: self.team.to_string(),
                service_account_id: Uuid::now_v7().to_string(),
                ..Default::default()
            },
            _ => Caller {
                api_key_id: key.to_string(),
                user_id: self.users[0].to_string(),
                ..Default::default()
            },
        }
    }
}

/// Times across the periods' edges: older months, the month's and day's first instants, the
/// last seconds (which a cut-off leaves out).
fn times(now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let day = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .unwrap();
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let mut at = vec![
        now - Duration::days(75),
        month - Duration::milliseconds(1),
        month,
        month + Duration::hours(12),
        day - Duration::milliseconds(1),
        day,
        day + Duration::hours(12) - Duration::milliseconds(1),
    ];
    for ms in [30_000, 5_000, 2_500, 2_000, 1_999, 1_000, 1, 0] {
        at.push(now - Duration::milliseconds(ms));
    }
    at.retain(|t| *t <= now);
    at
}

async fn priced_pool(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO prices (model_key, input_pusd_per_token, cached_input_pusd_per_token,
                             output_pusd_per_token, valid_from)
         VALUES ('m', 1000000, 0, 0, now() - interval '400 days')",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn assert_same_as_ledger(pool: &PgPool, callers: &Callers, now_ms: i64, when: &str) {
    let subjects = callers.subjects();
    for cut in [0, 1, 1_000, 2_000, 2_500, 10_000] {
        let as_of = now_ms - cut;
        let mut conn = pool.acquire().await.unwrap();
        let got = spends(&mut conn, &subjects, as_of).await.unwrap();
        for (s, got) in subjects.iter().zip(got) {
            let want = ledger_sum(pool, s, as_of).await;
            assert_eq!(
                got, want,
                "{when}: {} {} {} as of now - {cut} ms",
                s.kind, s.id, s.period
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_spend_from_rollups_equals_the_ledger_sum() {
    let url = weir_e2e::fresh_database().await;
    let pool = connect(&url).await.unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    priced_pool(&pool).await;
    let writer = LogWriter::new(pool.clone(), Arc::new(Partitions::default()));
    let callers = Callers::new();
    // Whole milliseconds, as log ids (and so created_at) are.
    let now = Utc
        .timestamp_millis_opt(Utc::now().timestamp_millis())
        .unwrap();
    let now_ms = now.timestamp_millis();
    let mut n = 0;
    let mut batch = |input: u64| {
        times(now)
            .into_iter()
            .map(|at| {
                n += 1;
                let mut r = weir_e2e::record(at, Uuid::nil(), "m", input + n as u64);
                r.caller = Some(callers.caller(n));
                // Opted-out owners' spend is in the ledger without a request log.
                r.ledger_only = n % 5 == 0;
                r
            })
            .collect::<Vec<_>>()
    };
    let first = batch(10);
    let second = batch(1_000);
    writer.write(&first).await.unwrap();
    assert_same_as_ledger(&pool, &callers, now_ms, "all pending").await;
    assert!(usage_rollup::fold(&pool).await.unwrap() > 0);
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_rollup_spend")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(folded > 0, "spend buckets were folded");
    assert_same_as_ledger(&pool, &callers, now_ms, "all folded").await;
    writer.write(&second).await.unwrap();
    // A resent batch adds nothing.
    writer.write(&first).await.unwrap();
    assert_same_as_ledger(&pool, &callers, now_ms, "folded and pending").await;
    usage_rollup::fold(&pool).await.unwrap();
    assert_same_as_ledger(&pool, &callers, now_ms, "folded twice").await;
    let key_total = spends(
        &mut pool.acquire().await.unwrap(),
        &[Subject {
            kind: "key".into(),
            id: callers.keys[0],
            period: "total".into(),
        }],
        now_ms,
    )
    .await
    .unwrap()[0];
    assert!(key_total > 0, "the sums are not all zero: {key_total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_backfills_spend_from_the_ledger_and_pending_rows() {
    let url = weir_e2e::fresh_database().await;
    let pool = connect(&url).await.unwrap();
    // The schema before spend rollups, with history written the way that version wrote it:
    // ledger rows, and pending totals not yet folded (no key column then).
    let before = sqlx::migrate::Migrator {
        migrations: MIGRATOR
            .migrations
            .iter()
            .filter(|m| m.version < 17)
            .cloned()
            .collect(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let callers = Callers::new();
    // Whole milliseconds, as log ids (and so created_at) are.
    let now = Utc
        .timestamp_millis_opt(Utc::now().timestamp_millis())
        .unwrap();
    let now_ms = now.timestamp_millis();
    for (i, at) in times(now).into_iter().enumerate() {
        let c = callers.caller(i);
        let opt = |s: &str| Uuid::parse_str(s).ok();
        let cost = 1_000_000 * (i as i64 + 1);
        sqlx::query(
            "INSERT INTO usage_cost_events (log_id, created_at, api_key_id, user_id, team_id,
                 model_key, provider_key, upstream_model, pricing_status, cost_pusd)
             VALUES ($1, $2, $3, $4, $5, 'm', 'mock', 'up', 'priced', $6)",
        )
        .bind(Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.timestamp() as u64,
            at.timestamp_subsec_nanos(),
        )))
        .bind(at)
        .bind(opt(&c.api_key_id))
        .bind(opt(&c.user_id))
        .bind(opt(&c.team_id))
        .bind(cost)
        .execute(&pool)
        .await
        .unwrap();
        // Half of them not folded yet when the new version starts.
        if i % 2 == 0 {
            sqlx::query(
                "INSERT INTO usage_rollup_pending (bucket, user_id, team_id, model_key,
                     harness_key, harness_label, requests, cost_pusd, input_tokens, output_tokens,
                     exposed_tools_sum, exposed_tools_n, invoked_tools_sum, invoked_tools_n)
                 VALUES (date_bin('12 hours', $1, 'epoch'), $2, $3, 'm', 'unknown', '', 1, $4,
                         0, 0, 0, 0, 0, 0)",
            )
            .bind(at)
            .bind(opt(&c.user_id))
            .bind(opt(&c.team_id))
            .bind(cost)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    MIGRATOR.run(&pool).await.unwrap();
    assert_same_as_ledger(&pool, &callers, now_ms, "migrated, pending not folded").await;
    usage_rollup::fold(&pool).await.unwrap();
    assert_same_as_ledger(&pool, &callers, now_ms, "migrated and folded").await;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'usage_cost_events' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        ["usage_cost_events_pkey"],
        "only the primary key is left"
    );
}

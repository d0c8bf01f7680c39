//! Budget spend per subject (API key, user, team) for the limits the fleet enforces: the
//! 12-hour spend buckets folded so far, plus the pending totals, less the ledger rows after the
//! sum's cut-off (migration 0017, ADR 0010). One statement, so the folding job cannot move
//! pending rows into the buckets between the two reads.

use uuid::Uuid;

/// A subject with a budget: its kind (`key`, `user` or `team`), id and period (`day`, `month`
/// or `total`; anything else counts as `month`, the default).
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: String,
    pub id: Uuid,
    pub period: String,
}

/// The lowest UUIDv7 of millisecond `ms`: log ids at or above it were created at `ms` or later.
pub fn v7_floor(ms: i64) -> Uuid {
    let ms = ms.clamp(0, (1 << 48) - 1) as u128;
    Uuid::from_u128(ms << 80)
}

/// Each subject's spend in its current UTC period up to `as_of_ms` (Unix milliseconds), in the
/// order given. Rows created after `as_of_ms` are left out exactly, as the ledger sum did.
pub async fn spends(
    conn: &mut sqlx::PgConnection,
    subjects: &[Subject],
    as_of_ms: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = subjects.iter().map(|s| s.kind.as_str()).collect();
    let ids: Vec<Uuid> = subjects.iter().map(|s| s.id).collect();
    let periods: Vec<&str> = subjects.iter().map(|s| s.period.as_str()).collect();
    // Period starts are UTC day or month starts, which are bucket boundaries (buckets are 12
    // hours from the epoch), so "bucket >= since" is exactly "created_at >= since".
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH s AS (
             SELECT n, kind, subject,
                    CASE period
                        WHEN 'day' THEN date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                        WHEN 'total' THEN '-infinity'::timestamptz
                        ELSE date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                    END AS since
             FROM UNNEST($1::text[], $2::uuid[], $3::text[]) WITH ORDINALITY AS u (kind, subject, period, n)
         ),
         pending AS (
             SELECT v.kind, v.subject, p.bucket, sum(p.cost_pusd) AS cost
             FROM usage_rollup_pending p
             CROSS JOIN LATERAL (VALUES ('key', p.api_key_id), ('user', p.user_id),
                                        ('team', p.team_id)) AS v (kind, subject)
             WHERE v.subject IS NOT NULL
             GROUP BY 1, 2, 3
         ),
         tail AS (
             SELECT v.kind, v.subject, e.created_at, coalesce(e.cost_pusd, 0) AS cost
             FROM usage_cost_events e
             CROSS JOIN LATERAL (VALUES ('key', e.api_key_id), ('user', e.user_id),
                                        ('team', e.team_id)) AS v (kind, subject)
             WHERE e.log_id >= $4 AND v.subject IS NOT NULL
         )
         SELECT s.n,
                (coalesce((SELECT sum(r.cost_pusd) FROM usage_rollup_spend r
                           WHERE r.kind = s.kind AND r.subject = s.subject AND r.bucket >= s.since), 0)
                 + coalesce((SELECT sum(p.cost) FROM pending p
                             WHERE p.kind = s.kind AND p.subject = s.subject AND p.bucket >= s.since), 0)
                 - coalesce((SELECT sum(t.cost) FROM tail t
                             WHERE t.kind = s.kind AND t.subject = s.subject AND t.created_at >= s.since), 0)
                )::bigint
         FROM s ORDER BY s.n",
    )
    .bind(kinds)
    .bind(ids)
    .bind(periods)
    .bind(v7_floor(as_of_ms.saturating_add(1)))
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(_, spent)| spent).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_floor_orders_below_every_id_of_its_millisecond_and_above_earlier_ones() {
        let cases = [0i64, 1, 1_764_400_000_000, (1 << 48) - 1];
        for ms in cases {
            let floor = v7_floor(ms);
            let id = Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                (ms / 1000) as u64,
                ((ms % 1000) * 1_000_000) as u32,
            ));
            assert!(floor <= id, "{ms}: floor {floor} above {id}");
            if ms > 0 {
                let earlier = Uuid::from_u128(((ms as u128 - 1) << 80) | ((1u128 << 80) - 1));
                assert!(
                    earlier < floor,
                    "{ms}: the previous millisecond's last id is below"
                );
            }
            let (secs, nanos) = id.get_timestamp().expect("v7").to_unix();
            assert_eq!(secs as i64 * 1000 + i64::from(nanos / 1_000_000), ms);
        }
        assert_eq!(
            v7_floor(-5),
            Uuid::nil(),
            "negative times clamp to the epoch"
        );
    }
}

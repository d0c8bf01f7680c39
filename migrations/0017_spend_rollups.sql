-- Budget spend from rollups instead of per-subject ledger indexes (ADR 0010, docs/limits.md).
--
-- A budget's spend was a sum over the ledger through one index per subject kind (key, user,
-- team): three B-tree inserts per request on the ingest path, and a sum over every row of the
-- period (millions for a busy key) on each snapshot refresh. Spend now comes from 12-hour
-- buckets per subject, folded from usage_rollup_pending like the leaderboard's rollups, plus
-- the pending rows; the last seconds are taken off through the ledger's primary key.
ALTER TABLE usage_rollup_pending ADD COLUMN api_key_id uuid;

CREATE TABLE usage_rollup_spend (
    kind       text NOT NULL CHECK (kind IN ('key', 'user', 'team')),
    subject    uuid NOT NULL,
    bucket     timestamptz NOT NULL,
    cost_pusd  bigint NOT NULL,
    PRIMARY KEY (kind, subject, bucket)
);

-- Backfill from the ledger as it stands, with writers held off so that the ledger and the
-- pending rows are read at the same point. Pending rows written before this migration have no
-- key, and their user and team spend would be added again when folded: it is taken off here.
-- Replicas still on the previous version during a rolling upgrade write pending rows without
-- a key: the key budgets miss that spend (user and team budgets do not), see ADR 0010.
LOCK TABLE usage_cost_events, usage_rollup_pending IN SHARE MODE;
INSERT INTO usage_rollup_spend (kind, subject, bucket, cost_pusd)
SELECT kind, subject, bucket, sum(cost) FROM (
    SELECT s.kind, s.subject, date_bin('12 hours', e.created_at, 'epoch') AS bucket,
           coalesce(e.cost_pusd, 0) AS cost
    FROM usage_cost_events e
    CROSS JOIN LATERAL (VALUES ('key', e.api_key_id), ('user', e.user_id), ('team', e.team_id))
        AS s (kind, subject)
    WHERE s.subject IS NOT NULL
    UNION ALL
    SELECT s.kind, s.subject, p.bucket, -p.cost_pusd
    FROM usage_rollup_pending p
    CROSS JOIN LATERAL (VALUES ('user', p.user_id), ('team', p.team_id)) AS s (kind, subject)
    WHERE s.subject IS NOT NULL
) d
GROUP BY kind, subject, bucket;

DROP INDEX IF EXISTS usage_cost_events_user_created;
DROP INDEX IF EXISTS usage_cost_events_key_created;
DROP INDEX IF EXISTS usage_cost_events_team_created;

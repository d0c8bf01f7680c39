-- Usage totals per 12-hour UTC bucket, serving the leaderboard and harness usage without
-- scanning request logs (docs/admin-api.md#leaderboard).
--
-- Ingest appends each batch's totals to usage_rollup_pending (plain inserts: concurrent batches
-- never wait on each other's rows); a folding job moves them into the two rollups under an
-- advisory lock. Readers add pending rows to the rollups, so an answer is exact either way.

CREATE TABLE usage_rollup_pending (
    bucket             timestamptz NOT NULL,
    user_id            uuid,
    team_id            uuid,
    model_key          text NOT NULL,
    harness_key        text NOT NULL,
    harness_label      text NOT NULL,
    requests           bigint NOT NULL,
    cost_pusd          bigint NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    exposed_tools_sum  bigint NOT NULL,
    exposed_tools_n    bigint NOT NULL,
    invoked_tools_sum  bigint NOT NULL,
    invoked_tools_n    bigint NOT NULL
);

-- Per user: ranking, tool averages and the chart read these (users x buckets rows).
CREATE TABLE usage_rollup_users (
    bucket             timestamptz NOT NULL,
    user_id            uuid NOT NULL,
    team_id            uuid,
    requests           bigint NOT NULL,
    cost_pusd          bigint NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    exposed_tools_sum  bigint NOT NULL,
    exposed_tools_n    bigint NOT NULL,
    invoked_tools_sum  bigint NOT NULL,
    invoked_tools_n    bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (bucket, user_id, team_id)
);

-- Per user and model: read only for the ranked users' dominant models, hence keyed by user first.
CREATE TABLE usage_rollup_user_models (
    user_id            uuid NOT NULL,
    bucket             timestamptz NOT NULL,
    team_id            uuid,
    model_key          text NOT NULL,
    requests           bigint NOT NULL,
    cost_pusd          bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, bucket, team_id, model_key)
);

CREATE TABLE usage_rollup_harnesses (
    bucket             timestamptz NOT NULL,
    harness_key        text NOT NULL,
    team_id            uuid,
    harness_label      text NOT NULL,
    requests           bigint NOT NULL,
    cost_pusd          bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (bucket, harness_key, team_id)
);

-- Existing history: request logs, and ledger rows of owners who opted out of request logging,
-- aggregated straight into the rollups (through the pending table, a large history would leave
-- it bloated, and every later fold would scan the bloat).
CREATE TEMPORARY TABLE rollup_backfill ON COMMIT DROP AS
SELECT date_bin('12 hours', created_at, 'epoch') AS bucket, user_id, team_id, model_key, harness_key,
       max(harness_label) AS harness_label, count(*) AS requests,
       coalesce(sum(cost_pusd), 0) AS cost_pusd,
       coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(exposed_tool_count), 0) AS exposed_tools_sum, count(exposed_tool_count) AS exposed_tools_n,
       coalesce(sum(invoked_tool_count), 0) AS invoked_tools_sum, count(invoked_tool_count) AS invoked_tools_n
FROM request_logs
GROUP BY 1, 2, 3, 4, 5;

INSERT INTO rollup_backfill
SELECT date_bin('12 hours', e.created_at, 'epoch'), e.user_id, e.team_id, e.model_key, 'unknown',
       '', count(*), coalesce(sum(e.cost_pusd), 0), coalesce(sum(e.input_tokens), 0),
       coalesce(sum(e.output_tokens), 0), 0, 0, 0, 0
FROM usage_cost_events e
WHERE NOT EXISTS (SELECT 1 FROM request_logs l WHERE l.log_id = e.log_id AND l.created_at = e.created_at)
GROUP BY 1, 2, 3, 4;

INSERT INTO usage_rollup_users
SELECT bucket, user_id, team_id, sum(requests), sum(cost_pusd), sum(input_tokens),
       sum(output_tokens), sum(exposed_tools_sum), sum(exposed_tools_n), sum(invoked_tools_sum),
       sum(invoked_tools_n)
FROM rollup_backfill WHERE user_id IS NOT NULL GROUP BY bucket, user_id, team_id;

INSERT INTO usage_rollup_user_models
SELECT user_id, bucket, team_id, model_key, sum(requests), sum(cost_pusd)
FROM rollup_backfill WHERE user_id IS NOT NULL GROUP BY user_id, bucket, team_id, model_key;

INSERT INTO usage_rollup_harnesses
SELECT bucket, harness_key, team_id, max(harness_label), sum(requests), sum(cost_pusd)
FROM rollup_backfill GROUP BY bucket, harness_key, team_id;

-- Every purge, scheduled or manual, dry or not (docs/retention.md). A scheduled run claims its
-- UTC day (by the database's clock, so replicas with skewed clocks agree) by inserting a row with
-- that day; the unique constraint lets exactly one replica win it.
CREATE TABLE purge_runs (
    id                 bigserial PRIMARY KEY,
    scheduled_day      date UNIQUE,
    trigger            text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    dry_run            boolean NOT NULL,
    replica            text NOT NULL,
    retention          text NOT NULL,
    cutoff             timestamptz NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    duration_ms        bigint,
    partitions_dropped integer NOT NULL DEFAULT 0,
    request_logs       bigint NOT NULL DEFAULT 0,
    payloads           bigint NOT NULL DEFAULT 0,
    tags               bigint NOT NULL DEFAULT 0,
    attempts           bigint NOT NULL DEFAULT 0,
    error              text NOT NULL DEFAULT ''
);

-- Rows per UTC day in each request-log table, so a purge reports what it dropped (and a dry run
-- counts whole days) without scanning partitions. Ingest appends each batch's counts to the
-- pending table; the folding job that keeps the usage rollups moves them into the totals.
CREATE TABLE request_log_day_counts (
    day       date PRIMARY KEY,
    logs      bigint NOT NULL,
    payloads  bigint NOT NULL,
    tags      bigint NOT NULL,
    attempts  bigint NOT NULL
);

CREATE TABLE request_log_day_counts_pending (
    day       date NOT NULL,
    logs      bigint NOT NULL,
    payloads  bigint NOT NULL,
    tags      bigint NOT NULL,
    attempts  bigint NOT NULL
);

INSERT INTO request_log_day_counts (day, logs, payloads, tags, attempts)
SELECT day, sum(logs), sum(payloads), sum(tags), sum(attempts) FROM (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS logs, 0 AS payloads, 0 AS tags, 0 AS attempts
    FROM request_logs GROUP BY 1
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 0, count(*), 0, 0 FROM request_log_payloads GROUP BY 1
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 0, 0, count(*), 0 FROM request_log_tags GROUP BY 1
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 0, 0, 0, count(*) FROM request_log_attempts GROUP BY 1
) c GROUP BY day;

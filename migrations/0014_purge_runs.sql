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

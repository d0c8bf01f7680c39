-- The payload policy a request log was written under, as typed columns instead of a jsonb
-- document per row.
--
-- Every row of a batch carries the same few values, and building each one's jsonb (parse,
-- sort keys) was ~9 % of Postgres's CPU per capture-off request. Reads rebuild the same JSON
-- from these columns plus `operation` and `stream` (the admin API's `policy` field is
-- unchanged). Rows written before this migration keep their `policy` document and read it;
-- rows written after leave it NULL.
--
-- Metadata-only on existing partitions: constant defaults and dropping a default rewrite
-- nothing.
ALTER TABLE request_logs
    ADD COLUMN capture_mode text NOT NULL DEFAULT '',
    ADD COLUMN request_max_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN response_max_bytes bigint NOT NULL DEFAULT 0,
    ADD COLUMN stream_max_events bigint NOT NULL DEFAULT 0,
    ADD COLUMN policy_version text NOT NULL DEFAULT '',
    ALTER COLUMN policy DROP NOT NULL,
    ALTER COLUMN policy DROP DEFAULT;

-- Cheaper request-log ingest (see docs/benchmarks.md, control-plane ingest).

-- The ledger's reference to its price row was checked per inserted row, and every concurrent
-- batch took a key-share lock on the same few price rows (multixacts under load). Prices are
-- append-only (a new price is a new row; nothing deletes one), so the reference cannot dangle.
ALTER TABLE usage_cost_events DROP CONSTRAINT IF EXISTS usage_cost_events_price_id_fkey;

-- Payloads are TOASTed JSON of a few KB; lz4 compresses them several times faster than the
-- default pglz. Postgres builds without lz4 keep pglz.
DO $$
BEGIN
    ALTER TABLE request_log_payloads ALTER COLUMN request SET COMPRESSION lz4;
    ALTER TABLE request_log_payloads ALTER COLUMN response SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 unavailable; request_log_payloads keeps the default compression';
END
$$;

-- Log ids are UUIDv7, so their order is creation order: the primary keys serve newest-first
-- listings and time ranges, and separate created_at indexes only cost writes.
DROP INDEX IF EXISTS request_logs_created;
DROP INDEX IF EXISTS usage_cost_events_created;


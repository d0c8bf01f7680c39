-- Request and response payloads as `json` (validated text) instead of `jsonb` (ADR 0011).
--
-- Payloads are written once, read back whole and never queried inside by the control plane;
-- jsonb's input parsing was the largest single cost of storing them (Postgres 15 builds every
-- string of a kilobytes-long conversation char by char). `json` validates the same text
-- without building it, keeps the key order and formatting the gateway wrote, and still
-- supports -> and ->> for ad-hoc queries.
--
-- This rewrites existing payload partitions (the type changes), holding their lock meanwhile.
ALTER TABLE request_log_payloads
    ALTER COLUMN request TYPE json USING request::json,
    ALTER COLUMN response TYPE json USING response::json;
-- Keep lz4 where the server has it (migration 0006), for the partitions created from now on.
DO $$
BEGIN
    ALTER TABLE request_log_payloads ALTER COLUMN request SET COMPRESSION lz4;
    ALTER TABLE request_log_payloads ALTER COLUMN response SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 unavailable; request_log_payloads keeps the default compression';
END
$$;

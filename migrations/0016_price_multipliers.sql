-- Negotiated discounts (or internal mark-ups) on computed costs, per provider and per key, in
-- parts per million (1,000,000: no change). Applied to new requests; ledger rows keep the
-- multipliers they were priced with in usage_extra. See docs/cost.md.
ALTER TABLE providers
    ADD COLUMN price_multiplier_ppm integer NOT NULL DEFAULT 1000000
    CHECK (price_multiplier_ppm >= 0);
ALTER TABLE api_keys
    ADD COLUMN price_multiplier_ppm integer NOT NULL DEFAULT 1000000
    CHECK (price_multiplier_ppm >= 0);
-- Ingest looks up the few keys with a multiplier per batch.
CREATE INDEX api_keys_price_multiplier ON api_keys (id) WHERE price_multiplier_ppm <> 1000000;

-- Which operations a model serves (empty: all), so a capability mismatch is refused before any
-- upstream call.
ALTER TABLE models ADD COLUMN operations text[] NOT NULL DEFAULT '{}';

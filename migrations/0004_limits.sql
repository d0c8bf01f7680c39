-- Rate limits and budgets for users and teams (keys already have `limits`), and the config
-- stream resource types that carry them and the prices nodes need to count spend.
ALTER TABLE users ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';
ALTER TABLE teams ADD COLUMN limits jsonb NOT NULL DEFAULT '{}';
INSERT INTO config_versions (resource_type) VALUES ('limits'), ('pricing');
CREATE INDEX usage_cost_events_key_created ON usage_cost_events (api_key_id, created_at);
CREATE INDEX usage_cost_events_team_created ON usage_cost_events (team_id, created_at);

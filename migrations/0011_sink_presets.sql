-- Back-end presets for telemetry sinks: non-secret preset options (base_url, site, project,
-- ml_app, pipeline_id) and preset secrets as environment-variable names on the nodes.
ALTER TABLE telemetry_sinks ADD COLUMN options jsonb NOT NULL DEFAULT '{}';
ALTER TABLE telemetry_sinks ADD COLUMN secrets_from_env jsonb NOT NULL DEFAULT '{}';

-- OTLP destinations pushed to every node on the config stream (see docs/observability.md).
-- Header values are environment-variable names on the nodes, never secrets.
CREATE TABLE telemetry_sinks (
    name              text PRIMARY KEY,
    kind              text NOT NULL,
    endpoint          text NOT NULL,
    protocol          text NOT NULL,
    headers_from_env  jsonb NOT NULL DEFAULT '{}',
    sample_ratio      double precision NOT NULL DEFAULT 1,
    metrics           boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_versions (resource_type) VALUES ('telemetry_sinks');

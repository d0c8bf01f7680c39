-- Per-sink opt-in to message content on spans (from the redacted, capped request-log payload).
ALTER TABLE telemetry_sinks ADD COLUMN capture_content boolean NOT NULL DEFAULT false;

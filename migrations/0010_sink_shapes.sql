-- Per-sink span shapes: the older indexed prompt/completion attributes some back ends still
-- read, and "start a new root linked to the caller's span" for back ends that hide spans whose
-- parent they never received.
ALTER TABLE telemetry_sinks ADD COLUMN legacy_attributes boolean NOT NULL DEFAULT false;
ALTER TABLE telemetry_sinks ADD COLUMN new_root boolean NOT NULL DEFAULT false;

-- Weir schema v1. See docs/schema.md for the overview and docs/adr/0001-request-log-partitioning.md for why
-- request-log tables are partitioned by day and carry no foreign keys.

-- ---------------------------------------------------------------------------------------------
-- Identities and access
-- ---------------------------------------------------------------------------------------------

CREATE TABLE teams (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                       uuid PRIMARY KEY,
    name                     text NOT NULL UNIQUE,
    email                    text NOT NULL DEFAULT '',
    request_logging_enabled  boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_members (
    team_id  uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE service_accounts (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    team_id     uuid NOT NULL REFERENCES teams (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

-- Gateway keys: only the SHA-256 of the key and a short display prefix are stored.
CREATE TABLE api_keys (
    id                        uuid PRIMARY KEY,
    name                      text NOT NULL,
    key_hash                  bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    display_prefix            text NOT NULL,
    owner_user_id             uuid REFERENCES users (id),
    owner_service_account_id  uuid REFERENCES service_accounts (id),
    -- The user the traffic is attributed to (for user-owned keys, the owner).
    user_id                   uuid REFERENCES users (id),
    team_id                   uuid REFERENCES teams (id),
    allowed_models            text[] NOT NULL DEFAULT '{}',
    -- Per-key limits (requests/tokens per minute, budgets), shaped by the limits issue.
    limits                    jsonb NOT NULL DEFAULT '{}',
    fleet_groups              text[] NOT NULL DEFAULT '{}',
    expires_at                timestamptz,
    revoked_at                timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    CHECK ((owner_user_id IS NULL) <> (owner_service_account_id IS NULL))
);
CREATE INDEX api_keys_display_prefix ON api_keys (display_prefix);

CREATE TABLE admin_tokens (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text NOT NULL CHECK (role IN ('platform_admin', 'team_viewer')),
    team_id     uuid REFERENCES teams (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (role <> 'team_viewer' OR team_id IS NOT NULL)
);

-- ---------------------------------------------------------------------------------------------
-- Providers, models, routes, pricing, payload policy
-- ---------------------------------------------------------------------------------------------

CREATE TABLE providers (
    id             uuid PRIMARY KEY,
    key            text NOT NULL UNIQUE,
    kind           text NOT NULL,
    base_url       text NOT NULL,
    -- Name of an environment variable on the data-plane host; never the secret.
    api_key_env    text NOT NULL DEFAULT '',
    extra_headers  jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A model key is what clients send; its route is the ordered, weighted list of targets.
CREATE TABLE models (
    id            uuid PRIMARY KEY,
    key           text NOT NULL UNIQUE,
    -- Retry/fallback/timeouts policy of the route, shaped by the routing issue.
    route_policy  jsonb NOT NULL DEFAULT '{}',
    fleet_groups  text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_targets (
    model_id        uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    position        integer NOT NULL,
    provider_id     uuid NOT NULL REFERENCES providers (id),
    upstream_model  text NOT NULL,
    weight          integer NOT NULL DEFAULT 1 CHECK (weight >= 0),
    PRIMARY KEY (model_id, position)
);

-- Prices are append-only: a new row with a later valid_from replaces an older one for new
-- requests, and ledger rows keep the id (version) of the row they were priced with.
-- Unit: picodollars per token, which is exactly micro-dollars per million tokens.
CREATE TABLE prices (
    id                          bigserial PRIMARY KEY,
    model_key                   text NOT NULL,
    provider_key                text,
    input_pusd_per_token        bigint NOT NULL CHECK (input_pusd_per_token >= 0),
    cached_input_pusd_per_token bigint NOT NULL CHECK (cached_input_pusd_per_token >= 0),
    output_pusd_per_token       bigint NOT NULL CHECK (output_pusd_per_token >= 0),
    -- Further usage kinds and tiers (cache writes, reasoning, long context, service tiers).
    extra                       jsonb NOT NULL DEFAULT '{}',
    valid_from                  timestamptz NOT NULL DEFAULT now(),
    created_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX prices_lookup ON prices (model_key, valid_from DESC);

-- The payload policy; one row per fleet group ('' is the default for every group).
CREATE TABLE payload_policies (
    fleet_group         text PRIMARY KEY,
    capture_mode        text NOT NULL DEFAULT 'redacted_payloads'
                        CHECK (capture_mode IN ('disabled', 'summary_only', 'redacted_payloads')),
    request_max_bytes   integer NOT NULL DEFAULT 65536 CHECK (request_max_bytes > 0),
    response_max_bytes  integer NOT NULL DEFAULT 65536 CHECK (response_max_bytes > 0),
    stream_max_events   integer NOT NULL DEFAULT 128 CHECK (stream_max_events > 0),
    redaction_paths     text[] NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO payload_policies (fleet_group) VALUES ('');

-- One counter per resource type, bumped in the same transaction as any change to it; the
-- config stream's version of a type is this counter, and a NOTIFY on `weir_config` tells every
-- control-plane replica to push it.
CREATE TABLE config_versions (
    resource_type  text PRIMARY KEY,
    version        bigint NOT NULL DEFAULT 1,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_versions (resource_type)
VALUES ('providers'), ('routes'), ('api_keys'), ('payload_policy');

-- Every data plane that has connected, and what it holds.
CREATE TABLE dataplanes (
    node_id            text PRIMARY KEY,
    fleet_group        text NOT NULL,
    software_version   text NOT NULL,
    address            text NOT NULL DEFAULT '',
    labels             jsonb NOT NULL DEFAULT '{}',
    acked_versions     jsonb NOT NULL DEFAULT '{}',
    last_nack          text,
    last_nack_at       timestamptz,
    connected_since    timestamptz,
    last_seen          timestamptz NOT NULL DEFAULT now(),
    control_plane      text NOT NULL DEFAULT ''
);

-- ---------------------------------------------------------------------------------------------
-- Request logs: partitioned by day on created_at (the timestamp of the UUIDv7 log id).
-- The primary key must contain the partition key; created_at is derived from log_id, so
-- (log_id, created_at) is unique exactly when log_id is. No foreign keys, so that a day's
-- partitions of all four tables can be dropped together.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE request_logs (
    log_id                      uuid NOT NULL,
    created_at                  timestamptz NOT NULL,
    request_id                  text NOT NULL,
    operation                   text NOT NULL,
    stream                      boolean NOT NULL,
    model_key                   text NOT NULL DEFAULT '',
    provider_key                text NOT NULL DEFAULT '',
    upstream_model              text NOT NULL DEFAULT '',
    status_code                 integer NOT NULL,
    outcome                     text NOT NULL,
    error_message               text NOT NULL DEFAULT '',
    duration_us                 bigint NOT NULL,
    ttfb_us                     bigint,
    input_tokens                bigint,
    output_tokens               bigint,
    cached_input_tokens         bigint,
    reasoning_tokens            bigint,
    total_tokens                bigint,
    cost_pusd                   bigint,
    pricing_status              text,
    api_key_id                  uuid,
    user_id                     uuid,
    team_id                     uuid,
    service_account_id          uuid,
    node_id                     text NOT NULL DEFAULT '',
    fleet_group                 text NOT NULL DEFAULT '',
    harness_key                 text NOT NULL DEFAULT 'unknown',
    harness_label               text NOT NULL DEFAULT '',
    harness_version             text NOT NULL DEFAULT '',
    user_agent                  text NOT NULL DEFAULT '',
    service                     text,
    component                   text,
    env                         text,
    exposed_tool_count          integer,
    invoked_tool_count          integer,
    session_id                  text,
    session_source              text,
    turn_kind                   text,
    attempt_count               smallint NOT NULL DEFAULT 0,
    request_payload_truncated   boolean NOT NULL DEFAULT false,
    response_payload_truncated  boolean NOT NULL DEFAULT false,
    -- The payload policy the row was written under (mode, caps, version).
    policy                      jsonb NOT NULL DEFAULT '{}',
    feedback                    jsonb,
    PRIMARY KEY (log_id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX request_logs_created ON request_logs (created_at DESC, log_id DESC);
CREATE INDEX request_logs_request_id ON request_logs (request_id);
CREATE INDEX request_logs_user_created ON request_logs (user_id, created_at DESC);
CREATE INDEX request_logs_model_created ON request_logs (model_key, created_at DESC);

CREATE TABLE request_log_payloads (
    log_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    request     jsonb,
    response    jsonb,
    PRIMARY KEY (log_id, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE request_log_tags (
    log_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    key         text NOT NULL,
    value       text NOT NULL,
    PRIMARY KEY (log_id, created_at, key)
) PARTITION BY RANGE (created_at);
CREATE INDEX request_log_tags_kv ON request_log_tags (key, value, created_at DESC);

CREATE TABLE request_log_attempts (
    log_id             uuid NOT NULL,
    created_at         timestamptz NOT NULL,
    attempt_no         smallint NOT NULL,
    provider_key       text NOT NULL,
    upstream_model     text NOT NULL,
    status_code        integer NOT NULL,
    error_kind         text NOT NULL DEFAULT '',
    error_message      text NOT NULL DEFAULT '',
    duration_us        bigint NOT NULL,
    ttfb_us            bigint,
    produced_response  boolean NOT NULL,
    PRIMARY KEY (log_id, created_at, attempt_no)
) PARTITION BY RANGE (created_at);

-- ---------------------------------------------------------------------------------------------
-- The spend ledger: one row per provider-backed request, never purged, idempotent on log_id.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE usage_cost_events (
    log_id               uuid PRIMARY KEY,
    created_at           timestamptz NOT NULL,
    api_key_id           uuid,
    user_id              uuid,
    team_id              uuid,
    service_account_id   uuid,
    model_key            text NOT NULL,
    provider_key         text NOT NULL,
    upstream_model       text NOT NULL,
    input_tokens         bigint,
    cached_input_tokens  bigint,
    output_tokens        bigint,
    reasoning_tokens     bigint,
    -- Further usage kinds (cache writes by lifetime, audio, image), shaped by the cost issue.
    usage_extra          jsonb NOT NULL DEFAULT '{}',
    pricing_status       text NOT NULL CHECK (pricing_status IN ('priced', 'unpriced', 'usage_missing', 'estimated')),
    cost_pusd            bigint,
    price_id             bigint REFERENCES prices (id)
);
CREATE INDEX usage_cost_events_created ON usage_cost_events (created_at);
CREATE INDEX usage_cost_events_user_created ON usage_cost_events (user_id, created_at);


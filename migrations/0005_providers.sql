-- Providers: Bedrock, Vertex and Foundry kinds, per-kind settings and sealed credentials;
-- route target priorities and timeouts; model aliases; circuit-breaker state reported by
-- data planes.

ALTER TABLE providers DROP CONSTRAINT providers_kind_check;
ALTER TABLE providers ADD CONSTRAINT providers_kind_check
    CHECK (kind IN ('demo', 'anthropic', 'bedrock', 'vertex', 'foundry'));

-- Non-secret settings (region, project_id, resource, bedrock_api, anthropic_version,
-- token_uri, timeouts); the endpoint override stays in `base_url`.
ALTER TABLE providers ADD COLUMN config jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(config) = 'object');
-- AES-256-GCM sealed JSON (purpose `provider-credentials`):
-- {"api_key": {"value": "…"} | {"env": "NAME"} | {"file": "/path"}, …}.
ALTER TABLE providers ADD COLUMN credentials bytea;
-- The plaintext `api_key` column is no longer written: control planes move any value into
-- `credentials` at start (they hold the secrets key; this migration does not).

-- NULL priority: the target's position in the list.
ALTER TABLE route_targets ADD COLUMN priority integer CHECK (priority >= 0);
ALTER TABLE route_targets ADD COLUMN timeouts jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(timeouts) = 'object');

CREATE TABLE model_aliases (
    alias       text PRIMARY KEY CHECK (alias <> '' AND alias <> '*'),
    model_id    text NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_aliases_model_idx ON model_aliases (model_id);

CREATE TRIGGER model_aliases_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

-- The last health report of each route target per data plane (not policy: no version bump).
CREATE TABLE target_health (
    data_plane_id         text NOT NULL,
    provider_id           uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    upstream_model        text NOT NULL,
    state                 text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures  integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    retry_at              timestamptz,
    attempts              bigint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    failures              bigint NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error            text NOT NULL DEFAULT '',
    last_failure_at       timestamptz,
    reported_at           timestamptz NOT NULL,
    PRIMARY KEY (data_plane_id, provider_id, upstream_model)
);
CREATE INDEX target_health_reported_at_idx ON target_health (reported_at);

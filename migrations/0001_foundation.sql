-- Tollgate foundation schema: organisation, groups, principals, API keys, providers,
-- models and routes, group model access, usage records, admin keys, and the policy
-- version counter that orders snapshots across control-plane replicas.

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row. Bumped by a statement trigger on every policy table, so any change made by
-- any replica yields a strictly higher snapshot version; the same trigger notifies
-- every listening replica.
CREATE TABLE policy_version (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     bigint NOT NULL
);
INSERT INTO policy_version (singleton, version) VALUES (true, 1);

CREATE FUNCTION tollgate_bump_policy_version() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE singleton RETURNING version INTO v;
    PERFORM pg_notify('tollgate_policy', v::text);
    RETURN NULL;
END;
$$;

CREATE TABLE groups (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs(id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT groups_name_key UNIQUE (org_id, name),
    CONSTRAINT groups_name_not_empty CHECK (name <> '')
);

CREATE TABLE principals (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs(id),
    kind        text NOT NULL CHECK (kind IN ('user', 'service_account')),
    name        text NOT NULL CHECK (name <> ''),
    email       text,
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT principals_email_key UNIQUE (org_id, email)
);
-- Service accounts are named by their name; users by their email (names may repeat).
CREATE UNIQUE INDEX principals_service_account_name_key ON principals (org_id, name)
    WHERE kind = 'service_account';

CREATE TABLE group_members (
    group_id      uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    principal_id  uuid NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, principal_id)
);

-- Only the SHA-256 of a key's secret is stored. Revoked keys stay for the record.
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    principal_id  uuid NOT NULL REFERENCES principals(id),
    name          text NOT NULL,
    prefix        text NOT NULL,
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT api_keys_secret_sha256_key UNIQUE (secret_sha256)
);

CREATE TABLE providers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (name <> ''),
    kind        text NOT NULL CHECK (kind IN ('demo', 'anthropic')),
    base_url    text NOT NULL DEFAULT '',
    api_key     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT providers_name_key UNIQUE (name)
);

CREATE TABLE models (
    id                text PRIMARY KEY CHECK (id <> '' AND id <> '*'),
    display_name      text NOT NULL DEFAULT '',
    max_input_tokens  integer NOT NULL DEFAULT 0 CHECK (max_input_tokens >= 0),
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE route_targets (
    model_id        text NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    provider_id     uuid NOT NULL REFERENCES providers(id),
    upstream_model  text NOT NULL DEFAULT '',
    weight          integer NOT NULL DEFAULT 1 CHECK (weight >= 1),
    PRIMARY KEY (model_id, position)
);

-- model_id '*' grants every model in the catalogue.
CREATE TABLE group_models (
    group_id  uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    model_id  text NOT NULL CHECK (model_id <> ''),
    PRIMARY KEY (group_id, model_id)
);

CREATE TABLE admin_keys (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    secret_sha256 bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- One row per proxied request, keyed by the data plane's request id (idempotent ingest).
CREATE TABLE usage_records (
    request_id                uuid PRIMARY KEY,
    data_plane_id             text NOT NULL,
    started_at                timestamptz NOT NULL,
    received_at               timestamptz NOT NULL DEFAULT now(),
    duration_ms               bigint NOT NULL CHECK (duration_ms >= 0),
    api_key_id                uuid,
    principal_id              uuid,
    model                     text NOT NULL,
    provider_id               uuid,
    upstream_model            text NOT NULL,
    endpoint                  text NOT NULL,
    stream                    boolean NOT NULL,
    status                    integer NOT NULL,
    outcome                   text NOT NULL,
    input_tokens              bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens             bigint NOT NULL CHECK (output_tokens >= 0),
    cache_creation_5m_tokens  bigint NOT NULL CHECK (cache_creation_5m_tokens >= 0),
    cache_creation_1h_tokens  bigint NOT NULL CHECK (cache_creation_1h_tokens >= 0),
    cache_read_tokens         bigint NOT NULL CHECK (cache_read_tokens >= 0)
);
CREATE INDEX usage_records_started_at_idx ON usage_records (started_at);
CREATE INDEX usage_records_principal_idx ON usage_records (principal_id, started_at);
CREATE INDEX usage_records_key_idx ON usage_records (api_key_id, started_at);

CREATE TRIGGER orgs_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orgs
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER groups_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER principals_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON principals
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER group_members_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_members
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER api_keys_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER providers_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER models_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER route_targets_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON route_targets
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER group_models_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_models
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

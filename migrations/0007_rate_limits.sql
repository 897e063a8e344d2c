-- Rate limits: requests and tokens per minute (token buckets held here) and concurrency
-- (slots leased to data planes), at org, group (shared or per member), user, API key or
-- provider (upstream ceiling) scope, optionally for one model.

CREATE TABLE rate_limits (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs(id),
    scope         text NOT NULL CHECK (scope IN ('org', 'group', 'user', 'key', 'provider')),
    group_id      uuid REFERENCES groups(id) ON DELETE CASCADE,
    principal_id  uuid REFERENCES principals(id) ON DELETE CASCADE,
    api_key_id    uuid REFERENCES api_keys(id) ON DELETE CASCADE,
    provider_id   uuid REFERENCES providers(id) ON DELETE CASCADE,
    per_member    boolean NOT NULL DEFAULT false,
    -- '' = every model; else the catalogue model id (provider scope: the upstream model id).
    model         text NOT NULL DEFAULT '',
    kind          text NOT NULL CHECK (kind IN ('requests_per_minute', 'input_tokens_per_minute',
                                               'output_tokens_per_minute', 'concurrent_requests')),
    -- At most 10^12, so a full bucket (limit × 60000) fits a bigint.
    limit_value   bigint NOT NULL CHECK (limit_value BETWEEN 1 AND 1000000000000),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rate_limits_scope_target CHECK (
        (scope = 'org'      AND group_id IS NULL AND principal_id IS NULL AND api_key_id IS NULL
                            AND provider_id IS NULL) OR
        (scope = 'group'    AND group_id IS NOT NULL AND principal_id IS NULL AND api_key_id IS NULL
                            AND provider_id IS NULL) OR
        (scope = 'user'     AND principal_id IS NOT NULL AND group_id IS NULL AND api_key_id IS NULL
                            AND provider_id IS NULL) OR
        (scope = 'key'      AND api_key_id IS NOT NULL AND group_id IS NULL AND principal_id IS NULL
                            AND provider_id IS NULL) OR
        (scope = 'provider' AND provider_id IS NOT NULL AND group_id IS NULL
                            AND principal_id IS NULL AND api_key_id IS NULL)),
    CONSTRAINT rate_limits_per_member_groups_only CHECK (NOT per_member OR scope = 'group')
);
-- One limit per scope target, model and kind (the org's own have no target: the nil uuid
-- stands in, since NULLs would never conflict).
CREATE UNIQUE INDEX rate_limits_target_model_kind_key ON rate_limits
    (org_id, scope, coalesce(group_id, principal_id, api_key_id, provider_id,
                             '00000000-0000-0000-0000-000000000000'::uuid), model, kind);

-- Per-minute kinds: the token bucket of one limit for one subject ('' = shared, else the
-- principal id of a per-member group limit). `level_scaled` is in units of 1/60000 of a
-- request or token: a full bucket holds limit * 60000, and every millisecond adds `limit`.
-- A concurrency bucket has a row too (level 0): the row lock that serialises its leases.
CREATE TABLE rate_buckets (
    limit_id      uuid NOT NULL REFERENCES rate_limits(id) ON DELETE CASCADE,
    subject_id    text NOT NULL DEFAULT '',
    level_scaled  bigint NOT NULL CHECK (level_scaled >= 0),
    refilled_at   timestamptz NOT NULL,
    PRIMARY KEY (limit_id, subject_id)
);

-- Concurrency kind: the slots one data plane holds on one bucket, counted while
-- expires_at > now (an unrenewed lease frees its slots).
CREATE TABLE rate_slot_leases (
    limit_id       uuid NOT NULL REFERENCES rate_limits(id) ON DELETE CASCADE,
    subject_id     text NOT NULL DEFAULT '',
    data_plane_id  text NOT NULL,
    held           bigint NOT NULL CHECK (held >= 0),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (limit_id, subject_id, data_plane_id)
);

CREATE TRIGGER rate_limits_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rate_limits
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER rate_limits_audit AFTER INSERT OR UPDATE OR DELETE ON rate_limits
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('rate_limit', 'ignore:updated_at');

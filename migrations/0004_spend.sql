-- Spend: admin price overrides (the catalogue itself ships with the control plane), the
-- fallback rule for unpriced models, provider price multipliers, spend caps (budgets) and
-- their settings, the authoritative spend counters and the leases data planes spend from,
-- per-request charges (the ledger's detail), alerts fired, a webhook outbox and the audit log.
-- Money is integer micro-USD; prices are micro-USD per million tokens.

CREATE TABLE model_price_overrides (
    model                          text PRIMARY KEY CHECK (model <> ''),
    input                          bigint NOT NULL CHECK (input >= 0),
    output                         bigint NOT NULL CHECK (output >= 0),
    cache_write_5m                 bigint NOT NULL CHECK (cache_write_5m >= 0),
    cache_write_1h                 bigint NOT NULL CHECK (cache_write_1h >= 0),
    cache_read                     bigint NOT NULL CHECK (cache_read >= 0),
    long_context_threshold_tokens  bigint NOT NULL DEFAULT 0 CHECK (long_context_threshold_tokens >= 0),
    lc_input                       bigint NOT NULL DEFAULT 0 CHECK (lc_input >= 0),
    lc_output                      bigint NOT NULL DEFAULT 0 CHECK (lc_output >= 0),
    lc_cache_write_5m              bigint NOT NULL DEFAULT 0 CHECK (lc_cache_write_5m >= 0),
    lc_cache_write_1h              bigint NOT NULL DEFAULT 0 CHECK (lc_cache_write_1h >= 0),
    lc_cache_read                  bigint NOT NULL DEFAULT 0 CHECK (lc_cache_read >= 0),
    source                         text NOT NULL DEFAULT '',
    updated_at                     timestamptz NOT NULL DEFAULT now()
);

-- How models with no price are priced (one row; absent = most_expensive).
CREATE TABLE price_fallback (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rule            text NOT NULL CHECK (rule IN ('most_expensive', 'fixed', 'refuse')),
    input           bigint NOT NULL DEFAULT 0 CHECK (input >= 0),
    output          bigint NOT NULL DEFAULT 0 CHECK (output >= 0),
    cache_write_5m  bigint NOT NULL DEFAULT 0 CHECK (cache_write_5m >= 0),
    cache_write_1h  bigint NOT NULL DEFAULT 0 CHECK (cache_write_1h >= 0),
    cache_read      bigint NOT NULL DEFAULT 0 CHECK (cache_read >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- NULL = the catalogue's multiplier rule for the provider's kind/region (or 1.0x).
ALTER TABLE providers ADD COLUMN price_multiplier_bps integer
    CHECK (price_multiplier_bps IS NULL OR price_multiplier_bps > 0);

CREATE TABLE budgets (
    id                        uuid PRIMARY KEY,
    org_id                    uuid NOT NULL REFERENCES orgs(id),
    scope                     text NOT NULL CHECK (scope IN ('org', 'group', 'user', 'key')),
    group_id                  uuid REFERENCES groups(id) ON DELETE CASCADE,
    principal_id              uuid REFERENCES principals(id) ON DELETE CASCADE,
    api_key_id                uuid REFERENCES api_keys(id) ON DELETE CASCADE,
    period                    text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    limit_micro_usd           bigint NOT NULL CHECK (limit_micro_usd >= 0),
    per_member                boolean NOT NULL DEFAULT false,
    alert_thresholds_percent  integer[] NOT NULL DEFAULT '{50,80,100}',
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT budgets_scope_target CHECK (
        (scope = 'org'   AND group_id IS NULL AND principal_id IS NULL AND api_key_id IS NULL) OR
        (scope = 'group' AND group_id IS NOT NULL AND principal_id IS NULL AND api_key_id IS NULL) OR
        (scope = 'user'  AND principal_id IS NOT NULL AND group_id IS NULL AND api_key_id IS NULL) OR
        (scope = 'key'   AND api_key_id IS NOT NULL AND group_id IS NULL AND principal_id IS NULL)),
    CONSTRAINT budgets_per_member_groups_only CHECK (NOT per_member OR scope = 'group')
);
-- One cap per scope target and period (the org's own caps have no target: the nil uuid stands
-- in, since NULLs would never conflict).
CREATE UNIQUE INDEX budgets_target_period_key ON budgets
    (org_id, scope, coalesce(group_id, principal_id, api_key_id,
                             '00000000-0000-0000-0000-000000000000'::uuid), period);

-- One row. Absent = defaults (closed, 30 s, 3 bytes/token, max_tokens as sent, no webhook).
CREATE TABLE budget_settings (
    singleton                   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    outage_mode                 text NOT NULL DEFAULT 'closed' CHECK (outage_mode IN ('closed', 'open')),
    lease_ttl_s                 integer NOT NULL DEFAULT 30 CHECK (lease_ttl_s BETWEEN 1 AND 3600),
    input_bytes_per_token       integer NOT NULL DEFAULT 3 CHECK (input_bytes_per_token BETWEEN 1 AND 64),
    output_estimate_max_tokens  integer NOT NULL DEFAULT 0 CHECK (output_estimate_max_tokens >= 0),
    alert_webhook_url           text,
    alert_webhook_secret_enc    bytea,
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

-- The authoritative spend of one budget for one subject in one window.
CREATE TABLE spend_counters (
    budget_id        uuid NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    -- '' for a shared counter; the principal id for a per-member group budget.
    subject_id       text NOT NULL DEFAULT '',
    window_start     timestamptz NOT NULL,
    spent_micro_usd  bigint NOT NULL DEFAULT 0 CHECK (spent_micro_usd >= 0),
    -- When a lease was first refused for lack of room (the `spend.cap_reached` audit event is
    -- written once per counter).
    cap_reached_at   timestamptz,
    PRIMARY KEY (budget_id, subject_id, window_start)
);

-- A data plane's slice of a counter. Unused headroom = greatest(granted - consumed, 0) while
-- expires_at > now(); an expired lease counts for nothing.
CREATE TABLE spend_leases (
    budget_id           uuid NOT NULL,
    subject_id          text NOT NULL,
    window_start        timestamptz NOT NULL,
    data_plane_id       text NOT NULL,
    granted_micro_usd   bigint NOT NULL DEFAULT 0 CHECK (granted_micro_usd >= 0),
    consumed_micro_usd  bigint NOT NULL DEFAULT 0 CHECK (consumed_micro_usd >= 0),
    expires_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, subject_id, window_start, data_plane_id),
    FOREIGN KEY (budget_id, subject_id, window_start)
        REFERENCES spend_counters (budget_id, subject_id, window_start) ON DELETE CASCADE
);

ALTER TABLE usage_records ADD COLUMN cost_micro_usd bigint NOT NULL DEFAULT 0 CHECK (cost_micro_usd >= 0);
ALTER TABLE usage_records ADD COLUMN group_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE usage_records ADD COLUMN price_source text NOT NULL DEFAULT '';

-- Which counters each stored usage record was charged to. Written in the same transaction as
-- the record and the counter update, so sum(cost) here per counter = spend_counters.spent.
CREATE TABLE usage_charges (
    request_id       uuid NOT NULL REFERENCES usage_records(request_id) ON DELETE CASCADE,
    budget_id        uuid NOT NULL,
    subject_id       text NOT NULL,
    window_start     timestamptz NOT NULL,
    cost_micro_usd   bigint NOT NULL CHECK (cost_micro_usd >= 0),
    PRIMARY KEY (request_id, budget_id, subject_id, window_start)
);
CREATE INDEX usage_charges_counter_idx ON usage_charges (budget_id, subject_id, window_start);

-- Thresholds crossed; the primary key makes each fire once per window.
CREATE TABLE budget_alerts (
    budget_id          uuid NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    subject_id         text NOT NULL,
    window_start       timestamptz NOT NULL,
    threshold_percent  integer NOT NULL,
    spent_micro_usd    bigint NOT NULL,
    limit_micro_usd    bigint NOT NULL,
    fired_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, subject_id, window_start, threshold_percent)
);

-- Webhook deliveries, written in the transaction that decides them; a worker posts them
-- with retries.
CREATE TABLE webhook_outbox (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    last_error       text
);
CREATE INDEX webhook_outbox_pending_idx ON webhook_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Append-only audit log (the hash chain and signed checkpoints come with the audit work).
CREATE TABLE audit_events (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL DEFAULT '',
    details   jsonb NOT NULL DEFAULT '{}'
);

CREATE TRIGGER model_price_overrides_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_price_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER price_fallback_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON price_fallback
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER budgets_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON budgets
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER budget_settings_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON budget_settings
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

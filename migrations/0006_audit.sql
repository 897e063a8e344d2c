-- Tamper-evident audit log: a hash chain of entries, signed checkpoints of its head, archived
-- prefixes (retention), and the observability settings (content capture, audit retention).
--
-- Each entry's `payload` is the exact text that was hashed: `hash = sha256(prev_hash ||
-- utf8(payload))`, with 32 zero bytes before the first entry. The columns beside it are copies
-- for querying; `tollgate audit verify` checks they agree with the payload.
--
-- Entries, checkpoints and prune records are append-only for every role (row triggers; a
-- superuser can still disable them, which is what `tollgate audit verify` and the exported
-- checkpoints are for). Entries are only ever deleted below a recorded prune point, which must
-- sit on a signed checkpoint.

CREATE TABLE audit_head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL CHECK (seq >= 0),
    hash       bytea NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_head (singleton, seq, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_entries (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    payload    text NOT NULL,
    prev_hash  bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX audit_entries_at_idx ON audit_entries (at);
CREATE INDEX audit_entries_action_idx ON audit_entries (action, seq);
CREATE INDEX audit_entries_actor_idx ON audit_entries (actor, seq);

-- Signed heads. The signature is Ed25519 over
-- "tollgate-audit-checkpoint/v1\n{tree_size}\n{hex(head_hash)}\n{signed_at}\n{key_id}" where
-- signed_at is RFC 3339 UTC with microseconds ("2026-01-02T03:04:05.123456Z").
CREATE TABLE audit_checkpoints (
    id          bigserial PRIMARY KEY,
    tree_size   bigint NOT NULL CHECK (tree_size >= 0),
    head_hash   bytea NOT NULL CHECK (length(head_hash) = 32),
    signed_at   timestamptz NOT NULL,
    key_id      text NOT NULL,
    signature   bytea NOT NULL CHECK (length(signature) = 64)
);
CREATE INDEX audit_checkpoints_size_idx ON audit_checkpoints (tree_size);

-- Archived-and-deleted prefixes: entries 1..through_seq were written to `archive` (whose
-- SHA-256 is recorded) and then deleted. The first remaining entry's prev_hash equals
-- head_hash, which a signed checkpoint of size through_seq vouches for.
CREATE TABLE audit_prunes (
    through_seq     bigint PRIMARY KEY CHECK (through_seq > 0),
    head_hash       bytea NOT NULL CHECK (length(head_hash) = 32),
    checkpoint_id   bigint NOT NULL REFERENCES audit_checkpoints(id),
    archive         text NOT NULL,
    archive_sha256  text NOT NULL,
    pruned_at       timestamptz NOT NULL DEFAULT now()
);

-- Appends one entry to the chain and returns its sequence number. Serialised by the row lock
-- on audit_head (held until the calling transaction ends).
CREATE FUNCTION tollgate_audit_append(
    p_actor text, p_action text, p_target text, p_before jsonb, p_after jsonb, p_details jsonb
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    h        audit_head%ROWTYPE;
    v_at     timestamptz := date_trunc('microseconds', clock_timestamp());
    v_seq    bigint;
    v_body   text;
    v_hash   bytea;
BEGIN
    SELECT * INTO h FROM audit_head WHERE singleton FOR UPDATE;
    v_seq := h.seq + 1;
    v_body := jsonb_build_object(
        'v', 1,
        'seq', v_seq,
        'at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'actor', p_actor,
        'action', p_action,
        'target', p_target,
        'before', p_before,
        'after', p_after,
        'details', coalesce(p_details, '{}'::jsonb))::text;
    v_hash := sha256(h.hash || convert_to(v_body, 'UTF8'));
    INSERT INTO audit_entries (seq, at, actor, action, target, payload, prev_hash, hash)
        VALUES (v_seq, v_at, p_actor, p_action, p_target, v_body, h.hash, v_hash);
    UPDATE audit_head SET seq = v_seq, hash = v_hash WHERE singleton;
    RETURN v_seq;
END;
$$;

-- Who is acting: set per transaction by the control plane
-- (`set_config('tollgate.actor', …, true)`); a change made outside Tollgate is attributed to
-- the database user.
CREATE FUNCTION tollgate_audit_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('tollgate.actor', true), ''), 'db:' || session_user)
$$;

-- A row as audited: columns named in `redact` become a fingerprint of their value (so a
-- change shows without revealing it), columns in `ignore` are left out.
CREATE FUNCTION tollgate_audit_row_json(p_row jsonb, p_redact text[], p_ignore text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k  text;
    r  jsonb := p_row - p_ignore;
BEGIN
    FOREACH k IN ARRAY p_redact LOOP
        IF r ? k AND jsonb_typeof(r -> k) <> 'null' THEN
            r := jsonb_set(r, ARRAY[k], to_jsonb('redacted:sha256:'
                || left(encode(sha256(convert_to(r ->> k, 'UTF8')), 'hex'), 16)));
        END IF;
    END LOOP;
    RETURN r;
END;
$$;

-- Row trigger of audited tables. Arguments: the entity name (actions are `<entity>.create`,
-- `.update`, `.delete`), then `redact:<column>` / `ignore:<column>` items.
CREATE FUNCTION tollgate_audit_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_entity  text := TG_ARGV[0];
    v_redact  text[] := '{}';
    v_ignore  text[] := '{}';
    v_before  jsonb;
    v_after   jsonb;
    v_row     jsonb;
    v_target  text;
    v_verb    text;
    i         integer;
BEGIN
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        IF starts_with(TG_ARGV[i], 'redact:') THEN
            v_redact := v_redact || substr(TG_ARGV[i], 8);
        ELSIF starts_with(TG_ARGV[i], 'ignore:') THEN
            v_ignore := v_ignore || substr(TG_ARGV[i], 8);
        END IF;
    END LOOP;
    IF TG_OP <> 'INSERT' THEN
        v_before := tollgate_audit_row_json(to_jsonb(OLD), v_redact, v_ignore);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        v_after := tollgate_audit_row_json(to_jsonb(NEW), v_redact, v_ignore);
    END IF;
    IF TG_OP = 'UPDATE' AND v_before = v_after THEN
        RETURN NULL;
    END IF;
    v_row := coalesce(v_after, v_before);
    v_target := v_entity || coalesce('/' || coalesce(v_row ->> 'id', v_row ->> 'name',
        v_row ->> 'alias', v_row ->> 'kid', v_row ->> 'model_id', v_row ->> 'group_id'), '');
    v_verb := CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END;
    PERFORM tollgate_audit_append(tollgate_audit_actor(), v_entity || '.' || v_verb, v_target,
        v_before, v_after, '{}'::jsonb);
    RETURN NULL;
END;
$$;

-- Append-only guard. Entries may be deleted only below a recorded prune point.
CREATE FUNCTION tollgate_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Nested so OLD.seq is read only on audit_entries (other guarded tables have no seq).
    IF TG_TABLE_NAME = 'audit_entries' AND TG_OP = 'DELETE' THEN
        IF OLD.seq <= (SELECT coalesce(max(through_seq), 0) FROM audit_prunes) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- A prune point must be the head of a signed checkpoint and of the chain at that size.
CREATE FUNCTION tollgate_audit_check_prune() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_checkpoints c
                   WHERE c.id = NEW.checkpoint_id AND c.tree_size = NEW.through_seq
                     AND c.head_hash = NEW.head_hash) THEN
        RAISE EXCEPTION 'a prune point must match a signed checkpoint'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit_entries e
                   WHERE e.seq = NEW.through_seq AND e.hash = NEW.head_hash) THEN
        RAISE EXCEPTION 'a prune point must match the chain'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_prunes_append_only BEFORE UPDATE OR DELETE ON audit_prunes
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_prunes_no_truncate BEFORE TRUNCATE ON audit_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_prunes_check BEFORE INSERT ON audit_prunes
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_check_prune();
-- Only the chain function moves the head forward; it never moves back.
CREATE FUNCTION tollgate_audit_head_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> OLD.seq + 1 THEN
        RAISE EXCEPTION 'the audit head only moves forward one entry at a time'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_head_forward();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_append_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints, audit_prunes FROM PUBLIC;

-- The earlier unchained events (spend alerts and caps reached) become the first entries.
DO $$
DECLARE
    e record;
BEGIN
    FOR e IN SELECT * FROM audit_events ORDER BY id LOOP
        PERFORM tollgate_audit_append(e.actor, e.action, e.target, NULL, NULL, e.details);
    END LOOP;
END;
$$;
DROP TABLE audit_events;

-- One row. Absent = defaults (no content capture, audit entries kept forever).
CREATE TABLE observability_settings (
    singleton             boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    content_capture       boolean NOT NULL DEFAULT false,
    audit_retention_days  integer CHECK (audit_retention_days >= 1),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER observability_settings_policy_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON observability_settings
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

-- Audited tables: every admin change, sign-in (session created), revocation, credential issue,
-- cap change, IdP and settings change lands in the chain in the same transaction.
CREATE TRIGGER orgs_audit AFTER INSERT OR UPDATE OR DELETE ON orgs
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('org');
CREATE TRIGGER groups_audit AFTER INSERT OR UPDATE OR DELETE ON groups
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('group');
CREATE TRIGGER principals_audit AFTER INSERT OR UPDATE OR DELETE ON principals
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('principal', 'ignore:last_sign_in_at');
CREATE TRIGGER group_members_audit AFTER INSERT OR UPDATE OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('group_member');
CREATE TRIGGER api_keys_audit AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('api_key', 'redact:secret_sha256');
CREATE TRIGGER admin_keys_audit AFTER INSERT OR UPDATE OR DELETE ON admin_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('admin_key', 'redact:secret_sha256');
CREATE TRIGGER providers_audit AFTER INSERT OR UPDATE OR DELETE ON providers
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('provider', 'redact:credentials', 'redact:api_key');
CREATE TRIGGER models_audit AFTER INSERT OR UPDATE OR DELETE ON models
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('model');
CREATE TRIGGER route_targets_audit AFTER INSERT OR UPDATE OR DELETE ON route_targets
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('route_target');
CREATE TRIGGER group_models_audit AFTER INSERT OR UPDATE OR DELETE ON group_models
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('group_model');
CREATE TRIGGER model_aliases_audit AFTER INSERT OR UPDATE OR DELETE ON model_aliases
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('alias');
CREATE TRIGGER idp_config_audit AFTER INSERT OR UPDATE OR DELETE ON idp_config
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('idp', 'redact:client_secret_enc');
CREATE TRIGGER idp_group_mappings_audit AFTER INSERT OR UPDATE OR DELETE ON idp_group_mappings
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('idp_group_mapping');
CREATE TRIGGER org_default_groups_audit AFTER INSERT OR UPDATE OR DELETE ON org_default_groups
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('default_group');
CREATE TRIGGER signing_keys_audit AFTER INSERT OR UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('signing_key', 'redact:private_key_enc');
CREATE TRIGGER token_settings_audit AFTER INSERT OR UPDATE OR DELETE ON token_settings
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('token_settings');
-- Sessions: created at sign-in (the gateway token issue), revoked by logout, an admin or
-- refresh-token reuse. Refreshes are not audited.
CREATE TRIGGER sessions_audit_create AFTER INSERT OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('session', 'redact:idp_tokens_enc',
        'ignore:last_refreshed_at', 'ignore:tokens_expire_at');
CREATE TRIGGER sessions_audit_revoke AFTER UPDATE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION tollgate_audit_row('session', 'redact:idp_tokens_enc',
        'ignore:last_refreshed_at', 'ignore:tokens_expire_at');
CREATE TRIGGER settings_documents_audit AFTER INSERT OR UPDATE OR DELETE ON settings_documents
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('settings_document');
CREATE TRIGGER settings_document_groups_audit AFTER INSERT OR UPDATE OR DELETE ON settings_document_groups
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('settings_document_group');
CREATE TRIGGER telemetry_settings_audit AFTER INSERT OR UPDATE OR DELETE ON telemetry_settings
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('telemetry_settings');
CREATE TRIGGER model_price_overrides_audit AFTER INSERT OR UPDATE OR DELETE ON model_price_overrides
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('price_override');
CREATE TRIGGER price_fallback_audit AFTER INSERT OR UPDATE OR DELETE ON price_fallback
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('price_fallback');
CREATE TRIGGER budgets_audit AFTER INSERT OR UPDATE OR DELETE ON budgets
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('budget', 'ignore:updated_at');
CREATE TRIGGER budget_settings_audit AFTER INSERT OR UPDATE OR DELETE ON budget_settings
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('budget_settings',
        'redact:alert_webhook_secret_enc', 'ignore:updated_at');
CREATE TRIGGER observability_settings_audit AFTER INSERT OR UPDATE OR DELETE ON observability_settings
    FOR EACH ROW EXECUTE FUNCTION tollgate_audit_row('observability_settings', 'ignore:updated_at');

-- Claude Code managed settings (per-group documents) and the telemetry relay target.
-- Everything here feeds the snapshot, so every table bumps the policy version.

CREATE TABLE settings_documents (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    -- Higher wins when documents conflict.
    priority    integer NOT NULL DEFAULT 0,
    -- The managed-settings.json content; always a JSON object.
    settings    jsonb NOT NULL CHECK (jsonb_typeof(settings) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The groups a document applies to.
CREATE TABLE settings_document_groups (
    document_id  uuid NOT NULL REFERENCES settings_documents(id) ON DELETE CASCADE,
    group_id     uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (document_id, group_id)
);

-- Where `/v1/metrics|logs|traces` are relayed; no row (or '') = accept and drop.
CREATE TABLE telemetry_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    collector_url  text NOT NULL DEFAULT ''
);

CREATE TRIGGER settings_documents_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings_documents
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER settings_document_groups_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings_document_groups
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER telemetry_settings_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON telemetry_settings
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

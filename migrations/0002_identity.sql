-- Identity: the company IdP (OIDC relying party), IdP group mappings, org default groups,
-- gateway token signing keys, device-flow codes, pending IdP logins, sessions and refresh
-- tokens. Secrets (signing keys, the IdP client secret, IdP refresh tokens) are stored
-- encrypted with the control plane's secrets key (AES-256-GCM); device codes, CSRF tokens and
-- refresh tokens only as SHA-256.

ALTER TABLE principals ADD COLUMN idp_subject text;
ALTER TABLE principals ADD COLUMN last_sign_in_at timestamptz;
CREATE UNIQUE INDEX principals_idp_subject_key ON principals (org_id, idp_subject)
    WHERE idp_subject IS NOT NULL;

-- At most one IdP per organisation (one row).
CREATE TABLE idp_config (
    singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    issuer_url             text NOT NULL CHECK (issuer_url <> ''),
    client_id              text NOT NULL CHECK (client_id <> ''),
    client_secret_enc      bytea,
    scopes                 text[] NOT NULL DEFAULT '{openid,email,profile}',
    groups_claim           text NOT NULL DEFAULT 'groups',
    email_claim            text NOT NULL DEFAULT 'email',
    allowed_email_domains  text[] NOT NULL DEFAULT '{}',
    clock_skew_secs        integer NOT NULL DEFAULT 60 CHECK (clock_skew_secs >= 0),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

-- An IdP group value grants Tollgate groups.
CREATE TABLE idp_group_mappings (
    idp_group  text NOT NULL CHECK (idp_group <> ''),
    group_id   uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (idp_group, group_id)
);

-- Groups of a signed-in user whose IdP groups map to none (may be empty).
CREATE TABLE org_default_groups (
    group_id  uuid PRIMARY KEY REFERENCES groups(id) ON DELETE CASCADE
);

-- Ed25519 keys signing gateway access tokens. The newest unretired key signs; retired keys
-- stay published until `publish_until` (the expiry of the last token they may have signed).
CREATE TABLE signing_keys (
    kid              text PRIMARY KEY,
    alg              text NOT NULL CHECK (alg = 'EdDSA'),
    public_key       bytea NOT NULL CHECK (length(public_key) = 32),
    private_key_enc  bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    retired_at       timestamptz,
    publish_until    timestamptz
);

CREATE TABLE sessions (
    id                     uuid PRIMARY KEY,
    principal_id           uuid NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    email                  text NOT NULL,
    name                   text NOT NULL,
    -- Tollgate group names granted at the last sign-in or refresh.
    groups                 text[] NOT NULL DEFAULT '{}',
    idp_tokens_enc         bytea,
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at      timestamptz NOT NULL DEFAULT now(),
    -- Latest `exp` of any access token issued for the session.
    tokens_expire_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at             timestamptz,
    revoked_reason         text
);
CREATE INDEX sessions_principal_idx ON sessions (principal_id);
CREATE INDEX sessions_revoked_idx ON sessions (tokens_expire_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE refresh_tokens (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    session_id    uuid NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set when exchanged; a second use is reuse and revokes the session.
    used_at       timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE device_codes (
    id                  uuid PRIMARY KEY,
    device_code_sha256  bytea NOT NULL UNIQUE CHECK (length(device_code_sha256) = 32),
    user_code           text NOT NULL UNIQUE,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'denied', 'consumed')),
    interval_secs       integer NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    last_polled_at      timestamptz,
    session_id          uuid REFERENCES sessions(id) ON DELETE CASCADE
);

-- Browser logins in flight at the IdP (authorization code + PKCE + state + nonce).
CREATE TABLE oidc_logins (
    state_sha256    bytea PRIMARY KEY CHECK (length(state_sha256) = 32),
    device_code_id  uuid NOT NULL REFERENCES device_codes(id) ON DELETE CASCADE,
    pkce_verifier   text NOT NULL,
    nonce           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);

-- Confirmation forms of the verification page (CSRF tokens, single use).
CREATE TABLE device_confirmations (
    csrf_sha256     bytea PRIMARY KEY CHECK (length(csrf_sha256) = 32),
    device_code_id  uuid NOT NULL REFERENCES device_codes(id) ON DELETE CASCADE,
    expires_at      timestamptz NOT NULL
);

-- Per-IP rate limit of the verification page, shared by replicas (fixed one-minute windows).
CREATE TABLE verification_hits (
    ip            text NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          integer NOT NULL,
    PRIMARY KEY (ip, window_start)
);

CREATE TRIGGER idp_group_mappings_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON idp_group_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER org_default_groups_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON org_default_groups
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
CREATE TRIGGER signing_keys_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();
-- Only revocations feed the snapshot; refreshes must not bump the version.
CREATE TRIGGER sessions_policy_version AFTER UPDATE OF revoked_at OR DELETE OR TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

-- `iss`/`aud` of gateway access tokens, written by the control plane at start from its
-- configuration (the public URL), read by the snapshot compiler.
CREATE TABLE token_settings (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    issuer     text NOT NULL CHECK (issuer <> ''),
    audience   text NOT NULL CHECK (audience <> '')
);
CREATE TRIGGER token_settings_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON token_settings
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_bump_policy_version();

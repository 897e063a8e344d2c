//! Identity against a real Postgres: the device-flow state machine over HTTP, tokens and
//! their signature, refresh rotation and reuse detection, revocation and disabling reaching
//! the snapshot, signing-key rotation overlap, the verification page's CSRF check and rate
//! limit. The IdP leg is replaced by approving the device code through a second `Identity`
//! on the same database (any replica serves any step).

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tollgate_control_plane::identity::{
    Identity, IdentitySettings, SecretsKey, SignedInUser, TOKEN_AUDIENCE,
};
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::identity_admin_client::IdentityAdminClient;
use tonic::Request;

use tokio_util::sync::CancellationToken;
use tollgate_control_plane::ControlPlaneHandle;

use crate::support::TestDb;

const SECRETS_KEY: [u8; 32] = [42; 32];
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

struct Harness {
    db: TestDb,
    base: String,
    grpc: String,
    admin_key: String,
    http: reqwest::Client,
    identity: Identity,
    shutdown: CancellationToken,
    handle: Option<ControlPlaneHandle>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn secrets_key() -> SecretString {
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(SECRETS_KEY))
}

async fn harness() -> Harness {
    let db = TestDb::create().await;
    let mut config = db.config();
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.secrets_key = Some(secrets_key());
    let shutdown = CancellationToken::new();
    let handle = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    let pool = db.pool().await;
    let org_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM orgs")
        .fetch_one(&pool)
        .await
        .unwrap();
    // A second "replica" on the same database stands in for the IdP callback.
    let identity = Identity::start(
        pool,
        org_id,
        SecretsKey::from_base64(&secrets_key()).unwrap(),
        false,
        IdentitySettings {
            issuer: "tollgate".to_owned(),
            audience: TOKEN_AUDIENCE.to_owned(),
            token_ttl: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    Harness {
        base: format!("http://{}", handle.http_addr.unwrap()),
        grpc: format!("http://{}", handle.grpc_addr),
        admin_key: handle
            .bootstrap_admin_key
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        identity,
        shutdown,
        handle: Some(handle),
    }
}

type IdentityAdmin = IdentityAdminClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        Box<dyn FnMut(Request<()>) -> Result<Request<()>, tonic::Status> + Send + Sync>,
    >,
>;

impl Harness {
    async fn admin(&self) -> IdentityAdmin {
        let channel = tonic::transport::Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", self.admin_key).parse().unwrap();
        IdentityAdminClient::with_interceptor(
            channel,
            Box::new(move |mut req: Request<()>| {
                req.metadata_mut().insert("authorization", value.clone());
                Ok(req)
            }),
        )
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handle.wait())
            .await
            .unwrap()
            .unwrap();
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Starts a device flow; (device_code, user_code).
    async fn device(&self) -> (String, String) {
        let (status, body) = self
            .post("/oauth/device_authorization", &[("surface", "claude_code")])
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["device_code"].as_str().unwrap().to_owned(),
            body["user_code"].as_str().unwrap().to_owned(),
        )
    }

    async fn poll(&self, device_code: &str) -> (u16, Value) {
        // Polls in these tests are deliberately back to back; forget the previous one.
        sqlx::query("UPDATE device_codes SET last_polled_at = NULL")
            .execute(&self.db.pool().await)
            .await
            .unwrap();
        self.post(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
        )
        .await
    }

    async fn approve(&self, user_code: &str, email: &str, idp_groups: &[&str]) {
        let device = self
            .identity
            .pending_device(user_code)
            .await
            .unwrap()
            .unwrap();
        let user = SignedInUser {
            subject: format!("sub-{email}"),
            email: email.to_owned(),
            name: "Ada Lovelace".to_owned(),
            idp_groups: idp_groups.iter().map(|g| (*g).to_owned()).collect(),
            idp_tokens: None,
        };
        assert!(
            self.identity
                .approve_device(device.id, &user)
                .await
                .unwrap()
        );
    }

    /// A full sign-in; the token response.
    async fn sign_in(&self, email: &str, idp_groups: &[&str]) -> Value {
        let (device_code, user_code) = self.device().await;
        self.approve(&user_code, email, idp_groups).await;
        let (status, body) = self.poll(&device_code).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn snapshot(&self) -> pb::Snapshot {
        crate::support::compile(&self.db.pool().await)
            .await
            .unwrap()
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }
}

/// Verifies a gateway token with the snapshot's keys, as a data plane would.
fn verify(snapshot: &pb::Snapshot, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let kid = header.kid.unwrap();
    let key = snapshot
        .token_keys
        .iter()
        .find(|k| k.kid == kid)
        .expect("the token's kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&[&snapshot.token_issuer]);
    validation.set_audience(&[&snapshot.token_audience]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_ed_der(&key.public_key),
        &validation,
    )
    .unwrap()
    .claims
}

async fn create_group(h: &Harness, name: &str) {
    let pool = h.db.pool().await;
    sqlx::query("INSERT INTO groups (id, org_id, name) SELECT $1, id, $2 FROM orgs")
        .bind(uuid::Uuid::now_v7())
        .bind(name)
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn metadata_advertises_absolute_same_origin_endpoints_from_forwarded_headers() {
    let h = harness().await;
    let body: Value = h
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", h.base))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "gw.example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["issuer"], "https://gw.example.com");
    assert_eq!(
        body["device_authorization_endpoint"],
        "https://gw.example.com/oauth/device_authorization"
    );
    assert_eq!(body["token_endpoint"], "https://gw.example.com/oauth/token");
    assert_eq!(
        body["revocation_endpoint"],
        "https://gw.example.com/oauth/revoke"
    );
    assert!(body.get("authorization_endpoint").is_none());
    assert_eq!(
        body["grant_types_supported"],
        serde_json::json!([DEVICE_GRANT, "refresh_token"])
    );
    h.stop().await;
}

#[tokio::test]
async fn device_authorization_needs_no_client_id_and_returns_rfc_8628_codes() {
    let h = harness().await;
    let (status, body) = h
        .post(
            "/oauth/device_authorization",
            &[("surface", "claude_code"), ("whatever", "ignored")],
        )
        .await;
    assert_eq!(status, 200);
    let user_code = body["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert!(
        user_code
            .replace('-', "")
            .chars()
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert!(body["device_code"].as_str().unwrap().len() >= 43);
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["interval"], 5);
    assert_eq!(body["verification_uri"], format!("{}/device", h.base));
    assert_eq!(
        body["verification_uri_complete"],
        format!("{}/device?user_code={user_code}", h.base)
    );
    h.stop().await;
}

#[tokio::test]
async fn device_flow_goes_pending_then_tokens_once_with_a_verifiable_jwt() {
    let h = harness().await;
    create_group(&h, "engineering").await;
    let mut admin = h.admin().await;
    admin
        .set_group_mapping(pb::SetGroupMappingRequest {
            idp_group: "eng".to_owned(),
            groups: vec!["engineering".to_owned()],
        })
        .await
        .unwrap();
    let (device_code, user_code) = h.device().await;
    let (status, body) = h.poll(&device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    // A second poll right away is too fast.
    let (status, body) = h
        .post(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("device_code", &device_code)],
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("slow_down")));

    h.approve(&user_code, "ada@example.com", &["eng", "unmapped"])
        .await;
    let (status, body) = h.poll(&device_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["email"], "ada@example.com");
    assert!(body["refresh_token"].as_str().unwrap().starts_with("tgr_"));

    let snapshot = h.snapshot().await;
    assert_eq!(snapshot.token_issuer, "tollgate");
    assert_eq!(snapshot.token_audience, "tollgate");
    let claims = verify(&snapshot, body["access_token"].as_str().unwrap());
    assert_eq!(claims["email"], "ada@example.com");
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["groups"], serde_json::json!(["engineering"]));
    assert!(uuid::Uuid::parse_str(claims["sub"].as_str().unwrap()).is_ok());
    assert!(uuid::Uuid::parse_str(claims["sid"].as_str().unwrap()).is_ok());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The device code is single use.
    let (status, body) = h.poll(&device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    h.stop().await;
}

#[tokio::test]
async fn expired_and_denied_device_codes_get_their_errors() {
    let h = harness().await;
    let (expired, _) = h.device().await;
    sqlx::query("UPDATE device_codes SET expires_at = now() - interval '1 second'")
        .execute(&h.db.pool().await)
        .await
        .unwrap();
    let (status, body) = h.poll(&expired).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("expired_token"))
    );

    let (denied, user_code) = h.device().await;
    let device = h
        .identity
        .pending_device(&user_code)
        .await
        .unwrap()
        .unwrap();
    h.identity.deny_device(device.id).await.unwrap();
    let (status, body) = h.poll(&denied).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );

    let (status, body) = h.poll("tgd_unknown").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    h.stop().await;
}

#[tokio::test]
async fn users_without_a_mapped_group_get_the_org_default_groups() {
    let h = harness().await;
    create_group(&h, "everyone").await;
    let mut admin = h.admin().await;
    let info = admin
        .set_default_groups(pb::SetDefaultGroupsRequest {
            groups: vec!["everyone".to_owned()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.group_names, ["everyone"]);
    let tokens = h.sign_in("bob@example.com", &["nothing-mapped"]).await;
    let snapshot = h.snapshot().await;
    assert_eq!(snapshot.default_group_ids, info.group_ids);
    let claims = verify(&snapshot, tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["groups"], serde_json::json!(["everyone"]));
    h.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_session() {
    let h = harness().await;
    let first = h.sign_in("ada@example.com", &[]).await;
    let old = first["refresh_token"].as_str().unwrap();
    let (status, second) = h.refresh(old).await;
    assert_eq!(status, 200, "{second}");
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(old, new);
    let sid = verify(
        &h.snapshot().await,
        second["access_token"].as_str().unwrap(),
    )["sid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reuse of the rotated-out token: refused, and the whole session is revoked.
    let (status, body) = h.refresh(old).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );
    let (status, body) = h.refresh(new).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );
    assert!(h.snapshot().await.revoked_session_ids.contains(&sid));
    h.stop().await;
}

#[tokio::test]
async fn revoking_an_access_token_puts_its_session_in_the_snapshot() {
    let h = harness().await;
    let tokens = h.sign_in("ada@example.com", &[]).await;
    let access = tokens["access_token"].as_str().unwrap();
    let sid = verify(&h.snapshot().await, access)["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!h.snapshot().await.revoked_session_ids.contains(&sid));
    let (status, _) = h.post("/oauth/revoke", &[("token", access)]).await;
    assert_eq!(status, 200);
    assert!(h.snapshot().await.revoked_session_ids.contains(&sid));
    // The refresh token of a revoked session is refused; unknown tokens revoke nothing.
    let (status, _) = h.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[("token", "nonsense"), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn disabling_a_user_revokes_sessions_and_publishes_the_principal() {
    let h = harness().await;
    let tokens = h.sign_in("ada@example.com", &[]).await;
    let claims = verify(
        &h.snapshot().await,
        tokens["access_token"].as_str().unwrap(),
    );
    let mut admin = h.admin().await;
    let users = admin
        .list_users(pb::ListUsersRequest {})
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    assert!(users[0].last_sign_in_unix_ms > 0);
    let user = admin
        .set_user_disabled(pb::SetUserDisabledRequest {
            user: "ada@example.com".to_owned(),
            disabled: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(user.disabled);
    let snapshot = h.snapshot().await;
    assert!(
        snapshot
            .disabled_principal_ids
            .contains(&claims["sub"].as_str().unwrap().to_owned())
    );
    assert!(
        snapshot
            .revoked_session_ids
            .contains(&claims["sid"].as_str().unwrap().to_owned())
    );
    let (status, _) = h.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    let sessions = admin
        .list_sessions(pb::ListSessionsRequest {
            user: String::new(),
            include_revoked: true,
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions[0].revoked_reason, "user_disabled");
    h.stop().await;
}

#[tokio::test]
async fn admin_session_revocation_reaches_the_snapshot() {
    let h = harness().await;
    let tokens = h.sign_in("ada@example.com", &[]).await;
    let sid = verify(
        &h.snapshot().await,
        tokens["access_token"].as_str().unwrap(),
    )["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut admin = h.admin().await;
    let info = admin
        .revoke_session(pb::RevokeSessionRequest {
            session_id: sid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(info.revoked_at_unix_ms > 0);
    assert!(h.snapshot().await.revoked_session_ids.contains(&sid));
    h.stop().await;
}

#[tokio::test]
async fn rotated_signing_keys_stay_published_while_their_tokens_live() {
    let h = harness().await;
    let before = h.sign_in("ada@example.com", &[]).await;
    let old_token = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();
    let mut admin = h.admin().await;
    let new_kid = admin
        .rotate_signing_key(pb::RotateSigningKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .kid;
    assert_ne!(new_kid, old_kid);
    let after = h.sign_in("bob@example.com", &[]).await;
    let new_token = after["access_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap(),
        new_kid
    );
    let snapshot = h.snapshot().await;
    assert_eq!(snapshot.token_keys.len(), 2);
    verify(&snapshot, &old_token);
    verify(&snapshot, new_token);
    // Once the overlap is over, the old key is no longer published.
    sqlx::query(
        "UPDATE signing_keys SET publish_until = now() - interval '1 second' WHERE kid = $1",
    )
    .bind(&old_kid)
    .execute(&h.db.pool().await)
    .await
    .unwrap();
    let snapshot = h.snapshot().await;
    assert_eq!(snapshot.token_keys.len(), 1);
    assert_eq!(snapshot.token_keys[0].kid, new_kid);
    h.stop().await;
}

#[tokio::test]
async fn the_verification_page_shows_the_code_and_refuses_a_forged_confirmation() {
    let h = harness().await;
    let (_, user_code) = h.device().await;
    let page = h
        .http
        .get(format!(
            "{}/device?user_code={}",
            h.base,
            user_code.to_lowercase()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains(&user_code));
    let csrf = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let post = |form: Vec<(&'static str, String)>| {
        h.http.post(format!("{}/device", h.base)).form(&form).send()
    };
    // A forged token, and the right token for another code, are both refused.
    let forged = post(vec![
        ("user_code", user_code.clone()),
        ("csrf_token", "forged".to_owned()),
        ("action", "approve".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(forged.status(), 403);
    let (_, other_code) = h.device().await;
    let crossed = post(vec![
        ("user_code", other_code),
        ("csrf_token", csrf.clone()),
        ("action", "deny".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(crossed.status(), 403);
    // The token was consumed by that attempt: single use.
    let reused = post(vec![
        ("user_code", user_code.clone()),
        ("csrf_token", csrf),
        ("action", "deny".to_owned()),
    ])
    .await
    .unwrap();
    assert_eq!(reused.status(), 403);
    h.stop().await;
}

#[tokio::test]
async fn confirming_without_an_idp_configured_says_so_and_denying_denies() {
    let h = harness().await;
    let (device_code, user_code) = h.device().await;
    let csrf = |html: String| {
        html.split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned()
    };
    let page = |_: ()| {
        h.http
            .get(format!("{}/device?user_code={user_code}", h.base))
            .send()
    };
    let token = csrf(page(()).await.unwrap().text().await.unwrap());
    let approve = h
        .http
        .post(format!("{}/device", h.base))
        .form(&[
            ("user_code", user_code.as_str()),
            ("csrf_token", &token),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 503);
    let token = csrf(page(()).await.unwrap().text().await.unwrap());
    let deny = h
        .http
        .post(format!("{}/device", h.base))
        .form(&[
            ("user_code", user_code.as_str()),
            ("csrf_token", &token),
            ("action", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(deny.status(), 200);
    let (status, body) = h.poll(&device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );
    h.stop().await;
}

#[tokio::test]
async fn the_verification_page_is_rate_limited_per_ip() {
    let h = harness().await;
    let mut last = 0;
    for _ in 0..=tollgate_control_plane::identity::VERIFICATION_HITS_PER_MINUTE {
        last = h
            .http
            .get(format!("{}/device", h.base))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);
    // Another client is unaffected.
    let other = h
        .http
        .get(format!("{}/device", h.base))
        .header("x-forwarded-for", "203.0.113.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    h.stop().await;
}

#[tokio::test]
async fn the_idp_client_secret_is_write_only() {
    let h = harness().await;
    let mut admin = h.admin().await;
    let info = admin
        .set_idp_config(pb::SetIdpConfigRequest {
            issuer_url: "https://idp.example.com".to_owned(),
            client_id: "tollgate".to_owned(),
            client_secret: "s3cret".to_owned(),
            groups_claim: "realm_access.roles".to_owned(),
            allowed_email_domains: vec!["@Example.com".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(info.configured && info.client_secret_set);
    assert_eq!(info.scopes, ["openid", "email", "profile"]);
    assert_eq!(info.allowed_email_domains, ["example.com"]);
    assert_eq!(info.clock_skew_secs, 60);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT client_secret_enc FROM idp_config")
        .fetch_one(&h.db.pool().await)
        .await
        .unwrap();
    assert!(!stored.windows(6).any(|w| w == b"s3cret"));
    // Updating without a secret keeps it.
    let info = admin
        .set_idp_config(pb::SetIdpConfigRequest {
            issuer_url: "https://idp.example.com".to_owned(),
            client_id: "tollgate".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(info.client_secret_set);
    h.stop().await;
}

#[tokio::test]
async fn a_restart_with_another_secrets_key_fails_unless_the_key_is_ephemeral() {
    let h = harness().await;
    let pool = h.db.pool().await;
    let org_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM orgs")
        .fetch_one(&pool)
        .await
        .unwrap();
    let settings = IdentitySettings {
        issuer: "tollgate".to_owned(),
        audience: TOKEN_AUDIENCE.to_owned(),
        token_ttl: Duration::from_secs(3600),
    };
    let wrong = Identity::start(
        pool.clone(),
        org_id,
        SecretsKey::generate(),
        false,
        settings.clone(),
    )
    .await;
    assert!(wrong.is_err());
    // An in-memory key cannot read the old signing key: it is rotated out (still published).
    let ephemeral = Identity::start(pool, org_id, SecretsKey::generate(), true, settings)
        .await
        .unwrap();
    drop(ephemeral);
    assert_eq!(h.snapshot().await.token_keys.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn a_refresh_token_idle_for_too_long_is_refused() {
    let h = harness().await;
    let tokens = h.sign_in("ada@example.com", &[]).await;
    sqlx::query("UPDATE refresh_tokens SET created_at = now() - interval '31 days'")
        .execute(&h.db.pool().await)
        .await
        .unwrap();
    let (status, body) = h.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );
    h.stop().await;
}

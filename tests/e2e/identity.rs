//! Sign-in end to end: a real OpenID provider (npm `oidc-provider`), the device flow through
//! the data plane's one base URL (the CLI's own client code), a headless browser at the
//! gateway's verification page and the IdP, gateway access tokens on `/v1/messages`, refresh,
//! group mappings, deprovisioning at the IdP, revocation across data planes.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use tollgate_cli::login::{
    self, DeviceAuthorization, LoginError, Metadata, TokenSet, discover, poll_for_token,
    start_device_authorization,
};
use tollgate_e2e::browser::{Browser, Choice};
use tollgate_e2e::idp::{IdpUser, TestIdp};
use tollgate_e2e::stack::{OPUS, SONNET};
use tollgate_e2e::{Reply, Stack};

use tollgate_proto::v1 as pb;

use crate::identity_setup::{
    IdentitySetup, configure_identity, group_id, identity_admin, settings_admin,
};
use crate::support::{client, eventually, message_body};

/// A stack with sign-in on, one data plane, and the IdP holding alice (IdP groups `idp-eng`).
pub struct Signed {
    pub stack: Stack,
    pub dp: tollgate_e2e::StackDataPlane,
    pub idp: TestIdp,
}

pub async fn signed_stack() -> Signed {
    let stack = Stack::start_with_identity().await.unwrap();
    stack.fake.reply_with(Reply::message(SONNET, "hi", 1, 1));
    let dp = stack.data_plane().await.unwrap();
    let idp = TestIdp::start(
        &[format!("{}/oauth/callback", dp.url)],
        &[IdpUser::new(
            "alice",
            "alice@example.com",
            "Alice",
            &["idp-eng"],
        )],
    )
    .await
    .unwrap();
    configure_identity(
        &stack,
        &idp,
        &IdentitySetup {
            mappings: vec![
                ("idp-eng".into(), "eng".into()),
                ("idp-admins".into(), "all".into()),
            ],
            default_groups: vec![],
        },
    )
    .await
    .unwrap();
    wait_for_policy(&stack, &dp).await;
    Signed { stack, dp, idp }
}

pub async fn wait_for_policy(stack: &Stack, dp: &tollgate_e2e::StackDataPlane) {
    let version = stack.policy_version().await.unwrap();
    assert!(
        dp.handle()
            .wait_for_snapshot_version(version, Duration::from_secs(10))
            .await
    );
}

/// Runs the device flow as Claude Code would, the user approving in the headless browser.
pub async fn sign_in(base: &str, login_as: &str) -> (Metadata, TokenSet) {
    let http = client();
    let meta = discover(&http, base).await.unwrap();
    let auth = start_device_authorization(&http, &meta).await.unwrap();
    let (landing, tokens) = tokio::join!(approve(&auth, login_as, Choice::Approve), async {
        poll_for_token(&http, &meta, &auth).await
    });
    let landing = landing.unwrap();
    assert_eq!(
        landing.status, 200,
        "{:#?}\n{}",
        landing.trail, landing.body
    );
    (meta, tokens.unwrap())
}

pub async fn approve(
    auth: &DeviceAuthorization,
    login_as: &str,
    choice: Choice,
) -> anyhow::Result<tollgate_e2e::browser::Landing> {
    let start = auth
        .verification_uri_complete
        .clone()
        .unwrap_or_else(|| format!("{}?user_code={}", auth.verification_uri, auth.user_code));
    Browser::new()?.device_login(&start, login_as, choice).await
}

pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
    };
    let header = decode();
    let claims = decode();
    (header, claims)
}

pub async fn messages_with_bearer(base: &str, token: &str, model: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/v1/messages?beta=true"))
        .bearer_auth(token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(message_body(model, false))
        .send()
        .await
        .unwrap()
}

async fn refresh(meta: &Metadata, set: &TokenSet) -> Result<TokenSet, LoginError> {
    let rt = set.refresh_token.as_ref().expect("a refresh token");
    login::refresh(&client(), &meta.token_endpoint, rt).await
}

#[tokio::test]
async fn device_flow_sign_in_gives_a_gateway_token_that_refreshes_until_the_idp_removes_the_user() {
    let Signed { stack, dp, idp } = signed_stack().await;

    // The metadata is served through the data plane, with absolute same-origin endpoints.
    let meta_json: Value = client()
        .get(format!("{}/.well-known/oauth-authorization-server", dp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta_json["device_authorization_endpoint"],
        format!("{}/oauth/device_authorization", dp.url)
    );
    assert!(meta_json.get("authorization_endpoint").is_none());

    let (meta, set) = sign_in(&dp.url, "alice").await;
    assert_eq!(set.email.as_deref(), Some("alice@example.com"));
    let token = set.access_token.expose_secret().to_owned();
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["groups"], serde_json::json!(["eng"]));
    assert!(
        claims["sub"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert!(
        claims["sid"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The bearer works on the model API, within alice's group.
    let resp = messages_with_bearer(&dp.url, &token, SONNET).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let resp = messages_with_bearer(&dp.url, &token, OPUS).await;
    assert_eq!(resp.status(), 400);

    // Refresh: a new token; alice's new IdP group maps to `all`, so opus is allowed now.
    idp.put_user(&IdpUser::new(
        "alice",
        "alice@example.com",
        "Alice",
        &["idp-eng", "idp-admins"],
    ))
    .await
    .unwrap();
    let set2 = refresh(&meta, &set).await.unwrap();
    let token2 = set2.access_token.expose_secret().to_owned();
    let mut groups: Vec<String> =
        serde_json::from_value(jwt_parts(&token2).1["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["all", "eng"]);
    let resp = messages_with_bearer(&dp.url, &token2, OPUS).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // The user is removed at the IdP: the next refresh is refused with 401 invalid_grant.
    idp.remove_user("alice").await.unwrap();
    let resp = client()
        .post(&meta.token_endpoint)
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                set2.refresh_token.as_ref().unwrap().expose_secret(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn a_refresh_token_used_twice_ends_the_session() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let (meta, set) = sign_in(&dp.url, "alice").await;
    let set2 = refresh(&meta, &set).await.unwrap();
    // Reuse of the first refresh token: refused, and the whole session is revoked.
    assert!(matches!(
        refresh(&meta, &set).await,
        Err(LoginError::SignedOut { .. })
    ));
    assert!(matches!(
        refresh(&meta, &set2).await,
        Err(LoginError::SignedOut { .. })
    ));
    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn denying_the_code_on_the_verification_page_gives_access_denied() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let http = client();
    let meta = discover(&http, &dp.url).await.unwrap();
    let auth = start_device_authorization(&http, &meta).await.unwrap();
    assert!(auth.user_code.len() >= 8);
    let (landing, polled) = tokio::join!(
        approve(&auth, "alice", Choice::Deny),
        poll_for_token(&http, &meta, &auth)
    );
    landing.unwrap();
    assert!(
        matches!(polled, Err(LoginError::AccessDenied)),
        "{polled:?}"
    );
    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn revoking_a_token_reaches_a_second_data_plane_within_five_seconds() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let dp2 = stack.data_plane().await.unwrap();
    let (meta, set) = sign_in(&dp.url, "alice").await;
    let token = set.access_token.expose_secret().to_owned();
    let resp = messages_with_bearer(&dp2.url, &token, SONNET).await;
    assert_eq!(resp.status(), 200, "the token works on every data plane");

    let revocation = meta
        .revocation_endpoint
        .clone()
        .expect("revocation advertised");
    login::revoke(&client(), &revocation, &set.access_token, "access_token")
        .await
        .unwrap();
    let revoked = eventually(Duration::from_secs(5), || {
        let (url, token) = (dp2.url.clone(), token.clone());
        async move {
            let resp = messages_with_bearer(&url, &token, SONNET).await;
            resp.status() == 401
                && resp
                    .headers()
                    .get("x-should-retry")
                    .is_some_and(|v| v == "false")
        }
    })
    .await;
    assert!(revoked, "dp2 still accepts the revoked bearer after 5 s");
    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn an_idp_id_token_is_not_a_gateway_token() {
    let Signed { stack, dp, idp } = signed_stack().await;
    // A perfectly valid ID token from the company IdP, presented as a bearer.
    let browser = Browser::new().unwrap();
    let verifier = tollgate_cli::secret::random_token("v");
    let challenge =
        URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let redirect = idp.client.redirect_uris[0].clone();
    let mut auth = reqwest::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", &idp.client.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", "openid email profile")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let landing = browser
        .journey(auth.as_str(), "alice", Choice::Approve, |u| {
            u.as_str().starts_with(&redirect)
        })
        .await
        .unwrap();
    let code = landing
        .url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: Value = client()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(&idp.client.client_id, Some(&idp.client.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let resp = messages_with_bearer(&dp.url, id_token, SONNET).await;
    assert_eq!(resp.status(), 401);
    idp.stop().await;
    stack.finish().await;
}

async fn managed_settings(base: &str, token: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(format!("{base}/managed/settings"))
        .bearer_auth(token);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn group_mapping_decides_models_and_managed_settings() {
    let Signed { stack, dp, idp } = signed_stack().await;
    idp.put_user(&IdpUser::new(
        "bob",
        "bob@example.com",
        "Bob",
        &["idp-contractors"],
    ))
    .await
    .unwrap();
    let eng = group_id(&stack, "eng").await;
    let all = group_id(&stack, "all").await;
    let mut settings = settings_admin(&stack).await;
    settings
        .create_settings_document(pb::CreateSettingsDocumentRequest {
            name: "eng".into(),
            priority: 10,
            group_ids: vec![eng],
            settings_json: serde_json::json!({
                "availableModels": [SONNET],
                "env": {"TEAM": "eng"},
            })
            .to_string(),
        })
        .await
        .unwrap();
    settings
        .create_settings_document(pb::CreateSettingsDocumentRequest {
            name: "all".into(),
            priority: 20,
            group_ids: vec![all],
            settings_json: serde_json::json!({"env": {"TEAM": "platform"}}).to_string(),
        })
        .await
        .unwrap();
    wait_for_policy(&stack, &dp).await;

    // alice (IdP `idp-eng` → `eng`): the eng document, with the model list enforced.
    let (meta, set) = sign_in(&dp.url, "alice").await;
    let token = set.access_token.expose_secret().to_owned();
    let resp = managed_settings(&dp.url, &token, None).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(
        doc["settings"]["availableModels"],
        serde_json::json!([SONNET])
    );
    assert_eq!(doc["settings"]["enforceAvailableModels"], true);
    assert_eq!(doc["settings"]["env"]["TEAM"], "eng");
    assert_eq!(etag, format!("\"{}\"", doc["checksum"].as_str().unwrap()));
    let resp = managed_settings(&dp.url, &token, Some(&etag)).await;
    assert_eq!(resp.status(), 304);
    assert_eq!(
        messages_with_bearer(&dp.url, &token, OPUS).await.status(),
        400
    );

    // The mapping changes: `idp-eng` now means `all`. The next refresh carries it.
    identity_admin(&stack)
        .await
        .set_group_mapping(pb::SetGroupMappingRequest {
            idp_group: "idp-eng".into(),
            groups: vec!["all".into()],
        })
        .await
        .unwrap();
    let set2 = refresh(&meta, &set).await.unwrap();
    let token2 = set2.access_token.expose_secret().to_owned();
    assert_eq!(jwt_parts(&token2).1["groups"], serde_json::json!(["all"]));
    let resp = managed_settings(&dp.url, &token2, Some(&etag)).await;
    assert_eq!(resp.status(), 200, "other groups, other settings");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["settings"]["env"]["TEAM"], "platform");
    assert!(doc["settings"].get("availableModels").is_none());
    let resp = messages_with_bearer(&dp.url, &token2, OPUS).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // bob's IdP group maps to nothing and the org default is nothing: signed in, no policy,
    // no models.
    let (_, bob) = sign_in(&dp.url, "bob").await;
    let bob = bob.access_token.expose_secret().to_owned();
    assert_eq!(jwt_parts(&bob).1["groups"], serde_json::json!([]));
    assert_eq!(managed_settings(&dp.url, &bob, None).await.status(), 404);
    let resp = messages_with_bearer(&dp.url, &bob, SONNET).await;
    assert!(
        [400, 403].contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );

    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn disabling_a_user_reaches_a_second_data_plane_and_ends_refresh() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let dp2 = stack.data_plane().await.unwrap();
    let (meta, set) = sign_in(&dp.url, "alice").await;
    let token = set.access_token.expose_secret().to_owned();
    assert_eq!(
        messages_with_bearer(&dp2.url, &token, SONNET)
            .await
            .status(),
        200
    );
    let sessions = identity_admin(&stack)
        .await
        .list_sessions(pb::ListSessionsRequest {
            user: "alice@example.com".into(),
            include_revoked: false,
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, jwt_parts(&token).1["sid"].as_str().unwrap());

    identity_admin(&stack)
        .await
        .set_user_disabled(pb::SetUserDisabledRequest {
            user: "alice@example.com".into(),
            disabled: true,
        })
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(5), || {
        let (url, token) = (dp2.url.clone(), token.clone());
        async move {
            let resp = messages_with_bearer(&url, &token, SONNET).await;
            resp.status() == 401
                && resp
                    .headers()
                    .get("x-should-retry")
                    .is_some_and(|v| v == "false")
        }
    })
    .await;
    assert!(
        refused,
        "dp2 still accepts a disabled user's token after 5 s"
    );
    assert!(matches!(
        refresh(&meta, &set).await,
        Err(LoginError::SignedOut { .. })
    ));
    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn a_callback_with_an_unknown_state_is_refused() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let resp = client()
        .get(format!(
            "{}/oauth/callback?state=not-a-state&code=whatever",
            dp.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    idp.stop().await;
    stack.finish().await;
}

/// Confirms a code and signs in at the IdP, stopping before the IdP's redirect reaches the
/// gateway's callback; returns the callback URL.
async fn until_callback(auth: &DeviceAuthorization, login_as: &str) -> reqwest::Url {
    let start = auth.verification_uri_complete.clone().unwrap();
    let landing = Browser::new()
        .unwrap()
        .journey(&start, login_as, Choice::Approve, |u| {
            u.path().ends_with("/oauth/callback")
        })
        .await
        .unwrap();
    assert_eq!(landing.status, 0, "{:#?}", landing.trail);
    landing.url
}

#[tokio::test]
async fn a_login_whose_pkce_verifier_or_nonce_does_not_match_is_refused() {
    let Signed { stack, dp, idp } = signed_stack().await;
    let http = client();
    let meta = discover(&http, &dp.url).await.unwrap();
    let pool = stack.db.pool().await.unwrap();
    // The same steps untampered sign in: the refusals below are the tampering's doing.
    let auth = start_device_authorization(&http, &meta).await.unwrap();
    let callback = until_callback(&auth, "alice").await;
    assert_eq!(http.get(callback).send().await.unwrap().status(), 200);
    poll_for_token(&http, &meta, &auth).await.unwrap();

    for tamper in [
        "UPDATE oidc_logins SET pkce_verifier = 'x' || pkce_verifier",
        "UPDATE oidc_logins SET nonce = 'x' || nonce",
    ] {
        let auth = start_device_authorization(&http, &meta).await.unwrap();
        let callback = until_callback(&auth, "alice").await;
        sqlx::query(tamper).execute(&pool).await.unwrap();
        let resp = http.get(callback).send().await.unwrap();
        assert!(
            resp.status().is_client_error() || resp.status().is_server_error(),
            "{tamper}: {}",
            resp.status()
        );
        let resp = http
            .post(&meta.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", auth.device_code.expose_secret()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{tamper}");
        let body: Value = resp.json().await.unwrap();
        assert!(body.get("access_token").is_none(), "{tamper}: {body}");
    }
    pool.close().await;
    idp.stop().await;
    stack.finish().await;
}

#[tokio::test]
async fn telemetry_from_a_signed_in_client_is_relayed_unchanged_to_the_collector() {
    let Signed { stack, dp, idp } = signed_stack().await;
    // The fake upstream doubles as the collector: it records every request.
    settings_admin(&stack)
        .await
        .set_telemetry_collector(pb::SetTelemetryCollectorRequest {
            url: stack.fake.url(),
        })
        .await
        .unwrap();
    wait_for_policy(&stack, &dp).await;
    let (_, set) = sign_in(&dp.url, "alice").await;
    let body = br#"{"resourceMetrics":[{"resource":{"attributes":[]},"scopeMetrics":[]}]}"#;
    let resp = client()
        .post(format!("{}/v1/metrics", dp.url))
        .bearer_auth(set.access_token.expose_secret())
        .header("content-type", "application/json")
        .body(body.as_slice())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let relayed = eventually(Duration::from_secs(5), || {
        let got = stack.fake.received();
        async move {
            got.iter()
                .any(|r| r.path_and_query == "/v1/metrics" && r.body.as_ref() == body.as_slice())
        }
    })
    .await;
    assert!(relayed, "the collector did not get the metrics unchanged");

    // Without a bearer: refused, nothing relayed.
    let resp = client()
        .post(format!("{}/v1/metrics", dp.url))
        .header("content-type", "application/json")
        .body(body.as_slice())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    idp.stop().await;
    stack.finish().await;
}

//! The test IdP itself, driven the way the gateway's relying party will drive it: authorization
//! code + PKCE through the headless browser, code exchange, ID-token claims, refresh, and a
//! refresh refused once the user is removed at the IdP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::Digest as _;
use tollgate_e2e::browser::{Browser, Choice};
use tollgate_e2e::idp::{IdpUser, TestIdp};

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn token_call(idp: &TestIdp, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .basic_auth(&idp.client.client_id, Some(&idp.client.client_secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn test_idp_signs_in_with_pkce_issues_groups_and_refuses_refresh_after_removal() {
    let alice = IdpUser::new(
        "alice",
        "alice@example.com",
        "Alice",
        &["idp-eng", "idp-all"],
    );
    let idp = TestIdp::start(&[REDIRECT.to_owned()], std::slice::from_ref(&alice))
        .await
        .unwrap();
    let verifier = tollgate_cli::secret::random_token("v");
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut auth = reqwest::Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", &idp.client.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid email profile groups")
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    let browser = Browser::new().unwrap();
    let landing = browser
        .journey(auth.as_str(), "alice", Choice::Approve, |u| {
            u.as_str().starts_with(REDIRECT)
        })
        .await
        .unwrap();
    assert_eq!(landing.status, 0, "{:#?}", landing.trail);
    let params: std::collections::HashMap<String, String> =
        landing.url.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "st-1");
    let code = &params["code"];

    // The wrong PKCE verifier is refused.
    let (status, body) = token_call(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "not-the-verifier-not-the-verifier-not-the-verifier",
            ),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A second code, exchanged properly.
    let landing = browser
        .journey(auth.as_str(), "alice", Choice::Approve, |u| {
            u.as_str().starts_with(REDIRECT)
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
    let (status, tokens) = token_call(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["iss"], idp.issuer.as_str());
    assert_eq!(id["aud"], idp.client.client_id.as_str());
    assert_eq!(id["sub"], "alice");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["groups"], serde_json::json!(["idp-eng", "idp-all"]));
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Group changes at the IdP show in the next refresh's ID token.
    idp.put_user(&IdpUser::new(
        "alice",
        "alice@example.com",
        "Alice",
        &["idp-all"],
    ))
    .await
    .unwrap();
    let (status, tokens) = token_call(
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        claims_of(tokens["id_token"].as_str().unwrap())["groups"],
        serde_json::json!(["idp-all"])
    );
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    idp.remove_user("alice").await.unwrap();
    let (status, body) = token_call(
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    idp.stop().await;
}

//! The OIDC relying party against an in-process fake IdP (discovery, JWKS, token endpoint;
//! RS256 ID tokens signed with fixed test keys): the whole browser leg of the device flow,
//! the ID-token rejections (other audience, expired, unknown key, `alg: none`, wrong issuer,
//! nonce mismatch), an unknown `state`, a PKCE verifier mismatch, and the refresh-time
//! re-check (groups refreshed; a user removed at the IdP is refused).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::ControlPlaneHandle;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::identity_admin_client::IdentityAdminClient;
use tonic::Request;

use crate::support::TestDb;

const CLIENT_ID: &str = "tollgate-test";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Good,
    OtherAudience,
    Expired,
    UnknownKey,
    AlgNone,
    WrongIssuer,
    WrongNonce,
}

#[derive(Default)]
struct Idp {
    issuer: String,
    mode: Option<Mode>,
    /// code → (PKCE challenge, nonce)
    codes: HashMap<String, (String, String)>,
    groups: Vec<String>,
    /// Refresh tokens the IdP still honours.
    refresh_tokens: Vec<String>,
    /// Whether the token endpoint grants refresh tokens at all.
    no_refresh_tokens: bool,
    /// The user was removed: userinfo answers 401.
    user_removed: bool,
}

type Shared = Arc<Mutex<Idp>>;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn id_token(idp: &Idp, nonce: Option<&str>) -> String {
    let mode = idp.mode.unwrap_or(Mode::Good);
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": if mode == Mode::WrongIssuer { "https://evil.example.com".to_owned() } else { idp.issuer.clone() },
        "aud": if mode == Mode::OtherAudience { "someone-else" } else { CLIENT_ID },
        "sub": "idp-user-1",
        "email": "ada@example.com",
        "email_verified": true,
        "name": "Ada Lovelace",
        "realm_access": {"roles": idp.groups},
        "iat": now,
        "exp": if mode == Mode::Expired { now - 3600 } else { now + 300 },
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(if mode == Mode::WrongNonce {
            "not-the-nonce"
        } else {
            nonce
        });
    }
    if mode == Mode::AlgNone {
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        return format!("{header}.{}.", b64(claims.to_string().as_bytes()));
    }
    let (der, kid) = if mode == Mode::UnknownKey {
        (KEY2_DER_B64, "k2")
    } else {
        (KEY1_DER_B64, "k1")
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der),
    )
    .unwrap()
}

async fn discovery(State(idp): State<Shared>) -> Json<Value> {
    let issuer = idp.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks() -> Json<Value> {
    Json(
        json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1", "n": KEY1_N, "e": "AQAB"}]}),
    )
}

async fn token(
    State(idp): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<Value>) {
    let mut idp = idp.lock().unwrap();
    let bad = |e: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": e})),
        )
    };
    let nonce = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((challenge, nonce)) = form.get("code").and_then(|c| idp.codes.remove(c))
            else {
                return bad("invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if b64(&Sha256::digest(verifier.as_bytes())) != challenge {
                return bad("invalid_grant");
            }
            Some(nonce)
        }
        Some("refresh_token") => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if !idp.refresh_tokens.contains(&rt) {
                return bad("invalid_grant");
            }
            None
        }
        _ => return bad("unsupported_grant_type"),
    };
    let mut body = json!({
        "access_token": "idp-access",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token(&idp, nonce.as_deref()),
    });
    if !idp.no_refresh_tokens {
        let refresh = format!("rt-{}", uuid::Uuid::new_v4());
        idp.refresh_tokens.push(refresh.clone());
        body["refresh_token"] = json!(refresh);
    }
    (axum::http::StatusCode::OK, Json(body))
}

async fn userinfo(
    State(idp): State<Shared>,
    headers: axum::http::HeaderMap,
) -> (axum::http::StatusCode, Json<Value>) {
    let idp = idp.lock().unwrap();
    let authorized = headers
        .get("authorization")
        .is_some_and(|v| v == "Bearer idp-access");
    if idp.user_removed || !authorized {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token"})),
        );
    }
    (
        axum::http::StatusCode::OK,
        Json(json!({
            "sub": "idp-user-1",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "realm_access": {"roles": idp.groups},
        })),
    )
}

async fn start_idp() -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let idp: Shared = Arc::new(Mutex::new(Idp {
        issuer,
        groups: vec!["eng".to_owned()],
        ..Default::default()
    }));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    idp
}

struct Harness {
    _db: TestDb,
    base: String,
    http: reqwest::Client,
    idp: Shared,
    shutdown: CancellationToken,
    _handle: ControlPlaneHandle,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn harness() -> Harness {
    let idp = start_idp().await;
    let db = TestDb::create().await;
    let mut config = db.config();
    config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    config.secrets_key = Some(SecretString::from(
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    ));
    let shutdown = CancellationToken::new();
    let handle = tollgate_control_plane::spawn(config, shutdown.clone())
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", handle.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let value: tonic::metadata::MetadataValue<_> = format!(
        "Bearer {}",
        handle.bootstrap_admin_key.as_ref().unwrap().expose_secret()
    )
    .parse()
    .unwrap();
    let mut admin = IdentityAdminClient::with_interceptor(channel, move |mut req: Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    });
    let issuer = idp.lock().unwrap().issuer.clone();
    admin
        .set_idp_config(pb::SetIdpConfigRequest {
            issuer_url: issuer,
            client_id: CLIENT_ID.to_owned(),
            client_secret: "secret".to_owned(),
            groups_claim: "realm_access.roles".to_owned(),
            allowed_email_domains: vec!["example.com".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    let pool = db.pool().await;
    sqlx::query("INSERT INTO groups (id, org_id, name) SELECT $1, id, 'engineering' FROM orgs")
        .bind(uuid::Uuid::now_v7())
        .execute(&pool)
        .await
        .unwrap();
    admin
        .set_group_mapping(pb::SetGroupMappingRequest {
            idp_group: "eng".to_owned(),
            groups: vec!["engineering".to_owned()],
        })
        .await
        .unwrap();
    Harness {
        base: format!("http://{}", handle.http_addr.unwrap()),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _db: db,
        idp,
        shutdown,
        _handle: handle,
    }
}

impl Harness {
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Device authorization, confirmation on the page, redirect to the IdP. Returns the
    /// device code and the authorization URL's query parameters.
    async fn to_idp(&self) -> (String, HashMap<String, String>) {
        let (_, body) = self.post("/oauth/device_authorization", &[]).await;
        let device_code = body["device_code"].as_str().unwrap().to_owned();
        let user_code = body["user_code"].as_str().unwrap().to_owned();
        let html = self
            .http
            .get(format!("{}/device?user_code={user_code}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = html
            .split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_owned();
        let resp = self
            .http
            .post(format!("{}/device", self.base))
            .form(&[
                ("user_code", user_code.as_str()),
                ("csrf_token", &csrf),
                ("action", "approve"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let issuer = self.idp.lock().unwrap().issuer.clone();
        assert!(
            location.starts_with(&format!("{issuer}/authorize?")),
            "{location}"
        );
        let query = location.split_once('?').unwrap().1;
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["client_id"], CLIENT_ID);
        assert_eq!(
            params["redirect_uri"],
            format!("{}/oauth/callback", self.base)
        );
        (device_code, params)
    }

    /// The IdP "logs the user in": registers a code and sends the browser back.
    async fn callback(&self, params: &HashMap<String, String>, mode: Mode) -> u16 {
        self.callback_page(params, mode).await.0
    }

    /// Like `callback`, with the page's text.
    async fn callback_page(&self, params: &HashMap<String, String>, mode: Mode) -> (u16, String) {
        {
            let mut idp = self.idp.lock().unwrap();
            idp.mode = Some(mode);
            idp.codes.insert(
                "code-1".to_owned(),
                (params["code_challenge"].clone(), params["nonce"].clone()),
            );
        }
        let resp = self
            .http
            .get(format!("{}/oauth/callback", self.base))
            .query(&[("state", params["state"].as_str()), ("code", "code-1")])
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn poll(&self, device_code: &str) -> (u16, Value) {
        self.post(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
        )
        .await
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_idp_round_trip_approves_the_device_and_refresh_rechecks_the_user() {
    let h = harness().await;
    let (device_code, params) = h.to_idp().await;
    assert_eq!(h.callback(&params, Mode::Good).await, 200);
    let (status, tokens) = h.poll(&device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["email"], "ada@example.com");
    let access = claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["groups"], json!(["engineering"]));

    // The IdP drops the user from `eng`: the next refresh carries no group.
    h.idp.lock().unwrap().groups.clear();
    let (status, refreshed) = h
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["groups"],
        json!([])
    );

    // The user is removed at the IdP: its refresh tokens stop working, and so does ours.
    h.idp.lock().unwrap().refresh_tokens.clear();
    let (status, body) = h
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    refreshed["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn invalid_id_tokens_deny_the_device_code() {
    let h = harness().await;
    for (mode, reason) in [
        (Mode::OtherAudience, "Invalid audiences"),
        (Mode::Expired, "Expired"),
        (Mode::UnknownKey, "No matching key found"),
        (Mode::AlgNone, "No signature found"),
        (Mode::WrongIssuer, "Invalid issuer"),
        (Mode::WrongNonce, "nonce mismatch"),
    ] {
        let (device_code, params) = h.to_idp().await;
        let (status, page) = h.callback_page(&params, mode).await;
        assert_eq!(status, 403, "{mode:?}");
        assert!(page.contains(reason), "{mode:?}: {page}");
        let (status, body) = h.poll(&device_code).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("access_denied")),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_state_and_a_pkce_mismatch_are_refused() {
    let h = harness().await;
    let (device_code, mut params) = h.to_idp().await;
    let real_state = params["state"].clone();
    params.insert("state".to_owned(), "forged-state".to_owned());
    assert_eq!(h.callback(&params, Mode::Good).await, 400);
    // The IdP saw a different challenge than the verifier Tollgate holds.
    params.insert("state".to_owned(), real_state);
    params.insert(
        "code_challenge".to_owned(),
        b64(&Sha256::digest(b"another verifier")),
    );
    assert_eq!(h.callback(&params, Mode::Good).await, 403);
    let (status, body) = h.poll(&device_code).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("access_denied"))
    );
    // The state is single use.
    assert_eq!(h.callback(&params, Mode::Good).await, 400);
}

/// Test-only RSA key (PKCS#1 DER, base64).
const KEY1_DER_B64: &str = "MIIEowIBAAKCAQEAmIUuLTy3I3EGYL3Ih/DyG5891k7UeBwDS6UYzpCA1s/Yvw++nwQeDr9s1DGb7J/qvLEg2Tdq6z\
d4yvZ2dUfKh0XtDOaiAgPJwuVSs94TRDAv+TLyUTLQu5oWCijyCHqOUOTVqX/obTlNV7ri2ldFEkOJqYk7OCx3OLN8\
u0cgEyP8UZpaIBFQGMnBzk2abgvjUfRVLlRIngi1cCLbFu/iDKwfI3K+kl150NrNdYJ6pvDpv1Va6f0cPvHuW5BMTo\
GbTOicILCI0KASh1sWLbvjhk5GI4x/F6cTnhk+3ttPSW/+afiLHUrBWE9L6jNSWDi0WJj+Ccano1+dghct2C/7dQID\
AQABAoIBAARhTfSvOcrMrA3q+8KceRxK9yTCI2VTPjlinRl3Jx2qkjZwEAQTQ0u4IQd5zz9wTkNeyngCfx5D+9xhHJ\
pjCYSkZ1mt/x9HFywmMTkiJ3QXXPrva1JJC86MO8kzgm2BtR5km/0GQ9k5j1uPVFF7g4VlQPBVLq9/ADa1wBJeyT1T\
b8JVZoKcFsyPxuILKAdGxwhQrm645oEi5jbmyf2Vt66yjvn2taksSf8hyoJItBkLeLuhCGypiCEO820CQyIVt48K2t\
4gETyoRo4io8MMs105WiqMDAlQAgKESUfoRcCpNPuVNYsIiQAz0+9Yq/DJ+MWFAD/AqTkaRmMezJ0rSXcCgYEA1INH\
6Rv22IpbmK4xbhhQ7Q5lD4MWwq8m7CvXf8aKhVIg9i5ne5nbuMRAu19QRRY2/JdvBckc7z9bWEFvzA2fwVFciZQp4S\
ur65Z/aPtXnCMC1RDmF0kbKpiavRD0KjMMAkpNgnzs3nMxtxLjyLziT+uAk555GnnyREvbMznJSAsCgYEAt7sfK5PL\
DvAUw2v5xyj3RXDu99a4jE6xV9rI1aqBx+i3Wxqnqmo9EaoV4e0QAMwaN31g1kBQwmAALfHag41ivIpIamRo0U2rSR\
D8f4X649iporu0kTdequKNNgCP/WSNWw1f7zndx5dLrERUFRJaDno2FedZqQzufFGd2mMAen8CgYEAphTbVFDof57R\
qucn9lTGmh1P2emnFgtwrc4tosx1YXAoFn15nl1GHIYz2LvKrdOIsatftvPPyyKGrtilGKHlIl4FpffHKxTITVvWwy\
L6+ylZg06ro7McqhONiwj+6SPv1LJhFQOw0sDQL7Vxk2YasD7qw3NsTcbUEY//BW+54LUCgYAz6W38LQ0Bknn7YUW4\
rO14tFkAs61/DzjyXsHCBSQYLLupxRU8hDnvBMScChQsdX6u0QEMaC2pTeCfGqen5cnRBa1CSk6HXM+ZnHALQ/rIZ8\
4+SZTSNvfLhqlpaa1FZiS+ZkAF4q60Fx5tdPzg20eQsZ0YgT6HEj1L6O+V5cUb1wKBgACkXBvsPc9N+NC77Q8s84yK\
iG674nIwMfSuirBDdWWEUNs+ishWFG2jWbTPIuA/4SnmEe5jOqj4x4bEVnXNaOGxz1tB16dlr7bxIMgykcvcqPgkBp\
bysS3mximAIQelkPELQXo+E0vz8zPgDb0BU+MrmSk+ydXakZZbzEi/3PMA";
const KEY1_N: &str = "mIUuLTy3I3EGYL3Ih_DyG5891k7UeBwDS6UYzpCA1s_Yvw--nwQeDr9s1DGb7J_qvLEg2Tdq6zd4yvZ2dUfKh0XtDOaiAgPJwuVSs94TRDAv-TLyUTLQu5oWCijyCHqOUOTVqX_obTlNV7ri2ldFEkOJqYk7OCx3OLN8u0cgEyP8UZpaIBFQGMnBzk2abgvjUfRVLlRIngi1cCLbFu_iDKwfI3K-kl150NrNdYJ6pvDpv1Va6f0cPvHuW5BMToGbTOicILCI0KASh1sWLbvjhk5GI4x_F6cTnhk-3ttPSW_-afiLHUrBWE9L6jNSWDi0WJj-Ccano1-dghct2C_7dQ";

/// Test-only RSA key (PKCS#1 DER, base64).
const KEY2_DER_B64: &str = "MIIEowIBAAKCAQEAzr5CrZiJGVS9/EXTZ+Zruk3y3fd4GTdH9riWHezkcmRQoENjq8/4sFryGI5b4vRODMKL5yR7gT\
jvz5S41EDWcRuT7+UxBMwRO1Fx1GSi+5/j3XTFTeZb+ZUUnl/Ix9zU0LlMgeA3vzzrSLWl8c5FHV+AQQ853lP/YC/7\
R77NPSotppwzAhiVCeEaWl+veYV4TNO5bJumc/oTxgOIU+u0QFIwQPoHpDc4/Sn8PsTOx/YNEUo6iMbkXuIKcvW1zl\
J0UQ6zkXf7Rs0kHPZAT5UpSkd35E3guh87x/jXwE5gs83tPeGKFUJJPIbvfxEX60ew5bkWDDMNEo8u0sCEIOY43wID\
AQABAoIBAAnpaTz1YS1LuMgNePM0QtntvsURhjp/Qf38H4ZTwygQ0yS71l14XQ3nbk/rE1CwMcW+1gJA54LsfeLP2I\
SkjyNhFRidPlpihjj30KNEJ+Q0aDJH1OXFM4eltBVbtj6Owc039QkM/N84Rnd37frHztx3pah42GdmU4oDAuMPrLtP\
4kZ95Ch4CP3CDlDhO4PkOIwsdL01J+Zlex2EYn3HC4N/2O/oR8ofovqs3ZJr8AsXmRSq5mB04BONf2RYF38KclZDMM\
G8Cr6Kb3ABRVAJ3Gr1ajlh4GVgxuQmebqokt9ujPVyaLzmPidoAHfajSRNp+a/8pUWA1DHhvk5zr/wPgECgYEA8ZHy\
CU2hyotci2qEtRh7UrsnlLVGIBaaS6G2+wGJDYFERopr0GzQalKnRwPTABxpuucfYANhiwqFJWkqmYvpdheuma1gV1\
rAqNNK6O15I+kl/baV26D1eP6c8KbA0TNtD6dtdaoIY44mYV9zv9HVErSXEyF6SJK6bX+TAfXphl8CgYEA2xe/Sz54\
TTMl4FZj06rhC/QDvPEw7tq8YRLnW3HfiBEScKia82UTSQTMqy9qMSxPhnN/gRytfnK0+b8KL7i4E4NlEdS1qo5BHg\
rf3jO8Ksq9AGMozUQWWPREcn7iqRWw2AwoSpNlUekw0eyG8Dp2WWR5vBxfwyGTRJqmlb43XYECgYArqw1MvzrbCVw+\
W5AHyJgqeWiLSkWV8WANAfu43isvRMnZ0pXwxGrcfXp9rORMpdY7EiKq0ZGld85f1+X6gb8/OMK4Rw4eXGptWly1RJ\
BcfH4Aoivu2ubk62nlWs+KQbiaVtLDrWv8yyqG+aFL8JuK2RhiPfAEBHos5x3lAdYoEwKBgAVcu23YBZG+Irsu4hqY\
IBHu0viY3p259MpbcBYo31OxN0ZSmhhC7QnoeCnoayzw7LFZulEqpoRlwlAqgNFSMA8qNBsPnbKi8K0PjxMdKQnTFH\
Uh+Cmt9O4QbGxw9pM02LMw+Pt6SAyNLIi2xUaz55mgf+o+t4lLFROkxVb85NYBAoGBAO/3psqI/igxKJujphG64zUo\
zKDCRj2fpV2iWcQymK7lei8i60pQfUw6vm2jeYEnPf+/PdecojAS3J9tH9ZqW+FoB9OnjTzOpJX0GGjCk8DLbpbr0n\
5ZawqzHWh3o8IsOnwQI+KIIjZuV1S17atOEdiKdnP5t4eYQJm2S3ZjHWZP";

#[tokio::test]
async fn without_an_idp_refresh_token_refresh_rechecks_the_user_at_userinfo() {
    let h = harness().await;
    h.idp.lock().unwrap().no_refresh_tokens = true;
    let (device_code, params) = h.to_idp().await;
    assert_eq!(h.callback(&params, Mode::Good).await, 200);
    let (status, tokens) = h.poll(&device_code).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, refreshed) = h
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(
        claims(refreshed["access_token"].as_str().unwrap())["groups"],
        json!(["engineering"])
    );
    h.idp.lock().unwrap().user_removed = true;
    let (status, body) = h
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    refreshed["refresh_token"].as_str().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_grant"))
    );
}

//! A fake Google Vertex AI (token endpoint + Anthropic publisher models) on 127.0.0.1.
//!
//! - `POST /token`: the OAuth2 JWT-bearer exchange (RFC 7523) as Google runs it: the
//!   assertion must be RS256-signed by the TEST-ONLY service-account key in
//!   `tests/fixtures/vertex-test-service-account.json`, with `iss` = its `client_email`,
//!   `aud` = Google's token endpoint (or this fake's), `scope` including `cloud-platform`,
//!   and a lifetime of at most one hour. Answers `ya29.fake-N` tokens with a configurable
//!   `expires_in`, and counts exchanges.
//! - `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict` and
//!   `:streamRawPredict`, and `models/count-tokens:rawPredict`: require an unexpired token
//!   it issued; the body must not carry `model` (except count-tokens) or `tags`, must carry
//!   `anthropic_version: vertex-2023-10-16`, and `streamRawPredict` needs `"stream": true`;
//!   `anthropic-beta` must not name `request-tags-…`. Answers Anthropic JSON / SSE with pings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fake_cloud::{self, CloudReply, CloudRequest, Script, Style};
use crate::http_server::TestResponse;

pub const VERTEX_VERSION: &str = "vertex-2023-10-16";
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The model name Vertex reports in answers.
pub const ANSWER_MODEL: &str = "claude-sonnet-4-5-20250929";

/// The TEST-ONLY service-account key file.
pub fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("vertex-test-service-account.json")
}

/// The fixture key file as JSON.
pub fn service_account() -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        fixture_path(),
    )?)?)
}

/// The fixture key file with its `token_uri` replaced (as a string, ready to configure).
pub fn service_account_json(token_uri: &str) -> anyhow::Result<String> {
    let mut sa = service_account()?;
    sa["token_uri"] = json!(token_uri);
    Ok(sa.to_string())
}

#[derive(Debug, Clone)]
pub struct FakeVertexConfig {
    pub project_id: String,
    pub region: String,
    /// The service account whose assertions are accepted.
    pub client_email: String,
    pub private_key_id: String,
    /// RSA public key as base64url modulus / exponent (JWK).
    pub jwk_n: String,
    pub jwk_e: String,
    /// `expires_in` of issued tokens (seconds).
    pub expires_in: u64,
    /// Tokens accepted without an exchange (a static-token provider).
    pub static_tokens: Vec<String>,
}

impl FakeVertexConfig {
    /// Accepts the fixture service account for `project_id` in `region`.
    pub fn from_fixture(project_id: &str, region: &str) -> anyhow::Result<Self> {
        let sa = service_account()?;
        let jwk_path = fixture_path().with_file_name("vertex-test-service-account.pub.jwk.json");
        let jwk: Value = serde_json::from_str(&std::fs::read_to_string(jwk_path)?)?;
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(FakeVertexConfig {
            project_id: project_id.to_owned(),
            region: region.to_owned(),
            client_email: s(&sa["client_email"]),
            private_key_id: s(&sa["private_key_id"]),
            jwk_n: s(&jwk["n"]),
            jwk_e: s(&jwk["e"]),
            expires_in: 3599,
            static_tokens: Vec::new(),
        })
    }
}

/// Which prediction method a request called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VertexMethod {
    RawPredict,
    StreamRawPredict,
    CountTokens,
    Token,
    Unknown,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct VertexRequest {
    pub method: VertexMethod,
    pub project: String,
    pub region: String,
    /// The model path segment, percent-decoded (`claude-sonnet-4-5@20250929`).
    pub model: String,
    pub request: CloudRequest,
}

#[derive(Debug)]
struct State {
    config: FakeVertexConfig,
    script: Script,
    received: Vec<VertexRequest>,
    /// Issued tokens and when they expire.
    tokens: Vec<(String, Instant)>,
    exchanges: usize,
    /// Claims of every accepted assertion.
    assertions: Vec<Value>,
    completed_streams: usize,
}

#[derive(Debug, Clone)]
pub struct FakeVertex {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

type Refusal = (u16, Value);

impl FakeVertex {
    pub async fn start(
        config: FakeVertexConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Script {
            default: CloudReply::message("Hello from Vertex", 13, 7),
            ..Script::default()
        };
        let state = Arc::new(Mutex::new(State {
            config,
            script,
            received: Vec::new(),
            tokens: Vec::new(),
            exchanges: 0,
            assertions: Vec::new(),
            completed_streams: 0,
        }));
        let fake = FakeVertex { addr, state };
        let server = fake.clone();
        crate::http_server::spawn(listener, shutdown, move |req| {
            let fake = server.clone();
            async move { fake.handle(req).await }
        });
        Ok(fake)
    }

    /// The prediction base URL (paths start with `/v1/projects/…`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn reply_with(&self, reply: CloudReply) {
        if let Ok(mut s) = self.state.lock() {
            s.script.default = reply;
        }
    }

    pub fn push_reply(&self, reply: CloudReply) {
        if let Ok(mut s) = self.state.lock() {
            s.script.queue.push_back(reply);
        }
    }

    pub fn set_headers_delay(&self, delay: Duration) {
        if let Ok(mut s) = self.state.lock() {
            s.script.headers_delay = delay;
        }
    }

    /// `expires_in` of tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.config.expires_in = seconds;
        }
    }

    /// Successful token exchanges so far.
    pub fn exchanges(&self) -> usize {
        self.state.lock().map(|s| s.exchanges).unwrap_or(0)
    }

    /// Claims of the accepted assertions.
    pub fn assertions(&self) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| s.assertions.clone())
            .unwrap_or_default()
    }

    pub fn received(&self) -> Vec<VertexRequest> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// Prediction requests the fake accepted.
    pub fn accepted(&self) -> Vec<VertexRequest> {
        self.received()
            .into_iter()
            .filter(|r| r.method != VertexMethod::Token && r.request.accepted())
            .collect()
    }

    pub fn completed_streams(&self) -> usize {
        self.state.lock().map(|s| s.completed_streams).unwrap_or(0)
    }

    async fn handle(&self, req: hyper::Request<hyper::body::Incoming>) -> TestResponse {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let mut record = VertexRequest {
            method: VertexMethod::Unknown,
            project: String::new(),
            region: String::new(),
            model: String::new(),
            request: CloudRequest {
                method: parts.method.clone(),
                path: path.clone(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers.clone(),
                body: body.clone(),
                rejected: None,
            },
        };
        if parts.method == Method::POST && path == "/token" {
            record.method = VertexMethod::Token;
            let answer = self.exchange(&body);
            if let Err((status, v)) = &answer {
                record.request.rejected = Some((*status, v.to_string()));
            }
            self.record(record);
            return match answer {
                Ok(v) => fake_cloud::json_response(200, &v),
                Err((status, v)) => fake_cloud::json_response(status, &v),
            };
        }
        let verdict = parse_prediction(&parts.method, &path)
            .map(|(m, project, region, model)| {
                record.method = m;
                record.project = project;
                record.region = region;
                record.model = model;
            })
            .and_then(|()| self.check_prediction(&record, &parts.headers, &body));
        if let Err((status, v)) = verdict {
            record.request.rejected = Some((status, v.to_string()));
            self.record(record);
            return fake_cloud::json_response(status, &v);
        }
        let (reply, delay, gap) = {
            let Ok(mut s) = self.state.lock() else {
                return fake_cloud::json_response(500, &json!({"error": "poisoned"}));
            };
            s.received.push(record.clone());
            (s.script.take_next(), s.script.headers_delay, s.script.gap)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if record.method == VertexMethod::CountTokens {
            return match reply {
                CloudReply::Message { input_tokens, .. } => {
                    fake_cloud::json_response(200, &json!({"input_tokens": input_tokens}))
                }
                other => fake_cloud::anthropic_answer(
                    other,
                    false,
                    Style {
                        id: "",
                        model: ANSWER_MODEL,
                        gap,
                        ping: false,
                        headers: &[],
                    },
                    || {},
                ),
            };
        }
        let state = self.state.clone();
        fake_cloud::anthropic_answer(
            reply,
            record.method == VertexMethod::StreamRawPredict,
            Style {
                id: "msg_vrtx_01FakeVertexAnswer",
                model: ANSWER_MODEL,
                gap,
                ping: true,
                headers: &[],
            },
            move || {
                if let Ok(mut s) = state.lock() {
                    s.completed_streams += 1;
                }
            },
        )
    }

    fn record(&self, r: VertexRequest) {
        if let Ok(mut s) = self.state.lock() {
            s.received.push(r);
        }
    }

    /// The JWT-bearer exchange.
    fn exchange(&self, body: &[u8]) -> Result<Value, Refusal> {
        let grant = |d: &str| {
            (
                400,
                json!({"error": "invalid_grant", "error_description": d}),
            )
        };
        let pairs = fake_cloud::form_pairs(body);
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("grant_type") != Some(JWT_BEARER) {
            return Err((
                400,
                json!({"error": "unsupported_grant_type",
                       "error_description": "Invalid grant_type"}),
            ));
        }
        let assertion =
            get("assertion").ok_or_else(|| grant("Missing required parameter: assertion"))?;
        let Ok(config) = self.state.lock().map(|s| s.config.clone()) else {
            return Err((500, json!({"error": "internal_failure"})));
        };
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| grant("Invalid JWT: not a JWS"))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(grant("Invalid JWT Signature."));
        }
        if let Some(kid) = &header.kid
            && *kid != config.private_key_id
        {
            return Err(grant("Invalid JWT Signature."));
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_components(&config.jwk_n, &config.jwk_e)
            .map_err(|_| (500, json!({"error": "internal_failure"})))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[GOOGLE_TOKEN_URI.to_owned(), self.token_uri()]);
        validation.set_issuer(&[config.client_email.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    grant("Invalid JWT Signature.")
                }
                _ => grant(&format!("Invalid JWT: {e}")),
            })?
            .claims;
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) {
            return Err((
                400,
                json!({"error": "invalid_scope",
                       "error_description": "Invalid OAuth scope or ID token audience provided."}),
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        if exp <= iat || exp - iat > 3600 || iat > now + 60 || exp + 60 < now {
            return Err(grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let Ok(mut s) = self.state.lock() else {
            return Err((500, json!({"error": "internal_failure"})));
        };
        s.exchanges += 1;
        let token = format!("ya29.fake-{}", s.exchanges);
        let expires_in = s.config.expires_in;
        s.tokens.push((
            token.clone(),
            Instant::now() + Duration::from_secs(expires_in),
        ));
        s.assertions.push(claims);
        Ok(json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}))
    }

    fn check_prediction(
        &self,
        record: &VertexRequest,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Result<(), Refusal> {
        let Ok((config, tokens)) = self
            .state
            .lock()
            .map(|s| (s.config.clone(), s.tokens.clone()))
        else {
            return Err((500, json!({"error": "poisoned"})));
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let valid = config.static_tokens.iter().any(|t| t == bearer)
            || tokens
                .iter()
                .any(|(t, until)| t == bearer && Instant::now() < *until);
        if !valid {
            return Err((
                401,
                google_error_json(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                 login cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.",
                ),
            ));
        }
        if record.project != config.project_id {
            return Err((
                403,
                google_error_json(
                    403,
                    "PERMISSION_DENIED",
                    &format!(
                        "Permission 'aiplatform.endpoints.predict' denied on resource \
                          '//aiplatform.googleapis.com/projects/{}/locations/{}' (or it may not exist).",
                        record.project, record.region
                    ),
                ),
            ));
        }
        if record.region != config.region {
            return Err((
                404,
                google_error_json(
                    404,
                    "NOT_FOUND",
                    &format!(
                        "Publisher Model `projects/{}/locations/{}/publishers/anthropic/models/{}` not found.",
                        record.project, record.region, record.model
                    ),
                ),
            ));
        }
        let invalid = |m: &str| {
            (
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": m}}),
            )
        };
        if let Some(betas) = headers.get("anthropic-beta").and_then(|v| v.to_str().ok())
            && betas
                .split(',')
                .any(|b| b.trim().starts_with("request-tags"))
        {
            return Err(invalid(
                "Unexpected value(s) `request-tags` for the `anthropic-beta` header.",
            ));
        }
        let v: Value = serde_json::from_slice(body).map_err(|_| invalid("invalid JSON body"))?;
        let Some(obj) = v.as_object() else {
            return Err(invalid("body must be a JSON object"));
        };
        if obj.contains_key("tags") {
            return Err(invalid("tags: Extra inputs are not permitted"));
        }
        if obj.get("anthropic_version") != Some(&json!(VERTEX_VERSION)) {
            return Err(invalid(&format!(
                "anthropic_version: must be `{VERTEX_VERSION}`, got {}",
                obj.get("anthropic_version").unwrap_or(&Value::Null)
            )));
        }
        match record.method {
            VertexMethod::CountTokens => {
                if !obj.get("model").is_some_and(Value::is_string) {
                    return Err(invalid("model: Field required"));
                }
            }
            VertexMethod::RawPredict | VertexMethod::StreamRawPredict => {
                if obj.contains_key("model") {
                    return Err(invalid("model: Extra inputs are not permitted"));
                }
                let stream = obj.get("stream") == Some(&json!(true));
                if record.method == VertexMethod::StreamRawPredict && !stream {
                    return Err(invalid("streamRawPredict requires \"stream\": true"));
                }
                if record.method == VertexMethod::RawPredict && stream {
                    return Err(invalid("rawPredict does not stream; use streamRawPredict"));
                }
            }
            VertexMethod::Token | VertexMethod::Unknown => {}
        }
        Ok(())
    }
}

/// `(method, project, region, model)` of a prediction path.
fn parse_prediction(
    method: &Method,
    path: &str,
) -> Result<(VertexMethod, String, String, String), Refusal> {
    let not_found = || {
        (
            404,
            google_error_json(
                404,
                "NOT_FOUND",
                "The requested URL was not found on this server.",
            ),
        )
    };
    if method != Method::POST {
        return Err(not_found());
    }
    let rest = path.strip_prefix("/v1/projects/").ok_or_else(not_found)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [
        project,
        "locations",
        region,
        "publishers",
        "anthropic",
        "models",
        last,
    ] = parts.as_slice()
    else {
        return Err(not_found());
    };
    let (model, verb) = last.rsplit_once(':').ok_or_else(not_found)?;
    let model = String::from_utf8_lossy(&crate::sigv4_verify::percent_decode(model)).into_owned();
    let m = match (model.as_str(), verb) {
        ("count-tokens", "rawPredict") => VertexMethod::CountTokens,
        (_, "rawPredict") => VertexMethod::RawPredict,
        (_, "streamRawPredict") => VertexMethod::StreamRawPredict,
        _ => return Err(not_found()),
    };
    Ok((m, (*project).to_owned(), (*region).to_owned(), model))
}

/// Google's error envelope.
pub fn google_error_json(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// A Google API error reply (`wrapped`: inside a JSON array, as `streamRawPredict` sends).
pub fn google_error(code: u16, status: &str, message: &str, wrapped: bool) -> CloudReply {
    let v = google_error_json(code, status, message);
    CloudReply::Raw {
        status: code,
        headers: Vec::new(),
        body: if wrapped { json!([v]) } else { v }.to_string(),
    }
}

/// 429 RESOURCE_EXHAUSTED naming a project number (which must not reach clients).
pub fn quota_exhausted(wrapped: bool) -> CloudReply {
    google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model \
         with base model: anthropic-claude-sonnet-4-5. Please submit a quota increase request \
         for project 123456789012. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.",
        wrapped,
    )
}

/// 529 overloaded, Anthropic-shaped (from the model server).
pub fn overloaded() -> CloudReply {
    CloudReply::anthropic_error(529, "overloaded_error", "Overloaded")
}

/// PKCS#1 DER of the RSA key inside a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for
/// `jsonwebtoken::EncodingKey::from_rsa_der` (tests that mint their own assertions).
pub fn pkcs8_pem_to_pkcs1_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING }
    let (tag, body, _) = der_item(&der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_item(body)?; // version
    let (_, _, rest) = der_item(rest)?; // algorithm
    let (tag, key, _) = der_item(rest)?;
    (tag == 0x04).then(|| key.to_vec())
}

/// `(tag, contents, rest)` of one DER item.
fn der_item(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    Some((tag, b.get(start..start + len)?, b.get(start + len..)?))
}

/// A JWT-bearer assertion signed with the fixture key (claims overridable), for tests.
pub fn fixture_assertion(aud: &str, lifetime_s: u64) -> anyhow::Result<String> {
    let sa = service_account()?;
    let der = pkcs8_pem_to_pkcs1_der(sa["private_key"].as_str().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!("fixture key is not PKCS#8 RSA"))?;
    let key = jsonwebtoken::EncodingKey::from_rsa_der(&der);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = sa["private_key_id"].as_str().map(str::to_owned);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({"iss": sa["client_email"], "scope": CLOUD_PLATFORM_SCOPE, "aud": aud,
                        "iat": now, "exp": now + lifetime_s});
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(fake: &FakeVertex, assertion: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(fake.token_uri())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
            ))
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn token_exchange_checks_the_assertion_and_tokens_gate_predictions() {
        let shutdown = CancellationToken::new();
        let config = FakeVertexConfig::from_fixture("tollgate-test-project", "us-east5").unwrap();
        let fake = FakeVertex::start(config, shutdown.clone()).await.unwrap();

        let too_long = fixture_assertion(GOOGLE_TOKEN_URI, 7200).unwrap();
        assert_eq!(exchange(&fake, &too_long).await.status(), 400);
        let good = fixture_assertion(GOOGLE_TOKEN_URI, 3600).unwrap();
        let at = good.rfind('.').unwrap() + 10;
        let flipped = if &good[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
        let resp = exchange(&fake, &tampered).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(fake.exchanges(), 0);

        let ok = fixture_assertion(GOOGLE_TOKEN_URI, 3600).unwrap();
        let resp = exchange(&fake, &ok).await;
        assert_eq!(resp.status(), 200);
        let token: Value = resp.json().await.unwrap();
        assert_eq!(token["access_token"], "ya29.fake-1");
        assert_eq!(token["expires_in"], 3599);
        assert_eq!(fake.exchanges(), 1);

        let url = format!(
            "{}/v1/projects/tollgate-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
            fake.url()
        );
        let body = json!({"anthropic_version": VERTEX_VERSION, "max_tokens": 5, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
        let post = |bearer: &str, body: &Value| {
            reqwest::Client::new()
                .post(&url)
                .bearer_auth(bearer)
                .json(body)
                .send()
        };
        assert_eq!(post("ya29.other", &body).await.unwrap().status(), 401);
        let resp = post("ya29.fake-1", &body).await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("event: ping"), "{text}");
        assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let mut with_model = body.clone();
        with_model["model"] = json!("claude-sonnet-4-5");
        assert_eq!(
            post("ya29.fake-1", &with_model).await.unwrap().status(),
            400
        );
        let mut no_stream = body.clone();
        no_stream["stream"] = json!(false);
        assert_eq!(post("ya29.fake-1", &no_stream).await.unwrap().status(), 400);

        fake.reply_with(quota_exhausted(true));
        let resp = post("ya29.fake-1", &body).await.unwrap();
        assert_eq!(resp.status(), 429);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v[0]["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(fake.accepted().len(), 2);
        assert_eq!(fake.accepted()[0].model, "claude-sonnet-4-5@20250929");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn short_lived_tokens_expire() {
        let shutdown = CancellationToken::new();
        let mut config = FakeVertexConfig::from_fixture("p1", "global").unwrap();
        config.expires_in = 1;
        let fake = FakeVertex::start(config, shutdown.clone()).await.unwrap();
        let ok = fixture_assertion(&fake.token_uri(), 600).unwrap();
        assert_eq!(exchange(&fake, &ok).await.status(), 200);
        let url = format!(
            "{}/v1/projects/p1/locations/global/publishers/anthropic/models/count-tokens:rawPredict",
            fake.url()
        );
        let body = json!({"anthropic_version": VERTEX_VERSION, "model": "claude-opus-4-8",
                          "messages": [{"role": "user", "content": "hi"}]});
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth("ya29.fake-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"input_tokens": 13})
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth("ya29.fake-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        shutdown.cancel();
    }
}

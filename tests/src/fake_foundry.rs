//! A fake Microsoft Foundry Anthropic endpoint on 127.0.0.1:
//! `POST /anthropic/v1/messages` (and `/anthropic/v1/messages/count_tokens`) with the first-party
//! body and SSE; `model` is a deployment name. Authentication by `api-key` or `x-api-key`
//! equal to the configured key, or `Authorization: Bearer <Entra token>`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fake_cloud::{self, CloudReply, CloudRequest, Script, Style};
use crate::http_server::TestResponse;

/// The model name Foundry reports in answers.
pub const ANSWER_MODEL: &str = "claude-sonnet-4-5-20250929";

#[derive(Debug, Clone, Default)]
pub struct FakeFoundryConfig {
    pub api_key: Option<String>,
    pub entra_token: Option<String>,
    /// Deployment names that exist.
    pub deployments: HashSet<String>,
}

impl FakeFoundryConfig {
    pub fn api_key(key: &str, deployments: &[&str]) -> Self {
        FakeFoundryConfig {
            api_key: Some(key.to_owned()),
            entra_token: None,
            deployments: deployments.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    pub fn entra(token: &str, deployments: &[&str]) -> Self {
        FakeFoundryConfig {
            api_key: None,
            entra_token: Some(token.to_owned()),
            deployments: deployments.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

#[derive(Debug)]
struct State {
    config: FakeFoundryConfig,
    script: Script,
    received: Vec<CloudRequest>,
    completed_streams: usize,
}

#[derive(Debug, Clone)]
pub struct FakeFoundry {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeFoundry {
    pub async fn start(
        config: FakeFoundryConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Script {
            default: CloudReply::message("Hello from Foundry", 11, 4),
            ..Script::default()
        };
        let state = Arc::new(Mutex::new(State {
            config,
            script,
            received: Vec::new(),
            completed_streams: 0,
        }));
        let fake = FakeFoundry { addr, state };
        let server = fake.clone();
        crate::http_server::spawn(listener, shutdown, move |req| {
            let fake = server.clone();
            async move { fake.handle(req).await }
        });
        Ok(fake)
    }

    /// The provider base URL (`…/anthropic`; requests go to `{base}/v1/messages`).
    pub fn url(&self) -> String {
        format!("http://{}/anthropic", self.addr)
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

    pub fn received(&self) -> Vec<CloudRequest> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    pub fn accepted(&self) -> Vec<CloudRequest> {
        self.received()
            .into_iter()
            .filter(CloudRequest::accepted)
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
        let mut record = CloudRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
            rejected: None,
        };
        let Ok(config) = self.state.lock().map(|s| s.config.clone()) else {
            return fake_cloud::json_response(500, &json!({"error": "poisoned"}));
        };
        let count_tokens = record.path == "/anthropic/v1/messages/count_tokens";
        let verdict = check(&config, &parts.method, &record, count_tokens);
        if let Err((status, v)) = verdict {
            record.rejected = Some((status, v.to_string()));
            if let Ok(mut s) = self.state.lock() {
                s.received.push(record);
            }
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
        if count_tokens && let CloudReply::Message { input_tokens, .. } = reply {
            return fake_cloud::json_response(200, &json!({"input_tokens": input_tokens}));
        }
        let stream = record.json()["stream"] == json!(true);
        let state = self.state.clone();
        fake_cloud::anthropic_answer(
            reply,
            stream,
            Style {
                id: "msg_01FakeFoundryAnswer",
                model: ANSWER_MODEL,
                gap,
                ping: true,
                headers: &[
                    ("request-id", "req_fake_foundry"),
                    ("apim-request-id", "6f1f0e52-0000-4000-8000-00000000f00d"),
                ],
            },
            move || {
                if let Ok(mut s) = state.lock() {
                    s.completed_streams += 1;
                }
            },
        )
    }
}

fn check(
    config: &FakeFoundryConfig,
    method: &Method,
    record: &CloudRequest,
    count_tokens: bool,
) -> Result<(), (u16, Value)> {
    if method != Method::POST || !(record.path == "/anthropic/v1/messages" || count_tokens) {
        return Err((
            404,
            json!({"error": {"code": "404", "message": "Resource not found"}}),
        ));
    }
    let key_ok = config.api_key.as_deref().is_some_and(|want| {
        record.header("api-key") == Some(want) || record.header("x-api-key") == Some(want)
    });
    let bearer_ok = config.entra_token.as_deref().is_some_and(|want| {
        record
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(want)
    });
    if !(key_ok || bearer_ok) {
        return Err((
            401,
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription \
                   key or wrong API endpoint. Make sure to provide a valid key for an active \
                   subscription and use a correct regional API endpoint for your resource."}}),
        ));
    }
    if record.header("anthropic-version").is_none() {
        return Err((
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error",
                   "message": "anthropic-version: header is required"}}),
        ));
    }
    let v = record.json();
    let model = v["model"].as_str().unwrap_or_default();
    if !config.deployments.contains(model) {
        return Err((
            404,
            json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for \
                   this resource does not exist. If you created the deployment within the last 5 \
                   minutes, please wait a moment and try again."}}),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn foundry_checks_key_and_deployment_and_streams() {
        let shutdown = CancellationToken::new();
        let fake = FakeFoundry::start(
            FakeFoundryConfig::api_key("foundry-key", &["claude-sonnet-5"]),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let post = |key: &str, model: &str, stream: bool| {
            reqwest::Client::new()
                .post(format!("{}/v1/messages", fake.url()))
                .header("api-key", key)
                .header("anthropic-version", "2023-06-01")
                .json(&json!({"model": model, "max_tokens": 5, "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]}))
                .send()
        };
        assert_eq!(
            post("wrong", "claude-sonnet-5", false)
                .await
                .unwrap()
                .status(),
            401
        );
        let resp = post("foundry-key", "claude-nope", false).await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(
            resp.json::<Value>().await.unwrap()["error"]["code"],
            "DeploymentNotFound"
        );
        let resp = post("foundry-key", "claude-sonnet-5", true).await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.starts_with("event: message_start"), "{text}");
        assert_eq!(fake.completed_streams(), 1);
        let resp = post("foundry-key", "claude-sonnet-5", false).await.unwrap();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["content"][0]["text"], "Hello from Foundry");
        assert_eq!(fake.accepted().len(), 2);
        shutdown.cancel();
    }
}

//! Small helpers shared by the end-to-end tests.

use std::time::Duration;

use serde_json::{Value, json};

/// A minimal Messages request body.
pub fn message_body(model: &str, stream: bool) -> String {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// POSTs `body` to `{base}/v1/messages?beta=true` with `key` in `x-api-key`.
pub async fn post_messages(base: &str, key: &str, body: String) -> reqwest::Response {
    client()
        .post(format!("{base}/v1/messages?beta=true"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

/// Asserts the Anthropic error envelope and returns the message.
pub async fn error_of(resp: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert!(
        resp.headers().contains_key("request-id"),
        "request-id header"
    );
    let v: Value = resp.json().await.expect("json error body");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], kind, "{v}");
    v["error"]["message"].as_str().expect("message").to_owned()
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if f().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Splits an SSE body into `(event, data)` pairs.
pub fn sse_events(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_owned();
                }
            }
            (event, data)
        })
        .collect()
}

/// Usage rows for one principal, straight from the database.
pub async fn usage_rows(
    pool: &sqlx::PgPool,
) -> Vec<(String, String, i64, i64, i64, i64, i64, String)> {
    sqlx::query_as(
        "SELECT request_id::text, model, input_tokens, output_tokens, cache_creation_5m_tokens, \
         cache_creation_1h_tokens, cache_read_tokens, outcome FROM usage_records ORDER BY started_at",
    )
    .fetch_all(pool)
    .await
    .expect("usage rows")
}

use std::time::Duration;

use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack};
use tollgate_proto::v1 as pb;
use tonic::metadata::MetadataValue;

use crate::support::{client, eventually, message_body, post_messages, usage_rows};

#[tokio::test]
async fn streamed_and_json_usage_is_recorded_once_with_every_token_class() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::stream(SONNET, 25, &["a", "b"], 9));
    let dp = stack.data_plane().await.unwrap();
    let resp = post_messages(&dp.url, &stack.alice_key, message_body(SONNET, true)).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    stack.fake.reply_with(Reply::message(SONNET, "hi", 12, 5));
    let resp = post_messages(&dp.url, &stack.alice_key, message_body(SONNET, false)).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();

    let pool = stack.db.pool().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            usage_rows(&pool).await.len() == 2
        })
        .await
    );
    let rows = usage_rows(&pool).await;
    let (_, model, input, output, c5m, c1h, read, outcome) = rows[0].clone();
    assert_eq!(
        (model.as_str(), input, output, c5m, c1h, read),
        (SONNET, 25, 9, 3, 4, 11)
    );
    assert_eq!(outcome, "complete");
    let (_, _, input, output, c5m, c1h, read, _) = rows[1].clone();
    assert_eq!((input, output, c5m, c1h, read), (12, 5, 0, 0, 0));
    pool.close().await;
    stack.finish().await;
}

fn record(id: &str, output: u64) -> pb::UsageRecord {
    pb::UsageRecord {
        request_id: id.into(),
        data_plane_id: "dp-test".into(),
        started_at_unix_ms: 1_763_000_000_000,
        duration_ms: 12,
        model: SONNET.into(),
        upstream_model: SONNET.into(),
        endpoint: "messages".into(),
        stream: true,
        status: 200,
        outcome: pb::UsageOutcome::Complete as i32,
        input_tokens: 10,
        output_tokens: output,
        ..Default::default()
    }
}

#[tokio::test]
async fn resent_usage_batch_is_stored_exactly_once() {
    let stack = Stack::start().await.unwrap();
    let channel = tonic::transport::Endpoint::from_shared(stack.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: MetadataValue<_> = format!(
        "Bearer {}",
        secrecy::ExposeSecret::expose_secret(&stack.sync_token)
    )
    .parse()
    .unwrap();
    let mut sync =
        pb::sync_client::SyncClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", token.clone());
            Ok(r)
        });
    let a = uuid::Uuid::now_v7().to_string();
    let b = uuid::Uuid::now_v7().to_string();
    let batch = pb::UsageBatch {
        records: vec![record(&a, 5), record(&b, 7)],
    };
    let first = sync.report_usage(batch.clone()).await.unwrap().into_inner();
    assert_eq!((first.inserted, first.duplicates), (2, 0));
    let again = sync.report_usage(batch).await.unwrap().into_inner();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let pool = stack.db.pool().await.unwrap();
    let rows = usage_rows(&pool).await;
    assert_eq!(rows.len(), 2);
    let total: i64 = rows.iter().map(|r| r.3).sum();
    assert_eq!(total, 12, "each record counted once");
    pool.close().await;
    stack.finish().await;
}

#[tokio::test]
async fn usage_of_a_stream_the_client_abandons_is_still_recorded() {
    let stack = Stack::start().await.unwrap();
    let deltas: Vec<&str> = vec!["tok"; 30];
    let Reply::Sse { events, .. } = Reply::stream(SONNET, 40, &deltas, 30) else {
        unreachable!()
    };
    stack.fake.reply_with(Reply::Sse {
        events,
        gap: Duration::from_millis(50),
    });
    let dp = stack.data_plane().await.unwrap();
    let mut resp = client()
        .post(format!("{}/v1/messages", dp.url))
        .header("x-api-key", &stack.alice_key)
        .body(message_body(SONNET, true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    drop(resp); // the client goes away mid-stream

    let pool = stack.db.pool().await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            usage_rows(&pool).await.len() == 1
        })
        .await
    );
    let rows = usage_rows(&pool).await;
    let (_, _, input, output, _, _, _, outcome) = rows[0].clone();
    assert_eq!(
        (input, output),
        (40, 30),
        "billed as the provider bills the whole stream"
    );
    assert_eq!(outcome, "client_disconnected");
    assert_eq!(
        stack.fake.completed_streams(),
        1,
        "upstream was read to its end"
    );
    pool.close().await;
    stack.finish().await;
}

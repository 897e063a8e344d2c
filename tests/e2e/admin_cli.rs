use std::time::Duration;

use serde_json::Value;
use tollgate_cli::admin::{execute, parse_args};
use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack};

use crate::support::{eventually, message_body, post_messages};

/// Runs `tollgate admin <words>` against the stack and returns what it prints.
async fn admin(stack: &Stack, words: &[&str]) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied())?;
    let mut client = stack.admin().await?;
    execute(&mut client, args.command, args.format).await
}

#[tokio::test]
async fn admin_cli_creates_a_group_account_and_key_that_work_and_reports_usage() {
    let stack = Stack::start().await.unwrap();
    stack.fake.reply_with(Reply::message(SONNET, "hi", 30, 7));
    let dp = stack.data_plane().await.unwrap();

    admin(
        &stack,
        &["groups", "create", "reviewers", "--models", SONNET],
    )
    .await
    .unwrap();
    admin(
        &stack,
        &[
            "service-accounts",
            "create",
            "--name",
            "review-bot",
            "--group",
            "reviewers",
        ],
    )
    .await
    .unwrap();
    let out = admin(
        &stack,
        &[
            "--format",
            "json",
            "keys",
            "create",
            "--principal",
            "review-bot",
            "--name",
            "ci",
            "--expires-in",
            "30d",
        ],
    )
    .await
    .unwrap();
    let created: Value = serde_json::from_str(&out).unwrap();
    let secret = created[0]["secret"].as_str().unwrap().to_owned();
    let key_id = created[0]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tg_"));
    assert_ne!(created[0]["expires_at"], "-");

    let table = admin(&stack, &["keys", "list", "--principal", "review-bot"])
        .await
        .unwrap();
    assert!(table.contains(&key_id), "{table}");
    assert!(!table.contains(&secret), "the secret is shown only once");

    let served = eventually(Duration::from_secs(5), || async {
        post_messages(&dp.url, &secret, message_body(SONNET, false))
            .await
            .status()
            == 200
    })
    .await;
    assert!(served, "the new key works without a restart");

    let csv = eventually(Duration::from_secs(10), || async {
        admin(&stack, &["--format", "csv", "usage", "--by", "user,model", "--user", "review-bot"])
            .await
            .unwrap()
            == format!(
                "user,model,requests,input_tokens,output_tokens,cache_write_5m_tokens,cache_write_1h_tokens,cache_read_tokens\r\nreview-bot,{SONNET},1,30,7,0,0,0\r\n"
            )
    })
    .await;
    assert!(csv, "usage report as CSV");

    admin(&stack, &["keys", "revoke", &key_id]).await.unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        post_messages(&dp.url, &secret, message_body(SONNET, false))
            .await
            .status()
            == 401
    })
    .await;
    assert!(refused);

    let err = admin(&stack, &["groups", "create", "reviewers"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AlreadyExists"), "{err}");
    stack.finish().await;
}

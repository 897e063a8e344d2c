use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack, claude_cli};

#[tokio::test]
async fn real_claude_cli_completes_a_prompt_through_the_gateway() {
    let stack = Stack::start().await.unwrap();
    stack
        .fake
        .reply_with(Reply::stream(SONNET, 120, &["Toll", "gate ", "works."], 5));
    let dp = stack.data_plane().await.unwrap();
    let run = claude_cli::print_mode(&dp.url, &stack.alice_key, SONNET, "say hi")
        .await
        .unwrap();
    assert!(
        run.success,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains("Tollgate works."), "{}", run.stdout);
    let got = stack.fake.received();
    assert!(!got.is_empty());
    for req in &got {
        assert!(
            req.path_and_query.starts_with("/v1/messages"),
            "{}",
            req.path_and_query
        );
        assert!(
            !req.headers.contains_key("authorization"),
            "client token not forwarded"
        );
        assert_eq!(req.headers["x-api-key"], "sk-upstream-secret");
    }

    // A model outside the user's groups: the CLI shows the gateway's reason and gives up.
    let run = claude_cli::print_mode(&dp.url, &stack.alice_key, "claude-opus-4-8", "hi")
        .await
        .unwrap();
    let shown = format!("{}{}", run.stdout, run.stderr);
    assert!(shown.contains("claude-opus-4-8"), "{shown}");
    assert!(shown.contains("not allowed"), "{shown}");
    stack.finish().await;
}

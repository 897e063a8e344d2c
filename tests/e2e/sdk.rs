use tollgate_e2e::stack::SONNET;
use tollgate_e2e::{Reply, Stack, python};

const SCRIPT: &str = r#"
import anthropic, os, sys
client = anthropic.Anthropic(max_retries=0)
mode = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MODE", "")
msg = client.messages.create(model="claude-sonnet-5", max_tokens=64,
    messages=[{"role": "user", "content": "hello"}])
print("JSON", msg.content[0].text, msg.usage.input_tokens, msg.usage.output_tokens)
"#;

const STREAM_SCRIPT: &str = r#"
import anthropic
client = anthropic.Anthropic(max_retries=0)
with client.messages.stream(model="claude-sonnet-5", max_tokens=64,
        messages=[{"role": "user", "content": "hello"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
print("STREAM", text, final.usage.input_tokens, final.usage.output_tokens)
try:
    client.messages.create(model="claude-opus-4-8", max_tokens=8,
        messages=[{"role": "user", "content": "hi"}])
    print("DENIED-NOT-RAISED")
except anthropic.BadRequestError as e:
    print("DENIED", e.status_code, "claude-opus-4-8" in str(e))
"#;

#[tokio::test]
async fn official_python_sdk_streams_and_calls_through_the_gateway() {
    let stack = Stack::start().await.unwrap();
    let dp = stack.data_plane().await.unwrap();

    stack
        .fake
        .reply_with(Reply::message(SONNET, "hi from upstream", 8, 4));
    let out = python::run_script(SCRIPT, &dp.url, &stack.alice_key)
        .await
        .unwrap();
    assert_eq!(out.trim(), "JSON hi from upstream 8 4");

    stack
        .fake
        .reply_with(Reply::stream(SONNET, 21, &["Hel", "lo"], 6));
    let out = python::run_script(STREAM_SCRIPT, &dp.url, &stack.alice_key)
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["STREAM Hello 21 6", "DENIED 400 True"]);
    stack.finish().await;
}

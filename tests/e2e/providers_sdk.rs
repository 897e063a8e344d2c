//! The official `anthropic` Python SDK streams through Tollgate to each fake cloud provider.

use tollgate_e2e::stack::target;
use tollgate_e2e::{Stack, python};

use crate::providers_common::*;

fn stream_script(model: &str) -> String {
    format!(
        r#"
import anthropic
client = anthropic.Anthropic(max_retries=0)
with client.messages.stream(model="{model}", max_tokens=64,
        messages=[{{"role": "user", "content": "hello"}}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
print("STREAM", final.model, "|", text, "|", final.usage.input_tokens, final.usage.output_tokens)
msg = client.messages.create(model="{model}", max_tokens=64,
    messages=[{{"role": "user", "content": "hello"}}])
print("JSON", msg.model, "|", msg.content[0].text, "|", msg.usage.input_tokens, msg.usage.output_tokens)
"#
    )
}

#[tokio::test]
async fn official_python_sdk_streams_through_tollgate_to_each_cloud_provider() {
    let stack = Stack::start().await.unwrap();
    let clouds = Clouds::start(&stack).await;
    let cases = [
        (
            "claude-sonnet-4-5",
            "bedrock",
            "Hello from Bedrock",
            (14, 6),
        ),
        ("claude-opus-4-8", "mantle", "Hello from Bedrock", (14, 6)),
        ("claude-haiku-4-5", "vertex", "Hello from Vertex", (13, 7)),
        (
            "claude-sonnet-4-6",
            "foundry",
            "Hello from Foundry",
            (11, 4),
        ),
    ];
    for (model, provider, _, _) in cases {
        stack
            .set_route(model, vec![target(provider, upstream_of(provider), None)])
            .await
            .unwrap();
    }
    let dp = stack.data_plane().await.unwrap();
    for (model, provider, text, (input, output)) in cases {
        let out = python::run_script(&stream_script(model), &dp.url, &stack.bot_key)
            .await
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                format!("STREAM {model} | {text} | {input} {output}"),
                format!("JSON {model} | {text} | {input} {output}"),
            ],
            "{provider}"
        );
    }
    assert_eq!(
        clouds.bedrock.completed_streams(),
        2,
        "invoke stream + mantle stream"
    );
    assert_eq!(clouds.vertex.completed_streams(), 1);
    assert_eq!(clouds.foundry.completed_streams(), 1);
    stack.finish().await;
}

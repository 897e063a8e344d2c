use crate::meter::SseUsageScanner;

use super::*;

const BODY: &[u8] = br#"{"model":"claude-sonnet-5","max_tokens":32000,"stream":true,"messages":[
    {"role":"user","content":"first question"},
    {"role":"assistant","content":[{"type":"text","text":"an answer"}]},
    {"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"tool_result","tool_use_id":"t","content":"r"},{"type":"text","text":"  What is   a gateway? "}]}
]}"#;

fn answer_for(reply: &Reply) -> Answer<'_> {
    Answer {
        id: "msg_demo_1",
        model: "claude-sonnet-5",
        input_tokens: 42,
        reply,
    }
}

#[test]
fn reply_quotes_the_last_user_text_deterministically() {
    let a = Reply::new(BODY, "claude-sonnet-5", Some(32000));
    assert_eq!(a, Reply::new(BODY, "claude-sonnet-5", Some(32000)));
    assert!(
        a.text
            .contains("You said: \"What is a gateway?\" — 4 words."),
        "{}",
        a.text
    );
    assert!(a.text.contains("claude-sonnet-5"));
    assert_eq!(a.stop_reason, "end_turn");
    assert_eq!(a.output_tokens, (a.text.len() as u64).div_ceil(4));
    let plain = Reply::new(
        br#"{"messages":[{"role":"user","content":"hi"}]}"#,
        "m",
        None,
    );
    assert!(plain.text.contains("You said: \"hi\""));
    let none = Reply::new(br#"{"messages":[]}"#, "m", None);
    assert!(none.text.contains("no text"));
}

#[test]
fn reply_respects_max_tokens() {
    let r = Reply::new(BODY, "claude-sonnet-5", Some(3));
    assert_eq!((r.output_tokens, r.stop_reason), (3, "max_tokens"));
    assert!(r.text.len() <= 12);
}

#[test]
fn pieces_cover_the_whole_text() {
    let text = "one two three four five six seven eight nine — ten";
    let pieces = text_pieces(text);
    assert!(pieces.len() >= 3);
    assert_eq!(pieces.concat(), text);
}

#[test]
fn message_json_has_the_anthropic_shape() {
    let reply = Reply::new(BODY, "claude-sonnet-5", None);
    let answer = answer_for(&reply);
    let m: serde_json::Value = serde_json::from_slice(&answer.message_json()).unwrap();
    assert_eq!(m["id"], "msg_demo_1");
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-sonnet-5");
    assert_eq!(m["content"][0]["text"], reply.text.as_str());
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], 42);
    assert_eq!(m["usage"]["output_tokens"], reply.output_tokens);
    assert_eq!(m["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(m["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 0);
}

#[test]
fn sse_is_well_formed_and_metered() {
    let reply = Reply::new(BODY, "claude-sonnet-5", None);
    let events = answer_for(&reply).events();
    let mut names = Vec::new();
    let mut text = String::new();
    let mut scanner = SseUsageScanner::new();
    for (_, bytes) in &events {
        scanner.feed(bytes);
        let frame = std::str::from_utf8(bytes).unwrap();
        let frame = frame.strip_suffix("\n\n").unwrap();
        let (event_line, data_line) = frame.split_once('\n').unwrap();
        let name = event_line.strip_prefix("event: ").unwrap();
        let data: serde_json::Value =
            serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name, "event name equals data type");
        if name == "content_block_delta" {
            text.push_str(data["delta"]["text"].as_str().unwrap());
        }
        names.push(name.to_owned());
    }
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(names.iter().filter(|n| *n == "content_block_delta").count() >= 3);
    assert_eq!(text, reply.text);
    let usage = scanner.finish().usage;
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (42, reply.output_tokens)
    );
    assert!(
        events
            .iter()
            .skip(3)
            .take(1)
            .all(|(pause, _)| !pause.is_zero())
    );
}

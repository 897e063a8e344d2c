use tollgate_policy::Usage;

use super::*;

/// A realistic Anthropic stream: usage in `message_start`, cumulative totals in
/// `message_delta` (which here also revises input and cache fields).
pub(crate) const STREAM: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":300,"cache_read_input_tokens":1200,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1,"service_tier":"standard"}}}"#,
    "\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello \"usage\": {\"output_tokens\": 999}"}}"#,
    "\n\n",
    ": a comment line\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world, event: message_delta"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":26,"cache_read_input_tokens":1300,"output_tokens":42}}"#,
    "\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

const EXPECTED: Usage = Usage {
    input_tokens: 26,
    output_tokens: 42,
    cache_creation_5m_tokens: 100,
    cache_creation_1h_tokens: 200,
    cache_read_tokens: 1300,
};

fn scan(chunks: &[&[u8]]) -> Metered {
    let mut scanner = SseUsageScanner::new();
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish()
}

#[test]
fn reads_usage_from_start_and_cumulative_deltas() {
    let metered = scan(&[STREAM.as_bytes()]);
    assert_eq!(metered.usage, EXPECTED);
    assert!(!metered.error_event);
}

#[test]
fn same_usage_for_every_single_split_point() {
    for stream in [STREAM.to_owned(), STREAM.replace('\n', "\r\n")] {
        let bytes = stream.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(scan(&[a, b]).usage, EXPECTED, "split at {i}");
        }
    }
}

#[test]
fn same_usage_byte_by_byte() {
    for stream in [STREAM.to_owned(), STREAM.replace('\n', "\r\n")] {
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(scan(&chunks).usage, EXPECTED);
    }
}

#[test]
fn same_usage_for_many_random_chunkings() {
    // A fixed-seed LCG: deterministic, no extra dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % bound
    };
    for stream in [STREAM.to_owned(), STREAM.replace('\n', "\r\n")] {
        let bytes = stream.as_bytes();
        for _ in 0..2000 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let len = 1 + next(40);
                let end = (at + len).min(bytes.len());
                chunks.push(&bytes[at..end]);
                at = end;
            }
            assert_eq!(scan(&chunks).usage, EXPECTED);
        }
    }
}

#[test]
fn reads_events_without_event_lines_by_their_type() {
    let stream: String = STREAM
        .lines()
        .filter(|l| !l.starts_with("event:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(scan(&[stream.as_bytes()]).usage, EXPECTED);
}

#[test]
fn accepts_data_without_space_and_multi_line_data() {
    let stream = concat!(
        "event:message_start\n",
        "data:{\"type\":\"message_start\",\n",
        "data: \"message\":{\"usage\":{\"input_tokens\":9}}}\n",
        "\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n",
    );
    let metered = scan(&[stream.as_bytes()]);
    assert_eq!(metered.usage.input_tokens, 9);
    // The last event had no closing blank line; finish() still counts it.
    assert_eq!(metered.usage.output_tokens, 3);
}

#[test]
fn flags_error_events() {
    let stream = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9}}}\n\n",
        "event: error\n",
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let metered = scan(&[stream.as_bytes()]);
    assert!(metered.error_event);
    assert_eq!(metered.usage.input_tokens, 9);
}

#[test]
fn ignores_garbage_and_oversized_lines() {
    let mut scanner = SseUsageScanner::new();
    scanner.feed(b"event: message_start\ndata: {not json\n\n");
    scanner.feed(b"event: message_delta\ndata: ");
    scanner.feed(&vec![b'x'; MAX_EVENT_DATA + 10]);
    scanner.feed(b"\n\n");
    scanner.feed(b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":4}}\n\n");
    assert_eq!(scanner.finish().usage.output_tokens, 4);
}

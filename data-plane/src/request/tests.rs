use http_body_util::Full;

use super::*;

#[test]
fn extracts_model_stream_and_max_tokens() {
    let body = br#"{"max_tokens":32000,"model":"claude-sonnet-5","stream":true,"messages":[]}"#;
    let f = extract_fields(body).unwrap();
    assert_eq!(f.model, "claude-sonnet-5");
    assert!(matches!(f.model, Cow::Borrowed(_)));
    assert!(f.stream);
    assert_eq!(f.max_tokens, Some(32000));
    assert_eq!(&body[f.model_span.clone()], br#""claude-sonnet-5""#);
}

#[test]
fn stream_defaults_to_false_and_tolerates_null() {
    let f = extract_fields(br#"{"model":"m","stream":null}"#).unwrap();
    assert!(!f.stream);
    assert_eq!(f.max_tokens, None);
}

#[test]
fn ignores_unknown_fields_and_nested_model_keys() {
    let body = br#"{"messages":[{"role":"system","content":"x","model":"nested"}],
        "tools":[{"defer_loading":true}], "model" : "claude-opus-4-8", "tags":["a"]}"#;
    let f = extract_fields(body).unwrap();
    assert_eq!(f.model, "claude-opus-4-8");
    assert_eq!(&body[f.model_span], br#""claude-opus-4-8""#);
}

#[test]
fn unescapes_escaped_model() {
    let body = br#"{"model":"claude\u002dsonnet-5"}"#;
    let f = extract_fields(body).unwrap();
    assert_eq!(f.model, "claude-sonnet-5");
    assert_eq!(&body[f.model_span], br#""claude\u002dsonnet-5""#);
}

#[test]
fn refuses_malformed_json_with_serde_message() {
    let err = extract_fields(br#"{"model":"m","#).unwrap_err();
    let FieldError::Malformed(message) = &err else {
        panic!("unexpected {err:?}");
    };
    assert!(message.contains("line 1"), "{message}");
    assert!(err.to_string().starts_with("invalid JSON body: "));
    assert!(matches!(extract_fields(b""), Err(FieldError::Malformed(_))));
    assert!(matches!(
        extract_fields(b"[1]"),
        Err(FieldError::Malformed(_))
    ));
    assert!(matches!(
        extract_fields(br#"{"model":"m"} trailing"#),
        Err(FieldError::Malformed(_))
    ));
}

#[test]
fn refuses_missing_and_non_string_model() {
    assert_eq!(extract_fields(b"{}"), Err(FieldError::MissingModel));
    assert_eq!(
        extract_fields(br#"{"model":7}"#),
        Err(FieldError::ModelNotString)
    );
    assert_eq!(
        extract_fields(br#"{"model":null}"#),
        Err(FieldError::ModelNotString)
    );
    assert_eq!(
        extract_fields(br#"{"model":["a"]}"#),
        Err(FieldError::ModelNotString)
    );
    assert_eq!(
        extract_fields(br#"{"model":""}"#),
        Err(FieldError::EmptyModel)
    );
    assert_eq!(
        FieldError::MissingModel.to_string(),
        "model: field required"
    );
}

#[test]
fn refuses_duplicate_model() {
    assert!(matches!(
        extract_fields(br#"{"model":"a","model":"b"}"#),
        Err(FieldError::Malformed(_))
    ));
}

#[test]
fn splice_replaces_only_the_model_bytes() {
    let body = br#"{"system":[{"type":"text","text":"x-anthropic-billing-header: cc"}],  "model":  "claude-sonnet-5" ,"stream":true,"metadata":{"user_id":"{\"a\":1}"}}"#;
    let f = extract_fields(body).unwrap();
    let out = splice_model(body, f.model_span.clone(), "claude-sonnet-5-20260101\"x").unwrap();
    let prefix = &body[..f.model_span.start];
    let suffix = &body[f.model_span.end..];
    assert!(out.starts_with(prefix));
    assert!(out.ends_with(suffix));
    let middle = &out[prefix.len()..out.len() - suffix.len()];
    assert_eq!(middle, br#""claude-sonnet-5-20260101\"x""#);
    assert_eq!(
        extract_fields(&out).unwrap().model,
        "claude-sonnet-5-20260101\"x"
    );
}

#[test]
fn splice_refuses_out_of_range_span() {
    assert_eq!(splice_model(b"{}", 1..9, "m"), None);
}

#[test]
fn declared_length_over_limit_is_refused() {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, "101".parse().unwrap());
    assert!(matches!(
        check_declared_length(&headers, 100),
        Err(BodyError::TooLarge { max: 100 })
    ));
    assert!(check_declared_length(&headers, 101).is_ok());
    assert!(check_declared_length(&HeaderMap::new(), 1).is_ok());
}

#[tokio::test]
async fn reading_enforces_the_limit() {
    let body = Full::new(Bytes::from_static(b"0123456789"));
    assert!(matches!(
        read_body(body, 9).await,
        Err(BodyError::TooLarge { max: 9 })
    ));
    let body = Full::new(Bytes::from_static(b"0123456789"));
    assert_eq!(read_body(body, 10).await.unwrap(), "0123456789");
}

use serde_json::json;

use super::*;

fn doc(name: &str, priority: i32, settings: Value) -> SettingsDocument {
    let Value::Object(settings) = settings else {
        unreachable!("object")
    };
    SettingsDocument {
        id: format!("id-{name}"),
        name: name.into(),
        priority,
        group_ids: vec!["g".into()],
        settings,
    }
}

#[test]
fn canonical_json_sorts_keys_at_every_level_without_whitespace() {
    let v = json!({"b": 1, "a": {"z": [1, {"y": true, "x": null}], "c": "é\"q"}, "f": 2.0});
    assert_eq!(
        canonical_json(&v),
        r#"{"a":{"c":"é\"q","z":[1,{"x":null,"y":true}]},"b":1,"f":2}"#
    );
}

#[test]
fn checksum_known_answers() {
    // sha256("{}") and sha256('{"a":1,"b":[2]}')
    assert_eq!(
        checksum(&json!({})),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(
        checksum(&json!({"b": [2], "a": 1})),
        "sha256:0855bfc20eb6cfaa4be7d6b510c63dd22997718bddadcb1a4915cec3a16145b9"
    );
}

#[test]
fn higher_priority_wins_scalars_and_objects_merge() {
    let low = doc(
        "low",
        1,
        json!({"model": "sonnet", "hooks": {"a": 1}, "env": {"A": "1", "B": "1"}}),
    );
    let high = doc(
        "high",
        10,
        json!({"model": "opus", "hooks": {"b": 2}, "env": {"B": "2", "C": "3"}}),
    );
    let merged = merge([&low, &high]).unwrap();
    assert_eq!(
        merged.settings,
        json!({"model": "opus", "hooks": {"a": 1, "b": 2}, "env": {"A": "1", "B": "2", "C": "3"}})
    );
}

#[test]
fn allow_lists_replace_and_deny_lists_union() {
    let low = doc(
        "low",
        1,
        json!({"permissions": {"allow": ["Bash(ls)"], "deny": ["Read(.env)"]}, "availableModels": ["a", "b"]}),
    );
    let high = doc(
        "high",
        2,
        json!({"permissions": {"allow": ["Edit"], "deny": ["WebFetch", "Read(.env)"]}, "availableModels": ["b"], "fooDeny": ["x"]}),
    );
    let merged = merge([&low, &high]).unwrap();
    assert_eq!(
        merged.settings,
        json!({
            "permissions": {"allow": ["Edit"], "deny": ["Read(.env)", "WebFetch"]},
            "availableModels": ["b"],
            "enforceAvailableModels": true,
            "fooDeny": ["x"],
        })
    );
}

#[test]
fn no_documents_means_no_settings_and_empty_object_is_a_policy() {
    assert_eq!(merge(std::iter::empty()), None);
    let empty = merge([&doc("e", 0, json!({}))]).unwrap();
    assert_eq!(empty.settings, json!({}));
    assert_eq!(empty.checksum, checksum(&json!({})));
}

#[test]
fn uuid_is_stable_for_equal_content_and_differs_otherwise() {
    let a = merge([&doc("a", 0, json!({"x": 1, "y": 2}))]).unwrap();
    let b = merge([&doc("b", 5, json!({"y": 2, "x": 1}))]).unwrap();
    let c = merge([&doc("c", 0, json!({"x": 2}))]).unwrap();
    assert_eq!(a.uuid, b.uuid);
    assert_eq!(a.checksum, b.checksum);
    assert_ne!(a.uuid, c.uuid);
    assert!(uuid::Uuid::parse_str(&a.uuid).is_ok());
}

//! `tollgate admin` against the `IdentityAdmin` and `SettingsAdmin` services.

use serde_json::Value;
use tollgate_cli::admin::{execute, parse_args};
use tollgate_e2e::Stack;

/// Runs `tollgate admin <words>` against the stack and returns what it prints.
async fn admin(stack: &Stack, words: &[&str]) -> anyhow::Result<String> {
    let args = parse_args(words.iter().copied())?;
    let mut client = stack.admin().await?;
    execute(&mut client, args.command, args.format).await
}

async fn admin_json(stack: &Stack, words: &[&str]) -> Value {
    let mut argv = vec!["--format", "json"];
    argv.extend_from_slice(words);
    let out = admin(stack, &argv).await.unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn admin_cli_configures_identity_settings_and_telemetry() {
    // SetIdpConfig stores the configuration without contacting the issuer.
    let stack = Stack::start().await.unwrap();
    let secret_var = "TOLLGATE_E2E_ADMIN_IDENTITY_CLI_SECRET";
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "s3cret-from-file\n").unwrap();
    let secret_path = secret_file.path().to_str().unwrap();

    let before = admin_json(&stack, &["idp", "show"]).await;
    assert_eq!(before[0]["configured"], "false", "{before}");

    let set = admin_json(
        &stack,
        &[
            "idp",
            "set",
            "--issuer",
            "https://idp.example.com/realms/acme",
            "--client-id",
            "tollgate",
            "--client-secret-file",
            secret_path,
            "--scopes",
            "openid,email,profile,groups",
            "--groups-claim",
            "realm_access.roles",
            "--allowed-domains",
            "example.com,@Example.org",
        ],
    )
    .await;
    assert_eq!(set[0]["configured"], "true", "{set}");
    assert_eq!(set[0]["client_secret_set"], "true", "{set}");
    assert_eq!(set[0]["scopes"], "openid,email,profile,groups");
    assert_eq!(set[0]["groups_claim"], "realm_access.roles");
    assert_eq!(set[0]["email_claim"], "email", "server default");
    assert_eq!(set[0]["allowed_email_domains"], "example.com,example.org");
    assert_eq!(set[0]["clock_skew_secs"], 60, "server default");

    let shown = admin(&stack, &["idp", "show"]).await.unwrap();
    assert!(
        shown.contains("https://idp.example.com/realms/acme"),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret"),
        "the secret is never shown: {shown}"
    );

    // An unset environment variable is refused before anything is sent.
    let err = admin(
        &stack,
        &[
            "idp",
            "set",
            "--issuer",
            "https://other.example.com",
            "--client-id",
            "x",
            "--client-secret-env",
            secret_var,
        ],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains(secret_var), "{err}");
    let still = admin_json(&stack, &["idp", "show"]).await;
    assert_eq!(
        still[0]["issuer_url"],
        "https://idp.example.com/realms/acme"
    );
    // The secret is never accepted on the command line.
    assert!(
        parse_args([
            "idp",
            "set",
            "--issuer",
            "https://i",
            "--client-id",
            "x",
            "--client-secret",
            "s"
        ])
        .is_err()
    );

    // Group mappings: set, list, delete.
    let mapped = admin_json(
        &stack,
        &["group-mappings", "set", "acme-engineers", "--group", "eng"],
    )
    .await;
    assert_eq!(mapped[0]["idp_group"], "acme-engineers");
    assert_eq!(mapped[0]["groups"], "eng");
    admin(
        &stack,
        &["group-mappings", "set", "acme-ops", "--group", "eng,all"],
    )
    .await
    .unwrap();
    let list = admin(&stack, &["group-mappings", "list"]).await.unwrap();
    assert!(list.starts_with("IDP_GROUP"), "{list}");
    assert!(list.contains("acme-engineers"), "{list}");
    assert!(list.contains("acme-ops"), "{list}");
    admin(&stack, &["group-mappings", "delete", "acme-engineers"])
        .await
        .unwrap();
    let list = admin_json(&stack, &["group-mappings", "list"]).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["idp_group"], "acme-ops");
    let err = admin(&stack, &["group-mappings", "set", "x", "--group", "nope"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");

    // Default groups: set, show, clear.
    let defaults = admin_json(&stack, &["default-groups", "set", "--groups", "eng"]).await;
    assert_eq!(defaults[0]["group"], "eng", "{defaults}");
    let shown = admin(&stack, &["default-groups", "show"]).await.unwrap();
    assert!(shown.lines().nth(1).unwrap().starts_with("eng "), "{shown}");
    let cleared = admin_json(&stack, &["default-groups", "set", "--groups", ""]).await;
    assert_eq!(cleared, Value::Array(vec![]), "{cleared}");
    assert_eq!(
        admin_json(&stack, &["default-groups", "show"]).await,
        Value::Array(vec![])
    );

    // Settings documents.
    let settings_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        settings_file.path(),
        r#"{"permissions": {"deny": ["Bash(rm:*)"]}}"#,
    )
    .unwrap();
    let created = admin_json(
        &stack,
        &[
            "settings",
            "create",
            "--name",
            "baseline",
            "--priority",
            "10",
            "--group",
            "eng",
            "--file",
            settings_file.path().to_str().unwrap(),
        ],
    )
    .await;
    let doc_id = created[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(created[0]["priority"], 10);
    admin(
        &stack,
        &[
            "settings",
            "create",
            "--name",
            "first",
            "--priority",
            "-5",
            "--json",
            r#"{"env": {"A": "1"}}"#,
        ],
    )
    .await
    .unwrap();
    let docs = admin_json(&stack, &["settings", "list"]).await;
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["name"], "first", "merge order: priority first");
    assert_eq!(docs[1]["id"], doc_id.as_str());
    assert_eq!(docs[1]["name"], "baseline");
    assert_eq!(docs[1]["group_ids"].as_str().unwrap().split(',').count(), 1);
    let settings: Value = serde_json::from_str(docs[1]["settings"].as_str().unwrap()).unwrap();
    assert_eq!(settings["permissions"]["deny"][0], "Bash(rm:*)");

    let updated = admin_json(
        &stack,
        &[
            "settings",
            "update",
            &doc_id,
            "--name",
            "baseline-v2",
            "--priority",
            "20",
            "--json",
            "{}",
        ],
    )
    .await;
    assert_eq!(updated[0]["name"], "baseline-v2");
    assert_eq!(updated[0]["group_ids"], "", "update replaces every field");
    let err = admin(
        &stack,
        &["settings", "create", "--name", "bad", "--json", "[1]"],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
    admin(&stack, &["settings", "delete", &doc_id])
        .await
        .unwrap();
    let docs = admin_json(&stack, &["settings", "list"]).await;
    assert_eq!(docs.as_array().unwrap().len(), 1, "{docs}");

    // Telemetry collector.
    let shown = admin(&stack, &["telemetry", "show"]).await.unwrap();
    assert_eq!(shown, "COLLECTOR_URL\n-\n");
    let set = admin(
        &stack,
        &["telemetry", "set-collector", "http://collector:4318/"],
    )
    .await
    .unwrap();
    assert_eq!(set, "COLLECTOR_URL\nhttp://collector:4318\n");
    let shown = admin_json(&stack, &["telemetry", "show"]).await;
    assert_eq!(shown[0]["collector_url"], "http://collector:4318");
    let err = admin(&stack, &["telemetry", "set-collector", "ftp://c"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InvalidArgument"), "{err}");

    // Sessions, users and signing keys.
    let sessions = admin(&stack, &["sessions", "list", "--all"]).await.unwrap();
    assert!(sessions.starts_with("ID  USER_ID  EMAIL"), "{sessions}");
    assert_eq!(sessions.lines().count(), 1, "nobody signed in: {sessions}");
    let users = admin_json(&stack, &["identity-users"]).await;
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@example.com")
        .unwrap_or_else(|| panic!("{users}"))
        .clone();
    assert_eq!(alice["last_sign_in"], "-");
    let disabled = admin_json(&stack, &["users", "disable", "alice@example.com"]).await;
    assert_eq!(disabled[0]["disabled"], "true", "{disabled}");
    let enabled = admin_json(&stack, &["users", "enable", "alice@example.com"]).await;
    assert_eq!(enabled[0]["disabled"], "false", "{enabled}");

    let first = admin_json(&stack, &["signing-keys", "rotate"]).await;
    let second = admin_json(&stack, &["signing-keys", "rotate"]).await;
    let (a, b) = (
        first[0]["kid"].as_str().unwrap(),
        second[0]["kid"].as_str().unwrap(),
    );
    assert!(!a.is_empty());
    assert_ne!(a, b, "each rotation makes a new key");

    stack.finish().await;
}

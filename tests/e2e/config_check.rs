//! `--check-config` of both servers, as an operator runs it: the real binaries, settings from
//! flags, the environment and a config file; each kind of mistake is refused with a message
//! that names it, and a good configuration passes without connecting anywhere.

use std::collections::HashMap;
use std::path::Path;

use tollgate_e2e::binaries::binary;

struct Run {
    ok: bool,
    output: String,
}

async fn check(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(binary(bin).await.unwrap())
        .args(args)
        .arg("--check-config")
        .env_clear()
        .envs(
            ["PATH", "HOME"]
                .into_iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k, v))),
        )
        .envs(env.iter().copied().collect::<HashMap<_, _>>())
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Arguments, environment, and what the refusal must say.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

const DP: &str = "tollgate-data-plane";
const CP: &str = "tollgate-control-plane";
const CP_ARGS: [&str; 4] = [
    "--database-url",
    "postgres://tollgate@127.0.0.1:1/tollgate",
    "--sync-token",
    "tgs_check",
];

#[tokio::test]
async fn check_config_refuses_each_kind_of_data_plane_mistake_precisely() {
    let good = check(DP, &["--sync-token", "tgs_check"], &[]).await;
    assert!(good.ok, "{}", good.output);
    assert!(good.output.contains("configuration ok"), "{}", good.output);

    let cases: &[Case] = &[
        (&[], &[], "--sync-token"),
        (
            &["--sync-token", "tgs_check", "--listen", "everywhere"],
            &[],
            "--listen",
        ),
        (
            &["--sync-token", "tgs_check", "--max-attempts", "several"],
            &[],
            "--max-attempts",
        ),
        (
            &[
                "--sync-token",
                "tgs_check",
                "--control-plane-url",
                "ftp://cp:1",
            ],
            &[],
            "control_plane_url: `ftp://cp:1` is not an http(s)://host:port URL",
        ),
        (
            &["--sync-token", "tgs_check", "--max-attempts", "0"],
            &[],
            "max_attempts: must be positive",
        ),
        (
            &["--sync-token", "tgs_check", "--retry-budget-percent", "101"],
            &[],
            "retry_budget_percent: must be at most 100",
        ),
        (
            &["--sync-token", "tgs check"],
            &[],
            "sync_token: must be printable ASCII without spaces",
        ),
        (
            &["--sync-token", "tgs_check"],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            &["--sync-token", "tgs_check"],
            &[("TOLLGATE_MAX_BODY_BYTES", "0")],
            "max_body_bytes: must be positive",
        ),
    ];
    for (args, env, expected) in cases {
        let run = check(DP, args, env).await;
        assert!(!run.ok, "{args:?} {env:?} passed:\n{}", run.output);
        assert!(
            run.output.contains(expected),
            "{args:?} {env:?}: expected `{expected}` in:\n{}",
            run.output
        );
    }
}

#[tokio::test]
async fn check_config_refuses_each_kind_of_control_plane_mistake_precisely() {
    let good = check(CP, &CP_ARGS, &[]).await;
    assert!(good.ok, "{}", good.output);
    assert!(good.output.contains("configuration ok"), "{}", good.output);

    let with = |extra: &'static [&'static str]| -> Vec<&'static str> {
        CP_ARGS
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .collect()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--sync-token", "tgs_check"], "--database-url"),
        (
            vec![
                "--database-url",
                "mysql://root@db/x",
                "--sync-token",
                "tgs_check",
            ],
            "--database-url is not a valid Postgres URL",
        ),
        (with(&["--grpc-listen", "nowhere"]), "--grpc-listen"),
        (
            with(&["--token-ttl-secs", "10"]),
            "--token-ttl-secs must be at least 60",
        ),
        (
            with(&["--public-url", "gateway.example.com"]),
            "--public-url must be an http(s) URL",
        ),
        (
            with(&["--db-max-connections", "1"]),
            "--db-max-connections must be at least 2",
        ),
        (
            with(&["--audit-checkpoint-interval-secs", "0"]),
            "--audit-checkpoint-interval-secs must be positive",
        ),
    ];
    for (args, expected) in cases {
        let run = check(CP, &args, &[]).await;
        assert!(!run.ok, "{args:?} passed:\n{}", run.output);
        assert!(
            run.output.contains(expected),
            "{args:?}: expected `{expected}` in:\n{}",
            run.output
        );
    }
}

#[tokio::test]
async fn a_config_file_sets_what_flags_and_environment_do_not_and_names_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "sync-token", "tgs_from_a_file\n");
    let good = write(
        dir.path(),
        "data-plane.toml",
        "listen = \"127.0.0.1:18080\"\nsync-token = { file = \"sync-token\" }\nmax_attempts = 2\n",
    );
    let run = check(DP, &["--config", &good], &[]).await;
    assert!(run.ok, "{}", run.output);
    // The environment wins over the file: a bad value there is the one checked.
    let run = check(DP, &["--config", &good], &[("TOLLGATE_MAX_ATTEMPTS", "0")]).await;
    assert!(
        !run.ok && run.output.contains("max_attempts: must be positive"),
        "{}",
        run.output
    );
    // So does the command line.
    let run = check(DP, &["--config", &good, "--max-attempts", "0"], &[]).await;
    assert!(
        !run.ok && run.output.contains("max_attempts: must be positive"),
        "{}",
        run.output
    );
    // The file's own values are checked like flags.
    let zero = write(
        dir.path(),
        "zero.toml",
        "sync-token = \"tgs_x\"\nmax-attempts = 0\n",
    );
    let run = check(DP, &[], &[("TOLLGATE_CONFIG", zero.as_str())]).await;
    assert!(
        !run.ok && run.output.contains("max_attempts: must be positive"),
        "{}",
        run.output
    );

    let cases = [
        (
            "typo.toml",
            "sync-token = \"tgs_x\"\nlisten-adress = \"0.0.0.0:1\"\n",
            "unknown setting `listen-adress`",
        ),
        ("syntax.toml", "sync-token = \"tgs_x\n", "syntax.toml"),
        (
            "missing-ref.toml",
            "sync-token = { file = \"absent\" }\n",
            "`sync-token`: cannot read",
        ),
        (
            "list.toml",
            "sync-token = [\"a\", \"b\"]\n",
            "`sync-token`: takes one value",
        ),
    ];
    for (name, text, expected) in cases {
        let path = write(dir.path(), name, text);
        let run = check(DP, &["--config", &path], &[]).await;
        assert!(!run.ok, "{name} passed:\n{}", run.output);
        assert!(
            run.output.contains(expected),
            "{name}: expected `{expected}` in:\n{}",
            run.output
        );
    }
    let missing = check(DP, &["--config", "/nonexistent/tollgate.toml"], &[]).await;
    assert!(
        !missing.ok
            && missing
                .output
                .contains("cannot read the config file /nonexistent/tollgate.toml"),
        "{}",
        missing.output
    );

    let cp = write(
        dir.path(),
        "control-plane.toml",
        "database-url = \"postgres://tollgate@127.0.0.1:1/tollgate\"\nsync-token = { file = \"sync-token\" }\ntoken-ttl-secs = 600\n",
    );
    let run = check(CP, &["--config", &cp], &[]).await;
    assert!(run.ok, "{}", run.output);
    let bad = write(
        dir.path(),
        "cp-bad.toml",
        "database_url = \"postgres://x@h/d\"\nsync_token = \"s\"\ntoken_ttl_secs = 5\n",
    );
    let run = check(CP, &["--config", &bad], &[]).await;
    assert!(
        !run.ok && run.output.contains("--token-ttl-secs must be at least 60"),
        "{}",
        run.output
    );
}

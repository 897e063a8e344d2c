//! Deployment artefacts (`deploy/`): the Helm chart, the compose trial and the Dockerfile are
//! checked against the code they deploy. No cluster, no image build and no network: the files
//! are parsed as YAML and compared with the real binaries' `--help` and the workspace's binary
//! targets. `helm lint` and `helm template` run too when `helm` is on `PATH`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_norway::Value;
use tokio::process::Command;
use tollgate_e2e::binaries::binary;

/// The binaries an image must hold: both servers and the CLI.
const SERVERS_AND_CLI: [&str; 3] = ["tollgate", "tollgate-control-plane", "tollgate-data-plane"];

/// Variables only the compose trial's own files define (not settings of a binary).
const COMPOSE_ONLY_PREFIX: &str = "TOLLGATE_TRIAL_";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap()
}

fn chart_dir() -> PathBuf {
    workspace().join("deploy/helm/tollgate")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    let mut value: Value = serde_norway::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    // Compose uses `<<: *anchor` merge keys.
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
    value
}

/// `value["a"]["b"]…` for a dotted path; `None` when any step is missing.
fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn req<'a>(value: &'a Value, path: &str) -> &'a Value {
    get(value, path).unwrap_or_else(|| panic!("missing {path}"))
}

fn as_u64(value: &Value, path: &str) -> u64 {
    let v = req(value, path);
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{path} is not a number: {v:?}"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn templates() -> Vec<(String, String)> {
    files_under(&chart_dir().join("templates"))
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, read(&p))
        })
        .collect()
}

/// Every `TOLLGATE_…` name in `text`.
fn tollgate_env_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("TOLLGATE_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        if name.len() > "TOLLGATE_".len() {
            names.insert(name.to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

/// Every `--long-flag` in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let tail = &text[i + 2..];
        if !tail.starts_with(|c: char| c.is_ascii_lowercase()) || text[..i].ends_with('-') {
            continue;
        }
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(tail.len());
        flags.insert(format!("--{}", tail[..end].trim_end_matches('-')));
    }
    flags
}

/// The template actions (`{{ … }}`) of a template, checking that every one is closed before
/// the next opens.
fn actions(name: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("{name}: `{{{{` without `}}}}`"));
        let inner = &after[..close];
        assert!(
            !inner.contains("{{"),
            "{name}: `{{{{` inside an action: {inner:?}"
        );
        out.push(
            inner
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim()
                .to_owned(),
        );
        rest = &after[close + 2..];
    }
    assert!(
        !rest.contains("}}"),
        "{name}: `}}}}` without `{{{{` in {rest:?}"
    );
    out
}

/// The `.Values…` paths an action reads, with `$var := .Values.x` aliases of the same file
/// resolved (`$cp.ports.grpc` → `controlPlane.ports.grpc`).
fn value_paths(action: &str, aliases: &BTreeMap<String, String>) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '_';
    let mut out = Vec::new();
    for (i, _) in action.match_indices(".Values.") {
        // `.Values.x`, `$.Values.x` and `.root.Values.x` (helpers given a dict) alike.
        let tail = &action[i + ".Values.".len()..];
        let end = tail.find(|c| !is_path_char(c)).unwrap_or(tail.len());
        out.push(tail[..end].trim_end_matches('.').to_owned());
    }
    for (alias, target) in aliases {
        let pattern = format!("{alias}.");
        for (i, _) in action.match_indices(&pattern) {
            let tail = &action[i + pattern.len()..];
            let end = tail.find(|c| !is_path_char(c)).unwrap_or(tail.len());
            out.push(format!("{target}.{}", tail[..end].trim_end_matches('.')));
        }
    }
    out
}

#[test]
fn chart_templates_are_balanced_and_read_only_defined_values() {
    let values = yaml(&chart_dir().join("values.yaml"));
    let templates = templates();
    assert!(templates.iter().any(|(n, _)| n == "_helpers.tpl"));
    assert!(templates.iter().any(|(n, _)| n == "NOTES.txt"));
    for (name, text) in &templates {
        let actions = actions(name, text);
        // Block structure: every if/range/with/define ends.
        let mut depth: i64 = 0;
        for action in &actions {
            let word = action.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "range" | "with" | "define" | "block" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{name}: `end` without a block at {action:?}");
            assert!(
                !action.starts_with("/*") || action.ends_with("*/"),
                "{name}: unclosed comment {action:?}"
            );
        }
        assert_eq!(depth, 0, "{name}: unclosed if/range/with/define");

        let mut aliases = BTreeMap::new();
        for action in &actions {
            if let Some((var, rhs)) = action.split_once(":=") {
                let var = var.trim();
                if let Some(path) = rhs.trim().strip_prefix(".Values.") {
                    aliases.insert(var.to_owned(), path.trim().to_owned());
                }
            }
        }
        for action in &actions {
            for path in value_paths(action, &aliases) {
                assert!(
                    get(&values, &path).is_some(),
                    "{name}: `{action}` reads .Values.{path}, which values.yaml does not define"
                );
            }
        }
    }
}

#[test]
fn chart_defaults_are_highly_available_non_root_and_drain_in_time() {
    let chart = yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(req(&chart, "apiVersion").as_str(), Some("v2"));
    assert_eq!(req(&chart, "name").as_str(), Some("tollgate"));
    assert_eq!(
        req(&chart, "appVersion").as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "appVersion follows the workspace version"
    );

    let v = yaml(&chart_dir().join("values.yaml"));
    assert!(as_u64(&v, "controlPlane.replicaCount") >= 2);
    assert!(as_u64(&v, "dataPlane.replicaCount") >= 2);
    assert!(as_u64(&v, "dataPlane.autoscaling.minReplicas") >= 2);
    assert_eq!(
        req(&v, "podSecurityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    assert!(as_u64(&v, "podSecurityContext.runAsUser") > 0);
    let c = "containerSecurityContext";
    assert_eq!(
        req(&v, &format!("{c}.readOnlyRootFilesystem")).as_bool(),
        Some(true)
    );
    assert_eq!(
        req(&v, &format!("{c}.allowPrivilegeEscalation")).as_bool(),
        Some(false)
    );
    assert_eq!(
        req(&v, &format!("{c}.capabilities.drop"))
            .as_sequence()
            .map(|s| s.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
        Some(vec!["ALL"])
    );
    assert_eq!(
        req(&v, "serviceMonitor.enabled").as_bool(),
        Some(false),
        "optional"
    );
    assert_eq!(req(&v, "otel.enabled").as_bool(), Some(false), "optional");

    // The derived grace period (helpers) outlasts the drain plus the usage flush, each of
    // which the data plane bounds by --shutdown-drain-timeout-secs.
    let drain = as_u64(&v, "dataPlane.shutdownDrainTimeoutSecs");
    let pre_stop = as_u64(&v, "dataPlane.preStopSleepSeconds");
    let helpers = read(&chart_dir().join("templates/_helpers.tpl"));
    assert!(helpers.contains(
        "add (int .Values.dataPlane.preStopSleepSeconds) (mul 2 (int .Values.dataPlane.shutdownDrainTimeoutSecs)) 15"
    ));
    assert!(
        pre_stop > 0,
        "load balancers need a moment to stop sending new connections"
    );
    // The compose trial's data plane (default drain, as in values.yaml) gets the same room.
    let compose = yaml(&workspace().join("deploy/compose/compose.yaml"));
    let stop_grace = req(&compose, "services.data-plane.stop_grace_period")
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap();
    assert!(
        stop_grace > 2 * drain,
        "compose stop_grace_period {stop_grace}s"
    );

    let t: BTreeMap<String, String> = templates().into_iter().collect();
    for file in [
        "control-plane-deployment.yaml",
        "data-plane-deployment.yaml",
    ] {
        let text = &t[file];
        for needle in [
            "path: /healthz",
            "path: /readyz",
            "port: admin",
            "readOnly: true",
            "TOLLGATE_ADMIN_LISTEN",
            "containerSecurityContext",
            "podSecurityContext",
            "terminationGracePeriodSeconds",
            "resources",
        ] {
            assert!(text.contains(needle), "{file} lacks {needle}");
        }
    }
    let dp = &t["data-plane-deployment.yaml"];
    for needle in [
        "command: [\"tollgate-data-plane\"]",
        "TOLLGATE_SHUTDOWN_DRAIN_TIMEOUT_SECS",
        "tollgate.dataPlane.terminationGracePeriodSeconds",
        "TOLLGATE_SPOOL_PATH",
        "preStop",
    ] {
        assert!(dp.contains(needle), "data plane lacks {needle}");
    }
    let cp = &t["control-plane-deployment.yaml"];
    for needle in [
        "command: [\"tollgate-control-plane\"]",
        "TOLLGATE_DATABASE_URL",
        "TOLLGATE_SECRETS_KEY",
        "secretKeyRef",
        "TOLLGATE_AUDIT_SIGNING_KEY_FILE",
        "startupProbe",
    ] {
        assert!(cp.contains(needle), "control plane lacks {needle}");
    }
    for (file, kind) in [
        ("control-plane-service.yaml", "kind: Service"),
        ("data-plane-service.yaml", "kind: Service"),
        ("data-plane-hpa.yaml", "kind: HorizontalPodAutoscaler"),
        ("data-plane-pdb.yaml", "kind: PodDisruptionBudget"),
        ("control-plane-pdb.yaml", "kind: PodDisruptionBudget"),
        ("servicemonitor.yaml", "kind: ServiceMonitor"),
    ] {
        assert!(t[file].contains(kind), "{file} lacks {kind}");
    }
    assert!(t["servicemonitor.yaml"].contains("path: /metrics"));
}

#[test]
fn compose_wires_postgres_both_planes_and_a_collector() {
    let dir = workspace().join("deploy/compose");
    let compose = yaml(&dir.join("compose.yaml"));
    let services = req(&compose, "services");
    for name in [
        "postgres",
        "control-plane",
        "data-plane",
        "otel-collector",
        "setup",
    ] {
        assert!(services.get(name).is_some(), "compose lacks service {name}");
    }
    assert!(get(services, "postgres.healthcheck.test").is_some());
    let collector_image = req(services, "otel-collector.image").as_str().unwrap();
    assert!(collector_image.starts_with("otel/opentelemetry-collector"));

    let env = |svc: &str, key: &str| -> String {
        let v = req(services, &format!("{svc}.environment"));
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{svc} lacks {key}"))
            .to_owned()
    };
    assert_eq!(
        req(services, "control-plane.command")
            .as_sequence()
            .unwrap()[0]
            .as_str(),
        Some("tollgate-control-plane")
    );
    assert_eq!(
        req(services, "data-plane.command").as_sequence().unwrap()[0].as_str(),
        Some("tollgate-data-plane")
    );
    for svc in ["control-plane", "data-plane"] {
        assert_eq!(
            env(svc, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            "http://otel-collector:4318"
        );
        assert!(env(svc, "TOLLGATE_ADMIN_LISTEN").starts_with("0.0.0.0:"));
    }
    assert_eq!(
        env("control-plane", "TOLLGATE_SYNC_TOKEN"),
        env("data-plane", "TOLLGATE_SYNC_TOKEN")
    );
    let grpc_port = env("control-plane", "TOLLGATE_GRPC_LISTEN")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        env("data-plane", "TOLLGATE_CONTROL_PLANE_URL"),
        format!("http://control-plane:{grpc_port}")
    );
    let http_port = env("control-plane", "TOLLGATE_HTTP_LISTEN")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        env("data-plane", "TOLLGATE_CONTROL_PLANE_HTTP_URL"),
        format!("http://control-plane:{http_port}")
    );
    assert!(env("control-plane", "TOLLGATE_DATABASE_URL").contains("@postgres:5432/"));
    assert!(get(services, "data-plane.depends_on.control-plane").is_some());
    assert!(get(services, "control-plane.depends_on.postgres").is_some());
    // Every published port stays on the laptop.
    for (name, svc) in services.as_mapping().unwrap() {
        for port in svc
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let port = port.as_str().unwrap();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name:?} publishes {port} beyond loopback"
            );
        }
    }
    // Bind-mounted files exist.
    for (_, svc) in services.as_mapping().unwrap() {
        for volume in svc
            .get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if let Some(relative) = source.strip_prefix("./") {
                assert!(
                    dir.join(relative).is_file(),
                    "{source} is mounted but missing"
                );
            }
        }
    }

    let otel = yaml(&dir.join("otel-collector.yaml"));
    assert!(
        req(&otel, "receivers.otlp.protocols.http.endpoint")
            .as_str()
            .unwrap()
            .ends_with(":4318")
    );
    for signal in ["traces", "metrics", "logs"] {
        let pipeline = req(&otel, &format!("service.pipelines.{signal}"));
        let names = |key: &str| -> Vec<String> {
            pipeline[key]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("receivers"), ["otlp"]);
        assert_eq!(names("exporters"), ["debug"]);
        for exporter in names("exporters") {
            assert!(get(&otel, &format!("exporters.{exporter}")).is_some());
        }
    }
}

/// The `--help` of every binary and subcommand that reads `TOLLGATE_…` variables.
async fn help_texts() -> String {
    let mut all = String::new();
    for (bin, args) in [
        ("tollgate-control-plane", vec!["--help"]),
        ("tollgate-data-plane", vec!["--help"]),
        ("tollgate", vec!["admin", "--help"]),
        ("tollgate", vec!["audit", "verify", "--help"]),
        ("tollgate", vec!["dev", "--help"]),
    ] {
        let path = binary(bin).await.unwrap();
        let out = Command::new(&path)
            .args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{bin} {args:?} failed: {out:?}");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

#[tokio::test]
async fn every_tollgate_variable_in_deploy_files_and_operations_doc_is_a_real_setting() {
    let help = help_texts().await;
    let known = tollgate_env_names(&help);
    assert!(
        known.contains("TOLLGATE_SHUTDOWN_DRAIN_TIMEOUT_SECS"),
        "{known:?}"
    );
    assert!(known.contains("TOLLGATE_DATABASE_URL"), "{known:?}");

    let mut files = files_under(&workspace().join("deploy"));
    files.push(workspace().join("docs/operations.md"));
    let mut unknown = Vec::new();
    for file in &files {
        for name in tollgate_env_names(&read(file)) {
            if !known.contains(&name) && !name.starts_with(COMPOSE_ONLY_PREFIX) {
                unknown.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "variables no binary reads (see each binary's --help): {unknown:#?}"
    );

    // The operations guide names only flags the binaries have.
    let flags = long_flags(&help);
    let missing: Vec<String> = long_flags(&read(&workspace().join("docs/operations.md")))
        .into_iter()
        .filter(|f| !flags.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md names flags no binary has: {missing:?}"
    );
}

#[tokio::test]
async fn dockerfile_builds_the_workspace_binaries_as_a_non_root_user() {
    let dockerfile = read(&workspace().join("deploy/Dockerfile"));
    let built: BTreeSet<String> = dockerfile
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect();
    let expected: BTreeSet<String> = SERVERS_AND_CLI.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(built, expected, "the image builds both servers and the CLI");
    assert!(dockerfile.contains("cargo build --release --locked"));

    // Those are binary targets of this workspace (`cargo metadata`), in the packages the
    // end-to-end harness builds them from.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "cargo metadata failed: {out:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            let kinds = target["kind"].as_array().unwrap();
            if kinds.iter().any(|k| k == "bin") {
                bins.insert(target["name"].as_str().unwrap().to_owned());
            }
        }
    }
    for bin in &built {
        assert!(
            bins.contains(bin),
            "{bin} is not a binary target of the workspace: {bins:?}"
        );
        assert!(binary(bin).await.is_ok(), "the harness cannot build {bin}");
    }

    // Runtime stage: numeric non-root user, every binary copied, the ports the chart uses.
    let runtime = dockerfile.rsplit_once("\nFROM ").map(|(_, r)| r).unwrap();
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("numeric USER");
    assert!(uid > 0);
    for bin in &built {
        assert!(
            runtime.contains(&format!("/out/{bin}")),
            "runtime lacks {bin}"
        );
    }
    assert!(runtime.contains("ca-certificates"));
    assert!(runtime.contains("org.opencontainers.image."));
    let values = yaml(&chart_dir().join("values.yaml"));
    for port in [
        "controlPlane.ports.grpc",
        "controlPlane.ports.http",
        "controlPlane.ports.admin",
        "dataPlane.ports.http",
        "dataPlane.ports.admin",
    ] {
        let p = as_u64(&values, port);
        assert!(
            runtime.contains(&format!("EXPOSE {p}")),
            "Dockerfile does not expose {port} ({p})"
        );
    }
    // No secret, key file or build output in the build context.
    let ignore = read(&workspace().join(".dockerignore"));
    for entry in [
        "target/",
        ".git/",
        ".tollgate/",
        "*.key",
        "*.pem",
        "**/node_modules/",
    ] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
    assert!(!dockerfile.contains("TOLLGATE_SYNC_TOKEN="));
    assert!(!dockerfile.contains("TOLLGATE_DATABASE_URL="));
}

/// `helm lint` and `helm template` with the values a real installation sets; skipped (with a
/// note) when `helm` is not installed.
#[tokio::test]
async fn helm_lints_and_renders_the_chart_when_installed() {
    let helm = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("helm"))
            .find(|p| p.is_file())
    });
    let Some(helm) = helm else {
        eprintln!(
            "note: `helm` is not on PATH; skipping helm lint / helm template (the chart's YAML and templates are still checked by the other deploy tests)"
        );
        return;
    };
    let chart = chart_dir();
    let sets = [
        "secrets.existingSecret=tollgate-env",
        "auditSigningKey.existingSecret=tollgate-audit-key",
        "serviceMonitor.enabled=true",
        "otel.enabled=true",
        "otel.endpoint=http://collector:4318",
    ];
    let mut set_args = Vec::new();
    for s in sets {
        set_args.extend(["--set", s]);
    }
    let lint = Command::new(&helm)
        .arg("lint")
        .arg("--strict")
        .arg(&chart)
        .args(&set_args)
        .output()
        .await
        .unwrap();
    assert!(lint.status.success(), "helm lint: {lint:?}");
    let rendered = Command::new(&helm)
        .args(["template", "tg"])
        .arg(&chart)
        .args(&set_args)
        .output()
        .await
        .unwrap();
    assert!(rendered.status.success(), "helm template: {rendered:?}");
    let text = String::from_utf8(rendered.stdout).unwrap();
    let mut kinds = Vec::new();
    for doc in text.split("\n---") {
        let value: Value = serde_norway::from_str(doc).unwrap();
        if let Some(kind) = value.get("kind").and_then(Value::as_str) {
            kinds.push(kind.to_owned());
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceMonitor",
            "ServiceMonitor",
        ]
    );
    // Without the required secrets the chart refuses to render.
    let bare = Command::new(&helm)
        .args(["template", "tg"])
        .arg(&chart)
        .output()
        .await
        .unwrap();
    assert!(!bare.status.success());
}

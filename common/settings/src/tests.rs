use std::path::PathBuf;

use clap::{CommandFactory as _, Parser};

use super::*;

#[derive(Parser, Debug)]
#[command(name = "tollgate-test")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1")]
    listen: String,
    #[arg(long)]
    sync_token: Option<String>,
    #[arg(long)]
    max_attempts: Option<u32>,
    #[arg(long)]
    check_config: bool,
    #[arg(long = "prefix")]
    prefixes: Vec<String>,
    /// Bound to an environment variable every test process has.
    #[arg(long, env = "PATH")]
    search_path: Option<String>,
    #[arg(long, env = CONFIG_ENV)]
    config: Option<PathBuf>,
}

fn parse(file: &str, cli: &[&str]) -> Result<Args, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, file).unwrap();
    std::fs::write(dir.path().join("token"), "tgs_from_file\n").unwrap();
    let mut args: Vec<OsString> = vec!["tollgate-test".into(), "--config".into(), path.into()];
    args.extend(cli.iter().map(OsString::from));
    let args = with_config_file(&Args::command(), args).map_err(|e| e.to_string())?;
    Args::try_parse_from(args).map_err(|e| e.to_string())
}

#[test]
fn file_settings_apply_under_the_command_line() {
    let args = parse(
        "listen = \"0.0.0.0:8080\"\nmax_attempts = 5\ncheck-config = true\nprefix = [\"A_\", \"B_\"]\n",
        &["--max-attempts", "2"],
    )
    .unwrap();
    assert_eq!(args.listen, "0.0.0.0:8080");
    assert_eq!(args.max_attempts, Some(2), "the command line wins");
    assert!(args.check_config);
    assert_eq!(args.prefixes, ["A_", "B_"]);
}

#[test]
fn the_environment_wins_over_the_file() {
    let args = parse("search-path = \"/from/file\"\n", &[]).unwrap();
    assert_eq!(args.search_path, std::env::var("PATH").ok());
}

#[test]
fn secrets_can_be_references_to_files_and_environment_variables() {
    let args = parse("sync-token = { file = \"token\" }\n", &[]).unwrap();
    assert_eq!(args.sync_token.as_deref(), Some("tgs_from_file"));
    let args = parse("sync-token = { env = \"PATH\" }\n", &[]).unwrap();
    assert_eq!(args.sync_token, std::env::var("PATH").ok());
}

#[test]
fn mistakes_name_the_file_and_the_setting() {
    let unknown = parse("listn = \"0.0.0.0:1\"\n", &[]).unwrap_err();
    assert!(unknown.contains("unknown setting `listn`"), "{unknown}");
    assert!(unknown.contains("tollgate.toml"), "{unknown}");
    let list = parse("listen = [\"a\", \"b\"]\n", &[]).unwrap_err();
    assert!(list.contains("`listen`: takes one value"), "{list}");
    let flag = parse("check-config = \"yes\"\n", &[]).unwrap_err();
    assert!(
        flag.contains("`check-config`: expected true or false"),
        "{flag}"
    );
    let reference = parse("sync-token = { file = \"missing\" }\n", &[]).unwrap_err();
    assert!(
        reference.contains("`sync-token`: cannot read"),
        "{reference}"
    );
    let unset = parse(
        "sync-token = { env = \"TOLLGATE_TEST_SURELY_UNSET_VARIABLE\" }\n",
        &[],
    )
    .unwrap_err();
    assert!(unset.contains("is not set"), "{unset}");
    let syntax = parse("listen = \n", &[]).unwrap_err();
    assert!(syntax.contains("line 1"), "{syntax}");
    let value = parse("max-attempts = \"many\"\n", &[]).unwrap_err();
    assert!(
        value.contains("--max-attempts"),
        "clap names the flag: {value}"
    );
    let config = parse("config = \"other.toml\"\n", &[]).unwrap_err();
    assert!(config.contains("unknown setting `config`"), "{config}");
}

#[test]
fn without_a_config_file_the_arguments_are_unchanged() {
    let args: Vec<OsString> = vec!["tollgate-test".into(), "--listen=x".into()];
    assert_eq!(
        with_config_file(&Args::command(), args.clone()).unwrap(),
        args
    );
}

#[test]
fn a_missing_config_file_is_an_error() {
    let args: Vec<OsString> = vec![
        "tollgate-test".into(),
        "--config=/nonexistent/tollgate.toml".into(),
    ];
    let err = with_config_file(&Args::command(), args)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read the config file /nonexistent/tollgate.toml"),
        "{err}"
    );
}

//! Server settings from a config file, under the command line and the environment.
//!
//! Every flag of a server can also be set in a TOML file named by `--config FILE` (or
//! `TOLLGATE_CONFIG`). Keys are the flags' long names (`grpc-listen`, or `grpc_listen`);
//! values are strings, numbers, booleans, or arrays for repeatable flags. A value may instead
//! be a reference, so a file can name secrets without holding them:
//! `sync-token = { file = "/run/secrets/sync-token" }` (the file's text, without its trailing
//! newline) or `sync-token = { env = "SYNC_TOKEN" }`.
//!
//! Precedence, highest first: the command line, the flag's `TOLLGATE_*` environment variable,
//! the config file, the default. An unknown key, a value of the wrong shape or an unreadable
//! reference is an error naming the file and the key, never ignored.
//!
//! [`with_config_file`] turns the file into command-line arguments for the flags set nowhere
//! else, so clap parses and validates every value the same way whatever its source.

pub mod pem;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use toml::Value;

/// The flag naming the config file (declare it in each server's arguments).
pub const CONFIG_FLAG: &str = "config";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "TOLLGATE_CONFIG";

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "config file {}: unknown setting `{key}` (settings are the long names of {bin}'s flags; see {bin} --help)",
        path.display()
    )]
    UnknownKey {
        path: PathBuf,
        key: String,
        bin: String,
    },
    #[error("config file {}: `{key}`: {message}", path.display())]
    Value {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// `args` (the process's arguments, program name first) with the settings of the config
/// file appended as `--flag=value` for every flag that neither `args` nor its environment
/// variable sets. Without `--config` or `TOLLGATE_CONFIG`, `args` unchanged.
pub fn with_config_file(
    command: &clap::Command,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, SettingsError> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| SettingsError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let mut out = args;
    for (key, value) in table {
        let name = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
            .filter(|_| !matches!(name.as_str(), CONFIG_FLAG | "help" | "version"))
            .ok_or_else(|| SettingsError::UnknownKey {
                path: path.clone(),
                key: key.clone(),
                bin: command.get_name().to_owned(),
            })?;
        if given_elsewhere(arg, &out) {
            continue;
        }
        let bad = |message: String| SettingsError::Value {
            path: path.clone(),
            key: key.clone(),
            message,
        };
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => match value {
                Value::Boolean(true) => out.push(format!("--{name}").into()),
                Value::Boolean(false) => {}
                other => return Err(bad(format!("expected true or false, got {}", kind(&other)))),
            },
            action => {
                let values = match value {
                    Value::Array(items) if matches!(action, ArgAction::Append) => items,
                    Value::Array(_) => return Err(bad("takes one value, not a list".to_owned())),
                    single => vec![single],
                };
                for item in values {
                    let text = scalar(item, &path).map_err(bad)?;
                    let mut flag = OsString::from(format!("--{name}="));
                    flag.push(text);
                    out.push(flag);
                }
            }
        }
    }
    Ok(out)
}

/// The config file `args` or the environment names.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let long = format!("--{CONFIG_FLAG}");
    let prefix = format!("--{CONFIG_FLAG}=");
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        let text = arg.to_string_lossy();
        if text == long {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&prefix) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Whether the command line or the flag's environment variable sets `arg`.
fn given_elsewhere(arg: &clap::Arg, args: &[OsString]) -> bool {
    if arg
        .get_env()
        .and_then(std::env::var_os)
        .is_some_and(|v| !v.is_empty())
    {
        return true;
    }
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|s| format!("-{s}"));
    args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        long.as_deref()
            .is_some_and(|l| a == l || a.strip_prefix(l).is_some_and(|r| r.starts_with('=')))
            || short.as_deref().is_some_and(|s| a.starts_with(s))
    })
}

/// One value as command-line text: a string, number or boolean, or a `{ file = … }` /
/// `{ env = … }` reference resolved now.
fn scalar(value: Value, config: &Path) -> Result<OsString, String> {
    match value {
        Value::String(s) => Ok(s.into()),
        Value::Integer(i) => Ok(i.to_string().into()),
        Value::Float(f) => Ok(f.to_string().into()),
        Value::Boolean(b) => Ok(b.to_string().into()),
        Value::Table(table) => reference(&table, config),
        other => Err(format!(
            "expected a string, number, boolean or {{ file = … }} / {{ env = … }}, got {}",
            kind(&other)
        )),
    }
}

/// The value a `{ file = "…" }` or `{ env = "…" }` reference points at. A relative file path
/// is taken from the config file's directory.
fn reference(table: &toml::Table, config: &Path) -> Result<OsString, String> {
    let mut entries = table.iter();
    let (Some((how, Value::String(target))), None) = (entries.next(), entries.next()) else {
        return Err("a reference is { file = \"PATH\" } or { env = \"NAME\" }".to_owned());
    };
    match how.as_str() {
        "file" => {
            let file = config
                .parent()
                .unwrap_or_else(|| Path::new(""))
                .join(target);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            Ok(value.into())
        }
        "env" => std::env::var_os(target)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the environment variable {target} is not set")),
        other => Err(format!(
            "unknown reference `{other}`: a reference is {{ file = \"PATH\" }} or {{ env = \"NAME\" }}"
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests;

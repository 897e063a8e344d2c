//! Provider credential flags. Each credential can be given three ways:
//!
//! - `--<credential>-file PATH`: read on this machine (`-` reads stdin), sent once and stored
//!   encrypted by the control plane;
//! - `--<credential>-env VAR`: read from this machine's environment, stored the same way;
//! - `--<credential>-ref env:VAR` or `--<credential>-ref file:PATH`: a reference each data
//!   plane resolves from its own environment or files (the value never reaches Tollgate's
//!   database).
//!
//! Values are never taken from the command line itself (other users can read it in `ps`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Arg, ArgGroup, ArgMatches, Args, Command, FromArgMatches};
use tollgate_proto::v1 as pb;

/// A credential's name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialName {
    ApiKey,
    BearerToken,
    AwsAccessKeyId,
    AwsSecretAccessKey,
    AwsSessionToken,
    ServiceAccountJson,
}

struct Flags {
    name: CredentialName,
    /// Group id and flag stem.
    stem: &'static str,
    file: &'static str,
    env: &'static str,
    reference: &'static str,
    what: &'static str,
}

const FLAGS: [Flags; 6] = [
    Flags {
        name: CredentialName::ApiKey,
        stem: "api-key",
        file: "api-key-file",
        env: "api-key-env",
        reference: "api-key-ref",
        what: "API key (anthropic: x-api-key; foundry: api-key; bedrock: Bedrock API key)",
    },
    Flags {
        name: CredentialName::BearerToken,
        stem: "bearer-token",
        file: "bearer-token-file",
        env: "bearer-token-env",
        reference: "bearer-token-ref",
        what: "bearer token (foundry: Entra ID token; vertex: OAuth2 access token)",
    },
    Flags {
        name: CredentialName::AwsAccessKeyId,
        stem: "aws-access-key-id",
        file: "aws-access-key-id-file",
        env: "aws-access-key-id-env",
        reference: "aws-access-key-id-ref",
        what: "bedrock: AWS access key id",
    },
    Flags {
        name: CredentialName::AwsSecretAccessKey,
        stem: "aws-secret-access-key",
        file: "aws-secret-access-key-file",
        env: "aws-secret-access-key-env",
        reference: "aws-secret-access-key-ref",
        what: "bedrock: AWS secret access key",
    },
    Flags {
        name: CredentialName::AwsSessionToken,
        stem: "aws-session-token",
        file: "aws-session-token-file",
        env: "aws-session-token-env",
        reference: "aws-session-token-ref",
        what: "bedrock: AWS session token (temporary credentials)",
    },
    Flags {
        name: CredentialName::ServiceAccountJson,
        stem: "service-account-json",
        file: "service-account-json-file",
        env: "service-account-json-env",
        reference: "service-account-json-ref",
        what: "vertex: service-account key file (JSON)",
    },
];

/// Where one credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A file on this machine (`-` = stdin); the value is stored.
    LocalFile(PathBuf),
    /// An environment variable of this process; the value is stored.
    LocalEnv(String),
    /// Resolved by the data plane.
    Ref(pb::secret_ref::Source),
}

/// The credentials given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialArgs {
    pub given: Vec<(CredentialName, CredentialSource)>,
}

/// `env:NAME` or `file:PATH`.
fn parse_ref(s: &str) -> Result<pb::secret_ref::Source, String> {
    match s.split_once(':') {
        Some(("env", name)) if !name.is_empty() => Ok(pb::secret_ref::Source::Env(name.to_owned())),
        Some(("file", path)) if !path.is_empty() => {
            Ok(pb::secret_ref::Source::File(path.to_owned()))
        }
        _ => Err(format!(
            "`{s}`: expected env:VARIABLE or file:PATH (resolved on each data plane)"
        )),
    }
}

impl Args for CredentialArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for f in &FLAGS {
            cmd = cmd
                .arg(
                    Arg::new(f.file)
                        .long(f.file)
                        .value_name("PATH")
                        .value_parser(clap::value_parser!(PathBuf))
                        .help(format!(
                            "{}: read from this file (`-` = stdin), stored encrypted",
                            f.what
                        )),
                )
                .arg(Arg::new(f.env).long(f.env).value_name("VAR").help(format!(
                    "{}: read from this environment variable here, stored encrypted",
                    f.what
                )))
                .arg(
                    Arg::new(f.reference)
                        .long(f.reference)
                        .value_name("env:VAR|file:PATH")
                        .value_parser(parse_ref)
                        .help(format!("{}: resolved by each data plane", f.what)),
                )
                .group(
                    ArgGroup::new(f.stem)
                        .args([f.file, f.env, f.reference])
                        .multiple(false),
                );
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for CredentialArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for f in &FLAGS {
            if let Some(path) = m.get_one::<PathBuf>(f.file) {
                given.push((f.name, CredentialSource::LocalFile(path.clone())));
            } else if let Some(var) = m.get_one::<String>(f.env) {
                given.push((f.name, CredentialSource::LocalEnv(var.clone())));
            } else if let Some(source) = m.get_one::<pb::secret_ref::Source>(f.reference) {
                given.push((f.name, CredentialSource::Ref(source.clone())));
            }
        }
        Ok(CredentialArgs { given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl CredentialName {
    fn flag_stem(self) -> &'static str {
        FLAGS
            .iter()
            .find(|f| f.name == self)
            .map_or("credential", |f| f.stem)
    }

    /// The `ProviderConfig` field holding this credential.
    pub fn field(self, c: &mut pb::ProviderConfig) -> &mut Option<pb::SecretRef> {
        match self {
            CredentialName::ApiKey => &mut c.api_key,
            CredentialName::BearerToken => &mut c.bearer_token,
            CredentialName::AwsAccessKeyId => &mut c.aws_access_key_id,
            CredentialName::AwsSecretAccessKey => &mut c.aws_secret_access_key,
            CredentialName::AwsSessionToken => &mut c.aws_session_token,
            CredentialName::ServiceAccountJson => &mut c.service_account_json,
        }
    }
}

impl CredentialArgs {
    /// Reads local values and sets the given credentials on `config`.
    pub fn apply(&self, config: &mut pb::ProviderConfig) -> anyhow::Result<()> {
        let stdin_users = self
            .given
            .iter()
            .filter(|(_, s)| matches!(s, CredentialSource::LocalFile(p) if p.as_os_str() == "-"))
            .count();
        if stdin_users > 1 {
            bail!("only one credential can be read from stdin");
        }
        for (name, source) in &self.given {
            let source = match source {
                CredentialSource::LocalFile(path) => {
                    let text = if path.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
                    } else {
                        std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read {}", path.display()))?
                    };
                    pb::secret_ref::Source::Value(non_empty(text.trim(), *name)?)
                }
                CredentialSource::LocalEnv(var) => {
                    let value = std::env::var(var)
                        .with_context(|| format!("environment variable {var} is not set"))?;
                    pb::secret_ref::Source::Value(non_empty(value.trim(), *name)?)
                }
                CredentialSource::Ref(source) => source.clone(),
            };
            *name.field(config) = Some(pb::SecretRef {
                source: Some(source),
            });
        }
        Ok(())
    }
}

fn non_empty(value: &str, name: CredentialName) -> anyhow::Result<String> {
    if value.is_empty() {
        bail!(
            "the {} given is empty (use `--clear {}` to remove a credential)",
            name.flag_stem(),
            name.flag_stem()
        );
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_env_or_file() {
        assert_eq!(
            parse_ref("env:AWS_ACCESS_KEY_ID"),
            Ok(pb::secret_ref::Source::Env("AWS_ACCESS_KEY_ID".into()))
        );
        assert_eq!(
            parse_ref("file:/run/secrets/sa.json"),
            Ok(pb::secret_ref::Source::File("/run/secrets/sa.json".into()))
        );
        assert!(parse_ref("AWS_ACCESS_KEY_ID").is_err());
        assert!(parse_ref("env:").is_err());
    }

    #[test]
    fn local_files_are_read_and_sent_as_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-from-file\n").unwrap();
        let args = CredentialArgs {
            given: vec![
                (CredentialName::ApiKey, CredentialSource::LocalFile(path)),
                (
                    CredentialName::AwsSessionToken,
                    CredentialSource::Ref(pb::secret_ref::Source::Env("T".into())),
                ),
            ],
        };
        let mut config = pb::ProviderConfig::default();
        args.apply(&mut config).unwrap();
        assert_eq!(
            config.api_key.unwrap().source,
            Some(pb::secret_ref::Source::Value("sk-from-file".into()))
        );
        assert_eq!(
            config.aws_session_token.unwrap().source,
            Some(pb::secret_ref::Source::Env("T".into()))
        );
    }
}

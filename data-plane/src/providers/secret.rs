//! Provider credentials: inline values from the snapshot, or references the data plane
//! resolves from its own environment and files.
//!
//! File references are re-read when the file changes (checked at most every
//! [`FILE_RECHECK`]), so a token a sidecar rewrites on disk is picked up without a restart.
//!
//! References are limited by [`CredentialReferences`]: an admin who can configure providers
//! must not be able to make a data plane send its own secrets (its sync token, its TLS key)
//! to a provider URL of their choosing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use tollgate_policy::SecretSource;

/// How often a file reference is checked for changes.
pub(crate) const FILE_RECHECK: Duration = Duration::from_secs(10);

/// Which environment variables and files provider credentials may be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialReferences {
    /// A variable must start with one of these.
    pub env_prefixes: Vec<String>,
    /// A file must lie inside one of these directories (symbolic links resolved).
    pub dirs: Vec<PathBuf>,
}

impl Default for CredentialReferences {
    fn default() -> Self {
        CredentialReferences {
            env_prefixes: [
                "TOLLGATE_PROVIDER_",
                "ANTHROPIC_",
                "AWS_",
                "GOOGLE_",
                "AZURE_",
                "BEDROCK_",
                "VERTEX_",
                "FOUNDRY_",
            ]
            .map(str::to_owned)
            .to_vec(),
            dirs: [
                "/etc/tollgate/credentials",
                "/run/secrets",
                "/var/run/secrets",
            ]
            .map(PathBuf::from)
            .to_vec(),
        }
    }
}

impl CredentialReferences {
    fn allows_env(&self, name: &str) -> bool {
        self.env_prefixes
            .iter()
            .any(|p| !p.is_empty() && name.starts_with(p.as_str()))
    }

    fn allows_file(&self, path: &Path) -> bool {
        let Ok(real) = std::fs::canonicalize(path) else {
            return false;
        };
        self.dirs
            .iter()
            .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| real.starts_with(dir)))
    }
}

/// A credential reference that cannot be resolved. Names the reference, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "environment variable `{0}` may not hold provider credentials (see --credential-env-prefix)"
    )]
    EnvNotAllowed(String),
    #[error(
        "credential file `{}` is outside the allowed directories (see --credential-dir)", .0.display()
    )]
    FileNotAllowed(PathBuf),
    #[error("environment variable `{0}` is not set or empty")]
    MissingEnv(String),
    #[error("credential file `{}` cannot be read", .0.display())]
    File(PathBuf),
    #[error("credential file `{}` is empty", .0.display())]
    EmptyFile(PathBuf),
}

struct CachedFile {
    value: SecretString,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Resolves [`SecretSource`]s; shared by every request.
#[cfg_attr(test, derive(Default))]
pub(crate) struct Secrets {
    /// `None`: any reference (tests only).
    allowed: Option<CredentialReferences>,
    files: Mutex<HashMap<PathBuf, CachedFile>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

impl Secrets {
    pub(crate) fn new(allowed: CredentialReferences) -> Self {
        Secrets {
            allowed: Some(allowed),
            files: Mutex::default(),
        }
    }

    pub(crate) fn resolve(&self, source: &SecretSource) -> Result<SecretString, SecretError> {
        match source {
            SecretSource::Inline(value) => Ok(value.clone()),
            SecretSource::Env(name)
                if self.allowed.as_ref().is_some_and(|a| !a.allows_env(name)) =>
            {
                Err(SecretError::EnvNotAllowed(name.clone()))
            }
            SecretSource::File(path)
                if self.allowed.as_ref().is_some_and(|a| !a.allows_file(path)) =>
            {
                Err(SecretError::FileNotAllowed(path.clone()))
            }
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_owned())),
                _ => Err(SecretError::MissingEnv(name.clone())),
            },
            SecretSource::File(path) => self.file(path),
        }
    }

    fn file(&self, path: &Path) -> Result<SecretString, SecretError> {
        let now = Instant::now();
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cached) = files.get_mut(path) {
            if now.duration_since(cached.checked) < FILE_RECHECK {
                return Ok(cached.value.clone());
            }
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified == cached.modified {
                cached.checked = now;
                return Ok(cached.value.clone());
            }
        }
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(path).map_err(|_| SecretError::File(path.to_owned()))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(SecretError::EmptyFile(path.to_owned()));
        }
        let value = SecretString::from(trimmed.to_owned());
        files.insert(
            path.to_owned(),
            CachedFile {
                value: value.clone(),
                modified,
                checked: now,
            },
        );
        Ok(value)
    }
}

/// A resolved credential's text (for building headers and signatures).
pub(crate) fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inline_env_and_file_and_names_what_is_missing() {
        let secrets = Secrets::default();
        let inline = SecretSource::Inline(SecretString::from("v".to_owned()));
        assert_eq!(expose(&secrets.resolve(&inline).unwrap()), "v");

        // Tests may not set variables (the data plane shares the process); PATH is always set.
        let path = std::env::var("PATH").unwrap();
        let env = SecretSource::Env("PATH".into());
        assert_eq!(expose(&secrets.resolve(&env).unwrap()), path.trim());

        let missing = SecretSource::Env("TOLLGATE_TEST_SURELY_UNSET_VAR".into());
        let err = secrets.resolve(&missing).unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_TEST_SURELY_UNSET_VAR"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  tok-1\n").unwrap();
        let file = SecretSource::File(path.clone());
        assert_eq!(expose(&secrets.resolve(&file).unwrap()), "tok-1");
        std::fs::write(&path, "").unwrap();
        // Cached until the recheck interval passes.
        assert_eq!(expose(&secrets.resolve(&file).unwrap()), "tok-1");
        let gone = SecretSource::File(dir.path().join("nope"));
        assert!(matches!(secrets.resolve(&gone), Err(SecretError::File(_))));
    }

    #[test]
    fn references_outside_the_allowed_names_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("token");
        std::fs::write(&inside, "tok").unwrap();
        let other = tempfile::tempdir().unwrap();
        let outside = other.path().join("token");
        std::fs::write(&outside, "tok").unwrap();
        let secrets = Secrets::new(CredentialReferences {
            env_prefixes: vec!["PA".into()],
            dirs: vec![dir.path().to_owned()],
        });
        assert!(secrets.resolve(&SecretSource::Env("PATH".into())).is_ok());
        let sync = SecretSource::Env("TOLLGATE_SYNC_TOKEN".into());
        assert!(matches!(
            secrets.resolve(&sync),
            Err(SecretError::EnvNotAllowed(_))
        ));
        assert!(secrets.resolve(&SecretSource::File(inside)).is_ok());
        let escape = dir
            .path()
            .join("..")
            .join(other.path().file_name().unwrap())
            .join("token");
        assert!(matches!(
            secrets.resolve(&SecretSource::File(escape)),
            Err(SecretError::FileNotAllowed(_))
        ));
        assert!(matches!(
            secrets.resolve(&SecretSource::File(outside)),
            Err(SecretError::FileNotAllowed(_))
        ));
        let defaults = CredentialReferences::default();
        assert!(!defaults.allows_env("TOLLGATE_SYNC_TOKEN"));
        assert!(defaults.allows_env("TOLLGATE_PROVIDER_BEDROCK_KEY"));
        assert!(defaults.allows_env("AWS_SECRET_ACCESS_KEY"));
    }

    #[test]
    fn debug_output_shows_no_value() {
        let secrets = Secrets::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "canary-secret").unwrap();
        secrets.resolve(&SecretSource::File(path)).unwrap();
        assert!(!format!("{secrets:?}").contains("canary"));
    }
}

//! The signed-in state on disk: `$XDG_CONFIG_HOME/tollgate/credentials.json` (else
//! `~/.config/tollgate/credentials.json`), readable by the owner only.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::LoginError;
use super::device::{Metadata, TokenSet};

/// Lifetime assumed when a token response carries no `expires_in`.
const DEFAULT_LIFETIME_S: u64 = 3600;

/// Where the credentials live.
pub fn credentials_path() -> Result<PathBuf, LoginError> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".config"))
            .ok_or(LoginError::NoConfigDir)?,
    };
    Ok(dir.join("tollgate").join("credentials.json"))
}

/// A signed-in session with the gateway.
#[derive(Debug)]
pub struct Credentials {
    pub gateway: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at_unix_s: i64,
    pub email: Option<String>,
}

/// The file format (secrets exposed only while reading and writing it).
#[derive(Serialize, Deserialize)]
struct OnDisk {
    gateway: String,
    token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

impl Credentials {
    /// Credentials from a fresh token response.
    pub fn new(meta: &Metadata, set: TokenSet, now_unix_s: i64) -> Credentials {
        let mut c = Credentials {
            gateway: meta.base_url.clone(),
            token_endpoint: meta.token_endpoint.clone(),
            revocation_endpoint: meta.revocation_endpoint.clone(),
            access_token: SecretString::from(""),
            refresh_token: None,
            expires_at_unix_s: now_unix_s,
            email: None,
        };
        c.update(set, now_unix_s);
        c
    }

    /// Takes a refreshed token set; keeps the old refresh token and email when the response
    /// has none.
    pub fn update(&mut self, set: TokenSet, now_unix_s: i64) {
        let lifetime = i64::try_from(set.expires_in.unwrap_or(DEFAULT_LIFETIME_S)).unwrap_or(0);
        self.access_token = set.access_token;
        self.expires_at_unix_s = now_unix_s.saturating_add(lifetime);
        if let Some(r) = set.refresh_token {
            self.refresh_token = Some(r);
        }
        if set.email.is_some() {
            self.email = set.email;
        }
    }

    pub fn load(path: &Path) -> Result<Credentials, LoginError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LoginError::NotSignedIn);
            }
            Err(source) => return Err(io_error(path, source)),
        };
        let d: OnDisk =
            serde_json::from_str(&text).map_err(|source| LoginError::CorruptCredentials {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Credentials {
            gateway: d.gateway,
            token_endpoint: d.token_endpoint,
            revocation_endpoint: d.revocation_endpoint,
            access_token: SecretString::from(d.access_token),
            refresh_token: d.refresh_token.map(SecretString::from),
            expires_at_unix_s: d.expires_at,
            email: d.email,
        })
    }

    /// Writes the file with mode 0600 (its directory 0700), replacing any old one.
    pub fn save(&self, path: &Path) -> Result<(), LoginError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(|source| io_error(dir, source))?;
        }
        let d = OnDisk {
            gateway: self.gateway.clone(),
            token_endpoint: self.token_endpoint.clone(),
            revocation_endpoint: self.revocation_endpoint.clone(),
            access_token: self.access_token.expose_secret().to_owned(),
            refresh_token: self
                .refresh_token
                .as_ref()
                .map(|r| r.expose_secret().to_owned()),
            expires_at: self.expires_at_unix_s,
            email: self.email.clone(),
        };
        let text =
            serde_json::to_string_pretty(&d).map_err(|source| LoginError::CorruptCredentials {
                path: path.display().to_string(),
                source,
            })?;
        // Write beside, then rename: a concurrent `tollgate token` never reads half a file.
        let tmp = path.with_extension("json.tmp");
        crate::secret::write_private_file(&tmp, &text).map_err(|source| io_error(&tmp, source))?;
        std::fs::rename(&tmp, path).map_err(|source| io_error(path, source))
    }

    /// Takes an exclusive lock on `<path>.lock` (created 0600), held until the returned file is
    /// dropped; waits while another process holds it.
    pub fn lock(path: &Path) -> Result<std::fs::File, LoginError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let lock_path = path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| io_error(&lock_path, source))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_error(&lock_path, e.into()))?;
        Ok(file)
    }

    /// Deletes the file; a missing file is fine.
    pub fn delete(path: &Path) -> Result<(), LoginError> {
        let _ = std::fs::remove_file(path.with_extension("lock"));
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(path, source)),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn io_error(path: &Path, source: std::io::Error) -> LoginError {
    LoginError::Credentials {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn meta() -> Metadata {
        Metadata {
            base_url: "http://127.0.0.1:1".into(),
            device_authorization_endpoint: "http://127.0.0.1:1/oauth/device_authorization".into(),
            token_endpoint: "http://127.0.0.1:1/oauth/token".into(),
            revocation_endpoint: Some("http://127.0.0.1:1/oauth/revoke".into()),
        }
    }

    fn set(access: &str, refresh: Option<&str>) -> TokenSet {
        TokenSet {
            access_token: SecretString::from(access),
            expires_in: Some(3600),
            refresh_token: refresh.map(SecretString::from),
            email: Some("alice@example.com".into()),
        }
    }

    #[test]
    fn saved_credentials_are_owner_only_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate").join("credentials.json");
        let c = Credentials::new(&meta(), set("at-1", Some("rt-1")), 1_000);
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Credentials::load(&path).unwrap();
        assert_eq!(back.access_token.expose_secret(), "at-1");
        assert_eq!(back.refresh_token.unwrap().expose_secret(), "rt-1");
        assert_eq!(back.expires_at_unix_s, 4_600);
        assert_eq!(back.email.as_deref(), Some("alice@example.com"));
        assert!(
            !format!("{c:?}").contains("at-1"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let mut c = Credentials::new(&meta(), set("at-1", Some("rt-1")), 0);
        c.update(set("at-2", None), 10);
        assert_eq!(c.access_token.expose_secret(), "at-2");
        assert_eq!(c.refresh_token.unwrap().expose_secret(), "rt-1");
    }

    #[test]
    fn missing_file_means_not_signed_in() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Credentials::load(&dir.path().join("none.json")),
            Err(LoginError::NotSignedIn)
        ));
    }
}

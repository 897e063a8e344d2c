//! `tollgate login`, `tollgate token`, `tollgate logout`: a developer's machine signed in to the
//! gateway without Claude Code's own `/login` (base-URL mode). `login` runs the OAuth device
//! flow against the gateway (RFC 8414 metadata, RFC 8628 device authorization with
//! `surface=claude_code`); `token` prints a valid access token, refreshing it when less than
//! five minutes remain, and so works as Claude Code's `apiKeyHelper`; `logout` revokes the
//! tokens (RFC 7009) and deletes the stored credentials.

mod commands;
mod credentials;
mod device;

pub use commands::{LoginArgs, LogoutArgs, TokenArgs, login, logout, token};
pub use credentials::{Credentials, credentials_path};
pub use device::{
    DeviceAuthorization, Metadata, TokenSet, current_token, discover, poll_for_token, refresh,
    revoke, start_device_authorization,
};

/// What can go wrong talking to the gateway or with the stored credentials.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the gateway answered {status} at {url}: {body}")]
    Unexpected {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} must be https (http is allowed only to loopback)")]
    Insecure { url: String },
    #[error("sign-in was denied")]
    AccessDenied,
    #[error("the sign-in code expired before it was approved; run `tollgate login` again")]
    Expired,
    #[error("the session ended ({reason}); run `tollgate login` again")]
    SignedOut { reason: String },
    #[error("not signed in; run `tollgate login --gateway URL` first")]
    NotSignedIn,
    #[error("credentials file {path}: {source}")]
    Credentials {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not valid: {source}")]
    CorruptCredentials {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no home directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
}

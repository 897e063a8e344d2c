//! SigV4 request signing (`aws-sigv4`, default settings: the path is percent-encoded once
//! more in the canonical request, no `x-amz-content-sha256` header, the session token is
//! signed as `x-amz-security-token`).
//!
//! Every header passed in is signed except the ones `aws-sigv4` never signs
//! (`authorization`, `user-agent`, `x-amzn-trace-id`, `transfer-encoding`). `host` is not
//! passed in: `aws-sigv4` signs the URL's host (with the port unless it is the scheme's
//! default), which is exactly the `Host` header hyper derives from the same URL (and the
//! `:authority` of an HTTP/2 request).

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign as aws_sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use secrecy::SecretString;

use super::super::secret::expose;

/// AWS credentials, resolved for one request.
pub(crate) struct AwsCredentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// Where and when a signature is valid.
pub(super) struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

/// Why a request could not be signed. Never names a credential value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    #[error("provider URL cannot be signed (it needs an absolute URL with a host)")]
    Url,
    #[error("request header `{0}` cannot be signed")]
    Header(String),
    #[error("request could not be signed")]
    Signing,
}

/// Signs a request: adds `x-amz-date`, `authorization` and (temporary credentials)
/// `x-amz-security-token` to `headers`. Returns the signature (hex).
pub(super) fn sign(
    method: &str,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    credentials: &AwsCredentials,
    scope: &Scope<'_>,
) -> Result<String, SignError> {
    // aws-sigv4 requires a host and UTF-8 header values; check rather than trip over them.
    let uri: Uri = url.parse().map_err(|_| SignError::Url)?;
    if uri.host().is_none_or(str::is_empty) || uri.scheme().is_none() {
        return Err(SignError::Url);
    }
    let mut signable_headers = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        let value = value
            .to_str()
            .map_err(|_| SignError::Header(name.as_str().to_owned()))?;
        signable_headers.push((name.as_str(), value));
    }

    let identity: Identity = Credentials::new(
        expose(&credentials.access_key_id),
        expose(&credentials.secret_access_key),
        credentials
            .session_token
            .as_ref()
            .map(|t| expose(t).to_owned()),
        None,
        "tollgate-provider",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(scope.region)
        .name(scope.service)
        .time(scope.time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| SignError::Signing)?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        signable_headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| SignError::Signing)?;
    let (instructions, signature) = aws_sign(request, &params)
        .map_err(|_| SignError::Signing)?
        .into_parts();

    let (added, _params) = instructions.into_parts();
    for header in added {
        let invalid = || SignError::Header(header.name().to_owned());
        let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| invalid())?;
        if header.sensitive() || name == http::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        headers.insert(name, value);
    }
    Ok(signature)
}

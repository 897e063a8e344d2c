//! An independent AWS Signature Version 4 verifier for the fake AWS servers.
//!
//! Hand-written from the published algorithm with `hmac` + `sha2` (deliberately not
//! `aws-sigv4`, which the data plane signs with) so that it cross-checks the signer. It
//! rebuilds the canonical request from what was received — method, path (each segment
//! percent-encoded once more, as AWS does for every service but S3), sorted query, the
//! headers named in `SignedHeaders` (values trimmed, inner runs of spaces collapsed), payload
//! hash — then the string to sign and the derived key, and compares signatures. It also
//! checks the clock skew (15 minutes, like AWS) and the session token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The credentials the verifier expects requests to be signed with.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials: `x-amz-security-token` must carry this and be signed.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

/// What a request must be signed for.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub credentials: &'a AwsCredentials,
    pub region: &'a str,
    pub service: &'a str,
    /// The verifier's clock (the request's `X-Amz-Date` must be within `max_skew` of it).
    pub now: SystemTime,
    pub max_skew: Duration,
}

/// One received request, as the server saw it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub method: &'a Method,
    /// The path exactly as it arrived (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The `:authority` / URI host for HTTP/2 requests without a `host` header.
    pub authority: Option<&'a str>,
    pub body: &'a [u8],
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a signature was refused; the variants follow AWS's error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// `MissingAuthenticationToken` / `IncompleteSignature`: absent or malformed header.
    Incomplete(String),
    /// `UnrecognizedClientException`: unknown access key or wrong session token.
    UnrecognizedClient(String),
    /// `InvalidSignatureException`: wrong scope, date, or signature.
    InvalidSignature(String),
}

impl SigV4Error {
    /// The `x-amzn-ErrorType` code AWS answers with.
    pub fn code(&self) -> &'static str {
        match self {
            SigV4Error::Incomplete(_) => "IncompleteSignatureException",
            SigV4Error::UnrecognizedClient(_) => "UnrecognizedClientException",
            SigV4Error::InvalidSignature(_) => "InvalidSignatureException",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SigV4Error::Incomplete(m)
            | SigV4Error::UnrecognizedClient(m)
            | SigV4Error::InvalidSignature(m) => m,
        }
    }
}

impl std::fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for SigV4Error {}

/// Parses `AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let bad = |m: &str| SigV4Error::Incomplete(format!("Authorization header: {m}"));
    let rest = value
        .trim()
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| bad("algorithm is not AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else if !part.is_empty() {
            return Err(bad(&format!("unknown component `{part}`")));
        }
    }
    let credential = credential.ok_or_else(|| bad("missing Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, service, terminator] = scope.as_slice() else {
        return Err(bad(
            "Credential must be AK/date/region/service/aws4_request",
        ));
    };
    if *terminator != "aws4_request" {
        return Err(bad("Credential scope must end in aws4_request"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| bad("missing SignedHeaders"))?
        .split(';')
        .map(str::to_owned)
        .collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || *h != h.to_ascii_lowercase())
    {
        return Err(bad("SignedHeaders must be lowercase names"));
    }
    let mut sorted = signed_headers.clone();
    sorted.sort();
    sorted.dedup();
    if sorted != signed_headers {
        return Err(bad("SignedHeaders must be sorted and unique"));
    }
    let signature = signature.ok_or_else(|| bad("missing Signature"))?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("Signature must be 64 hex digits"));
    }
    Ok(Authorization {
        access_key_id: (*ak).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Verifies a request's SigV4 signature; returns the parsed authorization on success.
pub fn verify(req: &Received<'_>, expected: &Expected<'_>) -> Result<Authorization, SigV4Error> {
    let header = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SigV4Error::Incomplete("Missing Authentication Token".to_owned()))?;
    let auth = parse_authorization(header)?;
    if auth.access_key_id != expected.credentials.access_key_id {
        return Err(SigV4Error::UnrecognizedClient(
            "The security token included in the request is invalid.".to_owned(),
        ));
    }
    if auth.region != expected.region || auth.service != expected.service {
        return Err(SigV4Error::InvalidSignature(format!(
            "Credential should be scoped to a valid region/service: got {}/{}, expected {}/{}",
            auth.region, auth.service, expected.region, expected.service
        )));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SigV4Error::InvalidSignature(format!(
                "'{required}' must be a signed header"
            )));
        }
    }
    let amz_date = header_str(req.headers, "x-amz-date")
        .ok_or_else(|| SigV4Error::Incomplete("missing X-Amz-Date".to_owned()))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        SigV4Error::Incomplete(format!("X-Amz-Date `{amz_date}` is not YYYYMMDDTHHMMSSZ"))
    })?;
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(SigV4Error::InvalidSignature(
            "Date in Credential scope does not match X-Amz-Date".to_owned(),
        ));
    }
    let skew = match expected.now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > expected.max_skew {
        return Err(SigV4Error::InvalidSignature(format!(
            "Signature expired: {amz_date} is more than {} s from the server's time",
            expected.max_skew.as_secs()
        )));
    }
    match (
        &expected.credentials.session_token,
        header_str(req.headers, "x-amz-security-token"),
    ) {
        (Some(want), Some(got)) => {
            if want != got {
                return Err(SigV4Error::UnrecognizedClient(
                    "The security token included in the request is invalid.".to_owned(),
                ));
            }
            if !auth
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-security-token")
            {
                return Err(SigV4Error::InvalidSignature(
                    "x-amz-security-token must be signed".to_owned(),
                ));
            }
        }
        (Some(_), None) => {
            return Err(SigV4Error::UnrecognizedClient(
                "The security token included in the request is invalid (missing).".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(SigV4Error::UnrecognizedClient(
                "The security token included in the request is invalid.".to_owned(),
            ));
        }
        (None, None) => {}
    }
    let canonical = canonical_request(req, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(
        &expected.credentials.secret_access_key,
        &auth.date,
        &auth.region,
        &auth.service,
    );
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    if signature != auth.signature {
        return Err(SigV4Error::InvalidSignature(format!(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.\n\nThe Canonical String for this request should have \
             been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n"
        )));
    }
    Ok(auth)
}

/// The canonical request AWS computes for `req` with `signed_headers`.
pub fn canonical_request(
    req: &Received<'_>,
    signed_headers: &[String],
) -> Result<String, SigV4Error> {
    let mut lines = String::new();
    for name in signed_headers {
        let values: Vec<String> = if name == "host" && !req.headers.contains_key("host") {
            req.authority
                .map(|a| vec![a.to_owned()])
                .unwrap_or_default()
        } else {
            req.headers
                .get_all(name.as_str())
                .iter()
                .map(|v| {
                    v.to_str()
                        .map(canonical_header_value)
                        .map_err(|_| SigV4Error::Incomplete(format!("header {name} not text")))
                })
                .collect::<Result<_, _>>()?
        };
        if values.is_empty() {
            return Err(SigV4Error::InvalidSignature(format!(
                "signed header `{name}` is not in the request"
            )));
        }
        lines.push_str(name);
        lines.push(':');
        lines.push_str(&values.join(","));
        lines.push('\n');
    }
    let payload_hash = match header_str(req.headers, "x-amz-content-sha256") {
        Some(h) => {
            let actual = hex::encode(Sha256::digest(req.body));
            if h != "UNSIGNED-PAYLOAD" && h != actual {
                return Err(SigV4Error::InvalidSignature(
                    "x-amz-content-sha256 does not match the body".to_owned(),
                ));
            }
            h.to_owned()
        }
        None => hex::encode(Sha256::digest(req.body)),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.as_str(),
        canonical_uri(req.path),
        canonical_query(req.query.unwrap_or("")),
        lines,
        signed_headers.join(";"),
        payload_hash
    ))
}

/// Each path segment percent-encoded (again): `%3A` becomes `%253A`, a raw `:` becomes `%3A`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|segment| uri_encode(segment.as_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// Query parameters decoded, re-encoded, and sorted by name then value.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims and collapses runs of spaces (outside of nothing: AWS collapses everywhere).
fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut last_space = false;
    for c in v.trim().chars() {
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

/// RFC 3986 percent-encoding of everything but unreserved characters, upper-case hex.
pub fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` sequences decoded (`+` is left alone, as in SigV4).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `HMAC("AWS4"+secret, date) → region → service → "aws4_request"`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// `YYYYMMDDTHHMMSSZ` → time.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Formats a time as `YYYYMMDDTHHMMSSZ` (for tests that sign requests themselves).
pub fn format_amz_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Signs a request the way the test suite describes (for fakes' own tests and for
/// exercising the verifier): returns the `Authorization` value for `signed_headers`
/// (which must include `host` and `x-amz-date`, already present in `headers`).
pub fn sign(
    req: &Received<'_>,
    signed_headers: &[&str],
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
) -> Result<String, SigV4Error> {
    let mut names: Vec<String> = signed_headers
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    names.sort();
    let amz_date = header_str(req.headers, "x-amz-date")
        .ok_or_else(|| SigV4Error::Incomplete("missing X-Amz-Date".to_owned()))?;
    let date = amz_date.get(..8).unwrap_or_default();
    let canonical = canonical_request(req, &names)?;
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&credentials.secret_access_key, date, region, service);
    Ok(format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{region}/{service}/aws4_request, \
         SignedHeaders={}, Signature={}",
        credentials.access_key_id,
        names.join(";"),
        hex::encode(hmac(&key, to_sign.as_bytes()))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    fn suite_credentials(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
        }
    }

    /// Verifies one AWS SigV4 test-suite case given as received request parts and the
    /// published `Authorization` value.
    fn check_suite_case(
        method: Method,
        path: &str,
        query: Option<&str>,
        extra_headers: &[(&str, &str)],
        signed: &str,
        signature: &str,
        token: Option<&str>,
    ) -> Result<Authorization, SigV4Error> {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", SUITE_DATE.parse().unwrap());
        for (k, v) in extra_headers {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        headers.insert(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, SignedHeaders={signed}, Signature={signature}"
            )
            .parse()
            .unwrap(),
        );
        let creds = suite_credentials(token);
        let req = Received {
            method: &method,
            path,
            query,
            headers: &headers,
            authority: None,
            body: b"",
        };
        verify(
            &req,
            &Expected {
                credentials: &creds,
                region: "us-east-1",
                service: "service",
                now: parse_amz_date(SUITE_DATE).unwrap(),
                max_skew: Duration::from_secs(900),
            },
        )
    }

    #[test]
    fn aws_suite_get_vanilla_verifies() {
        check_suite_case(
            Method::GET,
            "/",
            None,
            &[],
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            None,
        )
        .unwrap();
    }

    #[test]
    fn aws_suite_post_vanilla_verifies() {
        check_suite_case(
            Method::POST,
            "/",
            None,
            &[],
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            None,
        )
        .unwrap();
    }

    #[test]
    fn aws_suite_get_vanilla_query_order_key_case_verifies() {
        check_suite_case(
            Method::GET,
            "/",
            Some("Param2=value2&Param1=value1"),
            &[],
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            None,
        )
        .unwrap();
    }

    #[test]
    fn aws_suite_post_header_value_case_verifies() {
        check_suite_case(
            Method::POST,
            "/",
            None,
            &[("my-header1", "VALUE1")],
            "host;my-header1;x-amz-date",
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
            None,
        )
        .unwrap();
    }

    #[test]
    fn aws_suite_get_header_value_trim_collapses_spaces() {
        check_suite_case(
            Method::GET,
            "/",
            None,
            &[("my-header1", " value1"), ("my-header2", "\"a   b   c\"")],
            "host;my-header1;my-header2;x-amz-date",
            "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
            None,
        )
        .unwrap();
    }

    #[test]
    fn aws_suite_get_unreserved_verifies() {
        check_suite_case(
            Method::GET,
            "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            None,
            &[],
            "host;x-amz-date",
            "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
            None,
        )
        .unwrap();
    }

    const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    #[test]
    fn aws_suite_post_sts_header_after_verifies_and_requires_the_token() {
        let case = |token: Option<&str>, header: Option<&str>| {
            let extra: Vec<(&str, &str)> = header
                .map(|h| vec![("x-amz-security-token", h)])
                .unwrap_or_default();
            check_suite_case(
                Method::POST,
                "/",
                None,
                &extra,
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
                token,
            )
        };
        case(Some(STS_TOKEN), Some(STS_TOKEN)).unwrap();
        assert!(matches!(
            case(Some("other-token"), Some(STS_TOKEN)),
            Err(SigV4Error::UnrecognizedClient(_))
        ));
        assert!(matches!(
            case(None, Some(STS_TOKEN)),
            Err(SigV4Error::UnrecognizedClient(_))
        ));
    }

    #[test]
    fn a_changed_signature_byte_is_refused() {
        let err = check_suite_case(
            Method::GET,
            "/",
            None,
            &[],
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf30",
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "InvalidSignatureException");
    }

    #[test]
    fn a_signature_older_than_fifteen_minutes_is_expired() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", SUITE_DATE.parse().unwrap());
        headers.insert(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31").parse().unwrap(),
        );
        let creds = suite_credentials(None);
        let req = Received {
            method: &Method::GET,
            path: "/",
            query: None,
            headers: &headers,
            authority: None,
            body: b"",
        };
        let err = verify(
            &req,
            &Expected {
                credentials: &creds,
                region: "us-east-1",
                service: "service",
                now: parse_amz_date(SUITE_DATE).unwrap() + Duration::from_secs(16 * 60),
                max_skew: Duration::from_secs(900),
            },
        )
        .unwrap_err();
        assert!(err.message().contains("Signature expired"), "{err}");
    }

    #[test]
    fn bedrock_model_paths_are_encoded_again() {
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%253A0/invoke"
        );
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"),
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
        );
    }

    #[test]
    fn sign_and_verify_round_trip_with_a_body_and_wrong_service_is_refused() {
        let creds = suite_credentials(None);
        let now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:4000".parse().unwrap());
        headers.insert("x-amz-date", format_amz_date(now).parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let body = br#"{"max_tokens":1}"#;
        let path = "/model/anthropic.claude-opus-4-8/invoke";
        let req = Received {
            method: &Method::POST,
            path,
            query: None,
            headers: &headers,
            authority: None,
            body,
        };
        let authz = sign(
            &req,
            &["host", "x-amz-date", "content-type"],
            &creds,
            "eu-west-1",
            "bedrock",
        )
        .unwrap();
        let mut signed = headers.clone();
        signed.insert("authorization", authz.parse().unwrap());
        let req = Received {
            headers: &signed,
            ..req
        };
        let expect = |service| Expected {
            credentials: &creds,
            region: "eu-west-1",
            service,
            now,
            max_skew: Duration::from_secs(900),
        };
        let auth = verify(&req, &expect("bedrock")).unwrap();
        assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert!(verify(&req, &expect("bedrock-mantle")).is_err());
        let tampered = Received {
            body: br#"{"max_tokens":2}"#,
            ..req
        };
        assert!(verify(&tampered, &expect("bedrock")).is_err());
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_440_938_160
        );
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
    }
}

//! Reading a user out of verified ID-token or userinfo claims: configurable email and groups
//! claims (flat names or dotted paths), verified email, allowed email domains.

use super::{IdpTokens, OidcError, SignedInUser};
use crate::store::identity::idp::IdpConfigRow;

/// The value at a claim path: a flat claim name first (`groups`, `https://x/groups`), else a
/// dotted path into nested objects (`realm_access.roles`).
pub fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// Group values of a claim: an array of strings, or one string.
pub fn groups_of(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Builds the user from verified claims, enforcing a verified, allowed email.
pub fn user_from_claims(
    config: &IdpConfigRow,
    claims: &serde_json::Value,
    idp_tokens: Option<IdpTokens>,
) -> Result<SignedInUser, OidcError> {
    let subject = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::MissingClaim("sub".to_owned()))?;
    let email = claim(claims, &config.email_claim)
        .and_then(|v| v.as_str())
        .filter(|s| s.contains('@'))
        .ok_or_else(|| OidcError::MissingClaim(config.email_claim.clone()))?;
    if claims.get("email_verified").and_then(|v| v.as_bool()) == Some(false) {
        return Err(OidcError::MissingClaim("email_verified".to_owned()));
    }
    if !config.allowed_email_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        let allowed = domain.is_some_and(|d| {
            config
                .allowed_email_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d))
        });
        if !allowed {
            return Err(OidcError::DomainNotAllowed);
        }
    }
    let name = claims
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(email);
    Ok(SignedInUser {
        subject: subject.to_owned(),
        email: email.to_owned(),
        name: name.to_owned(),
        idp_groups: groups_of(claim(claims, &config.groups_claim)),
        idp_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(groups_claim: &str, domains: &[&str]) -> IdpConfigRow {
        IdpConfigRow {
            issuer_url: "https://idp".to_owned(),
            client_id: "c".to_owned(),
            client_secret_enc: None,
            scopes: vec![],
            groups_claim: groups_claim.to_owned(),
            email_claim: "email".to_owned(),
            allowed_email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            clock_skew_secs: 60,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn groups_come_from_a_flat_claim_or_a_dotted_path() {
        let claims = json!({
            "sub": "s", "email": "a@example.com",
            "https://x/groups": ["a"],
            "realm_access": {"roles": ["r1", "r2", 3]},
            "single": "only",
        });
        let user = user_from_claims(&config("https://x/groups", &[]), &claims, None).unwrap();
        assert_eq!(user.idp_groups, ["a"]);
        let user = user_from_claims(&config("realm_access.roles", &[]), &claims, None).unwrap();
        assert_eq!(user.idp_groups, ["r1", "r2"]);
        let user = user_from_claims(&config("single", &[]), &claims, None).unwrap();
        assert_eq!(user.idp_groups, ["only"]);
        let user = user_from_claims(&config("missing", &[]), &claims, None).unwrap();
        assert!(user.idp_groups.is_empty());
        assert_eq!(user.name, "a@example.com");
    }

    #[test]
    fn emails_must_be_verified_and_in_an_allowed_domain() {
        let claims = json!({"sub": "s", "email": "a@Example.com"});
        assert!(user_from_claims(&config("g", &["example.com"]), &claims, None).is_ok());
        assert!(matches!(
            user_from_claims(&config("g", &["other.com"]), &claims, None),
            Err(OidcError::DomainNotAllowed)
        ));
        let unverified = json!({"sub": "s", "email": "a@example.com", "email_verified": false});
        assert!(user_from_claims(&config("g", &[]), &unverified, None).is_err());
        let no_sub = json!({"email": "a@example.com"});
        assert!(user_from_claims(&config("g", &[]), &no_sub, None).is_err());
    }
}

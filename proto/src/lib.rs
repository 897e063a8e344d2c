//! tollgate-proto: the wire contract between Tollgate's planes and its admin clients.
//!
//! Generated from `proto/tollgate/v1/*.proto`. Proto types stay at the edges: the data
//! plane's request path works with `tollgate-policy` types, never these.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Version 1 of the Tollgate protocol.
pub mod v1 {
    tonic::include_proto!("tollgate.v1");

    /// Shows where a credential comes from, never an inline value.
    impl std::fmt::Debug for SecretRef {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.source {
                Some(source) => write!(f, "SecretRef({source:?})"),
                None => f.write_str("SecretRef(none)"),
            }
        }
    }

    impl std::fmt::Debug for secret_ref::Source {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                secret_ref::Source::Value(v) if v.is_empty() => f.write_str("empty"),
                secret_ref::Source::Value(_) => f.write_str("[REDACTED]"),
                secret_ref::Source::Env(name) => write!(f, "env:{name}"),
                secret_ref::Source::File(path) => write!(f, "file:{path}"),
                secret_ref::Source::Stored(_) => f.write_str("stored"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn debug_output_of_a_snapshot_never_shows_an_inline_credential() {
        let provider = v1::Provider {
            config: Some(v1::ProviderConfig {
                api_key: Some(v1::SecretRef {
                    source: Some(v1::secret_ref::Source::Value("sk-canary".into())),
                }),
                aws_secret_access_key: Some(v1::SecretRef {
                    source: Some(v1::secret_ref::Source::Env("AWS_SECRET_ACCESS_KEY".into())),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let snapshot = v1::Snapshot {
            providers: vec![provider],
            ..Default::default()
        };
        let shown = format!("{snapshot:?}");
        assert!(!shown.contains("sk-canary"), "{shown}");
        assert!(shown.contains("env:AWS_SECRET_ACCESS_KEY"));
    }
}

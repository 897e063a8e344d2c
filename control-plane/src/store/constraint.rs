//! Constraint violations, classified by constraint name. Names are those of
//! `migrations/0001_foundation.sql`: explicit ones, or Postgres' defaults
//! (`<table>_<column>_check`, `<table>_<column>_fkey`, `<table>_pkey`).

use super::StoreError;

/// How to report a violation of `constraint`; `None` for constraints not listed here.
pub(super) fn violation(constraint: &str) -> Option<StoreError> {
    use StoreError::{
        AlreadyExists as Exists, FailedPrecondition as Conflict, InvalidArgument as Invalid,
    };
    let (kind, message): (fn(String) -> StoreError, &str) = match constraint {
        "groups_name_key" => (Exists, "a group with this name already exists"),
        "groups_name_not_empty" => (Invalid, "group name must not be empty"),
        "principals_email_key" => (Exists, "a principal with this email already exists"),
        "principals_service_account_name_key" => (
            Exists,
            "a principal of this kind with this name already exists",
        ),
        "principals_name_check" => (Invalid, "principal name must not be empty"),
        "principals_kind_check" => (Invalid, "unknown principal kind"),
        "providers_name_key" => (Exists, "a provider with this name already exists"),
        "providers_name_check" => (Invalid, "provider name must not be empty"),
        "providers_kind_check" => (Invalid, "unknown provider kind"),
        "models_id_check" => (Invalid, "model id must not be empty or `*`"),
        "models_max_input_tokens_check" => (Invalid, "max_input_tokens is out of range"),
        "route_targets_provider_id_fkey" => (
            Conflict,
            "the provider is used by a route; change or delete that route first",
        ),
        "route_targets_model_id_fkey" => (Invalid, "the model is not in the catalogue"),
        "route_targets_weight_check" => (Invalid, "route weight must be at least 1"),
        "group_models_model_id_check" => (Invalid, "allowed model ids must not be empty"),
        "group_models_group_id_fkey" => (Conflict, "the group no longer exists"),
        "group_members_group_id_fkey" => (Conflict, "a group no longer exists"),
        "group_members_principal_id_fkey" => (Conflict, "the principal no longer exists"),
        "api_keys_principal_id_fkey" => (Conflict, "the principal no longer exists"),
        "route_targets_priority_check" => (Invalid, "route priority must not be negative"),
        "model_aliases_alias_check" => (Invalid, "an alias must not be empty or `*`"),
        "model_aliases_model_id_fkey" => (Invalid, "the alias's model is not in the catalogue"),
        "target_health_state_check" => (Invalid, "unknown breaker state"),
        "api_keys_secret_sha256_key" => (Exists, "an API key with this secret already exists"),
        _ => return None,
    };
    Some(kind(message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violations_are_already_exists_and_unknown_names_are_unclassified() {
        assert!(matches!(
            violation("groups_name_key"),
            Some(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            violation("route_targets_provider_id_fkey"),
            Some(StoreError::FailedPrecondition(_))
        ));
        assert!(violation("something_else").is_none());
    }
}

//! Which models a caller may use.

use std::collections::BTreeSet;

/// The set of client-facing model ids a caller may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelAccess {
    /// Every model in the catalogue (a group allowed `*`).
    All,
    /// Exactly these ids (possibly none).
    Only(BTreeSet<String>),
}

impl ModelAccess {
    pub fn none() -> Self {
        ModelAccess::Only(BTreeSet::new())
    }

    pub fn allows(&self, model: &str) -> bool {
        match self {
            ModelAccess::All => true,
            ModelAccess::Only(set) => set.contains(model),
        }
    }

    /// The union of two grants.
    pub fn union(self, other: &ModelAccess) -> ModelAccess {
        match (self, other) {
            (ModelAccess::All, _) | (_, ModelAccess::All) => ModelAccess::All,
            (ModelAccess::Only(mut a), ModelAccess::Only(b)) => {
                a.extend(b.iter().cloned());
                ModelAccess::Only(a)
            }
        }
    }
}

/// Why a model request is refused. Messages name the model: clients show them to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("model `{0}` is not available through this gateway")]
    UnknownModel(String),
    #[error("model `{0}` is not allowed for your groups; ask your administrator for access")]
    Denied(String),
    #[error("model `{0}` has no provider route configured")]
    NoRoute(String),
    #[error("model `{0}` is not in the availableModels of your managed settings")]
    NotInAvailableModels(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_with_all_is_all() {
        let only = ModelAccess::Only(["a".to_owned()].into());
        assert_eq!(only.clone().union(&ModelAccess::All), ModelAccess::All);
        assert_eq!(ModelAccess::All.union(&only), ModelAccess::All);
    }

    #[test]
    fn union_of_lists_contains_both() {
        let a = ModelAccess::Only(["a".to_owned()].into());
        let b = ModelAccess::Only(["b".to_owned()].into());
        let u = a.union(&b);
        assert!(u.allows("a") && u.allows("b") && !u.allows("c"));
    }

    #[test]
    fn none_allows_nothing() {
        assert!(!ModelAccess::none().allows("claude-sonnet-5"));
    }
}

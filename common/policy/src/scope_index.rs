//! Rules (budgets, rate limits) indexed by the caller scope they apply to.

use std::collections::HashMap;
use std::sync::Arc;

use crate::caller::Caller;

/// The caller scopes a rule can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallerScope {
    Org,
    Group,
    User,
    Key,
}

/// Rules by scope: organisation-wide, then by group, principal and key id.
#[derive(Debug)]
pub(crate) struct ScopeIndex<T> {
    org: Vec<Arc<T>>,
    by_group: HashMap<String, Vec<Arc<T>>>,
    by_principal: HashMap<String, Vec<Arc<T>>>,
    by_key: HashMap<String, Vec<Arc<T>>>,
}

impl<T> Default for ScopeIndex<T> {
    fn default() -> Self {
        ScopeIndex {
            org: Vec::new(),
            by_group: HashMap::new(),
            by_principal: HashMap::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<T> Clone for ScopeIndex<T> {
    fn clone(&self) -> Self {
        ScopeIndex {
            org: self.org.clone(),
            by_group: self.by_group.clone(),
            by_principal: self.by_principal.clone(),
            by_key: self.by_key.clone(),
        }
    }
}

impl<T> ScopeIndex<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.org.is_empty()
            && self.by_group.is_empty()
            && self.by_principal.is_empty()
            && self.by_key.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.org.len()
            + self.by_group.values().map(Vec::len).sum::<usize>()
            + self.by_principal.values().map(Vec::len).sum::<usize>()
            + self.by_key.values().map(Vec::len).sum::<usize>()
    }

    /// Adds `rule` under `scope` (`scope_id` is not used for `Org`).
    pub(crate) fn insert(&mut self, scope: CallerScope, scope_id: String, rule: Arc<T>) {
        let index = match scope {
            CallerScope::Org => {
                self.org.push(rule);
                return;
            }
            CallerScope::Group => &mut self.by_group,
            CallerScope::User => &mut self.by_principal,
            CallerScope::Key => &mut self.by_key,
        };
        index.entry(scope_id).or_default().push(rule);
    }

    /// The rules that apply to `caller`, in a stable order: org, groups in the caller's
    /// order, user, key; within a scope as inserted. A group the caller lists twice yields
    /// its rules twice.
    pub(crate) fn for_caller<'a>(&'a self, caller: &'a Caller) -> impl Iterator<Item = &'a Arc<T>> {
        let groups = caller
            .group_ids()
            .iter()
            .filter_map(|group_id| self.by_group.get(group_id))
            .flatten();
        let user = self.by_principal.get(caller.principal().id.as_str());
        let key = caller.key_id().and_then(|key_id| self.by_key.get(key_id));
        self.org
            .iter()
            .chain(groups)
            .chain(user.into_iter().flatten())
            .chain(key.into_iter().flatten())
    }

    /// Every rule: org, then by group, principal and key id.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<T>> {
        self.org
            .iter()
            .chain(self.by_group.values().flatten())
            .chain(self.by_principal.values().flatten())
            .chain(self.by_key.values().flatten())
    }
}

//! What `budget explain` and `limits explain` print alike: a summary line naming the principal,
//! their groups and the verdict, above the table of standings.

use crate::report::{Format, Report};

/// What an explanation found, for its summary line.
pub(super) struct Summary<'a> {
    pub principal_name: &'a str,
    pub principal_id: &'a str,
    pub group_names: &'a [String],
    /// How many caps or limits apply.
    pub applying: usize,
    /// Whether one of them blocks.
    pub blocked: bool,
    /// "cap" or "limit": `N {noun}(s) apply; none blocks`.
    pub noun: &'a str,
    /// What is said when nothing applies, e.g. "no cap applies".
    pub none_applies: &'a str,
}

impl Summary<'_> {
    /// `name (id, groups: a, b): verdict`, the verdict naming `blockers` when blocked.
    pub(super) fn line(&self, blockers: impl FnOnce() -> Vec<String>) -> String {
        let groups = if self.group_names.is_empty() {
            "no groups".to_owned()
        } else {
            format!("groups: {}", self.group_names.join(", "))
        };
        let verdict = if self.applying == 0 {
            self.none_applies.to_owned()
        } else if self.blocked {
            format!("BLOCKED by the {}", blockers().join(" and the "))
        } else {
            format!("{} {}(s) apply; none blocks", self.applying, self.noun)
        };
        format!(
            "{} ({}, {groups}): {verdict}",
            self.principal_name, self.principal_id
        )
    }
}

/// The table of standings in `format`; a table comes with the summary line above it.
pub(super) fn render(summary: impl FnOnce() -> String, r: &Report, format: Format) -> String {
    if format != Format::Table {
        return r.render(format);
    }
    format!("{}\n{}", summary(), r.render(Format::Table))
}

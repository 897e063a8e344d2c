//! Model ids as providers spell them, reduced to the catalogue's spelling.

/// Bedrock cross-region inference-profile prefixes (geographic ones price as regional).
const GEO_PREFIXES: &[&str] = &["us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca."];
const GLOBAL_PREFIX: &str = "global.";

/// Reduces a provider's model id to the catalogue's spelling: lowercase; the last path segment
/// of a Bedrock ARN; inference-profile prefixes (`us.`, `eu.`, `global.`, …) and the
/// `anthropic.` vendor prefix removed; Bedrock `-v1:0` / `-v1` suffixes removed; Vertex
/// `@20250929` → `-20250929`; a Claude Code context suffix such as `[1m]` removed.
pub fn normalise(model: &str) -> String {
    let mut id = model.trim().to_ascii_lowercase();
    if let Some((_, last)) = id.rsplit_once('/') {
        id = last.to_owned();
    }
    if let Some(start) = id.find('[') {
        id.truncate(start);
    }
    let mut rest = id.as_str();
    if let Some(stripped) = strip_profile_prefix(rest) {
        rest = stripped;
    }
    if let Some(stripped) = rest.strip_prefix("anthropic.") {
        rest = stripped;
    }
    let mut id = rest.replace('@', "-");
    if let Some(cut) = bedrock_version_suffix(&id) {
        id.truncate(cut);
    }
    id
}

/// Whether a Bedrock model id calls the global inference profile (`global.…`); a geographic
/// profile (`us.…`) or a bare in-region id is a regional endpoint.
pub fn bedrock_is_global(model: &str) -> bool {
    let id = model.trim().to_ascii_lowercase();
    let id = id.rsplit_once('/').map_or(id.as_str(), |(_, last)| last);
    id.starts_with(GLOBAL_PREFIX)
}

fn strip_profile_prefix(id: &str) -> Option<&str> {
    std::iter::once(GLOBAL_PREFIX)
        .chain(GEO_PREFIXES.iter().copied())
        .find_map(|p| id.strip_prefix(p))
}

/// Where a `-v<digits>[:<digits>]` suffix starts.
fn bedrock_version_suffix(id: &str) -> Option<usize> {
    let start = id.rfind("-v")?;
    let tail = &id[start + 2..];
    let (major, minor) = match tail.split_once(':') {
        Some((major, minor)) => (major, Some(minor)),
        None => (tail, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(major) && minor.is_none_or(numeric)).then_some(start)
}

/// `prefix` is `model` itself or a prefix of it followed by `-`.
pub fn is_prefix_at_boundary(prefix: &str, model: &str) -> bool {
    model
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

//! Shared wording rules for provider errors (protocol summary §C).
//!
//! Provider messages reach clients only when they cannot name the organisation's account:
//! no ARNs, account or project ids, resource paths or URLs. Size errors keep (or get) the
//! wording Claude Code's recovery looks for: "prompt is too long" for context overflow and
//! the `request_too_large` type for oversized bodies.

/// The longest provider message relayed to a client.
const MAX_MESSAGE: usize = 500;

/// `message` if it is safe to show a client, else `None`.
pub(crate) fn safe_message(message: &str) -> Option<&str> {
    let m = message.trim();
    if m.is_empty() || m.len() > MAX_MESSAGE {
        return None;
    }
    let lower = m.to_ascii_lowercase();
    let leaky = [
        "arn:",
        "projects/",
        "organization",
        "account",
        "http://",
        "https://",
        "@",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if leaky || has_long_digit_run(m) {
        return None;
    }
    Some(m)
}

/// Account ids (AWS: 12 digits), project numbers and the like.
fn has_long_digit_run(s: &str) -> bool {
    let mut run = 0;
    for b in s.bytes() {
        if b.is_ascii_digit() {
            run += 1;
            if run >= 10 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Whether a provider's validation message says the prompt does not fit the context window.
pub(crate) fn is_prompt_too_long(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("prompt is too long")
        || lower.contains("input is too long")
        || lower.contains("too many input tokens")
        || (lower.contains("context") && lower.contains("exceed"))
}

/// The message for a context-overflow error, in the wording Claude Code recovers from.
pub(crate) fn prompt_too_long_message(provider_message: &str) -> String {
    match safe_message(provider_message) {
        // Already Anthropic's wording: "prompt is too long: …", or the `max_tokens` overflow
        // ("input length and `max_tokens` exceed context limit: …"), which Claude Code
        // answers by lowering `max_tokens` rather than compacting — keep it as it is.
        Some(m)
            if m.to_ascii_lowercase().contains("prompt is too long")
                || m.contains("max_tokens") =>
        {
            m.to_owned()
        }
        Some(m) => format!("prompt is too long: {m}"),
        None => "prompt is too long".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_naming_accounts_are_not_relayed() {
        assert_eq!(
            safe_message("request 123456789012 failed"),
            None,
            "digit runs are ids"
        );
        assert_eq!(
            safe_message("max_tokens: must be at most 64000"),
            Some("max_tokens: must be at most 64000")
        );
        for leaky in [
            "User: arn:aws:sts::123456789012:assumed-role/x is not authorized",
            "Project 'projects/my-proj' is not allowed to use Publisher Model",
            "Quota exceeded for account 4455",
            "see https://console.aws.amazon.com",
        ] {
            assert_eq!(safe_message(leaky), None, "{leaky}");
        }
    }

    #[test]
    fn size_errors_get_claude_codes_wording() {
        assert!(is_prompt_too_long("Input is too long for requested model."));
        assert_eq!(
            prompt_too_long_message("Input is too long for requested model."),
            "prompt is too long: Input is too long for requested model."
        );
        assert_eq!(
            prompt_too_long_message("prompt is too long: 210000 tokens > 200000 maximum"),
            "prompt is too long: 210000 tokens > 200000 maximum"
        );
        let overflow =
            "input length and `max_tokens` exceed context limit: 190000 + 32000 > 200000";
        assert_eq!(prompt_too_long_message(overflow), overflow);
    }
}

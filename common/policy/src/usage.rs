//! Token usage as providers report it.

/// Every token class a provider bills for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache writes with the 5-minute TTL.
    pub cache_creation_5m_tokens: u64,
    /// Cache writes with the 1-hour TTL.
    pub cache_creation_1h_tokens: u64,
    pub cache_read_tokens: u64,
}

impl Usage {
    /// All token classes summed (for display, not for pricing).
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_creation_5m_tokens)
            .saturating_add(self.cache_creation_1h_tokens)
            .saturating_add(self.cache_read_tokens)
    }
}

//! Microsoft Foundry. (Being written: see the providers work.)

use tollgate_policy::FoundryProvider;

use super::{Outbound, PrepareError, Prepared, Secrets};

/// Builds a request to `{base}/v1/messages` (or count_tokens) with the deployment name as
/// `model` and `api-key`/`x-api-key` or an Entra bearer.
pub(crate) fn prepare(
    _provider: &FoundryProvider,
    _out: &Outbound<'_>,
    _secrets: &Secrets,
) -> Result<Prepared, PrepareError> {
    Err(PrepareError::Config("foundry is not built yet".into()))
}

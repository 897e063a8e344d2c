//! The `Admin` gRPC service: providers, models and routes, groups, principals, API keys and
//! usage queries. Every call needs `authorization: Bearer tga_…`, checked against the stored
//! hashes of unrevoked admin keys on each call (so a revocation takes effect at once).
//!
//! Errors: `not_found` when the object a call acts on does not exist; `invalid_argument` for bad
//! input, including references to objects that do not exist (a route's model or provider, a
//! principal's groups); `already_exists` for name clashes; `failed_precondition` when other
//! objects still depend on the one being deleted; `aborted` when a concurrent change won
//! (retry); `internal` (generic, logged) for database failures.
//!
//! Choices worth knowing: a group may allow model ids that are not (yet) in the catalogue (the
//! snapshot only ever grants catalogue models); `SetRoute` with no targets removes the route;
//! a route target's weight 0 means 1 and an unset priority is its position; revoking a revoked
//! key is a no-op returning the key. Provider credentials given inline are stored sealed and
//! never returned (`SecretRef.stored`); an alias never equals a model id.

mod api_key;
mod catalogue;
mod directory;
pub mod identity;
pub mod settings;
pub mod spend;
mod usage;

use sqlx::PgPool;
use tollgate_proto::v1 as pb;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::credential::{ADMIN_KEY_PREFIX, bearer};
use crate::identity::Identity;
use crate::store;

/// The `Admin` service of one organisation.
#[derive(Clone)]
pub struct AdminService {
    pool: PgPool,
    org_id: Uuid,
    /// Holds the secrets key that seals provider credentials.
    identity: Identity,
}

impl AdminService {
    pub fn new(pool: PgPool, org_id: Uuid, identity: Identity) -> Self {
        AdminService {
            pool,
            org_id,
            identity,
        }
    }

    fn secrets(&self) -> &crate::identity::SecretsKey {
        self.identity.secrets()
    }

    /// The connection pool, for services sharing this one's key check (e.g. `SpendAdmin`).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks the call's admin key; the audit actor of the call, `admin:<key name>`. Handlers
    /// run inside [`store::audit::with_actor`] with it (see `handle!`), so every audited
    /// change they make is attributed to the key.
    pub(crate) async fn authenticate(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let token = bearer(metadata)
            .filter(|t| t.starts_with(ADMIN_KEY_PREFIX))
            .ok_or_else(|| {
                Status::unauthenticated("missing admin key: send `authorization: Bearer tga_…`")
            })?;
        let hash = tollgate_policy::secret_sha256(token);
        match store::admin_key::active_name(&self.pool, &hash).await? {
            Some(name) => Ok(admin_actor(&name)),
            None => Err(Status::unauthenticated("invalid or revoked admin key")),
        }
    }
}

/// The audit actor of an admin key.
fn admin_actor(key_name: &str) -> String {
    format!("admin:{key_name}")
}

/// A required, non-blank string argument.
fn required<'a>(what: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{what} must not be empty"
        )));
    }
    Ok(value)
}

/// An optional string argument: empty means absent.
fn optional(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// Authenticates, then runs the handler with the request message, as the key's audit actor
/// (every transaction the handler opens with `store::audit::begin` is attributed to it).
/// `handle!(service, request, handler)` checks the key with `service.authenticate` (an
/// [`AdminService`]); `handle!(admin => service, request, handler)` checks it with `admin`
/// and passes `service` to the handler.
macro_rules! handle {
    ($self:ident, $request:ident, $handler:path) => {
        $crate::admin::handle!($self => $self, $request, $handler)
    };
    ($admin:expr => $self:expr, $request:ident, $handler:path) => {{
        let actor = $admin.authenticate($request.metadata()).await?;
        $crate::store::audit::with_actor(actor, $handler($self, $request.into_inner()))
            .await
            .map(::tonic::Response::new)
    }};
}
pub(crate) use handle;

type Reply<T> = Result<Response<T>, Status>;

// After `handle!`, which they use.
pub mod audit;
pub mod rate_limit;

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn create_provider(
        &self,
        request: Request<pb::CreateProviderRequest>,
    ) -> Reply<pb::ProviderInfo> {
        handle!(self, request, catalogue::create_provider)
    }
    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Reply<pb::ListProvidersResponse> {
        handle!(self, request, catalogue::list_providers)
    }
    async fn delete_provider(
        &self,
        request: Request<pb::DeleteProviderRequest>,
    ) -> Reply<pb::DeleteResponse> {
        handle!(self, request, catalogue::delete_provider)
    }
    async fn update_provider(
        &self,
        request: Request<pb::UpdateProviderRequest>,
    ) -> Reply<pb::ProviderInfo> {
        handle!(self, request, catalogue::update_provider)
    }
    async fn provider_status(
        &self,
        request: Request<pb::ProviderStatusRequest>,
    ) -> Reply<pb::ProviderStatusResponse> {
        handle!(self, request, catalogue::provider_status)
    }
    async fn upsert_model(&self, request: Request<pb::UpsertModelRequest>) -> Reply<pb::ModelInfo> {
        handle!(self, request, catalogue::upsert_model)
    }
    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Reply<pb::ListModelsResponse> {
        handle!(self, request, catalogue::list_models)
    }
    async fn delete_model(
        &self,
        request: Request<pb::DeleteModelRequest>,
    ) -> Reply<pb::DeleteResponse> {
        handle!(self, request, catalogue::delete_model)
    }
    async fn set_route(&self, request: Request<pb::SetRouteRequest>) -> Reply<pb::RouteInfo> {
        handle!(self, request, catalogue::set_route)
    }
    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Reply<pb::ListRoutesResponse> {
        handle!(self, request, catalogue::list_routes)
    }
    async fn set_alias(&self, request: Request<pb::SetAliasRequest>) -> Reply<pb::AliasInfo> {
        handle!(self, request, catalogue::set_alias)
    }
    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Reply<pb::ListAliasesResponse> {
        handle!(self, request, catalogue::list_aliases)
    }
    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Reply<pb::DeleteResponse> {
        handle!(self, request, catalogue::delete_alias)
    }
    async fn create_group(&self, request: Request<pb::CreateGroupRequest>) -> Reply<pb::GroupInfo> {
        handle!(self, request, directory::create_group)
    }
    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Reply<pb::ListGroupsResponse> {
        handle!(self, request, directory::list_groups)
    }
    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Reply<pb::DeleteResponse> {
        handle!(self, request, directory::delete_group)
    }
    async fn set_group_models(
        &self,
        request: Request<pb::SetGroupModelsRequest>,
    ) -> Reply<pb::GroupInfo> {
        handle!(self, request, directory::set_group_models)
    }
    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Reply<pb::PrincipalInfo> {
        handle!(self, request, directory::create_principal)
    }
    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Reply<pb::ListPrincipalsResponse> {
        handle!(self, request, directory::list_principals)
    }
    async fn set_principal_groups(
        &self,
        request: Request<pb::SetPrincipalGroupsRequest>,
    ) -> Reply<pb::PrincipalInfo> {
        handle!(self, request, directory::set_principal_groups)
    }
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Reply<pb::CreateApiKeyResponse> {
        handle!(self, request, api_key::create_api_key)
    }
    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        handle!(self, request, api_key::list_api_keys)
    }
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Reply<pb::ApiKeyInfo> {
        handle!(self, request, api_key::revoke_api_key)
    }
    async fn query_usage(
        &self,
        request: Request<pb::QueryUsageRequest>,
    ) -> Reply<pb::QueryUsageResponse> {
        handle!(self, request, usage::query_usage)
    }
}

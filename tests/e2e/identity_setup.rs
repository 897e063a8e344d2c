//! Configures a stack's identity through the admin gRPC APIs (`IdentityAdmin`,
//! `SettingsAdmin`), as an administrator would.

use tollgate_e2e::Stack;
use tollgate_e2e::idp::TestIdp;
use tollgate_proto::v1 as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// IdP group value → Tollgate group name, and the org default groups.
pub struct IdentitySetup {
    pub mappings: Vec<(String, String)>,
    pub default_groups: Vec<String>,
}

type Auth =
    Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send + Sync>;

fn auth(stack: &Stack) -> Auth {
    let header: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", stack.admin_key).parse().unwrap();
    Box::new(move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", header.clone());
        Ok(req)
    })
}

async fn channel(stack: &Stack) -> Channel {
    Endpoint::from_shared(stack.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn identity_admin(
    stack: &Stack,
) -> pb::identity_admin_client::IdentityAdminClient<InterceptedService<Channel, Auth>> {
    pb::identity_admin_client::IdentityAdminClient::with_interceptor(
        channel(stack).await,
        auth(stack),
    )
}

pub async fn settings_admin(
    stack: &Stack,
) -> pb::settings_admin_client::SettingsAdminClient<InterceptedService<Channel, Auth>> {
    pb::settings_admin_client::SettingsAdminClient::with_interceptor(
        channel(stack).await,
        auth(stack),
    )
}

/// Points the gateway at `idp` (groups from the `groups` claim) and sets the mappings.
pub async fn configure_identity(
    stack: &Stack,
    idp: &TestIdp,
    setup: &IdentitySetup,
) -> anyhow::Result<()> {
    let mut admin = identity_admin(stack).await;
    admin
        .set_idp_config(pb::SetIdpConfigRequest {
            issuer_url: idp.issuer.clone(),
            client_id: idp.client.client_id.clone(),
            client_secret: idp.client.client_secret.clone(),
            scopes: vec![
                "openid".into(),
                "email".into(),
                "profile".into(),
                "groups".into(),
            ],
            groups_claim: "groups".into(),
            email_claim: "email".into(),
            allowed_email_domains: vec!["example.com".into()],
            clock_skew_secs: 60,
        })
        .await?;
    for (idp_group, group) in &setup.mappings {
        admin
            .set_group_mapping(pb::SetGroupMappingRequest {
                idp_group: idp_group.clone(),
                groups: vec![group.clone()],
            })
            .await?;
    }
    admin
        .set_default_groups(pb::SetDefaultGroupsRequest {
            groups: setup.default_groups.clone(),
        })
        .await?;
    Ok(())
}

/// The id of a Tollgate group by name.
pub async fn group_id(stack: &Stack, name: &str) -> String {
    let groups = stack
        .admin()
        .await
        .unwrap()
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    groups
        .into_iter()
        .find(|g| g.name == name)
        .map(|g| g.id)
        .unwrap()
}

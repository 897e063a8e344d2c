//! Prices in the compiled snapshot: catalogue prices on route targets, admin overrides, the
//! fallback rule for unknown models and provider multipliers, all through `SpendAdmin`.

use sqlx::PgPool;
use tollgate_control_plane::pricing;
use tollgate_proto::v1 as pb;
use tollgate_proto::v1::spend_admin_client::SpendAdminClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::support::{AdminApi, TestControlPlane, TestDb, policy_version, seed_catalogue};

type Interceptor = Box<dyn FnMut(Request<()>) -> Result<Request<()>, Status> + Send + Sync>;
type SpendApi = SpendAdminClient<InterceptedService<Channel, Interceptor>>;

async fn spend_admin(cp: &TestControlPlane) -> SpendApi {
    let value: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", cp.admin_key).parse().unwrap();
    let interceptor: Interceptor = Box::new(move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    });
    SpendAdminClient::with_interceptor(cp.channel().await, interceptor)
}

/// Adds `model` to the catalogue, routed to the `demo` provider (which must exist).
async fn route_model(admin: &mut AdminApi, model: &str, upstream: &str) {
    admin
        .upsert_model(pb::UpsertModelRequest {
            id: model.to_owned(),
            display_name: model.to_owned(),
            max_input_tokens: 200_000,
        })
        .await
        .unwrap();
    admin
        .set_route(pb::SetRouteRequest {
            model: model.to_owned(),
            targets: vec![pb::RouteTargetSpec {
                provider: "demo".to_owned(),
                upstream_model: upstream.to_owned(),
                weight: 1,
                ..Default::default()
            }],
        })
        .await
        .unwrap();
}

/// The price on the (single) target of `model`'s route in a freshly compiled snapshot.
async fn compiled_price(pool: &PgPool, model: &str) -> (u64, Option<pb::TargetPrice>) {
    let snapshot = crate::support::compile(pool).await.unwrap();
    let route = snapshot.routes.iter().find(|r| r.model == model).unwrap();
    (snapshot.version, route.targets[0].price.clone())
}

fn catalogue_rates(model: &str) -> pb::PriceRates {
    let catalogue = pricing::shipped().unwrap();
    let entry = catalogue.models.iter().find(|m| m.id == model).unwrap();
    entry.base.into()
}

fn rates(input: u64, output: u64) -> pb::PriceRates {
    pb::PriceRates {
        input,
        output,
        cache_write_5m: input * 5 / 4,
        cache_write_1h: input * 2,
        cache_read: input / 10,
    }
}

#[tokio::test]
async fn compiled_snapshot_carries_catalogue_prices_on_route_targets() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    seed_catalogue(&mut admin).await;
    route_model(&mut admin, "claude-opus-4-8", "").await;
    route_model(&mut admin, "sonnet", "claude-sonnet-4-5-20250929").await;
    let pool = db.pool().await;

    let (_, opus) = compiled_price(&pool, "claude-opus-4-8").await;
    let opus = opus.unwrap();
    assert_eq!(opus.source, "catalogue:claude-opus-4-8");
    assert_eq!(opus.base, Some(catalogue_rates("claude-opus-4-8")));
    assert_eq!(opus.base.unwrap().input, 5_000_000);
    assert_eq!(opus.multiplier_bps, 10_000);
    assert_eq!(opus.long_context_threshold_tokens, 0);

    let (_, sonnet) = compiled_price(&pool, "sonnet").await;
    let sonnet = sonnet.unwrap();
    assert_eq!(sonnet.source, "catalogue:claude-sonnet-4-5");
    assert_eq!(sonnet.long_context_threshold_tokens, 200_000);
    assert_eq!(sonnet.long_context.unwrap().input, 6_000_000);
}

#[tokio::test]
async fn an_override_changes_the_snapshot_price_and_version_and_deleting_it_restores_the_catalogue()
{
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let mut spend = spend_admin(&cp).await;
    seed_catalogue(&mut admin).await;
    route_model(&mut admin, "claude-opus-4-8", "").await;
    let pool = db.pool().await;
    let (before_version, _) = compiled_price(&pool, "claude-opus-4-8").await;

    let info = spend
        .set_model_price(pb::SetModelPriceRequest {
            model: "claude-opus-4-8".to_owned(),
            base: Some(rates(4_000_000, 20_000_000)),
            long_context_threshold_tokens: 0,
            long_context: None,
            source: "negotiated rate, contract 2026-09".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.origin, "override");
    assert_eq!(info.source, "negotiated rate, contract 2026-09");
    assert_eq!(info.as_of.len(), 10);

    let (version, price) = compiled_price(&pool, "claude-opus-4-8").await;
    assert!(version > before_version);
    assert_eq!(version, u64::try_from(policy_version(&pool).await).unwrap());
    let price = price.unwrap();
    assert_eq!(price.source, "override:claude-opus-4-8");
    assert_eq!(price.base, Some(rates(4_000_000, 20_000_000)));

    let listed = spend
        .list_prices(pb::ListPricesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.catalogue_version,
        pricing::shipped().unwrap().version
    );
    let opus = listed
        .prices
        .iter()
        .find(|p| p.model == "claude-opus-4-8")
        .unwrap();
    assert_eq!(opus.origin, "override");
    let haiku = listed
        .prices
        .iter()
        .find(|p| p.model == "claude-haiku-4-5")
        .unwrap();
    assert_eq!(haiku.origin, "catalogue");
    assert!(haiku.source.starts_with("https://"));

    spend
        .delete_model_price(pb::DeleteModelPriceRequest {
            model: "claude-opus-4-8".to_owned(),
        })
        .await
        .unwrap();
    let (after_version, price) = compiled_price(&pool, "claude-opus-4-8").await;
    assert!(after_version > version);
    let price = price.unwrap();
    assert_eq!(price.source, "catalogue:claude-opus-4-8");
    assert_eq!(price.base, Some(catalogue_rates("claude-opus-4-8")));

    let again = spend
        .delete_model_price(pb::DeleteModelPriceRequest {
            model: "claude-opus-4-8".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

#[tokio::test]
async fn an_unknown_model_is_priced_by_the_fallback_rule() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let mut spend = spend_admin(&cp).await;
    // `claude-test` is in no catalogue.
    seed_catalogue(&mut admin).await;
    let pool = db.pool().await;

    let default_rule = spend
        .get_price_fallback(pb::GetPriceFallbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        default_rule.rule,
        pb::PriceFallbackRule::MostExpensive as i32
    );
    let (_, price) = compiled_price(&pool, "claude-test").await;
    let price = price.unwrap();
    assert_eq!(price.source, "fallback:most_expensive");
    let top = pricing::shipped()
        .unwrap()
        .models
        .iter()
        .map(|m| m.base.max_rate())
        .max()
        .unwrap();
    let base = price.base.unwrap();
    assert_eq!(base.output.max(base.cache_write_1h).max(base.input), top);
    assert_eq!(default_rule.rates, Some(base));

    let fixed = spend
        .set_price_fallback(pb::SetPriceFallbackRequest {
            rule: pb::PriceFallbackRule::Fixed as i32,
            rates: Some(rates(9_000_000, 45_000_000)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fixed.rates, Some(rates(9_000_000, 45_000_000)));
    let (_, price) = compiled_price(&pool, "claude-test").await;
    let price = price.unwrap();
    assert_eq!(price.source, "fallback:fixed");
    assert_eq!(price.base, Some(rates(9_000_000, 45_000_000)));

    spend
        .set_price_fallback(pb::SetPriceFallbackRequest {
            rule: pb::PriceFallbackRule::Refuse as i32,
            rates: None,
        })
        .await
        .unwrap();
    let (_, price) = compiled_price(&pool, "claude-test").await;
    assert_eq!(price, None);
    let got = spend
        .get_price_fallback(pb::GetPriceFallbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.rule, pb::PriceFallbackRule::Refuse as i32);
}

#[tokio::test]
async fn a_provider_multiplier_override_is_applied_to_its_targets() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut admin = cp.admin().await;
    let mut spend = spend_admin(&cp).await;
    seed_catalogue(&mut admin).await;
    route_model(&mut admin, "claude-sonnet-5-5", "").await;
    let pool = db.pool().await;
    let before = policy_version(&pool).await;

    let info = spend
        .set_provider_multiplier(pb::SetProviderMultiplierRequest {
            provider: "demo".to_owned(),
            multiplier_bps: 11_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.provider_name, "demo");
    assert_eq!(info.multiplier_bps, 11_000);
    assert_eq!(info.origin, "override");
    assert!(policy_version(&pool).await > before);
    let (_, price) = compiled_price(&pool, "claude-sonnet-5-5").await;
    assert_eq!(price.unwrap().multiplier_bps, 11_000);

    let reset = spend
        .set_provider_multiplier(pb::SetProviderMultiplierRequest {
            provider: "demo".to_owned(),
            multiplier_bps: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reset.multiplier_bps, 10_000);
    assert_eq!(reset.origin, "default");
    let (_, price) = compiled_price(&pool, "claude-sonnet-5-5").await;
    assert_eq!(price.unwrap().multiplier_bps, 10_000);

    let missing = spend
        .set_provider_multiplier(pb::SetProviderMultiplierRequest {
            provider: "nope".to_owned(),
            multiplier_bps: 11_000,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_price_requests_are_rejected() {
    let db = TestDb::create().await;
    let cp = TestControlPlane::start(&db).await;
    let mut spend = spend_admin(&cp).await;
    let bad_prices = [
        pb::SetModelPriceRequest {
            model: String::new(),
            base: Some(rates(1, 2)),
            ..Default::default()
        },
        pb::SetModelPriceRequest {
            model: "claude-x".to_owned(),
            base: None,
            ..Default::default()
        },
        pb::SetModelPriceRequest {
            model: "claude-x".to_owned(),
            base: Some(rates(1_000_000, 2_000_000)),
            long_context_threshold_tokens: 100_000,
            long_context: None,
            source: String::new(),
        },
        pb::SetModelPriceRequest {
            model: "claude x".to_owned(),
            base: Some(rates(1_000_000, 2_000_000)),
            ..Default::default()
        },
        pb::SetModelPriceRequest {
            model: "claude-x".to_owned(),
            base: Some(pb::PriceRates {
                output: u64::MAX,
                ..rates(1_000_000, 2_000_000)
            }),
            ..Default::default()
        },
    ];
    for request in bad_prices {
        let err = spend.set_model_price(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    for request in [
        pb::SetPriceFallbackRequest {
            rule: pb::PriceFallbackRule::Unspecified as i32,
            rates: None,
        },
        pb::SetPriceFallbackRequest {
            rule: pb::PriceFallbackRule::Fixed as i32,
            rates: None,
        },
    ] {
        let err = spend.set_price_fallback(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = spend
        .set_provider_multiplier(pb::SetProviderMultiplierRequest {
            provider: "demo".to_owned(),
            multiplier_bps: 1_000_000,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

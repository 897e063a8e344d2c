use std::collections::HashMap;

use rand::SeedableRng;
use tollgate_policy::{Provider, ProviderKind, Route, RouteTarget, Timeouts};

use super::*;

fn target(name: &str, priority: u32, weight: u32) -> RouteTarget {
    RouteTarget {
        provider: Arc::new(Provider {
            id: name.into(),
            name: name.into(),
            kind: ProviderKind::Demo,
            timeouts: Timeouts::default(),
        }),
        upstream_model: name.into(),
        weight,
        priority,
        timeouts: Timeouts::default(),
        price: None,
    }
}

#[test]
fn priorities_come_first_and_weights_share_a_tier() {
    let route = Route {
        model: "m".into(),
        targets: vec![target("a", 0, 3), target("b", 0, 1), target("c", 1, 1)],
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut first: HashMap<usize, u32> = HashMap::new();
    for _ in 0..4000 {
        let order = attempt_order(&route, &mut rng);
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], 2, "the lower tier always comes last");
        *first.entry(order[0]).or_default() += 1;
    }
    let a = f64::from(first[&0]) / 4000.0;
    assert!((0.70..0.80).contains(&a), "weight 3 of 4 leads ~75%: {a}");
}

#[test]
fn a_single_target_route_is_tried_once() {
    let route = Route {
        model: "m".into(),
        targets: vec![target("a", 0, 1)],
    };
    assert_eq!(attempt_order(&route, &mut rand::rng()), [0]);
}

//! What `deltadesk mapping init` reads: each connector's vocabulary from its simulator (groups,
//! organizations across pages, agents, custom fields with drop-down options), and the proposal between the
//! two simulators, which are seeded to line up.

use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::vocabulary::{propose, FieldKind};
use deltadesk_sim::freshdesk::{FreshdeskSim, FreshdeskSimConfig};
use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};

fn config(kind: &str, url: &str) -> ConnectorConfig {
    serde_json::from_value(serde_json::json!({"kind": kind, "base_url": url})).expect("connector config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_connectors_read_their_vocabulary_and_the_simulators_line_up() {
    let local = "127.0.0.1:0".parse().unwrap();
    // More organizations than one page (100) holds, so the listing must follow the cursor.
    let zd = ZendeskSim::start(ZendeskSimConfig { tickets: 3, organizations: 130, ..Default::default() }, local).await.unwrap();
    let fd = FreshdeskSim::start(FreshdeskSimConfig { tickets: 3, companies: 120, ..Default::default() }, local).await.unwrap();

    let z = build_source(&config("zendesk", &zd.base_url())).unwrap().vocabulary().await.expect("zendesk vocabulary");
    assert_eq!(z.organizations.len(), 130, "every organization, across pages");
    assert_eq!(z.agents.len(), 5, "the seeded agents and no end users: {:?}", z.agents);
    assert!(z.agents.iter().all(|a| a.ends_with("@support.example.com")));
    assert!(z.groups.contains(&"Billing".to_string()), "{:?}", z.groups);
    let product = z.custom_fields.iter().find(|f| f.title == "Product").expect("the Product field");
    assert_eq!(product.kind, FieldKind::DropDown);
    assert!(product.options.iter().any(|o| o.value == "product_basic" && o.label == "Basic"), "{:?}", product.options);
    assert_eq!(z.statuses.len(), 6);

    let f = build_target(&config("freshdesk", &fd.base_url())).unwrap().vocabulary().await.expect("freshdesk vocabulary");
    assert_eq!(f.organizations.len(), 120, "every company, across pages");
    assert_eq!(f.agents.len(), 5);
    assert!(!f.statuses.contains(&"hold".to_string()), "Freshdesk has no On-hold status");
    assert!(!f.custom_fields.iter().any(|c| c.title.starts_with("deltadesk")), "the connector's own fields are not the user's: {:?}", f.custom_fields);
    assert_eq!(f.ticket_types.len(), 4, "the canonical types among the Type choices: {:?}", f.ticket_types);

    // The simulators are seeded with the same names, so nothing is left to decide either way.
    let zf = propose(&z, &f);
    assert!(zf.decisions.is_empty(), "{:#?}", zf.decisions);
    assert_eq!(zf.mapping.custom_fields.map.get("Product").map(String::as_str), Some("Product"));
    let fz = propose(&build_source(&config("freshdesk", &fd.base_url())).unwrap().vocabulary().await.unwrap(), &z);
    assert!(fz.decisions.is_empty(), "{:#?}", fz.decisions);
}

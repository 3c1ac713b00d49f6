//! Every setting the broker accepts is documented, and the example config parses.

use kora_broker::config::BROKER_KEYS;
use kora_broker::BrokerConfig;
use kora_common::TOPIC_CONFIGS;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn every_key_is_in_configuration_md() {
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs/configuration.md");
    for (key, _) in BROKER_KEYS {
        assert!(doc.contains(&format!("`{key}`")), "docs/configuration.md lacks broker key {key}");
    }
    for d in TOPIC_CONFIGS {
        assert!(doc.contains(&format!("`{}`", d.name)), "docs lack topic config {}", d.name);
        assert!(doc.contains(&format!("`{}`", d.broker_synonym)), "docs lack {}", d.broker_synonym);
    }
}

#[test]
fn example_config_parses() {
    let c = BrokerConfig::from_file(&root().join("examples/kora.toml")).expect("examples/kora.toml");
    assert_eq!(c.topic_defaults.get("retention.ms").map(String::as_str), Some("259200000"));
    assert!(!c.auto_create_topics_enable);
}

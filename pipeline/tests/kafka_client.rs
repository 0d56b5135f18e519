//! The Kafka client this build links: every codec and security mechanism that production
//! clusters use is compiled in, and the example configs in `deploy/config/` give settings
//! librdkafka accepts (not only ones `weir check-config` accepts).

use std::path::Path;

use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use weir_pipeline::config::{Config, interpolate_env};
use weir_pipeline::source::kafka::client_config;

/// librdkafka refuses to create a client whose `builtin.features` asks for something the
/// library was built without.
const REQUIRED_FEATURES: &str =
    "gzip,snappy,lz4,zstd,ssl,sasl_plain,sasl_scram,sasl_oauthbearer,http,oidc";

#[test]
fn librdkafka_has_every_codec_and_security_mechanism() {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("group.id", "features")
        .set("builtin.features", REQUIRED_FEATURES)
        .create();
    if let Err(e) = consumer {
        panic!("librdkafka lacks one of {REQUIRED_FEATURES}: {e}");
    }
}

/// Each security mechanism a managed cluster may ask for is accepted by the client: the
/// settings are checked when the client is created, before any connection.
#[test]
fn every_security_mechanism_builds_a_consumer() {
    let cases: &[&[(&str, &str)]] = &[
        &[("security.protocol", "SSL")],
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", "weir"),
            ("sasl.password", "secret"),
        ],
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "weir"),
            ("sasl.password", "secret"),
        ],
        &[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            ("sasl.oauthbearer.client.id", "weir"),
            ("sasl.oauthbearer.client.secret", "secret"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://127.0.0.1:1/oauth2/token",
            ),
        ],
    ];
    for properties in cases {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "mechanisms");
        for (k, v) in *properties {
            config.set(*k, *v);
        }
        let consumer: Result<BaseConsumer, _> = config.create();
        if let Err(e) = consumer {
            panic!("{properties:?}: {e}");
        }
    }
}

/// What a config refers to as `${NAME}`, replaced by a value of the right shape.
fn placeholder(name: &str) -> Option<String> {
    Some(match name {
        // Nothing listens there; creating a consumer does not need the broker.
        "WEIR_KAFKA_BROKERS" => "127.0.0.1:1".to_owned(),
        "WEIR_METRICS_LISTEN" => "127.0.0.1:0".to_owned(),
        _ => format!("placeholder-{}", name.to_lowercase()),
    })
}

#[test]
fn example_configs_build_a_kafka_consumer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut built = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/config exists") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let raw = std::fs::read_to_string(&path).unwrap();
        let text = interpolate_env(&raw, &placeholder).unwrap();
        let config: Config =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let protocol = config
            .kafka
            .properties
            .get("security.protocol")
            .cloned()
            .unwrap_or_else(|| "PLAINTEXT".to_owned());
        let consumer: Result<BaseConsumer, _> = client_config(&config.kafka, 16384).create();
        if let Err(e) = consumer {
            panic!(
                "{}: the kafka consumer cannot be built ({protocol}): {e}",
                path.display()
            );
        }
        built.push(protocol);
    }
    assert!(
        built.len() >= 4,
        "expected an example per built-in dataset, found {built:?}"
    );
    assert!(
        built.iter().any(|p| p == "SASL_SSL"),
        "one example (the one k8s/base deploys) uses SASL_SSL: {built:?}"
    );
}

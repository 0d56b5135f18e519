//! TLS with a private CA and SASL/SCRAM, the way managed Kafka clusters are reached.
//!
//! Neither librdkafka's mock cluster (no TLS, no SASL) nor tansu 0.6.0 (its `--cert` and
//! `--key` flags refuse to be given together, so its listener cannot serve TLS) speaks TLS.
//! So TLS comes from an OpenSSL listener (socat) on 127.0.0.1 that holds a certificate
//! signed by a CA made for the test and forwards to the broker: tansu with SCRAM
//! authentication for the SASL tests (it advertises the TLS listener's address, so every
//! connection of the client goes through TLS), the mock cluster for the handshake test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use weir_schemas::synth::HttpRequests;

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, Proc, World, free_port, produce_http_with};
use crate::tansu::{create_topic, tansu_bin};

/// A CA, a server certificate it signed for 127.0.0.1, and an unrelated second CA.
struct Certs {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (installed by .ci/install)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=weir test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            "-out",
            "server.pem",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    }
}

/// An OpenSSL TLS listener on 127.0.0.1:`port` forwarding each connection to `upstream`.
fn tls_listener(world: &World, certs: &Certs, port: u16, upstream: &str) -> Proc {
    let log_path = world.path("socat.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
        certs.server_cert.display(),
        certs.server_key.display()
    );
    let child = Command::new("socat")
        .arg(listen)
        .arg(format!("TCP:{upstream}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("socat (installed by .ci/install)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "socat did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc {
        child,
        name: "socat".into(),
        log: Some(log_path),
    }
}

/// Metadata fetched through a client with `properties`: Ok(broker count) or the error.
fn fetch_metadata(bootstrap: &str, properties: &[(&str, &str)]) -> Result<usize, String> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-e2e-tls");
    for (k, v) in properties {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .map(|md| md.brokers().len())
        .map_err(|e| e.to_string())
}

#[test]
fn tls_handshake_verifies_the_broker_against_the_ca_file() {
    let world = World::new();
    let certs = make_certs(&world.path("certs"));
    let kafka = MockKafka::start(&[(TOPIC, 1)]);
    let port = free_port();
    let _tls = tls_listener(&world, &certs, port, &kafka.bootstrap);
    let bootstrap = format!("127.0.0.1:{port}");
    let ca = certs.ca.display().to_string();
    let other_ca = certs.other_ca.display().to_string();
    // The bootstrap connection is TLS: the metadata request and its answer go through it.
    let trusted = fetch_metadata(
        &bootstrap,
        &[("security.protocol", "SSL"), ("ssl.ca.location", &ca)],
    );
    assert_eq!(trusted, Ok(1), "TLS with the CA file");
    let untrusted = fetch_metadata(
        &bootstrap,
        &[("security.protocol", "SSL"), ("ssl.ca.location", &other_ca)],
    );
    assert!(
        untrusted.is_err(),
        "a certificate from another CA was accepted"
    );
}

/// Starts tansu with SCRAM authentication behind a TLS listener; returns (tansu, the TLS
/// listener, the bootstrap address of the TLS listener).
fn tansu_behind_tls(world: &World, certs: &Certs) -> (Proc, Proc, String) {
    let plain = free_port();
    let tls = free_port();
    let plain_url = format!("tcp://127.0.0.1:{plain}");
    let tls_url = format!("tcp://127.0.0.1:{tls}");
    // Users and topics live in tansu's storage (the world's S3 server), so they are made
    // by a first, open broker process and then served by one that requires SCRAM.
    let start = |auth: bool, log: &str| {
        let log_path = world.path(log);
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(tansu_bin());
        cmd.args(["broker", "--listener-url", &plain_url])
            .args(["--advertised-listener-url", &tls_url])
            .args(["--storage-engine", "s3://tansu/"]);
        if auth {
            cmd.arg("--authentication");
        }
        let child = cmd
            .env("AWS_ACCESS_KEY_ID", crate::harness::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::harness::SECRET_KEY)
            .env("AWS_ENDPOINT", world.s3.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_REGION", "us-east-1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        Proc {
            child,
            name: "tansu".into(),
            log: Some(log_path),
        }
    };
    std::fs::create_dir_all(world.s3.root.join("tansu")).unwrap();
    let open = start(false, "tansu-open.log");
    create_topic(plain, TOPIC, 2);
    let status = Command::new(tansu_bin())
        .args(["user", "create", "weir", "weir-scram-secret"])
        .args(["--broker", &plain_url, "--mechanism", "scram512"])
        .status()
        .unwrap();
    assert!(status.success(), "tansu user create");
    drop(open);
    let tansu = start(true, "tansu.log");
    let listener = tls_listener(world, certs, tls, &format!("127.0.0.1:{plain}"));
    (tansu, listener, format!("127.0.0.1:{tls}"))
}

#[test]
fn sasl_ssl_scram_lands_exactly_once_through_tansu() {
    let world = World::new();
    let certs = make_certs(&world.path("certs"));
    let (_tansu, _tls, bootstrap) = tansu_behind_tls(&world, &certs);
    let ca = certs.ca.display().to_string();
    let client = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "weir"),
        ("sasl.password", "weir-scram-secret"),
        ("ssl.ca.location", ca.as_str()),
    ];
    let wrong_password: Vec<(&str, &str)> = client
        .iter()
        .map(|&(k, v)| {
            if k == "sasl.password" {
                (k, "wrong")
            } else {
                (k, v)
            }
        })
        .collect();
    assert!(
        fetch_metadata(&bootstrap, &wrong_password).is_err(),
        "the broker accepted a wrong SCRAM password"
    );

    let mut generator = HttpRequests::new(45).compact(true);
    let ids = produce_http_with(&bootstrap, &client, TOPIC, 2, 150, &mut generator);
    let properties: String = client
        .iter()
        .map(|(k, v)| format!("\"{k}\" = '{v}'\n"))
        .collect();
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    // The client's keys go into the config's `[kafka.properties]` table.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[kafka.properties]\n",
        &format!("[kafka.properties]\n{properties}"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut weir = world.weir_run(&config, "weir.log", &[]);
    world.expect_rows(
        &config,
        "http_requests",
        ids.len(),
        Duration::from_secs(120),
        &mut [&mut weir],
    );
    weir.terminate();
    world.assert_exactly_once(&config, &ids);
}

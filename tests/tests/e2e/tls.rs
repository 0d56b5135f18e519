//! TLS with a private CA and SASL/SCRAM, the way managed Kafka clusters are reached.
//!
//! Neither librdkafka's mock cluster (no TLS, no SASL) nor tansu 0.6.0 (its `--cert` and
//! `--key` flags refuse to be given together, so its listener cannot serve TLS) speaks TLS.
//! So TLS comes from an OpenSSL listener (socat) on 127.0.0.1 that holds a certificate
//! signed by a CA made for the test and forwards to the broker: the mock cluster for the
//! handshake test, tansu with SCRAM authentication for the SASL test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::backbone::{TOPIC, dataset_toml};
use crate::harness::{MockKafka, Proc, World, free_port};
use crate::tansu::tansu_bin;

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

/// Weir's consumer, built from a config with `SASL_SSL` and SCRAM-SHA-512 and a private
/// CA, against tansu requiring SCRAM behind the TLS listener: the certificate is verified
/// with the CA file and the SCRAM exchange runs to its end, where the broker refuses the
/// user. (tansu 0.6.0 keeps SCRAM users in memory only, and a broker that requires
/// authentication refuses the request that would create one: no user can log in.)
#[test]
fn sasl_ssl_scram_exchange_with_tansu() {
    let world = World::new();
    let certs = make_certs(&world.path("certs"));
    let plain = free_port();
    let tls = free_port();
    let log_path = world.path("tansu.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(tansu_bin())
        .args([
            "broker",
            "--authentication",
            "--storage-engine",
            "memory://tansu/",
        ])
        .args(["--listener-url", &format!("tcp://127.0.0.1:{plain}")])
        // Clients learn the TLS listener's address, so every connection goes through it.
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{tls}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting tansu");
    let _tansu = Proc {
        child,
        name: "tansu".into(),
        log: Some(log_path),
    };
    let _tls = tls_listener(&world, &certs, tls, &format!("127.0.0.1:{plain}"));
    let bootstrap = format!("127.0.0.1:{tls}");
    let config = world.config("weir.toml", &bootstrap, &dataset_toml(""));
    let properties = format!(
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"weir\"\n\"sasl.password\" = '${{WEIR_KAFKA_PASSWORD}}'\n\"ssl.ca.location\" = \"{}\"\n",
        certs.ca.display()
    );
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "[kafka.properties]\n",
        &format!("[kafka.properties]\n{properties}"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut weir = world.weir_run(
        &config,
        "weir.log",
        &[("WEIR_KAFKA_PASSWORD", "weir-scram-secret")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refused = "SASL SCRAM authentication failed: broker responded with unknown-user";
    loop {
        let log = world.log("weir.log");
        if log.contains(refused) {
            assert!(
                !log.contains("certificate verify failed"),
                "TLS failed before SASL:\n{log}"
            );
            break;
        }
        assert!(
            weir.running(),
            "weir exited before the SCRAM exchange:\n{log}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no SCRAM exchange with the broker within 60s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

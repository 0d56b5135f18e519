//! The `weir` binary's command line: the example configs in `deploy/config/` pass
//! `weir check-config`, and the verbs the README documents exist.
//!
//! (Having an integration test also makes `cargo test --workspace` build the `weir` binary,
//! which the end-to-end tests in `tests/` run as a child process.)

use std::path::Path;
use std::process::Command;

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// Every `${NAME}` and `{ env = "NAME" }` a config file refers to, so the test can provide placeholder values.
fn env_refs(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find('}') {
            names.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    // Secrets given as `{ env = "NAME" }`.
    let mut rest = text;
    while let Some(start) = rest.find("env = \"") {
        rest = &rest[start + 7..];
        if let Some(end) = rest.find('"') {
            names.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    names
}

#[test]
fn example_configs_pass_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/config exists") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut cmd = weir();
        cmd.args(["check-config", "--config"]).arg(&path);
        let secrets = tempfile::tempdir().unwrap();
        for name in env_refs(&text) {
            if name.ends_with("_FILE") {
                let file = secrets.path().join(&name);
                std::fs::write(&file, "placeholder-key-for-check-config-0123456789abcdef").unwrap();
                cmd.env(name, file);
            } else if name.ends_with("_LISTEN") {
                // An address, which check-config reads as host:port.
                cmd.env(name, "127.0.0.1:9464");
            } else {
                cmd.env(name, "placeholder-value-for-check-config-0123456789abcdef");
            }
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(": ok ("), "{stdout}");
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected an example per built-in dataset, found {checked}"
    );
}

#[test]
fn verbs_exist() {
    let out = weir().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in ["run", "demo", "query", "compact", "vacuum", "check-config"] {
        assert!(help.contains(verb), "{verb} missing from:\n{help}");
    }
    let out = weir().args(["query", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--format") && help.contains("--config"),
        "{help}"
    );
}

#[test]
fn missing_env_var_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        "[kafka]\nbrokers = \"${WEIR_TEST_SURELY_UNSET_BROKERS}\"\n",
    )
    .unwrap();
    let out = weir()
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("WEIR_TEST_SURELY_UNSET_BROKERS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WEIR_TEST_SURELY_UNSET_BROKERS"), "{err}");
    assert!(
        err.contains("kafka.brokers") && err.contains("line 2"),
        "{err}"
    );
}

/// `weir query` builds no operator chain: a config whose redact key is not in the
/// environment (which `check-config` refuses) still queries, here an empty lake, where
/// the table has the columns the config declares.
#[test]
fn query_needs_no_operator_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[storage]\nurl = \"file://{}\"\n\
             [[datasets]]\nname = \"http_requests\"\ntopic = \"t\"\n\
             [[datasets.operators]]\ntype = \"redact\"\n\
             hmac_key = {{ env = \"WEIR_TEST_SURELY_UNSET_KEY\" }}\n\
             [datasets.operators.fields]\nClientIP = {{ action = \"token\" }}\n",
            dir.path().join("lake").display()
        ),
    )
    .unwrap();
    let check = weir()
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("WEIR_TEST_SURELY_UNSET_KEY")
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "check-config passed without the key"
    );
    let out = weir()
        .args(["query", "--format", "csv", "--config"])
        .arg(&path)
        .arg("SELECT count(*) AS n, count(ClientIP) AS ips FROM http_requests")
        .env_remove("WEIR_TEST_SURELY_UNSET_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n,ips\n0,0\n");
}

/// The maintenance jobs refuse what they cannot do, naming the key or flag.
#[test]
fn maintenance_jobs_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let path = dir.path().join("weir.toml");
    let config = |extra: &str| {
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:9\"\n[storage]\nurl = \"file://{}\"\n{extra}\n\
             [[datasets]]\nname = \"dns_logs\"\ntopic = \"dns\"\n",
            lake.display()
        )
    };
    let run = |args: &[&str]| {
        let out = weir()
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    std::fs::write(
        &path,
        config("[compaction]\nbloom_filter_columns = [\"NoSuchColumn\"]"),
    )
    .unwrap();
    let (ok, err, _) = run(&["compact"]);
    assert!(
        !ok && err.contains("compaction.bloom_filter_columns") && err.contains("NoSuchColumn"),
        "{err}"
    );
    std::fs::write(&path, config("[compaction]\nzstd_level = 40")).unwrap();
    let (ok, err, _) = run(&["compact"]);
    assert!(!ok && err.contains("compaction.zstd_level"), "{err}");
    std::fs::write(&path, config("")).unwrap();
    let (ok, err, _) = run(&["vacuum", "--dataset", "nope"]);
    assert!(
        !ok && err.contains("--dataset") && err.contains("dns_logs"),
        "{err}"
    );
    // An empty lake: both jobs have nothing to do and say so.
    let (ok, err, out) = run(&["compact"]);
    assert!(ok && out.contains("compacted 0 hours"), "{err}{out}");
    let (ok, err, out) = run(&["vacuum", "--grace", "0s"]);
    assert!(ok && out.contains("0 files deleted"), "{err}{out}");
}

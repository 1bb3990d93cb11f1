//! Every file in `config/` loads and validates through the real binary, and a
//! bad configuration fails at start naming the key and what is allowed.

use std::process::Command;

fn gmv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gmv"))
}

#[test]
fn every_config_example_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = gmv()
                .arg("--config")
                .arg(&path)
                .arg("config")
                .output()
                .expect("gmv runs");
            assert!(
                output.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let printed: toml::Value =
                toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("prints TOML");
            assert!(printed.get("money").is_some());
            loaded += 1;
        }
    }
    assert!(loaded >= 3, "expected the config examples, found {loaded}");
}

#[test]
fn bad_config_fails_at_start_naming_every_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[money]\nthresholds_cny = [\"100.005\"]\nusd_per_cny = \"-1\"\n[window]\nstart = \"yesterday\"\n",
    )
    .expect("written");
    let output = gmv()
        .arg("--config")
        .arg(&path)
        .args(["run", "--input", "/nonexistent"])
        .output()
        .expect("gmv runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in ["money.thresholds_cny", "money.usd_per_cny", "window.start"] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }

    let output = gmv()
        .args(["run", "--input", "/nonexistent"])
        .env("GMV__ENGINE__TOP_N", "lots")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("engine.top_n"), "{stderr}");
}

#[test]
fn a_bad_checkpoint_store_names_the_key_and_the_allowed_values() {
    let output = gmv()
        .args(["run", "--input", "/nonexistent"])
        .env("GMV__KAFKA__CHECKPOINT__STORE", "s3")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["kafka.checkpoint.store", "s3", "dir", "topic"] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
}

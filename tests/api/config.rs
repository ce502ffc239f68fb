//! `transcoder config check`: the binary validates its own configuration,
//! names the key it refuses, and never prints a secret.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::unique;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check(files: &[&Path], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_transcoder"));
    for file in files {
        cmd.arg("--config").arg(file);
    }
    // Only what the test gives: no TRANSCODER__ variable of the caller.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TRANSCODER")) {
        cmd.env_remove(key);
    }
    cmd.args(["config", "check"]).envs(env.iter().copied()).output().expect("transcoder runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn refused(toml: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, toml).unwrap();
    let out = check(&[&file], &[]);
    assert_eq!(out.status.code(), Some(2), "{toml}: {}", text(&out));
    assert!(text(&out).contains(key), "{toml}: the message does not name {key}: {}", text(&out));
}

#[test]
fn an_unknown_key_exits_2_naming_it() {
    refused("[worker]\nconcurency = 2\n", "concurency");
    refused("[webhook]\nurl = \"http://example.com\"\n", "webhook");
}

#[test]
fn a_value_of_the_wrong_type_exits_2_naming_the_key() {
    refused("[worker]\nconcurrency = \"two\"\n", "worker.concurrency");
    let out = check(&[], &[("TRANSCODER__HTTP__MAX_UPLOAD_BYTES", "lots")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Named as the variable spells it (`HTTP.MAX_UPLOAD_BYTES`).
    assert!(text(&out).to_lowercase().contains("http.max_upload_bytes"), "{}", text(&out));
}

#[test]
fn an_invalid_value_exits_2_naming_the_key() {
    refused("[worker]\nconcurrency = 0\n", "worker.concurrency");
    refused("[auth.keys]\n\"some-key\" = \"Not A Client\"\n", "auth.keys");
}

#[test]
fn the_defaults_and_every_deploy_configuration_pass() {
    let out = check(&[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let base = Path::new(ROOT).join("deploy/k8s/base/transcoder.toml");
    let dev_keys = Path::new(ROOT).join("deploy/k8s/overlays/dev/api-keys.toml");
    let dev_hooks = Path::new(ROOT).join("deploy/k8s/overlays/dev/webhooks.toml");
    for files in
        [vec![base.as_path()], vec![base.as_path(), dev_keys.as_path()], vec![base.as_path(), dev_hooks.as_path()]]
    {
        let out = check(&files, &[("TRANSCODER__WORKER__SCRATCH_DIR", "/scratch")]);
        assert_eq!(out.status.code(), Some(0), "{files:?}: {}", text(&out));
    }
}

#[test]
fn no_secret_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (password, secret, access, api_key, playback) =
        (unique("pw"), unique("secret-key"), unique("access-key"), unique("api-key"), unique("playback"));
    let file = dir.path().join("secrets.toml");
    std::fs::write(
        &file,
        format!(
            "[http]\nplayback_secret = \"{playback}\"\n[amqp]\nurl = \"amqp://svc:{password}@broker:5672/%2f\"\n[storage]\naccess_key = \"{access}\"\n\
             secret_key = \"{secret}\"\n[auth.keys]\n\"{api_key}\" = \"acme\"\n"
        ),
    )
    .unwrap();
    let out = check(&[&file], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = text(&out);
    // The configuration was printed (the client and the broker's user are there) …
    assert!(printed.contains("acme") && printed.contains("amqp://svc:REDACTED@broker"), "{printed}");
    // … and none of the secrets.
    assert!(printed.contains("playback_secret: REDACTED"), "{printed}");
    for s in [&password, &secret, &access, &api_key, &playback] {
        assert!(!printed.contains(s.as_str()), "{s} printed: {printed}");
    }
}

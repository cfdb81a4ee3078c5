//! `reman-ledger audit --server` against a real `serve --demo` on a loopback port: a clean log,
//! the unpinned-key warning, a wrong pinned key, an unreachable server, and a store tampered
//! on disk between two runs of the server, whose changed entry is named, a server that lies
//! about an entry it serves, and a false seal it serves.

mod cli_support;
mod common;
mod proxy;

use cli_support::*;
use reman_ledger::store::Store;

/// Changes entry `index` of the stopped server's store with `change`, then restarts it.
fn tamper(s: &mut Served, index: u64, change: impl FnOnce(&mut [u8])) {
    s.stop();
    {
        let store = Store::open(&s.path("data")).unwrap();
        let mut bytes = store.entry(index).unwrap().unwrap().to_vec();
        change(&mut bytes);
        store.raw_put_entry(index, &bytes).unwrap();
        store.flush().unwrap();
    }
    s.restart();
}

/// Moves the entry's integrated_time a year later: covered by no signature, only by the hash
/// chain and the tree (and later than the entry before it, so only they can tell).
fn shift_time(bytes: &mut [u8]) {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let pos = text.find("\"integrated_time\":\"").unwrap() + 19 + 3; // the year's last digit
    assert!(bytes[pos].is_ascii_digit() && bytes[pos] != b'9');
    bytes[pos] += 1;
}

fn audit(s: &Served, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "--server", s.url.as_str()];
    args.extend_from_slice(extra);
    bin(&args, s.dir.path())
}

#[test]
fn a_clean_log_verifies_pinned_and_warns_when_not_pinned() {
    let s = Served::demo();
    let out = audit(&s, &["--log-key", "keys/log.key.pub"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.starts_with("OK: 89 entries of reman-ledger.example/log verified; root "),
        "{o}"
    );
    assert!(!o.contains("WARNING"), "{o}");

    let out = audit(
        &s,
        &["--log-key", "keys/log.key.pub", "--json", "--jobs", "7"],
    );
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["log_key_pinned"], true);
    assert_eq!(v["report"]["entries"], 89);
    assert_eq!(v["report"]["by_type"]["certificate"], 38);
    assert!(v.get("warning").is_none());

    // Without a pinned key: audited under the key the server names, and said loudly.
    let out = audit(&s, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("WARNING: log key not pinned"));
    assert!(text(&out.stderr).contains("WARNING: log key not pinned"));
    let out = audit(&s, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["log_key_pinned"], false);
    assert!(
        v["warning"]
            .as_str()
            .unwrap()
            .starts_with("log key not pinned"),
        "{v}"
    );
    assert_eq!(
        v["log_key"],
        std::fs::read_to_string(s.path("keys/log.key.pub"))
            .unwrap()
            .trim()
    );
}

#[test]
fn a_wrong_pinned_key_fails_and_an_unreachable_server_is_an_io_error() {
    let s = Served::demo();
    let out = audit(&s, &["--log-key", "keys/operator.key.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("AUDIT FAILED: the log's checkpoint is not valid"),
        "{}",
        text(&out.stderr)
    );
    let impostor = reman_ledger::keys::PrivateKey::generate("reman-ledger.example/log").unwrap();
    let out = audit(&s, &["--log-key", &impostor.public().to_vkey(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert!(v["first_bad_index"].is_null());

    let dead = dead_url();
    let out = bin(
        &["audit", "--server", &dead, "--log-key", "keys/log.key.pub"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("audit not done")
            && text(&out.stderr).contains("Connection refused"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &["audit"][..],
        &["audit", "--server", &s.url, "--data", "data"][..],
        &["audit", "--server", &s.url, "--jobs", "0"][..],
        &["audit", "--server", "localhost:1"][..],
    ] {
        assert_eq!(bin(args, s.dir.path()).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn a_store_tampered_on_disk_is_named_at_the_changed_entry() {
    let mut s = Served::demo();
    let first_bad = |s: &Served| {
        let out = audit(s, &["--log-key", "keys/log.key.pub", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        let v = json(&out);
        assert_eq!(v["ok"], false);
        (
            v["first_bad_index"].as_u64(),
            v["error"].as_str().unwrap().to_owned(),
        )
    };
    // The last entry's time: only the signed tree covers it.
    tamper(&mut s, 88, shift_time);
    let (index, error) = first_bad(&s);
    assert_eq!(index, Some(88), "{error}");
    assert!(
        error.contains("not the ones the signed checkpoint covers"),
        "{error}"
    );
    // A time in the middle: entry 51 no longer follows it (its prev, its time), but the
    // changed entry is the one named.
    tamper(&mut s, 50, shift_time);
    let (index, error) = first_bad(&s);
    assert_eq!(index, Some(50), "{error}");
    assert!(
        error.contains("not the ones the signed checkpoint covers"),
        "{error}"
    );
    // A byte of a signed payload: its signature fails.
    tamper(&mut s, 42, |b| {
        let p = b.len() - 30;
        b[p] ^= 1;
    });
    assert_eq!(first_bad(&s).0, Some(42));
    // The human report names it too.
    let out = audit(&s, &["--log-key", "keys/log.key.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("AUDIT FAILED: entry 42: "),
        "{}",
        text(&out.stderr)
    );
}

/// Entry 7's answer with one claim changed while its bytes stay right.
fn lie_about(path: &str, body: &[u8], lie: &str) -> Option<(u16, Vec<u8>)> {
    if path != "/api/v1/entries/7" {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v[lie] = match lie {
        "index" => serde_json::json!(8),
        _ => serde_json::json!("00".repeat(32)),
    };
    Some((200, serde_json::to_vec(&v).unwrap()))
}

#[test]
fn a_server_that_lies_about_an_entrys_index_or_leaf_hash_is_caught_at_that_entry() {
    let s = Served::demo();
    for (lie, says) in [
        (
            "leaf_hash",
            "the leaf_hash the server gives is not the hash of the bytes it serves",
        ),
        ("index", "the server served entry 8 for it"),
    ] {
        let rewrite: proxy::Rewrite = if lie == "index" {
            |p, b| lie_about(p, b, "index")
        } else {
            |p, b| lie_about(p, b, "leaf_hash")
        };
        let proxy = proxy::start(&s.url, rewrite);
        let out = bin(
            &[
                "audit",
                "--server",
                &proxy,
                "--log-key",
                "keys/log.key.pub",
                "--json",
            ],
            s.dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "lie about {lie}: {}",
            text(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], false, "{report}");
        assert_eq!(report["first_bad_index"], 7, "{report}");
        assert!(
            report.to_string().contains(says),
            "lie about {lie}: {report}"
        );
    }
    // Through the same proxy without a lie, the log verifies: the proxy itself is faithful.
    let honest = proxy::start(&s.url, |_, _| None);
    let out = bin(
        &[
            "audit",
            "--server",
            &honest,
            "--log-key",
            "keys/log.key.pub",
        ],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The seal a lookup serves is checked too: a false seal signature kept in the store is
/// caught by `audit --data` and, once the server serves it, by `audit --server` (found in
/// review: the remote audit replayed the entries and the tree but never looked at seals).
#[test]
fn a_false_seal_the_server_serves_is_caught_at_its_entry() {
    use reman_ledger::entry::Entry;
    use reman_ledger::payload::{self, Payload};
    let mut s = Served::demo();
    s.stop();
    let (index, id) = {
        let store = Store::open(&s.path("data")).unwrap();
        let (index, id) = (0..store.size().unwrap())
            .find_map(|i| {
                let e = Entry::parse(&store.entry(i).unwrap().unwrap()).unwrap();
                let p = payload::parse(&e.envelope.payload_type, &e.envelope.payload).unwrap();
                matches!(p, Payload::Certificate(_)).then(|| {
                    (
                        i,
                        reman_ledger::certificate::CertificateId::of_payload(&e.envelope.payload),
                    )
                })
            })
            .unwrap();
        store.raw_put_seal(index, Some([7u8; 64])).unwrap();
        store.flush().unwrap();
        (index, id)
    };
    let local = bin(&["audit", "--data", "data"], s.dir.path());
    assert_eq!(local.status.code(), Some(1), "{}", text(&local.stderr));
    s.restart();
    let served = reman_ledger::client::Client::new(&s.url)
        .unwrap()
        .certificate(&id.to_string())
        .unwrap();
    let seal = reman_ledger::seal::Seal::from_base64url(served["seal"].as_str().unwrap()).unwrap();
    assert_eq!(
        seal.signature, [7u8; 64],
        "the server serves the false seal"
    );
    let out = audit(&s, &["--log-key", "keys/log.key.pub"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}{err}", text(&out.stdout));
    assert!(err.contains(&format!("entry {index}")), "{err}");
    assert!(
        err.contains("seal the server serves for it is not valid"),
        "{err}"
    );
}

#[test]
fn with_a_state_file_an_audit_catches_a_rollback_and_a_fork_between_audits() {
    let mut s = Served::demo();
    let state = s.path("state.json");
    let audit_remembering = |s: &Served| {
        audit(
            s,
            &["--log-key", "keys/log.key.pub", "--state", "state.json"],
        )
    };
    let remembered = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        v["logs"][0]["tree_size"].as_u64().unwrap()
    };
    let o = audit_remembering(&s);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(
            "\n   first audit of this log with state.json: its checkpoint is remembered there"
        ),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(remembered(), 89);
    // A copy of the log as it is now, kept aside; the log grows and is audited again.
    s.stop();
    common::copy_dir(&s.path("data"), &s.path("old"));
    s.restart();
    log_certificates(&s.url, 0, 2);
    let o = audit_remembering(&s);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("\n   and it extends the tree of 89 entries remembered in state.json (whose root its first 89 entries give again)"),
        "{}",
        text(&o.stdout)
    );
    let o = audit(
        &s,
        &[
            "--log-key",
            "keys/log.key.pub",
            "--state",
            "state.json",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v = json(&o);
    assert_eq!(v["history"]["previous_tree_size"], 91, "{v}");
    let o = audit_remembering(&s);
    assert!(
        text(&o.stdout).contains("\n   and it is the tree of 91 entries remembered in state.json"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(v["history"]["state_file"], "state.json", "{v}");
    assert_eq!(remembered(), 91);
    let before = std::fs::read(&state).unwrap();
    // The operator serves the older copy: every entry of it verifies, but it is a rollback.
    s.stop();
    std::fs::rename(s.path("data"), s.path("new")).unwrap();
    std::fs::rename(s.path("old"), s.path("data")).unwrap();
    s.restart();
    let o = audit_remembering(&s);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("rolled back"), "{err}");
    assert!(
        err.contains("--- remembered ---") && err.contains("--- presented ---"),
        "{err}"
    );
    assert!(
        err.contains(
            "the checkpoint of size 91 seen before is remembered in state.json (last seen "
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), before, "nothing remembered");
    // ... and grows it into another history, longer than the one remembered: a fork.
    log_certificates(&s.url, 100, 3);
    let o = audit_remembering(&s);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("forked"), "{err}");
    assert_eq!(std::fs::read(&state).unwrap(), before, "nothing remembered");
    // The memory is of a pinned log: --state without --log-key is a usage error.
    let o = audit(&s, &["--state", "state.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&state).unwrap(), before, "nothing remembered");
    // Without the memory, the forked log audits clean on its own: only history tells.
    let o = audit(&s, &["--log-key", "keys/log.key.pub"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A data directory a running server holds is refused by name, by `audit --data` and by a
/// second `serve` (sled locks it), with what to do; the running server is untouched.
#[test]
fn a_data_directory_in_use_is_refused_with_what_to_do() {
    let s = Served::demo();
    let size = s.tree_size();
    for args in [
        &["audit", "--data", "data"][..],
        &["serve", "--data", "data", "--listen", "127.0.0.1:0"][..],
        &["export", "--data", "data", "--out", "tiles"][..],
    ] {
        let out = bin(args, s.dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains("the data directory data is in use by another process (a running reman-ledger serve, mirror or witness?): stop it first, or read that ledger over HTTP"),
            "{args:?}: {e}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    assert!(!s.path("tiles").exists(), "export wrote tiles");
    assert_eq!(s.tree_size(), size);
    let out = audit(&s, &["--log-key", "keys/log.key.pub"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

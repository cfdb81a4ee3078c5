//! `reman-ledger audit --server` against a real `serve --demo` on a loopback port: a clean log,
//! the unpinned-key warning, a wrong pinned key, an unreachable server, and a store tampered
//! on disk between two runs of the server, whose changed entry is named, a server that lies
//! about an entry it serves, a false seal it serves, and a status or history it serves that
//! the log contradicts (a status newer than the audited checkpoint is no lie).

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

/// The entry index of a demo line: line n of the demo file is entry n (entry 0 registers the
/// operator).
fn demo_index(label: &str) -> u64 {
    let jsonl = common::demo_jsonl();
    let line = jsonl
        .lines()
        .position(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"] == label)
        .unwrap();
    line as u64 + 1
}

/// The certificate ID of a demo certificate line.
fn demo_id(label: &str) -> reman_ledger::certificate::CertificateId {
    let envelopes =
        reman_ledger::demo::envelopes(&common::demo_jsonl(), &common::demo_keys()).unwrap();
    let (_, env) = envelopes.iter().find(|(l, _)| l == label).unwrap();
    reman_ledger::certificate::CertificateId::of_payload(&env.payload)
}

/// A certificate view changed by `change` when it returns true; any other answer passes.
fn lie_in_view(
    path: &str,
    body: &[u8],
    change: fn(&mut serde_json::Value) -> bool,
) -> Option<(u16, Vec<u8>)> {
    if !path.starts_with("/api/v1/certificates/") {
        return None;
    }
    let mut view: serde_json::Value = serde_json::from_slice(body).ok()?;
    change(&mut view).then(|| (200, serde_json::to_vec(&view).unwrap()))
}

/// The view's certificate's serial number.
fn serial(view: &serde_json::Value) -> &str {
    view["certificate"]["product"]["serial"].as_str().unwrap()
}

/// The status, revocation, successor and events a server serves for a certificate are those
/// the audited entries give it (found in review: the remote audit replayed every revocation,
/// supersession and event but compared only the seal it served, so a server that hid a
/// revocation from lookups passed the audit that had just replayed it).
#[test]
fn a_served_status_or_history_the_log_contradicts_is_caught_at_the_certificate() {
    let s = Served::demo();
    let (r1, eng_001) = (demo_id("eng-002-r1"), demo_id("eng-001"));
    let lies: [(&str, proxy::Rewrite, &str, String); 8] = [
        (
            "a hidden revocation",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if v["revocation"]["index"] != 87 {
                        return false;
                    }
                    v["status"] = "valid".into();
                    v["revocation"] = serde_json::Value::Null;
                    true
                })
            },
            "tc-003",
            format!(
                "the server serves certificate {} as valid, but entry 87 revoked it",
                demo_id("tc-003")
            ),
        ),
        (
            "a hidden supersession",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if v["status"] != "superseded" {
                        return false;
                    }
                    v["status"] = "valid".into();
                    v.as_object_mut().unwrap().remove("superseded_by");
                    true
                })
            },
            "eng-002",
            format!(
                "the server serves certificate {} as valid, but entry 45 (certificate {r1}) superseded it",
                demo_id("eng-002")
            ),
        ),
        (
            "a dropped event",
            |p, b| {
                lie_in_view(p, b, |v| {
                    let events = v["events"].as_array_mut().unwrap();
                    let before = events.len();
                    events.retain(|e| e["index"] != 50);
                    events.len() < before
                })
            },
            "eng-001",
            format!("the server serves certificate {eng_001} without its event of entry 50"),
        ),
        (
            "a repeated event",
            |p, b| {
                lie_in_view(p, b, |v| {
                    let events = v["events"].as_array_mut().unwrap();
                    let Some(at) = events.iter().position(|e| e["index"] == 50) else {
                        return false;
                    };
                    let again = events[at].clone();
                    events.insert(at, again);
                    true
                })
            },
            "eng-001",
            format!("the server serves certificate {eng_001} with its event of entry 50 twice"),
        ),
        (
            "another certificate's event",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if serial(v) != "SZR26E00412" {
                        return false;
                    }
                    // Entry 50, an event of eng-001, shown as eng-003's.
                    v["events"] = serde_json::json!([{"index": 50}]);
                    true
                })
            },
            "eng-003",
            format!(
                "the server serves certificate {} with entry 50 as its event, but entry 50 is not an event of it",
                demo_id("eng-003")
            ),
        ),
        (
            "a false revocation",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if serial(v) != "SZR26E00412" {
                        return false;
                    }
                    let id = v["certificate_id"].clone();
                    v["status"] = "revoked".into();
                    v["revocation"] = serde_json::json!({
                        "index": 86, "integrated_time": "2026-11-28T20:00:00.000Z",
                        "signer": "suzhou-reman.example",
                        "revocation": {"certificate_id": id, "reason": "fraud", "note": ""}
                    });
                    true
                })
            },
            "eng-003",
            format!(
                "the server serves certificate {} as revoked by entry 86, but entry 86 does not revoke it",
                demo_id("eng-003")
            ),
        ),
        (
            "an unknown status",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if serial(v) != "SZR26E00412" {
                        return false;
                    }
                    v["status"] = "void".into();
                    true
                })
            },
            "eng-003",
            "the server's answer for its certificate is malformed: unknown status \"void\"".into(),
        ),
        (
            "a revocation without its index",
            |p, b| {
                lie_in_view(p, b, |v| {
                    if v["revocation"]["index"] != 86 {
                        return false;
                    }
                    v["revocation"].as_object_mut().unwrap().remove("index");
                    true
                })
            },
            "alt-003",
            "the server's answer for its certificate is malformed: a revocation without an entry index".into(),
        ),
    ];
    for (lie, rewrite, label, says) in lies {
        let proxy = proxy::start(&s.url, rewrite);
        let args = ["audit", "--server", &proxy, "--log-key", "keys/log.key.pub"];
        let out = bin(&args, s.dir.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{lie}: {err}");
        let index = demo_index(label);
        assert!(
            err.contains(&format!("AUDIT FAILED: entry {index}: {says}")),
            "{lie}: {err}"
        );
        let out = bin(&[&args[..], &["--json"]].concat(), s.dir.path());
        assert_eq!(out.status.code(), Some(1), "{lie}");
        let v = json(&out);
        assert_eq!(v["first_bad_index"], index, "{lie}: {v}");
    }
}

/// What a view shows of an event or a revocation (its type, time, place, reference, signer)
/// must be what its entry says, not only its index: a server could show a shipment as a
/// customs release, or move a revocation's time, at the right index.
#[test]
fn an_event_or_revocation_shown_otherwise_than_logged_is_caught() {
    let s = Served::demo();
    let lies: [(proxy::Rewrite, &str, u64); 2] = [
        (
            |p, b| {
                lie_in_view(p, b, |v| {
                    if serial(v) != "SZ-2026/000871" {
                        return false;
                    }
                    for e in v["events"].as_array_mut().unwrap() {
                        if e["event"]["event"] == "shipped" {
                            e["event"]["event"] = "customs_released".into();
                        }
                    }
                    true
                })
            },
            "eng-001",
            demo_index("ev-02-eng-001-shipped"),
        ),
        (
            |p, b| {
                lie_in_view(p, b, |v| {
                    if v["revocation"]["index"] != 86 {
                        return false;
                    }
                    v["revocation"]["integrated_time"] = "2026-01-01T00:00:00.000Z".into();
                    true
                })
            },
            "alt-003",
            86,
        ),
    ];
    for (rewrite, label, entry) in lies {
        let proxy = proxy::start(&s.url, rewrite);
        let args = ["audit", "--server", &proxy, "--log-key", "keys/log.key.pub"];
        let out = bin(&args, s.dir.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{label}: {err}");
        let says = format!(
            "AUDIT FAILED: entry {}: the server serves its certificate with entry {entry} not as logged",
            demo_index(label)
        );
        assert!(err.contains(&says), "{label}: {err}");
    }
}

/// The checkpoint the proxy of the next test serves instead of the server's latest.
static OLD_CHECKPOINT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A server answers lookups against its latest tree: a revocation, an event or a successor
/// logged after the checkpoint audited shows in the views, and is newer than the audit, not a
/// lie. Here the proxy serves the checkpoint of 89 entries while the server holds 3 more.
#[test]
fn a_status_or_event_newer_than_the_audited_checkpoint_is_not_a_lie() {
    use common::{certificate_json, key, sign};
    use reman_ledger::payload::PayloadType;
    let s = Served::demo();
    let client = reman_ledger::client::Client::new(&s.url).unwrap();
    OLD_CHECKPOINT.set(client.checkpoint().unwrap()).unwrap();
    let (str_001, eng_003, eng_004) = (demo_id("str-001"), demo_id("eng-003"), demo_id("eng-004"));
    let revocation = format!(r#"{{"certificate_id":"{str_001}","reason":"recall","note":""}}"#);
    let event = format!(
        r#"{{"certificate_id":"{eng_003}","event":"shipped","time":"2026-11-25T09:30:00+08:00","location":{{"country":"CN","place":"Suzhou"}},"reference":"B/L 1","note":""}}"#
    );
    let successor = certificate_json("09506001201336", "SZR26E00458", Some(&eng_004.to_string()));
    for (kind, json, signer) in [
        (PayloadType::Revocation, revocation, "texas-reman.example"),
        (PayloadType::Event, event, "suzhou-reman.example"),
        (PayloadType::Certificate, successor, "suzhou-reman.example"),
    ] {
        let answer = client.submit(&sign(kind, &json, &key(signer))).unwrap();
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    // The server shows them (entries 89, 90 and 91)...
    let view = |id: &reman_ledger::certificate::CertificateId| {
        client.certificate(&id.to_string()).unwrap()
    };
    assert_eq!(view(&str_001)["status"], "revoked");
    assert_eq!(view(&str_001)["revocation"]["index"], 89);
    assert_eq!(view(&eng_003)["events"][0]["index"], 90);
    assert_eq!(view(&eng_004)["status"], "superseded");
    assert!(view(&eng_004)["superseded_by"].is_string());
    // ... and the audit of the first 89 entries, whose replay has none of them, passes.
    let proxy = proxy::start(&s.url, |p, _| {
        (p == "/api/v1/checkpoint")
            .then(|| (200, OLD_CHECKPOINT.get().unwrap().clone().into_bytes()))
    });
    let out = bin(
        &["audit", "--server", &proxy, "--log-key", "keys/log.key.pub"],
        s.dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("OK: 89 entries of reman-ledger.example/log verified"),
        "{}",
        text(&out.stdout)
    );
    // The server's own latest checkpoint audits clean too.
    let out = audit(&s, &["--log-key", "keys/log.key.pub"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("OK: 92 entries"));
}

//! `reman-ledger witness` (SPEC §8, C2SP tlog-witness and tlog-cosignature): the real binary
//! as a witness of real ledgers (`serve --demo`), driven over loopback HTTP with the
//! checkpoints and consistency proofs the ledgers serve.

mod cli_support;
mod common;
mod proxy;

use cli_support::{Served, bin, log_certificates, spawn_server, stop_server, text};
use reman_ledger::checkpoint::Checkpoint;
use reman_ledger::client::Client;
use reman_ledger::cosignature::CosignerKey;
use reman_ledger::keyfile;
use reman_ledger::keys::PrivateKey;
use reman_ledger::merkle::Hash;
use reman_ledger::note;
use reman_ledger::witness::AddCheckpoint;
use std::path::{Path, PathBuf};
use std::process::Child;

const WITNESS: &str = "witness.customs.example/w1";

/// A running `reman-ledger witness` in its own directory, watching the demo log key.
struct Witness {
    child: Option<Child>,
    url: String,
    dir: tempfile::TempDir,
    cosigner: CosignerKey,
}

impl Witness {
    fn start() -> Witness {
        let dir = tempfile::tempdir().unwrap();
        let o = bin(&["keygen", "--name", WITNESS, "--out", "w.key"], dir.path());
        assert!(o.status.success(), "{}", text(&o.stderr));
        let key = keyfile::read_private(&dir.path().join("w.key")).unwrap();
        let mut w = Witness {
            child: None,
            url: String::new(),
            dir,
            cosigner: CosignerKey::of(&key),
        };
        w.run();
        w
    }

    fn run(&mut self) {
        let log_pub = cli_support::root().join("keys/log.key.pub");
        let (child, url) = spawn_server(
            &[
                "witness",
                "--data",
                "state",
                "--key",
                "w.key",
                "--log",
                log_pub.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            self.dir.path(),
        );
        self.url = url;
        self.child = Some(child);
    }

    fn restart(&mut self) {
        if let Some(c) = self.child.take() {
            stop_server(c);
        }
        self.run();
    }

    /// POSTs a body to /add-checkpoint: (status, content type, body).
    fn post(&self, body: &[u8]) -> (u16, String, String) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut resp = agent
            .post(format!("{}/add-checkpoint", self.url))
            .send(body)
            .unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
        let body = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), ct, body)
    }

    fn add(&self, old: u64, proof: Vec<Hash>, checkpoint: &str) -> (u16, String, String) {
        let req = AddCheckpoint {
            old,
            proof,
            checkpoint: checkpoint.to_owned(),
        };
        self.post(req.to_body().as_bytes())
    }

    /// Asserts a 200 whose body is this witness's valid cosignature of `checkpoint`.
    fn cosigns(&self, old: u64, proof: Vec<Hash>, checkpoint: &str) {
        let (status, ct, body) = self.add(old, proof, checkpoint);
        assert_eq!(status, 200, "{body}");
        assert_eq!(ct, "text/plain; charset=utf-8");
        assert!(body.starts_with(&format!("— {WITNESS} ")), "{body}");
        assert_eq!(body.matches('\n').count(), 1, "{body}");
        // The log's client appends the lines to its checkpoint, as tlog-witness says.
        let cosigned = note::parse(&format!("{checkpoint}{body}")).unwrap();
        let sig = cosigned
            .signatures
            .iter()
            .find(|s| self.cosigner.signed(s))
            .expect("a signature by the witness's cosigner key");
        let ts = self.cosigner.verify(&cosigned.text, sig).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts.abs_diff(now) < 120, "timestamp {ts}, now {now}");
    }

    /// Asserts a 409 naming the size the witness cosigned last.
    fn conflicts(&self, old: u64, proof: Vec<Hash>, checkpoint: &str, latest: u64) {
        let (status, ct, body) = self.add(old, proof, checkpoint);
        assert_eq!((status, ct.as_str()), (409, "text/x.tlog.size"), "{body}");
        assert_eq!(body, format!("{latest}\n"));
    }

    fn refuses(&self, body: &[u8], status: u16, why: &str) {
        let (got, _, answer) = self.post(body);
        assert_eq!(got, status, "{answer}");
        assert!(answer.contains(why), "{why:?} not in {answer:?}");
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn checkpoint_of(url: &str) -> String {
    Client::new(url).unwrap().checkpoint().unwrap()
}

fn proof(url: &str, first: u64, second: u64) -> Vec<Hash> {
    Client::new(url)
        .unwrap()
        .consistency_proof(first, second)
        .unwrap()
}

/// A checkpoint of `size` entries with this root, signed by `key` (the log's or another).
fn signed_by(key: &PrivateKey, size: u64, root: Hash) -> String {
    Checkpoint {
        origin: key.name().to_owned(),
        size,
        root,
        extensions: vec![],
    }
    .sign(key)
    .unwrap()
}

#[test]
fn a_witness_cosigns_a_growing_log_and_never_a_rollback_or_a_fork() {
    let ledger = Served::demo();
    let mut w = Witness::start();
    let cp89 = checkpoint_of(&ledger.url);
    assert!(cp89.contains("\n89\n"));

    // First contact: old 0, no proof. Asked again from 0, it names the size it cosigned.
    w.cosigns(0, vec![], &cp89);
    w.conflicts(0, vec![], &cp89, 89);
    // The same checkpoint again, from its own size.
    w.cosigns(89, vec![], &cp89);

    // The log grows: cosigned with the consistency proof the ledger serves.
    log_certificates(&ledger.url, 0, 10);
    let cp99 = checkpoint_of(&ledger.url);
    w.cosigns(89, proof(&ledger.url, 89, 99), &cp99);
    // The old checkpoint is no longer acceptable: a rollback.
    w.conflicts(89, vec![], &cp89, 99);
    w.refuses(
        AddCheckpoint {
            old: 99,
            proof: vec![],
            checkpoint: cp89.clone(),
        }
        .to_body()
        .as_bytes(),
        400,
        "exceeds the checkpoint's 89",
    );

    // A proof that does not verify, or none: 422, and nothing changes.
    log_certificates(&ledger.url, 10, 5);
    let cp104 = checkpoint_of(&ledger.url);
    let mut bent = proof(&ledger.url, 99, 104);
    bent[0][3] ^= 1;
    let (status, _, body) = w.add(99, bent, &cp104);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("consistency proof from size 99 to 104"),
        "{body}"
    );
    assert_eq!(w.add(99, vec![], &cp104).0, 422);
    w.conflicts(0, vec![], &cp104, 99);
    w.cosigns(99, proof(&ledger.url, 99, 104), &cp104);

    // Another ledger under the same log key with its own history: a fork of the first.
    let fork = Served::demo();
    log_certificates(&fork.url, 100, 15);
    let fork104 = checkpoint_of(&fork.url);
    assert!(fork104.contains("\n104\n"));
    assert_ne!(fork104, cp104);
    // Refused without a size body: "ask again from 104" would not help (tlog-witness).
    let (status, ct, body) = w.add(104, vec![], &fork104);
    assert_eq!(status, 409, "{body}");
    assert_ne!(ct, "text/x.tlog.size");
    assert!(body.contains("the log forked"), "{body}");
    log_certificates(&fork.url, 200, 1);
    let fork105 = checkpoint_of(&fork.url);
    assert_eq!(w.add(104, proof(&fork.url, 104, 105), &fork105).0, 422);

    // What it cosigned survives a restart.
    w.restart();
    w.conflicts(0, vec![], &cp104, 104);
    assert!(w.path("state").is_dir());
}

#[test]
fn a_witness_refuses_unknown_logs_forged_checkpoints_and_malformed_requests() {
    let ledger = Served::demo();
    let w = Witness::start();
    let cp = checkpoint_of(&ledger.url);
    let root = Checkpoint::parse_body(&note::parse(&cp).unwrap().text)
        .unwrap()
        .root;
    // 404: a log it does not watch.
    let other = PrivateKey::generate("other-ledger.example/log").unwrap();
    let (status, _, body) = w.add(0, vec![], &signed_by(&other, 89, root));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("does not watch the log \"other-ledger.example/log\""));
    // 403: the watched origin, signed by another key.
    let impostor = PrivateKey::generate("reman-ledger.example/log").unwrap();
    let (status, _, body) = w.add(0, vec![], &signed_by(&impostor, 89, root));
    assert_eq!(status, 403, "{body}");
    // 400: malformed bodies.
    let good = AddCheckpoint {
        old: 0,
        proof: vec![],
        checkpoint: cp.clone(),
    }
    .to_body();
    w.refuses(b"", 400, "old");
    w.refuses(good.replace("old 0", "old 00").as_bytes(), 400, "old N");
    w.refuses(
        good.replacen("old 0\n", "old 0\nnot-base64\n", 1)
            .as_bytes(),
        400,
        "not a base64 SHA-256 hash",
    );
    w.refuses(b"old 0\n\n", 400, "no checkpoint");
    w.refuses(&[0xff, 0xfe, b'\n'], 400, "not UTF-8");
    let too_many = format!(
        "old 5\n{}\n{cp}",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n".repeat(64)
    );
    w.refuses(too_many.as_bytes(), 400, "more than 63");
    // None of these was cosigned: the first real request starts from 0.
    w.cosigns(0, vec![], &cp);
    // Signed-note: notes with 16 signatures must be accepted, and post-quantum ones take
    // nearly 5 kB each.
    let foreign: String = (0..16u8)
        .map(|i| {
            use base64::Engine as _;
            let sig = base64::engine::general_purpose::STANDARD.encode(vec![i; 4 + 4635]);
            format!("— pq-witness-{i}.example {sig}\n")
        })
        .collect();
    let heavy = format!("{cp}{foreign}");
    assert!(heavy.len() > 96 * 1024, "{}", heavy.len());
    w.cosigns(89, vec![], &heavy);
    // A checkpoint that does not parse is a malformed request, not an unsigned one.
    let (status, _, body) = w.add(89, vec![], &cp.replacen("\n89\n", "\n089\n", 1));
    assert_eq!(status, 400, "{body}");
    // A body announced far larger than any request is refused before any of it is sent.
    let addr = w.url.strip_prefix("http://").unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(
        &mut tcp,
        b"POST /add-checkpoint HTTP/1.1\r\nHost: w\r\nContent-Length: 10000000\r\n\r\n",
    )
    .unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut tcp, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}

#[test]
fn a_witness_without_a_log_or_a_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin(
        &[
            "witness",
            "--data",
            "s",
            "--key",
            "missing.key",
            "--log",
            "x",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("missing.key"),
        "{}",
        text(&o.stderr)
    );
    let o = bin(&["witness", "--data", "s", "--key", "k"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--log"), "{}", text(&o.stderr));
    assert!(!Path::new(&dir.path().join("s")).exists());
}

/// Polls the ledger's checkpoint until it has `size` entries and carries this witness's
/// cosignature, which must verify; returns the checkpoint text. Panics after 30 s.
fn cosigned_checkpoint(url: &str, w: &Witness, size: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = checkpoint_of(url);
        let parsed = note::parse(&text).unwrap();
        let cp = Checkpoint::parse_body(&parsed.text).unwrap();
        if let Some(sig) = parsed.signatures.iter().find(|s| w.cosigner.signed(s))
            && cp.size == size
        {
            w.cosigner.verify(&parsed.text, sig).unwrap();
            // The log's own signature is still there and still verifies.
            Checkpoint::open(&text, common::log_key().public()).unwrap();
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cosigned checkpoint of {size} entries: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_ledger_serves_its_checkpoints_with_its_witnesses_cosignatures() {
    let w = Witness::start();
    // The witness's cosigner key from a file that holds it, as a user saves what it prints.
    let file = w.path("cosigner.vkey");
    std::fs::write(&file, format!("{}\n", w.cosigner.to_vkey())).unwrap();
    let witness_arg = format!("{}@{}", file.display(), w.url);
    let mut ledger = Served::demo_with(&["--witness", &witness_arg]);
    cosigned_checkpoint(&ledger.url, &w, 89);
    // Each new checkpoint is cosigned in turn, from the size the witness cosigned last.
    log_certificates(&ledger.url, 0, 5);
    let cp94 = cosigned_checkpoint(&ledger.url, &w, 94);
    // A certificate's tlog-proof carries the cosigned checkpoint.
    let client = Client::new(&ledger.url).unwrap();
    let entry = reman_ledger::entry::Entry::parse_stored(&client.entry(93).unwrap().leaf).unwrap();
    let id = reman_ledger::certificate::CertificateId::of_payload(&entry.envelope.payload);
    let proof = client
        .get_path(&format!("/api/v1/certificates/{id}/proof"), "text/plain")
        .unwrap();
    let proof =
        reman_ledger::tlog_proof::TlogProof::parse(&String::from_utf8(proof).unwrap()).unwrap();
    assert_eq!(proof.checkpoint, cp94);
    proof.verify_entry(common::log_key().public()).unwrap();

    // Restarted, the ledger learns the size the witness cosigned (409) and goes on from it.
    ledger.restart();
    cosigned_checkpoint(&ledger.url, &w, 94);
    log_certificates(&ledger.url, 5, 1);
    cosigned_checkpoint(&ledger.url, &w, 95);

    // Another history under the same log key (a fork, smaller than what the witness saw)
    // gets no cosignature from it, and is served all the same.
    let fork = Served::demo_with(&["--witness", &witness_arg]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let text = checkpoint_of(&fork.url);
    let parsed = note::parse(&text).unwrap();
    assert!(
        !parsed.signatures.iter().any(|s| w.cosigner.signed(s)),
        "a fork was cosigned: {text}"
    );
    Checkpoint::open(&text, common::log_key().public()).unwrap();
}

#[test]
fn serve_refuses_a_witness_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let log_as_witness = format!(
        "{}@http://127.0.0.1:1",
        common::log_key().public().to_vkey()
    );
    // The same witness twice would never complete a checkpoint's cosignatures.
    let twice = format!(
        "{}@http://127.0.0.1:1",
        CosignerKey::of(&PrivateKey::generate(WITNESS).unwrap()).to_vkey()
    );
    // The log key this server would run under, so that it can tell its own key from a
    // witness's.
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::copy(
        common::root().join("keys/log.key"),
        dir.path().join("keys/log.key"),
    )
    .unwrap();
    // A .pub file holds a note key (type 0x01), not a cosigner key; the log's own key pair
    // as a cosigner key is no witness; a private key file is not repeated; a path with an @.
    let log_pub = common::root().join("keys/log.key.pub");
    let log_pub_as_witness = format!("{}@http://127.0.0.1:1", log_pub.display());
    let log_itself = format!(
        "{}@http://127.0.0.1:1",
        CosignerKey::of(&common::log_key()).to_vkey()
    );
    let private = format!(
        "{}@http://127.0.0.1:1",
        dir.path().join("keys/log.key").display()
    );
    let at_path = dir.path().join("me@home");
    std::fs::write(&at_path, "not a key\n").unwrap();
    let at_path = format!("{}@https://w.example", at_path.display());
    for (witnesses, why) in [
        (
            vec![log_pub_as_witness.as_str()],
            "as a .pub file holds a key: give the witness's cosigner key",
        ),
        (
            vec![log_itself.as_str()],
            "that is the log's own key (keys/log.key)",
        ),
        (vec![private.as_str()], "holds a private key"),
        (vec![at_path.as_str()], "me@home: \"the text of"),
        (
            vec!["missing.pub@http://127.0.0.1:1"],
            "missing.pub: no such file (give the witness's cosigner key",
        ),
        (vec!["http://127.0.0.1:1"], "expected VKEY@URL"),
        (vec!["no+key@http://127.0.0.1:1"], "is not a cosigner key"),
        (vec![log_as_witness.as_str()], "not 0x04"),
        (vec![twice.as_str(), twice.as_str()], "is given twice"),
    ] {
        let mut args = vec!["serve", "--data", "d", "--listen", "127.0.0.1:0"];
        for w in &witnesses {
            args.extend(["--witness", w]);
        }
        let o = bin(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{witnesses:?}");
        assert!(text(&o.stderr).contains(why), "{why}: {}", text(&o.stderr));
        assert!(!dir.path().join("d").exists());
    }
    for wait in ["NaN", "-1", "soon"] {
        let o = bin(
            &[
                "serve",
                "--data",
                "d",
                "--listen",
                "127.0.0.1:0",
                "--witness-wait",
                wait,
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "--witness-wait {wait}");
        assert!(!dir.path().join("d").exists());
    }
    // A quorum the witnesses given cannot make, or one without witnesses.
    let (a, b) = (down_witness(), down_witness());
    for (quorum, witnesses, why) in [
        ("0", vec![a.as_str(), b.as_str()], "must be 1 to 2"),
        ("3", vec![a.as_str(), b.as_str()], "must be 1 to 2"),
        ("1", vec![], "give the witnesses with --witness"),
        ("two", vec![a.as_str()], "invalid value 'two'"),
    ] {
        let mut args = vec!["serve", "--data", "d", "--listen", "127.0.0.1:0"];
        for w in &witnesses {
            args.extend(["--witness", w]);
        }
        args.extend(["--witness-quorum", quorum]);
        let o = bin(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "--witness-quorum {quorum}");
        assert!(text(&o.stderr).contains(why), "{why}: {}", text(&o.stderr));
        assert!(!dir.path().join("d").exists());
    }
}

#[test]
fn verify_requires_the_cosignatures_a_customs_officer_asks_for_on_a_proof() {
    let w = Witness::start();
    let witness_arg = format!("{}@{}", w.cosigner.to_vkey(), w.url);
    let ledger = Served::demo_with(&["--witness", &witness_arg]);
    let cp = cosigned_checkpoint(&ledger.url, &w, 89);
    let client = Client::new(&ledger.url).unwrap();
    let entry = reman_ledger::entry::Entry::parse_stored(&client.entry(9).unwrap().leaf).unwrap();
    let id = reman_ledger::certificate::CertificateId::of_payload(&entry.envelope.payload);
    let proof = client
        .get_path(&format!("/api/v1/certificates/{id}/proof"), "text/plain")
        .unwrap();
    let proof = String::from_utf8(proof).unwrap();
    assert!(proof.ends_with(&cp));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let log_pub = cli_support::root().join("keys/log.key.pub");
    let log_pub = log_pub.to_str().unwrap();
    let verify = |file: &str, witness: &str| {
        bin(
            &[
                "verify",
                "--log-key",
                log_pub,
                "--witness",
                witness,
                "--json",
                file,
            ],
            dir.path(),
        )
    };
    let cosigner = w.cosigner.to_vkey();
    let good = write("good.tlog-proof", &proof);
    let o = verify(&good, &cosigner);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let witness_check = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "witness")
        .unwrap()
        .clone();
    assert!(
        witness_check["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cosigned by witness {WITNESS} at 20"))
    );

    // Another witness's key, the cosignature taken off, or altered: INVALID.
    let stranger = PrivateKey::generate("witness.other.example/w9").unwrap();
    let stranger = CosignerKey::of(&stranger).to_vkey();
    let o = verify(&good, &stranger);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("carries no cosignature of witness witness.other.example/w9"));
    let line = proof.lines().last().unwrap();
    assert!(line.starts_with(&format!("— {WITNESS} ")));
    let bare = write("bare.tlog-proof", &proof.replace(&format!("{line}\n"), ""));
    assert_eq!(verify(&bare, &cosigner).status.code(), Some(1));
    let sig = line.rsplit(' ').next().unwrap();
    let flipped = format!(
        "{}{}",
        &sig[..20],
        if &sig[20..21] == "A" { "B" } else { "A" }
    );
    let altered = proof.replace(sig, &format!("{flipped}{}", &sig[21..]));
    let altered = write("altered.tlog-proof", &altered);
    let o = verify(&altered, &cosigner);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("does not verify"),
        "{}",
        text(&o.stdout)
    );

    // The log's own key pair as its witness: refused (the log could cosign for itself), as
    // is a .pub file's note key, and a private key file is not repeated.
    let log_as_cosigner = CosignerKey::of(&common::log_key()).to_vkey();
    let o = verify(&good, &log_as_cosigner);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("that is the log's own key pair (reman-ledger.example/log)"),
        "{}",
        text(&o.stderr)
    );
    let log_pub_file = common::root().join("keys/log.key.pub");
    let o = verify(&good, log_pub_file.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not 0x04 (Ed25519 cosignature/v1), as a .pub file holds a key"),
        "{}",
        text(&o.stderr)
    );
    let log_private = common::root().join("keys/log.key");
    let o = verify(&good, log_private.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("holds a private key"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        !text(&o.stderr).contains("PRIVATE+KEY"),
        "{}",
        text(&o.stderr)
    );

    // --witness is about a checkpoint: offline, only a proof has one.
    let o = bin(
        &[
            "verify",
            "--log-key",
            log_pub,
            "--witness",
            &cosigner,
            &id.to_string(),
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--witness needs a checkpoint"));

    // Online, the ledger's checkpoint must carry the cosignature (the officer's own state
    // file for each ledger: they are two histories under one log key).
    let online = |url: &str, state: &str, witness: &str| {
        bin(
            &[
                "verify",
                "--state",
                state,
                "--log-key",
                log_pub,
                "--server",
                url,
                "--witness",
                witness,
                &id.to_string(),
            ],
            dir.path(),
        )
    };
    let o = online(&ledger.url, "s1.json", &cosigner);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("cosigned by witness {WITNESS}")));
    // A witness that never cosigns: not proven either way, after a short wait (exit 2).
    let o = online(&ledger.url, "s1.json", &stranger);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains(
        "the ledger's checkpoint carries no cosignature of witness witness.other.example/w9"
    ));
    let unwitnessed = Served::demo();
    let o = online(&unwitnessed.url, "s2.json", &cosigner);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains(&format!("carries no cosignature of witness {WITNESS}")));
    // A cosignature line that does not verify is a false one: INVALID.
    let forged = proxy::start(&ledger.url, forge_cosignature);
    let o = online(&forged, "s3.json", &cosigner);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains("does not verify"),
        "{}",
        text(&o.stdout)
    );
}

/// Flips a bit of the last signature line's signature (the witness's) of a checkpoint.
fn forge_cosignature(path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    if !path.ends_with("/checkpoint") {
        return None;
    }
    let text = String::from_utf8(body.to_vec()).ok()?;
    let line = text.lines().last()?;
    let sig = line.rsplit(' ').next()?;
    let flipped = format!(
        "{}{}{}",
        &sig[..20],
        if &sig[20..21] == "A" { "B" } else { "A" },
        &sig[21..]
    );
    Some((200, text.replace(sig, &flipped).into_bytes()))
}

#[test]
fn a_mirror_serves_the_cosignatures_its_ledger_gets_after_the_fact() {
    let w = Witness::start();
    let witness_arg = format!("{}@{}", w.cosigner.to_vkey(), w.url);
    let ledger = Served::demo_with(&["--witness", &witness_arg]);
    let mirror_dir = tempfile::tempdir().unwrap();
    let log_pub = ledger.path("keys/log.key.pub");
    let (mirror, mirror_url) = spawn_server(
        &[
            "mirror",
            "--from",
            &ledger.url,
            "--log-key",
            log_pub.to_str().unwrap(),
            "--data",
            "m",
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "50",
        ],
        mirror_dir.path(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Client::new(&mirror_url).unwrap().checkpoint().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A checkpoint is cosigned a moment after it is signed: the mirror, which may have taken
    // it before, takes the cosigned text of the same tree too.
    let cp = cosigned_checkpoint(&ledger.url, &w, 89);
    assert_eq!(cosigned_checkpoint(&mirror_url, &w, 89), cp);
    log_certificates(&ledger.url, 0, 1);
    let cp = cosigned_checkpoint(&ledger.url, &w, 90);
    assert_eq!(cosigned_checkpoint(&mirror_url, &w, 90), cp);
    stop_server(mirror);
}

/// The tree size of a checkpoint text.
fn size_of(text: &str) -> u64 {
    let parsed = note::parse(text).unwrap();
    Checkpoint::parse_body(&parsed.text).unwrap().size
}

#[test]
fn answers_are_made_against_checkpoints_the_witnesses_cosigned() {
    let w = Witness::start();
    let witness_arg = format!("{}@{}", w.cosigner.to_vkey(), w.url);
    let ledger = Served::demo_with(&["--witness", &witness_arg]);
    cosigned_checkpoint(&ledger.url, &w, 89);
    // While the log grows, every checkpoint served carries the witness's cosignature, and the
    // served tree never shrinks.
    let url = ledger.url.clone();
    let writer = std::thread::spawn(move || log_certificates(&url, 0, 30));
    let mut last = 89;
    while !writer.is_finished() {
        let text = checkpoint_of(&ledger.url);
        let parsed = note::parse(&text).unwrap();
        assert!(
            parsed.signatures.iter().any(|s| w.cosigner.signed(s)),
            "served without the witness's cosignature: {text}"
        );
        let size = size_of(&text);
        assert!(size >= last, "the served tree shrank from {last} to {size}");
        last = size;
    }
    writer.join().unwrap();
    let cp = cosigned_checkpoint(&ledger.url, &w, 119);
    // Lookups answer against it: the certificate view and its proof carry it.
    let client = Client::new(&ledger.url).unwrap();
    let entry = reman_ledger::entry::Entry::parse_stored(&client.entry(118).unwrap().leaf).unwrap();
    let id = reman_ledger::certificate::CertificateId::of_payload(&entry.envelope.payload);
    let view = client.certificate(&id.to_string()).unwrap();
    assert_eq!(view["checkpoint"].as_str().unwrap(), cp);
}

/// A `--witness` argument naming a witness that never answers.
fn down_witness() -> String {
    let key = PrivateKey::generate(WITNESS).unwrap();
    format!(
        "{}@{}",
        CosignerKey::of(&key).to_vkey(),
        cli_support::dead_url()
    )
}

#[test]
fn a_certificate_logged_but_not_yet_witnessed_is_not_yet_answered_never_unknown() {
    let ledger = Served::demo_with(&["--witness", &down_witness(), "--witness-wait", "600"]);
    let client = Client::new(&ledger.url).unwrap();
    let json = common::certificate_json(&common::gtin(4711), "FRESH-1", None);
    let answer = client
        .submit(&common::sign(
            reman_ledger::payload::PayloadType::Certificate,
            &json,
            &common::key("suzhou-reman.example"),
        ))
        .unwrap();
    assert_eq!(answer.status, 201);
    let id = answer.body["certificate_id"].as_str().unwrap().to_owned();
    assert_eq!(answer.body["index"], 89);
    // Answers are still made against the checkpoint of 89: the new certificate is "not yet"
    // (503, ask again), never "unknown".
    assert_eq!(size_of(&checkpoint_of(&ledger.url)), 89);
    for path in [
        format!("/api/v1/certificates/{id}"),
        format!("/api/v1/certificates/{id}/proof"),
        format!("/api/v1/products/{}/FRESH-1", common::gtin(4711)),
    ] {
        let err = client.get_path(&path, "application/json").unwrap_err();
        assert_eq!(err.status(), Some(503), "{path}: {err}");
        assert!(err.to_string().contains("ask again"), "{path}: {err}");
    }
    // What the receipt names can be fetched: its entry and its proof in the receipt's tree.
    client.entry(89).unwrap();
    client.inclusion_proof(89, 90).unwrap();
    // A customs officer checking it now is told to ask again (exit 2), not INVALID.
    let dir = tempfile::tempdir().unwrap();
    let log_pub = ledger.path("keys/log.key.pub");
    let o = bin(
        &[
            "verify",
            "--state",
            "s.json",
            "--log-key",
            log_pub.to_str().unwrap(),
            "--server",
            &ledger.url,
            &id,
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(!text(&o.stdout).contains("INVALID"), "{}", text(&o.stdout));
}

#[test]
fn without_its_witnesses_answers_move_on_after_the_wait() {
    let ledger = Served::demo_with(&["--witness", &down_witness(), "--witness-wait", "5"]);
    log_certificates(&ledger.url, 0, 1);
    // Not yet: the witness may still answer.
    assert_eq!(size_of(&checkpoint_of(&ledger.url)), 89);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while size_of(&checkpoint_of(&ledger.url)) < 90 {
        assert!(
            std::time::Instant::now() < deadline,
            "answers never moved on"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Served as signed by the log alone.
    let text = checkpoint_of(&ledger.url);
    assert_eq!(note::parse(&text).unwrap().signatures.len(), 1, "{text}");
    let metrics = Client::new(&ledger.url)
        .unwrap()
        .get_path("/metrics", "text/plain")
        .unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("reman_ledger_served_tree_size 90\n"),
        "{metrics}"
    );
}

#[test]
fn with_a_quorum_one_witness_down_does_not_leave_answers_uncosigned() {
    let w = Witness::start();
    let up = format!("{}@{}", w.cosigner.to_vkey(), w.url);
    let ledger = Served::demo_with(&[
        "--witness",
        &up,
        "--witness",
        &down_witness(),
        "--witness-quorum",
        "1",
        "--witness-wait",
        "600",
    ]);
    cosigned_checkpoint(&ledger.url, &w, 89);
    log_certificates(&ledger.url, 0, 3);
    // Long before the wait ends, answers move on to the new tree, cosigned by the witness
    // that is up (and only by it: nothing is made up for the one that is down).
    let text = cosigned_checkpoint(&ledger.url, &w, 92);
    assert_eq!(note::parse(&text).unwrap().signatures.len(), 2, "{text}");
    let client = Client::new(&ledger.url).unwrap();
    let entry = reman_ledger::entry::Entry::parse_stored(&client.entry(91).unwrap().leaf).unwrap();
    let id = reman_ledger::certificate::CertificateId::of_payload(&entry.envelope.payload);
    let view = client.certificate(&id.to_string()).unwrap();
    assert_eq!(view["checkpoint"].as_str().unwrap(), text);
}

/// A `--witness` argument naming a witness that takes each request and never answers (until
/// the test ends): a witness behind a network that drops its answers.
fn stalled_witness() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().take(64) {
            held.extend(conn.ok());
        }
    });
    let key = PrivateKey::generate(WITNESS).unwrap();
    format!("{}@{url}", CosignerKey::of(&key).to_vkey())
}

/// Waits until the served checkpoint is of `size` entries and carries `w`'s cosignature;
/// returns how long that took.
fn until_cosigned(url: &str, w: &Witness, size: u64) -> std::time::Duration {
    let start = std::time::Instant::now();
    cosigned_checkpoint(url, w, size);
    start.elapsed()
}

#[test]
fn a_witness_that_hangs_does_not_hold_back_a_quorum_of_the_others() {
    let w = Witness::start();
    let up = format!("{}@{}", w.cosigner.to_vkey(), w.url);
    let ledger = Served::demo_with(&[
        "--witness",
        &stalled_witness(),
        "--witness",
        &up,
        "--witness-quorum",
        "1",
        "--witness-wait",
        "600",
    ]);
    // The hanging witness holds each request it gets for 5 s (the request timeout); answers
    // move on with the other's cosignature long before that, each time the log grows.
    let mut took = vec![until_cosigned(&ledger.url, &w, 89)];
    for (round, size) in [(0, 90), (1, 91), (2, 92)] {
        log_certificates(&ledger.url, round, 1);
        took.push(until_cosigned(&ledger.url, &w, size));
    }
    assert!(
        took.iter().all(|t| *t < std::time::Duration::from_secs(4)),
        "{took:?}"
    );
}

/// A TCP proxy in front of `upstream` that holds each chunk a client sends for `delay` before
/// passing it on: a witness far away, or slow to answer.
fn slow_proxy(upstream: &str, delay: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming().take(1000) {
            let (Ok(mut client), Ok(mut server)) =
                (client, std::net::TcpStream::connect(&upstream))
            else {
                continue;
            };
            let (Ok(mut client_out), Ok(mut server_in)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    std::thread::sleep(delay);
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
            });
        }
    });
    url
}

#[test]
fn with_every_witness_required_a_slow_one_slows_answers_but_never_stops_them() {
    let (fast, slow) = (Witness::start(), Witness::start());
    let slow_url = slow_proxy(&slow.url, std::time::Duration::from_millis(2500));
    let ledger = Served::demo_with(&[
        "--witness",
        &format!("{}@{}", fast.cosigner.to_vkey(), fast.url),
        "--witness",
        &format!("{}@{slow_url}", slow.cosigner.to_vkey()),
        "--witness-wait",
        "600",
    ]);
    let both = |text: &str| {
        let signatures = note::parse(text).unwrap().signatures;
        [&fast, &slow]
            .iter()
            .all(|w| signatures.iter().any(|s| w.cosigner.signed(s)))
    };
    let start = std::time::Instant::now();
    while !both(&checkpoint_of(&ledger.url)) {
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The log grows all the time (a new checkpoint every round, faster than the slow witness
    // answers); the checkpoints served carry both cosignatures, and they move on at the slow
    // witness's pace, not never.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, stopping) = (ledger.url.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) && n < 5000 {
            log_certificates(&url, n, 5);
            n += 5;
        }
    });
    let mut sizes = vec![];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline && sizes.len() < 3 {
        let text = checkpoint_of(&ledger.url);
        let size = size_of(&text);
        if sizes.last() != Some(&size) {
            assert!(both(&text), "served without both cosignatures: {text}");
            sizes.push(size);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(sizes.len() >= 3, "the served checkpoint stalled: {sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
}

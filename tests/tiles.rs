//! The log as C2SP tlog-tiles (SPEC §8): `GET /tile/...` of the real binary over a loopback
//! socket, and `export`, checked the way a monitor would: every tile and bundle against the
//! signed checkpoint, and the exported directory against what the server serves.

mod cli_support;
mod common;

use cli_support::{Served, bin, log_certificates, text};
use reman_ledger::checkpoint::Checkpoint;
use reman_ledger::client::Client;
use reman_ledger::keys::PublicKey;
use reman_ledger::merkle::{self, Hash, MemoryTree};
use reman_ledger::tiles::{self, Tile, TileKind};
use std::collections::BTreeMap;
use std::path::Path;

struct Answer {
    status: u16,
    content_type: String,
    cache_control: String,
    content_encoding: String,
    vary: String,
    body: Vec<u8>,
}

fn fetch(url: &str) -> Answer {
    fetch_with(url, None)
}

/// A GET, with this `Accept-Encoding` if any; the body as it came (not decompressed).
fn fetch_with(url: &str, accept_encoding: Option<&str>) -> Answer {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(a) = accept_encoding {
        req = req.header("accept-encoding", a);
    }
    let mut resp = req.call().unwrap();
    let header = |name| {
        resp.headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    let (content_encoding, vary) = (header("content-encoding"), header("vary"));
    Answer {
        status: resp.status().as_u16(),
        content_type,
        cache_control,
        content_encoding,
        vary,
        body: resp.body_mut().read_to_vec().unwrap(),
    }
}

fn log_key() -> PublicKey {
    common::log_key().public().clone()
}

/// The server's checkpoint, verified under the demo log key.
fn checkpoint(url: &str) -> (Checkpoint, String) {
    let a = fetch(&format!("{url}/checkpoint"));
    assert_eq!(a.status, 200);
    let text = String::from_utf8(a.body).unwrap();
    (Checkpoint::open(&text, &log_key()).unwrap(), text)
}

/// A demo ledger grown past one full tile: 89 demo entries and 200 more.
fn served_past_one_tile() -> Served {
    let served = Served::demo();
    log_certificates(&served.url, 0, 200);
    served
}

fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|h| h.try_into().unwrap())
        .collect()
}

#[test]
fn a_monitor_rebuilds_the_signed_checkpoint_from_the_served_tiles() {
    let served = served_past_one_tile();
    let (cp, _) = checkpoint(&served.url);
    assert_eq!(cp.size, 289);
    let mut got: BTreeMap<Tile, Vec<u8>> = BTreeMap::new();
    for tile in tiles::tiles_of(cp.size) {
        let a = fetch(&format!("{}/{}", served.url, tile.path()));
        assert_eq!(a.status, 200, "{}: {}", tile.path(), text(&a.body));
        assert_eq!(a.content_type, "application/octet-stream");
        assert_eq!(a.cache_control, "public, max-age=31536000, immutable");
        got.insert(tile, a.body);
    }
    let tile = |kind, index, width| &got[&Tile { kind, index, width }];
    // Level 0: the leaf hashes of the entries the bundles hold, in order.
    let mut leaves = Vec::new();
    for (index, width) in [(0, 256), (1, 33)] {
        let level0 = hashes(tile(TileKind::Hashes(0), index, width));
        let bundle = tiles::decode_bundle(tile(TileKind::Entries, index, width)).unwrap();
        assert_eq!(level0.len(), usize::from(width));
        assert_eq!(bundle.len(), usize::from(width));
        for (k, (entry, leaf)) in bundle.iter().zip(&level0).enumerate() {
            assert_eq!(
                merkle::leaf_hash(entry),
                *leaf,
                "entry {k} of bundle {index}"
            );
        }
        leaves.extend(level0);
    }
    // The leaves make the checkpoint's root; level 1 holds the root of the full tile below.
    assert_eq!(MemoryTree::from_leaves(leaves).root(), cp.root);
    let level1 = tile(TileKind::Hashes(1), 0, 1);
    assert_eq!(
        tiles::tile_root(tile(TileKind::Hashes(0), 0, 256)).unwrap()[..],
        level1[..]
    );
    // A bundle's entries are the log's exact entry bytes.
    let client = Client::new(&served.url).unwrap();
    let bundle = tiles::decode_bundle(tile(TileKind::Entries, 1, 33)).unwrap();
    for (i, entry) in (256..).zip(bundle) {
        assert_eq!(client.entry(i).unwrap().leaf, entry, "entry {i}");
    }
    // A partial tile of a smaller width is the prefix of the one served.
    let part = fetch(&format!("{}/tile/0/000.p/89", served.url));
    assert_eq!(part.status, 200);
    assert_eq!(part.body[..], tile(TileKind::Hashes(0), 0, 256)[..89 * 32]);
}

#[test]
fn entry_bundles_are_gzipped_for_clients_that_accept_it() {
    let served = Served::demo();
    let url = format!("{}/tile/entries/000.p/89", served.url);
    let plain = fetch(&url);
    assert_eq!(plain.content_encoding, "");
    assert_eq!(plain.vary, "accept-encoding");
    assert_eq!(tiles::decode_bundle(&plain.body).unwrap().len(), 89);
    for accept in [
        "gzip",
        "br;q=1.0, gzip;q=0.5",
        "identity, *;q=0.1",
        "x-gzip",
        "GZIP",
    ] {
        let a = fetch_with(&url, Some(accept));
        assert_eq!(a.status, 200);
        assert_eq!(a.content_encoding, "gzip", "{accept}");
        assert_eq!(a.vary, "accept-encoding");
        assert!(
            a.body.len() * 3 < plain.body.len(),
            "{accept}: {} bytes",
            a.body.len()
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&a.body[..]),
            &mut unzipped,
        )
        .unwrap();
        assert!(unzipped == plain.body, "{accept}");
    }
    for accept in ["gzip;q=0", "identity", "br", "*;q=0", "gzip; q=0.000"] {
        let a = fetch_with(&url, Some(accept));
        assert_eq!(a.content_encoding, "", "{accept}");
        assert!(a.body == plain.body, "{accept}");
    }
    // Hashes do not compress: Merkle tiles are sent as they are.
    let tile = fetch_with(&format!("{}/tile/0/000.p/89", served.url), Some("gzip"));
    assert_eq!(tile.content_encoding, "");
    assert_eq!(tile.body.len(), 89 * 32);
}

#[test]
fn a_tile_the_checkpoint_does_not_cover_is_not_found_and_the_answer_names_what_is() {
    let served = Served::demo();
    let before = served.tree_size();
    assert_eq!(before, 89);
    for (path, hint) in [
        ("tile/0/000", Some("tile/0/000.p/89")),
        ("tile/entries/000", Some("tile/entries/000.p/89")),
        ("tile/0/000.p/90", Some("tile/0/000.p/89")),
        ("tile/0/001.p/1", None),
        ("tile/1/000.p/1", None),
        ("tile/7/000.p/1", None),
        ("tile/63/x018/000", None),
        ("tile/entries/x001/000", None),
    ] {
        let a = fetch(&format!("{}/{path}", served.url));
        assert_eq!(a.status, 404, "{path}: {}", text(&a.body));
        assert_eq!(a.content_type, "application/problem+json");
        let p: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("not in the log's tree of 89 entries"),
            "{detail}"
        );
        match hint {
            Some(h) => assert!(detail.contains(&format!("it has {h}")), "{detail}"),
            None => assert!(!detail.contains("it has"), "{detail}"),
        }
    }
    assert_eq!(served.tree_size(), before);
}

#[test]
fn a_malformed_tile_path_is_refused_as_malformed() {
    let served = Served::demo();
    for path in [
        "tile/00/000",
        "tile/64/000",
        "tile/0/0",
        "tile/0/1234",
        "tile/0/x000/001",
        "tile/0/x1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000/",
        "tile/0",
        "tile/entries",
        "tile/entry/000",
        "tile/0/-01",
    ] {
        let a = fetch(&format!("{}/{path}", served.url));
        assert_eq!(a.status, 400, "{path}: {}", text(&a.body));
        assert_eq!(a.content_type, "application/problem+json", "{path}");
        let p: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("is not a tlog-tiles path"),
            "{path}: {detail}"
        );
        assert!(detail.contains("tile/<L>/<N>[.p/<W>]"), "{detail}");
    }
    assert_eq!(served.tree_size(), 89);
}

/// Every file under `dir`, by its path relative to `dir` (with `/`).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn export(served: &Served, out: &Path) -> std::process::Output {
    bin(
        &["export", "--data", "data", "--out", out.to_str().unwrap()],
        served.dir.path(),
    )
}

/// Holds every exported file to what the server answers at its path.
fn assert_served_as_exported(served: &Served, exported: &BTreeMap<String, Vec<u8>>) {
    let (cp, text) = checkpoint(&served.url);
    assert_eq!(exported["checkpoint"], text.as_bytes());
    let mut want: Vec<String> = tiles::tiles_of(cp.size).iter().map(Tile::path).collect();
    // Beside each entry bundle, its certificates' seals.
    want.extend(
        tiles::tiles_of(cp.size)
            .iter()
            .filter(|t| t.kind == TileKind::Entries)
            .map(Tile::seal_path),
    );
    want.push("checkpoint".into());
    for path in &want {
        assert!(exported.contains_key(path), "{path} was not exported");
    }
    for (path, bytes) in exported {
        let a = fetch(&format!("{}/{path}", served.url));
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.body == *bytes,
            "{path}: the export differs from what is served"
        );
    }
}

#[test]
fn an_export_holds_what_the_server_serves_and_grows_with_the_log() {
    let mut served = served_past_one_tile();
    let out = served.path("public");
    served.stop();
    let o = export(&served, &out);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("exported the log at 289 entries"),
        "{}",
        text(&o.stdout)
    );
    let first = files(&out);
    // checkpoint; level 0, bundles and their seals: a full tile and a partial one; level 1:
    // a partial.
    assert_eq!(first.len(), 8, "{:?}", first.keys());
    served.restart();
    assert_served_as_exported(&served, &first);

    // The log grows past its second tile. The next export keeps the tiles it had that the new
    // tree still has (the full ones: tile/0/000, tile/entries/000) and writes the rest; the
    // old partial tiles stay for clients of the old checkpoint, and are still served.
    log_certificates(&served.url, 200, 300);
    served.stop();
    let o = export(&served, &out);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    assert!(said.contains("exported the log at 589 entries"), "{said}");
    assert!(said.contains("8 file(s) written"), "{said}");
    assert!(
        said.contains("2 tiles of the export at 289 entries kept"),
        "{said}"
    );
    let second = files(&out);
    for (path, bytes) in first.iter().filter(|(p, _)| *p != "checkpoint") {
        assert_eq!(&second[path], bytes, "{path} changed");
    }
    served.restart();
    assert_served_as_exported(&served, &second);

    // Nothing new: only the checkpoint is written again.
    served.stop();
    let o = export(&served, &out);
    assert!(
        text(&o.stdout).contains("1 file(s) written"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(files(&out), second);
}

#[test]
fn an_export_into_another_logs_export_or_a_fork_is_refused_and_changes_nothing() {
    let mut a = Served::demo();
    let mut b = Served::demo();
    a.stop();
    b.stop();
    let out = a.path("public");
    assert!(export(&a, &out).status.success());
    let before = files(&out);
    // b is signed with the same demo log key but has its own history: a fork of a.
    let o = export(&b, &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(err.contains("is not an earlier state of this log"), "{err}");
    assert!(err.contains("a fork"), "{err}");
    assert_eq!(files(&out), before);

    // A checkpoint that is not this log's at all.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("checkpoint"),
        "example.com/log\n1\nAAAA\n",
    )
    .unwrap();
    let o = export(&b, other.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("its checkpoint is not this log's"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(files(other.path()).len(), 1);

    // Not a ledger's data directory: nothing is created.
    let empty = tempfile::tempdir().unwrap();
    let o = bin(
        &["export", "--data", "nothing", "--out", "public"],
        empty.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is not the data directory of a ledger"));
    assert!(files(empty.path()).is_empty());
}

#[test]
fn a_ledger_whose_checkpoint_does_not_hold_is_not_exported() {
    let mut served = Served::demo();
    served.stop();
    {
        let db = common::raw_sled(&served.path("data"));
        let cp = db.get("Mcheckpoint").unwrap().unwrap();
        let forged = String::from_utf8(cp.to_vec())
            .unwrap()
            .replacen("\n89\n", "\n88\n", 1);
        db.insert("Mcheckpoint", forged.as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let out = served.path("public");
    let o = export(&served, &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("the ledger's checkpoint does not hold"),
        "{err}"
    );
    assert!(err.contains("audit --data"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_export_is_never_rolled_back_and_a_damaged_tile_is_written_again() {
    let mut served = served_past_one_tile();
    served.stop();
    // A copy of the data directory at 289 entries: an older state of the same ledger.
    let older = served.path("older");
    common::copy_dir(&served.path("data"), &older);
    served.restart();
    log_certificates(&served.url, 200, 10);
    served.stop();
    let out = served.path("public");
    assert!(export(&served, &out).status.success());
    let before = files(&out);

    let o = bin(
        &["export", "--data", "older", "--out", "public"],
        served.dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("at 299 entries, ahead of this ledger's 289"),
        "{err}"
    );
    assert!(err.contains("not rolled back"), "{err}");
    assert_eq!(files(&out), before);

    // A kept tile whose length shows it is not what was written is written again.
    std::fs::write(out.join("tile/0/000"), b"").unwrap();
    std::fs::write(out.join("tile/entries/000"), b"x").unwrap();
    let o = export(&served, &out);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The two tiles, the bundle's seals with it, and the checkpoint.
    assert!(
        text(&o.stdout).contains("4 file(s) written"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(files(&out), before);
    // A seal tile cut short: written again (from the bundle kept), and the checkpoint.
    std::fs::write(out.join("seals/000"), [0u8; 64]).unwrap();
    let o = export(&served, &out);
    assert!(
        text(&o.stdout).contains("2 file(s) written"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(files(&out), before);
    assert!(
        files(&out).keys().all(|p| !p.contains(".tmp-")),
        "temporary files left"
    );
}

/// `GET /seals/<N>[.p/<W>]`: each certificate entry's seal signature, the one its lookup
/// serves; zeros for the other entries; 404 past the tree, 400 for a path that is not one.
#[test]
fn seal_tiles_hold_each_certificates_seal_beside_its_bundle() {
    let served = Served::demo();
    let a = fetch(&format!("{}/seals/000.p/89", served.url));
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), 89 * tiles::SEAL_BYTES);
    let client = Client::new(&served.url).unwrap();
    let mut certificates = 0;
    for (index, sig) in a.body.chunks_exact(64).enumerate() {
        let entry: serde_json::Value = serde_json::from_slice(
            &client
                .get_path(&format!("/api/v1/entries/{index}"), "application/json")
                .unwrap(),
        )
        .unwrap();
        let is_certificate = entry["entry"]["envelope"]["payloadType"]
            .as_str()
            .unwrap()
            .contains("certificate");
        if !is_certificate {
            assert_eq!(sig, [0; 64], "entry {index}");
            continue;
        }
        certificates += 1;
        let payload = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            entry["entry"]["envelope"]["payload"].as_str().unwrap(),
        )
        .unwrap();
        let id = reman_ledger::certificate::CertificateId::of_payload(&payload);
        let view = client.certificate(&id.to_string()).unwrap();
        let seal =
            reman_ledger::seal::Seal::from_base64url(view["seal"].as_str().unwrap()).unwrap();
        assert_eq!((seal.index, &seal.signature[..]), (index as u64, sig));
    }
    assert!(certificates > 30, "{certificates}");
    assert_eq!(fetch(&format!("{}/seals/000.p/90", served.url)).status, 404);
    assert_eq!(fetch(&format!("{}/seals/001", served.url)).status, 404);
    assert_eq!(fetch(&format!("{}/seals/0000", served.url)).status, 400);
}

/// Certificates whose seal the store does not keep (logged before seals were kept) are
/// counted: their seal tiles are left out, and the export says so.
#[test]
fn an_export_says_which_seals_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(
        &cli_support::root().join("fixtures/legacy-store-v2"),
        &dir.path().join("data"),
    );
    let o = bin(&["export", "--data", "data", "--out", "public"], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    assert!(
        said.contains("certificate(s) have no seal in the export"),
        "{said}"
    );
    // Their seal tiles are left out, not written with zeros; the bundles are there.
    let exported = files(&dir.path().join("public"));
    assert!(exported.keys().any(|p| p.starts_with("tile/entries/")));
    assert!(
        !exported.keys().any(|p| p.starts_with("seals/")),
        "{:?}",
        exported.keys()
    );
    // Exported again as it is: the bundles are kept, not written again for want of seals.
    let o = bin(&["export", "--data", "data", "--out", "public"], dir.path());
    assert!(
        text(&o.stdout).contains(": 1 file(s) written"),
        "{}",
        text(&o.stdout)
    );
    // Once the ledger has opened (it keeps the seals of its last entries, which here are all
    // of them), the next export writes them.
    let ledger = reman_ledger::ledger::Ledger::open(
        &dir.path().join("data"),
        common::log_key(),
        common::config(),
    )
    .unwrap();
    ledger.close().unwrap();
    let o = bin(&["export", "--data", "data", "--out", "public"], dir.path());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("no seal"), "{}", text(&o.stdout));
    let exported = files(&dir.path().join("public"));
    assert!(exported.keys().any(|p| p.starts_with("seals/")));
}

//! The customs status page in a real browser: headless Chromium (Debian's `chromium`) at a
//! 360×740 phone viewport, against a real server on loopback holding the demo data set.
//!
//! For a valid, a revoked and a superseded certificate, an unknown product and a tampered seal it
//! checks what a customs officer must see: the verdict word in English and Chinese and its banner
//! colour (read off a PNG screenshot), the product identity, the issuer, the revocation, the event
//! timeline and the proof facts. Two ways of driving Chromium:
//!
//! - the command line (`--dump-dom`, `--screenshot`), one fresh process per page, JavaScript on;
//! - one process on `--remote-debugging-pipe` (the DevTools protocol over two pipes, no extra
//!   crate) with scripts disabled and a phone emulated, because Chromium's headless `--dump-dom`
//!   and `--screenshot` print nothing at all under `--blink-settings=scriptEnabled=false`. That
//!   run checks the same facts with JavaScript off, that the page is no wider than the phone
//!   (layout metrics), and that nothing is loaded from another host.
//!
//! Without Chromium the test prints `SKIPPED` and passes, except under CI (`CI` set), where
//! `.ci/run` installs it and a missing browser is a failure. `CHROMIUM` names another binary.
//! `REMAN_SCREENSHOT_DIR`, when set, receives the screenshots to look at.

mod common;

use base64::Engine;
use reman_ledger::api::{self, ServeOptions};
use reman_ledger::ledger::{Ledger, LedgerConfig};
use reman_ledger::query::CertificateView;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The phone: a 360×740 CSS-pixel viewport at scale 1, so a screenshot is 360×740 pixels.
const WIDTH: u32 = 360;
const HEIGHT: u32 = 740;
/// Longest a Chromium process may run before it is killed and the test fails.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of every run: headless, as root, and quiet on this machine's closed network.
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=360,740",
    "--force-device-scale-factor=1",
    // Phones overlay their scrollbars: lay the page out on the full 360 pixels.
    "--hide-scrollbars",
];

// ---------------------------------------------------------------------------------------------
// Finding Chromium
// ---------------------------------------------------------------------------------------------

/// `$CHROMIUM` (which must then exist), else `chromium` on the `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CHROMIUM={} is not a file", p.display());
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// The server: the demo data set on a real loopback socket
// ---------------------------------------------------------------------------------------------

struct Server {
    base: String,
    ledger: Arc<Ledger>,
    report: reman_ledger::demo::DemoReport,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Binds first (the QR links must carry the real port), then builds the demo ledger with
    /// that base URL and serves it from a tokio runtime on a background thread.
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = LedgerConfig {
            base_url: Some(base.clone()),
            ..LedgerConfig::default()
        };
        let (ledger, report) = common::demo_ledger_with(dir.path(), config);
        let ledger = Arc::new(ledger);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = ledger.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                api::serve(listener, served, ServeOptions::default(), shutdown)
                    .await
                    .unwrap();
            });
        });
        Server {
            base,
            ledger,
            report,
            stop,
            thread,
            _dir: dir,
        }
    }

    fn view(&self, label: &str) -> CertificateView {
        self.ledger
            .certificate(&self.report.certificates[label])
            .unwrap()
    }

    /// The HTTP status of a GET, over a plain socket (Chromium does not tell it).
    fn status_of(&self, url: &str) -> u16 {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = std::net::TcpStream::connect(host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
        if let Some(l) = Arc::into_inner(self.ledger) {
            l.close().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Screenshots
// ---------------------------------------------------------------------------------------------

/// A decoded screenshot, as RGB pixels.
struct Shot {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Shot {
    fn decode(png_bytes: &[u8]) -> Shot {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = info.color_type.samples();
        let rgb = buf[..info.buffer_size()]
            .chunks_exact(channels)
            .map(|p| match channels {
                1 | 2 => [p[0], p[0], p[0]],
                _ => [p[0], p[1], p[2]],
            })
            .collect();
        Shot {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn at(&self, x: u32, y: u32) -> [u8; 3] {
        self.rgb[(y * self.width + x) as usize]
    }

    /// The share of pixels of a rectangle (x0..x1, y0..y1) whose colour is of this hue.
    fn share(&self, hue: Hue, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> f64 {
        let mut n = 0u32;
        let mut hits = 0u32;
        for y in y0..y1 {
            for x in x0..x1 {
                n += 1;
                hits += u32::from(Hue::of(self.at(x, y)) == hue);
            }
        }
        f64::from(hits) / f64::from(n)
    }
}

/// Colour families of the banners (`.verdict-*` in `src/pages.rs`): green #0b6b2e, red #b3141e
/// (the seal-invalid red has darker stripes), amber #f0a202, grey #5f6368.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hue {
    Green,
    Red,
    Amber,
    Grey,
    Other,
}

impl Hue {
    fn of([r, g, b]: [u8; 3]) -> Hue {
        let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
        if g > r + 50 && g > b + 30 {
            Hue::Green
        } else if r > g + 90 && r > b + 90 && g < 80 {
            Hue::Red
        } else if r > 200 && (120..200).contains(&g) && b < 80 {
            Hue::Amber
        } else if (r - g).abs() < 15 && (g - b).abs() < 15 && (60..=140).contains(&r) {
            Hue::Grey
        } else {
            Hue::Other
        }
    }
}

/// The banner sits right under the 42-pixel header bar, 12 pixels in from each side, with a
/// 16-pixel padding; its first 70 pixels hold the verdict word. Checks that this region is
/// mostly the verdict's colour, that the text-free padding strips on both sides are entirely
/// that colour (so the banner spans the phone's width, not clipped), and that the header bar
/// above it is not.
fn check_banner(shot: &Shot, hue: Hue, what: &str) {
    assert_eq!(
        (shot.width, shot.height),
        (WIDTH, HEIGHT),
        "{what}: screenshot size"
    );
    let rows = (60, 130);
    let whole = shot.share(hue, (16, 344), rows);
    let left = shot.share(hue, (14, 26), rows);
    let right = shot.share(hue, (334, 346), rows);
    // The header bar's text-free left end: dark blue, whatever the verdict.
    let header = shot.share(hue, (0, 12), (0, 40));
    assert!(
        whole > 0.6 && left > 0.97 && right > 0.97 && header < 0.01,
        "{what}: banner should be {hue:?}: {whole:.2} of the banner area, {left:.2} of its left \
         and {right:.2} of its right padding, {header:.2} of the header; pixel (20,80) is {:?}",
        shot.at(20, 80)
    );
}

// ---------------------------------------------------------------------------------------------
// The DOM
// ---------------------------------------------------------------------------------------------

/// The text a reader sees: the body without tags (block elements separate words, inline ones
/// do not), character references decoded, white space collapsed.
fn visible_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p", "li", "dt", "dd", "h1", "h2", "section", "br", "ul", "ol", "dl", "header", "footer",
        "main", "summary", "details", "pre", "div", "form", "label", "button", "input",
    ];
    let html = html.find("<body").map_or(html, |i| &html[i..]);
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        let tag = rest[open + 1..close.saturating_sub(1)].trim_start_matches('/');
        let name: String = tag
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        if BLOCKS.contains(&name.to_ascii_lowercase().as_str()) {
            out.push(' ');
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The HTML between `start` (included) and the next `end` (included).
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = html.find(start)?;
    let j = html[i..].find(end)? + i + end.len();
    Some(&html[i..j])
}

/// What one page must show.
struct Expect {
    what: &'static str,
    url: String,
    /// Banner class, English word, Chinese word, colour.
    verdict: (&'static str, &'static str, &'static str, Hue),
    /// Phrases of the visible text that must be there.
    shown: Vec<String>,
    /// Phrases that must not be.
    not_shown: Vec<String>,
    /// The timeline entries, oldest first: how each entry's text starts, and a phrase it
    /// contains; empty when the page has no timeline.
    timeline: Vec<(String, String)>,
}

fn check_dom(dom: &str, e: &Expect, how: &str) {
    let what = format!("{} ({how})", e.what);
    assert!(dom.contains("</html>"), "{what}: no document: {:.300}", dom);
    let (class, en, zh, _) = e.verdict;
    assert_eq!(
        dom.matches("class=\"banner ").count(),
        1,
        "{what}: one banner"
    );
    let banner = between(dom, "<section class=\"banner ", "</section>")
        .unwrap_or_else(|| panic!("{what}: no banner"));
    assert!(
        banner.starts_with(&format!("<section class=\"banner {class}\"")),
        "{what}: banner class: {banner}"
    );
    let banner_text = visible_text(banner);
    assert!(
        banner_text.contains(&format!("{en} {zh}")),
        "{what}: banner says {banner_text:?}, expected {en} {zh}"
    );
    for other in ["VALID", "REVOKED", "SUPERSEDED", "UNKNOWN", "SEAL INVALID"] {
        if other != en && !(en == "SEAL INVALID" && other == "VALID") {
            assert!(
                !banner_text.contains(other),
                "{what}: banner also says {other}"
            );
        }
    }
    let text = visible_text(dom);
    for s in &e.shown {
        assert!(
            text.contains(s.as_str()),
            "{what}: missing {s:?} in\n{text}"
        );
    }
    for s in &e.not_shown {
        assert!(!text.contains(s.as_str()), "{what}: shows {s:?} in\n{text}");
    }
    match between(dom, "<ol class=\"timeline\">", "</ol>") {
        None => assert!(e.timeline.is_empty(), "{what}: no timeline"),
        Some(ol) => {
            let items: Vec<String> = ol.split("<li>").skip(1).map(visible_text).collect();
            assert_eq!(
                items.len(),
                e.timeline.len(),
                "{what}: timeline entries {items:#?}"
            );
            for (item, (title, detail)) in items.iter().zip(&e.timeline) {
                assert!(
                    item.starts_with(title.as_str()) && item.contains(detail.as_str()),
                    "{what}: timeline entry {item:?}, expected {title:?} … {detail:?}"
                );
            }
        }
    }
    // Server-rendered, self-contained: nothing to run, nothing from elsewhere.
    let lower = dom.to_ascii_lowercase();
    for bad in [
        "<script",
        "<link",
        "<iframe",
        "src=\"http",
        "src=\"//",
        " onload=",
    ] {
        assert!(!lower.contains(bad), "{what}: page contains {bad}");
    }
}

/// English and Chinese names of the demo's event kinds, as the timeline shows them.
fn event_title(kind: &str) -> &'static str {
    match kind {
        "shipped" => "Shipped 已发运",
        "customs_inspected" => "Customs inspected 海关查验",
        "customs_released" => "Customs released 海关放行",
        "received" => "Received 已收货",
        "ownership_transferred" => "Ownership transferred 所有权转移",
        "installed" => "Installed 已安装",
        "tested" => "Tested 已检测",
        other => panic!("event kind {other} is not in this test's table"),
    }
}

/// Timeline entries of a certificate: its logging, then each event by index, as (title,
/// a phrase of its details).
fn timeline_of(v: &CertificateView) -> Vec<(String, String)> {
    let mut events: Vec<_> = v.events.iter().collect();
    events.sort_by_key(|e| e.index);
    let logged = ("Certificate logged 证书登记".to_owned(), " UTC".to_owned());
    std::iter::once(logged)
        .chain(events.iter().map(|e| {
            let at = |p: &str| e.body.pointer(p).and_then(Value::as_str).unwrap();
            (
                event_title(at("/event/event")).to_owned(),
                format!(
                    "{}, {} · signed by 签名方 {}",
                    at("/event/location/place"),
                    at("/event/location/country"),
                    e.signer
                ),
            )
        }))
        .collect()
}

/// What every certificate page shows of its certificate.
fn certificate_facts(v: &CertificateView) -> Vec<String> {
    let c: Value = serde_json::from_str(v.certificate.get()).unwrap();
    let text = |p: &str| c.pointer(p).and_then(Value::as_str).unwrap().to_owned();
    let mut shown = vec![
        format!("Product 产品名称 {}", text("/product/name")),
        format!("GTIN 商品编码 {}", v.gtin),
        format!("Serial number 序列号 {}", v.serial),
        format!("Certificate ID 证书编号 {}", v.certificate_id),
        format!("Log entry index 日志条目编号 {}", v.index),
        "Inclusion proof verified 包含证明已验证 ✓ yes 是".to_owned(),
        "Seal valid 封印有效: the QR label was issued by this ledger for this very unit".to_owned(),
        format!("Marking 标识 {}", text("/marking")),
        format!(
            "Core origin country 旧件来源国 {}",
            text("/core/origin_country")
        ),
    ];
    let issuer = &v.issuer;
    shown.push(format!(
        "Remanufacturer 再制造商 {} ({})",
        issuer.display_name.as_deref().unwrap(),
        issuer.name
    ));
    shown.push(format!(
        "Country 国家 {}",
        issuer.country.as_deref().unwrap()
    ));
    shown
}

/// The five pages and what each must show.
fn expectations(server: &Server) -> Vec<Expect> {
    let valid = server.view("eng-001");
    let revoked = server.view("alt-003");
    let superseded = server.view("eng-002");
    let newer = server.view("eng-002-r1");

    // Known answers from fixtures/demo/demo.jsonl, so that the page is not only compared with
    // the ledger's own answer.
    assert_eq!(valid.gtin, "09506001200513");
    assert_eq!(valid.serial, "SZ-2026/000871");
    assert_eq!(valid.index, 9, "after the genesis entry and eight parties");
    assert_eq!(valid.events.len(), 8);
    assert_eq!(revoked.events.len(), 4);

    let mut v = Expect {
        what: "valid eng-001",
        url: valid.qr_url.clone().unwrap(),
        verdict: ("verdict-valid", "VALID", "有效", Hue::Green),
        shown: certificate_facts(&valid),
        not_shown: vec!["Revocation 撤销".into(), "Replaced by".into()],
        timeline: timeline_of(&valid),
    };
    v.shown.extend([
        "Remanufactured 2.8 L common-rail diesel engine".into(),
        "GTIN 商品编码 09506001200513".into(),
        "Serial number 序列号 SZ-2026/000871".into(),
        "Remanufacturer 再制造商 Suzhou Greenpower Remanufacturing Co., Ltd. (suzhou-reman.example)"
            .into(),
        "Country 国家 CN".into(),
        "Warranty 质保".into(),
        "Environmental savings 环境效益".into(),
    ]);

    let rev = revoked.revocation.as_ref().unwrap();
    let mut r = Expect {
        what: "revoked alt-003",
        url: revoked.qr_url.clone().unwrap(),
        verdict: ("verdict-revoked", "REVOKED", "已撤销", Hue::Red),
        shown: certificate_facts(&revoked),
        not_shown: vec!["Replaced by".into()],
        timeline: timeline_of(&revoked),
    };
    r.shown.extend([
        "Remanufactured 14 V 220 A alternator".into(),
        "GTIN 商品编码 09506003200528".into(),
        "Serial number 序列号 TXR2609-12098".into(),
        "Remanufacturer 再制造商 Lone Star Remanufacturing LLC (texas-reman.example)".into(),
        "Revocation 撤销".into(),
        "Reason 原因 Recall 召回".into(),
        "Note 备注 Field bulletin LSR-FB-2026-014".into(),
        "Revoked by 撤销方 texas-reman.example".into(),
        format!("Log entry 日志条目 {}", rev.index),
    ]);

    let mut s = Expect {
        what: "superseded eng-002",
        url: superseded.qr_url.clone().unwrap(),
        verdict: ("verdict-superseded", "SUPERSEDED", "已被取代", Hue::Amber),
        shown: certificate_facts(&superseded),
        not_shown: vec!["Revocation 撤销".into()],
        timeline: timeline_of(&superseded),
    };
    s.shown.extend([
        "Remanufactured 4.5 L 4-cylinder tractor diesel engine".into(),
        format!("Replaced by 已被取代为: {}", newer.certificate_id),
        format!("{} · valid 有效", newer.certificate_id),
    ]);

    let unknown_gtin = common::gtin(999_999);
    let u = Expect {
        what: "unknown product",
        url: format!("{}/01/{unknown_gtin}/21/NO-SUCH-UNIT-1", server.base),
        verdict: ("verdict-unknown", "UNKNOWN", "未知", Hue::Grey),
        shown: vec![
            "Not found 未找到证书".into(),
            "No certificate is logged for this unit".into(),
            format!("GTIN 商品编码 {unknown_gtin}"),
            "Serial number 序列号 NO-SUCH-UNIT-1".into(),
        ],
        not_shown: vec!["Ledger proof".into(), "Seal check".into()],
        timeline: vec![],
    };

    // The valid label with one character of its seal's signature changed.
    let url = valid.qr_url.clone().unwrap();
    let at = url.len() - 20;
    let flipped = if &url[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    let t = Expect {
        what: "tampered seal on eng-001",
        url: tampered,
        verdict: ("verdict-seal-invalid", "SEAL INVALID", "封印无效", Hue::Red),
        shown: vec![
            "✗ Seal invalid 封印无效:".into(),
            "Label not verified 标签未通过核验".into(),
            format!("GTIN 商品编码 {}", valid.gtin),
            format!("Serial number 序列号 {}", valid.serial),
            format!("{} · valid 有效", valid.certificate_id),
        ],
        // The unit has a certificate: the page must not claim otherwise, nor vouch for it.
        not_shown: vec![
            "No certificate is logged".into(),
            "Ledger proof".into(),
            "Seal valid".into(),
        ],
        timeline: vec![],
    };
    vec![v, r, s, u, t]
}

// ---------------------------------------------------------------------------------------------
// Chromium on the command line: --dump-dom and --screenshot
// ---------------------------------------------------------------------------------------------

/// Waits for a child until the deadline, killing it then.
fn wait_or_kill(child: &mut Child, deadline: Instant, what: &str) {
    loop {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: Chromium still running after {CHROMIUM_TIMEOUT:?}, killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One fresh Chromium process (its own profile) that loads `url`, prints the DOM and writes a
/// screenshot of the viewport.
fn render(chromium: &Path, url: &str, what: &str) -> (String, Vec<u8>) {
    let profile = tempfile::tempdir().unwrap();
    let png_path = profile.path().join("shot.png");
    let mut child = Command::new(chromium)
        .args(BASE_FLAGS)
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("p").display()
        ))
        .args([
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=2000",
            "--dump-dom",
        ])
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    wait_or_kill(&mut child, Instant::now() + CHROMIUM_TIMEOUT, what);
    let dom = reader.join().unwrap();
    let png = std::fs::read(&png_path)
        .unwrap_or_else(|e| panic!("{what}: no screenshot ({e}); DOM: {dom:.300}"));
    (dom, png)
}

fn save(name: &str, png: &[u8]) {
    if let Some(dir) = std::env::var_os("REMAN_SCREENSHOT_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Chromium over the DevTools protocol on a pipe, scripts disabled
// ---------------------------------------------------------------------------------------------

/// A Chromium process driven over `--remote-debugging-pipe`: it reads NUL-terminated JSON
/// commands on fd 3 and writes answers and events on fd 4 (mapped here to its stdin and
/// stdout by `sh`).
struct Cdp {
    child: Child,
    to: ChildStdin,
    from: mpsc::Receiver<Value>,
    events: VecDeque<Value>,
    next_id: u64,
    session: Option<String>,
    deadline: Instant,
    _profile: tempfile::TempDir,
}

impl Cdp {
    fn start(chromium: &Path) -> Cdp {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg("sh")
            .arg(chromium)
            .args(BASE_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--remote-debugging-pipe", "about:blank"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let to = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut msg = Vec::new();
            while r.read_until(0, &mut msg).is_ok_and(|n| n > 0) {
                if msg.last() == Some(&0) {
                    msg.pop();
                }
                let Ok(v) = serde_json::from_slice::<Value>(&msg) else {
                    break;
                };
                if tx.send(v).is_err() {
                    break;
                }
                msg.clear();
            }
        });
        let mut cdp = Cdp {
            child,
            to,
            from,
            events: VecDeque::new(),
            next_id: 0,
            session: None,
            deadline: Instant::now() + CHROMIUM_TIMEOUT,
            _profile: profile,
        };
        // Attach to the page Chromium opened, then: no scripts, a phone, network events.
        let targets = cdp.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        cdp.call(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        );
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": true}),
        );
        cdp.call("Page.enable", json!({}));
        cdp.call("Network.enable", json!({}));
        cdp
    }

    fn recv(&mut self) -> Value {
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.from.recv_timeout(left).unwrap_or_else(|e| {
            panic!("Chromium (DevTools pipe): no answer within {CHROMIUM_TIMEOUT:?}: {e}")
        })
    }

    /// Sends a command (to the attached page, once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        self.to.flush().unwrap();
        loop {
            let m = self.recv();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.events.push_back(m);
        }
    }

    /// Loads a page with scripts disabled and waits for its load event; returns the URLs of
    /// every request made until then.
    fn open(&mut self, url: &str) -> Vec<String> {
        self.events.clear();
        let nav = self.call("Page.navigate", json!({"url": url}));
        assert!(nav.get("errorText").is_none(), "{url}: {nav}");
        let mut seen: Vec<Value> = self.events.drain(..).collect();
        while !seen.iter().any(|m| m["method"] == "Page.loadEventFired") {
            seen.push(self.recv());
        }
        seen.iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    fn dom(&mut self) -> String {
        let doc = self.call("DOM.getDocument", json!({"depth": 0}));
        let html = self.call("DOM.getOuterHTML", json!({"nodeId": doc["root"]["nodeId"]}));
        html["outerHTML"].as_str().unwrap().to_owned()
    }

    /// The document's width and the layout viewport's width, in CSS pixels. On an emulated
    /// phone a page wider than the screen is zoomed out, widening both.
    fn widths(&mut self) -> (f64, f64) {
        let m = self.call("Page.getLayoutMetrics", json!({}));
        (
            m["cssContentSize"]["width"].as_f64().unwrap(),
            m["cssLayoutViewport"]["clientWidth"].as_f64().unwrap(),
        )
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Cdp {
    /// Asks Chromium to close (so it is done with its profile before that is removed), and
    /// kills it if it has not within a few seconds.
    fn drop(&mut self) {
        let _ = self
            .to
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0");
        let _ = self.to.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the scripts-off phone run checks, for all pages.
fn check_without_javascript(chromium: &Path, base: &str, pages: &[Expect]) {
    let mut cdp = Cdp::start(chromium);

    // The two probes can fail: a script that would change the page does not run, and a page
    // wider than the phone is seen as such.
    cdp.open(r#"data:text/html,<p id="x">static</p><script>document.getElementById("x").textContent="scripted"</script>"#);
    let dom = cdp.dom();
    assert!(
        dom.contains(">static<") && !dom.contains(">scripted<"),
        "scripts are not disabled: {dom}"
    );
    cdp.open(r#"data:text/html,<meta name="viewport" content="width=device-width"><div style="width:500px">wide</div>"#);
    let (content, viewport) = cdp.widths();
    assert!(
        content > f64::from(WIDTH) && viewport > f64::from(WIDTH),
        "the overflow probe is not seen as too wide: {content} / {viewport}"
    );

    for e in pages {
        let requests = cdp.open(&e.url);
        assert!(!requests.is_empty(), "{}: no request seen", e.what);
        for r in &requests {
            assert!(
                r.starts_with(&format!("{base}/")),
                "{}: request to another host: {r}",
                e.what
            );
        }
        check_dom(&cdp.dom(), e, "JavaScript off");
        let (content, viewport) = cdp.widths();
        assert!(
            content <= f64::from(WIDTH) && viewport == f64::from(WIDTH),
            "{}: page is {content} CSS pixels wide on a {WIDTH}-pixel phone (viewport {viewport})",
            e.what
        );
        let png = cdp.screenshot();
        check_banner(&Shot::decode(&png), e.verdict.3, e.what);
        save(&format!("nojs-{}", e.what.replace(' ', "-")), &png);
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn status_pages_on_a_360_pixel_phone() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium not found, and CI is set: .ci/run must install chromium \
                 (apt-get install -y chromium)"
            );
        }
        println!("SKIPPED: chromium not found (apt-get install chromium)");
        return;
    };
    let started = Instant::now();
    let server = Server::start();
    let pages = expectations(&server);
    let unknown = &pages[3];
    assert_eq!(server.status_of(&unknown.url), 404, "unknown product");
    assert_eq!(server.status_of(&pages[0].url), 200, "valid product");

    std::thread::scope(|s| {
        // The scripts-off phone run, and the command-line runs two at a time.
        let mut runs = vec![s.spawn(|| check_without_javascript(&chromium, &server.base, &pages))];
        for half in [0, 1] {
            let (chromium, pages) = (&chromium, &pages);
            runs.push(s.spawn(move || {
                for e in pages.iter().skip(half).step_by(2) {
                    let (dom, png) = render(chromium, &e.url, e.what);
                    save(&e.what.replace(' ', "-"), &png);
                    check_dom(&dom, e, "command line");
                    check_banner(&Shot::decode(&png), e.verdict.3, e.what);
                }
            }));
        }
        for r in runs {
            if let Err(p) = r.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
    server.stop();
    println!("browser test took {:?}", started.elapsed());
}

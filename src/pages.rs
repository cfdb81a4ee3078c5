//! Server-rendered HTML pages: the status page a customs officer sees after scanning a label,
//! the home page (look up a unit or upload a photo of its label) and error pages.
//!
//! The pages must work on a basic phone at a border post: no JavaScript, nothing loaded from
//! other hosts (inline CSS, system fonts; the only image is the same server's QR code at a
//! relative URL), a fluid one-column layout that reads on a 360-pixel-wide screen, and English
//! with the Chinese term beside each key term. Everything inserted into a page is
//! HTML-escaped with [`escape`]: certificate contents are written by remanufacturers and must
//! never be able to change the page.
//!
//! Form fields, for the HTTP layer: `GET /lookup?gtin=…&serial=…`, `GET /lookup?id=…` and
//! `POST /scan` (`multipart/form-data`, the photo in the field `photo`).

use serde_json::Value;
use std::fmt::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// HTML-escapes text for use in element content and in double- or single-quoted attribute
/// values: `&`, `<`, `>`, `"` and `'` become character references.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The overall answer of the status page, shown as its coloured banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The unit has a valid certificate (and the seal, if given, is valid).
    Valid,
    /// The unit's certificate was revoked.
    Revoked,
    /// The certificate was replaced by a newer one for the same unit.
    Superseded,
    /// No certificate is logged for the unit.
    Unknown,
    /// The seal in the scanned link does not verify: the label is forged, altered or moved.
    SealInvalid,
}

impl Verdict {
    /// The banner's English word, in capitals.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Valid => "VALID",
            Verdict::Revoked => "REVOKED",
            Verdict::Superseded => "SUPERSEDED",
            Verdict::Unknown => "UNKNOWN",
            Verdict::SealInvalid => "SEAL INVALID",
        }
    }

    /// The banner's Chinese term.
    pub fn chinese(self) -> &'static str {
        match self {
            Verdict::Valid => "有效",
            Verdict::Revoked => "已撤销",
            Verdict::Superseded => "已被取代",
            Verdict::Unknown => "未知",
            Verdict::SealInvalid => "封印无效",
        }
    }

    /// The CSS class that colours the banner: `verdict-valid` (green), `verdict-revoked` (red),
    /// `verdict-superseded` (amber), `verdict-unknown` (grey), `verdict-seal-invalid` (red).
    pub fn css_class(self) -> &'static str {
        match self {
            Verdict::Valid => "verdict-valid",
            Verdict::Revoked => "verdict-revoked",
            Verdict::Superseded => "verdict-superseded",
            Verdict::Unknown => "verdict-unknown",
            Verdict::SealInvalid => "verdict-seal-invalid",
        }
    }

    /// A one-sentence meaning shown under the banner word.
    pub fn meaning(self) -> &'static str {
        match self {
            Verdict::Valid => {
                "This unit is a certified remanufactured product and its certificate is in force."
            }
            Verdict::Revoked => {
                "The certificate of this unit was revoked: do not treat it as a certified remanufactured product."
            }
            Verdict::Superseded => {
                "This certificate was replaced by a newer one for the same unit: check the newer certificate."
            }
            Verdict::Unknown => {
                "No certificate is logged for this unit: it is not a certified remanufactured product of this ledger."
            }
            Verdict::SealInvalid => {
                "The seal in the scanned code does not verify: the label may be forged, altered or taken from another unit."
            }
        }
    }

    /// A symbol beside the word, so the verdict does not rest on colour alone.
    fn symbol(self) -> &'static str {
        match self {
            Verdict::Valid => "✓",
            Verdict::Revoked | Verdict::SealInvalid => "✗",
            Verdict::Superseded => "!",
            Verdict::Unknown => "?",
        }
    }
}

/// The result of checking the seal carried in the scanned link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealCheck {
    /// The link carried no seal.
    NotGiven,
    /// The seal verifies for this unit under the ledger's key.
    Valid,
    /// The seal does not verify; the text says why.
    Invalid(String),
    /// The seal verifies but names another certificate than this unit's.
    OtherProduct {
        /// The certificate the seal names.
        certificate_id: String,
    },
}

/// Everything the status page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    /// The banner.
    pub verdict: Verdict,
    /// The GTIN asked for.
    pub gtin: String,
    /// The serial asked for.
    pub serial: String,
    /// The seal check result.
    pub seal: SealCheck,
    /// The JSON answer of `GET /api/v1/certificates/{id}` (SPEC §6) for the certificate shown,
    /// or `None` when no certificate is known.
    pub certificate: Option<Value>,
    /// The unit's other certificates: (certificate ID, status).
    pub other_certificates: Vec<(String, String)>,
    /// Whether the server checked the certificate's inclusion proof against the checkpoint.
    pub proof_verified: bool,
}

const STYLE: &str = r#"
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","PingFang SC","Microsoft YaHei",sans-serif;font-size:16px;line-height:1.45;color:#1c1c1c;background:#f4f4f2}
header.top{background:#1f2a36;color:#fff;padding:.6rem 1rem;font-weight:600}
header.top a{color:#fff;text-decoration:none}
header.top .zh{color:#c5ced8}
main{max-width:44rem;margin:0 auto;padding:.75rem}
footer{max-width:44rem;margin:0 auto;padding:1rem .75rem 2rem;color:#555;font-size:.85rem}
section{background:#fff;border:1px solid #dcdcd8;border-radius:.5rem;padding:.75rem 1rem;margin:0 0 .75rem}
h1{font-size:1.3rem;margin:.25rem 0 .5rem}
h2{font-size:1.05rem;margin:0 0 .5rem;border-bottom:1px solid #e4e4e0;padding-bottom:.3rem}
.zh{color:#555;font-weight:normal}
.banner{border:none;color:#fff;padding:1rem}
.banner .word{font-size:2rem;font-weight:800;letter-spacing:.03em;margin:0;line-height:1.15}
.banner .word .zh{color:inherit;font-weight:700;white-space:nowrap}
.banner p{margin:.4rem 0 0}
.verdict-valid{background:#0b6b2e}
.verdict-revoked{background:#b3141e}
.verdict-seal-invalid{background:#b3141e;background-image:repeating-linear-gradient(45deg,transparent 0 14px,rgba(0,0,0,.14) 14px 28px)}
.verdict-superseded{background:#f0a202;color:#1f1600}
.verdict-unknown{background:#5f6368}
dl.facts{margin:0;display:grid;grid-template-columns:1fr;gap:0}
dl.facts dt{font-size:.8rem;color:#555;margin-top:.45rem}
dl.facts dd{margin:0;font-weight:500;overflow-wrap:anywhere}
@media (min-width:34rem){dl.facts{grid-template-columns:minmax(9rem,1fr) 2fr;column-gap:1rem}dl.facts dt{margin-top:.4rem}dl.facts dd{margin-top:.4rem}}
ul,ol{margin:.25rem 0;padding-left:1.25rem}
ol.timeline li{margin:0 0 .6rem}
.muted{color:#555;font-size:.9rem}
.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere}
.ok{color:#0b6b2e;font-weight:700}
.bad{color:#b3141e;font-weight:700}
.warn{color:#8a5a00;font-weight:700}
.alert{border-left:.4rem solid #b3141e}
.notice{border-left:.4rem solid #f0a202}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;background:#f4f4f2;padding:.5rem;border-radius:.3rem}
img.qr{display:block;width:10rem;height:10rem;margin:.5rem 0}
form{margin:0}
label{display:block;font-size:.9rem;margin:.5rem 0 .2rem}
input{font:inherit;width:100%;padding:.55rem;border:1px solid #9a9a96;border-radius:.3rem;background:#fff}
button{font:inherit;font-weight:600;margin-top:.75rem;padding:.6rem 1.1rem;border:0;border-radius:.3rem;background:#1f2a36;color:#fff;width:100%}
@media (min-width:34rem){button{width:auto}}
a{color:#0b57a4}
"#;

/// Page skeleton: document head (charset, viewport, a restrictive CSP, inline style), the
/// header bar, `body` (already HTML) and the footer.
fn layout(title: &str, body: &str) -> String {
    let mut page = String::with_capacity(body.len() + STYLE.len() + 1024);
    let _ = write!(
        page,
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
            "style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'\">\n",
            "<meta name=\"referrer\" content=\"no-referrer\">\n",
            "<title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n",
            "<header class=\"top\"><a href=\"/\">reman-ledger · {zh}</a></header>\n",
            "<main>\n{body}</main>\n",
            "<footer>Remanufactured-product certificates on a public, append-only, verifiable log. ",
            "<span lang=\"zh-Hans\">再制造产品认证 · 可验证的只追加日志</span></footer>\n",
            "</body>\n</html>\n"
        ),
        title = escape(title),
        style = STYLE,
        zh = zh("再制造产品认证账本"),
        body = body,
    );
    page
}

/// A Chinese term, marked as such so that screen readers and font selection get it right.
fn zh(term: &str) -> String {
    format!(
        "<span class=\"zh\" lang=\"zh-Hans\">{}</span>",
        escape(term)
    )
}

/// A label: the English term with the Chinese term beside it.
fn term(en: &str, zh_term: &str) -> String {
    format!("{} {}", escape(en), zh(zh_term))
}

/// A fact list (`<dl>`) being built; rows with no value are left out.
struct Facts(String);

impl Facts {
    fn new() -> Facts {
        Facts(String::from("<dl class=\"facts\">\n"))
    }

    /// A row whose value is already HTML.
    fn html(&mut self, en: &str, zh_term: &str, value_html: &str) {
        let _ = writeln!(
            self.0,
            "<dt>{}</dt><dd>{value_html}</dd>",
            term(en, zh_term)
        );
    }

    /// A row of plain text, left out when absent or empty.
    fn text(&mut self, en: &str, zh_term: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            self.html(en, zh_term, &escape(v));
        }
    }

    fn finish(mut self) -> String {
        self.0.push_str("</dl>\n");
        self.0
    }
}

/// The string at a JSON pointer.
fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A JSON number or string at a pointer, as text (`72.0` reads `72`).
fn num(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::Number(n) => Some(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        }),
        Value::String(t) => Some(t.clone()),
        _ => None,
    }
}

/// An array at a pointer (empty when absent).
fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// An RFC 3339 time made readable: `2026-11-25 09:30:00 UTC+08:00`, or `… UTC`; anything
/// unparsable is shown as it is.
fn when(t: &str) -> String {
    let Ok(dt) = OffsetDateTime::parse(t, &Rfc3339) else {
        return t.to_owned();
    };
    let base = dt
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_else(|_| t.to_owned());
    if dt.offset().is_utc() {
        format!("{base} UTC")
    } else {
        let off = dt
            .offset()
            .format(format_description!(
                "[offset_hour sign:mandatory]:[offset_minute]"
            ))
            .unwrap_or_default();
        format!("{base} UTC{off}")
    }
}

/// English and Chinese names of the event kinds of SPEC §3.4.
fn event_name(kind: &str) -> (String, &'static str) {
    let (en, zh_term) = match kind {
        "shipped" => ("Shipped", "已发运"),
        "customs_inspected" => ("Customs inspected", "海关查验"),
        "customs_released" => ("Customs released", "海关放行"),
        "customs_refused" => ("Customs refused", "海关拒绝入境"),
        "received" => ("Received", "已收货"),
        "ownership_transferred" => ("Ownership transferred", "所有权转移"),
        "installed" => ("Installed", "已安装"),
        "returned_as_core" => ("Returned as core", "作为旧件退回"),
        "scrapped" => ("Scrapped", "已报废"),
        "tested" => ("Tested", "已检测"),
        other => return (other.to_owned(), ""),
    };
    (en.to_owned(), zh_term)
}

/// English and Chinese names of the revocation reasons of SPEC §3.3.
fn reason_name(reason: &str) -> (String, &'static str) {
    let (en, zh_term) = match reason {
        "recall" => ("Recall", "召回"),
        "fraud" => ("Fraud", "欺诈"),
        "error" => ("Error in the certificate", "证书有误"),
        "other" => ("Other", "其他"),
        other => return (other.to_owned(), ""),
    };
    (en.to_owned(), zh_term)
}

/// Certificate status words as shown in lists.
fn status_term(status: &str) -> String {
    match status {
        "valid" => term("valid", "有效"),
        "revoked" => term("revoked", "已撤销"),
        "superseded" => term("superseded", "已被取代"),
        other => escape(other),
    }
}

/// Link to the status page of a certificate, by ID (same server, relative URL).
fn cert_link(id: &str) -> String {
    format!(
        "<a class=\"mono\" href=\"/lookup?id={}\">{}</a>",
        escape(&crate::seal::percent_encode(id)),
        escape(id)
    )
}

fn banner(verdict: Verdict) -> String {
    format!(
        "<section class=\"banner {class}\" role=\"status\">\n<p class=\"word\">{sym} {en} {zh}</p>\n<p>{meaning}</p>\n</section>\n",
        class = verdict.css_class(),
        sym = verdict.symbol(),
        en = verdict.label(),
        zh = zh(verdict.chinese()),
        meaning = escape(verdict.meaning()),
    )
}

fn seal_section(seal: &SealCheck) -> String {
    let (class, html) = match seal {
        SealCheck::NotGiven => (
            "",
            format!(
                "<p>{}: the link carries no seal, so this page shows the ledger's record only. Scan the QR code on the label to check the label itself.</p>",
                term("No seal given", "未提供封印")
            ),
        ),
        SealCheck::Valid => (
            "",
            format!(
                "<p><span class=\"ok\">✓ {}</span>: the QR label was issued by this ledger for this very unit.</p>",
                term("Seal valid", "封印有效")
            ),
        ),
        SealCheck::Invalid(why) => (
            " alert",
            format!(
                "<p><span class=\"bad\">✗ {}</span>: {}</p><p>The label may be forged or altered.</p>",
                term("Seal invalid", "封印无效"),
                escape(why)
            ),
        ),
        SealCheck::OtherProduct { certificate_id } => (
            " alert",
            format!(
                "<p><span class=\"bad\">✗ {}</span>: the seal is genuine but belongs to certificate {}, not to this unit. The label was probably moved from another unit.</p>",
                term("Seal of another product", "封印属于其他产品"),
                cert_link(certificate_id)
            ),
        ),
    };
    format!(
        "<section class=\"seal{class}\">\n<h2>{}</h2>\n{html}\n</section>\n",
        term("Seal check", "封印核验")
    )
}

fn product_section(view: &StatusView, c: &Value) -> String {
    let mut f = Facts::new();
    let p = |ptr: &str| s(c, ptr);
    f.text("Product", "产品名称", p("/product/name"));
    f.text(
        "GTIN",
        "商品编码",
        Some(p("/product/gtin").unwrap_or(&view.gtin)),
    );
    f.text(
        "Serial number",
        "序列号",
        Some(p("/product/serial").unwrap_or(&view.serial)),
    );
    f.text("Category", "类别", p("/product/category"));
    f.text("HS code", "海关编码", p("/product/hs_code"));
    f.text("OEM", "原始制造商", p("/product/oem"));
    f.text("Part number", "零件号", p("/product/part_number"));
    format!(
        "<section>\n<h2>{}</h2>\n{}</section>\n",
        term("Product", "产品"),
        f.finish()
    )
}

fn issuer_section(answer: &Value) -> String {
    let mut f = Facts::new();
    let display = s(answer, "/issuer/display_name");
    let name = s(answer, "/issuer/name");
    let who = match (display, name) {
        (Some(d), Some(n)) if d != n => Some(format!("{d} ({n})")),
        (Some(d), _) => Some(d.to_owned()),
        (None, n) => n.map(str::to_owned),
    };
    f.text("Remanufacturer", "再制造商", who.as_deref());
    f.text("Country", "国家", s(answer, "/issuer/country"));
    f.text("Issued", "签发日期", s(answer, "/certificate/issued"));
    if let Some(old) = s(answer, "/certificate/supersedes") {
        f.html("Replaces", "取代", &cert_link(old));
    }
    format!(
        "<section>\n<h2>{}</h2>\n{}</section>\n",
        term("Issuer", "签发方"),
        f.finish()
    )
}

fn remanufacturing_section(c: &Value) -> String {
    let mut f = Facts::new();
    let standards: Vec<String> = arr(c, "/process/standards")
        .iter()
        .filter_map(Value::as_str)
        .map(|t| format!("<li>{}</li>", escape(t)))
        .collect();
    if !standards.is_empty() {
        f.html(
            "Standards",
            "标准",
            &format!("<ul>{}</ul>", standards.concat()),
        );
    }
    let tests: Vec<String> = arr(c, "/process/tests")
        .iter()
        .map(|t| {
            let name = s(t, "/name").unwrap_or("(unnamed test)");
            let result = match s(t, "/result") {
                Some("pass") => format!("<span class=\"ok\">{}</span>", term("pass", "合格")),
                Some("fail") => format!("<span class=\"bad\">{}</span>", term("fail", "不合格")),
                Some(other) => escape(other),
                None => String::new(),
            };
            let same = if t.pointer("/same_as_new_product") == Some(&Value::Bool(true)) {
                format!(" · {}", term("same test as a new product", "与新品相同"))
            } else {
                String::new()
            };
            format!("<li>{}: {result}{same}</li>", escape(name))
        })
        .collect();
    if !tests.is_empty() {
        f.html("Tests", "检测", &format!("<ul>{}</ul>", tests.concat()));
    }
    if let Some(m) = num(c, "/warranty_months") {
        f.html(
            "Warranty",
            "质保",
            &format!("{} months {}", escape(&m), zh("个月")),
        );
    }
    f.text("Marking", "标识", s(c, "/marking"));
    f.text(
        "Core origin country",
        "旧件来源国",
        s(c, "/core/origin_country"),
    );
    f.text("Core source", "旧件来源", s(c, "/core/source"));
    f.text("Core ID", "旧件编号", s(c, "/core/core_id"));
    f.text("Facility", "再制造工厂", s(c, "/process/facility"));
    f.text(
        "Country of remanufacture",
        "再制造国",
        s(c, "/process/country"),
    );
    f.text("Completed", "完工日期", s(c, "/process/completed"));
    let steps: Vec<&str> = arr(c, "/process/steps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !steps.is_empty() {
        f.text("Process steps", "工序", Some(&steps.join(" → ")));
    }
    let parts: Vec<String> = arr(c, "/process/replaced_parts")
        .iter()
        .filter_map(|p| {
            let part = s(p, "/part")?;
            let new = if p.pointer("/new") == Some(&Value::Bool(true)) {
                format!(" ({})", term("new", "新件"))
            } else {
                String::new()
            };
            Some(format!("<li>{}{new}</li>", escape(part)))
        })
        .collect();
    if !parts.is_empty() {
        f.html(
            "Replaced parts",
            "更换零件",
            &format!("<ul>{}</ul>", parts.concat()),
        );
    }
    format!(
        "<section>\n<h2>{}</h2>\n{}</section>\n",
        term("Remanufacturing", "再制造"),
        f.finish()
    )
}

fn environment_section(c: &Value) -> Option<String> {
    c.pointer("/environment").filter(|e| e.is_object())?;
    let mut f = Facts::new();
    let with_unit = |ptr: &str, unit: &str| num(c, ptr).map(|n| format!("{n} {unit}"));
    f.text(
        "Energy saved",
        "节约能源",
        with_unit("/environment/energy_saved_kwh", "kWh").as_deref(),
    );
    f.text(
        "CO₂e saved",
        "减少碳排放",
        with_unit("/environment/co2e_saved_kg", "kg").as_deref(),
    );
    f.text(
        "Material reused",
        "材料再利用率",
        with_unit("/environment/material_reuse_pct", "%").as_deref(),
    );
    f.text(
        "Mass",
        "质量",
        with_unit("/environment/mass_kg", "kg").as_deref(),
    );
    f.text("Method", "计算方法", s(c, "/environment/method"));
    Some(format!(
        "<section>\n<h2>{}</h2>\n{}</section>\n",
        term("Environmental savings", "环境效益"),
        f.finish()
    ))
}

fn timeline_section(answer: &Value) -> String {
    let mut events: Vec<&Value> = arr(answer, "/events").iter().collect();
    // Oldest first, newest last, whatever order the answer lists them in.
    events.sort_by_key(|e| e.pointer("/index").and_then(Value::as_u64));
    let mut items = String::new();
    if let Some(t) = s(answer, "/integrated_time") {
        let _ = writeln!(
            items,
            "<li><strong>{}</strong><br><span class=\"muted\">{}</span></li>",
            term("Certificate logged", "证书登记"),
            escape(&when(t))
        );
    }
    for e in events {
        let kind = s(e, "/event/event").unwrap_or("event");
        let (en, zh_term) = event_name(kind);
        let title = if zh_term.is_empty() {
            escape(&en)
        } else {
            term(&en, zh_term)
        };
        let time = s(e, "/event/time")
            .or_else(|| s(e, "/integrated_time"))
            .map(when)
            .unwrap_or_default();
        let place = s(e, "/event/location/place").unwrap_or("");
        let country = s(e, "/event/location/country").unwrap_or("");
        let location = match (place.is_empty(), country.is_empty()) {
            (false, false) => format!("{place}, {country}"),
            (false, true) => place.to_owned(),
            (true, false) => country.to_owned(),
            (true, true) => String::new(),
        };
        let mut detail = vec![escape(&time)];
        if !location.is_empty() {
            detail.push(escape(&location));
        }
        if let Some(signer) = s(e, "/signer") {
            detail.push(format!(
                "{} <span class=\"mono\">{}</span>",
                term("signed by", "签名方"),
                escape(signer)
            ));
        }
        let mut extra = String::new();
        if let Some(r) = s(e, "/event/reference").filter(|r| !r.is_empty()) {
            let _ = write!(extra, "<br>{}: {}", term("Reference", "参考号"), escape(r));
        }
        if let Some(n) = s(e, "/event/note").filter(|n| !n.is_empty()) {
            let _ = write!(extra, "<br>{}: {}", term("Note", "备注"), escape(n));
        }
        let _ = writeln!(
            items,
            "<li><strong>{title}</strong><br><span class=\"muted\">{}</span>{extra}</li>",
            detail.join(" · ")
        );
    }
    format!(
        "<section>\n<h2>{}</h2>\n<ol class=\"timeline\">\n{items}</ol>\n</section>\n",
        term("Event timeline", "流转记录")
    )
}

fn revocation_section(answer: &Value) -> Option<String> {
    let r = answer.pointer("/revocation").filter(|r| r.is_object())?;
    let mut f = Facts::new();
    if let Some(reason) = s(r, "/revocation/reason") {
        let (en, zh_term) = reason_name(reason);
        let shown = if zh_term.is_empty() {
            escape(&en)
        } else {
            term(&en, zh_term)
        };
        f.html("Reason", "原因", &shown);
    }
    f.text("Note", "备注", s(r, "/revocation/note"));
    f.text(
        "Revoked at",
        "撤销时间",
        s(r, "/integrated_time").map(when).as_deref(),
    );
    f.text("Revoked by", "撤销方", s(r, "/signer"));
    if let Some(i) = num(r, "/index") {
        f.text("Log entry", "日志条目", Some(&i));
    }
    Some(format!(
        "<section class=\"alert\">\n<h2>{}</h2>\n{}</section>\n",
        term("Revocation", "撤销"),
        f.finish()
    ))
}

/// The tree size of a checkpoint text: its second line.
fn checkpoint_size(checkpoint: &str) -> Option<&str> {
    checkpoint
        .lines()
        .nth(1)
        .filter(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

fn proof_section(answer: &Value, proof_verified: bool) -> String {
    let mut f = Facts::new();
    let id = s(answer, "/certificate_id");
    if let Some(id) = id {
        f.html(
            "Certificate ID",
            "证书编号",
            &format!("<span class=\"mono\">{}</span>", escape(id)),
        );
    }
    if let Some(i) = num(answer, "/index") {
        f.text("Log entry index", "日志条目编号", Some(&i));
    }
    f.text(
        "Logged at",
        "记录时间",
        s(answer, "/integrated_time").map(when).as_deref(),
    );
    let checkpoint = s(answer, "/checkpoint");
    let size = num(answer, "/inclusion_proof/tree_size")
        .or_else(|| checkpoint.and_then(checkpoint_size).map(str::to_owned));
    f.text("Checkpoint tree size", "检查点树大小", size.as_deref());
    let verified = if proof_verified {
        format!("<span class=\"ok\">✓ yes {}</span>", zh("是"))
    } else {
        format!("<span class=\"bad\">✗ no {}</span>", zh("否"))
    };
    f.html("Inclusion proof verified", "包含证明已验证", &verified);
    if let Some(root) = s(answer, "/inclusion_proof/root") {
        f.html(
            "Tree root",
            "树根哈希",
            &format!("<span class=\"mono\">{}</span>", escape(root)),
        );
    }
    let mut html = f.finish();
    if let Some(cp) = checkpoint {
        let _ = writeln!(
            html,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            term("Signed checkpoint", "签名检查点"),
            escape(cp)
        );
    }
    if let Some(id) = id.filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit())) {
        let _ = writeln!(
            html,
            "<details><summary>{}</summary><img class=\"qr\" src=\"/api/v1/certificates/{id}/qr.svg\" alt=\"QR code of certificate {id}\" width=\"160\" height=\"160\"><p class=\"muted\">Compare with the code on the label.</p></details>",
            term("QR code", "二维码"),
            id = escape(id)
        );
    }
    format!(
        "<section>\n<h2>{}</h2>\n{html}</section>\n",
        term("Ledger proof", "账本证明")
    )
}

fn others_section(view: &StatusView) -> Option<String> {
    if view.other_certificates.is_empty() {
        return None;
    }
    let items: String = view
        .other_certificates
        .iter()
        .map(|(id, status)| format!("<li>{} · {}</li>\n", cert_link(id), status_term(status)))
        .collect();
    // With no certificate shown above (a seal that vouches for none), they are not "other".
    let heading = if view.certificate.is_some() {
        term("Other certificates of this unit", "本产品的其他证书")
    } else {
        term("Certificates of this unit", "本产品的证书")
    };
    Some(format!(
        "<section>\n<h2>{heading}</h2>\n<ul>\n{items}</ul>\n</section>\n"
    ))
}

/// The status page a customs officer sees after scanning a label (`/01/{gtin}/21/{serial}`):
/// the verdict banner, the seal check, and, when a certificate is known, product identity,
/// issuer, remanufacturing facts, environmental savings, the event timeline, the revocation
/// and the proof facts. For [`Verdict::Unknown`] it names the GTIN and serial asked for and
/// says that no certificate is logged for them; when no certificate is shown but the unit has
/// some (a seal that vouches for none of them), it says the label is not verified and lists them.
pub fn status_page(view: &StatusView) -> String {
    let mut body = banner(view.verdict);
    let answer = view.certificate.as_ref();
    let cert = answer.and_then(|a| a.pointer("/certificate"));
    let title_name = cert.and_then(|c| s(c, "/product/name"));
    let _ = writeln!(
        body,
        "<h1>{}</h1>",
        escape(title_name.unwrap_or("Remanufactured product lookup"))
    );
    if view.verdict == Verdict::Superseded
        && let Some(newer) = answer.and_then(|a| s(a, "/superseded_by"))
    {
        let _ = writeln!(
            body,
            "<section class=\"notice\"><p>{}: {}</p></section>",
            term("Replaced by", "已被取代为"),
            cert_link(newer)
        );
    }
    if view.seal != SealCheck::NotGiven || answer.is_some() {
        body.push_str(&seal_section(&view.seal));
    }
    match (answer, cert) {
        (Some(answer), Some(c)) => {
            body.push_str(&product_section(view, c));
            if let Some(r) = revocation_section(answer) {
                body.push_str(&r);
            }
            body.push_str(&issuer_section(answer));
            body.push_str(&remanufacturing_section(c));
            if let Some(e) = environment_section(c) {
                body.push_str(&e);
            }
            body.push_str(&timeline_section(answer));
            body.push_str(&proof_section(answer, view.proof_verified));
        }
        _ => {
            let mut asked = Facts::new();
            asked.text("GTIN", "商品编码", Some(&view.gtin));
            asked.text("Serial number", "序列号", Some(&view.serial));
            if view.other_certificates.is_empty() {
                let _ = writeln!(
                    body,
                    "<section>\n<h2>{}</h2>\n<p>No certificate is logged for this unit {}. It is not a certified remanufactured product of this ledger: check the GTIN and serial on the label, or treat the goods as uncertified.</p>\n{}</section>",
                    term("Not found", "未找到证书"),
                    zh("本账本中没有该产品的证书"),
                    asked.finish()
                );
            } else {
                // The unit has certificates, but the scanned seal vouches for none of them.
                let _ = writeln!(
                    body,
                    "<section class=\"alert\">\n<h2>{}</h2>\n<p>This ledger holds the certificates listed below for this GTIN and serial, but the seal on this label does not verify, so the label cannot be matched to any of them {}. Treat the label as suspect: compare the unit with the certificate, or hold the goods.</p>\n{}</section>",
                    term("Label not verified", "标签未通过核验"),
                    zh("标签封印无效，无法对应到证书"),
                    asked.finish()
                );
            }
        }
    }
    if let Some(o) = others_section(view) {
        body.push_str(&o);
    }
    body.push_str("<p><a href=\"/\">Look up another unit · <span lang=\"zh-Hans\">查询其他产品</span></a></p>\n");
    let title = format!(
        "{} {} · {} {}",
        view.verdict.label(),
        view.verdict.chinese(),
        view.gtin,
        view.serial
    );
    layout(&title, &body)
}

/// The home page: look up a unit by GTIN and serial or by certificate ID (`GET /lookup`), or
/// upload a photo of its QR label (`POST /scan`, field `photo`). `message`, if any, is shown
/// on top (for example why the last photo could not be read).
pub fn home_page(message: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(m) = message.filter(|m| !m.trim().is_empty()) {
        let _ = writeln!(
            body,
            "<section class=\"alert\" role=\"alert\"><p>{}</p></section>",
            escape(m)
        );
    }
    let _ = write!(
        body,
        concat!(
            "<h1>Check a remanufactured product {h1zh}</h1>\n",
            "<section>\n<h2>{scan}</h2>\n",
            "<form method=\"post\" action=\"/scan\" enctype=\"multipart/form-data\">\n",
            "<label for=\"photo\">Photo of the QR code on the label {photozh}</label>\n",
            "<input id=\"photo\" name=\"photo\" type=\"file\" accept=\"image/*\" capture=\"environment\" required>\n",
            "<button type=\"submit\">Check photo {checkzh}</button>\n</form>\n</section>\n",
            "<section>\n<h2>{bygtin}</h2>\n",
            "<form method=\"get\" action=\"/lookup\">\n",
            "<label for=\"gtin\">{gtin}</label>\n",
            "<input id=\"gtin\" name=\"gtin\" inputmode=\"numeric\" pattern=\"[0-9]{{8,14}}\" maxlength=\"14\" autocomplete=\"off\" required placeholder=\"09506000999999\">\n",
            "<label for=\"serial\">{serial}</label>\n",
            "<input id=\"serial\" name=\"serial\" maxlength=\"20\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" required placeholder=\"RM-2025-000123\">\n",
            "<button type=\"submit\">Look up {lookzh}</button>\n</form>\n</section>\n",
            "<section>\n<h2>{byid}</h2>\n",
            "<form method=\"get\" action=\"/lookup\">\n",
            "<label for=\"id\">{certid} (32 hex digits)</label>\n",
            "<input id=\"id\" name=\"id\" pattern=\"[0-9a-fA-F]{{32}}\" maxlength=\"32\" autocomplete=\"off\" autocapitalize=\"none\" spellcheck=\"false\" required class=\"mono\">\n",
            "<button type=\"submit\">Look up {lookzh}</button>\n</form>\n</section>\n",
            "<p class=\"muted\">Every certificate is signed by its remanufacturer and logged in a public, append-only log; ",
            "the QR code on the label carries a seal signed by the ledger. The JSON API is under <a href=\"/api/v1/openapi.json\">/api/v1</a>.</p>\n",
        ),
        h1zh = zh("核验再制造产品"),
        scan = term("Scan a label", "扫描标签"),
        photozh = zh("标签二维码照片"),
        checkzh = zh("识别"),
        bygtin = term("Look up by GTIN and serial", "按商品编码和序列号查询"),
        gtin = term("GTIN", "商品编码"),
        serial = term("Serial number", "序列号"),
        lookzh = zh("查询"),
        byid = term("Look up by certificate ID", "按证书编号查询"),
        certid = term("Certificate ID", "证书编号"),
    );
    layout("Check a remanufactured product · 核验再制造产品", &body)
}

/// An error page for HTTP status `status`, with a short `title` and a `detail` saying what
/// went wrong and what to do.
pub fn error_page(status: u16, title: &str, detail: &str) -> String {
    let body = format!(
        "<section class=\"alert\" role=\"alert\">\n<h1>{status} · {}</h1>\n<p>{}</p>\n</section>\n<p><a href=\"/\">Back to the start page · <span lang=\"zh-Hans\">返回首页</span></a></p>\n",
        escape(title),
        escape(detail)
    );
    layout(&format!("{status} {title}"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_known_answers() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(
            escape("再制造产品 / Remanufactured"),
            "再制造产品 / Remanufactured"
        );
        assert_eq!(escape(""), "");
    }

    #[test]
    fn numbers_read_naturally() {
        let v: Value = serde_json::json!({"a": 72.0, "b": 182.5, "c": 1200, "d": "24"});
        assert_eq!(num(&v, "/a").as_deref(), Some("72"));
        assert_eq!(num(&v, "/b").as_deref(), Some("182.5"));
        assert_eq!(num(&v, "/c").as_deref(), Some("1200"));
        assert_eq!(num(&v, "/d").as_deref(), Some("24"));
        assert_eq!(num(&v, "/e"), None);
    }

    #[test]
    fn times_read_naturally() {
        assert_eq!(
            when("2026-11-25T09:30:00+08:00"),
            "2026-11-25 09:30:00 UTC+08:00"
        );
        assert_eq!(when("2026-11-28T20:00:00.123Z"), "2026-11-28 20:00:00 UTC");
        assert_eq!(when("yesterday"), "yesterday");
    }

    #[test]
    fn checkpoint_size_is_the_second_line() {
        assert_eq!(checkpoint_size("origin\n42\nbase64\n\n— sig\n"), Some("42"));
        assert_eq!(checkpoint_size("origin\nx\n"), None);
    }
}

//! The server-rendered pages: status page for every verdict, home page, error page.

mod spec_examples;

use reman_ledger::pages::{
    SealCheck, StatusView, Verdict, error_page, escape, home_page, status_page,
};
use serde_json::{Value, json};
use spec_examples::{FIXED_GTIN, certificate_text};

const ID: &str = "3f1c0a9b8d7e6f5a4b3c2d1e0f9a8b7c";
const NEWER_ID: &str = "0123456789abcdef0123456789abcdef";
const SERIAL: &str = "RM-2025-000123";
const INJECTED: &str = "<script>alert('x')</script>";

const ALL: [Verdict; 5] = [
    Verdict::Valid,
    Verdict::Revoked,
    Verdict::Superseded,
    Verdict::Unknown,
    Verdict::SealInvalid,
];

/// The JSON answer of `GET /api/v1/certificates/{id}` (SPEC §6) for the SPEC §3.2 example
/// certificate with a valid GTIN, with two events listed newest first.
fn answer(status: &str) -> Value {
    let certificate: Value = serde_json::from_str(&certificate_text()).unwrap();
    let event = |index: u64, kind: &str, time: &str, place: &str, country: &str, signer: &str| {
        json!({
            "index": index,
            "integrated_time": "2026-11-25T01:31:00.000Z",
            "signer": signer,
            "event": {"certificate_id": ID, "event": kind, "time": time,
                      "location": {"country": country, "place": place},
                      "reference": "declaration 2231-2026-0001", "note": ""}
        })
    };
    json!({
        "certificate_id": ID,
        "status": status,
        "certificate": certificate,
        "issuer": {"name": "gearbox-works.example", "display_name": "Gearbox Works Ltd",
                   "country": "CN"},
        "index": 7,
        "integrated_time": "2026-11-21T08:00:00.250Z",
        "seal": "AQAAAAA",
        "qr_url": format!("https://ledger.example/01/{FIXED_GTIN}/21/{SERIAL}?seal=AQAAAAA"),
        "events": [
            event(11, "customs_released", "2026-11-25T09:30:00+08:00",
                  "Shanghai Yangshan port", "CN", "customs-cn.example+1a2b3c4d"),
            event(9, "shipped", "2026-11-22T14:00:00+01:00", "Hamburg", "DE",
                  "gearbox-works.example+5e6f7a8b"),
        ],
        "revocation": null,
        "inclusion_proof": {"tree_size": 12, "root": "ab".repeat(32), "proof": ["cd".repeat(32)]},
        "checkpoint": "reman-ledger.example/log\n12\nq83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n\n— reman-ledger.example/log AAAAAQ==\n",
    })
}

fn revoked_answer() -> Value {
    let mut a = answer("revoked");
    a["revocation"] = json!({
        "index": 13,
        "integrated_time": "2026-12-01T10:00:00.000Z",
        "signer": "gearbox-works.example+5e6f7a8b",
        "revocation": {"certificate_id": ID, "reason": "recall",
                       "note": "crankshaft batch 2026-11 recalled"}
    });
    a
}

fn view(verdict: Verdict) -> StatusView {
    let certificate = match verdict {
        Verdict::Valid | Verdict::SealInvalid => Some(answer("valid")),
        Verdict::Revoked => Some(revoked_answer()),
        Verdict::Superseded => {
            let mut a = answer("superseded");
            a["superseded_by"] = json!(NEWER_ID);
            Some(a)
        }
        Verdict::Unknown => None,
    };
    let seal = match verdict {
        Verdict::SealInvalid => SealCheck::Invalid("seal signature does not verify".into()),
        Verdict::Unknown => SealCheck::NotGiven,
        _ => SealCheck::Valid,
    };
    StatusView {
        verdict,
        gtin: FIXED_GTIN.into(),
        serial: SERIAL.into(),
        seal,
        certificate,
        other_certificates: if verdict == Verdict::Superseded {
            vec![(NEWER_ID.into(), "valid".into())]
        } else {
            Vec::new()
        },
        proof_verified: verdict != Verdict::Unknown,
    }
}

/// Every value of `attr="…"` in the page.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The page is self-contained: no scripts, and every link, image and form target is on this
/// server (a path starting with `/`, or a fragment).
fn assert_self_contained(html: &str) {
    assert!(
        !html.to_lowercase().contains("<script"),
        "no script element"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no absolute URL"
    );
    assert!(
        !html.contains("@import") && !html.contains("url("),
        "no CSS resources"
    );
    for attr in ["src", "href", "action", "srcset", "poster", "data"] {
        for value in attribute_values(html, attr) {
            assert!(
                (value.starts_with('/') && !value.starts_with("//")) || value.starts_with('#'),
                "{attr}=\"{value}\" leaves the server"
            );
        }
    }
}

fn assert_mobile_ready(html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)
    );
    assert!(html.contains(r#"<meta charset="utf-8">"#));
    assert!(html.contains("<html lang=\"en\">"));
}

#[test]
fn every_verdict_has_its_banner_colour_and_words() {
    let expected = [
        (Verdict::Valid, "VALID", "有效", "verdict-valid"),
        (Verdict::Revoked, "REVOKED", "已撤销", "verdict-revoked"),
        (
            Verdict::Superseded,
            "SUPERSEDED",
            "已被取代",
            "verdict-superseded",
        ),
        (Verdict::Unknown, "UNKNOWN", "未知", "verdict-unknown"),
        (
            Verdict::SealInvalid,
            "SEAL INVALID",
            "封印无效",
            "verdict-seal-invalid",
        ),
    ];
    for (verdict, en, zh, class) in expected {
        assert_eq!(
            (verdict.label(), verdict.chinese(), verdict.css_class()),
            (en, zh, class)
        );
        let html = status_page(&view(verdict));
        let banner = format!("<section class=\"banner {class}\" role=\"status\">");
        assert_eq!(html.matches(&banner).count(), 1, "{en}: {html}");
        let word = format!("{en} <span class=\"zh\" lang=\"zh-Hans\">{zh}</span></p>");
        assert!(html.contains(&word), "{en}");
        assert!(html.contains(&escape(verdict.meaning())), "{en}");
        // The colour class is styled.
        assert!(
            html.contains(&format!(".{class}{{background:")),
            "{class} styled"
        );
        // No other banner class is used on this page.
        for other in ALL.iter().filter(|&&v| v != verdict) {
            assert!(!html.contains(&format!("banner {}", other.css_class())));
        }
        assert_mobile_ready(&html);
        assert_self_contained(&html);
    }
}

#[test]
fn valid_page_shows_the_facts_a_customs_officer_needs() {
    let html = status_page(&view(Verdict::Valid));
    for fact in [
        // product identity
        "Remanufactured 2.0 L diesel engine",
        FIXED_GTIN,
        SERIAL,
        "engine",
        "840820",
        "Example Motors",
        "EM-20TD-11",
        // issuer and country
        "Gearbox Works Ltd (gearbox-works.example)",
        "<dd>CN</dd>",
        "2026-11-21",
        // remanufacturing facts
        "GB/T 34600-2017",
        "dynamometer power test",
        "pass <span class=\"zh\" lang=\"zh-Hans\">合格</span>",
        "24 months",
        "再制造产品 / Remanufactured",
        "<dd>DE</dd>",
        "end-of-life vehicle dismantler",
        "Suzhou plant 2",
        "2026-11-20",
        "piston ring set",
        // environmental savings
        "1200 kWh",
        "850 kg",
        "72 %",
        "182.5 kg",
        "supplier LCA 2026",
        // timeline
        "Customs released <span class=\"zh\" lang=\"zh-Hans\">海关放行</span>",
        "Shanghai Yangshan port, CN",
        "2026-11-25 09:30:00 UTC+08:00",
        "customs-cn.example+1a2b3c4d",
        "Hamburg, DE",
        // proof facts
        ID,
        "<dd>7</dd>",
        "2026-11-21 08:00:00 UTC",
        "<dd>12</dd>",
        "✓ yes",
        // seal check
        "Seal valid",
        // Chinese beside the key terms
        "再制造",
        "质保",
        "旧件来源国",
        "环境效益",
        "流转记录",
        "包含证明已验证",
    ] {
        assert!(html.contains(fact), "missing {fact:?}");
    }
    // The QR image comes from this server.
    assert!(html.contains(&format!("src=\"/api/v1/certificates/{ID}/qr.svg\"")));
    // Timeline: the certificate, then the events oldest first (newest last).
    let logged = html.find("Certificate logged").unwrap();
    let shipped = html.find("Hamburg").unwrap();
    let released = html.find("Shanghai Yangshan port").unwrap();
    assert!(logged < shipped && shipped < released);
    // Nothing about revocation on a valid certificate.
    assert!(!html.contains("Revocation"));
}

#[test]
fn revoked_page_shows_reason_and_note() {
    let html = status_page(&view(Verdict::Revoked));
    assert!(html.contains("Recall <span class=\"zh\" lang=\"zh-Hans\">召回</span>"));
    assert!(html.contains("crankshaft batch 2026-11 recalled"));
    assert!(html.contains("2026-12-01 10:00:00 UTC"));
    assert!(html.contains("Revocation"));
    // The product facts are still there, so the officer knows what was revoked.
    assert!(html.contains("Remanufactured 2.0 L diesel engine"));
}

#[test]
fn superseded_page_points_to_the_newer_certificate() {
    let html = status_page(&view(Verdict::Superseded));
    let link = format!("href=\"/lookup?id={NEWER_ID}\"");
    assert!(
        html.matches(&link).count() >= 2,
        "replaced-by notice and other-certificates list"
    );
    assert!(html.contains("valid <span class=\"zh\" lang=\"zh-Hans\">有效</span>"));
}

#[test]
fn unknown_page_names_what_was_asked() {
    let mut v = view(Verdict::Unknown);
    v.serial = "NO-SUCH-UNIT".into();
    let html = status_page(&v);
    assert!(html.contains("No certificate is logged for this unit"));
    assert!(html.contains("未找到证书"));
    assert!(html.contains(FIXED_GTIN));
    assert!(html.contains("NO-SUCH-UNIT"));
    assert!(
        !html.contains("Ledger proof"),
        "no proof without a certificate"
    );
    assert!(!html.contains("<img"));
}

#[test]
fn seal_results_are_shown() {
    let mut v = view(Verdict::SealInvalid);
    let html = status_page(&v);
    assert!(html.contains("Seal invalid"));
    assert!(html.contains("seal signature does not verify"));

    v.seal = SealCheck::OtherProduct {
        certificate_id: NEWER_ID.into(),
    };
    let html = status_page(&v);
    assert!(html.contains("Seal of another product"));
    assert!(html.contains(&format!("href=\"/lookup?id={NEWER_ID}\"")));

    v.verdict = Verdict::Valid;
    v.seal = SealCheck::NotGiven;
    let html = status_page(&v);
    assert!(html.contains("No seal given"));
}

#[test]
fn invalid_seal_on_a_certified_unit_does_not_claim_no_certificate() {
    // What the resolver passes for a forged seal: no certificate shown, the unit's certificates
    // listed.
    let mut v = view(Verdict::SealInvalid);
    v.certificate = None;
    v.other_certificates = vec![(ID.into(), "valid".into())];
    let html = status_page(&v);
    assert!(html.contains("SEAL INVALID"));
    assert!(!html.contains("No certificate is logged"));
    assert!(html.contains("Label not verified"));
    assert!(html.contains("标签未通过核验"));
    assert!(html.contains("Certificates of this unit"));
    assert!(!html.contains("Other certificates of this unit"));
    assert!(html.contains(&format!("href=\"/lookup?id={ID}\"")));
    assert!(!html.contains("Ledger proof"));

    // A forged seal for a unit the ledger does not know: that is still "not found".
    v.other_certificates.clear();
    let html = status_page(&v);
    assert!(html.contains("No certificate is logged for this unit"));
    assert!(!html.contains("Label not verified"));
}

#[test]
fn unverified_proof_is_flagged() {
    let mut v = view(Verdict::Valid);
    v.proof_verified = false;
    let html = status_page(&v);
    assert!(html.contains("✗ no"));
    assert!(!html.contains("✓ yes"));
}

#[test]
fn injected_markup_is_escaped_everywhere() {
    let mut v = view(Verdict::Revoked);
    let a = v.certificate.as_mut().unwrap();
    a["certificate"]["product"]["name"] = json!(INJECTED);
    a["certificate"]["process"]["standards"] = json!([INJECTED]);
    a["certificate"]["core"]["source"] = json!(INJECTED);
    a["events"][0]["event"]["location"]["place"] = json!(INJECTED);
    a["events"][0]["event"]["note"] = json!(INJECTED);
    a["events"][0]["event"]["event"] = json!(INJECTED);
    a["revocation"]["revocation"]["note"] = json!(INJECTED);
    a["issuer"]["display_name"] = json!("\"><script>alert(1)</script>");
    a["certificate_id"] = json!("\"><script>x</script>");
    v.serial = INJECTED.into();
    v.seal = SealCheck::OtherProduct {
        certificate_id: "\" onmouseover=\"alert(1)".into(),
    };
    v.other_certificates = vec![(INJECTED.into(), INJECTED.into())];
    let html = status_page(&v);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("\" onmouseover"), "attribute break-out");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert_self_contained(&html);

    let mut v = view(Verdict::SealInvalid);
    v.seal = SealCheck::Invalid(INJECTED.into());
    assert!(!status_page(&v).contains("<script"));

    let home = home_page(Some(INJECTED));
    assert!(!home.contains("<script"));
    assert!(home.contains("&lt;script&gt;"));
    let err = error_page(400, INJECTED, INJECTED);
    assert!(!err.contains("<script"));
    assert!(err.contains("&lt;script&gt;"));
}

#[test]
fn escape_known_answer() {
    assert_eq!(
        escape("<script>\"a\" & 'b'</script>"),
        "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
    );
}

#[test]
fn home_page_has_the_three_forms() {
    let html = home_page(None);
    assert_mobile_ready(&html);
    assert_self_contained(&html);
    assert!(!html.contains("role=\"alert\""), "no message, no alert box");
    assert_eq!(
        html.matches("<form method=\"get\" action=\"/lookup\">")
            .count(),
        2
    );
    for field in [
        "name=\"gtin\"",
        "name=\"serial\"",
        "name=\"id\"",
        "<form method=\"post\" action=\"/scan\" enctype=\"multipart/form-data\">",
        "name=\"photo\" type=\"file\" accept=\"image/*\" capture=\"environment\"",
    ] {
        assert!(html.contains(field), "missing {field}");
    }
    let with_message = home_page(Some("No QR code found in the photo"));
    let alert = with_message.find("role=\"alert\"").unwrap();
    assert!(with_message.contains("No QR code found in the photo"));
    assert!(
        alert < with_message.find("<form").unwrap(),
        "message on top"
    );
}

#[test]
fn error_page_shows_status_title_and_detail() {
    let html = error_page(413, "Photo too large", "Upload a photo of at most 10 MB.");
    assert_mobile_ready(&html);
    assert_self_contained(&html);
    assert!(html.contains("413 · Photo too large"));
    assert!(html.contains("Upload a photo of at most 10 MB."));
    assert!(html.contains("<title>413 Photo too large</title>"));
}

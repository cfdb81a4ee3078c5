//! Content negotiation (RFC 9110 §12.5.1): which `Accept` fields get JSON rather than a page.

use proptest::prelude::*;
use reman_ledger::negotiate::{Representation, choose};

fn one(accept: &str) -> Representation {
    choose([accept])
}

#[test]
fn no_accept_and_wildcards_get_the_page() {
    assert_eq!(choose(Vec::<&str>::new()), Representation::Html);
    for accept in ["", " ", "*/*", "*/*;q=1", "text/*", "*/*, text/*"] {
        assert_eq!(one(accept), Representation::Html, "{accept:?}");
    }
}

#[test]
fn browsers_get_the_page() {
    for accept in [
        // Firefox.
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        // Chrome.
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,\
         image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        // Safari.
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        // Old Internet Explorer: no text/html, but nothing weighs JSON above it either.
        "image/gif, image/jpeg, image/pjpeg, application/x-ms-application, */*",
        "text/html",
        "text/html, application/json",
        "application/json, text/html",
        "text/html;q=0.5, application/json;q=0.5",
        // Named as specifically and weighed the same: a tie is the page.
        "text/*, application/*",
    ] {
        assert_eq!(one(accept), Representation::Html, "{accept:?}");
    }
}

#[test]
fn a_client_preferring_json_gets_json() {
    for accept in [
        "application/json",
        "application/problem+json",
        "application/ld+json",
        "application/json, text/html;q=0.9",
        "text/html;q=0.1, application/json",
        "text/html;q=0.999, application/json",
        "application/json, */*;q=0.1",
        "application/*",
        "application/*, text/*;q=0.5",
        "*/*;q=0.5, application/json",
        // Everything but HTML.
        "*/*, text/html;q=0",
        // As much weight as the page, but named where the page is only reached through `*/*`
        // (axios's default) or `text/*`.
        "application/json, text/plain, */*",
        "*/*, application/*",
        "text/*, application/json",
        "text/*;q=0.2, application/problem+json;q=0.3",
        // JSON weighs what its best candidate weighs.
        "application/json;q=0.1, application/problem+json, text/html;q=0.5",
    ] {
        assert_eq!(one(accept), Representation::Json, "{accept:?}");
    }
}

#[test]
fn weight_zero_is_not_acceptable() {
    for accept in [
        "application/json;q=0",
        "application/json;q=0.000",
        "application/json;q=0, text/html",
        "application/json;q=0, */*",
        "application/problem+json;q=0",
        "application/*;q=0",
        // Only image types: neither weighs anything, and a tie is the page.
        "image/png",
    ] {
        assert_eq!(one(accept), Representation::Html, "{accept:?}");
    }
}

#[test]
fn the_most_specific_range_gives_the_weight() {
    // `text/html` over `text/*` over `*/*`, whichever comes first.
    assert_eq!(
        one("text/*;q=0.1, application/json;q=0.5"),
        Representation::Json
    );
    assert_eq!(
        one("text/*;q=0.1, text/html, application/json;q=0.5"),
        Representation::Html
    );
    assert_eq!(
        one("text/html, text/*;q=0.1, application/json;q=0.5"),
        Representation::Html
    );
    assert_eq!(one("*/*, text/html;q=0.1"), Representation::Json);
    assert_eq!(one("text/html;q=0.1, */*"), Representation::Json);
    assert_eq!(
        one("*/*;q=0.1, application/*;q=0.9, application/json;q=0.2, text/*;q=0.3"),
        Representation::Html
    );
    assert_eq!(
        one("*/*;q=0.1, application/*;q=0.9, application/json;q=0.2, text/*;q=0.15"),
        Representation::Json
    );
    // `application/json` does not give `application/problem+json` its weight: that one is
    // weighed by its own range only.
    assert_eq!(
        one("application/json;q=0, application/problem+json;q=0.8, text/html;q=0.5"),
        Representation::Json
    );
    assert_eq!(
        one("application/problem+json;q=0, application/json;q=0.8, text/html;q=0.5"),
        Representation::Json
    );
    // Equally specific ranges of one type: the highest weight.
    assert_eq!(
        one("application/json;q=0, application/json;q=0.9, text/html;q=0.5"),
        Representation::Json
    );
}

#[test]
fn whitespace_case_and_parameters_do_not_matter() {
    for accept in [
        "  application/json  ",
        "\tapplication/json\t,\ttext/html ; q=0.5",
        "Application/JSON",
        "APPLICATION/PROBLEM+JSON",
        "application/json;Q=1, TEXT/HTML;Q=0.5",
        "text/html ;q= 0.5 , application/json",
        "application/json; charset=utf-8",
        "application/json;charset=\"utf-8\";q=1, text/html;level=1;q=0.2",
        // Quoted parameter values may hold separators.
        "application/json;x=\"a, b; q=0\", text/html;q=0.5",
        ",,application/json,,",
    ] {
        assert_eq!(one(accept), Representation::Json, "{accept:?}");
    }
    assert_eq!(
        one("text/html;x=\"a, application/json\""),
        Representation::Html
    );
}

#[test]
fn parameters_after_the_weight_are_extensions() {
    assert_eq!(
        one("application/json;q=0.9;q=0, text/html;q=0.5"),
        Representation::Json
    );
    assert_eq!(
        one("application/json;q=0;x=1, text/html;q=0.5"),
        Representation::Html
    );
}

#[test]
fn a_malformed_weight_ignores_its_range() {
    // As if the range were not listed: JSON unlisted, the page.
    for accept in [
        "application/json;q=2",
        "application/json;q=1.5",
        "application/json;q=-1",
        "application/json;q=0.5000",
        "application/json;q=.5",
        "application/json;q=high",
        "application/json;q=",
        "application/json;q=\"0.5\"",
        "application/json;q=0.5e1",
    ] {
        assert_eq!(one(accept), Representation::Html, "{accept:?}");
    }
    // A malformed weight does not refuse a type either.
    assert_eq!(
        one("text/html;q=nope, application/json;q=0.1"),
        Representation::Json
    );
    assert_eq!(
        one("application/json, application/json;q=zero"),
        Representation::Json
    );
    // Three decimals are fine, and compared exactly.
    assert_eq!(
        one("text/html;q=0.501, application/json;q=0.502"),
        Representation::Json
    );
    assert_eq!(
        one("text/html;q=0.5, application/json;q=0.500"),
        Representation::Html
    );
    assert_eq!(
        one("text/html;q=0.999, application/json;q=1.000"),
        Representation::Json
    );
}

#[test]
fn what_is_not_a_media_range_is_skipped() {
    for accept in [
        "json",
        "application",
        "/json",
        "application/",
        "*/json",
        "application/json/x",
        "application /json",
        "application/+json",
        "text/plain+json",
        "application/json\u{e9}",
        "\"application/json\"",
        "application/json\"",
    ] {
        assert_eq!(one(accept), Representation::Html, "{accept:?}");
    }
    assert_eq!(one("garbage, application/json"), Representation::Json);
    assert_eq!(one("application/json, garbage;q=1"), Representation::Json);
}

#[test]
fn text_html_at_full_weight_settles_it_whatever_follows() {
    for rest in [
        "application/json",
        "application/json;q=1, application/problem+json",
        "text/html;q=0",
        "garbage;q=\"unclosed",
    ] {
        assert_eq!(
            choose(["text/html", rest]),
            Representation::Html,
            "{rest:?}"
        );
        assert_eq!(
            one(&format!("text/html, {rest}")),
            Representation::Html,
            "{rest:?}"
        );
    }
    // Not at full weight, or not text/html itself: what follows counts.
    assert_eq!(
        one("text/html;q=0.999, application/json"),
        Representation::Json
    );
    assert_eq!(
        one("text/*, */*;q=0.1, application/json"),
        Representation::Json
    );
    assert_eq!(
        one("text/*, */*;q=0.1, application/json;q=0.9"),
        Representation::Html
    );
    assert_eq!(
        one("*/*, application/json;q=1, text/html;q=0.5"),
        Representation::Json
    );
}

#[test]
fn several_lines_are_one_list() {
    assert_eq!(
        choose(["text/html;q=0.1", "application/json"]),
        Representation::Json
    );
    assert_eq!(
        choose(["application/json", "text/html"]),
        Representation::Html
    );
    // A quote does not run on into the next line.
    assert_eq!(
        choose(["text/html;q=0.1, text/x;y=\"unclosed", "application/json"]),
        Representation::Json
    );
    assert_eq!(choose(["", "application/json"]), Representation::Json);
    // Bytes that are not UTF-8 are read as well (header values are bytes).
    assert_eq!(
        choose([&b"\xff\xfe, application/json"[..]]),
        Representation::Json
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_bytes_are_answered(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4)) {
        let _ = choose(&lines);
    }

    #[test]
    fn any_list_of_range_like_pieces_is_answered(
        pieces in prop::collection::vec(
            "[ \t]{0,2}(\\*|text|application|image|[a-z\"]{1,4})/(\\*|html|json|problem\\+json|[a-z+\"]{0,4})\
             (;[ ]?[qQ]=[0-9.\"-]{0,6}|;[a-z]{1,3}=\"[,;a-z]{0,4}\"?){0,3}[ \t]{0,2}",
            0..8,
        )
    ) {
        let accept = pieces.join(",");
        let _ = one(&accept);
        // Nothing weighs more than text/html at full weight: a tie at most, and the page.
        prop_assert_eq!(one(&format!("text/html,{accept}")), Representation::Html);
    }
}

//! HTTP content negotiation (RFC 9110 §12.5.1): an HTML page or JSON.
//!
//! The resolver (`GET /01/…`), the look-up form (`GET /lookup`) and the photo upload
//! (`POST /scan`) answer people with pages and programs with JSON (`application/problem+json`
//! for errors). Which of the two a request gets is decided here, from its `Accept` field
//! alone, so that every route decides the same way:
//!
//! - each media range has the weight of its `q` parameter: 0 to 1 with at most three
//!   decimals, 1 when absent. A range whose `q` is malformed (`q=2`, `q=0.5000`, `q=high`) is
//!   ignored, as if it were not listed: a client's typo can neither make a type acceptable nor
//!   refuse one, and the answer stays what it would be without that range;
//! - a media type takes the weight of the most specific range that matches it (`text/html`
//!   over `text/*` over `*/*`); among equally specific ranges, the highest weight. A type no
//!   range matches has weight 0, and weight 0 means "not acceptable";
//! - the page is `text/html`. JSON is `application/json`, or any `application/…+json` the
//!   client lists (such as `application/problem+json`), whichever weighs most;
//! - JSON is chosen when it weighs more than the page, or as much but through a more
//!   specific range: `application/json, text/plain, */*` (axios's default) names JSON and
//!   reaches the page only through `*/*`, so it gets JSON. Any other tie goes to the page, so
//!   a request without `Accept`, with `*/*`, or a browser's
//!   `text/html,application/xhtml+xml,…,*/*;q=0.8` gets the page, and a client that accepts
//!   neither (`image/png`) gets the page rather than a 406.
//!
//! Lenient by design, since nothing here is a reason to refuse a request: type names are
//! compared without regard to case, parameters other than `q` are ignored (the API offers
//! each type in one form, UTF-8, so a `charset` or `level` changes nothing), parameters after
//! `q` are extensions and ignored, quoted parameter values may hold commas and semicolons, and
//! elements that are not media ranges are skipped. Several `Accept` lines are one list, as if
//! joined with commas (RFC 9110 §5.3).
//!
//! The resolver decides on every request: the field's bytes are read in place, once, with no
//! allocation, and reading stops as soon as `text/html` at full weight settles the answer
//! (browsers list it first).

/// What a request is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// An HTML page: what a browser asks for, and the answer when the client does not prefer
    /// JSON.
    Html,
    /// JSON (`application/json`, and `application/problem+json` for errors): what a program
    /// asks for.
    Json,
}

/// Chooses between the page and JSON from a request's `Accept` lines (none, one or several;
/// several are one list). Never fails: whatever cannot be read counts for nothing, and JSON
/// is chosen only when the client weighs it above `text/html`, or as much through a more
/// specific range.
///
/// Takes anything that gives bytes, so that header values are read as they come:
/// `choose(["application/json"])`, `choose(headers.get_all(ACCEPT))`.
pub fn choose<I>(accept_lines: I) -> Representation
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut weights = Weights::default();
    for line in accept_lines {
        weights.read(line.as_ref());
    }
    weights.choice()
}

/// What the `Accept` lines read so far say of the page and of JSON.
#[derive(Default)]
struct Weights {
    html: Match,
    json: Match,
    /// The highest weight of a listed `application/…+json`: the range naming the type
    /// exactly is the most specific one that matches it.
    json_suffix: Weight,
}

impl Weights {
    /// Weighs every element of one `Accept` line, until the answer is settled.
    fn read(&mut self, line: &[u8]) {
        let mut list = Cursor::new(line);
        while !list.at_end() && !self.settled() {
            if let Some(range) = list.media_range() {
                self.html
                    .offer(range.specificity_for(b"text", b"html"), range.weight);
                self.json
                    .offer(range.specificity_for(b"application", b"json"), range.weight);
                if range.is_json_suffix() {
                    self.json_suffix = self.json_suffix.max(range.weight);
                }
            }
            list.skip_element();
        }
    }

    /// Whether the page is sure to be chosen whatever follows: `text/html` itself at full
    /// weight, as browsers list it first. Nothing can outweigh it, and a tie is the page.
    fn settled(&self) -> bool {
        self.html.specificity == Some(EXACT) && self.html.weight == FULL
    }

    /// JSON if it weighs more than the page, or as much through a more specific range; else
    /// the page.
    fn choice(&self) -> Representation {
        let suffix = (self.json_suffix > 0).then_some(EXACT);
        let (json_weight, json_specificity) = match self.json_suffix.cmp(&self.json.weight) {
            std::cmp::Ordering::Greater => (self.json_suffix, suffix),
            std::cmp::Ordering::Less => (self.json.weight, self.json.specificity),
            std::cmp::Ordering::Equal => (self.json.weight, self.json.specificity.max(suffix)),
        };
        let more_specific = json_specificity > self.html.specificity;
        if json_weight > self.html.weight
            || (json_weight > 0 && json_weight == self.html.weight && more_specific)
        {
            Representation::Json
        } else {
            Representation::Html
        }
    }
}

/// A weight in thousandths: an RFC 9110 qvalue (0 to 1, at most three decimals) times 1000.
type Weight = u16;

/// The weight of `q=1`, and of a range without `q`.
const FULL: Weight = 1000;

/// The specificity of a range naming a type exactly (`*/*` is 0, `type/*` 1).
const EXACT: u8 = 2;

/// The most specific range seen so far that matches one media type, and its weight.
#[derive(Default)]
struct Match {
    /// `None` while no range matched; then 0 (`*/*`), 1 (`type/*`) or 2 (`type/subtype`).
    specificity: Option<u8>,
    weight: Weight,
}

impl Match {
    /// Takes a range's weight if the range matches (`specificity` is `Some`) and is more
    /// specific than those seen; as specific, the higher of the two weights.
    fn offer(&mut self, specificity: Option<u8>, weight: Weight) {
        let Some(s) = specificity else { return };
        match self.specificity {
            Some(seen) if seen > s => {}
            Some(seen) if seen == s => self.weight = self.weight.max(weight),
            _ => {
                self.specificity = Some(s);
                self.weight = weight;
            }
        }
    }
}

/// One element of an `Accept` list: `type/subtype` (or `type/*`, `*/*`) and its weight.
struct MediaRange<'a> {
    ty: &'a [u8],
    subtype: &'a [u8],
    weight: Weight,
}

impl MediaRange<'_> {
    /// How specifically this range names `ty/subtype`: 2 exactly, 1 as `ty/*`, 0 as `*/*`;
    /// `None` when it does not match.
    fn specificity_for(&self, ty: &[u8], subtype: &[u8]) -> Option<u8> {
        if self.ty == b"*" {
            Some(0)
        } else if !self.ty.eq_ignore_ascii_case(ty) {
            None
        } else if self.subtype == b"*" {
            Some(1)
        } else if self.subtype.eq_ignore_ascii_case(subtype) {
            Some(EXACT)
        } else {
            None
        }
    }

    /// Whether this range names a JSON-based type `application/…+json` (RFC 6839).
    fn is_json_suffix(&self) -> bool {
        const SUFFIX: &[u8] = b"+json";
        self.ty.eq_ignore_ascii_case(b"application")
            && self.subtype.len() > SUFFIX.len()
            && self.subtype[self.subtype.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX)
    }
}

/// A reading position in one `Accept` line. The line is read once, front to back, each byte
/// looked at about once: this runs on every resolver request.
struct Cursor<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a [u8]) -> Cursor<'a> {
        Cursor { line, at: 0 }
    }

    fn at_end(&self) -> bool {
        self.at >= self.line.len()
    }

    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    /// Takes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        if next {
            self.at += 1;
        }
        next
    }

    /// Skips optional whitespace (spaces and tabs).
    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Takes the token that comes next (RFC 9110 `tchar`s); empty if none.
    fn token(&mut self) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(|b| TCHAR[usize::from(b)]) {
            self.at += 1;
        }
        self.line.get(start..self.at).unwrap_or_default()
    }

    /// Takes the rest of a quoted string whose opening quote was taken: up to its closing
    /// quote, a backslash escaping the next byte; an unclosed quote runs to the end.
    fn skip_quoted(&mut self) {
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => return,
                b'\\' => self.at += 1,
                _ => {}
            }
        }
    }

    /// Moves past the next comma outside quoted strings: to the next element.
    fn skip_element(&mut self) {
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b',' => return,
                b'"' => self.skip_quoted(),
                _ => {}
            }
        }
    }

    /// Reads the element that comes next, up to its end or to what cannot be read in it;
    /// `None` when it is not a media range or its `q` is malformed.
    fn media_range(&mut self) -> Option<MediaRange<'a>> {
        self.skip_ows();
        let ty = self.token();
        if !self.eat(b'/') {
            return None;
        }
        let subtype = self.token();
        if ty.is_empty() || subtype.is_empty() || (ty == b"*" && subtype != b"*") {
            return None;
        }
        loop {
            self.skip_ows();
            if !self.eat(b';') {
                break;
            }
            self.skip_ows();
            let name = self.token();
            self.skip_ows();
            if !self.eat(b'=') {
                continue;
            }
            self.skip_ows();
            let value = if self.eat(b'"') {
                self.skip_quoted();
                None
            } else {
                Some(self.token())
            };
            if name.eq_ignore_ascii_case(b"q") {
                // What follows the weight are extensions (RFC 7231 accept-ext): not read.
                return Some(MediaRange {
                    ty,
                    subtype,
                    weight: parse_weight(value?)?,
                });
            }
        }
        self.skip_ows();
        matches!(self.peek(), None | Some(b',')).then_some(MediaRange {
            ty,
            subtype,
            weight: FULL,
        })
    }
}

/// An RFC 9110 qvalue, `0[.ddd]` or `1[.000]`, in thousandths; `None` for anything else.
fn parse_weight(v: &[u8]) -> Option<Weight> {
    let (whole, decimals) = match v {
        [whole] => (*whole, &[][..]),
        [whole, b'.', decimals @ ..] => (*whole, decimals),
        _ => return None,
    };
    if decimals.len() > 3 || !decimals.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // The decimals padded with zeros to three digits: "0.5" is 500.
    let thousandths = decimals
        .iter()
        .chain([b'0'; 3].iter())
        .take(3)
        .fold(0, |n: Weight, d| n * 10 + Weight::from(d - b'0'));
    match (whole, thousandths) {
        (b'0', t) => Some(t),
        (b'1', 0) => Some(FULL),
        _ => None,
    }
}

/// The bytes a token is made of (RFC 9110 `tchar`: a type, subtype or parameter name, `*`
/// included), as a table.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element of one line, as `choose` reads them.
    fn ranges(line: &str) -> Vec<Option<(String, String, Weight)>> {
        let mut list = Cursor::new(line.as_bytes());
        let mut out = Vec::new();
        while !list.at_end() {
            out.push(list.media_range().map(|r| {
                (
                    String::from_utf8_lossy(r.ty).into_owned(),
                    String::from_utf8_lossy(r.subtype).into_owned(),
                    r.weight,
                )
            }));
            list.skip_element();
        }
        out
    }

    fn range(ty: &str, subtype: &str, weight: Weight) -> Option<(String, String, Weight)> {
        Some((ty.to_owned(), subtype.to_owned(), weight))
    }

    #[test]
    fn weights_are_qvalues_in_thousandths() {
        for (v, w) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.001", Some(1)),
            ("0.999", Some(999)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("1.5", None),
            ("2", None),
            ("0.0001", None),
            ("-1", None),
            (".5", None),
            ("", None),
            ("0.5a", None),
            ("0,5", None),
            ("\"0.5\"", None),
        ] {
            assert_eq!(parse_weight(v.as_bytes()), w, "{v:?}");
        }
    }

    #[test]
    fn elements_are_read_with_their_weight() {
        assert_eq!(
            ranges(" Application/JSON ; charset=utf-8 ; Q=0.7 ; ext=\"a,b\" , text/*,*/*;q=0"),
            [
                range("Application", "JSON", 700),
                range("text", "*", 1000),
                range("*", "*", 0),
            ]
        );
        // Quoted values may hold separators; an unclosed quote runs to the end.
        assert_eq!(
            ranges(r#"a/b;x="1,2;q=0", c/d;y="q\",", e/f;z="open, g/h"#),
            [
                range("a", "b", 1000),
                range("c", "d", 1000),
                range("e", "f", 1000)
            ]
        );
        assert_eq!(ranges(""), []);
        assert_eq!(ranges(",, a/b ,"), [None, None, range("a", "b", 1000)]);
        for bad in [
            "json",
            "/json",
            "application/",
            "*/json",
            "text/html/x",
            "text /html",
            "text/html;q=2",
            "text/html;q=\"1\"",
            "text/html x",
            "\"text/html\"",
        ] {
            assert_eq!(ranges(bad), [None], "{bad:?}");
        }
        // After a malformed element, the next one is read.
        assert_eq!(
            ranges("text/html x;y=\",\", a/b"),
            [None, range("a", "b", 1000)]
        );
    }

    #[test]
    fn ranges_match_by_specificity() {
        let r = |ty: &'static [u8], subtype: &'static [u8]| MediaRange {
            ty,
            subtype,
            weight: FULL,
        };
        assert_eq!(
            r(b"TEXT", b"Html").specificity_for(b"text", b"html"),
            Some(2)
        );
        assert_eq!(r(b"text", b"*").specificity_for(b"text", b"html"), Some(1));
        assert_eq!(r(b"*", b"*").specificity_for(b"text", b"html"), Some(0));
        assert_eq!(r(b"text", b"plain").specificity_for(b"text", b"html"), None);
        assert_eq!(
            r(b"application", b"*").specificity_for(b"text", b"html"),
            None
        );
        assert!(r(b"application", b"problem+json").is_json_suffix());
        assert!(r(b"Application", b"LD+JSON").is_json_suffix());
        assert!(!r(b"application", b"+json").is_json_suffix());
        assert!(!r(b"application", b"json").is_json_suffix());
        assert!(!r(b"text", b"x+json").is_json_suffix());
    }
}

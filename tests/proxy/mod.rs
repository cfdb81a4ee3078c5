//! A lying server for tests: a proxy in front of a real ledger that passes every GET through
//! except the answers a test chooses to change. Each answer closes its connection.

use std::io::{BufRead, BufReader, Write};

/// What the proxy answers instead of the upstream's answer: `Some((status, body))`, or `None`
/// to pass the upstream answer through unchanged.
pub type Rewrite = fn(path: &str, upstream_body: &[u8]) -> Option<(u16, Vec<u8>)>;

/// Starts the proxy in front of `upstream`; returns its base URL. It runs until the test ends.
pub fn start(upstream: &str, rewrite: Rewrite) -> String {
    serve(upstream, rewrite, false)
}

/// A proxy that changes nothing but gzips every entry bundle (`Content-Encoding: gzip`,
/// whatever the client accepts), as tlog-tiles allows logs and CDNs to.
#[allow(dead_code)]
pub fn start_gzipping(upstream: &str) -> String {
    serve(upstream, |_, _| None, true)
}

fn serve(upstream: &str, rewrite: Rewrite, gzip_entries: bool) -> String {
    let client = reman_ledger::client::Client::new(upstream).unwrap();
    listen(move |path| {
        let text_plain = path.ends_with("/checkpoint");
        let accept = if text_plain {
            "text/plain"
        } else {
            "application/json"
        };
        let (status, body) = match client.get_path(path, accept) {
            Ok(body) => rewrite(path, &body).unwrap_or((200, body)),
            Err(e) => (e.status().unwrap_or(502), e.to_string().into_bytes()),
        };
        let content_type = if text_plain {
            "text/plain; charset=utf-8"
        } else {
            "application/json"
        };
        let mut headers = format!("Content-Type: {content_type}\r\n");
        if gzip_entries && path.starts_with("/tile/entries/") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
            gz.write_all(&body).unwrap();
            headers.push_str("Content-Encoding: gzip\r\n");
            return (status, headers, gz.finish().unwrap());
        }
        (status, headers, body)
    })
}

/// A plain static file server over `root` (what a CDN or `python3 -m http.server` does): GET
/// of a file's path answers its bytes, anything else 404. Returns its base URL.
#[allow(dead_code)]
pub fn static_files(root: std::path::PathBuf) -> String {
    listen(move |path| {
        let file = (!path.contains("..") && !path.contains('?'))
            .then(|| std::fs::read(root.join(path.trim_start_matches('/'))).ok())
            .flatten();
        let headers = "Content-Type: application/octet-stream\r\n".to_owned();
        match file {
            Some(bytes) => (200, headers, bytes),
            None => (404, headers, b"not found".to_vec()),
        }
    })
}

/// Serves a new loopback listener, answering each request with `answer(path)`: its status,
/// header lines and body; each answer closes its connection. Returns the base URL.
fn listen(answer: impl Fn(&str) -> (u16, String, Vec<u8>) + Send + Sync + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/");
                let (status, headers, body) = answer(path);
                let head = format!(
                    "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    url
}

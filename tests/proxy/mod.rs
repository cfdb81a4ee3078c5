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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reman_ledger::client::Client::new(upstream).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let client = client.clone();
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
                let path = request_line.split_whitespace().nth(1).unwrap().to_owned();
                let text_plain = path.ends_with("/checkpoint");
                let accept = if text_plain {
                    "text/plain"
                } else {
                    "application/json"
                };
                let (status, body) = match client.get_path(&path, accept) {
                    Ok(body) => rewrite(&path, &body).unwrap_or((200, body)),
                    Err(e) => (e.status().unwrap_or(502), e.to_string().into_bytes()),
                };
                let content_type = if text_plain {
                    "text/plain; charset=utf-8"
                } else {
                    "application/json"
                };
                let (body, encoding) = if gzip_entries && path.starts_with("/tile/entries/") {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    gz.write_all(&body).unwrap();
                    (gz.finish().unwrap(), "Content-Encoding: gzip\r\n")
                } else {
                    (body, "")
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            });
        }
    });
    url
}

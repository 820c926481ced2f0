//! The demo page and its assets are served from the binary (the browser behaviour itself is
//! tested in a real browser by `protocol/js/e2e/demo.e2e.mjs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::start_server;

/// One raw GET; returns the status line, headers and body.
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn the_demo_page_and_its_assets_are_served() {
    let srv = start_server();
    let (status, head, body) = get(srv.addr, "/");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("/static/coedit-demo.js") && body.contains("id=\"text\""));
    let (status, head, body) = get(srv.addr, "/static/coedit-demo.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(body.contains("coeditDemo") && body.len() > 10_000);
    let (status, head, _) = get(srv.addr, "/static/demo.css");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/css"), "{head}");
    let (status, _, body) = get(srv.addr, "/static/../Cargo.toml");
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(srv.addr, "/static/missing.js");
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
}

//! The demo page and its assets are served from the binary (the browser behaviour itself is
//! tested in a real browser by `protocol/js/e2e/demo.e2e.mjs`).

mod common;

use common::{http_raw as get, start_server};

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

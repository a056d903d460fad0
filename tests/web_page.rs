//! The web page against the real server: served without credentials in
//! `token` mode (it holds no data, and it is where a person signs in),
//! while the API behind it still needs a token; `local` mode serves it to
//! loopback like everything else. The page itself is tested in Chromium by
//! tests/interop/web-page.test.mjs.

mod common;

use common::{TestServer, test_config};
use depot::config::AuthMode;
use reqwest::StatusCode;

#[tokio::test]
async fn the_page_is_public_and_the_api_behind_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.auth.mode = AuthMode::Token;
    let srv = TestServer::start(cfg).await;
    let plain = reqwest::Client::new();

    let page = plain.get(srv.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("/ui/app.js"));

    for (path, ty) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/hash-worker.js", "text/javascript; charset=utf-8"),
        ("/ui/vendor/uppy.min.css", "text/css; charset=utf-8"),
    ] {
        let r = plain.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], ty, "{path}");
        let etag = r.headers()["etag"].clone();
        let again = plain.get(srv.url(path)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path} revalidated");
    }
    let missing = plain.get(srv.url("/ui/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap()["error"], "not_found");

    for api in ["/api/files", "/api/chunking", "/api/stats"] {
        assert_eq!(plain.get(srv.url(api)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{api}");
    }
}

//! The client's side of authentication against a scripted HTTP peer:
//! what it sends, which redirects it follows, what a 401/403 says.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const TOKEN: &str = "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";

/// A peer that answers each connection's requests with `answer(request)`
/// and records every request (head and body) it gets. Returns its base
/// URL.
async fn peer(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (answer, log) = (Arc::new(answer), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    while !buf.ends_with(b"\r\n\r\n") {
                        if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        buf.push(byte[0]);
                    }
                    let mut head = String::from_utf8_lossy(&buf).into_owned();
                    buf.clear();
                    // The body (these requests have a Content-Length)
                    // joins the head.
                    let len = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok())
                        .unwrap_or(0usize);
                    let mut body = vec![0u8; len];
                    if sock.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    head.push_str(&String::from_utf8_lossy(&body));
                    log.lock().unwrap().push(head.clone());
                    if sock.write_all(answer(&head).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, seen)
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

const STATS: &str = r#"{"files":0,"logical_bytes":0,"unique_chunks":0,"unique_bytes":0,"stored_bytes":0,"dedup_ratio":null,"space_ratio":null}"#;

fn token() -> Token {
    Token::parse(TOKEN, TokenSource::Env).unwrap()
}

fn authorization(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
        .map(str::to_string)
}

#[tokio::test]
async fn every_request_carries_the_bearer_token_and_debug_output_hides_it() {
    let (base, seen) = peer(|_| reply("200 OK", "", STATS)).await;
    let c = Client::with_token(&base, Some(token())).unwrap();
    c.stats().await.unwrap();
    c.http().get(c.url("/api/files/X")).send().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for head in &seen {
        assert_eq!(authorization(head).as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "{head}");
    }
    assert!(!format!("{:?}", c.http()).contains("c2Vj"), "the reqwest client's Debug shows the token");
    let req = c.http().get(c.url("/x")).build().unwrap();
    assert!(!format!("{req:?}").contains("c2Vj"));
    // Without a token, no header.
    let (base, seen) = peer(|_| reply("200 OK", "", STATS)).await;
    Client::new(&base).unwrap().stats().await.unwrap();
    assert_eq!(authorization(&seen.lock().unwrap()[0]), None);
}

#[tokio::test]
async fn redirects_are_followed_within_the_origin_only_so_the_token_goes_nowhere_else() {
    // The other host (another port of 127.0.0.1 is another origin):
    // it must see no request at all.
    let (elsewhere, elsewhere_seen) = peer(|_| reply("200 OK", "", STATS)).await;
    let to = format!("{elsewhere}/api/stats");
    let (base, seen) = peer(move |head| {
        if head.starts_with("GET /old ") {
            reply("301 Moved Permanently", "location: /api/stats\r\n", "")
        } else if head.starts_with("GET /away ") {
            reply("302 Found", &format!("location: {to}\r\n"), "")
        } else {
            reply("200 OK", "", STATS)
        }
    })
    .await;
    let c = Client::with_token(&base, Some(token())).unwrap();
    let resp = c.send(c.http.get(c.url("/old"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2, "the same-origin redirect was followed");
    assert!(authorization(&seen.lock().unwrap()[1]).is_some(), "with the token");

    let e = c.send(c.http.get(c.url("/away"))).await.unwrap_err();
    assert!(matches!(e, ClientError::Protocol(_)), "{e:?}");
    assert!(e.to_string().contains(&format!("redirects to {elsewhere}/api/stats, outside {base}")), "{e}");
    assert_eq!(e.exit_code(), exit::SERVER);
    assert!(elsewhere_seen.lock().unwrap().is_empty(), "the other origin got a request");
}

#[test]
fn an_origin_is_scheme_host_and_port() {
    let u = |s: &str| reqwest::Url::parse(s).unwrap();
    assert!(same_origin(&u("http://h:8080/a"), &u("http://h:8080/b?c")));
    assert!(same_origin(&u("https://h/a"), &u("https://h:443/b")));
    assert!(!same_origin(&u("https://h:8080/a"), &u("http://h:8080/a")), "a downgrade to http");
    assert!(!same_origin(&u("http://h:8080/a"), &u("http://h:8081/a")));
    assert!(!same_origin(&u("http://h/a"), &u("http://g/a")));
}

#[tokio::test]
async fn a_401_says_how_to_pass_a_token_and_a_403_names_the_permission() {
    let (base, _) = peer(|head| {
        if head.starts_with("DELETE ") {
            reply(
                "403 Forbidden",
                "",
                r#"{"code":403,"error":"forbidden","message":"this token lacks the delete scope"}"#,
            )
        } else {
            reply(
                "401 Unauthorized",
                "www-authenticate: Bearer realm=\"depot\"\r\n",
                r#"{"code":401,"error":"unauthorized","message":"a valid token is needed"}"#,
            )
        }
    })
    .await;
    let e = Client::new(&base).unwrap().stats().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized(_)), "{e:?}");
    assert_eq!(e.exit_code(), exit::REFUSED);
    let text = e.to_string();
    assert!(text.contains("needs a token") && text.contains("DEPOT_TOKEN"), "{text}");

    let c = Client::with_token(&base, Some(token())).unwrap();
    let text = c.stats().await.unwrap_err().to_string();
    assert!(text.contains("refused the token from DEPOT_TOKEN (a valid token is needed)"), "{text}");
    assert!(!text.contains("c2Vj"), "{text}");

    let e = c.delete("01JDX3E5C9R2T7VQ4M8N6P0WAB").await.unwrap_err();
    assert!(matches!(e, ClientError::Forbidden(_)), "{e:?}");
    assert_eq!(e.exit_code(), exit::REFUSED);
    assert!(e.to_string().contains("this token lacks the delete scope"), "{e}");
}

#[tokio::test]
async fn admin_calls_send_the_documented_requests() {
    let info = r#"{"id":"01JDX3E5C9R2T7VQ4M8N6P0WAB","token":"dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_s","tenant":"acme","scopes":["read","write"],"created":"2026-11-30T12:00:00.000Z","expires_at":"2027-02-28T12:00:00.000Z"}"#;
    let (base, seen) = peer(move |req| {
        if req.starts_with("POST /api/admin/tokens ") {
            reply("201 Created", "", info)
        } else if req.starts_with("GET /api/admin/tokens ") {
            reply("200 OK", "", r#"{"tokens":[]}"#)
        } else if req.starts_with("DELETE ") {
            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
        } else {
            reply(
                "200 OK",
                "",
                r#"{"url":"/api/files/F1?exp=1&kid=K&sig=S","expires_at":"2026-11-30T13:00:00.000Z"}"#,
            )
        }
    })
    .await;
    let c = Client::with_token(&base, Some(token())).unwrap();
    let req = crate::wire::TokenRequest {
        tenant: "acme".into(),
        scopes: vec!["read".into(), "write".into()],
        expires_in: Some(expires_in("90d")),
        name: Some("ci".into()),
    };
    let made = create_token(&c, &req).await.unwrap();
    assert_eq!(made.token.as_deref(), Some("dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_s"));
    assert_eq!(made.scopes, ["read", "write"]);
    assert!(list_tokens(&c).await.unwrap().tokens.is_empty());
    revoke_token(&c, "dpt_01JDX3E5C9R2T7VQ4M8N6P0WAB_secret").await.unwrap();
    let link = create_link(&c, "F1", Some(600)).await.unwrap();
    assert_eq!(c.url(&link.url), format!("{base}/api/files/F1?exp=1&kid=K&sig=S"));
    assert!(matches!(create_link(&c, "../x", None).await, Err(ClientError::Usage(_))));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen[0].ends_with(r#"{"tenant":"acme","scopes":["read","write"],"expires_in":"90d","name":"ci"}"#),
        "{}",
        seen[0]
    );
    assert!(seen[1].starts_with("GET /api/admin/tokens "));
    assert!(
        seen[2].starts_with("DELETE /api/admin/tokens/01JDX3E5C9R2T7VQ4M8N6P0WAB "),
        "only the id: {}",
        seen[2]
    );
    assert!(
        seen[3].starts_with("POST /api/files/F1/link ") && seen[3].ends_with(r#"{"expires_in":600}"#),
        "{}",
        seen[3]
    );
    assert!(seen.iter().all(|r| authorization(r).is_some()));
}

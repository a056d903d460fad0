//! Field reports against the real server: Range for every method and size
//! (RFC 9110 §14) and multipart `Content-Disposition` read as senders write
//! it (RFC 7578 §4.2, RFC 8187, the HTML standard's form-data encoding).

mod common;

use common::http::{field, handmade_multipart};
use common::{TestServer, client};
use depot::testdata::pseudo_random;
use depot::wire::FileInfo;
use reqwest::{Method, StatusCode};

async fn ranged(s: &TestServer, method: Method, id: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    s.send(method, &format!("/api/files/{id}"), headers).await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn head_answers_what_a_get_without_range_would() {
    let (_dir, s) = TestServer::start_temp().await;
    let f = s.upload_raw("ten.txt", b"0123456789").await;

    // GET honours Range.
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=2-4")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(header(&r, "content-length"), Some("3"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"234");
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=20-24")]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), Some("bytes */10"));

    // HEAD ignores it, whatever it says, with or without If-Range.
    let etag = format!("\"{}\"", f.etag);
    for h in [
        vec![("Range", "bytes=2-4")],
        vec![("Range", "bytes=20-24")],
        vec![("Range", "bytes=-3")],
        vec![("Range", "bytes=0-1,4-5")],
        vec![("Range", "bytes=2-4"), ("If-Range", etag.as_str())],
        vec![("Range", "bytes=2-4"), ("If-Range", "\"other\"")],
    ] {
        let r = ranged(&s, Method::HEAD, &f.id, &h).await;
        assert_eq!(r.status(), StatusCode::OK, "{h:?}");
        assert_eq!(header(&r, "content-length"), Some("10"), "{h:?}");
        assert_eq!(header(&r, "content-range"), None, "{h:?}");
        assert_eq!(header(&r, "accept-ranges"), Some("bytes"), "{h:?}");
        assert!(r.bytes().await.unwrap().is_empty());
    }

    // If-Range on GET: a matching ETag keeps the range, another one voids it.
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=2-4"), ("If-Range", &etag)]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=2-4"), ("If-Range", "\"stale\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");
    s.stop().await;
}

#[tokio::test]
async fn a_range_of_an_empty_file_is_ignored() {
    let (_dir, s) = TestServer::start_temp().await;
    let f = s.upload_raw("empty.txt", b"").await;
    for (method, range) in [
        (Method::GET, "bytes=-5"),
        (Method::GET, "bytes=0-1023"),
        (Method::GET, "bytes=0-"),
        (Method::GET, "bytes=0-0,2-3"),
        (Method::HEAD, "bytes=-5"),
        (Method::HEAD, "bytes=0-1023"),
    ] {
        let r = ranged(&s, method.clone(), &f.id, &[("Range", range)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{method} {range}");
        assert_eq!(header(&r, "content-length"), Some("0"), "{method} {range}");
        assert_eq!(header(&r, "content-range"), None, "{method} {range}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
    s.stop().await;
}

/// The parts of a `multipart/byteranges` body: (Content-Range, bytes).
fn byteranges(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1).expect("a boundary").trim();
    let delim = format!("\r\n--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..].windows(needle.len()).position(|w| w == needle).map(|i| i + from)
    };
    let mut at = find(text, delim.as_bytes(), 0).expect("first delimiter");
    loop {
        let after = at + delim.len();
        if text[after..].starts_with(b"--") {
            assert_eq!(&text[after..], b"--\r\n", "closing delimiter");
            break;
        }
        let head_end = find(text, b"\r\n\r\n", after).expect("part headers");
        let head = std::str::from_utf8(&text[after + 2..head_end]).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("Content-Range in every part")
            .to_string();
        assert!(head.contains("Content-Type: text/plain"), "{head}");
        let next = find(text, delim.as_bytes(), head_end + 4).expect("next delimiter");
        parts.push((range, text[head_end + 4..next].to_vec()));
        at = next;
    }
    parts
}

#[tokio::test]
async fn several_ranges_answer_multipart_byteranges() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(300_000, 3).iter().map(|b| b'a' + b % 26).collect::<Vec<u8>>();
    let f = s.upload_raw("letters.txt", &data).await;

    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=250000-250009, 0-4,-3")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), None);
    let ct = header(&r, "content-type").unwrap().to_string();
    assert!(ct.starts_with("multipart/byteranges; boundary="), "{ct}");
    let len: usize = header(&r, "content-length").unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    let parts = byteranges(&ct, &body);
    assert_eq!(
        parts,
        vec![
            ("bytes 0-4/300000".to_string(), data[0..5].to_vec()),
            ("bytes 250000-250009/300000".to_string(), data[250_000..250_010].to_vec()),
            ("bytes 299997-299999/300000".to_string(), data[299_997..].to_vec()),
        ]
    );

    // Overlapping ranges are coalesced into one part.
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=0-3,2-5")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&r, "content-range"), Some("bytes 0-5/300000"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..6]);
    // Unsatisfiable members drop out; when all do, 416.
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=400000-,7-7")]).await;
    assert_eq!(header(&r, "content-range"), Some("bytes 7-7/300000"));
    let r = ranged(&s, Method::GET, &f.id, &[("Range", "bytes=400000-,500000-")]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    s.stop().await;
}

#[tokio::test]
async fn curl_reads_several_ranges_and_resumes() {
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is needed for this test");
    }
    let (dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(100_000, 4);
    let f = s.upload_raw("r.bin", &data).await;
    let url = s.url(&format!("/api/files/{}", f.id));
    // curl -r with one range: exactly those bytes.
    let out =
        tokio::process::Command::new("curl").args(["-sf", "-r", "100-199", &url]).output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, &data[100..200]);
    // curl -C -: resume a partial file.
    let path = dir.path().join("partial.bin");
    std::fs::write(&path, &data[..40_000]).unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "-C", "-", "-o", path.to_str().unwrap(), &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    s.stop().await;
}

#[tokio::test]
async fn chunks_are_fetched_whole_whatever_range_says() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(5_000, 5);
    let f = s.upload_raw("c.bin", &data).await;
    let hash = s.manifest(&f.id).await.chunks[0].hash.to_string();
    let r = s.get_with(&format!("/api/chunks/{hash}"), &[("Range", "bytes=0-9")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "accept-ranges"), Some("none"));
    assert_eq!(header(&r, "content-range"), None);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    s.stop().await;
}

/// `POST path` of a hand-written multipart body: `parts` as in
/// [`handmade_multipart`], closed.
async fn post_multipart(s: &TestServer, path: &str, parts: &[(String, &[u8])]) -> reqwest::Response {
    let boundary = "----depot-test-boundary";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let body = handmade_multipart(boundary, parts, true);
    client().post(s.url(path)).header("Content-Type", content_type).body(body).send().await.unwrap()
}

/// A regular upload whose `file` part carries `disposition` as sent.
async fn upload_with_disposition(s: &TestServer, disposition: &str, data: &[u8]) -> reqwest::Response {
    let part = (format!("Content-Disposition: {disposition}\r\nContent-Type: text/plain"), data);
    post_multipart(s, "/api/files/upload", &[part]).await
}

#[tokio::test]
async fn multipart_filenames_are_read_as_senders_write_them() {
    let (_dir, s) = TestServer::start_temp().await;
    let cases = [
        // filename* first, then the plain form: the decoded filename* wins.
        (
            r#"form-data; name="file"; filename*=utf-8''t%C5%8Dky%C5%8D%20report.txt; filename="tokyo report.txt""#,
            "tōkyō report.txt",
        ),
        // filename* alone (RFC 7578 §4.2 discourages it; the field sends it).
        (r#"form-data; name="file"; filename*=UTF-8''%E2%82%AC%20rates.txt"#, "€ rates.txt"),
        // Browsers escape `"` as %22 and send everything else as it is.
        (r#"form-data; name="file"; filename="say %22hi%22 100%.txt""#, "say \"hi\" 100%.txt"),
        (r#"form-data; name="file"; filename="naïve.txt""#, "naïve.txt"),
        // Parameters in another order, older curl's quoted-pair.
        (r#"form-data; filename="a\"b.txt"; name="file""#, "a\"b.txt"),
    ];
    for (disposition, want) in cases {
        let r = upload_with_disposition(&s, disposition, b"hello").await;
        assert_eq!(r.status(), StatusCode::CREATED, "{disposition}");
        let f: FileInfo = r.json().await.unwrap();
        assert_eq!(f.name, want, "{disposition}");
    }
    let files = s.stats().await.files;

    // Names that decode to control characters are still refused; nothing stays.
    for disposition in [
        r#"form-data; name="file"; filename="a%0D%0Ab.txt""#,
        "form-data; name=\"file\"; filename*=utf-8''a%07b.txt",
    ] {
        let r = upload_with_disposition(&s, disposition, b"hello").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{disposition}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["code"], 400);
    }
    // No filename in any form: the existing refusal.
    let r = upload_with_disposition(&s, r#"form-data; name="file""#, b"hello").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s.stats().await.files, files);
    s.stop().await;
}

#[tokio::test]
async fn chunked_pieces_read_part_names_the_same_way() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = b"piece of a file";
    let size = data.len().to_string();
    let mut parts: Vec<(String, &[u8])> = [
        ("resumableChunkNumber", "1"),
        ("resumableTotalChunks", "1"),
        ("resumableChunkSize", "1048576"),
        ("resumableTotalSize", &size),
        ("resumableIdentifier", "x-1"),
        ("resumableFilename", "tōkyō.txt"),
    ]
    .into_iter()
    .map(|(k, v)| (field(k), v.as_bytes()))
    .collect();
    parts.push((
        "Content-Disposition: form-data; filename*=utf-8''t%C5%8Dky%C5%8D.txt; name=\"file\"\r\n\
         Content-Type: application/octet-stream"
            .into(),
        data,
    ));
    let r = post_multipart(&s, "/api/files/upload/chunked", &parts).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    let list: serde_json::Value = s.get_json("/api/files").await;
    assert_eq!(list["files"][0]["name"], "tōkyō.txt");
    assert_eq!(list["files"][0]["size"], data.len());
    s.stop().await;
}

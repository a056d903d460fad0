//! curl walks every state of the resumable-upload draft against the real
//! server: creation with and without the complete body, the
//! `104 (Upload Resumption Supported)` before the final answer, the offset
//! after a cut, a wrong offset (409 with the expected one), an append after
//! completion, and cancellation.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;
use depot::testdata::pseudo_random;

/// The responses curl saw for one request, informational ones included,
/// as (status, headers with lower-case names), in order.
type Heads = Vec<(u16, Vec<(String, String)>)>;

/// Runs curl with `args` against `url`, the body (if any) read from
/// `body`; returns every response head and the final body.
async fn curl(url: &str, args: &[&str], body: Option<&Path>) -> (Heads, String) {
    let dir = tempfile::tempdir().unwrap();
    let (heads, out) = (dir.path().join("heads"), dir.path().join("body"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "-D"]).arg(&heads).arg("-o").arg(&out);
    cmd.args(["-H", "Upload-Draft-Interop-Version: 6"]).args(args);
    if let Some(b) = body {
        cmd.arg("--data-binary").arg(format!("@{}", b.display()));
    }
    cmd.arg(url);
    let status = tokio::task::spawn_blocking(move || cmd.status()).await.unwrap().unwrap();
    // 28: the --max-time cut a test asks for.
    assert!(status.success() || status.code() == Some(28), "curl: {status}");
    let text = std::fs::read_to_string(&heads).unwrap();
    let mut all: Heads = Vec::new();
    for line in text.split("\r\n") {
        if let Some(rest) = line.strip_prefix("HTTP/") {
            let code = rest.split(' ').nth(1).unwrap().parse().unwrap();
            all.push((code, Vec::new()));
        } else if let Some((k, v)) = line.split_once(':') {
            all.last_mut().unwrap().1.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (all, std::fs::read_to_string(&out).unwrap_or_default())
}

fn header<'a>(head: &'a (u16, Vec<(String, String)>), name: &str) -> &'a str {
    head.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {head:?}"))
}

fn statuses(heads: &Heads) -> Vec<u16> {
    heads.iter().map(|h| h.0).collect()
}

#[tokio::test]
async fn curl_walks_every_state_of_the_draft() {
    let (dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(3 << 20, 21);
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let tus = s.url("/api/tus/");

    // Creation with the complete body: 104 with the upload's URL, then 201.
    // (curl asks `Expect: 100-continue` for a body this large, so hyper's
    // 100 comes too, before or after the 104.)
    let (heads, _) = curl(&tus, &["-H", "Upload-Complete: ?1"], Some(&file)).await;
    let early = heads.iter().find(|h| h.0 == 104).unwrap_or_else(|| panic!("no 104 in {heads:?}"));
    let fin = heads.last().unwrap();
    assert_eq!(fin.0, 201, "{heads:?}");
    assert!(statuses(&heads).iter().position(|&c| c == 104) < Some(heads.len() - 1));
    assert_eq!(header(early, "location"), header(fin, "location"));
    assert_eq!(header(early, "upload-draft-interop-version"), "6");
    assert!(header(early, "upload-limit").contains("max-size="));
    assert_eq!(header(fin, "upload-complete"), "?1");
    assert_eq!(s.download(header(fin, "depot-file-id")).await, data);

    // Creation without the complete body: 104, 201 at the offset sent.
    let first = dir.path().join("first.bin");
    std::fs::write(&first, &data[..1 << 20]).unwrap();
    let (heads, _) = curl(
        &tus,
        &["-H", "Upload-Complete: ?0", "-H", &format!("Upload-Length: {}", data.len())],
        Some(&first),
    )
    .await;
    assert_eq!(*statuses(&heads).last().unwrap(), 201, "{heads:?}");
    assert!(statuses(&heads).contains(&104), "{heads:?}");
    let fin = heads.last().unwrap();
    assert_eq!(header(fin, "upload-offset"), (1 << 20).to_string());
    assert_eq!(header(fin, "upload-complete"), "?0");
    let partial = header(fin, "location").to_string();

    // A wrong offset: 409 with the expected offset, nothing appended.
    let rest = dir.path().join("rest.bin");
    std::fs::write(&rest, &data[1 << 20..]).unwrap();
    let patch =
        ["-X", "PATCH", "-H", "Content-Type: application/partial-upload", "-H", "Upload-Complete: ?1"];
    let (heads, body) =
        curl(&partial, &[&patch[..], &["-H", "Upload-Offset: 7"]].concat(), Some(&rest)).await;
    assert_eq!(statuses(&heads), [409], "{heads:?}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["expected-offset"], 1 << 20);
    let (heads, _) = curl(&partial, &["-I"], None).await;
    assert_eq!(header(&heads[0], "upload-offset"), (1 << 20).to_string());

    // The rest at the right offset completes it.
    let at = format!("Upload-Offset: {}", 1 << 20);
    let (heads, _) = curl(&partial, &[&patch[..], &["-H", &at]].concat(), Some(&rest)).await;
    assert_eq!(statuses(&heads).last(), Some(&204), "{heads:?}");
    let fin = heads.last().unwrap();
    assert_eq!(header(fin, "upload-complete"), "?1");
    assert_eq!(s.download(header(fin, "depot-file-id")).await, data);

    // An append after completion is refused with the draft's problem.
    let (heads, body) = curl(
        &partial,
        &[&patch[..], &["-H", &format!("Upload-Offset: {}", data.len())]].concat(),
        Some(&rest),
    )
    .await;
    assert_eq!(statuses(&heads), [400], "{heads:?}");
    assert!(body.contains("completed-upload"), "{body}");

    // A cut: curl stops sending after a second at 256 KiB/s. The 104 had
    // given it the URL; HEAD tells how far the server got; PATCH resumes.
    let (heads, _) =
        curl(&tus, &["-H", "Upload-Complete: ?1", "--limit-rate", "256K", "--max-time", "1"], Some(&file))
            .await;
    let early =
        heads.iter().find(|h| h.0 == 104).unwrap_or_else(|| panic!("no 104 before the cut: {heads:?}"));
    assert!(heads.iter().all(|h| h.0 < 200), "the cut came before a final answer: {heads:?}");
    let url = header(early, "location").to_string();
    let mut offset = 0;
    for _ in 0..50 {
        // The server notices the cut when the connection closes.
        let (heads, _) = curl(&url, &["-I"], None).await;
        assert_eq!(heads[0].0, 204, "{heads:?}");
        offset = header(&heads[0], "upload-offset").parse::<usize>().unwrap();
        if offset > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(offset > 0 && offset < data.len(), "offset after the cut: {offset}");
    let tail = dir.path().join("tail.bin");
    std::fs::write(&tail, &data[offset..]).unwrap();
    let at = format!("Upload-Offset: {offset}");
    let (heads, _) = curl(&url, &[&patch[..], &["-H", &at]].concat(), Some(&tail)).await;
    assert_eq!(statuses(&heads).last(), Some(&204), "{heads:?}");
    assert_eq!(s.download(header(heads.last().unwrap(), "depot-file-id")).await, data);

    // Cancellation: DELETE, then the upload is gone.
    let (heads, _) = curl(&tus, &["-H", "Upload-Complete: ?0"], Some(&first)).await;
    let url = header(heads.last().unwrap(), "location").to_string();
    let (heads, _) = curl(&url, &["-X", "DELETE"], None).await;
    assert_eq!(statuses(&heads), [204], "{heads:?}");
    let (heads, _) = curl(&url, &["-I"], None).await;
    assert_eq!(statuses(&heads), [404], "{heads:?}");
    s.stop().await;
}

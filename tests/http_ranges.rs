//! Range requests against the real server, with the open-files cache in
//! play: ranges inside and across manifest segments, on raw and on
//! zstd-compressed chunks, asked again once cached, consecutive ranges of
//! a compressed chunk decoding it once, and a file deleted
//! after it was cached answering 404 at once, and a damaged first chunk
//! answering 500 rather than a success status and a cut body.

mod common;

use common::{TestServer, metric, small_chunks};
use depot::testdata::pseudo_random;
use depot::wire::{FileInfo, ManifestInfo};
use reqwest::StatusCode;

/// `data[start..=end]` asked as `Range: bytes=start-end`: status and body.
async fn range(s: &TestServer, id: &str, start: usize, end: usize) -> (StatusCode, Vec<u8>) {
    let header = format!("bytes={start}-{end}");
    let r = s.get_with(&format!("/api/files/{id}"), &[("Range", header.as_str())]).await;
    let status = r.status();
    if status == StatusCode::PARTIAL_CONTENT {
        let len = end + 1 - start;
        assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    }
    (status, r.bytes().await.unwrap().to_vec())
}

/// Asks each of `ranges` twice (the second time from the cache) and checks
/// the bytes against `data`.
async fn ranges_match(s: &TestServer, f: &FileInfo, data: &[u8], ranges: &[(usize, usize)]) {
    for round in 0..2 {
        for &(start, end) in ranges {
            let (status, body) = range(s, &f.id, start, end).await;
            assert_eq!(status, StatusCode::PARTIAL_CONTENT, "bytes={start}-{end}, round {round}");
            assert!(body == data[start..=end], "bytes={start}-{end}, round {round}: other bytes");
        }
    }
}

#[tokio::test]
async fn ranges_inside_and_across_segments_are_the_files_bytes() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    // About 3,000 chunks of ~1 KiB: three manifest segments.
    let data = pseudo_random(3 << 20, 7);
    let f = s.upload_raw("three-segments.bin", &data).await;
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    assert!(m.chunks.len() > 2 * 1024, "{} chunks: fewer than three segments", m.chunks.len());
    let boundary = m.chunks[1024].offset as usize;
    let second = m.chunks[2048].offset as usize;
    let last = data.len() - 1;
    ranges_match(
        &s,
        &f,
        &data,
        &[
            (0, 0),
            (10, 70_000),
            (boundary - 1, boundary),
            (boundary - 5_000, boundary + 5_000),
            (boundary, boundary + 99),
            (second - 100_000, second + 100_000),
            // More than one blocking call's worth, across two boundaries.
            (boundary - 10, second + 300_000),
            (last - 65_535, last),
            (0, last),
        ],
    )
    .await;

    // Several ranges, some cached segments and some not, in one answer.
    let header = format!("bytes=5-9,{}-{},{}-", boundary - 2, boundary + 2, last - 3);
    let r = s.get_with(&format!("/api/files/{}", f.id), &[("Range", header.as_str())]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let body = r.bytes().await.unwrap();
    for part in [&data[5..=9], &data[boundary - 2..=boundary + 2], &data[last - 3..]] {
        assert!(body.windows(part.len()).any(|w| w == part), "a part is missing from the multipart body");
    }
}

#[tokio::test]
async fn ranges_of_compressed_chunks_are_the_files_bytes() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data: Vec<u8> =
        (0..40_000).flat_map(|i| format!("line {i}: the same words again\n").into_bytes()).collect();
    let f = s.upload_raw("text.txt", &data).await;
    let stats = s.stats().await;
    assert!(stats.stored_bytes * 2 < data.len() as u64, "the chunks are stored compressed: {stats:?}");
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    let boundary = m.chunks[1024].offset as usize;
    let c = m.chunks[10];
    let (c_start, c_end) = (c.offset as usize, (c.offset + u64::from(c.len)) as usize - 1);
    ranges_match(
        &s,
        &f,
        &data,
        &[
            (0, 99),
            (c_start, c_end),
            (c_start + 1, c_end - 1),
            (boundary - 300, boundary + 300),
            (3, 200_000),
        ],
    )
    .await;
}

/// Consecutive ranges through one compressed chunk read and decompress it
/// once: the first from its object, the others from the decoded chunk
/// (`depot_chunk_reads_total{path="decoded"}`), every one the file's bytes.
/// Objects are written through the page cache here, so that the next
/// chunk is there without a read of it (new objects are otherwise written
/// around it: `a_new_upload_is_read_from_the_disk_first_unless_direct_writes_are_off`).
#[tokio::test]
async fn consecutive_ranges_of_a_compressed_chunk_decode_it_once() {
    let (_dir, s) = TestServer::start_temp_with(|c| c.storage.direct_writes = false).await;
    let data: Vec<u8> = (0..100_000)
        .flat_map(|i| format!("record {i}: a line that compresses well\n").into_bytes())
        .collect();
    let f = s.upload_raw("log.txt", &data).await;
    let stats = s.stats().await;
    assert!(stats.stored_bytes * 2 < data.len() as u64, "the chunks are stored compressed: {stats:?}");
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    let c = m.chunks[1];
    let (offset, len) = (c.offset as usize, c.len as usize);
    assert!(len >= 64 << 10, "a chunk of {len} bytes");
    let step = len / 4;
    let before = reads(&s).await;
    for i in 0..4 {
        let start = offset + i * step;
        let end = if i == 3 { offset + len - 1 } else { start + step - 1 };
        let (status, body) = range(&s, &f.id, start, end).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert!(body == data[start..=end], "bytes={start}-{end}: other bytes");
    }
    let read = reads(&s).await - before;
    assert_eq!(
        read,
        Reads { cached: 0, blocking: 1, decoded: 3 },
        "one read of the object, three parts from memory"
    );
    // A range across two chunks: the decoded one from memory, the next
    // (not read before) from its object, which the page cache holds: read
    // there, on the async thread, and decoded on a blocking one without a
    // second read.
    // On a store with packs, a chunk's first read is a blocking one, which
    // looks up where its record is (`tries_cached` in the store's reads).
    let p = u64::from(s.state.config.storage.packs);
    let before = reads(&s).await;
    let (start, end) = (offset + len - 100, offset + len + 100);
    let (status, body) = range(&s, &f.id, start, end).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert!(body == data[start..=end], "bytes={start}-{end}: other bytes");
    assert_eq!(reads(&s).await - before, Reads { cached: 1 - p, blocking: p, decoded: 1 });
}

#[tokio::test]
async fn a_deleted_file_is_gone_at_once_though_it_was_cached() {
    let (_dir, s) = TestServer::start_temp().await;
    let data = pseudo_random(600_000, 3);
    let f = s.upload_raw("soon-gone.bin", &data).await;
    ranges_match(&s, &f, &data, &[(100, 65_635), (500_000, 599_999)]).await;
    assert_eq!(s.download(&f.id).await, data);

    assert_eq!(s.delete(&f.id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(range(&s, &f.id, 100, 65_635).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/files/{}", f.id)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/files/{}/info", f.id)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&f.id).await.status(), StatusCode::NOT_FOUND);
    let stats = s.stats().await;
    assert_eq!((stats.files, stats.logical_bytes), (0, 0));

    // The same bytes uploaded again are a new file, read as usual.
    let again = s.upload_raw("soon-gone.bin", &data).await;
    assert_ne!(again.id, f.id);
    ranges_match(&s, &again, &data, &[(100, 65_635)]).await;
}

/// A chunk found damaged by the first read of a download is an error answer
/// (500, JSON), not a success status followed by a cut connection: the
/// body's first frame is read before the head goes out. A damaged chunk
/// later in the file still cuts the stream (the status is gone by then).
/// Asked for alone (`GET /api/chunks/{hash}`), it is a 500 too.
#[tokio::test]
async fn a_damaged_first_chunk_is_an_error_answer_not_a_cut_body() {
    let (dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data = pseudo_random(200_000, 11);
    let f = s.upload_raw("rot.bin", &data).await;
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    let (first, second) = (m.chunks[0], m.chunks[1]);
    damage(dir.path(), first, |len| len - 1); // the payload's last byte

    // The chunk alone, then the whole file, and a range that reads the
    // first chunk whole.
    let second_alone = s.get(&format!("/api/chunks/{}", second.hash)).await;
    assert_eq!(second_alone.status(), StatusCode::OK);
    let (from, to) = (second.offset as usize, (second.offset + u64::from(second.len)) as usize);
    assert_eq!(second_alone.bytes().await.unwrap(), data[from..to], "an undamaged chunk alone");
    for r in [
        s.get(&format!("/api/chunks/{}", first.hash)).await,
        s.get(&format!("/api/files/{}", f.id)).await,
        s.get_with(&format!("/api/files/{}", f.id), &[("Range", &format!("bytes=0-{}", first.len - 1))])
            .await,
    ] {
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
    }
    // Chunks the damage does not touch are served as before.
    let (start, end) = (second.offset as usize, data.len() - 1);
    assert_eq!(range(&s, &f.id, start, end).await, (StatusCode::PARTIAL_CONTENT, data[start..=end].to_vec()));
}

/// A small range of a cached segment is read on the server's async thread
/// when the page cache holds it; a chunk whose object header no longer
/// checks is not answered there but by the blocking read, which answers 500
/// and marks the chunk damaged (the missing-chunks query then asks for it),
/// while ranges of the chunk next to it are still served.
#[tokio::test]
async fn a_damaged_header_under_a_cached_range_is_found_and_marked() {
    use depot::wire::MissingResponse;

    let (dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data = pseudo_random(200_000, 12);
    let f = s.upload_raw("head.bin", &data).await;
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    let (first, second) = (m.chunks[0], m.chunks[1]);
    let inside =
        |c: depot::wire::ManifestChunk| (c.offset as usize + 1, (c.offset + u64::from(c.len)) as usize - 2);
    let before = reads(&s).await;
    // Asked once: the segment is cached, and both parts are served; the
    // first from a blocking thread (which caches the segment), the second
    // from the page cache. On a store with packs, a chunk's first read is a
    // blocking one, which looks up where its record is (`tries_cached` in
    // the store's reads): `p` more blocking reads and fewer cached ones.
    let p = u64::from(s.state.config.storage.packs);
    for c in [first, second] {
        let (a, b) = inside(c);
        assert_eq!(range(&s, &f.id, a, b).await, (StatusCode::PARTIAL_CONTENT, data[a..=b].to_vec()));
    }
    assert_eq!(reads(&s).await - before, Reads { cached: 1 - p, blocking: 1 + p, decoded: 0 });

    damage(dir.path(), first, |_| 8); // inside the header

    let (a, b) = inside(first);
    assert_eq!(range(&s, &f.id, a, b).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        reads(&s).await - before,
        Reads { cached: 1 - p, blocking: 2 + p, decoded: 0 },
        "refused cached, found blocking"
    );
    let r = client_post_missing(&s, &[first.hash, second.hash]).await;
    assert_eq!(r.json::<MissingResponse>().await.unwrap().missing, vec![first.hash], "marked damaged");
    let (a, b) = inside(second);
    assert_eq!(range(&s, &f.id, a, b).await, (StatusCode::PARTIAL_CONTENT, data[a..=b].to_vec()));
    assert_eq!(reads(&s).await - before, Reads { cached: 2 - p, blocking: 2 + p, decoded: 0 });
}

/// A long download reads the chunks the page cache holds on tasks of their
/// own, checking each payload's CRC there; a chunk damaged after a first
/// download (so its damaged bytes are what the cache holds) is not served
/// from there but found by the blocking read: the stream is cut before the
/// damaged bytes, and the chunk is marked damaged.
#[tokio::test]
async fn a_damaged_chunk_under_a_cached_download_is_found_and_marked() {
    use depot::wire::MissingResponse;
    use futures_util::StreamExt;

    let (dir, s) = TestServer::start_temp_with(|c| c.chunking = small_chunks()).await;
    let data = pseudo_random(3 << 20, 13); // past one blocking read (1 MiB)
    let f = s.upload_raw("long.bin", &data).await;
    let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
    // New objects of 4 KiB or more are written around the page cache: a
    // first download brings them in. After it, none is read blocking.
    assert_eq!(s.download(&f.id).await, data, "first download");
    let before = reads(&s).await;
    let whole = s.get(&format!("/api/files/{}", f.id)).await;
    assert_eq!(whole.bytes().await.unwrap(), data, "second download");
    let chunks = m.chunks.len() as u64;
    assert_eq!(reads(&s).await - before, Reads { cached: chunks, blocking: 0, decoded: 0 });

    let i = m.chunks.len() / 2;
    let c = m.chunks[i];
    damage(dir.path(), c, |len| len - 1); // the payload's last byte
    let before = reads(&s).await;

    let r = s.get(&format!("/api/files/{}", f.id)).await;
    assert_eq!(r.status(), StatusCode::OK, "the damage is past the first chunk");
    let mut body = Vec::new();
    let mut stream = r.bytes_stream();
    let mut cut = false;
    while let Some(frame) = stream.next().await {
        match frame {
            Ok(b) => body.extend_from_slice(&b),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "the stream is cut, not completed ({} bytes)", body.len());
    assert!(body.len() <= c.offset as usize, "no byte of the damaged chunk is served");
    assert_eq!(body, data[..body.len()]);
    // The chunks before it from the cache; it, refused there, read blocking.
    let now = reads(&s).await - before;
    assert_eq!(now.blocking, 1, "{now:?}");
    assert!(now.cached >= i as u64, "{now:?}");
    let r = client_post_missing(&s, &[c.hash, m.chunks[0].hash]).await;
    assert_eq!(r.json::<MissingResponse>().await.unwrap().missing, vec![c.hash], "marked damaged");
}

/// New objects are written with `O_DIRECT` where the filesystem takes it
/// (`storage.direct_writes`, on by default), so a new file's chunks are
/// out of the page cache, but for the first (which the commit's type check
/// read) and each object's tail of under a page (written through the page
/// cache: `store::objects::direct`); its first download reads them from the
/// disk. With direct writes off, the page cache holds every one, and the
/// download reads every chunk from it. What the page cache holds is
/// counted by util-linux's `fincore`, which never reads the files: the
/// download's counters cannot tell on their own, since a `RWF_NOWAIT` read
/// that misses starts readahead, which under load can fill the pages
/// before the download looks again (this test once counted 4 cached reads
/// for 1 that way). Loose objects: records appended to one pack are also
/// written around the page cache (tests/packs.rs), but a download's reads
/// of one file are read ahead by the kernel.
#[tokio::test]
async fn a_new_upload_is_read_from_the_disk_first_unless_direct_writes_are_off() {
    for direct in [true, false] {
        let (dir, s) = TestServer::start_temp_with(|c| {
            c.storage.direct_writes = direct;
            c.storage.packs = false;
        })
        .await;
        if direct && !takes_direct(dir.path()) {
            eprintln!("skipped: this filesystem does not take O_DIRECT");
            continue;
        }
        let data = pseudo_random(3 << 20, 21);
        let f = s.upload_raw("new.bin", &data).await;
        let m: ManifestInfo = s.get_json(&format!("/api/files/{}/manifest", f.id)).await;
        let chunks = m.chunks.len() as u64;
        assert!(chunks >= 3 && m.chunks.iter().all(|c| c.len >= 64 << 10), "default-sized chunks");
        for c in &m.chunks[1..] {
            let path = common::stored::place(dir.path(), &c.hash).path;
            let (len, resident) = (std::fs::metadata(&path).unwrap().len(), resident_bytes(&path));
            let hash = c.hash;
            if direct {
                assert!(resident <= 4096, "direct writes: {resident} of {len} bytes of {hash} cached");
            } else {
                assert!(resident >= len, "buffered writes: {resident} of {len} bytes of {hash} cached");
            }
        }
        let before = reads(&s).await;
        assert_eq!(s.download(&f.id).await, data);
        let now = reads(&s).await - before;
        assert_eq!(now.cached + now.blocking, chunks, "{now:?}");
        assert_eq!(now.decoded, 0, "{now:?}");
        if !direct {
            assert_eq!(now.cached, chunks, "buffered writes: {now:?}");
        }
    }
}

/// The bytes of the file at `path` the page cache holds, counted by
/// util-linux's `fincore` (`mincore(2)` or `cachestat(2)`), which never
/// reads the file.
///
/// # Panics
/// Without `fincore` on `PATH` (Debian: `util-linux-extra`, which `make
/// test` installs), or on an answer that is not a number.
fn resident_bytes(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--raw", "--noheadings", "--bytes", "--output", "RES"])
        .arg(path)
        .output()
        .expect("missing: fincore (Debian: apt-get install util-linux-extra)");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("fincore said {text:?}"))
}

/// Whether the store writes objects directly on the filesystem under
/// `dir` (its own probe; `store::objects::tests` checks that probe against
/// one of its own).
fn takes_direct(dir: &std::path::Path) -> bool {
    use depot::store::{FsObjects, FsyncPolicy};
    let probe = dir.join("direct-probe");
    let on = FsObjects::open(&probe, FsyncPolicy::Never).unwrap().with_direct_writes(true).writes_direct();
    std::fs::remove_dir_all(&probe).unwrap();
    on
}

/// The server's chunk reads so far (`depot_chunk_reads_total`), by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    cached: u64,
    blocking: u64,
    decoded: u64,
}

impl std::ops::Sub for Reads {
    type Output = Reads;
    fn sub(self, o: Reads) -> Reads {
        Reads {
            cached: self.cached - o.cached,
            blocking: self.blocking - o.blocking,
            decoded: self.decoded - o.decoded,
        }
    }
}

async fn reads(s: &TestServer) -> Reads {
    let m = s.get("/metrics").await.text().await.unwrap();
    Reads {
        cached: metric(&m, "depot_chunk_reads_total{path=\"cached\"}"),
        blocking: metric(&m, "depot_chunk_reads_total{path=\"blocking\"}"),
        decoded: metric(&m, "depot_chunk_reads_total{path=\"decoded\"}"),
    }
}

/// Flips one bit of chunk `c`'s stored object in the data directory `dir`
/// (a loose object or a pack record), at the byte `at` picks from the
/// object's length; the object must be raw.
fn damage(dir: &std::path::Path, c: depot::wire::ManifestChunk, at: fn(usize) -> usize) {
    let stored = common::stored::place(dir, &c.hash);
    assert_eq!(stored.len, depot::store::object::HEADER_LEN + c.len as usize, "a raw object");
    common::stored::flip_bit(dir, &c.hash, at);
}

/// `POST /api/chunks/missing` for `hashes`; it must answer 200.
async fn client_post_missing(s: &TestServer, hashes: &[depot::store::ChunkId]) -> reqwest::Response {
    let r = reqwest::Client::new()
        .post(s.url("/api/chunks/missing"))
        .json(&serde_json::json!({ "hashes": hashes }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r
}

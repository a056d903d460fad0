//! The S3 engine contract depot relies on, checked against a real Garage
//! (the reference engine) with the `object_store` client depot uses: PUT,
//! GET, HEAD, DELETE of a missing key, DeleteObjects, ListObjectsV2 paging
//! with `start-after`, read-after-write. And one probe of what depot must
//! NOT rely on: a conditional PUT (`If-None-Match: *`).
#![cfg(feature = "s3")]

mod common;

use std::sync::Arc;

use common::garage::Garage;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, S3ConditionalPut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

/// A client of `g`'s bucket; `conditional` turns on `If-None-Match: *` for
/// `PutMode::Create` (depot never does).
fn client(g: &Garage, conditional: bool) -> Arc<AmazonS3> {
    let mode = if conditional { S3ConditionalPut::ETagMatch } else { S3ConditionalPut::Disabled };
    Arc::new(g.s3_builder().with_conditional_put(mode).build().unwrap())
}

fn key(s: &str) -> Path {
    Path::parse(s).unwrap()
}

async fn read(c: &AmazonS3, k: &str) -> Vec<u8> {
    c.get(&key(k)).await.unwrap().bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn garage_keeps_the_promises_depot_relies_on() {
    let Some(g) = Garage::start() else { return };
    let c = client(&g, false);

    // PUT, then read-after-write: GET and HEAD see it at once.
    c.put(&key("t/a"), PutPayload::from_static(b"hello")).await.unwrap();
    assert_eq!(read(&c, "t/a").await, b"hello");
    assert_eq!(c.head(&key("t/a")).await.unwrap().size, 5);
    assert_eq!(c.get_range(&key("t/a"), 1..3).await.unwrap().as_ref(), b"el", "ranged GET");
    // An overwrite is seen at once too.
    c.put(&key("t/a"), PutPayload::from_static(b"world!")).await.unwrap();
    assert_eq!(read(&c, "t/a").await, b"world!");

    // HEAD and GET of a missing key: NotFound, which depot reads as absent.
    assert!(matches!(c.head(&key("t/none")).await, Err(object_store::Error::NotFound { .. })));
    assert!(matches!(c.get(&key("t/none")).await, Err(object_store::Error::NotFound { .. })));

    // DELETE of a missing key succeeds (2xx).
    c.delete(&key("t/none")).await.unwrap();
    c.delete(&key("t/a")).await.unwrap();
    assert!(matches!(c.head(&key("t/a")).await, Err(object_store::Error::NotFound { .. })));

    // ListObjectsV2 with start-after and max-keys: ordered pages.
    let names: Vec<String> = (0..25).map(|i| format!("p/{i:03}")).collect();
    for n in &names {
        c.put(&key(n), PutPayload::from_static(b"x")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let opts = PaginatedListOptions { offset: after.clone(), max_keys: Some(7), ..Default::default() };
        let page = c.list_paginated(Some("p/"), opts).await.unwrap().result.objects;
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Some(last.location.to_string());
        seen.extend(page.iter().map(|m| m.location.to_string()));
    }
    assert_eq!(seen, names, "every key once, in order");
    let opts =
        PaginatedListOptions { offset: Some("p/019".into()), max_keys: Some(100), ..Default::default() };
    let tail = c.list_paginated(Some("p/"), opts).await.unwrap().result.objects;
    assert_eq!(tail.len(), 5, "start-after is exclusive");

    // DeleteObjects: present and absent keys alike come back as deleted.
    let mut doomed: Vec<Path> = names.iter().map(|n| key(n)).collect();
    doomed.push(key("p/never-written"));
    let input = futures_util::stream::iter(doomed.into_iter().map(Ok)).boxed();
    let results: Vec<_> = c.delete_stream(input).collect().await;
    assert_eq!(results.len(), 26);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let left = c.list_paginated(Some("p/"), PaginatedListOptions::default()).await.unwrap();
    assert!(left.result.objects.is_empty());
}

/// Garage 2.5.0 does not evaluate `If-None-Match: *` on PUT: the second
/// create-only PUT succeeds and overwrites (its put.rs never reads the
/// header). Depot must not depend on conditional PUTs: S3Objects never
/// sends one, and the store never writes one key twice there: every write
/// of a chunk goes to a generation it claimed in the metadata first
/// (src/store/generations.rs). If this starts failing, Garage learned
/// conditional writes: good news, but keep depot independent of them.
#[tokio::test]
async fn garage_ignores_if_none_match_on_put() {
    let Some(g) = Garage::start() else { return };
    let c = client(&g, true);
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    c.put_opts(&key("probe"), PutPayload::from_static(b"first"), create()).await.unwrap();
    let second = c.put_opts(&key("probe"), PutPayload::from_static(b"second"), create()).await;
    assert!(second.is_ok(), "Garage now refuses a create-only PUT over a key: {second:?}");
    assert_eq!(read(&c, "probe").await, b"second", "the conditional PUT overwrote silently");
    if let Some(v) = Garage::version() {
        eprintln!("observed with {v}");
    }
}

//! `S3Objects` against a real Garage: the same `ObjectStore` contract the
//! directory and the memory twin pass (`depot::store::objects::contract`),
//! the key layout, and calls from places a blocking API can be called from
//! by mistake (an async task's thread).
#![cfg(feature = "s3")]

mod common;

use std::sync::Arc;

use common::garage::Garage;
use depot::store::objects::contract::{self, Breadth};
use depot::store::objects::{S3Credentials, S3Objects, S3Options};
use depot::store::{ChunkId, ObjectKey, ObjectStore};

#[test]
fn s3_objects_keep_the_contract() {
    let Some(g) = Garage::start() else { return };
    let store = S3Objects::open_with(&g.options("contract"), &g.credentials()).unwrap();
    contract::check(&store, Breadth::Neighbours);
    assert!(store.generational(), "the store writes a new generation for every write here");
    // Another prefix of the same bucket is another store.
    let other = S3Objects::open_with(&g.options("other/"), &g.credentials()).unwrap();
    let id = ObjectKey::new(ChunkId::of(b"layout"), 9);
    assert!(store.put_if_absent(&id, &[b"x"]).unwrap());
    assert!(!other.contains(&id).unwrap());
    assert!(other.list(id.id.as_bytes()[0], None, 10).unwrap().is_empty());
    assert_eq!(store.list(id.id.as_bytes()[0], None, 10).unwrap().len(), 1);
}

/// The keys are `{prefix}chunks/ab/<hex>.<16 hex generation>` (generation 0,
/// what buckets held before generations: `<hex>`), and a name there that is
/// not a key is skipped by listings (as foreign files are in the directory).
#[tokio::test]
async fn keys_follow_the_layout_and_foreign_names_are_skipped() {
    use object_store::ObjectStore as _;
    let Some(g) = Garage::start() else { return };
    let opts = g.options("/depot/");
    let store = tokio::task::spawn_blocking({
        let (opts, creds) = (opts.clone(), g.credentials());
        move || S3Objects::open_with(&opts, &creds).unwrap()
    })
    .await
    .unwrap();
    let store = Arc::new(store);
    let id = ObjectKey::new(ChunkId::of(b"k"), 0x1234_5678_9abc_def0);
    let legacy = ObjectKey::plain(id.id);
    let hex = id.id.to_string();
    let raw = g.s3_builder().build().unwrap();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        s.put_many(&[(id, vec![&b"ab"[..], b"c"]), (legacy, vec![&b"old"[..]])]).unwrap()
    })
    .await
    .unwrap();
    let key = format!("depot/chunks/{}/{hex}.123456789abcdef0", &hex[..2]);
    let got = raw.get(&key.as_str().into()).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"abc", "stored under {key}");
    let key = format!("depot/chunks/{}/{hex}", &hex[..2]);
    let got = raw.get(&key.as_str().into()).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"old", "generation 0 under {key}");
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.delete_many(&[legacy]).unwrap()).await.unwrap();
    let foreign = format!("depot/chunks/{}/notes.txt", &hex[..2]);
    raw.put(&foreign.as_str().into(), object_store::PutPayload::from_static(b"n")).await.unwrap();
    let s = store.clone();
    let listed =
        tokio::task::spawn_blocking(move || s.list(id.id.as_bytes()[0], None, 1).unwrap()).await.unwrap();
    assert_eq!(listed.len(), 1, "a page of one holds the object, not the foreign name");
    assert_eq!(listed[0].key, id);
    let s = store.clone();
    tokio::task::spawn_blocking(move || assert!(s.quarantine(&id).unwrap())).await.unwrap();
    let quarantined = raw.list_with_delimiter(Some(&"depot/quarantine".into())).await.unwrap().objects;
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].location.as_ref().starts_with(&format!("depot/quarantine/{hex}.123456789abcdef0."))
    );
    // The last handle dropped here, on a runtime thread: no panic.
    drop(store);
}

/// The store's blocking calls run from inside an async task (a test body,
/// a handler that forgot `spawn_blocking`): they block that thread but never
/// panic with "cannot start a runtime from within a runtime", on either
/// kind of runtime; and the store can be dropped there.
#[test]
fn blocking_calls_from_async_contexts_do_not_panic() {
    let Some(g) = Garage::start() else { return };
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()
        } else {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        }
        .unwrap();
        let (opts, creds) = (g.options(if multi { "multi" } else { "single" }), g.credentials());
        rt.block_on(async move {
            let store = S3Objects::open_with(&opts, &creds).unwrap();
            let id = ObjectKey::new(ChunkId::of(b"inside"), 1);
            assert!(store.put_if_absent(&id, &[b"in", b"side"]).unwrap());
            assert_eq!(store.get(&id).unwrap().unwrap(), b"inside");
            assert_eq!(store.delete_many(&[id]).unwrap(), 1);
            drop(store);
        });
    }
}

/// Missing credentials, endpoint or an `http://` endpoint without
/// `allow_http` are named; an unreachable bucket is named with its endpoint.
#[test]
fn bad_settings_are_named() {
    let creds =
        S3Credentials { access_key_id: "GK1".into(), secret_access_key: "s".into(), session_token: None };
    let e = S3Credentials::from_env(|k| (k == "AWS_ACCESS_KEY_ID").then(|| "GK1".to_string())).unwrap_err();
    assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
    let e = S3Objects::open_with(&S3Options::default(), &creds).err().unwrap();
    assert!(e.to_string().contains("AWS_ENDPOINT_URL"), "{e}");
    let plain = S3Options { endpoint: "http://127.0.0.1:9".into(), ..S3Options::default() };
    let e = S3Objects::open_with(&plain, &creds).err().unwrap();
    assert!(e.to_string().contains("allow_http"), "{e}");
    let Some(g) = Garage::start() else { return };
    let wrong = S3Options { bucket: "no-such-bucket".into(), ..g.options("") };
    let e = S3Objects::open_with(&wrong, &g.credentials()).err().unwrap();
    assert!(e.to_string().contains("no-such-bucket") && e.to_string().contains(&g.endpoint), "{e}");
}

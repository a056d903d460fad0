//! [`S3Objects`]: chunk objects in an S3 bucket (any engine that speaks the
//! S3 API; Garage 2.5.0 is the reference and the one the tests start).
//!
//! Keys are `{prefix}chunks/ab/<64 hex>.<16 hex>` ([`ObjectKey::name`]:
//! the chunk id and its generation), `ab` being the id's first byte, so
//! that one listing prefix is one [`ObjectStore::list`] prefix, and keys
//! sort by id, then generation. Generation 0 is `<64 hex>` with no suffix:
//! the name chunk objects had before generations, so a bucket written then
//! stays readable (its rows decode as generation 0). Quarantined objects go
//! to `{prefix}quarantine/<name>.<unix seconds>`. Every object is written
//! with one PUT (chunks and seed pieces are at most `max_object_size`), so
//! there is no multipart upload and nothing stale for
//! [`ObjectStore::sweep_temp`] to abort.
//!
//! **Generational.** Garage ignores `If-None-Match` on PUT (it overwrites
//! silently: see `tests/s3_engine.rs`), and orders a PUT and a DELETE of
//! one key by clocks, so this module never sends a conditional PUT (nor
//! turns on `object_store`'s conditional-put mode) and the store never
//! writes one key twice: [`ObjectStore::generational`] is `true`, and the
//! store claims a fresh generation in the chunk's row before it PUTs
//! (docs/DESIGN.md, "Generations"). A late DELETE then only ever hits a
//! generation no row names. [`ObjectStore::put_many`] runs its PUTs
//! side by side (up to `max_in_flight`); the put path sends no HEAD and no
//! LIST. [`ObjectStore::put_if_absent`] is still here for the contract: a
//! HEAD, then a PUT when the HEAD found nothing, create-only only for one
//! writer of the key, which is why the store does not use it on this
//! engine.
//!
//! Durability: an acknowledged PUT is durable on the engine (Garage answers
//! after its write quorum), so [`ObjectStore::barrier`] and
//! [`ObjectStore::sync_all`] keep their no-op defaults.
//!
//! Threads: the trait is blocking and the store calls it from blocking
//! threads (`Store::blocking`), sometimes from a test's async body. The
//! `object_store` client runs on a small runtime owned by this value; a
//! call spawns its request there and waits on a channel. It never enters a
//! runtime itself, so a call from inside a tokio worker blocks that worker
//! but cannot panic with "runtime within runtime". A semaphore bounds the
//! requests in flight (`storage.s3.max_in_flight`).
//!
//! Credentials come only from the standard `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and optional `AWS_SESSION_TOKEN`) variables;
//! the endpoint from the configuration or else `AWS_ENDPOINT_URL`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore as _, PutPayload, RetryConfig};
use tokio::sync::Semaphore;

use super::quickack::QuickAckConnector;
use super::{ObjectEntry, ObjectKey, ObjectStore, S3Options};

/// Longest TCP connect to the endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request (with reqwest, over `https://`: the whole exchange; over
/// `http://`, see `quickack`: the wait for the response head, and each wait
/// on its body): room for the largest object (a 64 MiB seed piece) on a
/// slow link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Most keys one ListObjectsV2 call returns (the S3 limit).
const MAX_KEYS: usize = 1000;

/// Where the S3 client finds its credentials: the standard AWS variables.
#[derive(Clone)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID` (Garage: `GK` and 24 hex digits).
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`; never logged (`Debug` leaves it out).
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, when set,
    /// `AWS_SESSION_TOKEN`, read through `env`.
    ///
    /// # Errors
    /// `InvalidInput` naming the first required variable that is unset or empty.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> io::Result<Self> {
        let need = |var: &str| {
            env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("storage.objects is \"s3\" but {var} is not set (S3 credentials come only from the environment)"),
                )
            })
        };
        Ok(S3Credentials {
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: need("AWS_SECRET_ACCESS_KEY")?,
            session_token: env("AWS_SESSION_TOKEN").filter(|v| !v.is_empty()),
        })
    }
}

/// Chunk objects in an S3 bucket. See the module docs for the key layout
/// and why the store gives every write a new generation here.
pub struct S3Objects {
    client: Arc<AmazonS3>,
    /// `""` or segments ending in `/` (`"depot/"`).
    prefix: String,
    endpoint: String,
    bucket: String,
    bridge: Bridge,
}

impl S3Objects {
    /// Opens the bucket `opts` names with the credentials of the process
    /// environment ([`S3Credentials::from_env`]); an empty `opts.endpoint`
    /// takes `AWS_ENDPOINT_URL`. Lists one key to prove the endpoint,
    /// bucket and credentials work.
    ///
    /// # Errors
    /// `InvalidInput` for a missing credential or endpoint, an `http://`
    /// endpoint without `allow_http`, or a bad prefix; the engine's error
    /// (with endpoint and bucket) when the first listing fails.
    pub fn open(opts: &S3Options) -> io::Result<Self> {
        let env = |k: &str| std::env::var(k).ok();
        let mut opts = opts.clone();
        if opts.endpoint.is_empty() {
            opts.endpoint = env("AWS_ENDPOINT_URL").unwrap_or_default();
        }
        Self::open_with(&opts, &S3Credentials::from_env(env)?)
    }

    /// As [`S3Objects::open`], with the credentials given.
    ///
    /// # Errors
    /// As [`S3Objects::open`].
    pub fn open_with(opts: &S3Options, creds: &S3Credentials) -> io::Result<Self> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        opts.check().map_err(invalid)?;
        if opts.endpoint.is_empty() {
            return Err(invalid(
                "storage.objects is \"s3\" but no endpoint is set: set storage.s3.endpoint \
                 (DEPOT_S3_ENDPOINT) or AWS_ENDPOINT_URL"
                    .into(),
            ));
        }
        let client = ClientOptions::new()
            .with_allow_http(opts.allow_http)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let retry =
            RetryConfig { max_retries: 4, retry_timeout: Duration::from_secs(60), ..Default::default() };
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&opts.endpoint)
            .with_bucket_name(&opts.bucket)
            .with_region(&opts.region)
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_allow_http(opts.allow_http)
            .with_virtual_hosted_style_request(false)
            // Never a conditional PUT: Garage ignores If-None-Match (module docs).
            .with_conditional_put(S3ConditionalPut::Disabled)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(t) = &creds.session_token {
            builder = builder.with_token(t);
        }
        if opts.endpoint.starts_with("http://") {
            // Plain HTTP: ACK every read at once (see `quickack`).
            builder = builder.with_http_connector(QuickAckConnector {
                connect_timeout: CONNECT_TIMEOUT,
                timeout: REQUEST_TIMEOUT,
            });
        }
        let client = builder.build().map_err(|e| invalid(format!("storage.s3: {e}")))?;
        let store = S3Objects {
            client: Arc::new(client),
            prefix: opts.key_prefix(),
            endpoint: opts.endpoint.clone(),
            bucket: opts.bucket.clone(),
            bridge: Bridge::new(opts.max_in_flight)?,
        };
        store.list_keys(&format!("{}chunks/", store.prefix), None, 1).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot list bucket `{}` at {}: {e}", store.bucket, store.endpoint),
            )
        })?;
        Ok(store)
    }

    fn key(&self, key: &ObjectKey) -> String {
        format!("{}chunks/{:02x}/{}", self.prefix, key.id.as_bytes()[0], key.name())
    }

    fn path(&self, key: &ObjectKey) -> io::Result<Path> {
        path(&self.key(key))
    }

    /// Runs one request on the client's runtime and waits for it.
    fn run<T, F, Fut>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<AmazonS3>) -> Fut,
        Fut: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let fut = f(self.client.clone());
        self.bridge.run(async move { fut.await.map_err(io_error) })
    }

    fn head(&self, key: &ObjectKey) -> io::Result<Option<u64>> {
        let p = self.path(key)?;
        match self.run(|c| async move { c.head(&p).await }) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        let p = self.path(key)?;
        let payload = payload(parts);
        self.run(|c| async move { c.put(&p, payload).await }).map(|_| ())
    }

    /// Keys under `prefix` past `after`, at most `limit`, in key order: one
    /// ListObjectsV2 call with `start-after` and `max-keys`.
    fn list_keys(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> io::Result<Vec<object_store::ObjectMeta>> {
        let prefix = prefix.to_string();
        let opts =
            PaginatedListOptions { offset: after, max_keys: Some(limit.min(MAX_KEYS)), ..Default::default() };
        self.run(|c| async move { c.list_paginated(Some(&prefix), opts).await })
            .map(|page| page.result.objects)
    }
}

impl ObjectStore for S3Objects {
    fn generational(&self) -> bool {
        true
    }

    fn put_if_absent(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<bool> {
        if self.head(key)?.is_some() {
            return Ok(false);
        }
        self.put(key, parts)?;
        Ok(true)
    }

    fn replace(&self, key: &ObjectKey, parts: &[&[u8]]) -> io::Result<()> {
        self.put(key, parts)
    }

    /// One PUT per object, all spawned at once on the client's runtime and
    /// bounded by `max_in_flight` (shared with every other caller).
    fn put_many(&self, items: &[(ObjectKey, Vec<&[u8]>)]) -> io::Result<()> {
        let mut requests = Vec::with_capacity(items.len());
        for (key, parts) in items {
            let (p, body, c) = (self.path(key)?, payload(parts), self.client.clone());
            requests.push(async move { c.put(&p, body).await.map(|_| ()).map_err(io_error) });
        }
        self.bridge.run_all(requests).into_iter().collect()
    }

    fn get(&self, key: &ObjectKey) -> io::Result<Option<Vec<u8>>> {
        let p = self.path(key)?;
        match self.run(|c| async move { c.get(&p).await?.bytes().await }) {
            Ok(b) => Ok(Some(Vec::from(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A ranged GET (`Range: bytes=start-end`); a start at or past the end
    /// gives an empty slice, as the default does.
    fn get_range(&self, key: &ObjectKey, start: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
        if len == 0 {
            return Ok(self.head(key)?.map(|_| Vec::new()));
        }
        let p = self.path(key)?;
        let range = start..start.saturating_add(len as u64);
        match self.run(|c| async move { c.get_range(&p, range).await }) {
            Ok(b) => Ok(Some(Vec::from(b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // S3 answers 416 for a start past the end: tell it from failure.
            Err(e) => match self.head(key)? {
                None => Ok(None),
                Some(size) if start >= size => Ok(Some(Vec::new())),
                Some(_) => Err(e),
            },
        }
    }

    fn contains(&self, key: &ObjectKey) -> io::Result<bool> {
        Ok(self.head(key)?.is_some())
    }

    /// DeleteObjects, up to 1,000 keys a request. A key that is absent
    /// counts as deleted.
    fn delete_many(&self, keys: &[ObjectKey]) -> io::Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let paths = keys.iter().map(|k| self.path(k)).collect::<io::Result<Vec<Path>>>()?;
        let n = paths.len();
        self.run(|c| async move {
            let input = futures_util::stream::iter(paths.into_iter().map(Ok)).boxed();
            let mut results = c.delete_stream(input);
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    // S3 reports no error for an absent key; an engine that
                    // does says `NoSuchKey`, which is deleted too.
                    Err(e) if e.to_string().contains("NoSuchKey") => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// ListObjectsV2 over `{prefix}chunks/ab/`, `start-after` the last key
    /// seen, until `limit` objects are found or the listing ends. Names
    /// that are not an [`ObjectKey`]'s are skipped (not ours), so more than
    /// one call may make a page.
    fn list(
        &self,
        prefix: u8,
        start_after: Option<&ObjectKey>,
        limit: usize,
    ) -> io::Result<Vec<ObjectEntry>> {
        let mut out = Vec::new();
        let dir = format!("{}chunks/{prefix:02x}/", self.prefix);
        let mut after = match start_after {
            Some(a) if a.id.as_bytes()[0] > prefix => return Ok(out),
            Some(a) if a.id.as_bytes()[0] == prefix => Some(self.key(a)),
            _ => None,
        };
        while out.len() < limit {
            let want = limit - out.len();
            let page = self.list_keys(&dir, after.clone(), want)?;
            let Some(last) = page.last() else { break };
            after = Some(last.location.to_string());
            let ended = page.len() < want.min(MAX_KEYS);
            for meta in page {
                let name = meta.location.as_ref().strip_prefix(dir.as_str()).unwrap_or_default();
                if let Some(key) = ObjectKey::parse(name) {
                    out.push(ObjectEntry {
                        key,
                        len: meta.size,
                        modified: SystemTime::from(meta.last_modified),
                    });
                }
            }
            if ended {
                break;
            }
        }
        Ok(out)
    }

    /// CopyObject to `{prefix}quarantine/<name>.<unix seconds>`, then DELETE.
    fn quarantine(&self, key: &ObjectKey) -> io::Result<bool> {
        let stamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let from = self.path(key)?;
        let to = path(&format!("{}quarantine/{key}.{stamp}", self.prefix))?;
        match self.run(|c| async move { c.copy(&from, &to).await }) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        self.delete_many(std::slice::from_ref(key))?;
        Ok(true)
    }
}

/// Owned copies of `parts`: the request outlives this borrow on another
/// thread.
fn payload(parts: &[&[u8]]) -> PutPayload {
    parts.iter().map(|b| Bytes::copy_from_slice(b)).collect()
}

fn path(key: &str) -> io::Result<Path> {
    Path::parse(key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("object key `{key}`: {e}")))
}

fn io_error(e: object_store::Error) -> io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// The runtime the async client runs on, and the bound on requests in
/// flight. Blocking callers hand it a future and wait on a channel.
struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    in_flight: Arc<Semaphore>,
}

impl Bridge {
    fn new(max_in_flight: usize) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("depot-s3")
            .enable_all()
            .build()?;
        Ok(Bridge {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        })
    }

    /// Runs `fut` on the runtime, at most `max_in_flight` at once, and
    /// blocks this thread (never a runtime) until it ends.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sem = self.in_flight.clone();
        self.handle.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| io::Error::other("the S3 client's runtime has stopped"))?
    }

    /// Runs every future of `futs` on the runtime, each as its own request
    /// under the `max_in_flight` bound, and blocks until all have ended:
    /// their results in the order given.
    fn run_all<T: Send + 'static>(
        &self,
        futs: Vec<impl Future<Output = io::Result<T>> + Send + 'static>,
    ) -> Vec<io::Result<T>> {
        let n = futs.len();
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, fut) in futs.into_iter().enumerate() {
            let (sem, tx) = (self.in_flight.clone(), tx.clone());
            self.handle.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let _ = tx.send((i, fut.await));
            });
        }
        drop(tx);
        let mut out: Vec<Option<io::Result<T>>> = (0..n).map(|_| None).collect();
        for (i, r) in rx.iter().take(n) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("the S3 client's runtime has stopped"))))
            .collect()
    }
}

impl Drop for Bridge {
    /// Without waiting: the last store handle may drop inside an async
    /// context, where a blocking runtime shutdown would panic.
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

//! The server on top of the protocols: merges each protocol's routes and
//! OpenAPI paths, puts the cross-cutting layers around them, and runs it
//! all (`serve`) with graceful shutdown, the GC loop and the buffer pool's
//! decay; `serve_opening`
//! answers (503, "starting") while the store is still opening. Adding a
//! protocol is its own module plus one line in [`routes`] and one in
//! [`openapi`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::{AuthMode, LimitsConfig};
use crate::http::conns::{Connections, Held};
use crate::http::cors;
use crate::http::interim::InterimIo;
use crate::http::layers::{self, Budget, rate_limit};
use crate::http::{ApiError, AppState, Routes, access, auth, documented, json_errors, ops};
use crate::protocol::{admin, files, native, seed, tus};
use crate::store::objects::ObjectsKind;
use crate::wire;

/// Every protocol's routes.
fn routes() -> (Routes, Router<AppState>) {
    let (ops_api, plain) = ops::routes();
    let all = files::routes()
        .merge(native::routes())
        .merge(seed::routes())
        .merge(tus::routes())
        .merge(admin::routes())
        .merge(ops_api);
    (all, plain)
}

/// The document's frame: info, shared schemas, tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "depot",
        description = "A streaming file server on a content-addressed, deduplicating chunk store.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(wire::ChunkHash, wire::ErrorBody, wire::FileInfo, wire::FileList, wire::StatsInfo, wire::PieceStatus, wire::Health,
        wire::ChunkingInfo, wire::TypePolicyInfo, wire::MissingRequest, wire::MissingResponse, wire::PutChunkResponse, wire::PutChunksResponse, wire::ChunkRef,
        wire::CommitRequest, wire::ManifestInfo, wire::ManifestChunk, wire::TokenRequest, wire::ScopeName, wire::TokenInfo, wire::TokenList, wire::QuotaInfo, wire::UsageInfo, wire::TenantInfo,
        wire::LinkRequest, wire::LinkInfo, wire::CommitOpen, wire::CommitSession, wire::SegmentRequest, wire::SegmentInfo,
        wire::CommitStatus)),
    security(("bearerAuth" = []), ("basicAuth" = [])),
    tags(
        (name = "files", description = "List, download and delete files"),
        (name = "uploads", description = "The seed's uploads: whole files, and resumable.js / flow.js pieces"),
        (name = "dedup", description = "depot's own protocol: send only the chunks the server lacks. Every JSON body may be sent in zstd (`Content-Encoding: zstd`, RFC 8878), as `GET /api/chunking` lists in `request_encodings`"),
        (name = "tus", description = "tus 1.0.0 resumable uploads: creation, creation-with-upload, creation-defer-length, termination, checksum, expiration, concatenation"),
        (name = "operations", description = "Health, metrics, statistics"),
        (name = "admin", description = "Tokens (the `admin` scope)"),
    )
)]
struct Frame;

/// The credentials the document declares, so that Swagger UI's "Authorize"
/// works: a bearer token, or Basic with the token as password.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("dpt_<id>_<secret>")
                    .description(Some("A depot token (not needed in `local` mode)"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "basicAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("Any user name, the token as password"))
                    .build(),
            ),
        );
    }
}

/// The answers many operations share, stated here once rather than in
/// each annotation (an annotation's own description of a status wins):
/// the auth layer's 401 and 403 on every operation that needs credentials
/// (the others are marked as needing none), 507 on whatever stores bytes
/// or files, and 415 on every operation whose body is JSON.
struct SharedAnswers;

impl utoipa::Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use axum::http::Method;
        use utoipa::openapi::security::SecurityRequirement;
        for (path, item) in doc.paths.paths.iter_mut() {
            if let Some(op) = item.options.as_mut() {
                // Preflights and tus discovery need no credentials.
                op.security = Some(vec![SecurityRequirement::default()]);
            }
            let ops = [
                (Method::GET, &mut item.get),
                (Method::PUT, &mut item.put),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
                (Method::HEAD, &mut item.head),
                (Method::PATCH, &mut item.patch),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                if auth::required(&Method::GET, path) == auth::Need::Public {
                    // One empty requirement: no credentials needed.
                    op.security = Some(vec![SecurityRequirement::default()]);
                    continue;
                }
                let json_body =
                    op.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
                let need = auth::required(&method, path);
                let r = &mut op.responses.responses;
                let mut add = |status: &str, description: &str| {
                    r.entry(status.into()).or_insert_with(|| documented(description).into());
                };
                add("401", "No valid token (token mode), same body for every cause");
                let lacks = match need {
                    auth::Need::Scope(scope) => format!("the `{}` scope", scope.as_str()),
                    _ => "the scope".into(),
                };
                add("403", &format!("The token lacks {lacks}, or (local mode) a foreign Host or Origin"));
                // Whatever stores bytes or files can meet the disk's reserve
                // and the tenant's quota.
                if method != Method::DELETE && need == auth::Need::Scope(crate::store::Scope::Write) {
                    add(
                        "507",
                        "Below the data dir's free-space reserve (`insufficient_storage`), or past the \
                         tenant's quota (`quota_exceeded`); nothing was stored",
                    );
                }
                if json_body {
                    add(
                        "415",
                        "The body is not `Content-Type: application/json`, or is in a `Content-Encoding` \
                         other than `zstd` (the answer's `Accept-Encoding` names it)",
                    );
                }
            }
        }
    }
}

/// The OpenAPI document: the frame plus every protocol's paths. The
/// committed `schema/openapi.json` must equal it (a test checks).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Frame::openapi();
    for part in [
        files::Doc::openapi(),
        seed::Doc::openapi(),
        native::Doc::openapi(),
        tus::Doc::openapi(),
        admin::Doc::openapi(),
        ops::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    // After the merge: the security schemes, and the shared answers on
    // every operation.
    utoipa::Modify::modify(&Security, &mut doc);
    utoipa::Modify::modify(&SharedAnswers, &mut doc);
    doc
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let cfg = state.config.clone();
    let (Routes { api, uploads }, plain) = routes();
    // Each group's own layers as one stack given in one call, for the
    // reason the outer stack is (below); `route_layer`, so that a path no
    // route matches meets only the outer stack and the fallback.
    let api = api.route_layer(
        tower::ServiceBuilder::new()
            .option_layer(rate_limit(&cfg.rate_limit, Budget::Api))
            .layer(axum::middleware::from_fn_with_state(state.clone(), layers::json_bodies))
            .layer(DefaultBodyLimit::max(cfg.limits.max_json_body.0 as usize)),
    );
    // Upload bodies are limited by the configured file and piece sizes, not
    // by axum's default 2 MB.
    let uploads = uploads.route_layer(
        tower::ServiceBuilder::new()
            .option_layer(rate_limit(&cfg.rate_limit, Budget::Upload))
            .layer(axum::middleware::from_fn(layers::drain_unread))
            .layer(DefaultBodyLimit::disable()),
    );
    let docs: Router<AppState> = SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi()).into();

    let app = Router::new()
        .merge(api)
        .merge(uploads)
        .merge(plain)
        .merge(docs)
        .merge(crate::protocol::ui::routes())
        .fallback(ops::not_found);
    // CORS (with tus's discovery, which must see an OPTIONS before it)
    // only for requests that carry `Origin` or are OPTIONS; the others
    // get the fixed headers it would add (`http::cors`).
    let cors = cors::layer(&cfg.cors, cfg.auth.mode == AuthMode::Local).map(|cors| {
        let plain = cors::plain_headers(&cors);
        let layers = tower::ServiceBuilder::new()
            .layer(axum::middleware::from_fn_with_state(state.clone(), tus::discovery))
            .layer(cors)
            .into_inner();
        cors::ByOriginLayer::new(layers, plain)
    });
    // One stack, given to the router as one layer, outermost first: each
    // `Router::layer` call wraps every route in another boxed `Route`,
    // cloned and boxed again on every request (one per layer, ten, before;
    // docs/PERFORMANCE.md, D2).
    let stack = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // Outside CORS, so that preflights are counted and logged too, and
        // outside the request span, whose fields the line repeats; inside
        // the router, so that it sees the matched route, and inside the
        // request id.
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), access::track))
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            axum::http::HeaderValue::from_static("nosniff"),
        ))
        // The span names the path only: a query may carry a credential.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .option_layer(cors)
        .layer(axum::middleware::from_fn(error_answers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    app.layer(stack).with_state(state)
}

/// Middleware: the forms every error answer takes, whoever made it (a
/// handler, an extractor's rejection, the router): a JSON body
/// ([`json_errors`]), and under tus's path its version header
/// ([`tus::version_on_errors`]).
async fn error_answers(req: Request, next: axum::middleware::Next) -> Response {
    let tus = tus::speaks_tus(&req);
    let method = req.method().clone();
    let resp = json_errors(&method, next.run(req).await).await;
    tus::version_on_errors(tus, resp)
}

/// Descriptors kept for the store (RocksDB files, objects being written)
/// and the listener, below the process's limit.
const FDS_KEPT: u64 = 256;

/// Serves `state` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish, stops background work and closes the store
/// cleanly. Runs GC every `gc.interval` meanwhile.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match serve_opening(
        listener,
        state.config.limits.clone(),
        state.config.storage.objects,
        async { Ok::<_, Infallible>(state) },
        || {},
        shutdown,
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(StartError::Io(e)) => Err(e),
        Err(StartError::Open(never)) => match never {},
    }
}

/// Why [`serve_opening`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E> {
    /// The state could not be made (the store did not open).
    #[error("{0}")]
    Open(E),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` at once, while `open` makes the state (opening the
/// store, with the crash recovery that does: it can take a while on a large
/// store after a crash). Until it is made, every request is answered 503
/// (`/healthz` and `/readyz` included), so probes see a server that is
/// starting rather than one that does not answer. Then `ready` runs and the
/// server goes on as [`serve`] does. `limits` gives the connection limits
/// (header and body timeouts, the connection cap), which apply from the
/// first connection on; `objects` is the engine the store will open, whose
/// kept descriptors ([`ObjectsKind::kept_descriptors`]) the connections'
/// room leaves out.
///
/// # Errors
/// [`StartError::Open`] when `open` fails (the listener is closed first);
/// I/O errors from the listener.
pub async fn serve_opening<E>(
    listener: TcpListener,
    limits: LimitsConfig,
    objects: ObjectsKind,
    open: impl Future<Output = Result<AppState, E>>,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError<E>> {
    crate::store::buffer::set_burst(usize::try_from(limits.max_buffered.0).unwrap_or(usize::MAX));
    let app: Arc<OnceLock<Router>> = Arc::default();
    let state_slot: Arc<OnceLock<AppState>> = Arc::default();
    let (abort, aborted) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        tokio::select! {
            () = shutdown => {}
            _ = aborted => {}
        }
    };
    let begin = state_slot.clone();
    let on_stop = move || {
        if let Some(state) = begin.get() {
            state.begin_shutdown();
        }
    };
    let service = tower::ServiceBuilder::new()
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle_timeout.0))
        .service(gate(app.clone()));
    let server = tokio::spawn(accept_loop(listener, limits, objects, service, stopping, on_stop));
    let state = match open.await {
        Ok(state) => state,
        Err(e) => {
            let _ = abort.send(());
            let _ = server.await;
            return Err(StartError::Open(e));
        }
    };
    let _ = state_slot.set(state.clone());
    let _ = app.set(router(state.clone()));
    let gc = tokio::spawn(gc_loop(state.clone(), state.shutdown.clone()));
    let decay = tokio::spawn(buffer_decay_loop(state.shutdown.clone()));
    if !server.is_finished() {
        ready();
    }
    let result = server.await.map_err(std::io::Error::other);
    // Also when the shutdown came before the state was made.
    state.begin_shutdown();
    let _ = gc.await;
    let _ = decay.await;
    if let Err(e) = state.store.blocking(|s| s.close()).await {
        tracing::warn!(error = %e, "closing the store");
    }
    drop(abort);
    Ok(result?)
}

/// Accepts connections until `stopping` completes, each served by `app`
/// under hyper's limits; then runs `on_stop` (which tells long responses to
/// end) and waits for the connections to finish.
async fn accept_loop<S>(
    listener: TcpListener,
    limits: LimitsConfig,
    objects: ObjectsKind,
    app: S,
    stopping: impl Future<Output = ()>,
    on_stop: impl FnOnce(),
) where
    S: tower::Service<hyper::Request<axum::body::Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;

    // hyper's own limits, which need a timer to work at all: the header
    // block must arrive in time (HTTP/1.1, each request of a keep-alive
    // connection too); HTTP/2 pings idle connections and drops dead ones.
    //
    // hyper's read buffer is at most READ_BUFFER: below the server's mmap
    // threshold (`store::buffer::POOLED_MIN`), so that the buffer hyper
    // allocates anew for each read while the last body frame is still in
    // use comes from the allocator's heaps, not from a fresh mapping faulted
    // in page by page (its default, ~400 KiB, cost a fault per 4 KiB of every
    // upload). It also bounds a request's head: 96 KiB, over any legitimate
    // one (tus metadata is refused past 64 KiB with its own 400).
    const READ_BUFFER: usize = 96 * 1024;
    const _: () = assert!(READ_BUFFER < crate::store::buffer::POOLED_MIN);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.0)
        .max_buf_size(READ_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout.0)
        .keep_alive_timeout(limits.header_timeout.0);
    // Never more connections than descriptors: the store needs its files
    // opened whatever clients do (and the object directory may keep some
    // open for reads). Idle connections make room for new ones.
    let fd_room =
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current.map_or(usize::MAX, |n| {
            n.saturating_sub(FDS_KEPT).saturating_sub(objects.kept_descriptors(n) as u64) as usize
        });
    let connections = Connections::new(limits.max_connections.min(fd_room));
    let header_timeout = limits.header_timeout.0;
    let graceful = GracefulShutdown::new();
    let mut stopping = std::pin::pin!(stopping);
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or the like: the loop must live on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let Some(place) = connections.admit().await else {
            // Every connection is busy: closed at once, costing nothing further.
            continue;
        };
        // Small answers (Range requests, JSON) go out at once, not after a
        // delayed acknowledgement.
        let _ = tcp.set_nodelay(true);
        let place = Arc::new(place);
        // Room for informational responses (the draft's 104) on HTTP/1.1.
        let io = InterimIo::new(tcp);
        let svc = {
            let (app, place, interim) = (app.clone(), place.clone(), io.handle());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                if let Some(interim) = interim.for_request(req.version()) {
                    req.extensions_mut().insert(interim);
                }
                let busy = place.busy();
                let answer = tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new));
                async move { Ok::<_, Infallible>(answer.await?.map(|body| Held::new(body, busy))) }
            })
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // hyper's header timeout starts once bytes came (it first waits
            // for them to tell HTTP/1 from HTTP/2): a connection that sends
            // nothing at all is closed after the same time.
            let mut probe = [0u8; 1];
            let first = tokio::select! {
                got = tokio::time::timeout(header_timeout, io.get_ref().peek(&mut probe)) => {
                    matches!(got, Ok(Ok(n)) if n > 0)
                }
                () = place.told_to_close() => false,
            };
            if !first {
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
            let conn = watcher.watch(conn.into_owned());
            tokio::select! {
                _ = conn => {}
                // Idle and its place taken: dropping it closes it.
                () = place.told_to_close() => {}
            }
        });
    }
    connections.close_idle();
    drop(listener);
    on_stop();
    graceful.shutdown().await;
}

/// The service the listener serves: the application once it is installed
/// in `app`, a 503 before. tus's method override applies first.
fn gate<B>(
    app: Arc<OnceLock<Router>>,
) -> impl tower::Service<Request<B>, Response = Response, Error = Infallible, Future: Send> + Clone + Send
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    tower::service_fn(move |req: Request<B>| {
        let app = app.clone();
        async move {
            let req = tus::method_override(req.map(axum::body::Body::new));
            match app.get() {
                Some(router) => tower::ServiceExt::oneshot(router.clone(), req).await,
                None => Ok(ApiError::NotReady("starting: the store is opening").into_response()),
            }
        }
    })
}

/// How often idle pooled buffers beyond the pool's floor are freed
/// ([`crate::store::buffer::decay`]): an idle server is back to the floor
/// within two of these.
const BUFFER_DECAY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

async fn buffer_decay_loop(mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(BUFFER_DECAY_EVERY) => {}
            _ = stop.changed() => return,
        }
        // Unmapping a burst's buffers (up to `limits.max_buffered`) is
        // kept off the async workers, which serve ranges meanwhile.
        let _ = tokio::task::spawn_blocking(crate::store::buffer::decay).await;
    }
}

async fn gc_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = state.config.gc.interval.0;
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        // After an unclean shutdown, the first run also sweeps orphan objects.
        let sweep = state.store.orphan_sweep_due();
        match state.store.blocking(move |s| s.gc(sweep)).await {
            Ok(r) => {
                if r != Default::default() {
                    tracing::info!(?r, "gc");
                }
            }
            Err(e) => tracing::warn!(error = %e, "gc failed; will retry"),
        }
    }
}

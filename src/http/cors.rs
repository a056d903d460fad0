//! CORS (the Fetch standard's cross-origin protocol) from the
//! configuration, through tower-http's `Cors`, for the requests it can
//! concern.
//!
//! A browser sends `Origin` on every cross-origin request and every
//! preflight (Fetch, §3.1 "`Origin` header"). For the other requests
//! (curl, the CLI, a same-origin `GET`), `Cors` still adds headers, but
//! which ones depends on the configuration alone: `Vary`, and with any
//! origin allowed `Access-Control-Allow-Origin: *` and the exposed
//! headers. [`ByOrigin`] sends only `OPTIONS` requests (preflights, tus's
//! discovery) and those with `Origin` through the CORS layers, and adds
//! those fixed headers, found once at start-up by asking `Cors` itself, to
//! the answers of the rest: the same headers, without `Cors`'s work per
//! request (a header map built, `Vary`'s names joined, the tus discovery
//! middleware's future boxed: a tenth of a cached range's server CPU,
//! docs/PERFORMANCE.md, D2, "CORS only where a browser can use it").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::http::header::{ORIGIN, VARY};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use futures_util::FutureExt;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;

/// The CORS layer the configuration describes; `None` when no origin is
/// allowed. `loopback_only` (`local` mode) allows the web pages of this
/// machine only, whatever the list says.
pub fn layer(cfg: &CorsConfig, loopback_only: bool) -> Option<CorsLayer> {
    if cfg.allowed_origins.is_empty() {
        return None;
    }
    let origins = if loopback_only {
        AllowOrigin::predicate(|o: &HeaderValue, _| o.to_str().is_ok_and(super::auth::is_loopback_origin))
    } else if cfg.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(cfg.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let methods: Vec<Method> = cfg.allowed_methods.iter().filter_map(|m| m.parse().ok()).collect();
    let headers: Vec<HeaderName> = cfg.allowed_headers.iter().filter_map(|h| h.parse().ok()).collect();
    let exposed: Vec<HeaderName> = cfg.exposed_headers.iter().filter_map(|h| h.parse().ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(exposed)
            .max_age(cfg.max_age.0),
    )
}

/// The headers `cors` adds to the answer of a request that is neither
/// `OPTIONS` nor carries `Origin`, asked of `cors` itself on an empty
/// answer; `None` when it cannot say at once (an origin predicate that
/// is a future), and then every request goes through it.
pub fn plain_headers(cors: &CorsLayer) -> Option<HeaderMap> {
    let empty = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut svc = cors.layer(empty);
    let req = Request::get("/").body(()).ok()?;
    let answer = svc.call(req).now_or_never()?.ok()?;
    Some(answer.headers().clone())
}

/// [`ByOrigin`]'s layer: `cors` the layers for requests that can be
/// cross-origin, `plain` the headers their answers would get otherwise
/// ([`plain_headers`]; `None`: every request through `cors`).
#[derive(Clone)]
pub struct ByOriginLayer<L> {
    cors: L,
    plain: Option<Arc<HeaderMap>>,
}

impl<L> ByOriginLayer<L> {
    pub fn new(cors: L, plain: Option<HeaderMap>) -> Self {
        Self { cors, plain: plain.map(Arc::new) }
    }
}

impl<S: Clone, L: Layer<S>> Layer<S> for ByOriginLayer<L> {
    type Service = ByOrigin<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        ByOrigin { cors: self.cors.layer(inner.clone()), inner, plain: self.plain.clone() }
    }
}

/// A request with `Origin`, or `OPTIONS`, goes to `cors` (the CORS layers
/// over the inner service); any other goes to the inner service, and its
/// answer gets the fixed headers as `Cors` would add them (`Vary`
/// appended to what the answer has, the others replacing theirs).
#[derive(Clone)]
pub struct ByOrigin<C, S> {
    cors: C,
    inner: S,
    plain: Option<Arc<HeaderMap>>,
}

impl<C, S, ReqB, ResB> Service<Request<ReqB>> for ByOrigin<C, S>
where
    C: Service<Request<ReqB>, Response = Response<ResB>>,
    S: Service<Request<ReqB>, Response = Response<ResB>, Error = C::Error>,
{
    type Response = Response<ResB>;
    type Error = C::Error;
    type Future = ByOriginFuture<C::Future, S::Future>;

    /// Ready when both paths are (each is the same inner service, which in
    /// this server is always ready).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.cors.poll_ready(cx))?;
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match &self.plain {
            Some(plain) if req.method() != Method::OPTIONS && !req.headers().contains_key(ORIGIN) => {
                ByOriginFuture::Plain { future: self.inner.call(req), headers: plain.clone() }
            }
            _ => ByOriginFuture::Cors { future: self.cors.call(req) },
        }
    }
}

pin_project_lite::pin_project! {
    /// [`ByOrigin`]'s answer: the CORS layers', or the inner service's
    /// with the fixed headers added.
    #[project = ByOriginProj]
    pub enum ByOriginFuture<C, S> {
        Cors { #[pin] future: C },
        Plain { #[pin] future: S, headers: Arc<HeaderMap> },
    }
}

impl<C, S, ResB, E> Future for ByOriginFuture<C, S>
where
    C: Future<Output = Result<Response<ResB>, E>>,
    S: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ByOriginProj::Cors { future } => future.poll(cx),
            ByOriginProj::Plain { future, headers } => {
                let mut answer = ready!(future.poll(cx))?;
                let to = answer.headers_mut();
                for name in headers.keys() {
                    let mut values = headers.get_all(name).iter();
                    if *name != VARY {
                        // As `HeaderMap::extend`, which `Cors` uses: the
                        // first value replaces the answer's own.
                        if let Some(first) = values.next() {
                            to.insert(name.clone(), first.clone());
                        }
                    }
                    for v in values {
                        to.append(name.clone(), v.clone());
                    }
                }
                Poll::Ready(Ok(answer))
            }
        }
    }
}

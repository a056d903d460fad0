//! Extractors that parse at the edge: a path parameter into its type
//! ([`InPath`]), a JSON body into its request type ([`JsonBody`]), the
//! caller and the state ([`Caller`]). Each answers a bad value through the
//! one error table ([`ApiError`]), and a path parameter is documented
//! once, by its type.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, RefOr, Required, Type};

use super::{ApiError, AppState, Principal, documented};
use crate::store::{self, Store, View};

/// A value a route's path carries (`{id}` in `/api/files/{id}`): its name
/// in the route, how the API document describes it, and how it is parsed.
pub trait PathParam: Sized {
    /// The parameter's name in the route, without braces.
    const NAME: &'static str;
    /// Its description in the API document.
    const DESCRIPTION: &'static str;
    /// The regular expression a well-formed value matches (documented).
    const PATTERN: &'static str;
    /// The error answer for a value that does not parse or names nothing,
    /// as the document states it: status and description
    /// (`responses(InPath::<T>)`).
    const ANSWER: (u16, &'static str);

    /// Parses the percent-decoded path segment.
    ///
    /// # Errors
    /// The answer for a bad value: 400, or 404 for an id that cannot name
    /// anything (a malformed id is simply not found).
    fn from_path(s: &str) -> Result<Self, ApiError>;
}

/// Implements [`PathParam`] for an id in a path (`{id}`) that parses with
/// `str::parse`, wrapped by `$wrap`: a malformed id names nothing, so it is
/// answered as one that names nothing here, 404 ("No such `$kind`").
macro_rules! id_in_path {
    ($t:ty, $wrap:expr, $kind:literal, $description:literal, $pattern:literal) => {
        impl $crate::http::PathParam for $t {
            const NAME: &'static str = "id";
            const DESCRIPTION: &'static str = $description;
            const PATTERN: &'static str = $pattern;
            const ANSWER: (u16, &'static str) = (404, concat!("No such ", $kind));

            fn from_path(s: &str) -> Result<$t, $crate::http::ApiError> {
                let not_found =
                    || $crate::http::ApiError::NotFound(format!(concat!($kind, " {} not found"), s));
                s.parse().map($wrap).map_err(|_| not_found())
            }
        }
    };
}
pub(crate) use id_in_path;

/// Extracts the path parameter [`PathParam::NAME`] as `T`; in
/// `#[utoipa::path(params(InPath<T>), responses(InPath::<T>))]`, documents
/// it and its error answer (list it before the operation's own answers,
/// which then win).
#[derive(Debug, Clone, Copy)]
pub struct InPath<T>(pub T);

impl<S: Send + Sync, T: PathParam> FromRequestParts<S> for InPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::from_status(r.status(), r.body_text()))?;
        let value = params.iter().find(|(name, _)| *name == T::NAME).map(|(_, v)| v).ok_or_else(|| {
            ApiError::Other {
                status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("the route has no path parameter `{}`", T::NAME),
            }
        })?;
        T::from_path(value).map(InPath)
    }
}

impl<T: PathParam> utoipa::IntoParams for InPath<T> {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some(T::PATTERN));
        vec![
            ParameterBuilder::new()
                .name(T::NAME)
                .parameter_in(ParameterIn::Path)
                .description(Some(T::DESCRIPTION))
                .required(Required::True)
                .schema(Some(schema))
                .build(),
        ]
    }
}

impl<T: PathParam> utoipa::IntoResponses for InPath<T> {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let (status, description) = T::ANSWER;
        BTreeMap::from([(status.to_string(), documented(description).into())])
    }
}

/// A JSON request body as `T`: a body that is not `application/json` is
/// answered 415 ([`not_json`]), one too large 413, and one that does not
/// parse or does not have `T`'s shape 400 (see `From<JsonRejection>` for
/// [`ApiError`]).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json(req.method(), req.uri().path(), req.headers()));
        }
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(JsonBody(value))
    }
}

/// Whether `headers` declare a JSON body: `Content-Type` `application/json`
/// or `application/*+json` (RFC 6839), parameters allowed, as axum's `Json`
/// accepts.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(t) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.strip_prefix("application/").is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

/// The 415 for a body that is not JSON on a route that reads JSON: it
/// names the type sent. `POST /api/files` (a commit of chunks already
/// sent) also points to `POST /api/files/upload`, where a file's bytes go:
/// `curl -F file=@x …/api/files` is the likely mistake.
pub fn not_json(method: &Method, path: &str, headers: &HeaderMap) -> ApiError {
    let sent = match headers.get(header::CONTENT_TYPE) {
        Some(t) => format!("`{}`", String::from_utf8_lossy(t.as_bytes())),
        None => "no `Content-Type`".into(),
    };
    let mut msg =
        format!("{method} {path} takes a JSON body (`Content-Type: application/json`); this one has {sent}");
    if method == Method::POST && path == "/api/files" {
        msg.push_str(
            ". It makes a file of chunks already sent (the dedup protocol); to upload a file's bytes, \
             POST them to /api/files/upload (multipart/form-data with a `file` field, or the raw bytes \
             with ?filename=NAME)",
        );
    }
    ApiError::UnsupportedMediaType(msg)
}

/// The request's principal and the server's state: what a handler that
/// acts in the caller's view of the store needs (`c.store_as(…)`), in one
/// extractor. Fails as [`Principal`] does (401).
#[derive(Clone)]
pub struct Caller {
    pub st: AppState,
    pub who: Principal,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let who = Principal::from_request_parts(parts, state).await?;
        Ok(Caller { st: state.clone(), who })
    }
}

impl Caller {
    /// Runs `op` on a blocking thread with the store and the caller's
    /// [`View`] (what it may see).
    ///
    /// # Errors
    /// `op`'s, through the error table.
    pub async fn store_as<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store, &View) -> store::Result<T> + Send + 'static,
    {
        let view = self.who.view.clone();
        Ok(self.st.store.blocking(move |s| op(s, &view)).await?)
    }
}

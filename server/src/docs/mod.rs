//! The documentation tokengate serves about itself, from one source each: the OpenAPI 3.1
//! document (built from the same route tables as the router; `GET /openapi.json`), the
//! interactive explorer (`/api/docs`, Swagger UI compiled into the binary, no CDN), the
//! docs pages (the Markdown files of `docs/`, as HTML at `/docs/<page>` and as Markdown at
//! `/docs/<page>.md`), `/llms.txt` (llmstxt.org index) and `/llms-full.txt` (every page
//! plus an API reference generated from the OpenAPI document).

pub mod pages;
pub mod reference;
pub mod schemas;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use utoipa::ToSchema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{Components, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use self::pages::{PAGES, Rendered};

/// Operation tags, in the order the explorer shows them.
const TAGS: &[(&str, &str)] = &[
    (
        "Gateway",
        "The OpenAI- and Anthropic-compatible endpoints, authenticated with an API key. Errors \
         use OpenAI's shape `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}` (Anthropic's \
         on `/v1/messages`).",
    ),
    (
        "Keys",
        "API keys of the signed-in user (access token or portal session). The secret is shown \
         once, when a key is created or rotated.",
    ),
    (
        "Account",
        "Profile, balance and usage of the signed-in user. Errors: \
         `{\"error\":{\"message\",\"type\",\"code\"}}`.",
    ),
    (
        "Billing",
        "Top-ups (a checkout URL for a person to pay — the API never charges anyone), \
         payments, statements and the request log.",
    ),
    (
        "Device flow",
        "Command-line login (OAuth 2.0 device authorization grant, RFC 8628): discovery, \
         device code, token and refresh, and the portal's approval.",
    ),
    (
        "Portal sign-in",
        "The portal's HTML form endpoints (form-encoded, answered with 303 redirects).",
    ),
    (
        "Admin",
        "Operators: providers, models and prices, aliases, key groups, users and credit, \
         health. Needs an administrator's access token or session.",
    ),
    ("Health", "Liveness and readiness probes."),
    (
        "Docs",
        "This document and the LLM-friendly docs. The pages are at `/docs`.",
    ),
];

const DESCRIPTION: &str = "\
tokengate is a self-hosted LLM API gateway: one OpenAI- and Anthropic-compatible endpoint \
(`/v1`, authenticated with an API key `sk-tg-…`), a management API for the signed-in user \
(`/api/v1`, with an access token from the device flow or the portal session) and an admin \
API (`/api/v1/admin`).

In this explorer, press **Authorize** and paste an API key into `api_key` (for `/v1`) or an \
access token into `access_token` (for `/api/v1`); \"Try it out\" then calls this server.

Guides: [quickstart](/docs/quickstart), [errors](/docs/errors), [billing rules](/docs/billing), \
[for AI agents](/docs/agents). For LLMs: [/llms.txt](/llms.txt), [/llms-full.txt](/llms-full.txt).";

/// The OpenAPI document of every documented route. The operations come from the route
/// tables the router is built from ([`crate::root_route_table`],
/// [`crate::portal_route_table`], [`crate::api::route_table`],
/// [`crate::gateway::route_table`] and this module's), so a route cannot be served without
/// being documented or documented without being served.
pub fn openapi() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tokengate")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .tags(Some(TAGS.iter().map(|(name, description)| {
            TagBuilder::new()
                .name(*name)
                .description(Some(*description))
                .build()
        })))
        .components(Some(components()))
        .build();
    doc.merge(crate::root_route_table().into_openapi());
    doc.merge(crate::portal_route_table().into_openapi());
    doc.merge(route_table().into_openapi());
    let doc = doc
        .nest("/api/v1", crate::api::route_table().into_openapi())
        .nest("/v1", crate::gateway::route_table().into_openapi());
    normalise(doc)
}

/// Security schemes and the schemas only error-response sets refer to.
fn components() -> Components {
    let mut c = Components::new();
    let bearer = |format: &str, description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .description(Some(description))
                .build(),
        )
    };
    c.add_security_scheme(
        "api_key",
        bearer(
            "sk-tg-…",
            "An API key (`sk-tg-…`) as `Authorization: Bearer <key>`, for `/v1`. Create one in \
             the console, with `tokengate keys create` or `POST /api/v1/me/keys`.",
        ),
    );
    c.add_security_scheme(
        "x_api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "x-api-key",
            "An API key in Anthropic's header, for `/v1/messages`.",
        ))),
    );
    c.add_security_scheme(
        "access_token",
        bearer(
            "JWT",
            "An access token from the device flow (`tokengate login`, or \
             `POST /api/v1/auth/token`) as `Authorization: Bearer <token>`, for `/api/v1`. \
             Valid 1 hour; refresh with the refresh token.",
        ),
    );
    c.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "tg_session",
            "The portal's session cookie (set by signing in at `/login`). State-changing \
             requests must come from this site (`Origin`).",
        ))),
    );
    add::<schemas::OpenAiError>(&mut c);
    add::<schemas::AnthropicError>(&mut c);
    add::<schemas::ApiErrorBody>(&mut c);
    add::<tokengate_api::device::OAuthError>(&mut c);
    c
}

fn add<T: ToSchema>(c: &mut Components) {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    c.schemas.extend(nested);
    c.schemas.insert(T::name().into_owned(), T::schema());
}

/// axum's catch-all captures (`{*name}`) are written `{name}` in OpenAPI.
fn normalise(mut doc: OpenApi) -> OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    doc
}

/// The document as served and as committed in `docs/openapi.json`: pretty JSON with a
/// final newline.
pub fn openapi_json() -> String {
    let mut s = serde_json::to_string_pretty(&openapi()).unwrap_or_default();
    s.push('\n');
    s
}

/// What the docs routes serve, rendered once at startup.
#[derive(Clone)]
pub struct Docs {
    openapi: Arc<String>,
    pages: Arc<Vec<Rendered>>,
    index: Arc<String>,
    llms: Arc<String>,
    llms_full: Arc<String>,
}

impl Docs {
    /// Renders everything for a server whose public URL is `public_url`.
    pub fn new(public_url: &str) -> Docs {
        let base = public_url.trim_end_matches('/');
        let openapi = openapi_json();
        let pages: Vec<Rendered> = PAGES.iter().map(|p| p.render(base)).collect();
        let index = pages::index_html(&pages);
        let doc: serde_json::Value = serde_json::from_str(&openapi).unwrap_or_default();
        let llms = reference::llms_txt(base, &pages);
        let llms_full = reference::llms_full_txt(base, &pages, &doc);
        Docs {
            openapi: Arc::new(openapi),
            pages: Arc::new(pages),
            index: Arc::new(index),
            llms: Arc::new(llms),
            llms_full: Arc::new(llms_full),
        }
    }
}

/// The documented docs routes (the HTML pages and the explorer are not API operations).
pub fn route_table() -> OpenApiRouter<Docs> {
    OpenApiRouter::new()
        .routes(routes!(openapi_document))
        .routes(routes!(llms_txt))
        .routes(routes!(llms_full_txt))
}

/// `/openapi.json`, `/llms.txt`, `/llms-full.txt`, the docs pages and the explorer.
pub fn router(public_url: &str) -> Router {
    let explorer = SwaggerUi::new("/api/docs").config(
        Config::new(["/openapi.json"])
            // No request to the public validator: the explorer works offline.
            .validator_url("none")
            .try_it_out_enabled(true)
            .display_request_duration(true)
            .filter(true),
    );
    Router::from(route_table())
        .route("/docs", get(docs_index))
        .route("/docs/", get(|| async { Redirect::permanent("/docs") }))
        .route("/docs/{page}", get(docs_page))
        .with_state(Docs::new(public_url))
        .merge(explorer)
}

fn text(content_type: &'static str, body: &str) -> Response {
    let mut r = body.to_owned().into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// The OpenAPI document
///
/// This document (OpenAPI 3.1). The explorer at `/api/docs` reads it.
#[utoipa::path(get, path = "/openapi.json", tag = "Docs", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json",
        body = Object)))]
async fn openapi_document(State(docs): State<Docs>) -> Response {
    text("application/json", &docs.openapi)
}

/// Docs index for LLMs
///
/// The llmstxt.org index: what tokengate is, and links to every docs page as Markdown and
/// to the OpenAPI document.
#[utoipa::path(get, path = "/llms.txt", tag = "Docs", operation_id = "llms_txt",
    responses((status = 200, description = "Markdown (llmstxt.org).", content_type = "text/plain",
        body = String)))]
async fn llms_txt(State(docs): State<Docs>) -> Response {
    text("text/plain; charset=utf-8", &docs.llms)
}

/// All docs in one text
///
/// Every docs page followed by an API reference generated from the OpenAPI document (each
/// operation: method, path, summary, auth, parameters, request fields, responses).
#[utoipa::path(get, path = "/llms-full.txt", tag = "Docs", operation_id = "llms_full_txt",
    responses((status = 200, description = "Markdown.", content_type = "text/plain", body = String)))]
async fn llms_full_txt(State(docs): State<Docs>) -> Response {
    text("text/plain; charset=utf-8", &docs.llms_full)
}

async fn docs_index(State(docs): State<Docs>) -> Response {
    text("text/html; charset=utf-8", &docs.index)
}

/// `/docs/<page>` (HTML) and `/docs/<page>.md` (Markdown).
async fn docs_page(State(docs): State<Docs>, Path(name): Path<String>) -> Response {
    let (slug, markdown) = match name.strip_suffix(".md") {
        Some(slug) => (slug, true),
        None => (name.as_str(), false),
    };
    match docs.pages.iter().find(|p| p.slug == slug) {
        Some(p) if markdown => text("text/markdown; charset=utf-8", &p.markdown),
        Some(p) => text("text/html; charset=utf-8", &p.html),
        None => {
            let mut r = text(
                "text/html; charset=utf-8",
                &pages::not_found_html(&docs.pages, slug),
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

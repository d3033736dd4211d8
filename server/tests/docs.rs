//! The served documentation: the OpenAPI document covers every route the router serves and
//! matches the committed snapshot `docs/openapi.json`; the docs pages answer as HTML and
//! Markdown; every link of `/llms.txt` resolves; `/llms-full.txt` holds every page and an
//! API reference entry for every operation; the explorer is served by tokengate itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokengate_server::docs::{self, pages::PAGES};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed snapshot must equal the generated document, so every API change shows
/// up in review as a change of `docs/openapi.json`.
#[test]
fn openapi_snapshot_is_current() {
    let path = repo_root().join("docs/openapi.json");
    let generated = docs::openapi_json();
    if std::env::var("TOKENGATE_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  committed: {a}\n  generated: {b}", i + 1))
            .unwrap_or_else(|| match committed.is_empty() {
                true => "the file is missing".into(),
                false => "one is a prefix of the other".into(),
            });
        panic!(
            "docs/openapi.json is not the OpenAPI document the server generates ({first_difference}).\n\
             If the API change is intended, regenerate the snapshot and commit it:\n  \
             TOKENGATE_UPDATE_OPENAPI=1 cargo test -p tokengate-server --test docs openapi_snapshot_is_current"
        );
    }
}

#[test]
fn document_is_openapi_3_1_with_unique_operation_ids_and_resolvable_refs() {
    let doc: Value = serde_json::from_str(&docs::openapi_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let text = doc.to_string();
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(!path.contains("{*"), "catch-all left in {path}");
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            assert!(op["tags"].is_array(), "{method} {path} has no tag");
            ids.push(id);
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "operationIds must be unique");
    // Every `$ref` names a schema of the document.
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "unresolved $ref to {name}"
        );
    }
    for scheme in ["api_key", "x_api_key", "access_token", "session_cookie"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object());
    }
}

// ---------------------------------------------------------------------------------------
// Every route is documented.
//
// axum cannot list a router's routes, so the check works from both ends:
//
// * Every documented route is served: each operation of the document is requested on a
//   running server and must reach a handler, not the router's fallbacks (the `/v1` and
//   `/api/v1` "unknown route" errors, 405, or the portal's HTML 404).
// * Every served route is documented: the documented routes are registered only through
//   `OpenApiRouter::routes(routes!(handler))`, which takes the method and path from the
//   handler's `#[utoipa::path]` — the route tables (`root_route_table`,
//   `portal_route_table`, `api::route_table`, `gateway::route_table`,
//   `docs::route_table`) are what both the router and `docs::openapi()` are built from.
//   What could bypass them is a plain axum registration (`.route`, `.nest`, `.merge`, …), so
//   the server's source is scanned for every such call: each must be one of the known
//   compositions of route tables below, or an explicitly excluded non-API route.

/// Router compositions (file, call) that mount documented route tables, or the portal.
const COMPOSITIONS: &[(&str, &str)] = &[
    ("lib.rs", ".nest(\"/api/v1\", api::router())"),
    ("lib.rs", ".merge(Router::from(portal_route_table()))"),
    ("lib.rs", "Router::from(portal_route_table())"),
    // The Leptos portal: pages and server functions (excluded, see PORTAL).
    ("lib.rs", ".fallback_service(portal)"),
    ("lib.rs", "Router::from(root_route_table())"),
    ("lib.rs", ".merge(docs::router(&state.config.public_url))"),
    (
        "lib.rs",
        ".nest(\"/v1\", gateway::router(state.gateway.clone()))",
    ),
    ("lib.rs", ".fallback_service(signed_in)"),
    ("api/mod.rs", ".merge(account::route_table())"),
    ("api/mod.rs", ".merge(billing::route_table())"),
    // The device flow, declared by `auth` (which does not depend on `api`).
    ("api/mod.rs", ".merge(crate::auth::route_table())"),
    ("api/mod.rs", ".nest(\"/admin\", admin::route_table())"),
    ("api/mod.rs", "Router::from(route_table())"),
    ("gateway/mod.rs", "Router::from(route_table())"),
    ("docs/mod.rs", "Router::from(route_table())"),
    // The explorer: Swagger UI's HTML, scripts and styles under /api/docs (see EXCLUDED).
    ("docs/mod.rs", ".merge(explorer)"),
    // `docs::openapi()` assembling the document from the same route tables.
    (
        "docs/mod.rs",
        ".merge(crate::root_route_table().into_openapi())",
    ),
    (
        "docs/mod.rs",
        ".merge(crate::portal_route_table().into_openapi())",
    ),
    ("docs/mod.rs", ".merge(route_table().into_openapi())"),
    (
        "docs/mod.rs",
        ".nest(\"/api/v1\", crate::api::route_table().into_openapi())",
    ),
    (
        "docs/mod.rs",
        ".nest(\"/v1\", crate::gateway::route_table().into_openapi())",
    ),
    // The Leptos routes (portal pages, generated from the app's router).
    (
        "portal/mod.rs",
        ".leptos_routes_with_context(&options, routes, use_response_nonce, {",
    ),
];

/// Routes that are not API operations, with why. Matched against the normalised call.
const EXCLUDED: &[(&str, &str)] = &[
    (
        "portal::forms::",
        "the portal's no-JavaScript HTML forms (key creation page, top-up redirect); the \
         same operations are documented as POST /api/v1/me/keys and POST /api/v1/topup",
    ),
    (
        ".route(\"/docs",
        "the human-readable docs pages (HTML and Markdown); listed in /llms.txt",
    ),
    (
        "mock_upstream.rs:",
        "the standalone mock upstream (`tokengate-server mock-upstream`), another server",
    ),
];

/// The non-API paths this server also answers, for the record: the portal pages and its
/// server functions (`/`, `/login`, `/console`, `/device`, …, `/portal/fn/*`, rendered by
/// Leptos from the app's router), its static files (`/pkg/*`, `/favicon.svg`), the docs
/// pages (`/docs`, `/docs/<page>`, `/docs/<page>.md`) and the explorer (`/api/docs/*`).
const PORTAL: &str = "portal pages, static files, docs pages, explorer";

const CALLS: &[&str] = &[
    ".route(",
    ".route_service(",
    ".nest(",
    ".nest_service(",
    ".merge(",
    "Router::from(",
    ".fallback_service(",
    ".leptos_routes(",
    ".leptos_routes_with_context(",
];

/// `call(...)` starting at `start`, whitespace collapsed.
fn call_text(src: &str, start: usize) -> String {
    let mut depth = 0;
    let mut end = src.len();
    for (i, c) in src[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    end = start + i + 1;
                    break;
                }
            }
            '{' if depth == 1 && src[start..start + i].ends_with(", ") => {
                end = start + i + 1;
                break;
            }
            _ => {}
        }
    }
    let raw = &src[start..end];
    let mut out = String::new();
    for word in raw.split_whitespace() {
        if !out.is_empty() && !out.ends_with('(') && !word.starts_with(')') {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.replace(",)", ")")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_router_registration_is_a_documented_route_table_or_excluded() {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src_dir, &mut files);
    let mut unknown = Vec::new();
    let mut seen = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src_dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let src = std::fs::read_to_string(&file).unwrap();
        // Code only: comments may mention these calls.
        let code: String = src
            .lines()
            .map(|l| match l.trim_start().starts_with("//") {
                true => "",
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        for pat in CALLS {
            for (at, _) in code.match_indices(pat) {
                let text = call_text(&code, at);
                let located = format!("{rel}: {text}");
                if COMPOSITIONS
                    .iter()
                    .any(|(f, c)| *f == rel && text.starts_with(c))
                {
                    seen.push((rel.clone(), text));
                    continue;
                }
                if EXCLUDED.iter().any(|(m, _)| located.contains(m)) {
                    continue;
                }
                unknown.push(located);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "router registrations outside the documented route tables:\n  {}\n\
         Register API routes with `.routes(routes!(handler))` in a route table (the handler \
         carries `#[utoipa::path]`), or list a non-API route in EXCLUDED of {} with the reason \
         ({PORTAL}).",
        unknown.join("\n  "),
        file!()
    );
    for (f, c) in COMPOSITIONS {
        assert!(
            seen.iter().any(|(sf, sc)| sf == f && sc.starts_with(c)),
            "composition {f}: {c} no longer exists; update COMPOSITIONS"
        );
    }
}

/// A concrete URL for a documented path.
fn concrete(path: &str) -> String {
    path.replace("{id}", "999999")
        .replace("{name}", "no-such-name")
        .replace("{request_id}", "no-such-request")
        .replace("{payment_provider}", "stripe")
        .replace("{page}", "quickstart")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_reaches_a_handler() {
    let r = common::start_public(None, &[]).await;
    let doc: Value = serde_json::from_str(&docs::openapi_json()).unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(!concrete(path).contains('{'), "no test value for {path}");
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", r.base, concrete(path));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http
                .request(m, &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = resp.text().await.unwrap();
            let fallback = status == 405
                || (status == 404
                    && (body.contains("Unknown API route")
                        || body.contains("unknown_route")
                        || ctype.starts_with("text/html")));
            assert!(
                !fallback,
                "{method} {path} is documented but not served: {status} {body:.200}"
            );
            count += 1;
        }
    }
    assert!(count > 60, "only {count} operations documented");
    // The served document is the generated one.
    let served = http
        .get(format!("{}/openapi.json", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert!(
        served.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(served.text().await.unwrap(), docs::openapi_json());
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Pages, llms.txt, llms-full.txt, explorer

#[test]
fn every_markdown_file_in_docs_is_a_page() {
    let dir = repo_root().join("docs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let page = PAGES.iter().find(|p| p.slug == stem);
            assert!(
                page.is_some(),
                "docs/{stem}.md is not listed in PAGES (server/src/docs/pages.rs)"
            );
            assert_eq!(
                page.unwrap().source,
                std::fs::read_to_string(&path).unwrap(),
                "docs/{stem}.md changed since the build"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_llms_txt_and_explorer() {
    let r = common::start_public(None, &[]).await;
    let base = r.base.clone();
    let http = common::client();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, ctype, resp.text().await.unwrap())
        }
    };

    // Every page as HTML (portal stylesheet and top bar) and as Markdown.
    let (status, _, index) = get(format!("{base}/docs")).await;
    assert_eq!(status, 200);
    for p in PAGES {
        assert!(index.contains(&format!("href=\"/docs/{}\"", p.slug)));
        let (status, ctype, html) = get(format!("{base}/docs/{}", p.slug)).await;
        assert_eq!(status, 200, "/docs/{}", p.slug);
        assert!(ctype.starts_with("text/html"), "{ctype}");
        assert!(html.contains("href=\"/pkg/tokengate.css\""));
        for link in [
            "<a href=\"/docs\"",
            "<a href=\"/console\"",
            "<a href=\"/api/docs\"",
        ] {
            assert!(html.contains(link), "/docs/{} lacks {link}", p.slug);
        }
        assert!(html.contains(&format!(">{}</h1>", docs::pages::esc(p.title()))));
        assert!(!html.contains("{{base_url}}"), "/docs/{}", p.slug);
        let (status, ctype, md) = get(format!("{base}/docs/{}.md", p.slug)).await;
        assert_eq!(status, 200, "/docs/{}.md", p.slug);
        assert!(ctype.starts_with("text/markdown"), "{ctype}");
        assert_eq!(md, p.source.replace("{{base_url}}", &base));
    }
    let (status, _, _) = get(format!("{base}/docs/no-such-page")).await;
    assert_eq!(status, 404);

    // llms.txt: H1, blockquote, sections of absolute links that all resolve.
    let (status, ctype, llms) = get(format!("{base}/llms.txt")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let mut lines = llms.lines().filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("# tokengate"));
    assert!(lines.next().unwrap().starts_with("> "));
    assert!(llms.contains("\n## Docs\n"));
    let links: Vec<&str> = llms
        .split("](")
        .skip(1)
        .map(|s| &s[..s.find(')').unwrap()])
        .collect();
    assert!(links.len() >= PAGES.len() + 2, "{links:?}");
    assert!(links.contains(&format!("{base}/openapi.json").as_str()));
    for p in PAGES {
        assert!(links.contains(&format!("{base}/docs/{}.md", p.slug).as_str()));
    }
    for link in &links {
        assert!(
            link.starts_with(&base),
            "not absolute on this server: {link}"
        );
        let (status, _, _) = get(link.to_string()).await;
        assert_eq!(status, 200, "{link}");
    }

    // llms-full.txt: every page, and every operation in the API reference.
    let (status, ctype, full) = get(format!("{base}/llms-full.txt")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    for p in PAGES {
        let md = p.source.replace("{{base_url}}", &base);
        assert!(
            full.contains(md.trim_end()),
            "llms-full.txt lacks {}",
            p.slug
        );
    }
    let doc: Value = serde_json::from_str(&docs::openapi_json()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let heading = format!("\n### {} {path}\n", method.to_uppercase());
            assert!(full.contains(&heading), "llms-full.txt lacks {heading}");
        }
    }
    assert!(full.contains("- Request body (`application/json`, CreateKeyRequest):"));
    assert!(full.contains("  - `name` (string, required)"));
    // The schemas section describes nested bodies too.
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            full.contains(&format!("\n### {name}\n")),
            "llms-full.txt lacks schema {name}"
        );
    }

    // The explorer: Swagger UI from this server, reading /openapi.json, no validator.
    let (status, ctype, html) = get(format!("{base}/api/docs/")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(html.contains("swagger-ui"), "{html:.300}");
    assert!(
        !html.contains("https://"),
        "the explorer page loads nothing remote"
    );
    let (status, _, init) = get(format!("{base}/api/docs/swagger-initializer.js")).await;
    assert_eq!(status, 200);
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(
        init.contains("\"validatorUrl\": \"none\"") || init.contains("\"validatorUrl\":\"none\""),
        "{init}"
    );
    r.stop().await;
}

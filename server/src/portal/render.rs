//! The one thread that runs Leptos in this process: every portal page render, server
//! function and route-list generation happens on it, and HTML bodies are collected there.
//!
//! Why: Leptos (reactive_graph 0.2) keeps every signal, resource and stored value of every
//! render in one process-wide arena behind a `std::sync::RwLock`, and runs user closures
//! while holding its read lock. A nested read on one thread while another thread waits to
//! write blocks both for good (std's lock queues new readers behind a waiting writer); on
//! the two worker threads of a 2-core machine that froze the whole server, timers
//! included, under concurrent page loads. With one thread touching the arena the lock is
//! never contended. Rendering stays asynchronous on that thread (database and `/api/v1`
//! calls interleave); only the CPU time of building HTML is serialised, which the `/v1`
//! gateway never shares.

use std::future::Future;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::runtime::Handle;

/// Largest page body collected on the render thread (pages are tens of KiB).
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// The render thread's runtime: a current-thread runtime driven by its own OS thread for
/// the life of the process, shared by every server in it (tests run several).
fn handle() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("portal-render".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => panic!("cannot start the portal render runtime: {e}"),
                };
                let _ = tx.send(rt.handle().clone());
                rt.block_on(std::future::pending::<()>());
            })
            .unwrap_or_else(|e| panic!("cannot start the portal render thread: {e}"));
        rx.recv()
            .unwrap_or_else(|e| panic!("the portal render thread did not start: {e}"))
    })
}

/// Runs `fut` on the render thread and waits for it; a panic there resumes here, so the
/// server's panic layer answers it as for any handler.
pub async fn run<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    match handle().spawn(fut).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("portal render task ended: {e}"),
        },
    }
}

/// Runs `f` on the render thread from synchronous code (router construction) and waits.
pub fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    handle().spawn(async move {
        let _ = tx.send(f());
    });
    rx.recv()
        .unwrap_or_else(|e| panic!("the portal render thread failed: {e}"))
}

/// Middleware: the rest of the portal stack runs on the render thread; an HTML body is
/// collected there (its stream polls Leptos), other bodies (static files, server-function
/// JSON) are handed back as they are.
pub async fn on_render_thread(req: Request, next: Next) -> Response {
    run(async move {
        let resp = next.run(req).await;
        let html = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if !html {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
            Ok(bytes) => {
                parts.headers.remove(header::CONTENT_LENGTH);
                parts.headers.remove(header::TRANSFER_ENCODING);
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => {
                tracing::error!(error = %e, "portal page body failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    })
    .await
}

//! The HTTP transport: accepting TCP connections under a cap on connections served at
//! once (over the cap, connections wait in the listen backlog), HTTP/1.1 on each with a
//! header-read timeout (slowloris), a deadline for request bodies (408), what an early
//! answer left unread of a body drained before it is sent (so the client gets the answer,
//! not a reset), and graceful shutdown (stop accepting, finish in-flight requests, close
//! idle connections).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::gateway::error::GatewayError;

/// The transport's limits (from [`crate::config::Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a connection has to send a complete request head, from when it opened or its
    /// previous response was sent.
    pub header_read: Duration,
    /// Time a request has to deliver its whole body, from when its head arrived.
    pub body_read: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(config: &crate::config::Config) -> Limits {
        Limits {
            header_read: Duration::from_secs(config.header_read_timeout_secs),
            body_read: Duration::from_secs(config.body_read_timeout_secs),
            max_connections: config.max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in
/// flight. Each request carries `ConnectInfo<SocketAddr>` of its peer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then the connection: over the cap, connections stay queued in the
        // kernel's listen backlog instead of being accepted and starved.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            },
        };
        // Streamed answers (SSE) are many small writes; Nagle would delay them.
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// The error a request body yields when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once `deadline` has passed. The timer is
/// created only when the body is actually waited for, so a body that is already buffered
/// costs nothing.
struct DeadlineBody {
    inner: Body,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.expired.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the request body must arrive within `limit` of the request head. A request
/// whose body missed it is answered `408` in its route's error shape, and its connection
/// is closed.
pub async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let shape = Shape::of(req.uri().path());
    let expired = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + limit;
    let flag = expired.clone();
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline,
            timer: None,
            expired: flag,
        })
    });
    let resp = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return resp;
    }
    tracing::info!(
        target: "tokengate::http",
        limit_secs = limit.as_secs(),
        "request body not received in time"
    );
    let mut resp = timeout_response(shape, limit);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Longest wait for the unread rest of a body before an early answer is sent anyway.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// A request body shared with [`drain_unread`], which gets back what the handler left.
struct SharedBody(Arc<std::sync::Mutex<Option<Body>>>);

fn lock(slot: &std::sync::Mutex<Option<Body>>) -> std::sync::MutexGuard<'_, Option<Body>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match lock(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        lock(&self.0)
            .as_ref()
            .map(HttpBody::size_hint)
            .unwrap_or_default()
    }
}

/// Middleware: what a handler left unread of a request body (it answered early — 401, 413,
/// a malformed head) is read and discarded, up to `max` bytes, before the answer goes out.
/// A connection closed with unread bytes is reset by the kernel, and the client then often
/// loses the answer already sent ("connection reset" instead of the 401). A body longer
/// than `max` is left, and the connection closed after the answer.
pub async fn drain_unread(State(max): State<usize>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // Too long to drain (and the client may not send it before it sees the answer):
        // answer at once and close the connection after it.
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let slot = Arc::new(std::sync::Mutex::new(None));
    let req = req.map(|inner| {
        *lock(&slot) = Some(inner);
        Body::new(SharedBody(slot.clone()))
    });
    let mut resp = next.run(req).await;
    let rest = lock(&slot).take();
    let Some(mut rest) = rest else {
        return resp;
    };
    let mut seen = 0usize;
    let drain = async {
        loop {
            if rest.is_end_stream() {
                break true;
            }
            match http_body_util::BodyExt::frame(&mut rest).await {
                None => break true,
                Some(Ok(frame)) => {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > max {
                        break false;
                    }
                }
                Some(Err(_)) => break false,
            }
        }
    };
    // A client that holds its body back (waiting for the answer, or `Expect: 100-continue`)
    // is not waited for long: the answer goes out and the connection is closed after it.
    let complete = tokio::time::timeout(DRAIN_WAIT, drain)
        .await
        .unwrap_or(false);
    if !complete {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Which documented error shape a path answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `/v1/messages`: Anthropic's.
    Anthropic,
    /// The rest of `/v1`: OpenAI's.
    OpenAi,
    /// `/api/v1`, the auth endpoints and the portal: `{"error":{"message","type","code"}}`.
    Api,
}

impl Shape {
    fn of(path: &str) -> Shape {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Shape::Anthropic
        } else if path.starts_with("/v1/") {
            Shape::OpenAi
        } else {
            Shape::Api
        }
    }
}

#[derive(Serialize)]
struct ApiErrorBody {
    error: ApiErrorFields,
}

#[derive(Serialize)]
struct ApiErrorFields {
    message: String,
    r#type: &'static str,
    code: &'static str,
}

fn timeout_response(shape: Shape, limit: Duration) -> Response {
    let message = format!(
        "The request body was not received within {} seconds.",
        limit.as_secs()
    );
    let code = "request_timeout";
    match shape {
        Shape::Anthropic | Shape::OpenAi => {
            let e = GatewayError::Route {
                status: StatusCode::REQUEST_TIMEOUT.as_u16(),
                message,
                code,
            };
            if shape == Shape::Anthropic {
                e.into_anthropic_response()
            } else {
                e.into_response()
            }
        }
        Shape::Api => (
            StatusCode::REQUEST_TIMEOUT,
            axum::Json(ApiErrorBody {
                error: ApiErrorFields {
                    message,
                    r#type: "invalid_request_error",
                    code,
                },
            }),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_route() {
        assert_eq!(Shape::of("/v1/messages"), Shape::Anthropic);
        assert_eq!(Shape::of("/v1/messages/count_tokens"), Shape::Anthropic);
        assert_eq!(Shape::of("/v1/chat/completions"), Shape::OpenAi);
        assert_eq!(Shape::of("/api/v1/me/keys"), Shape::Api);
        assert_eq!(Shape::of("/auth/login"), Shape::Api);
    }

    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from_static(b"part"))).unwrap();
        let expired = Arc::new(AtomicBool::new(false));
        let body = Body::new(DeadlineBody {
            inner: Body::from_stream(rx),
            deadline: Instant::now() + Duration::from_millis(50),
            timer: None,
            expired: expired.clone(),
        });
        let started = std::time::Instant::now();
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(expired.load(Ordering::Relaxed), "{err}");
        drop(tx);
    }

    #[tokio::test]
    async fn a_prompt_body_is_untouched() {
        let expired = Arc::new(AtomicBool::new(false));
        let body = Body::new(DeadlineBody {
            inner: Body::from("hello"),
            deadline: Instant::now(),
            timer: None,
            expired: expired.clone(),
        });
        assert_eq!(axum::body::to_bytes(body, 1024).await.unwrap(), "hello");
        assert!(!expired.load(Ordering::Relaxed));
    }

    #[test]
    fn timeout_answers_carry_the_documented_shape() {
        let r = timeout_response(Shape::Api, Duration::from_secs(3));
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        let r = timeout_response(Shape::OpenAi, Duration::from_secs(3));
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    }
}

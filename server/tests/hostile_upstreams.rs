//! Hostile upstreams on the real router, on SQLite and on PostgreSQL: a whole answer larger
//! than `max_upstream_body_bytes` (with and without `Content-Length`) fails the request
//! with 502 in the endpoint's error shape, uncharged; a stream event larger than
//! `max_upstream_event_bytes` ends the stream with an error event after what was already
//! relayed, and the request is logged as failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use common::{Running, client, start_with};
use serde_json::{Value, json};
use tokengate_core::accounts;
use tokengate_core::keys::NewKey;
use tokengate_core::money::NANOS_PER_USD;
use tokengate_core::usage::RequestRecord;

const BODY_LIMIT: usize = 64 * 1024;
const EVENT_LIMIT: usize = 16 * 1024;

fn chunked(pieces: Vec<Vec<u8>>, content_type: &str) -> Response {
    let stream = futures::stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<Bytes, std::io::Error>(Bytes::from(p))),
    );
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A completion whose text is `n` bytes long.
fn big_completion(n: usize) -> Vec<u8> {
    json!({"id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "x".repeat(n)}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    .to_string()
    .into_bytes()
}

/// The fake upstream: `/{scenario}/v1/chat/completions` and `/{scenario}/v1/messages`.
async fn upstream(scenario: String) -> Response {
    match scenario.as_str() {
        // A whole body over the limit, announced by Content-Length.
        "bigjson" => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(big_completion(4 * BODY_LIMIT)))
            .unwrap(),
        // The same without Content-Length (chunked): caught while reading.
        "bigchunked" => {
            let body = big_completion(4 * BODY_LIMIT);
            chunked(
                body.chunks(4096).map(<[u8]>::to_vec).collect(),
                "application/json",
            )
        }
        // A first event with text, then one event that never ends.
        "bigevent" => {
            let first = b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"}}]}\n\n".to_vec();
            let mut pieces = vec![
                first,
                b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"".to_vec(),
            ];
            pieces.extend((0..64).map(|_| vec![b'y'; 1024]));
            chunked(pieces, "text/event-stream")
        }
        // Under both limits: a normal answer, to show the limits leave it alone.
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(big_completion(BODY_LIMIT / 2)))
            .unwrap(),
    }
}

async fn fake_upstream() -> String {
    let app = axum::Router::new()
        .route(
            "/{scenario}/v1/chat/completions",
            post(|Path(s): Path<String>| upstream(s)),
        )
        .route(
            "/{scenario}/v1/messages",
            post(|Path(s): Path<String>| upstream(s)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn openai_model(r: &Running, upstream: &str, name: &str) {
    let base = format!("{upstream}/{name}/v1");
    r.provider(name, "openai", Some(base), json!({})).await;
    let prices = tokengate_core::money::Prices {
        input_per_m: NANOS_PER_USD,
        output_per_m: 2 * NANOS_PER_USD,
        cache_read_per_m: None,
        cache_write_per_m: None,
    };
    r.model(&format!("{name}/m"), name, prices, 256).await;
}

async fn log_row(r: &Running, user_id: i64, request_id: &str) -> RequestRecord {
    for _ in 0..100 {
        let logs = tokengate_core::usage::recent_logs(&r.server_state.db, user_id, 1000)
            .await
            .unwrap();
        if let Some(row) = logs.into_iter().find(|l| l.request_id == request_id) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log row for {request_id}");
}

async fn send(r: &Running, key: &str, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", r.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_string()
}

async fn scenario(database_url: Option<String>) {
    let r = start_with(database_url, &[], |c| {
        c.max_upstream_body_bytes = BODY_LIMIT;
        c.max_upstream_event_bytes = EVENT_LIMIT;
    })
    .await;
    let upstream = fake_upstream().await;
    for name in ["bigjson", "bigchunked", "bigevent", "fine"] {
        openai_model(&r, &upstream, name).await;
    }
    r.server_state.gateway.reload_routes().await.unwrap();
    let (user, key) = r
        .customer(
            "hostile@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let msgs = json!([{"role": "user", "content": "hi"}]);

    // Under the limits nothing changes.
    let resp = send(
        &r,
        &key,
        "/v1/chat/completions",
        json!({"model": "fine/m", "messages": msgs}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let fine = request_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().map(str::len),
        Some(BODY_LIMIT / 2)
    );
    assert!(log_row(&r, user, &fine).await.cost_nano > 0);

    // Whole answers over the limit: 502 in each endpoint's error shape, nothing charged.
    let before = accounts::get_user(&r.server_state.db, user)
        .await
        .unwrap()
        .balance_nano;
    let limit_text = format!("larger than the {BODY_LIMIT}-byte limit");
    for model in ["bigjson/m", "bigchunked/m"] {
        let resp = send(
            &r,
            &key,
            "/v1/chat/completions",
            json!({"model": model, "messages": msgs}),
        )
        .await;
        assert_eq!(resp.status(), 502, "{model}");
        let id = request_id(&resp);
        let v: Value = resp.json().await.unwrap();
        common::assert_error(&v, "api_error", "upstream_error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(&limit_text), "{message}");
        let row = log_row(&r, user, &id).await;
        assert_eq!((row.status, row.cost_nano), (502, 0), "{model}");

        let resp = send(
            &r,
            &key,
            "/v1/messages",
            json!({"model": model, "max_tokens": 50, "messages": msgs}),
        )
        .await;
        assert_eq!(resp.status(), 502, "{model}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "api_error", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&limit_text),
            "{v}"
        );
    }
    // Let the usage writer flush, then check nothing was charged for the failures.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = accounts::get_user(&r.server_state.db, user)
        .await
        .unwrap()
        .balance_nano;
    assert_eq!(after, before, "a failed answer was charged");

    // A stream event over the limit: what came before is relayed, then an error event,
    // then the end of the stream.
    let event_text = format!("larger than the {EVENT_LIMIT}-byte limit");
    let resp = send(
        &r,
        &key,
        "/v1/chat/completions",
        json!({"model": "bigevent/m", "stream": true, "messages": msgs}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the stream did not end")
        .unwrap();
    let data: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert!(data[0].contains("\"Hello\""), "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&event_text),
        "{text}"
    );
    assert!(text.len() < EVENT_LIMIT, "the oversized event was relayed");
    let row = log_row(&r, user, &id).await;
    assert_eq!(row.status, 502);
    assert!(
        row.error_message
            .as_deref()
            .unwrap_or("")
            .contains("stream event"),
        "{row:?}"
    );

    let resp = send(
        &r,
        &key,
        "/v1/messages",
        json!({"model": "bigevent/m", "max_tokens": 50, "stream": true, "messages": msgs}),
    )
    .await;
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the stream did not end")
        .unwrap();
    assert!(text.contains("\"text\":\"Hello\""), "{text}");
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error\n"), "{text}");
    assert!(last.contains(&event_text), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstreams_on_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_upstreams_on_postgres() {
    common::on_postgres(scenario).await;
}

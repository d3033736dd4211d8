//! Benchmark client for streaming: `C` connections each send streaming chat requests in a
//! loop for `SECS` seconds and record the time to the first body byte and to the end of
//! the stream. Prints one line: `RESULT requests=… errors=… rps=… ttfb_p50_ms=…
//! ttfb_p99_ms=… total_p50_ms=…`. Used by `bench/run.sh`; not a test.
//!
//! Usage: `ttfb URL BODY_JSON CONNECTIONS SECONDS [API_KEY]`

use std::time::{Duration, Instant};

use futures::StreamExt;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: ttfb URL BODY_JSON CONNECTIONS SECONDS [API_KEY]");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let body = args[2].clone();
    let conns: usize = args[3].parse().unwrap_or(1);
    let secs: u64 = args[4].parse().unwrap_or(5);
    let key = args.get(5).cloned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, body, key) = (client.clone(), url.clone(), body.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut ttfb = Vec::new();
            let mut total = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(k) = &key {
                    req = req.bearer_auth(k);
                }
                let Ok(resp) = req.send().await else {
                    errors += 1;
                    continue;
                };
                if !resp.status().is_success() {
                    errors += 1;
                    let _ = resp.bytes().await;
                    continue;
                }
                let mut stream = resp.bytes_stream();
                let mut first = None;
                let mut ok = true;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(c) if !c.is_empty() && first.is_none() => first = Some(start.elapsed()),
                        Ok(_) => {}
                        Err(_) => {
                            ok = false;
                            break;
                        }
                    }
                }
                match (ok, first) {
                    (true, Some(f)) => {
                        ttfb.push(f.as_secs_f64() * 1000.0);
                        total.push(start.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (ttfb, total, errors)
        }));
    }
    let started = Instant::now();
    let (mut ttfb, mut total, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        if let Ok((a, b, e)) = t.await {
            ttfb.extend(a);
            total.extend(b);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    ttfb.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    println!(
        "RESULT requests={} errors={} rps={:.0} ttfb_p50_ms={:.3} ttfb_p99_ms={:.3} total_p50_ms={:.3}",
        ttfb.len(),
        errors,
        ttfb.len() as f64 / elapsed,
        percentile(&ttfb, 50.0),
        percentile(&ttfb, 99.0),
        percentile(&total, 50.0)
    );
}

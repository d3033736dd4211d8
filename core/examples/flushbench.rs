//! Times `usage::write_batch` on a fresh SQLite database (not a test; prints figures).
//! Usage: flushbench ROWS BATCH

use std::time::Instant;

use tokengate_core::accounts::Role;
use tokengate_core::usage::{self, RequestRecord, UpstreamAttempt};
use tokengate_core::{Db, accounts};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (rows, batch) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(4_000),
    );
    let dir = std::env::temp_dir().join(format!("flushbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = Db::connect(&format!("sqlite://{}/t.db", dir.display())).await?;
    let u = accounts::create_user(&db, "b@example.com", "b", None, Role::User).await?;
    let rec = RequestRecord {
        request_id: "req_0123456789abcdef01234567".into(),
        user_id: u.id,
        key_id: 1,
        endpoint: "/v1/chat/completions".into(),
        model: "up/fast-1".into(),
        served_model: Some("up/fast-1".into()),
        provider: Some("up".into()),
        status: 200,
        tokens_in: 12,
        tokens_out: 16,
        cost_nano: 11_400,
        latency_ms: 1,
        ttfb_ms: Some(1),
        attempts: 1,
        attempts_json: Some(vec![UpstreamAttempt::new("up", "up/fast-1", 200.into(), 0)]),
        created_at: 1,
        ..RequestRecord::default()
    };
    let records: Vec<RequestRecord> = (0..batch).map(|_| rec.clone()).collect();
    let start = Instant::now();
    let mut written = 0;
    while written < rows {
        usage::write_batch(&db, &records).await?;
        written += batch;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{written} rows in {secs:.3} s = {:.0} rows/s",
        written as f64 / secs
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

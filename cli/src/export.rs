//! `tokengate logs export`: the signed-in account's request log, newest first, written to
//! stdout and nothing else — CSV straight from the API's streamed export
//! (`/api/v1/me/request-logs.csv`, byte for byte), or JSON Lines (one `RequestLog` per line)
//! paged from `/api/v1/me/request-logs`. `--after <request id>` resumes an interrupted export
//! (the rows after that one, without a CSV header, ready for `>>`). On a terminal, stderr
//! shows a progress line (rows and bytes).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use reqwest::Method;
use tokengate_api::billing::{RequestLog, RequestLogPage};

use crate::Ctx;
use crate::args::{ExportFormat, LogsExportArgs};
use crate::auth;
use crate::error::CliError;
use crate::http::api_error;

/// The longest a whole export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Rows per JSON page (the API's maximum).
const PAGE: i64 = 500;

/// Counts rows (records outside quotes) and bytes, and shows them on stderr.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    rows: u64,
    bytes: u64,
    in_quotes: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} exporting: {msg} rows, {bytes} ({bytes_per_sec}), {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            rows: 0,
            bytes: 0,
            in_quotes: false,
        }
    }

    /// A chunk of RFC 4180 CSV: rows end at a line break outside quotes.
    fn csv(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.rows += 1,
                _ => {}
            }
        }
        self.add(chunk.len(), 0);
    }

    fn add(&mut self, bytes: usize, rows: u64) {
        self.bytes += bytes as u64;
        self.rows += rows;
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes);
            bar.set_message(self.rows.to_string());
        }
    }

    fn finish(self, header_rows: u64) -> u64 {
        let rows = self.rows.saturating_sub(header_rows);
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
            eprintln!(
                "exported {rows} row(s), {}",
                indicatif::HumanBytes(self.bytes)
            );
        }
        rows
    }
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<(), CliError> {
    out.write_all(bytes)
        .map_err(|e| CliError::user(format!("writing the export: {e}")))
}

/// The query the API takes, from the command's filters.
fn filters(a: &LogsExportArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut add = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| !v.trim().is_empty()) {
            q.push((k, v.clone()));
        }
    };
    add("from", &a.from);
    add("to", &a.to);
    add("model", &a.model);
    add("status", &a.status);
    if let Some(k) = a.key_id {
        q.push(("key_id", k.to_string()));
    }
    q
}

/// Runs the export; a summary goes to stderr, the data to stdout.
pub async fn export(ctx: &Ctx, a: &LogsExportArgs) -> Result<(), CliError> {
    let progress = Progress::new(std::io::stderr().is_terminal() && !ctx.out.json);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let rows = match a.format {
        ExportFormat::Csv => csv(ctx, a, progress, &mut out).await?,
        ExportFormat::Jsonl => jsonl(ctx, a, progress, &mut out).await?,
    };
    out.flush()
        .map_err(|e| CliError::user(format!("writing the export: {e}")))?;
    if ctx.out.json {
        // Stdout holds the data: the summary, like every note, goes to stderr.
        eprintln!("{}", serde_json::json!({"exported_rows": rows}));
    }
    Ok(())
}

async fn csv(
    ctx: &Ctx,
    a: &LogsExportArgs,
    mut progress: Progress,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let mut query = filters(a);
    if let Some(after) = &a.after {
        query.push(("after", after.clone()));
    }
    let url = ctx.http.url("/api/v1/me/request-logs.csv");
    let mut refused = false;
    let mut resp = loop {
        let token = auth::access_token(ctx, refused).await?;
        let resp = ctx
            .http
            .client()
            .get(&url)
            .query(&query)
            .bearer_auth(token)
            .timeout(EXPORT_TIMEOUT)
            .send()
            .await
            .map_err(|e| CliError::Network(format!("could not reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        if status == 401 && !refused {
            refused = true;
            continue;
        }
        if status >= 400 {
            let text = resp.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or_default();
            return Err(api_error(status, &body, &text));
        }
        break resp;
    };
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                write_out(out, &chunk)?;
                progress.csv(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                return Err(CliError::Network(format!(
                    "the export was cut off after {} byte(s) ({e}); resume with --after <the last \
                     complete row's request_id>",
                    progress.bytes
                )));
            }
        }
    }
    let header = u64::from(a.after.is_none());
    Ok(progress.finish(header))
}

async fn jsonl(
    ctx: &Ctx,
    a: &LogsExportArgs,
    mut progress: Progress,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let mut before = match &a.after {
        Some(rid) => {
            let path = format!("/api/v1/me/request-logs/{}", urlencode(rid));
            let row: RequestLog = auth::account_as(ctx, Method::GET, &path, None).await?;
            Some(row.id)
        }
        None => None,
    };
    let base = filters(a);
    loop {
        let mut query = base.clone();
        query.push(("limit", PAGE.to_string()));
        if let Some(b) = before {
            query.push(("before", b.to_string()));
        }
        let qs = serde_urlencoded_pairs(&query);
        let path = format!("/api/v1/me/request-logs?{qs}");
        let page: RequestLogPage = auth::account_as(ctx, Method::GET, &path, None).await?;
        for row in &page.data {
            let mut line = serde_json::to_string(row)
                .map_err(|e| CliError::user(format!("encoding a row: {e}")))?;
            line.push('\n');
            write_out(out, line.as_bytes())?;
            progress.add(line.len(), 1);
        }
        match page.next_before {
            Some(n) if !page.data.is_empty() => before = Some(n),
            _ => break,
        }
    }
    Ok(progress.finish(0))
}

/// Percent-encodes everything but unreserved characters.
fn urlencode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn serde_urlencoded_pairs(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_csv_rows_across_quoted_line_breaks_and_chunks() {
        let mut p = Progress::new(false);
        p.csv(b"a,b\r\n1,\"x\r\n");
        p.csv(b"y\"\r\n2,z\r\n");
        assert_eq!(p.finish(1), 2);
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(
            urlencode("2026-11-01T00:00:00+01:00"),
            "2026-11-01T00%3A00%3A00%2B01%3A00"
        );
        assert_eq!(
            serde_urlencoded_pairs(&[("model", "a b".into()), ("limit", "5".into())]),
            "model=a%20b&limit=5"
        );
    }
}

//! What the CLI shows: one-line JSON documents on stdout with `--json`; for people, results
//! on stdout and notes on stderr, plain tables, a spinner (stderr, terminals only) and a
//! browser opened with `xdg-open`/`open` (stdout a terminal only; never an error).

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::fmt::Display;

use serde::Serialize;
use serde_json::Value;

/// Output mode of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints one JSON document on one line of stdout, flushed (agents may read it while
    /// the command still runs).
    pub fn json<T: Serialize + ?Sized>(&self, v: &T) {
        let text = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// A result line for people (stdout).
    pub fn line(&self, s: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{s}");
        let _ = stdout.flush();
    }

    /// A note for people (stderr), never part of the result.
    pub fn note(&self, s: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{s}");
    }

    /// Whether a person is looking at stdout (and the output is not for a program).
    pub fn interactive(&self) -> bool {
        !self.json && std::io::stdout().is_terminal()
    }
}

/// Opens `url` in the default browser when possible; whether a browser was started.
pub fn open_browser(url: &str) -> bool {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match Command::new(program)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            // Reap it whenever it ends; its outcome does not matter.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}

/// A spinner with a message on stderr, animated while the returned guard lives; nothing
/// when stderr is not a terminal.
pub fn spinner(message: &str, enabled: bool) -> Spinner {
    if !enabled || !std::io::stderr().is_terminal() {
        return Spinner { task: None };
    }
    let message = message.to_string();
    let task = tokio::spawn(async move {
        const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
        let mut i = 0;
        loop {
            let _ = write!(
                std::io::stderr(),
                "\r{} {message}",
                FRAMES[i % FRAMES.len()]
            );
            let _ = std::io::stderr().flush();
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Spinner { task: Some(task) }
}

/// Stops the spinner and clears its line when dropped.
pub struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

/// A left-aligned table with a header row, columns two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        line
    };
    let mut out = render(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&render(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON field as display text: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional field as display text: null as `-`.
pub fn opt<T: Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "demo".into()],
                vec!["12".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID  NAME\n1   demo\n12  x");
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!("a")), "a");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(opt::<i64>(&None), "-");
        assert_eq!(opt(&Some(tokengate_api::Usd(1_500_000_000))), "1.50");
    }
}

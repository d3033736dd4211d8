//! Outgoing account mail (the sign-up verification link): over SMTP when `[smtp]` is
//! configured (lettre on the same rustls stack as everything else), otherwise written to
//! the log in demo mode so a demo can be followed without a mail server; with neither,
//! nothing is sent and a warning says so, without the message (which holds a secret
//! link). Sending runs in the background, so a slow mail server never delays a request,
//! and its errors are logged without the SMTP URL (which may hold credentials).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{Config, SmtpConfig};

/// One plain-text message to one recipient.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// How this server delivers account mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Smtp,
    /// Demo mode without SMTP: the message is written to the log.
    Log,
    /// Not sent (no SMTP, not a demo).
    Dropped,
}

/// How `config` delivers account mail.
pub fn delivery(config: &Config) -> Delivery {
    match (&config.smtp, config.demo) {
        (Some(_), _) => Delivery::Smtp,
        (None, true) => Delivery::Log,
        (None, false) => Delivery::Dropped,
    }
}

/// Sends `mail` (about account `user_id`, for the logs) in the background.
pub fn send(config: &Config, user_id: i64, mail: Mail) -> Delivery {
    let how = delivery(config);
    match (how, config.smtp.clone()) {
        (Delivery::Smtp, Some(smtp)) => {
            tokio::spawn(async move {
                match deliver(&smtp, &mail).await {
                    Ok(()) => {
                        tracing::info!(user = user_id, subject = %mail.subject, "account mail sent")
                    }
                    Err(e) => {
                        tracing::warn!(user = user_id, error = %e, "account mail could not be sent")
                    }
                }
            });
        }
        (Delivery::Log, _) => tracing::info!(
            user = user_id,
            to = %mail.to,
            subject = %mail.subject,
            body = %mail.body,
            "DEMO MODE: account mail written to the log instead of sent (no [smtp] configured)"
        ),
        _ => tracing::warn!(
            user = user_id,
            subject = %mail.subject,
            "account mail not sent: configure [smtp] (smtp.url, smtp.from) to deliver it"
        ),
    }
    how
}

/// Delivers one message over SMTP.
async fn deliver(smtp: &SmtpConfig, mail: &Mail) -> Result<(), String> {
    let from: Mailbox = smtp.from.parse().map_err(|e| format!("smtp.from: {e}"))?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| format!("recipient address: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|e| format!("message: {e}"))?;
    // The URL may hold credentials: its parse error is not repeated.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose())
        .map_err(|_| "smtp.url is not a valid SMTP URL".to_string())?
        .timeout(Some(Duration::from_secs(20)))
        .build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let dir = std::env::temp_dir().join("tg-mail-test");
        Config::load(None, |k| {
            if k == "TOKENGATE_DATA_DIR" {
                return Some(dir.display().to_string());
            }
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn smtp_when_configured_log_only_in_demo_mode() {
        let smtp = config(&[
            ("TOKENGATE_SMTP_URL", "smtps://u:p@mail.example.com:465"),
            ("TOKENGATE_SMTP_FROM", "tokengate <noreply@example.com>"),
        ])
        .unwrap();
        assert_eq!(delivery(&smtp), Delivery::Smtp);
        // The URL holds credentials: never in Debug output.
        assert!(!format!("{smtp:?}").contains("u:p@"));
        assert_eq!(
            delivery(&config(&[("TOKENGATE_DEMO", "1")]).unwrap()),
            Delivery::Log
        );
        assert_eq!(delivery(&config(&[]).unwrap()), Delivery::Dropped);
        // A sender is required, and both must be well-formed.
        assert!(config(&[("TOKENGATE_SMTP_URL", "smtp://relay:25")]).is_err());
        assert!(
            config(&[
                ("TOKENGATE_SMTP_URL", "http://relay"),
                ("TOKENGATE_SMTP_FROM", "noreply@example.com"),
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("TOKENGATE_SMTP_URL", "smtp://relay:25"),
                ("TOKENGATE_SMTP_FROM", "not an address"),
            ])
            .is_err()
        );
    }
}

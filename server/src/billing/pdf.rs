//! PDF renderings of monthly statements and top-up receipts: A4 pages of text in the
//! built-in Helvetica (nothing embedded, text extractable by `pdftotext`), laid out as
//! labelled rows and column tables, with amounts printed by the same rule as the CSV.

use printpdf::{
    BuiltinFont, Line, LinePoint, Mm, Op, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions,
    Point, Pt, TextItem,
};
use tokengate_core::accounts::User;
use tokengate_core::money::{format_balance, format_exact};
use tokengate_core::payments::Payment;
use tokengate_core::statements::Statement;

const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const MARGIN: f32 = 18.0;
const LINE: f32 = 5.5;

/// Pages of positioned text.
struct Doc {
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Doc {
    fn new() -> Doc {
        Doc {
            pages: vec![Vec::new()],
            y: PAGE_H - MARGIN,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Moves down by `lines`, starting a new page when the bottom margin is reached.
    fn advance(&mut self, lines: f32) {
        self.y -= LINE * lines;
        if self.y < MARGIN + LINE {
            self.new_page();
        }
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = PAGE_H - MARGIN;
    }

    fn text_at(&mut self, x: f32, s: &str, size: f32, bold: bool) {
        let y = self.y;
        let font = if bold {
            BuiltinFont::HelveticaBold
        } else {
            BuiltinFont::Helvetica
        };
        let ops = self.ops();
        ops.push(Op::StartTextSection);
        ops.push(Op::SetFont {
            font: PdfFontHandle::Builtin(font),
            size: Pt(size),
        });
        ops.push(Op::SetTextCursor {
            pos: Point::new(Mm(x), Mm(y)),
        });
        ops.push(Op::ShowText {
            items: vec![TextItem::Text(latin1(s))],
        });
        ops.push(Op::EndTextSection);
    }

    /// One row of cells at the given x positions (mm from the left edge). Each cell
    /// wraps within its column (up to the next cell, or the right margin), so no text
    /// is cut off or drawn over its neighbour.
    fn row(&mut self, cells: &[(f32, &str)], bold: bool) {
        const SIZE: f32 = 9.5;
        let wrapped: Vec<(f32, Vec<String>)> = cells
            .iter()
            .enumerate()
            .map(|(i, (x, s))| {
                let right = cells.get(i + 1).map_or(PAGE_W - MARGIN, |n| n.0 - 2.0);
                (*x, wrap(s, right - x, SIZE))
            })
            .collect();
        let lines = wrapped.iter().map(|(_, l)| l.len()).max().unwrap_or(1);
        if lines > 1 && self.y - LINE * (lines as f32) < MARGIN + LINE {
            self.new_page();
        }
        let top = self.y;
        for (x, cell) in &wrapped {
            self.y = top;
            for line in cell {
                self.text_at(*x, line, SIZE, bold);
                self.y -= LINE;
            }
        }
        self.y = top;
        self.advance(lines as f32);
    }

    fn heading(&mut self, s: &str) {
        self.advance(0.6);
        self.text_at(MARGIN, s, 12.0, true);
        self.advance(1.4);
    }

    fn rule(&mut self) {
        let y = self.y + LINE * 0.6;
        let line = Line {
            points: vec![
                LinePoint {
                    p: Point::new(Mm(MARGIN), Mm(y)),
                    bezier: false,
                },
                LinePoint {
                    p: Point::new(Mm(PAGE_W - MARGIN), Mm(y)),
                    bezier: false,
                },
            ],
            is_closed: false,
        };
        self.ops().push(Op::DrawLine { line });
    }

    fn finish(self, title: &str) -> Vec<u8> {
        let total = self.pages.len();
        let pages = self
            .pages
            .into_iter()
            .enumerate()
            .map(|(i, mut ops)| {
                if total > 1 {
                    ops.push(Op::StartTextSection);
                    ops.push(Op::SetFont {
                        font: PdfFontHandle::Builtin(BuiltinFont::Helvetica),
                        size: Pt(8.0),
                    });
                    ops.push(Op::SetTextCursor {
                        pos: Point::new(Mm(PAGE_W - MARGIN - 20.0), Mm(MARGIN / 2.0)),
                    });
                    ops.push(Op::ShowText {
                        items: vec![TextItem::Text(format!("Page {} of {total}", i + 1))],
                    });
                    ops.push(Op::EndTextSection);
                }
                PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops)
            })
            .collect();
        let mut doc = PdfDocument::new(title);
        let mut warnings = Vec::new();
        doc.with_pages(pages)
            .save(&PdfSaveOptions::default(), &mut warnings)
    }
}

/// Helvetica advance widths (1/1000 em) of ASCII 32..=126, from its AFM metrics.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Width of `s` in mm at `size` points (bold is up to ~5% wider: allowed for).
fn width_mm(s: &str, size: f32) -> f32 {
    let units: u32 = s
        .chars()
        .map(|c| {
            let i = c as u32;
            if (32..=126).contains(&i) {
                u32::from(HELVETICA[(i - 32) as usize])
            } else {
                611
            }
        })
        .sum();
    units as f32 / 1000.0 * size * 1.05 * 25.4 / 72.0
}

/// Splits `s` into lines no wider than `max_mm`: at spaces where possible, inside a word
/// (an id, a URL) where it is longer than a line.
fn wrap(s: &str, max_mm: f32, size: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if width_mm(&candidate, size) <= max_mm {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if width_mm(&line, size) > max_mm && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(c);
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The built-in fonts speak WinAnsi: anything outside Latin-1 prints as `?`.
fn latin1(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 256 && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM UTC` of unix milliseconds.
pub fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        })
        .unwrap_or_default()
}

/// A monthly statement.
pub fn statement(s: &Statement, generated_ms: i64) -> Vec<u8> {
    let mut d = Doc::new();
    d.text_at(MARGIN, "tokengate - monthly statement", 16.0, true);
    d.advance(2.0);
    let period = format!(
        "{} to {} (UTC)",
        utc(s.period_start_ms).trim_end_matches(" 00:00 UTC"),
        utc(s.period_end_ms - 1000)
            .split(' ')
            .next()
            .unwrap_or_default()
    );
    for (label, value) in [
        ("Account", format!("{} <{}>", s.display_name, s.email)),
        ("Account ID", s.user_id.to_string()),
        ("Statement month", s.month.clone()),
        ("Period", period),
        ("Generated", utc(generated_ms)),
    ] {
        d.row(&[(MARGIN, label), (MARGIN + 40.0, &value)], false);
    }

    d.heading("Summary (USD)");
    let usage = format_exact(-s.usage_cost_nano);
    for (label, value) in [
        ("Opening balance", format_exact(s.opening_nano)),
        ("Top-ups", format_exact(s.topups_nano)),
        ("Adjustments and refunds", format_exact(s.adjustments_nano)),
        ("Total usage", usage.clone()),
        ("Net change", format_exact(s.net_change_nano())),
        ("Closing balance", format_exact(s.closing_nano)),
    ] {
        d.row(
            &[(MARGIN, label), (MARGIN + 60.0, &value)],
            label == "Closing balance",
        );
    }

    d.heading("Credits and adjustments");
    if s.credits.is_empty() {
        d.row(&[(MARGIN, "None this month.")], false);
    } else {
        let cols = [MARGIN, MARGIN + 36.0, MARGIN + 60.0, MARGIN + 135.0];
        d.row(
            &[
                (cols[0], "Date"),
                (cols[1], "Kind"),
                (cols[2], "Reference / note"),
                (cols[3], "Amount"),
            ],
            true,
        );
        d.rule();
        for e in &s.credits {
            let date = utc(e.created_at);
            let mut what = e.reference.clone().unwrap_or_default();
            if let Some(n) = &e.note {
                if !what.is_empty() {
                    what.push_str(" - ");
                }
                what.push_str(n);
            }
            let amount = format_exact(e.amount_nano);
            d.row(
                &[
                    (cols[0], &date[..10.min(date.len())]),
                    (cols[1], e.kind.as_str()),
                    (cols[2], &what),
                    (cols[3], &amount),
                ],
                false,
            );
        }
    }

    d.heading("Usage by model");
    if s.usage.is_empty() {
        d.row(&[(MARGIN, "No usage this month.")], false);
    } else {
        let cols = [
            MARGIN,
            MARGIN + 70.0,
            MARGIN + 92.0,
            MARGIN + 117.0,
            MARGIN + 142.0,
        ];
        d.row(
            &[
                (cols[0], "Model"),
                (cols[1], "Requests"),
                (cols[2], "Tokens in"),
                (cols[3], "Tokens out"),
                (cols[4], "Cost"),
            ],
            true,
        );
        d.rule();
        for u in &s.usage {
            let model = u.model.clone();
            let (n, tin, tout, cost) = (
                u.requests.to_string(),
                u.tokens_in.to_string(),
                u.tokens_out.to_string(),
                format_exact(u.cost_nano),
            );
            d.row(
                &[
                    (cols[0], &model),
                    (cols[1], &n),
                    (cols[2], &tin),
                    (cols[3], &tout),
                    (cols[4], &cost),
                ],
                false,
            );
        }
        d.rule();
        let (n, cost) = (
            s.usage_requests.to_string(),
            format_exact(s.usage_cost_nano),
        );
        d.row(&[(cols[0], "Total"), (cols[1], &n), (cols[4], &cost)], true);
    }
    d.advance(1.0);
    d.row(
        &[(
            MARGIN,
            "Amounts are exact: at least two decimals, more where a cost needs them (to 0.000000001 USD).",
        )],
        false,
    );
    d.finish(&format!("tokengate statement {}", s.month))
}

/// A receipt for one paid top-up.
pub fn receipt(p: &Payment, user: &User) -> Vec<u8> {
    let mut d = Doc::new();
    d.text_at(MARGIN, "tokengate - receipt", 16.0, true);
    d.advance(2.0);
    let amount = format!("{} USD", format_balance(p.amount_nano));
    let paid = p.paid_at.map(utc).unwrap_or_default();
    let receipt_no = format!("TG-{:08}", p.id);
    for (label, value) in [
        ("Receipt number", receipt_no.as_str()),
        ("Date paid", paid.as_str()),
        ("Account", user.email.as_str()),
        ("Account ID", &user.id.to_string()),
        ("Payment provider", p.provider.as_str()),
        ("Checkout session", p.session_id.as_str()),
    ] {
        d.row(&[(MARGIN, label), (MARGIN + 45.0, value)], false);
    }
    d.heading("Items");
    d.row(&[(MARGIN, "Description"), (MARGIN + 120.0, "Amount")], true);
    d.rule();
    d.row(
        &[(MARGIN, "Prepaid API credit"), (MARGIN + 120.0, &amount)],
        false,
    );
    d.rule();
    d.row(&[(MARGIN, "Total paid"), (MARGIN + 120.0, &amount)], true);
    d.advance(1.0);
    d.row(
        &[(
            MARGIN,
            "Credited to the account balance. Keep this receipt for your records.",
        )],
        false,
    );
    d.finish(&format!("tokengate receipt {receipt_no}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokengate_core::accounts::LedgerEntry;
    use tokengate_core::statements::ModelUsage;

    fn sample() -> Statement {
        Statement {
            user_id: 7,
            email: "ana@example.com".into(),
            display_name: "Ana Müller".into(),
            month: "2026-02".into(),
            period_start_ms: 1_769_904_000_000,
            period_end_ms: 1_772_323_200_000,
            opening_nano: 5_000_000_000,
            closing_nano: 14_999_876_544,
            credits: vec![LedgerEntry {
                id: 1,
                user_id: 7,
                kind: tokengate_core::accounts::EntryKind::Topup,
                amount_nano: 10_000_000_000,
                balance_after: 15_000_000_000,
                reference: Some("stripe:cs_test_1".into()),
                note: Some("top-up".into()),
                created_by: None,
                created_at: 1_770_000_000_000,
            }],
            topups_nano: 10_000_000_000,
            adjustments_nano: 0,
            usage_ledger_nano: -123_456,
            usage: vec![ModelUsage {
                model: "mock/fast".into(),
                requests: 3,
                tokens_in: 30,
                tokens_out: 60,
                cost_nano: 123_456,
            }],
            usage_cost_nano: 123_456,
            usage_requests: 3,
        }
    }

    /// The text `pdftotext` (poppler-utils, installed by `scripts/setup.sh`) reads back.
    fn text_of(pdf: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("tg-pdf-{}.pdf", rand::random::<u64>()));
        std::fs::write(&path, pdf).unwrap();
        let out = std::process::Command::new("pdftotext")
            .args(["-layout", path.to_str().unwrap(), "-"])
            .output()
            .expect("pdftotext from poppler-utils (scripts/setup.sh installs it)");
        let _ = std::fs::remove_file(&path);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn statement_pdf_reads_back_with_its_totals() {
        let pdf = statement(&sample(), 1_772_000_000_000);
        if let Ok(dir) = std::env::var("TOKENGATE_PDF_SAMPLES") {
            std::fs::write(format!("{dir}/statement.pdf"), &pdf).unwrap();
        }
        assert!(pdf.starts_with(b"%PDF"));
        let text = text_of(&pdf);
        for needle in [
            "ana@example.com",
            "2026-02",
            "Opening balance",
            "5.00",
            "Total usage",
            "-0.000123456",
            "Closing balance",
            "14.999876544",
            "mock/fast",
            "stripe:cs_test_1",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn long_text_wraps_inside_its_column() {
        let s = "stripe:cs_test_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6 - top-up";
        let lines = wrap(s, 60.0, 9.5);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width_mm(l, 9.5) <= 60.0), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), s.replace(' ', ""));
        assert_eq!(wrap("", 10.0, 9.5), vec![String::new()]);
    }

    #[test]
    fn receipt_pdf_names_amount_and_session() {
        let p = Payment {
            id: 42,
            user_id: 7,
            provider: "stripe".into(),
            session_id: "cs_test_abc".into(),
            amount_nano: 12_500_000_000,
            currency: "usd".into(),
            status: tokengate_core::payments::PaymentStatus::Paid,
            checkout_url: None,
            expires_at: None,
            ledger_entry_id: Some(3),
            created_at: 1_770_000_000_000,
            paid_at: Some(1_770_000_100_000),
            payment_intent: Some("pi_abc".into()),
            refunded_nano: 0,
            disputed_nano: 0,
        };
        let u = User {
            id: 7,
            email: "ana@example.com".into(),
            display_name: "Ana".into(),
            role: tokengate_core::accounts::Role::User,
            status: tokengate_core::accounts::UserStatus::Active,
            balance_nano: 0,
            created_at: 0,
            auth_epoch: 0,
        };
        let pdf = receipt(&p, &u);
        assert!(pdf.starts_with(b"%PDF"));
        let text = text_of(&pdf);
        for needle in ["TG-00000042", "12.50 USD", "cs_test_abc", "ana@example.com"] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }
}

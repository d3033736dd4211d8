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
            self.pages.push(Vec::new());
            self.y = PAGE_H - MARGIN;
        }
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

    /// One row of cells at the given x positions (mm from the left edge).
    fn row(&mut self, cells: &[(f32, &str)], bold: bool) {
        for (x, s) in cells {
            self.text_at(*x, s, 9.5, bold);
        }
        self.advance(1.0);
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
            let what: String = what.chars().take(48).collect();
            let amount = format_exact(e.amount_nano);
            d.row(
                &[
                    (cols[0], &date[..10.min(date.len())]),
                    (cols[1], &e.kind),
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
            let model: String = u.model.chars().take(40).collect();
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

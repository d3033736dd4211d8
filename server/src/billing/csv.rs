//! RFC 4180 CSV: CRLF line ends, fields quoted when they contain a comma, quote, CR or LF,
//! quotes doubled. Text a person typed (key names, models, error messages) is neutralised
//! against spreadsheet formula injection: a leading `=`, `+`, `-`, `@`, tab or CR gets a
//! `'` prefix so a spreadsheet shows it as text instead of evaluating it.

/// Appends one record to `out`.
pub fn record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f.as_ref());
    }
    out.push_str("\r\n");
}

fn field(out: &mut String, f: &str) {
    if f.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

/// User-controlled text made safe to open in a spreadsheet.
pub fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_neutralises() {
        let mut out = String::new();
        record(&mut out, &["a", "b,c", "say \"hi\"", "line\nbreak", ""]);
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\",\"line\nbreak\",\r\n");
        assert_eq!(text("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(text("+1"), "'+1");
        assert_eq!(text("-1"), "'-1");
        assert_eq!(text("@SUM"), "'@SUM");
        assert_eq!(text("plain"), "plain");
    }
}

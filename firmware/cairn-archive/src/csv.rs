//! RFC 4180 text, as the bundles' `index.csv` and `holds.csv` hold it: a field with a comma, a
//! quote or a line break is quoted (quotes doubled); rows end with `\n`.

/// Append one field, quoted when it needs to be.
pub(crate) fn push_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Append one row: its fields separated by commas, then `\n`.
pub(crate) fn push_row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f);
    }
    out.push('\n');
}

/// Split RFC 4180 text into rows of fields (a `\r` outside quotes is dropped).
pub(crate) fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                '\r' => {}
                c => field.push(c),
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The position of each of `columns` in a header row, or the first one missing.
pub(crate) fn positions<'a>(header: &[String], columns: &[&'a str]) -> Result<Vec<usize>, &'a str> {
    columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).ok_or(*c))
        .collect()
}

//! CSV (RFC 4180): a header row, then one row per record.

use super::Rows;

/// Renders rows as CSV, quoting cells that hold commas, quotes or line breaks.
pub fn render(rows: &Rows) -> String {
    let mut out = String::new();
    for line in std::iter::once(&rows.header).chain(&rows.rows) {
        let cells: Vec<String> = line.iter().map(|c| quote(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_what_needs_it() {
        let rows = super::Rows {
            header: vec!["a".into(), "b".into()],
            rows: vec![
                vec!["x,y".into(), "say \"hi\"".into()],
                vec!["1".into(), "".into()],
            ],
        };
        assert_eq!(
            super::render(&rows),
            "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n1,\r\n"
        );
    }
}

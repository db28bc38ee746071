//! Markdown (GitHub-flavoured) tables.

use super::Rows;

/// Renders rows as a markdown table; `|` and line breaks in cells are escaped.
pub fn render(rows: &Rows) -> String {
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&rows.header);
    out.push_str(&format!(
        "|{}\n",
        rows.header.iter().map(|_| " --- |").collect::<String>()
    ));
    for row in &rows.rows {
        out.push_str(&line(row));
    }
    out
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_pipes() {
        let rows = super::Rows {
            header: vec!["a".into(), "b".into()],
            rows: vec![vec!["x|y".into(), "z".into()]],
        };
        assert_eq!(
            super::render(&rows),
            "| a | b |\n| --- | --- |\n| x\\|y | z |\n"
        );
    }
}

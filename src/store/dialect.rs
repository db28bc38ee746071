//! The two SQL dialects. Statements are written once, with `?` placeholders (or `?N` for one
//! used twice) and a few portable functions, and each backend gets its own text:
//!
//! | written | SQLite | PostgreSQL |
//! | --- | --- | --- |
//! | `?`, `?N` | `$N` | `$N` |
//! | `now_utc()` | `strftime(...)` ISO 8601 text | `to_char(...)`, the same text |
//! | `age_s(ts)` | seconds since the text timestamp `ts`, via `julianday` | via `EXTRACT(EPOCH ...)` |
//! | `epoch_s(ts)` | `ts` in seconds (from some origin: only differences mean anything) | |
//! | `json_num(doc, key)` | `json_extract(doc, '$.key')` | `CAST(CAST(doc AS jsonb) ->> 'key' AS DOUBLE PRECISION)` |
//! | `json_text(doc, key)`, `json_bool(doc, key)` | likewise | as text, as boolean |
//! | `nan_null(?)` | `?` (a bound NaN is stored as NULL) | `NULLIF(?, 'NaN')` |
//!
//! Missing measurements are bound as NaN and written `nan_null(?)`, never as a NULL parameter:
//! sqlx's `Any` driver sends a NULL `f64` to PostgreSQL as a `float4`, which a statement
//! prepared for `float8` refuses.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// This backend's text of a statement written in the portable form. Texts are translated
    /// once and kept for the life of the process (statements are a fixed set, plus filters).
    pub fn sql(self, portable: &str) -> &'static str {
        static TEXTS: OnceLock<Mutex<HashMap<(Backend, String), &'static str>>> = OnceLock::new();
        let mut texts = TEXTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(text) = texts.get(&(self, portable.to_string())) {
            return text;
        }
        let text: &'static str = Box::leak(self.translate(portable).into_boxed_str());
        texts.insert((self, portable.to_string()), text);
        text
    }

    /// This backend's text of a statement that is not kept: for statements that differ on
    /// every call (lists of ids written inline).
    pub fn sql_uncached(self, portable: &str) -> String {
        self.translate(portable)
    }

    /// Opens a transaction that will write: SQLite takes its write lock at once (a read
    /// followed by a write in a deferred transaction can fail to upgrade its lock).
    pub fn begin_write(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// What a `SELECT` of one row to be updated ends with: PostgreSQL locks the row, skipping
    /// it when another transaction holds it; SQLite's write lock already covers the database.
    pub fn lock_row_or_skip(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn translate(self, portable: &str) -> String {
        let mut placeholders = 0;
        self.translate_counting(portable, &mut placeholders)
    }

    /// Translates `portable`, numbering its bare `?` after the `placeholders` already seen.
    fn translate_counting(self, portable: &str, placeholders: &mut usize) -> String {
        let chars: Vec<char> = portable.chars().collect();
        let mut out = String::with_capacity(portable.len() + 32);
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // A string literal, copied as is ('' inside is an escaped quote).
                let end = (i + 1..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len() - 1);
                out.extend(&chars[i..=end]);
                i = end + 1;
            } else if c == '?' {
                let digits: String = chars[i + 1..]
                    .iter()
                    .take_while(|d| d.is_ascii_digit())
                    .collect();
                if digits.is_empty() {
                    *placeholders += 1;
                    out.push_str(&format!("${placeholders}"));
                } else {
                    out.push('$');
                    out.push_str(&digits);
                }
                i += 1 + digits.len();
            } else if c.is_ascii_alphabetic() || c == '_' {
                let word: String = chars[i..]
                    .iter()
                    .take_while(|w| w.is_ascii_alphanumeric() || **w == '_')
                    .collect();
                let after = i + word.chars().count();
                let call = (chars.get(after) == Some(&'('))
                    .then(|| arguments(&chars, after))
                    .flatten()
                    .filter(|_| FUNCTIONS.contains(&word.as_str()));
                match call {
                    Some((args, end)) => {
                        let args: Vec<String> = args
                            .iter()
                            .map(|a| self.translate_counting(a, placeholders))
                            .collect();
                        out.push_str(&self.function(&word, &args));
                        i = end;
                    }
                    None => {
                        out.push_str(&word);
                        i = after;
                    }
                }
            } else {
                out.push(c);
                i += 1;
            }
        }
        out
    }

    /// The expansion of one of the [`FUNCTIONS`].
    fn function(self, name: &str, args: &[String]) -> String {
        let arg = |n: usize| args.get(n).map(|a| a.trim()).unwrap_or_default();
        let sqlite = self == Backend::Sqlite;
        match name {
            // SQLite stores a bound NaN as NULL by itself.
            "nan_null" if sqlite => arg(0).to_string(),
            "nan_null" => format!("NULLIF({}, CAST('NaN' AS DOUBLE PRECISION))", arg(0)),
            "now_utc" if sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')".into(),
            "now_utc" => "to_char(clock_timestamp() AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
                .into(),
            "age_s" if sqlite => format!("((julianday('now') - julianday({})) * 86400.0)", arg(0)),
            "age_s" => format!(
                "CAST(EXTRACT(EPOCH FROM (clock_timestamp() - CAST({} AS timestamptz))) \
                 AS DOUBLE PRECISION)",
                arg(0)
            ),
            "epoch_s" if sqlite => format!("(julianday({}) * 86400.0)", arg(0)),
            "epoch_s" => format!(
                "CAST(EXTRACT(EPOCH FROM CAST({} AS timestamptz)) AS DOUBLE PRECISION)",
                arg(0)
            ),
            "json_num" | "json_text" | "json_bool" if sqlite => {
                format!("json_extract({}, '$.{}')", arg(0), arg(1))
            }
            "json_num" | "json_text" | "json_bool" => {
                let field = format!("(CAST({} AS jsonb) ->> '{}')", arg(0), arg(1));
                match name {
                    "json_num" => format!("CAST({field} AS DOUBLE PRECISION)"),
                    "json_bool" => format!("CAST({field} AS BOOLEAN)"),
                    _ => field,
                }
            }
            _ => unreachable!("{name} is not a portable function"),
        }
    }
}

/// The portable functions, expanded per dialect.
const FUNCTIONS: &[&str] = &[
    "now_utc",
    "age_s",
    "epoch_s",
    "json_num",
    "json_text",
    "json_bool",
    "nan_null",
];

/// The comma-separated arguments of the call whose `(` is at `open`, and the index after its
/// `)`; `None` when the parentheses do not close.
fn arguments(chars: &[char], open: usize) -> Option<(Vec<String>, usize)> {
    let mut depth = 0;
    let mut args = vec![String::new()];
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((args, j + 1));
                }
            }
            ',' if depth == 1 => {
                args.push(String::new());
                continue;
            }
            _ => {}
        }
        args.last_mut().expect("one argument at least").push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_both_dialects() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            assert_eq!(
                backend.translate("SELECT a FROM t WHERE b = ? AND c IN (?, ?) AND d = '?'"),
                "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) AND d = '?'"
            );
            assert_eq!(
                backend.translate("WHERE s = ?1 AND NOT EXISTS (SELECT 1 WHERE s = ?1)"),
                "WHERE s = $1 AND NOT EXISTS (SELECT 1 WHERE s = $1)"
            );
        }
    }

    #[test]
    fn portable_functions_expand_per_dialect() {
        let text = "UPDATE t SET at = now_utc(), age = age_s(heartbeat_at) WHERE \
                    COALESCE(json_num(t.params_json, momentum), 0) > ? AND lower(x) = ?";
        assert_eq!(
            Backend::Sqlite.translate(text),
            "UPDATE t SET at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), age = \
             ((julianday('now') - julianday(heartbeat_at)) * 86400.0) WHERE \
             COALESCE(json_extract(t.params_json, '$.momentum'), 0) > $1 AND lower(x) = $2"
        );
        let pg = Backend::Postgres.translate(text);
        assert!(pg.contains("clock_timestamp() AT TIME ZONE 'UTC'"), "{pg}");
        assert!(
            pg.contains(
                "COALESCE(CAST((CAST(t.params_json AS jsonb) ->> 'momentum') AS DOUBLE \
                 PRECISION), 0) > $1"
            ),
            "{pg}"
        );
        assert!(pg.contains("lower(x) = $2"), "{pg}");
        let text = "VALUES (?, nan_null(?), ?)";
        assert_eq!(Backend::Sqlite.translate(text), "VALUES ($1, $2, $3)");
        assert_eq!(
            Backend::Postgres.translate(text),
            "VALUES ($1, NULLIF($2, CAST('NaN' AS DOUBLE PRECISION)), $3)"
        );
        assert_eq!(
            Backend::Sqlite.sql("SELECT ?"),
            Backend::Sqlite.sql("SELECT ?")
        );
    }
}

//! The `--where` filter language and `--sort` keys, turned into parameterised SQL.
//!
//! ```text
//! expr  := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | FIELD OP VALUE | FIELD ["not"] "in" "(" VALUE, ... ")"
//!        | FIELD "is" ["not"] "null"
//! OP    := = | != | <> | < | <= | > | >=
//! VALUE := number | 'text' | "text" | bare-word
//! ```
//! Field names map to fixed SQL expressions and every value is a bound parameter: nothing the
//! user types is pasted into SQL.

use crate::error::{Error, Result};

/// Whether a field holds numbers or text (which decides the comparisons it allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
}

/// Every field a filter or sort key may name: user name, SQL expression, kind.
const FIELDS: &[(&str, &str, Kind)] = &[
    ("id", "t.id", Kind::Number),
    ("sweep", "s.name", Kind::Text),
    ("status", "t.status", Kind::Text),
    ("arch", "t.arch", Kind::Text),
    ("optimizer", "t.optimizer", Kind::Text),
    ("lr", "t.lr", Kind::Number),
    ("batch_size", "t.batch_size", Kind::Number),
    ("epochs", "t.epochs", Kind::Number),
    ("dropout", "t.dropout", Kind::Number),
    ("weight_decay", "t.weight_decay", Kind::Number),
    ("split", "t.split", Kind::Number),
    ("seed", "t.seed", Kind::Number),
    ("repeat", "t.repeat", Kind::Number),
    (
        "momentum",
        "json_num(t.params_json, momentum)",
        Kind::Number,
    ),
    ("limit", "json_num(t.params_json, limit)", Kind::Number),
    // Left out of params_json at their defaults (see experiment::omitted_defaults).
    (
        "augment",
        "COALESCE(json_text(t.params_json, augment), 'none')",
        Kind::Text,
    ),
    (
        "schedule",
        "COALESCE(json_text(t.params_json, schedule), 'constant')",
        Kind::Text,
    ),
    (
        "warmup_epochs",
        "COALESCE(json_num(t.params_json, warmup_epochs), 0)",
        Kind::Number,
    ),
    (
        "label_smoothing",
        "COALESCE(json_num(t.params_json, label_smoothing), 0)",
        Kind::Number,
    ),
    (
        "batch_norm",
        "CASE WHEN json_bool(t.params_json, batch_norm) THEN 'true' ELSE 'false' END",
        Kind::Text,
    ),
    (
        "eval_flip",
        "CASE WHEN json_bool(t.params_json, eval_flip) THEN 'true' ELSE 'false' END",
        Kind::Text,
    ),
    ("device", "t.device", Kind::Text),
    ("threads", "t.threads", Kind::Number),
    ("epochs_done", "t.epochs_done", Kind::Number),
    ("duration_s", "t.duration_s", Kind::Number),
    ("train_loss", "t.train_loss", Kind::Number),
    ("train_acc", "t.train_acc", Kind::Number),
    ("val_loss", "t.val_loss", Kind::Number),
    ("val_acc", "t.val_acc", Kind::Number),
    ("best_epoch", "t.best_epoch", Kind::Number),
    ("best_val_acc", "t.best_val_acc", Kind::Number),
    ("best_val_loss", "t.best_val_loss", Kind::Number),
    ("test_loss", "t.test_loss", Kind::Number),
    ("test_acc", "t.test_acc", Kind::Number),
    ("params", "t.params", Kind::Number),
    ("epoch_seconds", "t.epoch_seconds", Kind::Number),
    ("latency_ms", "t.latency_ms", Kind::Number),
    ("error", "t.error", Kind::Text),
];

/// Short names people type for some fields.
const ALIASES: &[(&str, &str)] = &[
    ("batch", "batch_size"),
    ("wd", "weight_decay"),
    ("warmup", "warmup_epochs"),
    ("smoothing", "label_smoothing"),
    ("bn", "batch_norm"),
];

/// A value bound into a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

/// A parsed filter: a SQL condition over `trials t JOIN sweeps s` with `?` placeholders, and
/// the values for them in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The condition.
    pub sql: String,
    /// Its parameters.
    pub binds: Vec<Bind>,
}

/// One `--sort` key: a SQL expression and its direction.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// The field's SQL expression (from the fixed field table).
    pub sql: &'static str,
    /// Largest first.
    pub descending: bool,
}

/// The names a filter or sort key may use.
pub fn field_names() -> Vec<&'static str> {
    FIELDS.iter().map(|f| f.0).collect()
}

fn lookup(name: &str) -> Option<(&'static str, Kind)> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, target)| target);
    FIELDS
        .iter()
        .find(|f| f.0.eq_ignore_ascii_case(name))
        .map(|f| (f.1, f.2))
}

/// Parses `--sort KEY`: a field name, optionally prefixed by `-` or suffixed by `:desc` for
/// largest first (`:asc` for smallest first, the default).
pub fn parse_sort(text: &str) -> Result<SortKey> {
    let (name, descending) = if let Some(rest) = text.strip_prefix('-') {
        (rest, true)
    } else if let Some((name, direction)) = text.split_once(':') {
        match direction.to_ascii_lowercase().as_str() {
            "desc" => (name, true),
            "asc" => (name, false),
            _ => {
                return Err(Error::Usage(format!(
                    "--sort {text}: the direction after ':' is asc or desc"
                )));
            }
        }
    } else {
        (text, false)
    };
    let (sql, _) = lookup(name.trim()).ok_or_else(|| {
        Error::Usage(format!(
            "--sort {text}: unknown field {name:?}; fields: {}",
            field_names().join(", ")
        ))
    })?;
    Ok(SortKey { sql, descending })
}

/// Parses a `--where` expression.
pub fn parse(text: &str) -> Result<Filter> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        at: 0,
        binds: Vec::new(),
    };
    let sql = parser.or()?;
    if let Some(token) = parser.tokens.get(parser.at) {
        return Err(parser.error(token, "expected `and`, `or` or the end here"));
    }
    Ok(Filter {
        sql,
        binds: parser.binds,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Number(f64),
    Text(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn caret_error(text: &str, start: usize, end: usize, message: &str) -> Error {
    let column = text[..start].chars().count();
    let width = text[start..end].chars().count().max(1);
    Error::Usage(format!(
        "invalid --where expression: {message}\n  {text}\n  {}{}\nfields: {}",
        " ".repeat(column),
        "^".repeat(width),
        field_names().join(", ")
    ))
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |c| c.0);
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let token = |tok, next: usize| Token {
            tok,
            start,
            end: end_of(next),
        };
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' | ')' | ',' => {
                let tok = match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Comma,
                };
                tokens.push(token(tok, i + 1));
                i += 1;
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|c| c.1);
                let (op, len) = match (c, next) {
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('!', Some('=')) | ('<', Some('>')) => ("!=", 2),
                    ('=', Some('=')) => ("=", 2),
                    ('=', _) => ("=", 1),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => {
                        return Err(caret_error(
                            text,
                            start,
                            end_of(i + 1),
                            "`!` must be followed by `=`",
                        ));
                    }
                };
                tokens.push(token(Tok::Op(op), i + len));
                i += len;
            }
            '\'' | '"' => {
                let close = (i + 1..chars.len()).find(|&j| chars[j].1 == c);
                let Some(close) = close else {
                    return Err(caret_error(
                        text,
                        start,
                        text.len(),
                        "this quoted value is never closed",
                    ));
                };
                let value = text[end_of(i + 1)..chars[close].0].to_string();
                tokens.push(token(Tok::Text(value), close + 1));
                i = close + 1;
            }
            _ if is_word_char(c) => {
                let mut j = i;
                while j < chars.len() && is_word_char(chars[j].1) {
                    j += 1;
                }
                let word = &text[start..end_of(j)];
                let tok = match word.parse::<f64>() {
                    Ok(n) if n.is_finite() => Tok::Number(n),
                    _ => Tok::Word(word.to_string()),
                };
                tokens.push(token(tok, j));
                i = j;
            }
            _ => {
                return Err(caret_error(
                    text,
                    start,
                    end_of(i + 1),
                    &format!("unexpected character {c:?} (quote values that contain it)"),
                ));
            }
        }
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '+')
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
    binds: Vec<Bind>,
}

impl Parser<'_> {
    fn error(&self, token: &Token, message: &str) -> Error {
        caret_error(self.text, token.start, token.end, message)
    }

    fn error_at_end(&self, message: &str) -> Error {
        let end = self.text.trim_end().len();
        caret_error(self.text, end, end, message)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token { tok: Tok::Word(w), .. })
            if w.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self, expected: &str) -> Result<Token> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| self.error_at_end(&format!("expected {expected} after this")))?;
        self.at += 1;
        Ok(token)
    }

    fn or(&mut self) -> Result<String> {
        let mut parts = vec![self.and()?];
        while self.peek_keyword("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(join(parts, " OR "))
    }

    fn and(&mut self) -> Result<String> {
        let mut parts = vec![self.unary()?];
        while self.peek_keyword("and") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(join(parts, " AND "))
    }

    fn unary(&mut self) -> Result<String> {
        if self.peek_keyword("not") {
            self.at += 1;
            return Ok(format!("NOT ({})", self.unary()?));
        }
        let token = self.next("a field name or `(`")?;
        match &token.tok {
            Tok::Open => {
                let inner = self.or()?;
                let close = self.next("`)`")?;
                if close.tok != Tok::Close {
                    return Err(self.error(&close, "expected `)` here"));
                }
                Ok(format!("({inner})"))
            }
            Tok::Word(name) => {
                let (sql, kind) = lookup(name)
                    .ok_or_else(|| self.error(&token, &format!("unknown field {name:?}")))?;
                self.condition(name, sql, kind)
            }
            _ => Err(self.error(&token, "expected a field name or `(` here")),
        }
    }

    fn condition(&mut self, name: &str, sql: &str, kind: Kind) -> Result<String> {
        let token = self.next("`=`, `<`, `in` or another comparison")?;
        match &token.tok {
            Tok::Op(op) => {
                if kind == Kind::Text && !matches!(*op, "=" | "!=") {
                    return Err(self.error(
                        &token,
                        &format!("{name} is text: compare it with =, != or in"),
                    ));
                }
                self.value(name, kind)?;
                let op = if *op == "!=" { "IS NOT" } else { op };
                Ok(format!("{sql} {op} ?"))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("is") => {
                let negated = self.peek_keyword("not");
                if negated {
                    self.at += 1;
                }
                let null = self.next("`null`")?;
                if !matches!(&null.tok, Tok::Word(w) if w.eq_ignore_ascii_case("null")) {
                    return Err(self.error(&null, "expected `null` here"));
                }
                Ok(format!(
                    "{sql} IS {}NULL",
                    if negated { "NOT " } else { "" }
                ))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("in") || w.eq_ignore_ascii_case("not") => {
                let negated = w.eq_ignore_ascii_case("not");
                if negated {
                    let in_ = self.next("`in`")?;
                    if !matches!(&in_.tok, Tok::Word(w) if w.eq_ignore_ascii_case("in")) {
                        return Err(self.error(&in_, "expected `in` here"));
                    }
                }
                let open = self.next("`(`")?;
                if open.tok != Tok::Open {
                    return Err(self.error(&open, "expected `(` and a list of values here"));
                }
                let mut count = 0;
                loop {
                    self.value(name, kind)?;
                    count += 1;
                    let separator = self.next("`,` or `)`")?;
                    match separator.tok {
                        Tok::Comma => continue,
                        Tok::Close => break,
                        _ => return Err(self.error(&separator, "expected `,` or `)` here")),
                    }
                }
                let placeholders = vec!["?"; count].join(", ");
                let not = if negated { "NOT " } else { "" };
                Ok(format!("{sql} {not}IN ({placeholders})"))
            }
            _ => Err(self.error(
                &token,
                "expected a comparison here: =, !=, <, <=, >, >=, in, not in, is null",
            )),
        }
    }

    fn value(&mut self, name: &str, kind: Kind) -> Result<()> {
        let token = self.next("a value")?;
        let bind = match (&token.tok, kind) {
            (Tok::Number(n), Kind::Number) => Bind::Number(*n),
            (Tok::Text(s), Kind::Number) => match s.trim().parse::<f64>() {
                Ok(n) => Bind::Number(n),
                Err(_) => {
                    return Err(self.error(&token, &format!("{name} is a number: {s:?} is not")));
                }
            },
            (Tok::Word(w), Kind::Number) => {
                return Err(self.error(&token, &format!("{name} is a number: {w:?} is not")));
            }
            (Tok::Number(_) | Tok::Word(_), Kind::Text) => {
                Bind::Text(self.text[token.start..token.end].to_string())
            }
            (Tok::Text(s), Kind::Text) => Bind::Text(s.clone()),
            _ => return Err(self.error(&token, "expected a value here")),
        };
        self.binds.push(bind);
        Ok(())
    }
}

fn join(parts: Vec<String>, separator: &str) -> String {
    if parts.len() == 1 {
        parts.into_iter().next().expect("one part")
    } else {
        parts
            .into_iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_becomes_parameterised_sql() {
        let filter = parse("arch = cnn and val_acc > 0.9 and lr in (0.001, 0.003)").unwrap();
        assert_eq!(
            filter.sql,
            "(t.arch = ?) AND (t.val_acc > ?) AND (t.lr IN (?, ?))"
        );
        assert_eq!(
            filter.binds,
            vec![
                Bind::Text("cnn".into()),
                Bind::Number(0.9),
                Bind::Number(0.001),
                Bind::Number(0.003)
            ]
        );
    }

    #[test]
    fn precedence_negation_and_null_tests() {
        let filter =
            parse("not (status = done or device is null) and best_epoch is not null").unwrap();
        assert_eq!(
            filter.sql,
            "(NOT (((t.status = ?) OR (t.device IS NULL)))) AND (t.best_epoch IS NOT NULL)"
        );
        let filter = parse("device != 'cuda:0' and optimizer not in (sgd)").unwrap();
        assert_eq!(
            filter.sql,
            "(t.device IS NOT ?) AND (t.optimizer NOT IN (?))"
        );
    }

    #[test]
    fn hostile_text_stays_a_bound_value() {
        let filter = parse(r#"arch = "cnn'; DROP TABLE trials; --""#).unwrap();
        assert_eq!(filter.sql, "t.arch = ?");
        assert_eq!(
            filter.binds,
            vec![Bind::Text("cnn'; DROP TABLE trials; --".into())]
        );
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_point_at_the_bad_token() {
        let m = message("arch = cnn; DROP TABLE trials");
        assert!(m.contains("unexpected character ';'"), "{m}");
        assert!(
            m.contains("\n  arch = cnn; DROP TABLE trials\n            ^\n"),
            "{m}"
        );

        let m = message("acc > 0.9");
        assert!(m.contains("unknown field \"acc\""), "{m}");
        assert!(m.contains("\n  ^^^\n"), "{m}");

        let m = message("lr > fast");
        assert!(m.contains("lr is a number"), "{m}");
        assert!(m.contains("\n       ^^^^\n"), "{m}");

        let m = message("arch > cnn");
        assert!(m.contains("arch is text"), "{m}");

        let m = message("val_acc >");
        assert!(m.contains("expected a value"), "{m}");

        let m = message("arch = 'cnn");
        assert!(m.contains("never closed"), "{m}");

        let m = message("arch = cnn val_acc > 0.5");
        assert!(m.contains("expected `and`, `or`"), "{m}");

        let m = message("lr in (0.1, 0.2");
        assert!(m.contains("expected `,` or `)`"), "{m}");
    }

    #[test]
    fn sort_keys_take_a_direction() {
        assert_eq!(
            parse_sort("-val_acc").unwrap(),
            SortKey {
                sql: "t.val_acc",
                descending: true
            }
        );
        assert!(!parse_sort("lr:asc").unwrap().descending);
        assert!(parse_sort("batch:desc").unwrap().descending);
        assert!(parse_sort("speed").is_err());
        assert!(parse_sort("lr:up").is_err());
    }
}

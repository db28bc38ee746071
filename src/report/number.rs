//! Numbers as people read them: the one formatter behind the report's tables, headings and
//! axis ticks and the web view's labels. JSON and CSV keep full precision and never use it.

/// `x` with 4 significant digits and no float noise: `0.07674283509780726` reads `0.07674`,
/// `0.35999999999999997` reads `0.36`, whole numbers read without decimals (`2`, `100`), and
/// very small or large magnitudes in exponent form (`1e-5`, `2.5e7`).
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    if x.fract() == 0.0 && magnitude < 7 {
        return format!("{x:.0}");
    }
    if !(-3..6).contains(&magnitude) {
        let text = format!("{x:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (3 - magnitude).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

/// A parameter's stored value as people read it: numbers through [`human`], text as it is.
pub fn human_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), human),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits_without_noise() {
        let cases = [
            (0.07674283509780726, "0.07674"),
            (0.15f64.next_up(), "0.15"),
            (0.36f64.next_down(), "0.36"),
            (0.00604810198903215, "0.006048"),
            (2.0, "2"),
            (100.0, "100"),
            (-3.0, "-3"),
            (123.456, "123.5"),
            (0.9, "0.9"),
            (1e-5, "1e-5"),
            (2.5e-4, "2.5e-4"),
            (0.001, "0.001"),
            (12345.678, "12346"),
            (2.5e6, "2500000"),
            (2.5e7, "2.5e7"),
            (2.53e9, "2.53e9"),
            (0.0, "0"),
        ];
        for (x, want) in cases {
            assert_eq!(human(x), want, "{x}");
        }
    }

    #[test]
    fn values_keep_text_and_round_numbers() {
        assert_eq!(human_value(&serde_json::json!("adam")), "adam");
        assert_eq!(human_value(&serde_json::json!(0.1 + 0.2)), "0.3");
        assert_eq!(human_value(&serde_json::json!(64)), "64");
        assert_eq!(human_value(&serde_json::json!(true)), "true");
    }
}

//! Turns an error and its causes into one line, for logs, the state row and the command line.

/// `error: cause: cause`, skipping causes whose text the line already contains (many errors
/// repeat their source's message) and the bare "db error" of the PostgreSQL driver.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string().replace('\n', " ");
        let text = text.trim_end_matches(": db error").to_string();
        if text != "db error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failed: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[test]
    fn joins_causes_without_repeating_them() {
        let e = Outer {
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(one_line(&e), "outer failed: disk full");
    }
}

//! The checks of `pgmorph validate` and how they are printed: one line each, or JSON.

use serde::Serialize;

/// How bad a check's finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// A run works, but something deserves a look.
    Warning,
    /// A run would fail (or misbehave) until this is fixed.
    Error,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// One check: what was looked at, what was found and, unless it is fine, what to do.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable name, `side.what[:object]` (e.g. `source.wal_level`, `source.identity:public.t`).
    pub name: String,
    /// The finding's level.
    pub level: Level,
    /// What was found.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(name, Level::Ok, message, None::<String>)
    }

    /// A check that did not pass, with what to do.
    pub fn bad(
        name: impl Into<String>,
        level: Level,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(name, level, message, Some(fix))
    }

    fn new(
        name: impl Into<String>,
        level: Level,
        message: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            level,
            message: message.into(),
            fix: fix.map(Into::into),
        }
    }
}

/// Every check of one run, in the order they ran.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Adds a check.
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// How many checks found an error.
    pub fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.level == level).count()
    }

    /// The report as JSON: `{"ok": bool, "errors": n, "warnings": n, "checks": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.errors() == 0,
            "errors": self.errors(),
            "warnings": self.count(Level::Warning),
            "checks": self.checks,
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            write!(f, "{:<8} {:<36} {}", c.level.word(), c.name, c.message)?;
            match &c.fix {
                Some(fix) => writeln!(f, "; fix: {fix}")?,
                None => writeln!(f)?,
            }
        }
        writeln!(
            f,
            "{} checks: {} ok, {} warnings, {} errors",
            self.checks.len(),
            self.count(Level::Ok),
            self.count(Level::Warning),
            self.errors()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_check_with_the_fix_and_a_summary() {
        let mut r = Report::default();
        r.push(Check::ok("source.wal_level", "wal_level is logical"));
        r.push(Check::bad(
            "source.role",
            Level::Error,
            "role bob may not replicate",
            "ALTER ROLE bob REPLICATION",
        ));
        let text = r.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ok ") && lines[0].contains("wal_level is logical"));
        assert!(
            lines[1].starts_with("error ") && lines[1].ends_with("fix: ALTER ROLE bob REPLICATION")
        );
        assert_eq!(lines[2], "2 checks: 1 ok, 0 warnings, 1 errors");
        assert_eq!(r.errors(), 1);
        assert_eq!(r.to_json()["ok"], false);
        assert_eq!(r.to_json()["checks"][1]["level"], "error");
    }
}

//! Page ranges: spans of a table's heap pages that snapshot readers copy at once, and the
//! policy that splits tables into them.

/// How tables are split into ranges (from `[snapshot]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePolicy {
    /// Workers copying at once; a split table gets at least this many ranges.
    pub parallel: usize,
    /// Tables of at most this many bytes are copied whole.
    pub min_table_bytes: u64,
    /// The largest range in bytes; bigger tables get more ranges than workers.
    pub max_range_bytes: u64,
}

/// A span of heap pages `[start, end)`; `None` bounds are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    /// First page, `None` from the table's start.
    pub start: Option<u64>,
    /// Page after the last one, `None` to the table's end.
    pub end: Option<u64>,
}

impl PageRange {
    /// The whole table.
    pub const WHOLE: PageRange = PageRange {
        start: None,
        end: None,
    };

    /// Whether the range covers the whole table.
    pub fn is_whole(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }

    /// The `WHERE` condition selecting the range's rows (empty for the whole table).
    pub fn predicate(&self) -> String {
        let mut parts = Vec::new();
        if let Some(start) = self.start {
            parts.push(format!("ctid >= '({start},0)'::tid"));
        }
        if let Some(end) = self.end {
            parts.push(format!("ctid < '({end},0)'::tid"));
        }
        parts.join(" AND ")
    }
}

impl std::fmt::Display for PageRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.start, self.end) {
            (None, None) => f.write_str("whole table"),
            (s, None) => write!(f, "pages {}..", s.unwrap_or(0)),
            (s, Some(e)) => write!(f, "pages {}..{e}", s.unwrap_or(0)),
        }
    }
}

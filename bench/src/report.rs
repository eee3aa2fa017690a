//! Measurements and the summary table (medians over runs).

use std::collections::BTreeMap;

use crate::cli::{VariantKind, Workload};

/// What a pgmorph process used, read from `/proc` just before it was stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage {
    /// Peak resident set size (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// User + system CPU seconds.
    pub cpu_secs: f64,
}

/// One timed phase of one run.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// 1-based repetition.
    pub run: usize,
    /// How the data moved.
    pub variant: VariantKind,
    /// What moved.
    pub workload: Workload,
    /// Wall-clock seconds from start/enable to done/caught up.
    pub secs: f64,
    /// Rows (snapshot) or row changes (CDC) moved.
    pub units: u64,
    /// Source bytes moved (snapshot only).
    pub bytes: Option<u64>,
    /// pgmorph resource use during the phase (pgmorph variants only).
    pub usage: Option<ProcUsage>,
}

impl Measurement {
    /// One progress line.
    pub fn line(&self) -> String {
        let mut line = format!(
            "run {} {:<20} {:<12} {:>8.2} s {:>12.0} {}/s",
            self.run,
            self.variant.label(),
            self.workload.label(),
            self.secs,
            self.units as f64 / self.secs,
            unit(self.workload)
        );
        if let Some(u) = self.usage {
            line.push_str(&format!(
                "  rss {:.0} MiB cpu {:.2} s",
                u.peak_rss_kib as f64 / 1024.0,
                u.cpu_secs
            ));
        }
        line
    }
}

fn unit(workload: Workload) -> &'static str {
    match workload {
        Workload::Snapshot => "rows",
        _ => "changes",
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians of one (variant, workload) group.
struct Summary {
    runs: Vec<f64>,
    secs: f64,
    units: u64,
    bytes: Option<u64>,
    rss_mib: Option<f64>,
    cpu_secs: Option<f64>,
}

fn summarize(measurements: &[&Measurement]) -> Summary {
    let runs: Vec<f64> = measurements.iter().map(|m| m.secs).collect();
    let secs = median(&mut runs.clone());
    let usages: Vec<ProcUsage> = measurements.iter().filter_map(|m| m.usage).collect();
    let (rss_mib, cpu_secs) = if usages.is_empty() {
        (None, None)
    } else {
        let mut rss: Vec<f64> = usages
            .iter()
            .map(|u| u.peak_rss_kib as f64 / 1024.0)
            .collect();
        let mut cpu: Vec<f64> = usages.iter().map(|u| u.cpu_secs).collect();
        (Some(median(&mut rss)), Some(median(&mut cpu)))
    };
    Summary {
        runs,
        secs,
        units: measurements[0].units,
        bytes: measurements[0].bytes,
        rss_mib,
        cpu_secs,
    }
}

/// The summary table: one line per (workload, variant) with medians over runs.
pub fn table(measurements: &[Measurement]) -> String {
    let mut groups: BTreeMap<(Workload, VariantKind), Vec<&Measurement>> = BTreeMap::new();
    for m in measurements {
        groups.entry((m.workload, m.variant)).or_default().push(m);
    }
    let summaries: BTreeMap<(Workload, VariantKind), Summary> = groups
        .iter()
        .map(|(key, ms)| (*key, summarize(ms)))
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "| {:<19} | {:<11} | {:>9} | {:>8} | {:>14} | {:>6} | {:>9} | {:>12} | {:>13} | {:<22} |\n",
        "variant",
        "workload",
        "rows/chg",
        "median s",
        "rows|chg /s",
        "MB/s",
        "vs native",
        "pgmorph RSS",
        "pgmorph CPU s",
        "all runs (s)"
    ));
    out.push_str(&format!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|\n",
        "-".repeat(21),
        "-".repeat(13),
        "-".repeat(11),
        "-".repeat(10),
        "-".repeat(16),
        "-".repeat(8),
        "-".repeat(11),
        "-".repeat(14),
        "-".repeat(15),
        "-".repeat(24)
    ));
    for ((workload, variant), s) in &summaries {
        let rate = match s.units {
            0 => "-".to_owned(),
            units => format!("{:.0}", units as f64 / s.secs),
        };
        let mb = s.bytes.map_or("-".to_owned(), |b| {
            format!("{:.1}", b as f64 / 1e6 / s.secs)
        });
        let ratio = summaries
            .get(&(*workload, VariantKind::Native))
            .map_or("-".to_owned(), |native| {
                format!("{:.2}x", native.secs / s.secs)
            });
        let rss = s.rss_mib.map_or("-".to_owned(), |r| format!("{r:.0} MiB"));
        let cpu = s.cpu_secs.map_or("-".to_owned(), |c| format!("{c:.2}"));
        let runs: Vec<String> = s.runs.iter().map(|r| format!("{r:.2}")).collect();
        out.push_str(&format!(
            "| {:<19} | {:<11} | {:>9} | {:>8.2} | {:>14} | {:>6} | {:>9} | {:>12} | {:>13} | {:<22} |\n",
            variant.label(),
            workload.label(),
            s.units,
            s.secs,
            rate,
            mb,
            ratio,
            rss,
            cpu,
            runs.join(" ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratio_is_relative_to_native_throughput() {
        let m = |variant, secs| Measurement {
            run: 1,
            variant,
            workload: Workload::Inserts,
            secs,
            units: 100,
            bytes: None,
            usage: None,
        };
        let text = table(&[m(VariantKind::Native, 2.0), m(VariantKind::Pgmorph, 4.0)]);
        assert!(text.contains("0.50x"), "{text}");
        assert!(text.contains("1.00x"), "{text}");
    }
}

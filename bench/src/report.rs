//! Measurements and the summary tables (medians over runs): one for throughput (snapshot and
//! backlog drains), one for lag under live load.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::{VariantKind, Workload};
use crate::live::lag::Lag;

/// What a pgmorph process used, read from `/proc`.
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
    /// Wall-clock seconds from start/enable to done/caught up; for a live phase, how long
    /// the load ran.
    pub secs: f64,
    /// Rows (snapshot) or row changes (CDC) moved.
    pub units: u64,
    /// Source bytes moved (snapshot only).
    pub bytes: Option<u64>,
    /// pgmorph resource use during the phase (pgmorph variants only).
    pub usage: Option<ProcUsage>,
    /// Heartbeat lag: set for a live phase only.
    pub lag: Option<Lag>,
    /// CPU seconds of the source's walsender(s) serving the replicator, from their start
    /// (the resume) to caught up: set for a backlog drain of a replicating variant only.
    pub walsender_cpu: Option<f64>,
    /// CPU seconds of the destination backend(s) applying the changes (native's apply
    /// worker, pgmorph's connections), from their start to caught up: set for a backlog drain
    /// of a replicating variant only.
    pub apply_cpu: Option<f64>,
}

impl Measurement {
    /// One progress line.
    pub fn line(&self) -> String {
        let label = match self.lag {
            Some(_) => self.workload.live_label(),
            None => self.workload.label(),
        };
        let mut line = format!(
            "run {} {:<20} {:<12} {:>8.2} s {:>12.0} {}/s",
            self.run,
            self.variant.label(),
            label,
            self.secs,
            self.units as f64 / self.secs,
            unit(self.workload)
        );
        if let Some(lag) = self.lag {
            line.push_str(&format!(
                "  lag p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} heartbeats)",
                millis(lag.p50),
                millis(lag.p99),
                millis(lag.max),
                lag.beats
            ));
        }
        if let Some(u) = self.usage {
            line.push_str(&format!(
                "  rss {:.0} MiB cpu {:.2} s",
                u.peak_rss_kib as f64 / 1024.0,
                u.cpu_secs
            ));
        }
        if let Some(cpu) = self.walsender_cpu {
            line.push_str(&format!("  walsender cpu {cpu:.2} s"));
        }
        if let Some(cpu) = self.apply_cpu {
            line.push_str(&format!("  destination cpu {cpu:.2} s"));
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

/// A duration in milliseconds.
fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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

/// The median of `f` over `ms`.
fn median_of(ms: &[&Measurement], f: impl Fn(&Measurement) -> f64) -> f64 {
    median(&mut ms.iter().map(|m| f(m)).collect::<Vec<_>>())
}

/// The median of the values that were measured, `None` if none was.
fn median_measured(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values.flatten().collect();
    (!values.is_empty()).then(|| median(&mut values))
}

/// Median peak RSS (MiB) and CPU seconds of the pgmorph runs, if any were measured.
fn usage(ms: &[&Measurement]) -> (Option<f64>, Option<f64>) {
    let rss = ms
        .iter()
        .map(|m| m.usage.map(|u| u.peak_rss_kib as f64 / 1024.0));
    let cpu = ms.iter().map(|m| m.usage.map(|u| u.cpu_secs));
    (median_measured(rss), median_measured(cpu))
}

/// Measurements grouped by (workload, variant), in table order.
fn groups(
    measurements: &[Measurement],
    live: bool,
) -> BTreeMap<(Workload, VariantKind), Vec<&Measurement>> {
    let mut groups: BTreeMap<(Workload, VariantKind), Vec<&Measurement>> = BTreeMap::new();
    for m in measurements.iter().filter(|m| m.lag.is_some() == live) {
        groups.entry((m.workload, m.variant)).or_default().push(m);
    }
    groups
}

/// The throughput table: one line per (workload, variant) of the snapshot and backlog
/// phases, with medians over runs. Empty when there is nothing to show.
pub fn table(measurements: &[Measurement]) -> String {
    let groups = groups(measurements, false);
    let secs: BTreeMap<(Workload, VariantKind), f64> = groups
        .iter()
        .map(|(key, ms)| (*key, median_of(ms, |m| m.secs)))
        .collect();
    let mut rows = Vec::new();
    for ((workload, variant), ms) in &groups {
        let s = secs[&(*workload, *variant)];
        let units = ms[0].units;
        let rate = match units {
            0 => "-".to_owned(),
            units => format!("{:.0}", units as f64 / s),
        };
        let mb = ms[0]
            .bytes
            .map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1e6 / s));
        let ratio = secs
            .get(&(*workload, VariantKind::Native))
            .map_or("-".to_owned(), |native| format!("{:.2}x", native / s));
        let (rss, cpu) = usage(ms);
        let walsender = median_measured(ms.iter().map(|m| m.walsender_cpu));
        let apply = median_measured(ms.iter().map(|m| m.apply_cpu));
        let runs: Vec<String> = ms.iter().map(|m| format!("{:.2}", m.secs)).collect();
        rows.push(vec![
            variant.label().to_owned(),
            workload.label().to_owned(),
            units.to_string(),
            format!("{s:.2}"),
            rate,
            mb,
            ratio,
            rss.map_or("-".to_owned(), |r| format!("{r:.0} MiB")),
            cpu.map_or("-".to_owned(), |c| format!("{c:.2}")),
            walsender.map_or("-".to_owned(), |c| format!("{c:.2}")),
            apply.map_or("-".to_owned(), |c| format!("{c:.2}")),
            runs.join(" "),
        ]);
    }
    render(
        &[
            ("variant", Align::Left),
            ("workload", Align::Left),
            ("rows/chg", Align::Right),
            ("median s", Align::Right),
            ("rows|chg /s", Align::Right),
            ("MB/s", Align::Right),
            ("vs native", Align::Right),
            ("pgmorph RSS", Align::Right),
            ("pgmorph CPU s", Align::Right),
            ("walsender CPU s", Align::Right),
            ("dest apply CPU s", Align::Right),
            ("all runs (s)", Align::Left),
        ],
        &rows,
    )
}

/// The live table: one line per (live load, variant) with medians over runs of the achieved
/// rate and the lag percentiles. Empty when no live phase ran.
pub fn live_table(measurements: &[Measurement], target_rate: u64) -> String {
    let mut rows = Vec::new();
    for ((workload, variant), ms) in &groups(measurements, true) {
        let lag = |f: fn(&Lag) -> Duration| {
            median_of(ms, |m| m.lag.as_ref().map_or(f64::NAN, |l| millis(f(l))))
        };
        let (rss, _) = usage(ms);
        let cpu_pct = median_measured(
            ms.iter()
                .map(|m| m.usage.map(|u| 100.0 * u.cpu_secs / m.secs)),
        );
        let runs: Vec<String> = ms
            .iter()
            .filter_map(|m| m.lag.map(|l| format!("{:.1}", millis(l.p99))))
            .collect();
        rows.push(vec![
            variant.label().to_owned(),
            workload.live_label().to_owned(),
            target_rate.to_string(),
            format!("{:.0}", median_of(ms, |m| m.units as f64 / m.secs)),
            format!(
                "{:.0}",
                median_of(ms, |m| m.lag.map_or(0.0, |l| l.beats as f64))
            ),
            format!("{:.1}", lag(|l| l.p50)),
            format!("{:.1}", lag(|l| l.p99)),
            format!("{:.1}", lag(|l| l.max)),
            rss.map_or("-".to_owned(), |r| format!("{r:.0} MiB")),
            cpu_pct.map_or("-".to_owned(), |c| format!("{c:.0}")),
            runs.join(" "),
        ]);
    }
    render(
        &[
            ("variant", Align::Left),
            ("live load", Align::Left),
            ("target chg/s", Align::Right),
            ("achieved chg/s", Align::Right),
            ("heartbeats", Align::Right),
            ("lag p50 ms", Align::Right),
            ("lag p99 ms", Align::Right),
            ("lag max ms", Align::Right),
            ("pgmorph RSS", Align::Right),
            ("pgmorph CPU %", Align::Right),
            ("p99 all runs (ms)", Align::Left),
        ],
        &rows,
    )
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A Markdown table with columns as wide as their widest cell; empty without rows.
fn render(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::from("|");
        for ((cell, (_, align)), width) in cells.iter().zip(headers).zip(&widths) {
            match align {
                Align::Left => out.push_str(&format!(" {cell:<width$} |")),
                Align::Right => out.push_str(&format!(" {cell:>width$} |")),
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.iter().map(|(h, _)| *h).collect());
    out.push('|');
    for width in &widths {
        out.push_str(&"-".repeat(width + 2));
        out.push('|');
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(variant: VariantKind, secs: f64, lag: Option<Lag>) -> Measurement {
        Measurement {
            run: 1,
            variant,
            workload: Workload::Inserts,
            secs,
            units: 100,
            bytes: None,
            usage: None,
            lag,
            walsender_cpu: None,
            apply_cpu: None,
        }
    }

    #[test]
    fn server_cpu_columns_are_the_medians_of_the_runs_that_have_them() {
        let with = |cpu: f64| Measurement {
            walsender_cpu: Some(cpu),
            apply_cpu: Some(cpu * 10.0),
            ..m(VariantKind::Pgmorph, 1.0, None)
        };
        let text = table(&[with(0.5), with(0.9), with(0.7)]);
        assert!(text.contains("walsender CPU s"), "{text}");
        assert!(text.contains("dest apply CPU s"), "{text}");
        assert!(text.contains(" 0.70 |"), "{text}");
        assert!(text.contains(" 7.00 |"), "{text}");
        let without = table(&[m(VariantKind::Native, 1.0, None)]);
        let row = without.lines().last().unwrap_or_default();
        assert_eq!(row.matches(" - |").count(), 5, "{without}");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratio_is_relative_to_native_throughput() {
        let text = table(&[
            m(VariantKind::Native, 2.0, None),
            m(VariantKind::Pgmorph, 4.0, None),
        ]);
        assert!(text.contains("0.50x"), "{text}");
        assert!(text.contains("1.00x"), "{text}");
    }

    #[test]
    fn live_phases_have_their_own_table() {
        let lag = Lag {
            beats: 500,
            p50: Duration::from_micros(3_400),
            p99: Duration::from_millis(12),
            max: Duration::from_millis(30),
        };
        let ms = [
            m(VariantKind::Pgmorph, 4.0, None),
            m(VariantKind::Pgmorph, 10.0, Some(lag)),
        ];
        let throughput = table(&ms);
        assert_eq!(throughput.lines().count(), 3, "{throughput}");
        let live = live_table(&ms, 5_000);
        assert_eq!(live.lines().count(), 3, "{live}");
        assert!(live.contains("live inserts"), "{live}");
        assert!(live.contains(" 3.4 |"), "{live}");
        assert!(live.contains(" 12.0 |"), "{live}");
        assert!(live_table(&ms[..1], 5_000).is_empty());
    }
}

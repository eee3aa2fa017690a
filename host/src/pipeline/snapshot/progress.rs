//! The snapshot's progress: counters the copy workers add to, and a reporter that shows them
//! (live bars on a terminal, else a log line every 10 s or `PGMORPH_PROGRESS_INTERVAL_MS`) and
//! records them in the state about once a second for `pgmorph status`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::CopyFigures;
use crate::source::estimates::Estimate;
use crate::state::{snapshot_progress, StateStore};

/// How often progress is logged when stderr is not a terminal, unless
/// `PGMORPH_PROGRESS_INTERVAL_MS` says otherwise.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How often progress is written to the state (at most; more often only when the log
/// interval is shorter).
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// One table's copy progress, added to by the workers copying it.
#[derive(Debug)]
pub(super) struct TableProgress {
    name: String,
    estimate: Estimate,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: OnceLock<Instant>,
    /// Seconds the whole copy took, once done.
    finished: OnceLock<f64>,
    done: AtomicBool,
}

impl TableProgress {
    /// A table not started yet, expected to hold `estimate`.
    pub(super) fn new(name: String, estimate: Estimate) -> Self {
        Self {
            name,
            estimate,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: OnceLock::new(),
            finished: OnceLock::new(),
            done: AtomicBool::new(false),
        }
    }

    /// Counts rows and bytes of COPY data read.
    pub(super) fn add(&self, rows: u64, bytes: u64) {
        self.started.get_or_init(Instant::now);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records the copy as finished with its exact row count.
    pub(super) fn finish(&self, rows: u64) {
        let started = *self.started.get_or_init(Instant::now);
        let _ = self.finished.set(started.elapsed().as_secs_f64());
        self.rows.store(rows, Ordering::Relaxed);
        self.done.store(true, Ordering::Relaxed);
    }

    fn figures(&self) -> CopyFigures {
        let seconds = match (self.finished.get(), self.started.get()) {
            (Some(s), _) => *s,
            (None, Some(t)) => t.elapsed().as_secs_f64(),
            (None, None) => 0.0,
        };
        CopyFigures {
            rows: self.rows.load(Ordering::Relaxed),
            est_rows: self.estimate.rows,
            bytes: self.bytes.load(Ordering::Relaxed),
            est_bytes: self.estimate.bytes,
            seconds,
            done: self.done.load(Ordering::Relaxed),
        }
    }

    fn is_started(&self) -> bool {
        self.started.get().is_some()
    }
}

/// The task showing and recording progress while the snapshot runs.
pub(super) struct Reporter {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Reporter {
    /// Starts reporting on `tables` (forgetting an earlier snapshot's recorded progress).
    pub(super) fn spawn(tables: Vec<Arc<TableProgress>>, state: Arc<StateStore>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(report(tables, state, stopped));
        Self { stop, handle }
    }

    /// Shows and records the last figures, then ends.
    pub(super) async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// The log interval: `PGMORPH_PROGRESS_INTERVAL_MS`, else 10 s.
fn log_interval() -> Duration {
    std::env::var("PGMORPH_PROGRESS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(LOG_EVERY, Duration::from_millis)
}

async fn report(
    tables: Vec<Arc<TableProgress>>,
    state: Arc<StateStore>,
    mut stopped: watch::Receiver<bool>,
) {
    let every = log_interval();
    let mut view = match std::io::stderr().is_terminal() {
        true => View::Bars(Bars::new(&tables)),
        false => View::Log {
            every,
            last: Instant::now(),
        },
    };
    if let Err(e) = snapshot_progress::clear(state.client(), state.name()).await {
        tracing::warn!(error = %e, "cannot record the snapshot's progress");
    }
    let mut recorded = Instant::now() - RECORD_EVERY;
    // A log interval under a second (tests) records as often, down to 100 ms.
    let tick = every.min(RECORD_EVERY).max(Duration::from_millis(100));
    loop {
        let end = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = stopped.changed() => true,
        };
        let figures: Vec<(String, CopyFigures)> = tables
            .iter()
            .filter(|t| t.is_started() || end)
            .map(|t| (t.name.clone(), t.figures()))
            .collect();
        if end || recorded.elapsed() >= tick {
            recorded = Instant::now();
            if let Err(e) = snapshot_progress::record(state.client(), state.name(), &figures).await
            {
                tracing::warn!(error = %e, "cannot record the snapshot's progress");
            }
        }
        view.show(&tables, &figures, end);
        if end {
            return;
        }
    }
}

/// Where progress goes: bars on a terminal, else log lines.
enum View {
    Bars(Bars),
    Log { every: Duration, last: Instant },
}

impl View {
    fn show(
        &mut self,
        tables: &[Arc<TableProgress>],
        figures: &[(String, CopyFigures)],
        end: bool,
    ) {
        let total = total(tables);
        match self {
            View::Bars(bars) => bars.show(figures, &total, end),
            View::Log { every, last } => {
                if !end && last.elapsed() < *every {
                    return;
                }
                *last = Instant::now();
                for (table, f) in figures.iter().filter(|(_, f)| !f.done || end) {
                    tracing::info!(table = %table, progress = %f, "snapshot progress");
                }
                let done = tables
                    .iter()
                    .filter(|t| t.done.load(Ordering::Relaxed))
                    .count();
                tracing::info!(tables_done = done, tables = tables.len(), total = %total, "snapshot progress");
            }
        }
    }
}

fn total(tables: &[Arc<TableProgress>]) -> CopyFigures {
    let mut total = CopyFigures {
        est_rows: Some(0),
        done: true,
        ..CopyFigures::default()
    };
    for t in tables {
        total.add(&t.figures());
    }
    total
}

/// Live bars: the total, then one per table started.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    tables: Vec<(String, ProgressBar)>,
}

impl Bars {
    fn new(tables: &[Arc<TableProgress>]) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(bar(&format!("snapshot ({} tables)", tables.len())));
        Self {
            multi,
            total,
            tables: Vec::new(),
        }
    }

    fn show(&mut self, figures: &[(String, CopyFigures)], total: &CopyFigures, end: bool) {
        set(&self.total, total);
        let bars = &mut self.tables;
        for (name, f) in figures {
            let known = bars.iter().position(|(n, _)| n == name);
            let index = known.unwrap_or_else(|| {
                bars.push((name.clone(), self.multi.add(bar(name))));
                bars.len() - 1
            });
            set(&bars[index].1, f);
        }
        if end {
            bars.iter().for_each(|(_, b)| b.finish());
            self.total.finish();
        }
    }
}

fn bar(prefix: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>32} [{bar:24}] {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let b = ProgressBar::hidden().with_style(style);
    b.set_prefix(prefix.to_string());
    b
}

fn set(bar: &ProgressBar, f: &CopyFigures) {
    let part = f.fraction().unwrap_or(0.0);
    bar.set_length(1000);
    bar.set_position((part * 1000.0) as u64);
    bar.set_message(f.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, rows: Option<u64>) -> Arc<TableProgress> {
        let estimate = Estimate { rows, bytes: 1000 };
        Arc::new(TableProgress::new(name.into(), estimate))
    }

    #[test]
    fn counters_add_up_and_the_finish_sets_the_exact_count() {
        let (a, b) = (table("public.a", Some(100)), table("public.b", None));
        assert!(!a.is_started());
        a.add(40, 400);
        a.add(70, 300);
        assert!(a.is_started());
        let f = a.figures();
        assert_eq!(
            (f.rows, f.bytes, f.est_rows, f.done),
            (110, 700, Some(100), false)
        );
        a.finish(100);
        assert_eq!((a.figures().rows, a.figures().done), (100, true));
        let all = total(&[a.clone(), b.clone()]);
        assert_eq!((all.rows, all.est_rows, all.done), (100, None, false));
        b.finish(5);
        assert!(total(&[a, b]).done);
    }

    #[test]
    fn bars_take_every_table_and_finish() {
        let tables = vec![table("public.a", Some(10))];
        tables[0].add(5, 50);
        let mut bars = Bars::new(&tables);
        let figures = vec![("public.a".to_string(), tables[0].figures())];
        bars.show(&figures, &total(&tables), false);
        assert_eq!(bars.tables.len(), 1);
        assert_eq!(bars.tables[0].1.position(), 500);
        bars.show(&figures, &total(&tables), true);
        assert!(bars.total.is_finished() && bars.tables[0].1.is_finished());
    }
}

//! One plugin instance: its store with memory and time limits, calls with a deadline, and
//! re-instantiation from the pre-instantiated component after a trap.

use std::collections::BTreeMap;
use std::fmt;

use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{self, wit};
use super::engine::{runtime, PluginState, EPOCH_TICK};
use super::PluginError;

/// A call into a plugin failed; every kind is a plugin fault handled by its `on_error` policy.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// The plugin trapped (a panic, an `unreachable`, a host-detected fault).
    Trap(String),
    /// The call ran past its CPU deadline.
    Timeout(u64),
    /// The plugin tried to grow its memory past its cap.
    OutOfMemory(u64),
    /// The plugin returned an error.
    Plugin(wit::PluginError),
    /// The plugin's answer does not fit the mapped schema or the wire format.
    Invalid(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Trap(m) => write!(f, "trapped: {m}"),
            CallError::Timeout(ms) => write!(f, "ran past its {ms} ms deadline"),
            CallError::OutOfMemory(mb) => write!(f, "exceeded its memory limit of {mb} MiB"),
            CallError::Plugin(e) => match e {
                wit::PluginError::InvalidConfig(m) => write!(f, "reported invalid config: {m}"),
                wit::PluginError::Unsupported(m) => write!(f, "reported unsupported input: {m}"),
                wit::PluginError::Failed(m) => write!(f, "reported an error: {m}"),
            },
            CallError::Invalid(m) => write!(f, "returned invalid output: {m}"),
        }
    }
}

struct Live {
    store: Store<PluginState>,
    plugin: bindings::Plugin,
}

/// Runs `f` where wasmtime-wasi's synchronous host functions may block on their own Tokio
/// runtime: they call `Handle::block_on` on the current runtime when there is one, which panics
/// on a thread that is driving async tasks (the pipeline calls transforms from such tasks).
/// On a single-threaded runtime the call runs on [`plugin_thread`] while the caller waits;
/// calls made from there (no Tokio context) run directly, so a caller that wraps a whole row
/// step pays the trip to that thread once.
pub(crate) fn outside_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => match plugin_thread() {
            Some(pool) => pool.install(f),
            None => std::thread::scope(|s| {
                s.spawn(f)
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        },
    }
}

/// One long-lived thread without a Tokio context for plugin calls: a thread per call would cost
/// its creation and wasmtime's per-thread signal stack set-up every time (about 90 µs).
/// `None` if the thread could not be started (then each call gets a thread of its own).
fn plugin_thread() -> Option<&'static rayon_core::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon_core::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "pgmorph-plugins".into())
            .build()
            .map_err(|e| tracing::warn!(error = %e, "cannot start the plugin thread"))
            .ok()
    })
    .as_ref()
}

/// A loaded plugin, instantiated lazily again after any trap.
pub(crate) struct PluginInstance {
    pub(crate) name: String,
    pre: bindings::PluginPre<PluginState>,
    live: Option<Live>,
    config_json: String,
    memory_mb: u64,
    timeout_ms: u64,
    /// Tables mapped so far, replayed into a fresh instance after a trap.
    mapped: BTreeMap<u32, wit::TableSchema>,
    /// How many times the instance was rebuilt after a fault.
    pub(crate) restarts: u64,
}

impl PluginInstance {
    /// Pre-instantiates the component, instantiates it and calls `init`.
    pub(crate) fn new(
        name: &str,
        component: &Component,
        config_json: String,
        memory_mb: u64,
        timeout_ms: u64,
    ) -> Result<Self, PluginError> {
        let rt = runtime()?;
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            path: name.into(),
            message: format!("{e:#}"),
        };
        let pre = rt.linker.instantiate_pre(component).map_err(invalid)?;
        let pre = bindings::PluginPre::new(pre).map_err(invalid)?;
        let mut instance = Self {
            name: name.to_string(),
            pre,
            live: None,
            config_json,
            memory_mb,
            timeout_ms,
            mapped: BTreeMap::new(),
            restarts: 0,
        };
        instance.ensure_live().map_err(|e| PluginError::Init {
            plugin: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(instance)
    }

    /// Another instance of the same plugin: the pre-instantiated component shared, a store of
    /// its own with the same limits, `init` called and the tables mapped so far replayed.
    pub(crate) fn fork(&self) -> Result<Self, CallError> {
        let mut instance = Self {
            name: self.name.clone(),
            pre: self.pre.clone(),
            live: None,
            config_json: self.config_json.clone(),
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            mapped: self.mapped.clone(),
            restarts: 0,
        };
        instance.ensure_live()?;
        Ok(instance)
    }

    fn deadline_ticks(&self) -> u64 {
        deadline_ticks(self.timeout_ms)
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        classify(e, self.timeout_ms, self.memory_mb)
    }

    /// Makes sure a working instance exists: instantiate, `init`, replay the mapped tables.
    fn ensure_live(&mut self) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        let (pre, name, config_json, mapped) =
            (&self.pre, &self.name, &self.config_json, &self.mapped);
        let (memory_mb, timeout_ms) = (self.memory_mb, self.timeout_ms);
        let live =
            outside_async(|| build_live(pre, name, config_json, mapped, memory_mb, timeout_ms))?;
        self.live = Some(live);
        Ok(())
    }

    fn call<R: Send>(
        &mut self,
        f: impl FnOnce(&bindings::Plugin, &mut Store<PluginState>) -> wasmtime::Result<R> + Send,
    ) -> Result<R, CallError> {
        if self.live.is_none() {
            self.restarts += 1;
            tracing::info!(plugin = %self.name, restarts = self.restarts, "re-instantiating plugin after a fault");
        }
        self.ensure_live()?;
        let ticks = self.deadline_ticks();
        let live = self.live.as_mut().expect("instance is live");
        live.store.set_epoch_deadline(ticks);
        match outside_async(|| f(&live.plugin, &mut live.store)) {
            Ok(r) => Ok(r),
            Err(e) => {
                // After a trap the instance is unusable; the next call builds a fresh one.
                self.live = None;
                Err(self.classify(e))
            }
        }
    }

    /// The mapping hook.
    pub(crate) fn map_table(
        &mut self,
        id: u32,
        schema: &wit::TableSchema,
    ) -> Result<wit::TableMapping, CallError> {
        let out = self
            .call(|p, s| p.pgmorph_plugin_transform().call_map_table(s, id, schema))?
            .map_err(CallError::Plugin)?;
        self.mapped.insert(id, schema.clone());
        Ok(out)
    }

    /// Forgets a table (its relation changed and it was mapped again under a new id).
    pub(crate) fn forget_table(&mut self, id: u32) {
        self.mapped.remove(&id);
    }

    /// The row hook over one encoded batch.
    pub(crate) fn transform_rows(&mut self, id: u32, batch: &[u8]) -> Result<Vec<u8>, CallError> {
        self.call(|p, s| {
            p.pgmorph_plugin_transform()
                .call_transform_rows(s, id, batch)
        })?
        .map_err(CallError::Plugin)
    }
}

fn deadline_ticks(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1) + 1
}

fn classify(e: wasmtime::Error, timeout_ms: u64, memory_mb: u64) -> CallError {
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return CallError::Timeout(timeout_ms);
    }
    let text = format!("{e:?}");
    if text.contains("forcing trap when growing memory") {
        return CallError::OutOfMemory(memory_mb);
    }
    // The error carries a multi-line wasm backtrace: the log gets all of it, the row's error
    // (and its dead letter) one line naming the trap.
    tracing::warn!(error = %text, "plugin trapped");
    let summary = match e.downcast_ref::<Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => e.to_string(),
    };
    CallError::Trap(summary.lines().next().unwrap_or_default().to_string())
}

/// Instantiates the plugin in a fresh store with its limits, calls `init`, and replays the
/// tables mapped so far.
fn build_live(
    pre: &bindings::PluginPre<PluginState>,
    name: &str,
    config_json: &str,
    mapped: &BTreeMap<u32, wit::TableSchema>,
    memory_mb: u64,
    timeout_ms: u64,
) -> Result<Live, CallError> {
    let rt = runtime().map_err(|e| CallError::Trap(e.to_string()))?;
    let limits = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(memory_mb << 20).unwrap_or(usize::MAX))
        .trap_on_grow_failure(true)
        .instances(64)
        .memories(16)
        .tables(64)
        .build();
    let classify = |e| classify(e, timeout_ms, memory_mb);
    let mut store = Store::new(&rt.engine, PluginState::new(name, limits));
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks(timeout_ms));
    let plugin = pre.instantiate(&mut store).map_err(classify)?;
    plugin
        .pgmorph_plugin_transform()
        .call_init(&mut store, config_json)
        .map_err(classify)?
        .map_err(CallError::Plugin)?;
    for (id, schema) in mapped {
        store.set_epoch_deadline(deadline_ticks(timeout_ms));
        plugin
            .pgmorph_plugin_transform()
            .call_map_table(&mut store, *id, schema)
            .map_err(classify)?
            .map_err(CallError::Plugin)?;
    }
    Ok(Live { store, plugin })
}

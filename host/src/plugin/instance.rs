//! One plugin instance: its store with memory and time limits, calls with a deadline, and
//! re-instantiation from the pre-instantiated component after a trap.

use std::collections::BTreeMap;
use std::fmt;

use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{self, wit};
use super::determinism::Determinism;
use super::engine::{runtime, Grants, PluginState, EPOCH_TICK};
use super::PluginError;
use crate::config::PluginSettings;
use crate::model::Provenance;

/// A call into a plugin failed; every kind is a plugin fault handled by its `on_error` policy.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// The plugin trapped (an `unreachable`, a host-detected fault).
    Trap(String),
    /// The plugin panicked, with this message (from its stderr).
    Panic(String),
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
            CallError::Panic(m) => write!(f, "panicked: {m}"),
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

/// The limits and grants of a plugin's sandbox.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sandbox {
    pub(crate) memory_mb: u64,
    pub(crate) timeout_ms: u64,
    pub(crate) grants: Grants,
}

impl Sandbox {
    /// The sandbox a plugin's settings ask for.
    pub(crate) fn of(settings: &PluginSettings) -> Self {
        Self {
            memory_mb: settings.memory_mb.unwrap_or(super::DEFAULT_MEMORY_MB),
            timeout_ms: settings.timeout_ms.unwrap_or(super::DEFAULT_TIMEOUT_MS),
            grants: Grants {
                clock: settings.clock,
                random: settings.random,
            },
        }
    }
}

/// A loaded plugin, instantiated lazily again after any trap.
pub(crate) struct PluginInstance {
    pub(crate) name: String,
    live: Option<Live>,
    recipe: Recipe,
    /// How many times the instance was rebuilt after a fault.
    pub(crate) restarts: u64,
}

/// What (re)building a plugin's instance takes.
struct Recipe {
    name: String,
    pre: bindings::PluginPre<PluginState>,
    config_json: String,
    sandbox: Sandbox,
    determinism: Determinism,
    /// Tables mapped so far, replayed into a fresh instance after a trap.
    mapped: BTreeMap<u32, wit::TableSchema>,
}

impl PluginInstance {
    /// Pre-instantiates the component, instantiates it and calls `init`.
    pub(crate) fn new(
        name: &str,
        component: &Component,
        config_json: String,
        sandbox: Sandbox,
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
            live: None,
            recipe: Recipe {
                name: name.to_string(),
                pre,
                config_json,
                sandbox,
                determinism: Determinism::default(),
                mapped: BTreeMap::new(),
            },
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
            live: None,
            recipe: Recipe {
                name: self.recipe.name.clone(),
                pre: self.recipe.pre.clone(),
                config_json: self.recipe.config_json.clone(),
                sandbox: self.recipe.sandbox,
                // Its own clocks and random stream: set per call by the thread that calls it.
                determinism: Determinism::default(),
                mapped: self.recipe.mapped.clone(),
            },
            restarts: 0,
        };
        instance.ensure_live()?;
        Ok(instance)
    }

    fn deadline_ticks(&self) -> u64 {
        deadline_ticks(self.recipe.sandbox.timeout_ms)
    }

    /// Makes sure a working instance exists: instantiate, `init`, replay the mapped tables.
    fn ensure_live(&mut self) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        let live = outside_async(|| build_live(&self.recipe))?;
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
                let panic = live.store.data().take_panic();
                // After a trap the instance is unusable; the next call builds a fresh one.
                self.live = None;
                Err(classify(e, &self.recipe.sandbox, panic))
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
        self.recipe.mapped.insert(id, schema.clone());
        Ok(out)
    }

    /// Forgets a table (its relation changed and it was mapped again under a new id).
    pub(crate) fn forget_table(&mut self, id: u32) {
        self.recipe.mapped.remove(&id);
    }

    /// The row hook over one encoded batch of `table`'s changes, which happened at `at`: the
    /// plugin's deterministic clocks and random bytes are set from it first.
    pub(crate) fn transform_rows(
        &mut self,
        id: u32,
        table: &str,
        at: &Provenance,
        batch: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        self.recipe.determinism.set(&self.name, table, at);
        let started = std::time::Instant::now();
        let out = self
            .call(|p, s| {
                p.pgmorph_plugin_transform()
                    .call_transform_rows(s, id, batch)
            })
            .and_then(|r| r.map_err(CallError::Plugin));
        crate::metrics::plugin_call(&self.name, started.elapsed(), out.is_ok());
        out
    }
}

fn deadline_ticks(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(EPOCH_TICK.as_millis() as u64).max(1) + 1
}

fn classify(e: wasmtime::Error, sandbox: &Sandbox, panic: Option<String>) -> CallError {
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return CallError::Timeout(sandbox.timeout_ms);
    }
    let text = format!("{e:?}");
    if text.contains("forcing trap when growing memory") {
        return CallError::OutOfMemory(sandbox.memory_mb);
    }
    // The error carries a multi-line wasm backtrace: the log gets all of it, the row's error
    // (and its dead letter) the panic's message, or else one line naming the trap.
    tracing::warn!(error = %text, "plugin trapped");
    if let Some(message) = panic {
        return CallError::Panic(message);
    }
    let summary = match e.downcast_ref::<Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => e.to_string(),
    };
    CallError::Trap(summary.lines().next().unwrap_or_default().to_string())
}

/// Instantiates the plugin in a fresh store with its limits, calls `init`, and replays the
/// tables mapped so far.
fn build_live(instance: &Recipe) -> Result<Live, CallError> {
    let rt = runtime().map_err(|e| CallError::Trap(e.to_string()))?;
    let sandbox = &instance.sandbox;
    let limits = StoreLimitsBuilder::new()
        .memory_size(usize::try_from(sandbox.memory_mb << 20).unwrap_or(usize::MAX))
        .trap_on_grow_failure(true)
        .instances(64)
        .memories(16)
        .tables(64)
        .build();
    let state = PluginState::new(
        &instance.name,
        limits,
        &instance.determinism,
        sandbox.grants,
    );
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    match start(instance, &mut store) {
        Ok(plugin) => Ok(Live { store, plugin }),
        Err(e) => {
            let panic = store.data().take_panic();
            Err(e.into_call_error(sandbox, panic))
        }
    }
}

/// How starting an instance failed.
enum StartError {
    Wasm(wasmtime::Error),
    Plugin(wit::PluginError),
}

impl StartError {
    fn into_call_error(self, sandbox: &Sandbox, panic: Option<String>) -> CallError {
        match self {
            StartError::Wasm(e) => classify(e, sandbox, panic),
            StartError::Plugin(e) => CallError::Plugin(e),
        }
    }
}

/// Instantiates, calls `init` and replays the mapped tables, each under the call deadline.
fn start(
    instance: &Recipe,
    store: &mut Store<PluginState>,
) -> Result<bindings::Plugin, StartError> {
    let ticks = deadline_ticks(instance.sandbox.timeout_ms);
    store.set_epoch_deadline(ticks);
    let plugin = instance
        .pre
        .instantiate(&mut *store)
        .map_err(StartError::Wasm)?;
    let hooks = plugin.pgmorph_plugin_transform();
    store.set_epoch_deadline(ticks);
    hooks
        .call_init(&mut *store, &instance.config_json)
        .map_err(StartError::Wasm)?
        .map_err(StartError::Plugin)?;
    for (id, schema) in &instance.mapped {
        store.set_epoch_deadline(ticks);
        hooks
            .call_map_table(&mut *store, *id, schema)
            .map_err(StartError::Wasm)?
            .map_err(StartError::Plugin)?;
    }
    Ok(plugin)
}

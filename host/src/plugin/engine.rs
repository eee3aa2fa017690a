//! The shared wasmtime engine: configuration, the epoch ticker behind call deadlines, the
//! sandboxed WASI context, the linker, and loading components through the compile cache
//! ([`super::cache`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pgmorph_wire::PANIC_LINE_PREFIX;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, wit};
use super::determinism::Determinism;
use super::PluginError;
use crate::config::Grant;

/// How often the ticker advances the engine's epoch; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a plugin's store holds.
pub(crate) struct PluginState {
    /// The plugin's name (its file stem), for logs.
    pub(crate) name: String,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// The message of the plugin's last panic, from its stderr (see [`PANIC_LINE_PREFIX`]).
    pub(crate) panic: PanicSlot,
}

/// Where a plugin's stderr leaves the message of a panic, for the row's error.
pub(crate) type PanicSlot = Arc<Mutex<Option<String>>>;

/// What a plugin's sandbox grants beyond computing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grants {
    /// The real wall and monotonic clocks.
    pub(crate) clock: Grant,
    /// Real random bytes.
    pub(crate) random: Grant,
}

impl PluginState {
    /// A state with a WASI context that grants nothing: no files, environment, arguments,
    /// sockets or name lookups, and, unless `grants` say otherwise, clocks and random bytes
    /// from `determinism`; stdout and stderr go to the host log.
    pub(crate) fn new(
        name: &str,
        limits: StoreLimits,
        determinism: &Determinism,
        grants: Grants,
    ) -> Self {
        let panic = PanicSlot::default();
        let mut builder = WasiCtx::builder();
        builder
            .stdout(LogStream::new(name, "stdout", None))
            .stderr(LogStream::new(name, "stderr", Some(panic.clone())))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        determinism.install(&mut builder, grants.clock, grants.random);
        Self {
            name: name.to_string(),
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits,
            panic,
        }
    }

    /// Takes the message of the plugin's last panic, if it wrote one.
    pub(crate) fn take_panic(&self) -> Option<String> {
        self.panic.lock().ok()?.take()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::Host for PluginState {}

impl bindings::pgmorph::plugin::host::Host for PluginState {
    fn log(&mut self, level: wit::Level, message: String) {
        let plugin = self.name.as_str();
        match level {
            wit::Level::Trace => tracing::trace!(plugin, "{message}"),
            wit::Level::Debug => tracing::debug!(plugin, "{message}"),
            wit::Level::Info => tracing::info!(plugin, "{message}"),
            wit::Level::Warn => tracing::warn!(plugin, "{message}"),
            wit::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// A plugin's stdout or stderr: each line becomes a log event; on stderr, a line starting with
/// [`PANIC_LINE_PREFIX`] also leaves its message in the panic slot.
#[derive(Clone)]
struct LogStream {
    plugin: String,
    stream: &'static str,
    pending: Vec<u8>,
    panic: Option<PanicSlot>,
}

impl LogStream {
    fn new(plugin: &str, stream: &'static str, panic: Option<PanicSlot>) -> Self {
        Self {
            plugin: plugin.to_string(),
            stream,
            pending: Vec::new(),
            panic,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.pending.len() > 8192 {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if let (Some(slot), Some(message)) = (&self.panic, text.strip_prefix(PANIC_LINE_PREFIX)) {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(message.trim_end().to_string());
            }
        }
        tracing::info!(plugin = %self.plugin, stream = self.stream, "{text}");
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

/// The process-wide engine and linker.
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared engine (created, with its epoch ticker thread, on first use).
pub(crate) fn runtime() -> Result<&'static Runtime, PluginError> {
    RUNTIME
        .get_or_init(|| build_runtime().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

fn build_runtime() -> wasmtime::Result<Runtime> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    bindings::Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("pgmorph-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })?;
    Ok(Runtime { engine, linker })
}

/// Where compiled components are cached: `$PGMORPH_CACHE_DIR`, else `$XDG_CACHE_HOME/pgmorph`,
/// else `~/.cache/pgmorph`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PGMORPH_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("pgmorph"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("pgmorph"))
}

/// Compiles a component, or loads it from the cache when the same bytes were compiled before
/// by the same engine.
pub(crate) fn load_component(
    runtime: &Runtime,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<Component, PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let key = {
        let mut h = Sha256::new();
        h.update(&bytes);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cached = cache_dir.map(|d| d.join(format!("{key}.cwasm")));
    if let Some(cached) = cached.as_deref().filter(|c| c.is_file()) {
        if let Some(component) = deserialize(runtime, cached) {
            super::cache::used(cached, path);
            tracing::debug!(plugin = %path.display(), cache = %cached.display(), "plugin loaded from cache");
            return Ok(component);
        }
    }
    let started = Instant::now();
    let component = Component::new(&runtime.engine, &bytes).map_err(|e| PluginError::Invalid {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })?;
    tracing::info!(plugin = %path.display(), ms = started.elapsed().as_millis() as u64, "plugin compiled");
    if let Some(cached) = cached {
        let stored = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| super::cache::store(&cached, path, &bytes));
        if let Err(e) = stored {
            tracing::warn!(cache = %cached.display(), error = %e, "cannot cache compiled plugin");
        }
    }
    Ok(component)
}

#[allow(unsafe_code)]
fn deserialize(runtime: &Runtime, cached: &Path) -> Option<Component> {
    // SAFETY: the file is one this module wrote with `Component::serialize` into pgmorph's own
    // cache directory, named by the content hash of the source component; wasmtime checks that
    // it was produced by a compatible engine and we fall back to compiling on any error.
    match unsafe { Component::deserialize_file(&runtime.engine, cached) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(cache = %cached.display(), error = %e, "stale plugin cache entry");
            None
        }
    }
}

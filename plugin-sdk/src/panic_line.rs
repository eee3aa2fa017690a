//! The panic hook the SDK installs in a plugin: a panic's message reaches the host on one
//! stderr line starting with [`pgmorph_wire::PANIC_LINE_PREFIX`], and the host puts it in the
//! row's error (and dead letter) instead of the trap's backtrace.

use std::panic::PanicHookInfo;
use std::sync::Once;

/// Installs the hook once per instance; later calls do nothing.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{}", line(info)))));
}

/// `pgmorph-plugin-panic: <message> (at <file>:<line>)`, on one line.
fn line(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    let at = info
        .location()
        .map(|l| format!(" (at {}:{})", l.file(), l.line()))
        .unwrap_or_default();
    let flat = message.replace(['\n', '\r'], " ");
    format!("{}{flat}{at}", pgmorph_wire::PANIC_LINE_PREFIX)
}

//! Logging from a UDF. In a component the host tags each line with the stage,
//! module version and position; natively (tests) lines go to stderr.

use crate::wit::weir::udf::log::Level;

fn write(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    crate::wit::weir::udf::log::write(level, message);
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[{level:?}] {message}");
}

/// Logs a debugging detail.
///
/// ```
/// weir_sdk::log::debug("window closed for user u007");
/// ```
pub fn debug(message: &str) {
    write(Level::Debug, message)
}
/// Logs normal operation.
///
/// ```
/// weir_sdk::log::info("window closed for user u007");
/// ```
pub fn info(message: &str) {
    write(Level::Info, message)
}
/// Logs something unexpected that was handled.
///
/// ```
/// weir_sdk::log::warn("window closed for user u007");
/// ```
pub fn warn(message: &str) {
    write(Level::Warn, message)
}
/// Logs a failure.
///
/// ```
/// weir_sdk::log::error("window closed for user u007");
/// ```
pub fn error(message: &str) {
    write(Level::Error, message)
}

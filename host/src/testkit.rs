//! Builds the example UDF components in `udfs/` for tests and benchmarks.
//!
//! Tests use real components built from source: the first caller in a process
//! runs `cargo build --target wasm32-wasip2 --release` on the `udfs/` workspace
//! (a no-op when up to date; cargo's lock serialises concurrent test binaries).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the UDF components are built.
pub fn udf_target_dir() -> PathBuf {
    repo_root().join("udfs").join("target")
}

/// The built component of UDF crate `name` (e.g. `bot_filter`), building all on first use.
///
/// Panics with the build's output if the build fails: a test cannot go on without it.
pub fn udf_component(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| build_udfs(&repo_root().join("udfs")));
    if let Err(e) = built {
        panic!("building udfs/ failed:\n{e}");
    }
    let path = udf_target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "no component {} (is `{name}` a member of udfs/Cargo.toml?)",
        path.display()
    );
    path
}

/// `cargo` in `dir` (a UDF workspace or crate), without the settings of an
/// outer cargo (a test or bench run), which must not leak into it.
pub fn udf_cargo(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key == "RUSTFLAGS"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Runs the release build of a UDF workspace or crate for wasm32-wasip2.
pub fn build_udfs(dir: &Path) -> Result<(), String> {
    let mut cmd = udf_cargo(dir);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

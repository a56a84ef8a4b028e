//! The sandboxed, deterministic WebAssembly runtime for UDF components.
//!
//! One [`Runtime`] per process holds the wasmtime engine (NaN canonicalisation,
//! fuel, epoch interruption, pooling allocator) and a cache of compiled
//! components keyed by module version, backed by precompiled files on disk.

use weir_core::{plan, schema, stage as core_stage, udf};

pub mod bindings;
mod convert;
mod determinism;
pub mod instance;
pub mod output;
mod stage;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use convert::{BatchRef, Lowering, from_wit_column};
pub use instance::{
    AggregateInstance, CallError, Instance, Limits, MAX_MEMORY_BYTES, StateOverlay, TrapKind,
};
pub use stage::{stage, stage_with_module};
pub use weir_core::schema::{column_index, read_columns};

pub use weir_core::udf::ModuleVersion;

/// The world a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `weir:udf/processor`: filter, map, flat-map.
    Processor,
    /// `weir:udf/reducer`: keyed and stateful.
    Reducer,
    /// `weir:udf/scalar`: one value per row.
    Scalar,
    /// `weir:udf/aggregate`: accumulators over groups of rows.
    Aggregate,
}

impl World {
    /// The world's name in `wit/`.
    pub fn name(self) -> &'static str {
        match self {
            World::Processor => "processor",
            World::Reducer => "reducer",
            World::Scalar => "scalar",
            World::Aggregate => "aggregate",
        }
    }
}

/// Why a component was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a WebAssembly component at all.
    #[error(
        "{path} is not a WebAssembly component: {reason}. Build UDFs with `weir udf build` (target wasm32-wasip2)"
    )]
    NotAComponent {
        /// The file.
        path: String,
        /// What the bytes are instead.
        reason: String,
    },
    /// The component imports an interface Weir does not provide.
    #[error(
        "component {path} (module {version}) imports `{import}`, which Weir refuses: UDFs may not use {what}. Allowed: weir:udf/*, and the deterministic WASI clocks, random, cli and io interfaces"
    )]
    ForbiddenImport {
        /// The file.
        path: String,
        /// Its version.
        version: ModuleVersion,
        /// The refused import.
        import: String,
        /// What that import would give the UDF.
        what: String,
    },
    /// The component was built against another, incompatible `weir:udf` WIT.
    #[error(
        "component {path} (module {version}) imports `{import}`, built against another version of Weir's UDF interface; this node speaks weir:udf@{WIT_VERSION}. Rebuild it with a weir-sdk of this Weir release"
    )]
    WitVersion {
        /// The file.
        path: String,
        /// Its version.
        version: ModuleVersion,
        /// The import with the other version.
        import: String,
    },
    /// The component does not export a Weir world.
    #[error(
        "component {path} (module {version}) exports none of Weir's worlds (processor: `process`, reducer: `reduce`, scalar: `evaluate`, aggregate: `accumulate`); it exports: {exports}"
    )]
    UnknownWorld {
        /// The file.
        path: String,
        /// Its version.
        version: ModuleVersion,
        /// What it exports.
        exports: String,
    },
    /// wasmtime could not compile it.
    #[error("component {path} (module {version}) does not compile: {message}")]
    Compile {
        /// The file.
        path: String,
        /// Its version.
        version: ModuleVersion,
        /// wasmtime's message.
        message: String,
    },
}

/// A loaded, validated UDF component.
#[derive(Clone)]
pub struct Module {
    /// Content address.
    pub version: ModuleVersion,
    /// The world it exports.
    pub world: World,
    /// Import names (with versions).
    pub imports: Vec<String>,
    /// Export names.
    pub exports: Vec<String>,
    /// Size in bytes.
    pub size: usize,
    /// Where it was loaded from.
    pub path: String,
    pub(crate) component: Component,
}

impl Module {
    /// Whether it exports `migrate` (world `migrating-reducer`), called when
    /// it takes over a running reducer stage.
    pub fn migrates(&self) -> bool {
        self.world == World::Reducer && self.exports.iter().any(|e| e == "migrate")
    }

    /// Whether it exports `on-cti` (a timed reducer), called as CTIs fire
    /// its timers.
    pub fn timed(&self) -> bool {
        self.world == World::Reducer && self.exports.iter().any(|e| e == "on-cti")
    }

    /// The full name of the world it exports, e.g. `timed-reducer`.
    pub fn world_name(&self) -> &'static str {
        match (self.timed(), self.migrates()) {
            (true, true) => "timed-migrating-reducer",
            (true, false) => "timed-reducer",
            (false, true) => "migrating-reducer",
            (false, false) => self.world.name(),
        }
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("version", &self.version)
            .field("world", &self.world)
            .field("path", &self.path)
            .finish()
    }
}

/// The version of the `weir:udf` WIT package this host implements; any
/// 0.2.x component is compatible.
pub const WIT_VERSION: &str = "0.2.0";

/// Import namespaces a UDF may use, each provided deterministically.
const ALLOWED_IMPORTS: &[&str] = &[
    "weir:udf/types",
    "weir:udf/keys",
    "weir:udf/log",
    "weir:udf/state",
    "weir:udf/timers",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

fn forbidden_reason(import: &str) -> String {
    if import.starts_with("wasi:filesystem") {
        "the host filesystem".into()
    } else if import.starts_with("wasi:sockets") {
        "network sockets".into()
    } else if import.starts_with("wasi:http") {
        "HTTP".into()
    } else {
        "interfaces outside Weir's deterministic sandbox".into()
    }
}

/// The WebAssembly engine and the component cache of one process.
pub struct Runtime {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<ModuleVersion, Module>>,
    linkers: bindings::Linkers,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

/// The Wasm engine could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the Wasm engine: {0}")]
pub struct EngineError(String);

/// How often the epoch ticks; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Runtime {
    /// A runtime whose precompiled components are cached in `cache_dir`
    /// (`None`: compile in memory only).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Arc<Self>, EngineError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(2048)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(instance::MAX_MEMORY_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| EngineError(format!("{e:#}")))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| EngineError(format!("cannot start its epoch thread: {e}")))?;
        let linkers = bindings::Linkers::new(&engine).map_err(|e| EngineError(format!("{e:#}")))?;
        Ok(Arc::new(Runtime {
            engine,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            linkers,
        }))
    }

    /// The default cache directory: `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`,
    /// else `~/.cache/weir`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("weir"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("weir"))
    }

    /// Loads, validates and compiles (or fetches from the cache) a component file.
    pub fn load_file(&self, path: &Path) -> Result<Module, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&path.display().to_string(), &bytes)
    }

    /// A module this runtime already loaded, by its version's hex digest.
    pub fn cached(&self, version: &str) -> Option<Module> {
        self.lock_loaded()
            .iter()
            .find(|(v, _)| v.hex() == version)
            .map(|(_, m)| m.clone())
    }

    /// Loads, validates and compiles component bytes; `origin` names them in errors.
    pub fn load(&self, origin: &str, bytes: &[u8]) -> Result<Module, LoadError> {
        check_header(origin, bytes)?;
        let version = ModuleVersion::of(bytes);
        if let Some(module) = self.lock_loaded().get(&version) {
            return Ok(module.clone());
        }
        let component = self.compile(origin, &version, bytes)?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports: Vec<(String, bool)> = ty
            .exports(&self.engine)
            .map(|(n, item)| {
                (
                    n.to_string(),
                    matches!(item.ty, ComponentItem::ComponentFunc(_)),
                )
            })
            .collect();
        for import in &imports {
            let (base, wit) = import.split_once('@').unwrap_or((import, ""));
            if base.starts_with("weir:udf/") && !wit.is_empty() && !wit.starts_with("0.2.") {
                return Err(LoadError::WitVersion {
                    path: origin.to_string(),
                    version,
                    import: import.clone(),
                });
            }
            if !ALLOWED_IMPORTS.contains(&base) {
                return Err(LoadError::ForbiddenImport {
                    path: origin.to_string(),
                    version,
                    what: forbidden_reason(base),
                    import: import.clone(),
                });
            }
        }
        let has = |name: &str| exports.iter().any(|(n, func)| *func && n == name);
        let world = if has("process") {
            World::Processor
        } else if has("reduce") {
            World::Reducer
        } else if has("evaluate") {
            World::Scalar
        } else if has("accumulate") {
            World::Aggregate
        } else {
            return Err(LoadError::UnknownWorld {
                path: origin.to_string(),
                version,
                exports: exports
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let module = Module {
            version: version.clone(),
            world,
            imports,
            exports: exports.into_iter().map(|(n, _)| n).collect(),
            size: bytes.len(),
            path: origin.to_string(),
            component,
        };
        self.lock_loaded().insert(version, module.clone());
        Ok(module)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<ModuleVersion, Module>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn compile(
        &self,
        origin: &str,
        version: &ModuleVersion,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        let compile_error = |e: wasmtime::Error| LoadError::Compile {
            path: origin.to_string(),
            version: version.clone(),
            message: format!("{e:#}"),
        };
        let cached = self.cache_path(version);
        if let Some(file) = cached.as_ref().filter(|f| f.exists()) {
            // SAFETY: the file was written by `Component::serialize` of an engine
            // with this configuration (the compatibility hash is in its name) in
            // this user's cache directory; wasmtime checks the header again.
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, file) } {
                return Ok(component);
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(compile_error)?;
        if let Some(file) = cached
            && let Ok(serialized) = component.serialize()
            && let Some(dir) = file.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            // Write then rename, so a concurrent reader never sees half a file.
            let tmp = file.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
        Ok(component)
    }

    fn cache_path(&self, version: &ModuleVersion) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(
            dir.join("modules")
                .join(format!("{}-{:016x}.cwasm", version.hex(), hasher.finish())),
        )
    }

    /// A fresh instance of `module` for stage `stage`, initialised with `params`.
    pub fn instantiate(
        self: &Arc<Self>,
        module: &Module,
        stage: &str,
        params: &[crate::plan::ParamValueSpec],
        limits: Limits,
    ) -> Result<Instance, CallError> {
        Instance::new(self.clone(), module.clone(), stage, params, limits)
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linkers(&self) -> &bindings::Linkers {
        &self.linkers
    }
}

fn check_header(origin: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let not = |reason: &str| LoadError::NotAComponent {
        path: origin.to_string(),
        reason: reason.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not(
            "the file does not start with the WebAssembly magic bytes",
        ));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not(
            "it is a core WebAssembly module, not a component (was it built for wasm32-unknown-unknown or wasm32-wasip1?)",
        )),
        _ => Err(not("unknown WebAssembly version or layer")),
    }
}

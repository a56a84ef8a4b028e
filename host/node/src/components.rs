//! What a script's compiler learns about the components it declares:
//! each loaded with the Wasm runtime, initialised with its parameters, and
//! checked against the stream it runs over, as its stage will be.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow_schema::SchemaRef;
use weir_core::udf::Udf;
use weir_sql::{Components, World};

use crate::plan::{ParamValueSpec, UdfSpec};
use crate::wasm::{AggregateInstance, Module, Runtime, World as Exports};
use weir_core::temporal::{MakeUserAggregate, UserAggregate};

/// Finds the module of a component path.
type Loader<'a> = Box<dyn Fn(&Runtime, &Path) -> Result<Module, String> + 'a>;

/// Components loaded with a Wasm runtime: from their files (`weir run`,
/// `weir explain`, the client of `weir job submit`), or through a loader
/// (a node, from the modules sent with the job).
pub struct WasmComponents<'a> {
    runtime: OnceLock<Arc<Runtime>>,
    loader: Option<Loader<'a>>,
}

impl WasmComponents<'_> {
    /// Components read from their files; the runtime starts on first use.
    pub fn files() -> WasmComponents<'static> {
        WasmComponents {
            runtime: OnceLock::new(),
            loader: None,
        }
    }
}

impl<'a> WasmComponents<'a> {
    /// Components `load` finds, run by `runtime`.
    pub fn with(
        runtime: Arc<Runtime>,
        load: impl Fn(&Runtime, &Path) -> Result<Module, String> + 'a,
    ) -> WasmComponents<'a> {
        WasmComponents {
            runtime: OnceLock::from(runtime),
            loader: Some(Box::new(load)),
        }
    }

    fn module(&self, path: &Path) -> Result<(Arc<Runtime>, Module), String> {
        let runtime = match self.runtime.get() {
            Some(r) => r.clone(),
            None => {
                let r = Runtime::new(Runtime::default_cache_dir()).map_err(|e| e.to_string())?;
                self.runtime.get_or_init(|| r).clone()
            }
        };
        let module = match &self.loader {
            Some(load) => load(&runtime, path)?,
            None => runtime.load_file(path).map_err(|e| e.to_string())?,
        };
        Ok((runtime, module))
    }
}

impl Components for WasmComponents<'_> {
    fn world(&self, path: &Path, params: &[ParamValueSpec]) -> Result<World, String> {
        let (runtime, module) = self.module(path)?;
        Ok(match module.world {
            Exports::Processor => World::Processor,
            Exports::Reducer => World::Reducer,
            Exports::Scalar | Exports::Aggregate => {
                let instance = runtime
                    .instantiate(&module, "script", params, Default::default())
                    .map_err(|e| format!("its init failed: {e}"))?;
                let signature = instance.signature();
                let (Some(returns), args) = (signature.writes.first(), &signature.reads) else {
                    return Err("its signature names no result".into());
                };
                let (args, returns) = (args.clone(), returns.clone());
                if module.world == Exports::Scalar {
                    World::Scalar { args, returns }
                } else {
                    World::Aggregate { args, returns }
                }
            }
        })
    }

    fn aggregate(
        &self,
        path: &Path,
        params: &[ParamValueSpec],
    ) -> Result<(MakeUserAggregate, String), String> {
        let (runtime, module) = self.module(path)?;
        let shown = format!("{} module {}", path.display(), module.version.short());
        let name = path.file_stem().map_or_else(
            || "aggregate".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let params = params.to_vec();
        let make: MakeUserAggregate = Arc::new(move || {
            let instance =
                AggregateInstance::new(&runtime, &module, &name, &params, Default::default())
                    .map_err(|e| format!("module {} {e}", module.version.short()))?;
            Ok(Box::new(instance) as Box<dyn UserAggregate>)
        });
        Ok((make, shown))
    }

    fn stage_output(
        &self,
        stage: &str,
        spec: &UdfSpec,
        input: SchemaRef,
    ) -> Result<SchemaRef, String> {
        let (runtime, module) = self.module(&spec.component)?;
        crate::wasm::stage_with_module(&runtime, stage, spec, module, input)
            .map(|s| s.output_schema())
            .map_err(|e| e.to_string())
    }
}

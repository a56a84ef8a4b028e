//! UDF stages whose UDF is a Wasm component.

use std::sync::Arc;

use arrow_schema::SchemaRef;

use super::{Module, Runtime, World};
use crate::core_stage::{StageError, UdfStage};
use crate::plan::{StageKind, UdfSpec};

/// Loads the stage's component, checks it against the stage and its input,
/// and initialises it.
pub fn stage(
    runtime: &Arc<Runtime>,
    name: &str,
    spec: &UdfSpec,
    input_schema: SchemaRef,
) -> Result<UdfStage, StageError> {
    let module = runtime
        .load_file(&spec.component)
        .map_err(|e| StageError::Load {
            stage: name.to_string(),
            reason: Box::new(e),
        })?;
    stage_with_module(runtime, name, spec, module, input_schema)
}

/// Checks a loaded component against the stage and its input, and
/// initialises it.
pub fn stage_with_module(
    runtime: &Arc<Runtime>,
    name: &str,
    spec: &UdfSpec,
    module: Module,
    input_schema: SchemaRef,
) -> Result<UdfStage, StageError> {
    let mismatch = |message: String| StageError::Mismatch {
        stage: name.to_string(),
        module: module.version.to_string(),
        message,
    };
    let expected = match spec.kind {
        StageKind::Processor => World::Processor,
        StageKind::Reducer => World::Reducer,
        StageKind::Scalar => World::Scalar,
    };
    if module.world != expected {
        return Err(mismatch(format!(
            "the stage is a {} but {} exports the `{}` world",
            expected.name(),
            spec.component.display(),
            module.world.name()
        )));
    }
    let instance = runtime
        .instantiate(&module, name, &spec.params, spec.limits)
        .map_err(|e| mismatch(format!("the component {e}")))?;
    UdfStage::new(name, spec, Box::new(instance), input_schema)
}

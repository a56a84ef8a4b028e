//! A job file's stages: their kind, component, parameters, limits,
//! recovery and replication, checked and turned into [`StageSpec`]s.

use super::*;

pub(super) fn policy(text: Option<&str>, at: &str, key: &str) -> Result<ErrorPolicy, String> {
    match text {
        None | Some("fail") => Ok(ErrorPolicy::Fail),
        Some("dead-letter") | Some("dead_letter") => Ok(ErrorPolicy::DeadLetter),
        Some("rollback") if key == "on_trap" => Ok(ErrorPolicy::Rollback),
        Some(other) if key == "on_trap" => Err(format!(
            "{at}: {key} = `{other}`; expected `fail`, `dead-letter` or `rollback`"
        )),
        Some(other) => Err(format!(
            "{at}: {key} = `{other}`; expected `fail` or `dead-letter`"
        )),
    }
}

pub(super) fn stage(
    i: usize,
    s: &StageFile,
    inputs: Vec<String>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    check_files: bool,
) -> Result<StageSpec, String> {
    let at = format!("stages[{i}] `{}`", s.name);
    let recovery = match s.recovery.as_deref() {
        None | Some("checkpoint") => {
            if s.replay_window.is_some() {
                return Err(format!(
                    "{at}: `replay_window` applies to recovery = \"replay\""
                ));
            }
            Recovery::Checkpoint {
                every: s.checkpoint_every.unwrap_or(1).max(1),
            }
        }
        Some("replay") => {
            if s.checkpoint_every.is_some() {
                return Err(format!(
                    "{at}: `checkpoint_every` applies to recovery = \"checkpoint\""
                ));
            }
            Recovery::Replay {
                window: s.replay_window.unwrap_or(0),
            }
        }
        Some(other) => {
            return Err(format!(
                "{at}: recovery = `{other}`; expected `checkpoint` or `replay`"
            ));
        }
    };
    let replicate = match s.replicate {
        None => 1,
        Some(n) if (1..=crate::plan::MAX_REPLICATE).contains(&n) => n,
        Some(n) => {
            return Err(format!(
                "{at}: replicate = {n}; expected a whole number from 1 to {} (instances of each of the stage's rVertices, on different members of a cluster)",
                crate::plan::MAX_REPLICATE
            ));
        }
    };
    if s.kind == "union" {
        if s.component.is_some() || !s.params.is_empty() || s.key.is_some() {
            return Err(format!(
                "{at}: a union takes no component, params or key; it merges its inputs"
            ));
        }
        if inputs.len() < 2 {
            return Err(format!(
                "{at}: a union needs `inputs` with at least two streams"
            ));
        }
        return Ok(StageSpec {
            name: s.name.clone(),
            inputs,
            operator: Operator::Union,
            recovery,
            parallelism: 1,
            partition: Vec::new(),
            replicate,
        });
    }
    let kind = match s.kind.as_str() {
        "processor" => StageKind::Processor,
        "reducer" => StageKind::Reducer,
        "scalar" => StageKind::Scalar,
        other => {
            return Err(format!(
                "{at}: unknown kind `{other}` (expected processor, reducer, scalar or union)"
            ));
        }
    };
    if kind == StageKind::Reducer && s.key.is_none() {
        return Err(format!("{at}: a reducer needs `key = \"column\"`"));
    }
    if kind != StageKind::Reducer && s.key.is_some() {
        return Err(format!("{at}: `key` only applies to reducers"));
    }
    let Some(component) = s.component.as_deref() else {
        return Err(format!(
            "{at}: a {} stage needs `component = \"file.wasm\"`",
            s.kind
        ));
    };
    let component = resolve(component);
    if check_files && !component.exists() {
        return Err(format!(
            "{at}: component {} does not exist (build UDFs with `weir udf build`)",
            component.display()
        ));
    }
    let mut params = Vec::new();
    let table: BTreeMap<_, _> = s.params.iter().collect();
    for (name, value) in table {
        let value = match value {
            toml::Value::Integer(v) => ParamValue::Int(*v),
            toml::Value::Float(v) => ParamValue::Float(*v),
            toml::Value::String(v) => ParamValue::Text(v.clone()),
            toml::Value::Boolean(v) => ParamValue::Flag(*v),
            other => {
                return Err(format!(
                    "{at}: parameter `{name}` is a {}; parameters are integers, floats, strings or booleans",
                    other.type_str()
                ));
            }
        };
        params.push(ParamValueSpec {
            name: name.clone(),
            value,
        });
    }
    let defaults = Limits::default();
    let limits = Limits {
        fuel_per_row: s.fuel_per_row.unwrap_or(defaults.fuel_per_row),
        fuel_per_call: defaults.fuel_per_call,
        memory_bytes: s
            .memory_mib
            .map(|m| m << 20)
            .unwrap_or(defaults.memory_bytes),
        deadline: s
            .deadline_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.deadline),
    };
    if limits.memory_bytes > crate::wasm::MAX_MEMORY_BYTES || limits.memory_bytes < (1 << 20) {
        return Err(format!(
            "{at}: memory_mib must be between 1 and {}",
            crate::wasm::MAX_MEMORY_BYTES >> 20
        ));
    }
    Ok(StageSpec {
        name: s.name.clone(),
        inputs,
        recovery,
        parallelism: 1,
        partition: Vec::new(),
        replicate,
        operator: Operator::Udf(UdfSpec {
            args: Vec::new(),
            kind,
            component,
            params,
            key: s.key.clone(),
            output: s.output.clone(),
            on_trap: policy(s.on_trap.as_deref(), &at, "on_trap")?,
            limits,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sources, a union of them with `extra` in its table, and a sink.
    fn union_with(extra: &str) -> Result<Plan, JobError> {
        let source = |name: &str| {
            format!(
                "[[sources]]\nname = \"{name}\"\npath = \"{name}.jsonl\"\nevent_time = \"ts\"\nschema = {{ ts = \"int64\" }}\n"
            )
        };
        let text = format!(
            "{}{}[[stages]]\nname = \"all\"\nkind = \"union\"\ninputs = [\"a\", \"b\"]\n{extra}\n[[sinks]]\ninput = \"all\"\nstdout = true\n",
            source("a"),
            source("b")
        );
        parse(Path::new("/tmp/job.toml"), &text)
    }

    #[test]
    fn a_stage_runs_as_many_instances_as_replicate_says() {
        let plan = union_with("replicate = 3").expect("plan");
        assert_eq!(plan.stages[0].replicate, 3);
        let plan = union_with("").expect("plan");
        assert_eq!(plan.stages[0].replicate, 1);
    }

    #[test]
    fn a_replicate_out_of_range_names_the_stage_and_the_range() {
        for n in [0, 9] {
            let e = union_with(&format!("replicate = {n}"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "stages[0] `all`: replicate = {n}; expected a whole number from 1 to 8"
                )),
                "{e}"
            );
        }
    }
}

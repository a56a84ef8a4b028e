//! Column types and the Arrow layout of event batches.
//!
//! Inside the host every batch is an Arrow `RecordBatch` whose first two
//! columns are the event interval, [`START`] and [`END`] (int64 microseconds),
//! followed by the stream's own columns.

use std::sync::Arc;

use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// 64-bit signed integers.
    Int64,
    /// 64-bit IEEE floats.
    Float64,
    /// Booleans.
    Boolean,
    /// UTF-8 strings.
    Utf8,
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: ColumnType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
}

/// Name of the interval start column.
pub const START: &str = "_start";
/// Name of the interval end column.
pub const END: &str = "_end";

/// The name of a type as written in job files.
pub fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "int64",
        ColumnType::Float64 => "float64",
        ColumnType::Boolean => "boolean",
        ColumnType::Utf8 => "utf8",
    }
}

/// Parses a job-file type: `int64`, `float64`, `boolean`, `utf8` (aliases
/// `int`, `float`, `bool`, `string`), with a trailing `?` for nullable.
pub fn parse_type(text: &str) -> Option<(ColumnType, bool)> {
    let (base, nullable) = match text.trim().strip_suffix('?') {
        Some(b) => (b, true),
        None => (text.trim(), false),
    };
    let ty = match base {
        "int64" | "int" | "i64" => ColumnType::Int64,
        "float64" | "float" | "f64" | "double" => ColumnType::Float64,
        "boolean" | "bool" => ColumnType::Boolean,
        "utf8" | "string" | "str" => ColumnType::Utf8,
        _ => return None,
    };
    Some((ty, nullable))
}

/// The Arrow type of a column type.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Utf8 => DataType::Utf8,
    }
}

/// The column type of an Arrow type, if Weir supports it.
pub fn column_type(dt: &DataType) -> Option<ColumnType> {
    match dt {
        DataType::Int64 => Some(ColumnType::Int64),
        DataType::Float64 => Some(ColumnType::Float64),
        DataType::Boolean => Some(ColumnType::Boolean),
        DataType::Utf8 => Some(ColumnType::Utf8),
        _ => None,
    }
}

/// A column `name` of type `ty`, nullable or not.
pub fn field(name: &str, ty: ColumnType, nullable: bool) -> Field {
    Field {
        name: name.into(),
        ty,
        nullable,
    }
}

/// The Arrow schema of a stream with these columns (interval first).
pub fn event_schema(fields: &[Field]) -> SchemaRef {
    let mut all = vec![
        ArrowField::new(START, DataType::Int64, false),
        ArrowField::new(END, DataType::Int64, false),
    ];
    all.extend(
        fields
            .iter()
            .map(|f| ArrowField::new(&f.name, arrow_type(f.ty), f.nullable)),
    );
    Arc::new(Schema::new(all))
}

/// The user columns of a stream schema (without the interval).
pub fn user_fields(schema: &Schema) -> Vec<Field> {
    schema
        .fields()
        .iter()
        .filter(|f| f.name() != START && f.name() != END)
        .filter_map(|f| {
            Some(Field {
                name: f.name().clone(),
                ty: column_type(f.data_type())?,
                nullable: f.is_nullable(),
            })
        })
        .collect()
}

/// A column as stored in a node's catalog: its name and job-file type (`utf8?`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// The job-file type, with `?` when nullable.
    #[serde(rename = "type")]
    pub ty: String,
}

/// The catalog form of `fields`.
pub fn to_specs(fields: &[Field]) -> Vec<ColumnSpec> {
    fields
        .iter()
        .map(|f| ColumnSpec {
            name: f.name.clone(),
            ty: format!("{}{}", type_name(f.ty), if f.nullable { "?" } else { "" }),
        })
        .collect()
}

/// The fields of catalog columns; an unknown type names the column.
pub fn from_specs(specs: &[ColumnSpec]) -> Result<Vec<Field>, String> {
    specs
        .iter()
        .map(|c| {
            let (ty, nullable) = parse_type(&c.ty)
                .ok_or_else(|| format!("column `{}` has unknown type `{}`", c.name, c.ty))?;
            Ok(Field {
                name: c.name.clone(),
                ty,
                nullable,
            })
        })
        .collect()
}

/// `name: type` list for messages.
pub fn describe(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name,
                type_name(f.ty),
                if f.nullable { "?" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The index of column `name` in batches of `schema`.
pub fn column_index(schema: &arrow_schema::Schema, name: &str) -> Result<usize, String> {
    schema
        .index_of(name)
        .map_err(|_| format!("the input has no column `{name}`"))
}

/// The index in batches of `schema` of each column of `reads`, found once per
/// schema rather than by name for every batch.
pub fn read_columns(schema: &arrow_schema::Schema, reads: &[Field]) -> Result<Vec<usize>, String> {
    reads
        .iter()
        .map(|f| column_index(schema, &f.name))
        .collect()
}

/// The input schema of a stage reading `inputs` (name and schema each):
/// merged inputs need the same columns.
pub fn merged_input(stage: &str, inputs: &[(&str, &SchemaRef)]) -> Result<SchemaRef, String> {
    let Some((first_name, first)) = inputs.first() else {
        return Err(format!("stage `{stage}`: no inputs"));
    };
    for (name, schema) in &inputs[1..] {
        if first.fields() != schema.fields() {
            return Err(format!(
                "stage `{stage}`: inputs `{first_name}` ({}) and `{name}` ({}) have different columns; merged inputs need the same",
                describe(&user_fields(first)),
                describe(&user_fields(schema))
            ));
        }
    }
    Ok((*first).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_nullability() {
        assert!(matches!(
            parse_type("int64"),
            Some((ColumnType::Int64, false))
        ));
        assert!(matches!(
            parse_type("string?"),
            Some((ColumnType::Utf8, true))
        ));
        assert!(parse_type("decimal").is_none());
    }
}

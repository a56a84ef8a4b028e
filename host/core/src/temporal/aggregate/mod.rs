//! The windowed aggregate: per window and group, built-in aggregates over
//! the events whose lifetimes overlap the window, emitted once a CTI passes
//! the window's end, with the window as the lifetime.
//!
//! Groups are kept in Arrow's row format (`arrow-row`), whose bytes order
//! like the values: a window's rows go out sorted by group, so the output
//! does not depend on the order events of one CTI interval came in. The
//! accumulators are host-owned state: [`WindowAggregate::take_delta`] gives
//! the groups changed since the last checkpoint, [`WindowAggregate::restore`]
//! takes the whole state back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

mod open;
mod session;
mod split;
pub use session::SessionAggregate;
pub use split::{PARTIAL, Phase, partial_schema};

use super::Hopping;
use super::acc::{Acc, Extreme, accumulate, finish};
use super::uda::{UserAggregate, UserFunction};
use crate::schema::{END, START};
use crate::udf::{KeyedState, StateChanges};

/// A built-in aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggKind {
    /// `COUNT(*)`: rows.
    CountStar,
    /// `COUNT(x)`: rows where `x` is not null.
    Count,
    /// `COUNT(DISTINCT x)`: distinct non-null values of `x`.
    CountDistinct,
    /// `SUM(x)` of int64 or float64; null when no value is.
    Sum,
    /// `MIN(x)`; null when no value is.
    Min,
    /// `MAX(x)`; null when no value is.
    Max,
    /// `AVG(x)` as float64; null when no value is.
    Avg,
    /// A user-defined aggregate ([`Aggregate::user`]).
    User,
}

impl AggKind {
    /// The name as written in a query.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::CountStar | AggKind::Count => "COUNT",
            AggKind::CountDistinct => "COUNT(DISTINCT)",
            AggKind::Sum => "SUM",
            AggKind::Min => "MIN",
            AggKind::Max => "MAX",
            AggKind::Avg => "AVG",
            AggKind::User => "a user-defined aggregate",
        }
    }
}

/// One aggregate of a windowed aggregate: the function, the input column
/// it reads (none for `COUNT(*)` and user-defined aggregates) and the output
/// column's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The function.
    pub kind: AggKind,
    /// The input column, by index in the input schema.
    pub arg: Option<usize>,
    /// The output column's name.
    pub name: String,
    /// The user-defined aggregate and its argument columns (kind `User`).
    pub user: Option<UserCall>,
}

impl Aggregate {
    /// A built-in aggregate of column `arg` (none for `COUNT(*)`) into `name`.
    pub fn builtin(kind: AggKind, arg: Option<usize>, name: &str) -> Aggregate {
        Aggregate {
            kind,
            arg,
            name: name.to_string(),
            user: None,
        }
    }

    /// A call of user-defined aggregate `function` over the columns `args`
    /// (indices in the input schema) into `name`.
    pub fn user(function: UserFunction, args: Vec<usize>, name: &str) -> Aggregate {
        Aggregate {
            kind: AggKind::User,
            arg: None,
            name: name.to_string(),
            user: Some(UserCall { function, args }),
        }
    }

    /// How a plan shows it: `SUM AS total`, `Median(...) AS m`.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("{:?} AS {}", u.function, self.name),
            None => format!("{} AS {}", self.kind.name(), self.name),
        }
    }
}

/// A user-defined aggregate in a query: the function and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCall {
    /// The function.
    pub function: UserFunction,
    /// The argument columns, by index in the input schema.
    pub args: Vec<usize>,
}

/// A windowed aggregate that cannot be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggError {
    /// The aggregate does not apply to its column's type.
    #[error("{function} of column `{column}` ({ty}): {why}")]
    Type {
        /// The function.
        function: &'static str,
        /// The column.
        column: String,
        /// Its type.
        ty: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A column index outside the input.
    #[error("column {0} is not in the input")]
    Column(usize),
    /// An int64 sum that no longer fits.
    #[error("SUM into `{column}` overflowed int64 in window [{start}, {end})")]
    Overflow {
        /// The output column.
        column: String,
        /// The window's start.
        start: i64,
        /// The window's end.
        end: i64,
    },
    /// A user-defined aggregate failed or gave something malformed.
    #[error("{function} into `{column}`: {message}")]
    User {
        /// The function and its module.
        function: String,
        /// The output column.
        column: String,
        /// What went wrong.
        message: String,
    },
    /// Kept state that does not decode.
    #[error("the aggregate's kept state does not decode: {0}")]
    State(String),
    /// Arrow refused a batch.
    #[error("{0}")]
    Arrow(String),
}

fn arrow_err(e: arrow_schema::ArrowError) -> AggError {
    AggError::Arrow(e.to_string())
}

/// A group of one window: its accumulators, and whether they changed since
/// the last checkpoint and were ever checkpointed.
#[derive(Debug, Clone)]
struct Group {
    accs: Vec<Acc>,
    dirty: bool,
    persisted: bool,
}

/// The windowed aggregate operator.
pub struct WindowAggregate {
    window: Hopping,
    keys: Vec<usize>,
    aggs: Vec<Aggregate>,
    /// The input column type each aggregate reads.
    arg_types: Vec<Option<DataType>>,
    output: SchemaRef,
    converter: Option<RowConverter>,
    /// Per distinct aggregate: how its values become comparable bytes.
    distinct: Vec<Option<RowConverter>>,
    /// Open windows by start, each its groups by row-format key.
    windows: BTreeMap<i64, HashMap<Vec<u8>, Group>>,
    /// Groups changed since the last checkpoint (window start, key).
    changed: Vec<(i64, Vec<u8>)>,
    /// Checkpointed groups of windows since emitted: deleted at the next.
    gone: Vec<(i64, Vec<u8>)>,
    /// The last CTI seen, and whether it moved since the last checkpoint.
    cti: Option<i64>,
    cti_moved: bool,
    input: SchemaRef,
    /// Per aggregate, the running user-defined aggregate (none for a built-in).
    users: Vec<Option<Box<dyn UserAggregate>>>,
    /// Whole, or a half of a split aggregate.
    phase: Phase,
}

impl std::fmt::Debug for WindowAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregate")
            .field("window", &self.window)
            .field("keys", &self.keys)
            .field("aggs", &self.aggs)
            .field("open_windows", &self.windows.len())
            .finish()
    }
}

impl WindowAggregate {
    /// An aggregate over `input` (interval first), grouping by the columns
    /// `keys` in `window`, computing `aggs`. Its output is the interval
    /// (the window), the key columns, then one column per aggregate.
    pub fn new(
        input: &Schema,
        window: Hopping,
        keys: Vec<usize>,
        aggs: Vec<Aggregate>,
    ) -> Result<WindowAggregate, AggError> {
        let field = |i: usize| input.fields().get(i).ok_or(AggError::Column(i));
        let mut fields = vec![
            ArrowField::new(START, DataType::Int64, false),
            ArrowField::new(END, DataType::Int64, false),
        ];
        let mut sort = Vec::new();
        for &k in &keys {
            let f = field(k)?;
            fields.push(f.as_ref().clone());
            sort.push(SortField::new(f.data_type().clone()));
        }
        let mut arg_types = Vec::new();
        let mut distinct = Vec::new();
        let mut users = Vec::new();
        for a in &aggs {
            if let Some(call) = &a.user {
                for &i in &call.args {
                    field(i)?;
                }
                let f = &call.function;
                fields.push(ArrowField::new(&a.name, f.returns.clone(), f.nullable));
                distinct.push(None);
                arg_types.push(None);
                users.push(Some((f.make)().map_err(|message| AggError::User {
                    function: format!("{f:?}"),
                    column: a.name.clone(),
                    message,
                })?));
                continue;
            }
            users.push(None);
            let arg = match a.arg {
                Some(i) => Some(field(i)?),
                None => None,
            };
            let ty = arg.map(|f| f.data_type().clone());
            let wrong = |why| AggError::Type {
                function: a.kind.name(),
                column: arg.map(|f| f.name().clone()).unwrap_or_default(),
                ty: format!("{}", ty.clone().unwrap_or(DataType::Null)),
                why,
            };
            let numeric = matches!(ty, Some(DataType::Int64 | DataType::Float64));
            let out = match a.kind {
                AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => {
                    if a.kind != AggKind::CountStar && ty.is_none() {
                        return Err(wrong("needs a column"));
                    }
                    ArrowField::new(&a.name, DataType::Int64, false)
                }
                AggKind::Sum | AggKind::Avg if !numeric => {
                    return Err(wrong("needs an int64 or float64 column"));
                }
                AggKind::Sum => {
                    ArrowField::new(&a.name, ty.clone().unwrap_or(DataType::Int64), true)
                }
                AggKind::Avg => ArrowField::new(&a.name, DataType::Float64, true),
                AggKind::Min | AggKind::Max => match &ty {
                    Some(
                        t @ (DataType::Int64
                        | DataType::Float64
                        | DataType::Utf8
                        | DataType::Boolean),
                    ) => ArrowField::new(&a.name, t.clone(), true),
                    _ => return Err(wrong("needs a column of a comparable type")),
                },
                AggKind::User => return Err(wrong("needs the user-defined function")),
            };
            fields.push(out);
            distinct.push(match (a.kind, &ty) {
                (AggKind::CountDistinct, Some(t)) => {
                    Some(RowConverter::new(vec![SortField::new(t.clone())]).map_err(arrow_err)?)
                }
                _ => None,
            });
            arg_types.push(ty);
        }
        let converter = if sort.is_empty() {
            None
        } else {
            Some(RowConverter::new(sort).map_err(arrow_err)?)
        };
        Ok(WindowAggregate {
            window,
            keys,
            aggs,
            arg_types,
            output: Arc::new(Schema::new(fields)),
            converter,
            distinct,
            windows: BTreeMap::new(),
            changed: Vec::new(),
            gone: Vec::new(),
            cti: None,
            cti_moved: false,
            input: Arc::new(input.clone()),
            users,
            phase: Phase::Whole,
        })
    }

    /// The input schema (interval first).
    pub fn input_schema(&self) -> SchemaRef {
        self.input.clone()
    }

    /// The output schema: interval, key columns, aggregates.
    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// Open windows and the groups they hold (what memory is spent on).
    pub fn open(&self) -> (usize, usize) {
        (
            self.windows.len(),
            self.windows.values().map(HashMap::len).sum(),
        )
    }

    /// Each row's group key as comparable bytes (none without group keys).
    fn group_rows(&self, batch: &RecordBatch) -> Result<Option<Rows>, AggError> {
        let Some(c) = &self.converter else {
            return Ok(None);
        };
        let cols: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|&k| batch.columns().get(k).cloned().ok_or(AggError::Column(k)))
            .collect::<Result<_, _>>()?;
        c.convert_columns(&cols).map(Some).map_err(arrow_err)
    }

    /// Each aggregate's argument column of `batch` (none for `COUNT(*)`).
    fn arg_columns<'a>(
        &self,
        batch: &'a RecordBatch,
    ) -> Result<Vec<Option<&'a ArrayRef>>, AggError> {
        self.aggs
            .iter()
            .map(|a| {
                a.arg
                    .map(|i| batch.columns().get(i).ok_or(AggError::Column(i)))
                    .transpose()
            })
            .collect()
    }

    /// Per aggregate, the comparable bytes of its argument's values (the
    /// distinct ones; none for the others).
    fn distinct_rows(&self, args: &[Option<&ArrayRef>]) -> Result<Vec<Option<Rows>>, AggError> {
        self.distinct
            .iter()
            .zip(args)
            .map(|(c, arg)| match (c, arg) {
                (Some(c), Some(arg)) => c
                    .convert_columns(std::slice::from_ref(*arg))
                    .map(Some)
                    .map_err(arrow_err),
                _ => Ok(None),
            })
            .collect()
    }

    fn fresh(&self) -> Vec<Acc> {
        self.aggs
            .iter()
            .zip(&self.arg_types)
            .map(|(a, ty)| match (a.kind, ty) {
                (AggKind::CountStar | AggKind::Count, _) => Acc::Count(0),
                (AggKind::CountDistinct, _) => Acc::Distinct(BTreeSet::new()),
                (AggKind::Sum, Some(DataType::Float64)) => Acc::SumExact(None),
                (AggKind::Sum, _) => Acc::SumInt(None),
                (AggKind::Avg, Some(DataType::Float64)) => Acc::AvgExact(Default::default(), 0),
                (AggKind::Avg, _) => Acc::AvgInt(0, 0),
                (AggKind::Min, ty) => Acc::Min(Extreme::of(ty.as_ref())),
                (AggKind::Max, ty) => Acc::Max(Extreme::of(ty.as_ref())),
                (AggKind::User, _) => Acc::User(Vec::new()),
            })
            .collect()
    }

    /// Adds a batch of events (interval first, the input schema's columns).
    pub fn on_batch(&mut self, batch: &RecordBatch) -> Result<(), AggError> {
        if self.phase == Phase::Final {
            return self.on_partials(batch);
        }
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let column = |i: usize| batch.columns().get(i).ok_or(AggError::Column(i));
        let starts = int_column(column(0)?)?;
        let ends = int_column(column(1)?)?;
        let rows = self.group_rows(batch)?;
        let args = self.arg_columns(batch)?;
        let distinct = self.distinct_rows(&args)?;
        let fresh = self.fresh();
        let floor = self.cti;
        // With user-defined aggregates: the groups this batch touches, and
        // per (row, window) the row and its group, for one call each.
        let users = self.users.iter().any(Option::is_some);
        let mut slots: HashMap<(i64, &[u8]), u32> = HashMap::new();
        let mut touched: Vec<(i64, &[u8])> = Vec::new();
        let (mut user_rows, mut user_groups) = (Vec::new(), Vec::new());
        for row in 0..n {
            let key: &[u8] = rows.as_ref().map_or(&[], |r| r.row(row).data());
            for start in self.window.starts(starts.value(row), ends.value(row)) {
                let end = self.window.end_of(start);
                // A window a CTI closed already went out; a later event
                // never reaches it (the merge keeps CTIs), but one that did
                // must not make it go out twice.
                if floor.is_some_and(|c| end <= c) {
                    continue;
                }
                let groups = self.windows.entry(start).or_default();
                let group = match groups.get_mut(key) {
                    Some(g) => g,
                    None => groups.entry(key.to_vec()).or_insert(Group {
                        accs: fresh.clone(),
                        dirty: false,
                        persisted: false,
                    }),
                };
                if !group.dirty {
                    group.dirty = true;
                    self.changed.push((start, key.to_vec()));
                }
                for (j, acc) in group.accs.iter_mut().enumerate() {
                    accumulate(acc, args[j], distinct[j].as_ref(), row).map_err(|()| {
                        AggError::Overflow {
                            column: self.aggs[j].name.clone(),
                            start,
                            end,
                        }
                    })?;
                }
                if users {
                    let next = touched.len() as u32;
                    let slot = *slots.entry((start, key)).or_insert_with(|| {
                        touched.push((start, key));
                        next
                    });
                    user_rows.push(row as u32);
                    user_groups.push(slot);
                }
            }
        }
        if touched.is_empty() {
            return Ok(());
        }
        for j in 0..self.aggs.len() {
            if self.users[j].is_none() {
                continue;
            }
            let states: Vec<Vec<u8>> = touched
                .iter()
                .map(|&t| {
                    user_acc(&mut self.windows, t, j)
                        .map(std::mem::take)
                        .unwrap_or_default()
                })
                .collect();
            let result = self.run_user(j, &states, batch, &user_rows, &user_groups);
            // A failed call leaves the accumulators as they were.
            let (after, failed) = match result {
                Ok(after) => (after, None),
                Err(e) => (states, Some(e)),
            };
            for (&t, bytes) in touched.iter().zip(after) {
                if let Some(acc) = user_acc(&mut self.windows, t, j) {
                    *acc = bytes;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Adds rows `rows` of `batch` to the accumulators `states` of the
    /// user-defined aggregate `j` (`groups[i]`: row `rows[i]`'s), in one call.
    fn run_user(
        &mut self,
        j: usize,
        states: &[Vec<u8>],
        batch: &RecordBatch,
        rows: &[u32],
        groups: &[u32],
    ) -> Result<Vec<Vec<u8>>, AggError> {
        let (Some(call), Some(user)) = (&self.aggs[j].user, self.users[j].as_mut()) else {
            return Ok(states.to_vec());
        };
        let fail = |message: String| AggError::User {
            function: format!("{:?}", call.function),
            column: self.aggs[j].name.clone(),
            message,
        };
        let args = user_args(batch, &call.args, rows)?;
        let after = user.accumulate(states, &args, groups).map_err(fail)?;
        if after.len() != states.len() {
            return Err(fail(format!(
                "accumulate returned {} accumulators for {}",
                after.len(),
                states.len()
            )));
        }
        Ok(after)
    }

    /// The output column of aggregate `j` over the accumulators of every
    /// output row (a user-defined aggregate's are taken).
    fn column(&mut self, j: usize, accs: &mut [Vec<Acc>]) -> Result<ArrayRef, AggError> {
        let ty = self
            .output
            .field(2 + self.keys.len() + j)
            .data_type()
            .clone();
        let (Some(call), Some(user)) = (&self.aggs[j].user, self.users[j].as_mut()) else {
            return Ok(finish(accs.iter().map(|a| &a[j]), &ty));
        };
        let states: Vec<Vec<u8>> = accs
            .iter_mut()
            .map(|a| match &mut a[j] {
                Acc::User(bytes) => std::mem::take(bytes),
                _ => Vec::new(),
            })
            .collect();
        let fail = |message: String| AggError::User {
            function: format!("{:?}", call.function),
            column: self.aggs[j].name.clone(),
            message,
        };
        let out = user.finish(&states).map_err(fail)?;
        if out.len() != states.len() || out.data_type() != &ty {
            return Err(fail(format!(
                "finish returned {} values of {} for {} accumulators of {ty}",
                out.len(),
                out.data_type(),
                states.len()
            )));
        }
        if !call.function.nullable && out.null_count() > 0 {
            return Err(fail(
                "finish returned a null for a result declared not nullable".into(),
            ));
        }
        Ok(out)
    }

    /// CTI `t`: the windows it closed (`end <= t`) as one batch, earliest
    /// window first and each window's groups in key order, and the CTI to
    /// pass on: `t`, or the start of the earliest window still open if that
    /// is earlier (later output starts there).
    pub fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), AggError> {
        self.cti = Some(self.cti.map_or(t, |c| c.max(t)));
        self.cti_moved = true;
        // A final phase has every partial of a window once a CTI passes its
        // start (see `split`); a whole or partial one, once it passes its end.
        let last = self.phase == Phase::Final;
        let mut closed = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            let start = *entry.key();
            if (last && start >= t) || (!last && self.window.end_of(start) > t) {
                break;
            }
            closed.push(entry.remove_entry());
        }
        // The earliest window a later event can still reach.
        let next_open = self
            .window
            .starts(t, t.saturating_add(1))
            .next()
            .unwrap_or(t);
        let pass = if last { t } else { t.min(next_open) };
        if closed.is_empty() {
            return Ok((None, pass));
        }
        let batch = self.emit(closed)?;
        Ok((Some(batch), pass))
    }

    fn emit(
        &mut self,
        closed: Vec<(i64, HashMap<Vec<u8>, Group>)>,
    ) -> Result<RecordBatch, AggError> {
        let total: usize = closed.iter().map(|(_, g)| g.len()).sum();
        let (mut starts, mut ends) = (Vec::with_capacity(total), Vec::with_capacity(total));
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(total);
        let mut accs: Vec<Vec<Acc>> = Vec::with_capacity(total);
        for (start, groups) in closed {
            let mut sorted: Vec<(Vec<u8>, Group)> = groups.into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, group) in sorted {
                if group.persisted {
                    self.gone.push((start, key.clone()));
                }
                starts.push(start);
                ends.push(self.window.end_of(start));
                keys.push(key);
                accs.push(group.accs);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        if let Some(c) = &self.converter {
            let parser = c.parser();
            let rows = keys.iter().map(|k| parser.parse(k));
            columns.extend(c.convert_rows(rows).map_err(arrow_err)?);
        }
        if self.phase == Phase::Partial {
            columns.push(split::encode(&accs));
        } else {
            for j in 0..self.aggs.len() {
                columns.push(self.column(j, &mut accs)?);
            }
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(arrow_err)
    }

    /// The groups changed or gone since the last call, as keyed-state
    /// changes (key: window start then group key; value: the accumulators).
    pub fn take_delta(&mut self) -> StateChanges {
        let mut out = Vec::with_capacity(self.changed.len() + self.gone.len() + 1);
        if std::mem::take(&mut self.cti_moved)
            && let Some(t) = self.cti
        {
            out.push(super::cti_change(t));
        }
        for (start, key) in std::mem::take(&mut self.gone) {
            out.push((state_key(start, &key), None));
        }
        for (start, key) in std::mem::take(&mut self.changed) {
            // A group emitted since it changed is gone (above) or never kept.
            let Some(group) = self.windows.get_mut(&start).and_then(|g| g.get_mut(&key)) else {
                continue;
            };
            group.dirty = false;
            group.persisted = true;
            let value = postcard::to_allocvec(&group.accs).expect("accumulators always encode");
            let mut names = BTreeMap::new();
            names.insert(ACCS.to_string(), value);
            out.push((
                state_key(start, &key),
                Some(crate::udf::encode_entry(&names)),
            ));
        }
        out
    }

    /// Takes back the state [`WindowAggregate::take_delta`] wrote.
    pub fn restore(&mut self, state: &KeyedState) -> Result<(), AggError> {
        self.windows.clear();
        self.changed.clear();
        self.gone.clear();
        self.cti = super::cti_of(state);
        self.cti_moved = false;
        for (key, names) in state {
            if key.as_slice() == super::CTI_KEY {
                continue;
            }
            let (Some(start), Some(bytes)) = (key.get(..8), names.get(ACCS)) else {
                return Err(AggError::State(format!("a key of {} bytes", key.len())));
            };
            let start = i64::from_be_bytes(start.try_into().expect("8 bytes")) ^ i64::MIN;
            let accs: Vec<Acc> =
                postcard::from_bytes(bytes).map_err(|e| AggError::State(e.to_string()))?;
            if accs.len() != self.aggs.len() {
                return Err(AggError::State(format!(
                    "{} accumulators for {} aggregates",
                    accs.len(),
                    self.aggs.len()
                )));
            }
            self.windows.entry(start).or_default().insert(
                key[8..].to_vec(),
                Group {
                    accs,
                    dirty: false,
                    persisted: true,
                },
            );
        }
        Ok(())
    }
}

/// The accumulator of user-defined aggregate `j` of a group of a window.
fn user_acc<'a>(
    windows: &'a mut BTreeMap<i64, HashMap<Vec<u8>, Group>>,
    (start, key): (i64, &[u8]),
    j: usize,
) -> Option<&'a mut Vec<u8>> {
    match windows.get_mut(&start)?.get_mut(key)?.accs.get_mut(j)? {
        Acc::User(bytes) => Some(bytes),
        _ => None,
    }
}

/// The columns a user-defined aggregate gets: the interval, then its
/// arguments `args`, at rows `rows` of `batch` (the batch's own when those
/// are all its rows in order).
fn user_args(batch: &RecordBatch, args: &[usize], rows: &[u32]) -> Result<RecordBatch, AggError> {
    let schema = batch.schema();
    let picked: Vec<usize> = [0, 1].into_iter().chain(args.iter().copied()).collect();
    let fields: Vec<ArrowField> = picked.iter().map(|&i| schema.field(i).clone()).collect();
    let all =
        rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(i, &r)| r as usize == i);
    let indices = arrow_array::UInt32Array::from(rows.to_vec());
    let columns = picked
        .iter()
        .map(|&i| {
            let c = batch.column(i);
            if all {
                Ok(c.clone())
            } else {
                arrow_select::take::take(c.as_ref(), &indices, None).map_err(arrow_err)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)
}

/// The name the accumulators are kept under in a group's state.
const ACCS: &str = "accs";

/// A group's state key: the window start (ordered as bytes), then the key.
fn state_key(start: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&(start ^ i64::MIN).to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn int_column(a: &ArrayRef) -> Result<&Int64Array, AggError> {
    a.as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| AggError::Arrow("an interval column is not int64".into()))
}

#[cfg(test)]
mod tests;

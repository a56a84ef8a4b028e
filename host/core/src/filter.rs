//! Runtime filters: predicates over a UDF stage's input rows, added and
//! removed while the job runs (`weir job filter add|remove`), to keep rare
//! inputs that break a UDF (poison events) away from it.
//!
//! A filter is an SQL boolean expression over the stage's input columns:
//! comparisons (`= <> != < <= > >=`) of a column with a literal or another
//! column of the same type, `[NOT] IN (...)`, `[NOT] BETWEEN .. AND ..`,
//! `IS [NOT] NULL`, a boolean column alone, combined with `AND`, `OR`, `NOT`
//! and parentheses. Text literals take single quotes. A row is dropped when a
//! filter is true for it; a comparison with a null is unknown, which keeps the
//! row. Filters are evaluated a whole batch at a time with Arrow kernels.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, RecordBatch, Scalar,
    StringArray,
};
use arrow_schema::{ArrowError, DataType, Schema};
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

/// A filter that does not parse or does not fit the stage's input.
#[derive(Debug, Clone, thiserror::Error)]
#[error("filter `{text}`: {message}{}", at.map(|c| format!(" (at character {c})")).unwrap_or_default())]
pub struct FilterError {
    /// The filter as given.
    pub text: String,
    /// What is wrong.
    pub message: String,
    /// The 1-based character where it is, when known.
    pub at: Option<u64>,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One side of a comparison.
#[derive(Debug, Clone)]
enum Operand {
    /// A column, by index in the input schema.
    Column(usize),
    /// A literal, as a one-row array of the compared column's type.
    Literal(ArrayRef),
}

/// A compiled predicate.
#[derive(Debug, Clone)]
enum Pred {
    Compare(Operand, Cmp, Operand),
    IsNull(usize, bool),
    Flag(usize),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
}

/// A runtime filter compiled against a stage's input schema.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    /// The parsed form, fully parenthesised: equal for filters that differ
    /// only in redundant parentheses, spacing or keyword case.
    key: String,
    pred: Pred,
}

impl Filter {
    /// Parses `text` and checks it against `schema` (the stage's input events).
    pub fn parse(text: &str, schema: &Schema) -> Result<Filter, FilterError> {
        let fail = |message: String, at: Option<u64>| FilterError {
            text: text.trim().to_string(),
            message,
            at,
        };
        let expr = Parser::new(&GenericDialect)
            .try_with_sql(text)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                Ok(e)
            })
            .map_err(|e| fail(e.to_string(), None))?;
        let pred = Compiler { schema, text }.pred(&expr)?;
        Ok(Filter {
            text: expr.to_string(),
            key: key(&expr),
            pred,
        })
    }

    /// Whether `self` and `other` are the same condition, written alike or
    /// not (`(a > 1) or (b = 2)` is `a > 1 OR b = 2`).
    pub fn same(&self, other: &Filter) -> bool {
        self.key == other.key
    }

    /// The filter's canonical text (what status and history show; what
    /// `filter remove` matches).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// For each row of `batch`: true when the filter drops it.
    pub fn drops(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let t = eval(&self.pred, batch)?;
        Ok(if t.null_count() == 0 {
            t
        } else {
            arrow_select::filter::prep_null_mask_filter(&t)
        })
    }
}

/// The rows of `batch` that no filter drops: `None` when every row stays.
pub fn keep(filters: &[Filter], batch: &RecordBatch) -> Result<Option<BooleanArray>, ArrowError> {
    let mut dropped: Option<BooleanArray> = None;
    for f in filters {
        let d = f.drops(batch)?;
        dropped = Some(match dropped {
            None => d,
            Some(prev) => arrow_arith::boolean::or(&prev, &d)?,
        });
    }
    match dropped {
        Some(d) if d.true_count() > 0 => Ok(Some(arrow_arith::boolean::not(&d)?)),
        _ => Ok(None),
    }
}

/// Filters for a message: each in backquotes, or `none` when there are none.
pub fn describe(filters: &[String], none: &str) -> String {
    if filters.is_empty() {
        return none.to_string();
    }
    filters
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `expr` with every operation in parentheses and none of the user's: the
/// same text for the same parse tree whatever the redundant grouping.
fn key(expr: &Expr) -> String {
    match expr {
        Expr::Nested(inner) => key(inner),
        Expr::BinaryOp { left, op, right } => format!("({} {op} {})", key(left), key(right)),
        Expr::UnaryOp { op, expr } => format!("({op} {})", key(expr)),
        Expr::IsNull(e) => format!("({} IS NULL)", key(e)),
        Expr::IsNotNull(e) => format!("({} IS NOT NULL)", key(e)),
        Expr::InList {
            expr,
            list,
            negated,
        } => format!(
            "({} {}IN ({}))",
            key(expr),
            if *negated { "NOT " } else { "" },
            list.iter().map(key).collect::<Vec<_>>().join(", ")
        ),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => format!(
            "({} {}BETWEEN {} AND {})",
            key(expr),
            if *negated { "NOT " } else { "" },
            key(low),
            key(high)
        ),
        other => other.to_string(),
    }
}

fn eval(pred: &Pred, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
    use arrow_arith::boolean as b;
    use arrow_ord::cmp;
    Ok(match pred {
        Pred::Compare(l, op, r) => {
            let datum = |o: &Operand| -> Box<dyn Datum> {
                match o {
                    Operand::Column(i) => Box::new(batch.column(*i).clone()),
                    Operand::Literal(a) => Box::new(Scalar::new(a.clone())),
                }
            };
            let (l, r) = (datum(l), datum(r));
            let (l, r) = (l.as_ref(), r.as_ref());
            match op {
                Cmp::Eq => cmp::eq(l, r)?,
                Cmp::Ne => cmp::neq(l, r)?,
                Cmp::Lt => cmp::lt(l, r)?,
                Cmp::Le => cmp::lt_eq(l, r)?,
                Cmp::Gt => cmp::gt(l, r)?,
                Cmp::Ge => cmp::gt_eq(l, r)?,
            }
        }
        Pred::IsNull(i, true) => b::is_null(batch.column(*i))?,
        Pred::IsNull(i, false) => b::is_not_null(batch.column(*i))?,
        Pred::Flag(i) => batch
            .column(*i)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| ArrowError::InvalidArgumentError("not a boolean column".into()))?
            .clone(),
        Pred::And(l, r) => b::and_kleene(&eval(l, batch)?, &eval(r, batch)?)?,
        Pred::Or(l, r) => b::or_kleene(&eval(l, batch)?, &eval(r, batch)?)?,
        Pred::Not(p) => b::not(&eval(p, batch)?)?,
    })
}

struct Compiler<'a> {
    schema: &'a Schema,
    text: &'a str,
}

impl Compiler<'_> {
    fn fail(&self, message: String, span: Span) -> FilterError {
        FilterError {
            text: self.text.trim().to_string(),
            message,
            at: (span.start.column > 0).then_some(span.start.column),
        }
    }

    fn columns(&self) -> String {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn column(&self, expr: &Expr) -> Result<Option<usize>, FilterError> {
        let Some(ident) = identifier(bare(expr)) else {
            return Ok(None);
        };
        match self.schema.index_of(&ident.value) {
            Ok(i) => Ok(Some(i)),
            Err(_) => {
                let hint = if ident.quote_style == Some('"') {
                    format!("; for the text '{}', use single quotes", ident.value)
                } else {
                    String::new()
                };
                Err(self.fail(
                    format!(
                        "the stage's input has no column `{}` (its columns: {}){hint}",
                        ident.value,
                        self.columns()
                    ),
                    ident.span,
                ))
            }
        }
    }

    fn pred(&self, expr: &Expr) -> Result<Pred, FilterError> {
        use sqlparser::ast::Spanned;
        match expr {
            Expr::Nested(inner) => self.pred(inner),
            Expr::BinaryOp { left, op, right } => {
                let cmp = match op {
                    BinaryOperator::And => {
                        return Ok(Pred::And(
                            Box::new(self.pred(left)?),
                            Box::new(self.pred(right)?),
                        ));
                    }
                    BinaryOperator::Or => {
                        return Ok(Pred::Or(
                            Box::new(self.pred(left)?),
                            Box::new(self.pred(right)?),
                        ));
                    }
                    BinaryOperator::Eq => Cmp::Eq,
                    BinaryOperator::NotEq => Cmp::Ne,
                    BinaryOperator::Lt => Cmp::Lt,
                    BinaryOperator::LtEq => Cmp::Le,
                    BinaryOperator::Gt => Cmp::Gt,
                    BinaryOperator::GtEq => Cmp::Ge,
                    other => {
                        return Err(self.fail(
                            format!("operator {other} is not supported (use = <> < <= > >= AND OR NOT IN BETWEEN IS NULL)"),
                            expr.span(),
                        ));
                    }
                };
                self.compare(left, cmp, right)
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: inner,
            } => Ok(Pred::Not(Box::new(self.pred(inner)?))),
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let i = self.column(inner)?.ok_or_else(|| {
                    self.fail("IS NULL applies to a column".into(), inner.span())
                })?;
                Ok(Pred::IsNull(i, matches!(expr, Expr::IsNull(_))))
            }
            Expr::InList {
                expr: inner,
                list,
                negated,
            } => {
                let mut any: Option<Pred> = None;
                for item in list {
                    let eq = self.compare(inner, Cmp::Eq, item)?;
                    any = Some(match any {
                        None => eq,
                        Some(p) => Pred::Or(Box::new(p), Box::new(eq)),
                    });
                }
                let any = any.ok_or_else(|| self.fail("IN needs a value".into(), expr.span()))?;
                Ok(if *negated {
                    Pred::Not(Box::new(any))
                } else {
                    any
                })
            }
            Expr::Between {
                expr: inner,
                negated,
                low,
                high,
            } => {
                let within = Pred::And(
                    Box::new(self.compare(inner, Cmp::Ge, low)?),
                    Box::new(self.compare(inner, Cmp::Le, high)?),
                );
                Ok(if *negated {
                    Pred::Not(Box::new(within))
                } else {
                    within
                })
            }
            _ if identifier(expr).is_some() => {
                let ident = identifier(expr).expect("checked above");
                let i = self.column(expr)?.unwrap_or_default();
                if self.schema.field(i).data_type() != &DataType::Boolean {
                    return Err(self.fail(
                        format!(
                            "column `{}` is {} and cannot stand alone as a condition; compare it with a value",
                            ident.value,
                            type_name(self.schema.field(i).data_type())
                        ),
                        ident.span,
                    ));
                }
                Ok(Pred::Flag(i))
            }
            other => Err(self.fail(
                format!(
                    "`{other}` is not a condition a filter supports (use comparisons of columns with values, IN, BETWEEN, IS NULL, AND, OR, NOT)"
                ),
                other.span(),
            )),
        }
    }

    fn compare(&self, left: &Expr, cmp: Cmp, right: &Expr) -> Result<Pred, FilterError> {
        use sqlparser::ast::Spanned;
        let (left, right) = (bare(left), bare(right));
        let flip = |c| match c {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            c => c,
        };
        match (self.column(left)?, self.column(right)?) {
            (Some(l), Some(r)) => {
                let (lt, rt) = (
                    self.schema.field(l).data_type(),
                    self.schema.field(r).data_type(),
                );
                if lt != rt {
                    return Err(self.fail(
                        format!(
                            "`{left}` is {} but `{right}` is {}; compare columns of one type",
                            type_name(lt),
                            type_name(rt)
                        ),
                        left.span(),
                    ));
                }
                Ok(Pred::Compare(Operand::Column(l), cmp, Operand::Column(r)))
            }
            (Some(l), None) => Ok(Pred::Compare(
                Operand::Column(l),
                cmp,
                Operand::Literal(self.literal(right, l)?),
            )),
            (None, Some(r)) => Ok(Pred::Compare(
                Operand::Column(r),
                flip(cmp),
                Operand::Literal(self.literal(left, r)?),
            )),
            (None, None) if !is_literal(left) => Err(self.not_literal(left)),
            (None, None) if !is_literal(right) => Err(self.not_literal(right)),
            (None, None) => Err(self.fail(
                format!("`{left}` and `{right}` name no column; a filter compares a column"),
                left.span(),
            )),
        }
    }

    /// `expr` as a one-row array of column `column`'s type.
    fn literal(&self, expr: &Expr, column: usize) -> Result<ArrayRef, FilterError> {
        use sqlparser::ast::Spanned;
        let field = self.schema.field(column);
        let (negative, value) = match expr {
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } => match inner.as_ref() {
                Expr::Value(v) => (true, &v.value),
                _ => return Err(self.not_literal(expr)),
            },
            Expr::Value(v) => (false, &v.value),
            _ => return Err(self.not_literal(expr)),
        };
        let mismatch = || {
            self.fail(
                format!(
                    "column `{}` is {} but {expr} is not",
                    field.name(),
                    type_name(field.data_type())
                ),
                expr.span(),
            )
        };
        if matches!(value, Value::Null) {
            return Err(self.fail(
                format!(
                    "a comparison with NULL is never true; write `{} IS NULL`",
                    field.name()
                ),
                expr.span(),
            ));
        }
        let sign = if negative { "-" } else { "" };
        Ok(match (field.data_type(), value) {
            (DataType::Int64, Value::Number(n, _)) => {
                let v: i64 = format!("{sign}{n}").parse().map_err(|_| mismatch())?;
                Arc::new(Int64Array::from(vec![v]))
            }
            (DataType::Float64, Value::Number(n, _)) => {
                let v: f64 = format!("{sign}{n}").parse().map_err(|_| mismatch())?;
                Arc::new(Float64Array::from(vec![v]))
            }
            (DataType::Utf8, Value::SingleQuotedString(s)) if !negative => {
                Arc::new(StringArray::from(vec![s.as_str()]))
            }
            (DataType::Boolean, Value::Boolean(b)) if !negative => {
                Arc::new(BooleanArray::from(vec![*b]))
            }
            _ => return Err(mismatch()),
        })
    }

    fn not_literal(&self, expr: &Expr) -> FilterError {
        use sqlparser::ast::Spanned;
        self.fail(
            format!(
                "`{expr}` is neither a column nor a value (arithmetic and functions are not supported)"
            ),
            expr.span(),
        )
    }
}

/// Whether `expr` is a value (possibly negated).
fn is_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => matches!(expr.as_ref(), Expr::Value(_)),
        _ => false,
    }
}

/// The name `expr` is, if it is one: a plain identifier, or a word SQL
/// reads as an argument-less function (`user`, `current_date`).
/// `expr` without the parentheses around it.
fn bare(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

fn identifier(expr: &Expr) -> Option<&sqlparser::ast::Ident> {
    match expr {
        Expr::Identifier(ident) => Some(ident),
        Expr::Function(f) if matches!(f.args, sqlparser::ast::FunctionArguments::None) => {
            match f.name.0.as_slice() {
                [sqlparser::ast::ObjectNamePart::Identifier(ident)] => Some(ident),
                _ => None,
            }
        }
        _ => None,
    }
}

fn type_name(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "boolean",
        DataType::Utf8 => "utf8",
        _ => "of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, event_schema, field};

    fn schema() -> arrow_schema::SchemaRef {
        event_schema(&[
            field("user", ColumnType::Utf8, false),
            field("amount", ColumnType::Int64, true),
            field("price", ColumnType::Float64, false),
            field("bot", ColumnType::Boolean, false),
        ])
    }

    fn batch() -> RecordBatch {
        let ints = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
        RecordBatch::try_new(
            schema(),
            vec![
                ints(vec![Some(0), Some(1), Some(2), Some(3)]),
                ints(vec![Some(1), Some(2), Some(3), Some(4)]),
                Arc::new(StringArray::from(vec!["ann", "bob", "cy", "bob"])),
                ints(vec![Some(13), None, Some(7), Some(-5)]),
                Arc::new(Float64Array::from(vec![1.5, 2.0, -0.5, 9.0])),
                Arc::new(BooleanArray::from(vec![false, true, false, false])),
            ],
        )
        .unwrap()
    }

    fn dropped(text: &str) -> Vec<bool> {
        let f = Filter::parse(text, &schema()).unwrap();
        f.drops(&batch())
            .unwrap()
            .iter()
            .map(|b| b.unwrap())
            .collect()
    }

    #[test]
    fn filters_drop_the_rows_they_match() {
        assert_eq!(dropped("amount = 13"), [true, false, false, false]);
        assert_eq!(dropped("-5 = amount"), [false, false, false, true]);
        assert_eq!(
            dropped("user = 'bob' and amount > 0"),
            [false, false, false, false]
        );
        // Unknown (a null amount) keeps the row; NOT unknown is unknown.
        assert_eq!(dropped("not amount < 10"), [true, false, false, false]);
        assert_eq!(
            dropped("amount is null or bot"),
            [false, true, false, false]
        );
        assert_eq!(dropped("user in ('ann', 'cy')"), [true, false, true, false]);
        assert_eq!(dropped("user not in ('ann')"), [false, true, true, true]);
        assert_eq!(dropped("price between 0 and 2"), [true, true, false, false]);
        assert_eq!(
            dropped("_start >= 2 and (price < 0 or bot)"),
            [false, false, true, false]
        );
        assert_eq!(dropped("amount < _end"), [false, false, false, true]);
        let f = Filter::parse("  amount=13 AND   user <> 'x'", &schema()).unwrap();
        assert_eq!(f.text(), "amount = 13 AND user <> 'x'");
    }

    #[test]
    fn filters_are_the_same_when_they_parse_alike() {
        let s = schema();
        let f = |text: &str| Filter::parse(text, &s).unwrap();
        let plain = f("amount > 1 or user = 'u11'");
        assert!(plain.same(&f("(amount > 1) or (user = 'u11')")));
        assert!(plain.same(&f("((amount>1)) OR user='u11'")));
        assert!(f("amount not in (1, 2)").same(&f("(amount) NOT IN ((1), 2)")));
        assert!(f("price between 0 and 2").same(&f("price BETWEEN (0) AND 2")));
        // Parentheses that change the grouping make another filter.
        let grouped = f("bot and (amount = 1 or amount = 2)");
        assert!(!grouped.same(&f("bot and amount = 1 or amount = 2")));
        assert!(!plain.same(&f("amount > 1 or user = 'u12'")));
        assert!(!f("amount is null").same(&f("amount is not null")));
    }

    #[test]
    fn several_filters_keep_what_none_drops() {
        let s = schema();
        let fs = [
            Filter::parse("amount = 13", &s).unwrap(),
            Filter::parse("bot", &s).unwrap(),
        ];
        let keep = keep(&fs, &batch()).unwrap().unwrap();
        assert_eq!(
            keep.iter().map(Option::unwrap).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        assert!(keep_none(&s));
    }

    fn keep_none(s: &Schema) -> bool {
        let f = Filter::parse("amount = 1000", s).unwrap();
        keep(&[f], &batch()).unwrap().is_none()
    }

    #[test]
    fn bad_filters_say_what_and_where() {
        let err = |text: &str| Filter::parse(text, &schema()).unwrap_err().to_string();
        let e = err("amount = 13 and usr = 'x'");
        assert!(
            e.contains("no column `usr`") && e.contains("at character 17"),
            "{e}"
        );
        assert!(e.contains("user, amount"), "{e}");
        let e = err("user = \"bob\"");
        assert!(e.contains("use single quotes"), "{e}");
        let e = err("amount = 'x'");
        assert!(e.contains("column `amount` is int64 but 'x' is not"), "{e}");
        let e = err("amount = 1.5");
        assert!(e.contains("is int64 but 1.5 is not"), "{e}");
        let e = err("amount = null");
        assert!(e.contains("IS NULL"), "{e}");
        let e = err("amount");
        assert!(e.contains("cannot stand alone"), "{e}");
        let e = err("user = amount");
        assert!(e.contains("utf8") && e.contains("int64"), "{e}");
        let e = err("amount + 1 = 2");
        assert!(
            e.contains("`amount + 1` is neither a column nor a value"),
            "{e}"
        );
        let e = err("amount like 'x'");
        assert!(e.contains("not a condition a filter supports"), "{e}");
        let e = err("amount = = 2");
        assert!(e.starts_with("filter `amount = = 2`: "), "{e}");
        let e = err("amount = 2 garbage");
        assert!(e.contains("garbage"), "{e}");
        let e = err("1 = 1");
        assert!(e.contains("name no column"), "{e}");
    }
}

//! A query statement: its window, lifetime, parallelism and replicate
//! clauses taken out, the rest parsed by `sqlparser`.

use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};
use weir_core::temporal::{Hopping, Lifetime};

use super::{Cursor, Select, Window, error};
use crate::error::ScriptError;

/// The most rVertices a stage may run as.
pub const MAX_PARALLELISM: usize = 256;

/// A parallelism: a whole number from 1 to [`MAX_PARALLELISM`].
pub(crate) fn parallelism(c: &mut Cursor<'_>) -> Result<usize, ScriptError> {
    whole(
        c,
        "parallelism",
        MAX_PARALLELISM,
        ("a parallelism", "4", ""),
    )
}

/// A replication: a whole number from 1 to [`weir_core::plan::MAX_REPLICATE`].
pub(crate) fn replicate(c: &mut Cursor<'_>) -> Result<usize, ScriptError> {
    let what = (
        "a number of instances",
        "2",
        " (instances of each rVertex, on different members of a cluster)",
    );
    whole(c, "replicate", weir_core::plan::MAX_REPLICATE, what)
}

/// A whole number from 1 to `most` for clause `clause`; `(noun, example,
/// meaning)` word the errors.
fn whole(
    c: &mut Cursor<'_>,
    clause: &str,
    most: usize,
    (noun, example, meaning): (&str, &str, &str),
) -> Result<usize, ScriptError> {
    let at = c.at();
    match c.peek().map(|t| t.token.clone()) {
        Some(Token::Number(n, _)) => {
            c.pos += 1;
            match n.parse::<usize>() {
                Ok(n) if (1..=most).contains(&n) => Ok(n),
                _ => Err(error(
                    c.file,
                    at,
                    format!("{clause} {n}: expected a whole number from 1 to {most}{meaning}"),
                )),
            }
        }
        _ => c.fail(&format!("{noun} (a whole number, e.g. {example})")),
    }
}

impl Cursor<'_> {
    /// A cursor over the arguments of the clause whose `WITH` is token `i`.
    fn clause(&self, i: usize) -> Cursor<'_> {
        Cursor {
            file: self.file,
            tokens: self.tokens[i + 2..].to_vec(),
            pos: 0,
            end: self.end,
        }
    }
}

pub(super) fn select(mut c: Cursor<'_>, name: String, at: Location) -> Result<Select, ScriptError> {
    // The window and lifetime clauses, at the top level of the query, come
    // out first.
    let mut window = None;
    let mut lifetime = None;
    let mut point_at = None;
    let mut limit_by = Vec::new();
    let mut parallelism_clause = None;
    let mut replicate_clause = None;
    let mut depth = 0;
    let mut i = c.pos;
    while i < c.tokens.len() {
        match &c.tokens[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("WITH") => {
                let kind = match c.tokens.get(i + 1).map(|t| &t.token) {
                    Some(Token::Word(k)) => k.value.to_ascii_uppercase(),
                    _ => String::new(),
                };
                if kind == "TUMBLING" || kind == "HOPPING" || kind == "SESSION" {
                    if window.is_some() {
                        return Err(error(
                            c.file,
                            c.tokens[i].span.start,
                            "a query has one window clause".into(),
                        ));
                    }
                    let clause_at = c.tokens[i].span.start;
                    let mut w = c.clause(i);
                    w.expect(Token::LParen)?;
                    let size = w.duration()?;
                    let hop = if kind == "HOPPING" {
                        w.expect(Token::Comma)?;
                        w.duration()?
                    } else {
                        size
                    };
                    w.expect(Token::RParen)?;
                    let hopping = Hopping::new(size, hop)
                        .map_err(|e| error(c.file, clause_at, e.to_string()))?;
                    window = Some(Window {
                        hopping,
                        session: (kind == "SESSION").then_some(size),
                        at: clause_at,
                    });
                    c.tokens.drain(i..i + 2 + w.pos);
                    continue;
                }
                if kind == "PARALLELISM" {
                    let clause_at = c.tokens[i].span.start;
                    if parallelism_clause.is_some() {
                        return Err(error(
                            c.file,
                            clause_at,
                            "a query has one parallelism clause".into(),
                        ));
                    }
                    let mut w = c.clause(i);
                    parallelism_clause = Some((parallelism(&mut w)?, clause_at));
                    c.tokens.drain(i..i + 2 + w.pos);
                    continue;
                }
                if kind == "REPLICATE" {
                    let clause_at = c.tokens[i].span.start;
                    if replicate_clause.is_some() {
                        return Err(error(
                            c.file,
                            clause_at,
                            "a query has one replicate clause".into(),
                        ));
                    }
                    let mut w = c.clause(i);
                    replicate_clause = Some((replicate(&mut w)?, clause_at));
                    c.tokens.drain(i..i + 2 + w.pos);
                    continue;
                }
                if matches!(kind.as_str(), "LIFETIME" | "SHIFT" | "EXTEND" | "POINT") {
                    let clause_at = c.tokens[i].span.start;
                    if lifetime.is_some() {
                        return Err(error(
                            c.file,
                            clause_at,
                            "a query has one lifetime clause".into(),
                        ));
                    }
                    let mut w = c.clause(i);
                    // SHIFT and EXTEND may go back in time.
                    let signed = |w: &mut Cursor<'_>| -> Result<i64, ScriptError> {
                        let minus = w.peek().is_some_and(|t| t.token == Token::Minus);
                        if minus {
                            w.pos += 1;
                        }
                        Ok(if minus { -w.duration()? } else { w.duration()? })
                    };
                    let change = match kind.as_str() {
                        "LIFETIME" => Lifetime::Duration(w.duration()?),
                        "SHIFT" => Lifetime::Shift(signed(&mut w)?),
                        "EXTEND" => Lifetime::Extend(signed(&mut w)?),
                        _ => {
                            // `WITH POINT AT column`: a point at the column's time.
                            if w.keyword("AT") {
                                let col_at = w.at();
                                point_at = Some((w.ident("a time column")?, col_at));
                            }
                            Lifetime::Point
                        }
                    };
                    lifetime = Some((change, clause_at));
                    c.tokens.drain(i..i + 2 + w.pos);
                    continue;
                }
            }
            // `LIMIT n BY column, ...`: a top-N per window and key.
            Token::Word(w)
                if depth == 0
                    && w.value.eq_ignore_ascii_case("LIMIT")
                    && matches!(
                        c.tokens.get(i + 1).map(|t| &t.token),
                        Some(Token::Number(..))
                    )
                    && matches!(c.tokens.get(i + 2).map(|t| &t.token), Some(Token::Word(b)) if b.value.eq_ignore_ascii_case("BY")) =>
            {
                let mut w = c.clause(i + 1);
                loop {
                    let col_at = w.at();
                    limit_by.push((w.ident("a column to rank within")?, col_at));
                    if w.peek().is_some_and(|t| t.token == Token::Comma) {
                        w.pos += 1;
                    } else {
                        break;
                    }
                }
                c.tokens.drain(i + 2..i + 3 + w.pos);
                i += 2;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let tokens = c.tokens[c.pos..].to_vec();
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let query = parser
        .parse_query()
        .map_err(|e| parser_error(c.file, e, c.end))?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(error(
            c.file,
            rest.span.start,
            format!("expected `;` after the query, found `{}`", rest.token),
        ));
    }
    Ok(Select {
        name,
        query,
        window,
        lifetime,
        point_at,
        limit_by,
        parallelism: parallelism_clause,
        replicate: replicate_clause,
        at,
    })
}

/// A `sqlparser` error, its position taken out of the message.
fn parser_error(file: &str, e: ParserError, end: Location) -> ScriptError {
    let text = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the query nests too deeply".into(),
    };
    // "... at Line: 3, Column: 9"
    let (message, at) = match text.rfind(" at Line: ") {
        Some(i) => {
            let place = &text[i + " at Line: ".len()..];
            let mut parts = place.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            match (line, column) {
                (Some(line), Some(column)) => (text[..i].to_string(), Location { line, column }),
                _ => (text.clone(), end),
            }
        }
        None => (text.clone(), end),
    };
    let message = message.replace("found: EOF", "found: `;`");
    error(file, at, message)
}

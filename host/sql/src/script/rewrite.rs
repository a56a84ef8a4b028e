//! A script at another size: its Nexmark inputs' parameters set anew and
//! its outputs sent nowhere, the rest of its text untouched (how `weir bench
//! nexmark` runs the examples at a benchmark's size without writing their
//! output).

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::{error, parse};
use crate::error::ScriptError;

/// `text` with each `INPUT NEXMARK` statement's parameters `set` (those it
/// gives otherwise kept) and, if `discard`, each output `TO DISCARD`.
/// `text` must be a script that parses; the result parses too.
pub fn rewrite(
    file: &str,
    text: &str,
    set: &[(&str, u64)],
    discard: bool,
) -> Result<String, ScriptError> {
    parse(file, text)?;
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| error(file, e.location, e.message))?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let offset = Offsets::new(text);
    // (from, to, replacement) in byte offsets, in text order.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let word = |t: Option<&TokenWithSpan>, w: &str| matches!(t.map(|t| &t.token), Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    for statement in tokens.split(|t| t.token == Token::SemiColon) {
        let s = statement;
        if word(s.first(), "OUTPUT") && discard && s.len() >= 4 && !word(s.get(3), "DISCARD") {
            edits.push((
                offset.of(s[3].span.start),
                offset.of(s[3].span.end),
                "DISCARD".into(),
            ));
        }
        if !set.is_empty() && s.len() >= 5 && word(s.get(2), "INPUT") && word(s.get(3), "NEXMARK") {
            let mut params: Vec<(String, String)> = Vec::new();
            let (from, to) = if s.get(5).is_some_and(|t| t.token == Token::LParen) {
                let close = s
                    .iter()
                    .position(|t| t.token == Token::RParen)
                    .expect("a script that parses closes its parameters");
                for p in s[6..close].split(|t| t.token == Token::Comma) {
                    if let [name, _, value] = p {
                        params.push((name.token.to_string(), value.token.to_string()));
                    }
                }
                (s[5].span.start, s[close].span.end)
            } else {
                (s[4].span.end, s[4].span.end)
            };
            for (name, value) in set {
                match params
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                {
                    Some(p) => p.1 = value.to_string(),
                    None => params.push((name.to_string(), value.to_string())),
                }
            }
            let list: Vec<String> = params.iter().map(|(n, v)| format!("{n} => {v}")).collect();
            let gap = if from == to { " " } else { "" };
            edits.push((
                offset.of(from),
                offset.of(to),
                format!("{gap}({})", list.join(", ")),
            ));
        }
    }
    let mut out = text.to_string();
    for (from, to, with) in edits.into_iter().rev() {
        out.replace_range(from..to, &with);
    }
    parse(file, &out)?;
    Ok(out)
}

/// Byte offsets of a text's locations (1-based lines and columns in chars).
struct Offsets<'a> {
    text: &'a str,
    lines: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { text, lines }
    }

    fn of(&self, at: Location) -> usize {
        let start = self.lines[(at.line as usize)
            .saturating_sub(1)
            .min(self.lines.len() - 1)];
        self.text[start..]
            .char_indices()
            .nth((at.column as usize).saturating_sub(1))
            .map_or(self.text.len(), |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nexmark_parameters_are_set_and_outputs_discarded() {
        let text = "-- q\nBid = INPUT NEXMARK BID (events => 1000, rate => 10);\n\
                    Person = input nexmark PERSON LIFETIME 1d;\n\
                    Q = SELECT price FROM Bid; -- é\n\
                    OUTPUT Q TO \"out/q.jsonl\" WITH INTERVAL;\n";
        let got = rewrite("q.wsql", text, &[("events", 5), ("pace", 0)], true).expect("rewrites");
        assert_eq!(
            got,
            "-- q\nBid = INPUT NEXMARK BID (events => 5, rate => 10, pace => 0);\n\
             Person = input nexmark PERSON (events => 5, pace => 0) LIFETIME 1d;\n\
             Q = SELECT price FROM Bid; -- é\n\
             OUTPUT Q TO DISCARD WITH INTERVAL;\n"
        );
        let kept = rewrite("q.wsql", text, &[], false).expect("rewrites");
        assert_eq!(kept, text);
    }

    #[test]
    fn a_script_that_does_not_parse_is_its_error() {
        let e = rewrite("q.wsql", "Bid = INPUT NEXMARK BIDS;", &[], true).unwrap_err();
        assert_eq!((e.line, e.column), (1, 21));
    }
}

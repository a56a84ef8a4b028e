//! A flat-map: splits text into lower-case words, one output row per word.

use weir_sdk::Row;

/// The column this tokenizer reads.
#[derive(Row, Clone, Debug)]
pub struct Line {
    pub text: String,
}

/// One word and its position in the line.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Word {
    pub word: String,
    pub position: i64,
}

/// The words of a line, skipping those shorter than `min_len` (default 1).
pub fn tokenize(line: Line) -> Vec<Word> {
    let min_len = weir_sdk::params().int("min_len").unwrap_or(1).max(1) as usize;
    line.text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= min_len)
        .enumerate()
        .map(|(i, w)| Word {
            word: w.to_lowercase(),
            position: i as i64,
        })
        .collect()
}

weir_sdk::export_flat_map!(tokenize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        let out = weir_sdk::testing::Harness::new()
            .param("min_len", 2i64)
            .flat_map(
                tokenize,
                vec![
                    Line {
                        text: "To be, or NOT to be".into(),
                    },
                    Line {
                        text: String::new(),
                    },
                ],
            )
            .unwrap();
        let words: Vec<_> = out.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, ["to", "be", "or", "not", "to", "be"]);
    }
}

//! A scalar function for Nexmark q14: how many times a character occurs in
//! a text (`count_char(extra, 'c')`).

use weir_sdk::Row;

/// The function's arguments: the text and the character (its first one;
/// an empty one occurs nowhere).
#[derive(Row, Clone, Debug)]
pub struct Args<'a> {
    pub text: &'a str,
    pub ch: &'a str,
}

/// The number of occurrences of `ch`'s first character in `text`.
pub fn count_char(a: Args<'_>) -> i64 {
    match a.ch.chars().next() {
        Some(c) if c.is_ascii() => bytecount(a.text.as_bytes(), c as u8),
        Some(c) => a.text.chars().filter(|x| *x == c).count() as i64,
        None => 0,
    }
}

fn bytecount(text: &[u8], b: u8) -> i64 {
    text.iter().filter(|x| **x == b).count() as i64
}

weir_sdk::export_scalar!(count_char);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_character() {
        let out = weir_sdk::testing::Harness::new()
            .scalar(
                count_char,
                vec![
                    Args {
                        text: "abcabc c",
                        ch: "c",
                    },
                    Args {
                        text: "héé",
                        ch: "é",
                    },
                    Args {
                        text: "abc",
                        ch: "",
                    },
                ],
            )
            .unwrap();
        assert_eq!(out, [3, 2, 0]);
    }
}

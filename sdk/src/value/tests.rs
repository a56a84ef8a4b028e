//! Tests of reading and building columns.

use super::utf8::*;
use super::*;

#[test]
fn an_inversion_anywhere_is_found() {
    for len in 0..40u32 {
        let values: Vec<u32> = (0..len).map(|i| i * 2 + 1).collect();
        assert!(non_decreasing(&values), "{values:?}");
        for at in 1..len as usize {
            let mut bad = values.clone();
            bad[at] = bad[at - 1] - 1;
            assert!(!non_decreasing(&bad), "{bad:?}");
        }
    }
}

#[test]
fn strings_of_every_length_append_from_an_empty_builder() {
    // From no room at all, so that both copies and every growth run.
    let mut builder = VarWidth {
        offsets: vec![0],
        data: Vec::new(),
    };
    let texts: Vec<String> = (0..200).map(|i| "é.x".repeat(i % 23)).collect();
    for t in &texts {
        push_str(t, &mut builder);
    }
    let column = utf8_column(builder);
    let reader = str_reader("s", &column, texts.len()).expect("valid");
    for (i, t) in texts.iter().enumerate() {
        // SAFETY: `i` is one of the rows checked.
        assert_eq!(unsafe { str_at(&reader, i) }, t);
    }
}

#[test]
fn a_high_byte_anywhere_is_found() {
    for len in 0..140 {
        let text = vec![b'a'; len];
        assert!(is_ascii(&text));
        for at in 0..len {
            let mut bad = text.clone();
            bad[at] = 0xc3;
            assert!(!is_ascii(&bad), "len {len}, at {at}");
        }
    }
}

//! UTF-8 columns: `String` and `&str` values, read through offsets checked
//! once per batch, and passed through untouched while equal.

use super::*;

/// Offsets and text of a UTF-8 column, checked once per batch (see
/// [`ReadValue`]), so that reading a row is two loads and no branch.
///
/// ```
/// // Rows "a" and "bc": offsets 0, 1, 3 into the text.
/// let reader: weir_sdk::StrReader<'_> = (&[0, 1, 3], "abc");
/// assert_eq!(&reader.1[reader.0[1] as usize..reader.0[2] as usize], "bc");
/// ```
pub type StrReader<'a> = (&'a [u32], &'a str);

pub(super) fn str_reader<'a>(
    name: &str,
    column: &'a Column,
    rows: usize,
) -> Result<StrReader<'a>, UdfError> {
    let Values::Utf8(v) = &column.values else {
        return Err(type_mismatch(name, ColumnType::Utf8, column));
    };
    if rows == 0 {
        return Ok((&[], ""));
    }
    let Some(offsets) = v.offsets.get(..=rows) else {
        return Err(too_short(name, v.offsets.len().saturating_sub(1), rows));
    };
    let bad = |what: String| UdfError::new(format!("column `{name}`: {what}"));
    // ASCII text (the common case) is UTF-8 with a character boundary at every
    // byte, so only the order of the offsets needs checking.
    let ascii = is_ascii(&v.data);
    let text = if ascii {
        // SAFETY: ASCII bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&v.data) }
    } else {
        std::str::from_utf8(&v.data)
            .map_err(|e| UdfError::new(format!("column `{name}` is not valid UTF-8: {e}")))?
    };
    // One pass without branches; the slow pass below only names the culprit.
    let ordered = non_decreasing(offsets) && offsets[rows] as usize <= text.len();
    if !ordered || (!ascii && !offsets.iter().all(|&o| text.is_char_boundary(o as usize))) {
        let mut prev = offsets[0];
        for (i, &o) in offsets.iter().enumerate() {
            if o < prev || o as usize > text.len() || !text.is_char_boundary(o as usize) {
                return Err(bad(format!(
                    "offset {i} ({o}) is out of order, past the data ({} bytes) or inside a character",
                    text.len()
                )));
            }
            prev = o;
        }
    }
    Ok((offsets, text))
}

/// Whether every byte is ASCII. `<[u8]>::is_ascii` stops at the first
/// non-ASCII word, a branch per 4 bytes on wasm32; this folds 8 bytes at a time
/// without branching, which is several times faster under fuel metering.
pub(super) fn is_ascii(bytes: &[u8]) -> bool {
    // Eight words a step: fewer loop iterations, each metered for fuel.
    let (blocks, rest) = bytes.as_chunks::<64>();
    let mut high = 0u64;
    for b in blocks {
        let (w, _) = b.as_chunks::<8>();
        high |= (u64::from_le_bytes(w[0]) | u64::from_le_bytes(w[1]))
            | (u64::from_le_bytes(w[2]) | u64::from_le_bytes(w[3]))
            | (u64::from_le_bytes(w[4]) | u64::from_le_bytes(w[5]))
            | (u64::from_le_bytes(w[6]) | u64::from_le_bytes(w[7]));
    }
    for &b in rest {
        high |= u64::from(b);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// Whether `values` never decrease, without a branch per value.
pub(super) fn non_decreasing(values: &[u32]) -> bool {
    let Some(&first) = values.first() else {
        return true;
    };
    let (blocks, rest) = values.as_chunks::<8>();
    let (mut ok, mut prev) = (true, first);
    for &[a, b, c, d, e, f, g, h] in blocks {
        ok &= ((prev <= a) & (a <= b) & (b <= c) & (c <= d))
            & ((d <= e) & (e <= f) & (f <= g) & (g <= h));
        prev = h;
    }
    for &v in rest {
        ok &= prev <= v;
        prev = v;
    }
    ok
}

/// # Safety
/// `row` is less than the `rows` the reader was checked for.
#[inline]
pub(super) unsafe fn str_at<'a>(reader: &StrReader<'a>, row: usize) -> &'a str {
    let (offsets, text) = *reader;
    // SAFETY: `str_reader` checked `rows + 1` offsets, in order, within the text
    // and on character boundaries, and the caller promises `row < rows`.
    unsafe {
        let start = *offsets.get_unchecked(row) as usize;
        let end = *offsets.get_unchecked(row + 1) as usize;
        text.get_unchecked(start..end)
    }
}

pub(super) fn var_width_builder(capacity: usize) -> VarWidth {
    let mut offsets = Vec::with_capacity(capacity + 1);
    offsets.push(0);
    VarWidth {
        offsets,
        data: Vec::with_capacity(capacity * 8),
    }
}

#[inline]
pub(super) fn push_str(s: &str, builder: &mut VarWidth) {
    let bytes = s.as_bytes();
    let data = &mut builder.data;
    // Room for `SMALL` bytes at least, so that a short string is copied with
    // `copy_small`'s fixed moves. Growing goes by value (see `push_value`).
    let room = bytes.len().max(SMALL);
    if data.capacity() - data.len() < room {
        *data = grown(std::mem::take(data), room);
    }
    // SAFETY: there is room for `bytes.len()` more bytes, and both copies write
    // exactly that many.
    unsafe {
        let end = data.as_mut_ptr().add(data.len());
        if bytes.len() <= SMALL {
            copy_small(bytes, end);
        } else {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), end, bytes.len());
        }
        data.set_len(data.len() + bytes.len());
    }
    push_value(&mut builder.offsets, data.len() as u32);
}

/// Strings up to this long are copied by [`copy_small`].
const SMALL: usize = 16;

/// Copies a string of at most [`SMALL`] bytes with a few overlapping word moves.
/// In a Wasm guest, `memcpy` of a length known only at run time is a
/// `memory.copy`, which leaves compiled code for a call into the runtime: far
/// dearer than the copy itself for the short strings most columns hold.
///
/// # Safety
/// `dst` is valid for writing `src.len()` bytes, and `src.len() <= SMALL`.
#[inline(always)]
pub(super) unsafe fn copy_small(src: &[u8], dst: *mut u8) {
    use std::ptr::{read_unaligned, write_unaligned};
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY: every read is within `src` and every write within `dst[..n]`.
    unsafe {
        if n >= 8 {
            let (a, b) = (
                read_unaligned(s.cast::<u64>()),
                read_unaligned(s.add(n - 8).cast::<u64>()),
            );
            write_unaligned(dst.cast::<u64>(), a);
            write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let (a, b) = (
                read_unaligned(s.cast::<u32>()),
                read_unaligned(s.add(n - 4).cast::<u32>()),
            );
            write_unaligned(dst.cast::<u32>(), a);
            write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            let (a, b, c) = (*s, *s.add(n / 2), *s.add(n - 1));
            *dst = a;
            *dst.add(n / 2) = b;
            *dst.add(n - 1) = c;
        }
    }
}

/// A string column as a source of pass-through values: its offsets (at least
/// `rows + 1` of them) and bytes. Unlike a [`StrReader`] it is not checked
/// beyond the offsets' count, since it is only compared with valid strings:
/// that check would cost a second pass over a column the row reader has
/// already checked.
///
/// ```
/// let source: weir_sdk::StrSource<'_> = (&[0, 2], b"hi");
/// assert_eq!(source.1.len(), 2);
/// ```
pub type StrSource<'s> = (&'s [u32], &'s [u8]);

pub(super) fn str_source(column: &Column, rows: usize) -> Option<StrSource<'_>> {
    match &column.values {
        Values::Utf8(v) if v.offsets.len() > rows => Some((&v.offsets, &v.data)),
        _ => None,
    }
}

/// The bytes of row `row` of a string source, if its offsets make sense.
///
/// # Safety
/// `row` is less than the `rows` the source was checked for.
#[inline]
pub(super) unsafe fn str_source_at<'s>(source: &StrSource<'s>, row: usize) -> Option<&'s [u8]> {
    // SAFETY: forwarded from the caller.
    let (a, b) = unsafe { str_bounds(source, row) };
    source.1.get(a as usize..b as usize)
}

/// The offsets that bound row `row` of a string source (not yet checked
/// against its data).
///
/// # Safety
/// `row` is less than the `rows` the source was checked for.
#[inline(always)]
pub(super) unsafe fn str_bounds(source: &StrSource<'_>, row: usize) -> (u32, u32) {
    let offsets = source.0;
    // SAFETY: `str_source` checked there are `rows + 1` offsets and the caller
    // promises `row < rows`.
    unsafe { (*offsets.get_unchecked(row), *offsets.get_unchecked(row + 1)) }
}

/// Whether `value` is exactly row `row` of a string source: the same bytes,
/// found at once when the value was borrowed from that very row.
///
/// # Safety
/// `row` is less than the `rows` the source was checked for.
#[inline]
pub(super) unsafe fn same_str(value: &str, source: &StrSource<'_>, row: usize) -> bool {
    let data = source.1;
    // SAFETY: forwarded from the caller.
    let (a, b) = unsafe { str_bounds(source, row) };
    // A value borrowed from this very row: its bytes are the row's, found
    // without reading them (addresses only, so no bounds check is needed).
    let here = data.as_ptr().wrapping_add(a as usize) == value.as_ptr()
        && b.wrapping_sub(a) as usize == value.len();
    here || equal_bytes(value, data, a, b)
}

/// Whether `data[a..b]` holds `value`'s bytes, read and compared. Its
/// arguments are plain values, so that calling it does not put the source in
/// memory on every row.
#[cold]
#[inline(never)]
pub(super) fn equal_bytes(value: &str, data: &[u8], a: u32, b: u32) -> bool {
    data.get(a as usize..b as usize)
        .is_some_and(|s| s == value.as_bytes())
}

/// Appends row `row` of a string source, which a string compared equal to.
///
/// # Safety
/// `row` is less than the `rows` the source was checked for, and
/// [`same_str`] found it equal to a string.
pub(super) unsafe fn copy_str(source: &StrSource<'_>, row: usize, builder: &mut VarWidth) {
    // SAFETY: forwarded from the caller.
    if let Some(bytes) = unsafe { str_source_at(source, row) } {
        builder.data.extend_from_slice(bytes);
        builder.offsets.push(builder.data.len() as u32);
    }
}

pub(super) fn utf8_column(builder: VarWidth) -> Column {
    Column {
        values: Values::Utf8(builder),
        validity: None,
    }
}

/// `Value` for a string type; `$s` is `self` as a `&str`.
macro_rules! utf8_value {
    ($ty:ty, |$v:ident| $s:expr) => {
        impl Value for $ty {
            const TYPE: ColumnType = ColumnType::Utf8;
            const NULLABLE: bool = false;
            type Builder = VarWidth;
            fn builder(capacity: usize) -> VarWidth {
                var_width_builder(capacity)
            }
            #[inline]
            fn push(self, builder: &mut VarWidth) {
                let $v = &self;
                push_str($s, builder);
            }
            fn finish(builder: VarWidth) -> Column {
                utf8_column(builder)
            }
            type Source<'s> = StrSource<'s>;
            fn source_values(column: &Column, rows: usize) -> Option<StrSource<'_>> {
                str_source(column, rows)
            }
            #[inline]
            unsafe fn same(&self, source: &StrSource<'_>, row: usize) -> bool {
                let $v = self;
                // SAFETY: forwarded from the caller.
                unsafe { same_str($s, source, row) }
            }
            unsafe fn copy(source: &StrSource<'_>, row: usize, builder: &mut VarWidth) {
                // SAFETY: forwarded from the caller.
                unsafe { copy_str(source, row, builder) }
            }
        }
    };
}

utf8_value!(String, |s| s.as_str());
utf8_value!(&str, |s| s);

impl<'a> ReadValue<'a> for String {
    type Reader = StrReader<'a>;
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column, rows)
    }
    #[inline]
    unsafe fn read(reader: &StrReader<'a>, row: usize) -> Self {
        // SAFETY: forwarded from the caller.
        unsafe { str_at(reader, row) }.to_owned()
    }
}

impl NonNull for String {
    fn placeholder() -> Self {
        String::new()
    }
}

impl<'a> ReadValue<'a> for &'a str {
    type Reader = StrReader<'a>;
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column, rows)
    }
    #[inline]
    unsafe fn read(reader: &StrReader<'a>, row: usize) -> Self {
        // SAFETY: forwarded from the caller.
        unsafe { str_at(reader, row) }
    }
}

impl NonNull for &str {
    fn placeholder() -> Self {
        ""
    }
}

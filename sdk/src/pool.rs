//! The memory allocator of a UDF component: blocks recycled from one batch to
//! the next.
//!
//! Every call allocates and frees the same kinds of blocks: the host's
//! `realloc` for each list of the batch (a column's values, offsets, bytes,
//! validity), the SDK's output columns and parents, and the canonical-ABI
//! copies of the output, freed after the host has read them. With the
//! C library's `malloc` each of those costs a search of its free lists, a
//! split and, on free, a coalesce; for a 1,024-row batch that was about a
//! tenth of the whole call. [`Pool`] rounds blocks of up to 16 MiB up
//! to a power of two and keeps a few freed blocks of each size, so that the
//! next batch's blocks are a pop from a short stack.
//!
//! It is the global allocator of a component built with the `pool-allocator`
//! feature (on by default; turn default features off to bring your own), and
//! defines `cabi_realloc`, through which the host allocates in the guest, so
//! that every block it frees was allocated by it. Components are
//! single-threaded, which is what lets it keep its stacks without a lock.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// The smallest pooled block: 8 bytes; smaller requests get one too.
const MIN_CLASS: u32 = 3;
/// The largest pooled block: 16 MiB. Larger ones go to `System` as asked.
const MAX_CLASS: u32 = 24;
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;
/// Freed blocks kept per size.
const SLOTS: usize = 8;
/// Bytes kept in freed blocks at most, over all sizes.
const MAX_KEPT: usize = 32 << 20;
/// The alignment of pooled blocks: `malloc`'s own on wasm32, so that `System`
/// serves them with plain `malloc`. Blocks asked with more go to `System`.
const ALIGN: usize = 8;

/// Freed blocks of one size.
#[derive(Clone, Copy)]
struct Stack {
    blocks: [*mut u8; SLOTS],
    len: usize,
}

struct Kept {
    stacks: [Stack; CLASSES],
    bytes: usize,
}

/// An allocator that keeps freed blocks of each power-of-two size for reuse,
/// in front of [`System`]. See the [module documentation](self).
///
/// The SDK installs it in a component (feature `pool-allocator`); a crate
/// that turns the feature off installs its own allocator, or this one with
/// `#[global_allocator] static POOL: Pool = Pool::new();` (it is `Sync` on
/// `wasm32` without threads only). A freed block goes back to its size's
/// stack and the next allocation of that size takes it:
///
/// ```
/// use std::alloc::{GlobalAlloc, Layout};
/// let pool = weir_sdk::pool::Pool::new();
/// let layout = Layout::from_size_align(100, 8).unwrap();
/// // SAFETY: a non-zero layout; each block is freed once, with its layout.
/// unsafe {
///     let a = pool.alloc(layout);
///     pool.dealloc(a, layout);
///     let b = pool.alloc(layout);
///     assert_eq!(a, b);
///     pool.dealloc(b, layout);
/// }
/// ```
pub struct Pool(UnsafeCell<Kept>);

// SAFETY: a component instance has one thread; the pool is installed as the
// global allocator only on targets without threads (see `lib.rs`).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for Pool {}

/// The size class of a block: `Some(c)` for a pooled block of `1 << c` bytes.
#[inline]
fn class(layout: Layout) -> Option<u32> {
    let size = layout.size();
    if layout.align() > ALIGN || size > 1 << MAX_CLASS {
        return None;
    }
    Some(size.next_power_of_two().trailing_zeros().max(MIN_CLASS))
}

/// The layout `System` allocates a block of class `c` with.
#[inline]
fn block(c: u32) -> Layout {
    // SAFETY: a power of two up to 16 MiB with alignment 8 is a valid layout.
    unsafe { Layout::from_size_align_unchecked(1 << c, ALIGN) }
}

impl Pool {
    /// An empty pool.
    ///
    /// ```
    /// let pool = weir_sdk::pool::Pool::new();
    /// # let _ = pool;
    /// ```
    pub const fn new() -> Self {
        Pool(UnsafeCell::new(Kept {
            stacks: [Stack {
                blocks: [std::ptr::null_mut(); SLOTS],
                len: 0,
            }; CLASSES],
            bytes: 0,
        }))
    }

    /// # Safety
    /// No other reference to the pool's state is live (one thread, and no
    /// method calls another while it holds this).
    #[inline]
    #[allow(clippy::mut_from_ref)]
    unsafe fn kept(&self) -> &mut Kept {
        // SAFETY: forwarded from the caller.
        unsafe { &mut *self.0.get() }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool::new()
    }
}

// SAFETY: pooled blocks are `System` blocks of `block(c)`, handed out for
// layouts of the same class (no larger than the block, alignment at most
// `ALIGN`) and given back to `System` with `block(c)`; every other layout goes
// to `System` unchanged. A block is in at most one place: handed out or on
// its stack.
unsafe impl GlobalAlloc for Pool {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded from the caller.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread, and nothing else holds the state.
        let kept = unsafe { self.kept() };
        let stack = &mut kept.stacks[(c - MIN_CLASS) as usize];
        if stack.len > 0 {
            stack.len -= 1;
            kept.bytes -= 1 << c;
            return stack.blocks[stack.len];
        }
        // SAFETY: `block(c)` has a non-zero size.
        unsafe { System.alloc(block(c)) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded from the caller: `ptr` came from `System`
            // with `layout`.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: one thread, and nothing else holds the state.
        let kept = unsafe { self.kept() };
        let stack = &mut kept.stacks[(c - MIN_CLASS) as usize];
        if stack.len < SLOTS && kept.bytes + (1 << c) <= MAX_KEPT {
            stack.blocks[stack.len] = ptr;
            stack.len += 1;
            kept.bytes += 1 << c;
        } else {
            // SAFETY: `ptr` is a `System` block of `block(c)`.
            unsafe { System.dealloc(ptr, block(c)) };
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size`, rounded up to `layout`'s
        // alignment, does not overflow `isize`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            // The block already has room (or is just as big): keep it.
            (Some(a), Some(b)) if a == b => ptr,
            // SAFETY: forwarded from the caller.
            (None, None) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `new` has a non-zero size (the caller promises it).
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // are distinct (the old one is still allocated).
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

/// The canonical ABI's allocation function, through which the host allocates
/// the lists it passes in: defined here so that those blocks come from the
/// global allocator that frees them.
///
/// # Safety
/// Called by the host as the canonical ABI specifies: `old` is null with
/// `old_len` 0, or a block it allocated with `old_len` bytes and `align`.
#[cfg(all(
    feature = "pool-allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use std::alloc::{alloc, handle_alloc_error, realloc};
    if new_len == 0 {
        // An empty list needs no block; any aligned address does.
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(old_len.max(new_len), align) else {
        // The host asked for an impossible layout.
        std::process::abort();
    };
    // SAFETY: the layouts are valid and non-zero, and `old` is what the
    // canonical ABI says it is.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(layout)
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `size` bytes filled with `fill`.
    unsafe fn filled(pool: &Pool, size: usize, fill: u8) -> *mut u8 {
        let p = unsafe { pool.alloc(Layout::from_size_align(size, 8).unwrap()) };
        assert!(!p.is_null());
        unsafe { std::ptr::write_bytes(p, fill, size) };
        p
    }

    unsafe fn holds(p: *const u8, size: usize, fill: u8) -> bool {
        unsafe { std::slice::from_raw_parts(p, size) }
            .iter()
            .all(|&b| b == fill)
    }

    #[test]
    fn a_freed_block_serves_the_next_of_its_size() {
        let pool = Pool::new();
        unsafe {
            let a = filled(&pool, 8000, 1);
            pool.dealloc(a, Layout::from_size_align(8000, 8).unwrap());
            // 5,000 and 8,000 bytes are both 8 KiB blocks.
            let b = filled(&pool, 5000, 2);
            assert_eq!(a, b);
            // 100 bytes is another size: a new block.
            let c = filled(&pool, 100, 3);
            assert_ne!(c, b);
            assert!(holds(b, 5000, 2) && holds(c, 100, 3));
            pool.dealloc(b, Layout::from_size_align(5000, 8).unwrap());
            pool.dealloc(c, Layout::from_size_align(100, 8).unwrap());
        }
    }

    #[test]
    fn realloc_keeps_the_contents_within_and_across_sizes() {
        let pool = Pool::new();
        let layout = |size| Layout::from_size_align(size, 8).unwrap();
        unsafe {
            let a = filled(&pool, 3000, 7);
            // Within the 4 KiB block: the same block.
            let b = pool.realloc(a, layout(3000), 4096);
            assert_eq!(a, b);
            assert!(holds(b, 3000, 7));
            // Past it: moved, contents kept.
            let c = pool.realloc(b, layout(4096), 10_000);
            assert!(holds(c, 3000, 7));
            // Down to a size the pool leaves to `System`, and back.
            let d = pool.realloc(c, layout(10_000), 16);
            assert!(holds(d, 16, 7));
            let e = pool.realloc(d, layout(16), 20_000);
            assert!(holds(e, 16, 7));
            pool.dealloc(e, layout(20_000));
        }
    }

    #[test]
    fn live_blocks_never_overlap() {
        // A deterministic mix of allocations, frees and reallocs of many
        // sizes, each block filled with its own byte and checked before it
        // is freed or moved.
        let pool = Pool::new();
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..5000u32 {
            let fill = (step % 251) as u8;
            let size = [1, 3, 8, 17, 63, 64, 65, 1000, 4097, 70_000, 1 << 20][next() as usize % 11];
            match next() % 3 {
                0 if !live.is_empty() => {
                    let (p, s, f) = live.swap_remove(next() as usize % live.len());
                    unsafe {
                        assert!(holds(p, s, f));
                        pool.dealloc(p, Layout::from_size_align(s, 8).unwrap());
                    }
                }
                1 if !live.is_empty() => {
                    let i = next() as usize % live.len();
                    let (p, s, f) = live[i];
                    let q = unsafe {
                        assert!(holds(p, s, f));
                        let q = pool.realloc(p, Layout::from_size_align(s, 8).unwrap(), size);
                        assert!(holds(q, s.min(size), f));
                        std::ptr::write_bytes(q, fill, size);
                        q
                    };
                    live[i] = (q, size, fill);
                }
                _ => live.push((unsafe { filled(&pool, size, fill) }, size, fill)),
            }
        }
        for (p, s, f) in live {
            unsafe {
                assert!(holds(p, s, f));
                pool.dealloc(p, Layout::from_size_align(s, 8).unwrap());
            }
        }
    }
}

//! Keys and host-owned keyed state of reducers.

/// The key of the rows a reducer is given: the key column's value as bytes
/// (UTF-8 text, or a little-endian `i64`).
///
/// ```
/// use weir_sdk::Key;
/// assert_eq!(Key::new(b"u007").as_str(), Some("u007"));
/// assert_eq!(Key::new(&42i64.to_le_bytes()).as_i64(), Some(42));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    bytes: &'a [u8],
}

impl<'a> Key<'a> {
    /// A key from its bytes.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Key::new(b"ann").bytes(), b"ann");
    /// ```
    pub fn new(bytes: &'a [u8]) -> Self {
        Key { bytes }
    }
    /// The raw bytes.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Key::new(b"ann").bytes().len(), 3);
    /// ```
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// The key as text, when the key column is `utf8`.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Key::new(b"ann").as_str(), Some("ann"));
    /// ```
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes).ok()
    }
    /// The key as an integer, when the key column is `int64`.
    ///
    /// ```
    /// let bytes = 7i64.to_le_bytes();
    /// assert_eq!(weir_sdk::Key::new(&bytes).as_i64(), Some(7));
    /// assert_eq!(weir_sdk::Key::new(b"ann").as_i64(), None);
    /// ```
    pub fn as_i64(&self) -> Option<i64> {
        Some(i64::from_le_bytes(self.bytes.try_into().ok()?))
    }
}

/// Where a reducer's state lives: the host's `state` interface in a component,
/// a map in the native test harness.
///
/// ```
/// use weir_sdk::StateStore;
/// // Outside a call, the harness's store has no key group to write to.
/// let mut store = weir_sdk::testing::MemoryState::default();
/// store.put(0, "state", &[1]);
/// assert_eq!(store.get(0, "state"), None);
/// ```
pub trait StateStore {
    /// The value under `name` for key group `group` of the current call.
    fn get(&mut self, group: u32, name: &str) -> Option<Vec<u8>>;
    /// Stores a value.
    fn put(&mut self, group: u32, name: &str, value: &[u8]);
    /// Removes a value.
    fn delete(&mut self, group: u32, name: &str);
    /// Sets a timer at `at` for key group `group` (timed reducers).
    fn set_timer(&mut self, group: u32, at: i64);
    /// Cancels the timer at `at` for key group `group`, if there is one.
    fn cancel_timer(&mut self, group: u32, at: i64);
}

/// The host's state, reached through the `weir:udf/state` import: what the
/// export macros hand the drivers inside a component.
///
/// ```
/// // Only a component reaches it; natively, use `testing::Harness`.
/// let _store = weir_sdk::state::HostState;
/// ```
#[derive(Debug, Default)]
pub struct HostState;

#[cfg(target_family = "wasm")]
impl StateStore for HostState {
    fn get(&mut self, group: u32, name: &str) -> Option<Vec<u8>> {
        crate::wit::weir::udf::state::get(group, name)
    }
    fn put(&mut self, group: u32, name: &str, value: &[u8]) {
        crate::wit::weir::udf::state::put(group, name, value)
    }
    fn delete(&mut self, group: u32, name: &str) {
        crate::wit::weir::udf::state::delete(group, name)
    }
    fn set_timer(&mut self, group: u32, at: i64) {
        crate::wit::weir::udf::timers::set(group, at)
    }
    fn cancel_timer(&mut self, group: u32, at: i64) {
        crate::wit::weir::udf::timers::cancel(group, at)
    }
}

#[cfg(not(target_family = "wasm"))]
impl StateStore for HostState {
    fn get(&mut self, _group: u32, _name: &str) -> Option<Vec<u8>> {
        unreachable!(
            "HostState is only reachable inside a Weir component; use testing::Harness natively"
        )
    }
    fn put(&mut self, _group: u32, _name: &str, _value: &[u8]) {
        unreachable!(
            "HostState is only reachable inside a Weir component; use testing::Harness natively"
        )
    }
    fn delete(&mut self, _group: u32, _name: &str) {
        unreachable!(
            "HostState is only reachable inside a Weir component; use testing::Harness natively"
        )
    }
    fn set_timer(&mut self, _group: u32, _at: i64) {
        unreachable!(
            "HostState is only reachable inside a Weir component; use testing::Harness natively"
        )
    }
    fn cancel_timer(&mut self, _group: u32, _at: i64) {
        unreachable!(
            "HostState is only reachable inside a Weir component; use testing::Harness natively"
        )
    }
}

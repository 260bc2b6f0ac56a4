//! The one type the client shares with the server's store, for builds without the
//! server (`--no-default-features --features client`), where it stands in for
//! `store::StoreOp` so that the store itself is not compiled.
//!
//! Builds with the server use `store::StoreOp` and compile this file only in their
//! unit tests, which check that both enums have the same variants.

/// What a storage command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Store unconditionally.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
    /// Add data after the existing value (flags and expiry unchanged).
    Append,
    /// Add data before the existing value (flags and expiry unchanged).
    Prepend,
    /// Store only if the CAS unique still matches.
    Cas(u64),
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::StoreOp as Standin;
    use crate::store::StoreOp as Store;

    // Both matches are exhaustive: a variant added to either enum stops this compiling.
    fn to_store(op: Standin) -> Store {
        match op {
            Standin::Set => Store::Set,
            Standin::Add => Store::Add,
            Standin::Replace => Store::Replace,
            Standin::Append => Store::Append,
            Standin::Prepend => Store::Prepend,
            Standin::Cas(c) => Store::Cas(c),
        }
    }

    fn to_standin(op: Store) -> Standin {
        match op {
            Store::Set => Standin::Set,
            Store::Add => Standin::Add,
            Store::Replace => Standin::Replace,
            Store::Append => Standin::Append,
            Store::Prepend => Standin::Prepend,
            Store::Cas(c) => Standin::Cas(c),
        }
    }

    #[test]
    fn same_variants_as_the_store() {
        let all = [
            Standin::Set,
            Standin::Add,
            Standin::Replace,
            Standin::Append,
            Standin::Prepend,
            Standin::Cas(7),
        ];
        for op in all {
            assert_eq!(to_standin(to_store(op)), op);
        }
    }
}

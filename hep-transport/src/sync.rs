//! Locks that stay usable after a panic.
//!
//! Every critical section in this crate leaves consistent state behind (plain numbers,
//! queues; no user code runs inside one), so a lock poisoned by a panic elsewhere is
//! still safe to use: a panic in one task must not take a listener or a sender down
//! with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The value of a `Mutex` held exclusively (no locking), poisoned or not.
pub(crate) fn get_mut<T: ?Sized>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

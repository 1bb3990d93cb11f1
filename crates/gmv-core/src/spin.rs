//! A spin lock for the dedup shards, whose critical section is one hash-table
//! probe and insert on every event.
//!
//! Why not `parking_lot::Mutex`: its unlock is a compare-and-swap (it must
//! learn whether a waiter is parked), and on x86 every locked instruction
//! waits for the stores before it. The insert just before the unlock writes a
//! table slot that is usually not in cache, so the event stalled on that miss
//! (the unlock was a fifth of all samples in `perf`). Here the unlock is a
//! plain release store, which does not wait, and the miss overlaps with the
//! next event's decoding.
//!
//! Waiters spin briefly and then yield their time slice, so a holder that was
//! preempted (or is growing a large table) is not starved by spinners. Only
//! the lock word is shared between threads; the data is reached through the
//! guard alone.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spins before each yield while the lock is held elsewhere.
const SPINS_BEFORE_YIELD: u32 = 64;

/// A lock whose unlock is a single release store.
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a `SpinGuard`, and `lock` hands
// out at most one guard at a time (the acquire swap of `locked` from false to
// true succeeds for one thread until the guard's release store), so sharing
// the lock between threads only ever moves exclusive access to a `T` from one
// thread to another, which `T: Send` allows.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Waits for the lock and returns exclusive access until the guard drops.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.wait_until_free();
        }
        SpinGuard { lock: self }
    }

    /// Reads (without writing, so the holder keeps its cache line) until the
    /// lock looks free.
    #[cold]
    fn wait_until_free(&self) {
        let mut spins = 0;
        while self.locked.load(Ordering::Relaxed) {
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                spins = 0;
                std::thread::yield_now();
            }
        }
    }
}

/// Exclusive access to a [`SpinLock`]'s value; unlocks on drop.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Sync` above) and lives no
        // longer than the lock, so no `&mut T` exists meanwhile.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique too.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racing_threads_never_lose_an_update() {
        let counter = SpinLock::new(0u64);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50_000 {
                        *counter.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*counter.lock(), 200_000);
    }

    #[test]
    fn a_held_lock_makes_others_wait() {
        let value = SpinLock::new(Vec::new());
        std::thread::scope(|scope| {
            let mut guard = value.lock();
            let waiter = scope.spawn(|| value.lock().push(2));
            std::thread::sleep(std::time::Duration::from_millis(20));
            guard.push(1);
            drop(guard);
            waiter.join().unwrap();
        });
        assert_eq!(*value.lock(), vec![1, 2]);
    }
}

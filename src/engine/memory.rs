//! The memory pool of a run under `engine.memory_limit`: DataFusion's fair
//! spill pool, with two changes that keep a small pool from failing a query
//! that could have spilled (docs/design.md §7).
//!
//! DataFusion's `FairSpillPool` divides what the unspillable consumers leave
//! among every *registered* spillable consumer, idle or not. A plan has many
//! (each partition of each repartition, sort and aggregate), so an operator
//! that holds nothing yet can be refused its first batch while most of the
//! pool is free, and fail: it has nothing to spill. And a sort whose rows fit
//! its share merges them in memory, where the merge's cursors (unspillable)
//! take about as much again: one sort could take the share of every other.
//!
//! So here a spillable consumer's share counts only the spillable consumers
//! that hold memory (and the one asking), is capped at half the pool divided
//! by the partitions (the other half stays for in-memory merges, hash-join
//! build sides and the like), and a consumer that holds nothing may always
//! take what is physically free.
//!
//! The pool counts what the operators reserve, not what the process holds.
//! glibc's malloc, left to itself, keeps much of what they free: after a
//! large block is freed it raises its mmap threshold (up to 32 MiB), so
//! later Arrow buffers, hash tables and sort runs come from its heaps, which
//! return little to the kernel, and it keeps a heap per thread (up to eight
//! per core). [`return_freed_memory`] and [`one_malloc_arena_per_core`]
//! change both (measured figures in docs/performance.md).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, human_readable_size,
};

/// At most one glibc malloc heap (arena) per core, where glibc allows
/// eight: each thread that allocates takes a heap of its own while there
/// are fewer, tokio's blocking threads (file reads and writes) included,
/// and every heap keeps some of what was freed in it. Process-wide, and only
/// for threads that allocate after the call: the binary calls it before it
/// starts its runtime. (Measured on the default job, 1M lines: the same CPU
/// time without a memory limit.) A no-op on other C libraries.
pub fn one_malloc_arena_per_core() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets malloc's parameters, under its own lock.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Under a memory limit: have glibc's malloc give large freed blocks back
/// to the kernel. Fixing its mmap threshold at 128 KiB (the default it
/// starts from) stops it from raising the threshold, and with it the trim
/// threshold, as large blocks are freed, so blocks of 128 KiB and more are
/// mapped and unmapped on their own. Process-wide. A no-op on other C
/// libraries.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters, under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SharedSpillPool {
    pool_size: usize,
    /// The most one spillable reservation may hold.
    spill_cap: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    spillable: usize,
    unspillable: usize,
    /// Bytes held by each spillable consumer that holds any, by consumer id.
    holding: HashMap<usize, usize>,
}

impl SharedSpillPool {
    /// A pool of `pool_size` bytes for plans of `partitions` partitions.
    pub fn new(pool_size: usize, partitions: usize) -> Self {
        Self {
            pool_size,
            spill_cap: pool_size / (2 * partitions.max(1)),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves counts that are
        // still consistent (every update is one arithmetic step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refused(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
        available: usize,
    ) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "Failed to allocate additional {} for {} with {} already allocated for this reservation - {} remain available for the total memory pool: {}",
            human_readable_size(additional),
            reservation.consumer().name(),
            human_readable_size(reservation.size()),
            human_readable_size(available),
            self
        ))
    }
}

impl State {
    fn add(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        if consumer.can_spill() {
            self.spillable += bytes;
            *self.holding.entry(consumer.id()).or_default() += bytes;
        } else {
            self.unspillable += bytes;
        }
    }

    fn remove(&mut self, consumer: &MemoryConsumer, bytes: usize) {
        if consumer.can_spill() {
            self.spillable = self.spillable.saturating_sub(bytes);
            if let Some(held) = self.holding.get_mut(&consumer.id()) {
                *held = held.saturating_sub(bytes);
                if *held == 0 {
                    self.holding.remove(&consumer.id());
                }
            }
        } else {
            self.unspillable = self.unspillable.saturating_sub(bytes);
        }
    }
}

impl MemoryPool for SharedSpillPool {
    fn name(&self) -> &str {
        "shared-spill"
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.state().holding.remove(&consumer.id());
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.state().add(reservation.consumer(), additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.state().remove(reservation.consumer(), shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut state = self.state();
        let consumer = reservation.consumer();
        let free = self
            .pool_size
            .saturating_sub(state.spillable + state.unspillable);
        if consumer.can_spill() {
            let holds_nothing = !state.holding.contains_key(&consumer.id());
            let active = state.holding.len() + usize::from(holds_nothing);
            let share = (self.pool_size.saturating_sub(state.unspillable) / active.max(1))
                .min(self.spill_cap);
            // A consumer with nothing to spill could only fail: it may take
            // its first allocation from what is free.
            let allowed = if holds_nothing {
                share.max(free)
            } else {
                share
            };
            if reservation.size() + additional > allowed {
                return Err(self.refused(reservation, additional, allowed));
            }
        } else if additional > free {
            return Err(self.refused(reservation, additional, free));
        }
        state.add(consumer, additional);
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable + state.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.pool_size)
    }
}

impl fmt::Display for SharedSpillPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}(pool_size: {})",
            self.name(),
            human_readable_size(self.pool_size)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pool(size: usize, partitions: usize) -> Arc<dyn MemoryPool> {
        Arc::new(SharedSpillPool::new(size, partitions))
    }

    fn spiller(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(true)
            .register(pool)
    }

    #[test]
    fn idle_spillers_do_not_shrink_the_share_of_an_active_one() {
        let pool = pool(1000, 1);
        let _idle: Vec<_> = (0..20)
            .map(|i| spiller(&pool, &format!("idle{i}")))
            .collect();
        let active = spiller(&pool, "active");
        // Half the pool for one partition: 500, whatever the idle ones.
        active.try_grow(500).unwrap();
        assert!(active.try_grow(1).is_err());
    }

    #[test]
    fn active_spillers_share_what_the_unspillable_leave() {
        let pool = pool(1000, 1);
        let fixed = MemoryConsumer::new("join").register(&pool);
        fixed.try_grow(400).unwrap();
        let first = spiller(&pool, "first");
        let second = spiller(&pool, "second");
        first.try_grow(100).unwrap();
        second.try_grow(100).unwrap();
        // Two active spillers share 600: 300 each.
        first.try_grow(200).unwrap();
        assert!(first.try_grow(1).is_err());
        // Once `first` spills everything, `second` shares with nobody (cap 500).
        first.free();
        second.try_grow(400).unwrap();
        assert!(second.try_grow(1).is_err());
    }

    #[test]
    fn a_spiller_holding_nothing_gets_what_is_free() {
        let pool = pool(1000, 4);
        let holders: Vec<_> = (0..3).map(|i| spiller(&pool, &format!("h{i}"))).collect();
        for holder in &holders {
            holder.try_grow(125).unwrap(); // the cap: 1000 / (2 * 4)
        }
        let fixed = MemoryConsumer::new("merge").register(&pool);
        fixed.try_grow(500).unwrap();
        // Share: (1000 - 500) / 4 = 125 > cap; but free is only 125 too.
        let late = spiller(&pool, "late");
        late.try_grow(125).unwrap();
        assert_eq!(pool.reserved(), 1000);
        // Unspillable consumers never go past the pool.
        assert!(fixed.try_grow(1).is_err());
    }

    #[test]
    fn freed_memory_returns_to_the_pool() {
        let pool = pool(1000, 1);
        let a = spiller(&pool, "a");
        a.try_grow(300).unwrap();
        let split = a.split(100);
        drop(split);
        assert_eq!(pool.reserved(), 200);
        drop(a);
        assert_eq!(pool.reserved(), 0);
    }
}

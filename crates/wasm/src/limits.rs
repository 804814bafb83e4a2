//! An instance's memory limit: all its memories together, as a replica's
//! cgroup limits all its processes together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::ResourceLimiter;

/// Most table elements an instance may have (as wasmtime's own default).
const TABLE_ELEMENTS: usize = 10_000_000;

pub struct Memory {
    limit: u64,
    /// Bytes of all the instance's memories now.
    used: u64,
    /// Set when a growth was refused: the failure that follows is named so.
    over_limit: Arc<AtomicBool>,
}

impl Memory {
    pub fn new(limit: u64, over_limit: Arc<AtomicBool>) -> Memory {
        Memory { limit, used: 0, over_limit }
    }
}

impl ResourceLimiter for Memory {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired as u64).saturating_sub(current as u64);
        let total = self.used.saturating_add(grow);
        if total > self.limit {
            if !self.over_limit.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit_mib = self.limit >> 20,
                    asked_mib = total >> 20,
                    "an instance asked for more memory than its limit: refused"
                );
            }
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}

//! The log file being appended to, written through a window of it mapped
//! into memory: appending an entry is a copy into the kernel's page cache,
//! with no system call, which survives the process being killed as a
//! `write(2)` would (not the machine losing power: neither is synced).
//!
//! The file's blocks are allocated up front (`fallocate`), so that writing
//! to the mapping never meets a full disk (which would be a `SIGBUS`). The
//! bytes past the last entry are zeros: a reader stops at the first one.
//! The file is cut to what it holds when it is closed, and, if the process
//! was killed, when the log is next opened. Where the file cannot be
//! allocated or mapped, entries are written with `pwrite(2)` instead.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// How much of the file is mapped at once (what it adds to the gateway's
/// resident memory, at most).
const WINDOW: u64 = 4 << 20;

/// A mapped range of the file.
struct Window {
    ptr: *mut u8,
    /// Where it starts in the file (a multiple of the page size) and its
    /// length.
    start: u64,
    len: u64,
}

// SAFETY: the mapping is owned by one `Appender`, used under the log's
// lock, and unmapped once, on drop.
unsafe impl Send for Window {}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are a mapping made by `map` and not yet
        // unmapped; nothing refers to it after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len as usize) };
    }
}

pub(super) struct Appender {
    file: File,
    /// Where the next entry goes.
    offset: u64,
    /// The bytes allocated, if the file is written through mappings.
    capacity: Option<u64>,
    /// Whether the file was allocated ahead (and is cut to its length when
    /// closed), mapped or not.
    allocated: bool,
    window: Option<Window>,
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as u64
}

impl Appender {
    /// Appends to `file` (new and empty), allocating `capacity` bytes of it.
    pub(super) fn new(file: File, capacity: u64) -> Appender {
        // SAFETY: fallocate on an open descriptor, with no memory passed.
        let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, capacity as libc::off_t) } == 0;
        if !allocated {
            let e = io::Error::last_os_error();
            tracing::debug!(error = %e, "usage: the log file cannot be allocated; writing it with pwrite");
        }
        Appender { file, offset: 0, capacity: allocated.then_some(capacity), allocated, window: None }
    }

    /// Where the next entry goes: how much the file holds.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the file is written through mappings (else `pwrite`).
    #[cfg(test)]
    pub(super) fn is_mapped(&self) -> bool {
        self.capacity.is_some()
    }

    /// A window holding `[at, at + n)`, mapped if need be.
    fn window_for(&mut self, at: u64, n: u64) -> Option<&Window> {
        let capacity = self.capacity?;
        if at + n > capacity {
            return None;
        }
        let holds = |w: &Window| w.start <= at && at + n <= w.start + w.len;
        if !self.window.as_ref().is_some_and(holds) {
            self.window = None;
            let start = at - at % page_size();
            let len = WINDOW.max(n + page_size()).min(capacity - start);
            // SAFETY: a new shared mapping of a range of the file that
            // is allocated; the kernel picks the address.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.file.as_raw_fd(),
                    start as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                let e = io::Error::last_os_error();
                tracing::warn!(error = %e, "usage: cannot map the log file; writing it with pwrite");
                self.capacity = None;
                return None;
            }
            self.window = Some(Window { ptr: ptr.cast(), start, len });
        }
        self.window.as_ref().filter(|w| holds(w))
    }

    /// Writes `bytes` after what the file holds. On an error nothing of
    /// them counts as written.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (at, n) = (self.offset, bytes.len() as u64);
        if let Some(w) = self.window_for(at, n) {
            // SAFETY: `[at, at + n)` is inside the window (checked by
            // `window_for`), so the destination is `n` writable mapped
            // bytes that no Rust reference points into.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), w.ptr.add((at - w.start) as usize), bytes.len())
            };
        } else {
            self.file.write_all_at(bytes, at)?;
        }
        self.offset += n;
        Ok(())
    }
}

impl Drop for Appender {
    /// Cuts the file to what it holds.
    fn drop(&mut self) {
        self.window = None;
        if self.allocated
            && let Err(e) = self.file.set_len(self.offset)
        {
            tracing::warn!(error = %e, "usage: could not cut a log file to its length");
        }
    }
}

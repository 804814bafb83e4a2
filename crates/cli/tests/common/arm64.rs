//! The arm64 programs of this checkout (`scripts/build-release --arch
//! arm64`), for the tests that run them under qemu or put them into images.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const QEMU: &str = "/usr/bin/qemu-aarch64";

/// Does a 64-bit little-endian ELF file name a program interpreter (a
/// `PT_INTERP` program header: it is dynamically linked)?
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

/// The three programs, built (or brought up to date).
pub fn build() -> Vec<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-release");
    let out = Command::new(script).args(["--arch", "arm64"]).env("CARGO_QUIET", "1").output().unwrap();
    assert!(out.status.success(), "build-release --arch arm64:\n{}", String::from_utf8_lossy(&out.stderr));
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF", "{}", path.display());
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 183, "{} is for AArch64", path.display());
        assert!(!has_interpreter(&bytes), "{} is static (no program interpreter)", path.display());
    }
    paths
}

/// Is qemu's aarch64 emulator registered with binfmt_misc so that the
/// kernel runs arm64 programs, in containers too (the F flag)?
pub fn runs_here() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_ok_and(|e| {
        e.lines().next() == Some("enabled") && e.lines().any(|l| l.starts_with("flags: ") && l.contains('F'))
    })
}

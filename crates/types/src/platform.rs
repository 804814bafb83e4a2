//! CPU architectures of images and programs, in the names Docker and
//! Debian use (`amd64`, `arm64`), read from platform strings
//! (`linux/arm64`), from the kernel's names (`x86_64`, `aarch64`) and from
//! the header of an ELF executable.

use std::fmt;

/// An architecture an image or a program is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// The architecture this program was built for.
    pub fn native() -> Arch {
        if cfg!(target_arch = "aarch64") { Arch::Arm64 } else { Arch::Amd64 }
    }

    /// Docker's and Debian's name: `amd64`, `arm64`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), which Swarm nodes report.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// Rust's target triple for a Linux program with glibc.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// Docker's, Debian's or the kernel's name of it.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "amd64" | "x86_64" | "x86-64" => Some(Arch::Amd64),
            "arm64" | "aarch64" | "arm64/v8" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// A platform as `docker build --platform` takes it: `linux/arm64`,
    /// `linux/arm64/v8`, or an architecture alone. Only Linux is run.
    pub fn parse_platform(platform: &str) -> Result<Arch, String> {
        let (os, arch) = match platform.split_once('/') {
            Some((os, arch)) => (os, arch),
            None => ("linux", platform),
        };
        if os != "linux" {
            return Err(format!("platform {platform:?}: functions run on linux only"));
        }
        Arch::from_name(arch).ok_or_else(|| {
            format!("platform {platform:?}: the architecture is amd64 or arm64 (linux/amd64, linux/arm64)")
        })
    }

    /// The architecture of an ELF executable or shared object, from its
    /// header (`e_machine`); `None` for anything else.
    pub fn of_elf(header: &[u8]) -> Option<Arch> {
        if header.len() < 20 || &header[..4] != b"\x7fELF" {
            return None;
        }
        let machine = match header[5] {
            1 => u16::from_le_bytes([header[18], header[19]]),
            2 => u16::from_be_bytes([header[18], header[19]]),
            _ => return None,
        };
        match machine {
            62 => Some(Arch::Amd64),
            183 => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        assert_eq!(Arch::parse_platform("linux/arm64"), Ok(Arch::Arm64));
        assert_eq!(Arch::parse_platform("linux/arm64/v8"), Ok(Arch::Arm64));
        assert_eq!(Arch::parse_platform("amd64"), Ok(Arch::Amd64));
        assert_eq!(Arch::parse_platform("linux/x86_64"), Ok(Arch::Amd64));
        assert!(Arch::parse_platform("windows/amd64").unwrap_err().contains("linux only"));
        assert!(Arch::parse_platform("linux/riscv64").unwrap_err().contains("amd64 or arm64"));
        assert!(Arch::parse_platform("").is_err());
    }

    #[test]
    fn elf_headers_name_their_machine() {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[5] = 1;
        header[18] = 183;
        assert_eq!(Arch::of_elf(&header), Some(Arch::Arm64));
        header[18] = 62;
        assert_eq!(Arch::of_elf(&header), Some(Arch::Amd64));
        header[18] = 40; // 32-bit ARM
        assert_eq!(Arch::of_elf(&header), None);
        assert_eq!(Arch::of_elf(b"#!/bin/sh\n echo not an elf file"), None);
        // This test's own executable.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(Arch::of_elf(&me), Some(Arch::native()));
    }
}

//! Is a program dynamically linked? LD_PRELOAD (and so the CPUID library) reaches only
//! programs that the dynamic loader starts, i.e. ELF files with a `PT_INTERP` program
//! header (System V gABI, "Program Header"; ELF-64 little-endian is all x86-64 runs).
//! A static binary (Go tools) gets the real CPUID (frontends.md §7.3).

use std::io::Read;
use std::path::{Path, PathBuf};

/// How a program file is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// An ELF file with an interpreter (ld.so): LD_PRELOAD applies.
    Dynamic,
    /// An ELF file without one: LD_PRELOAD does not apply.
    Static,
    /// Not an ELF-64 file (a script: its interpreter is what runs).
    NotElf,
}

const PT_INTERP: u32 = 3;

/// The linkage of the ELF image `bytes` (the first few KiB of the file suffice when the
/// program headers are there, as linkers place them).
pub fn linkage_of(bytes: &[u8]) -> Linkage {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1).
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Linkage::NotElf;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Linkage::NotElf;
    };
    for i in 0..u64::from(phnum) {
        let Some(off) = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|o| usize::try_from(o).ok())
        else {
            break;
        };
        match u32_at(off) {
            Some(PT_INTERP) => return Linkage::Dynamic,
            Some(_) => {}
            None => break,
        }
    }
    Linkage::Static
}

/// The linkage of the program file at `path` (its first 64 KiB).
pub fn linkage(path: &Path) -> std::io::Result<Linkage> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(64 << 10);
    f.by_ref().take(64 << 10).read_to_end(&mut buf)?;
    Ok(linkage_of(&buf))
}

/// Where `cmd` is found: itself if it contains a `/`, else the first executable match in
/// `$PATH`.
pub fn which(cmd: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_and_a_script_are_classified() {
        let me = std::env::current_exe().unwrap();
        // Rust test binaries on x86_64-unknown-linux-gnu are dynamically linked to glibc.
        assert_eq!(linkage(&me).unwrap(), Linkage::Dynamic);
        assert_eq!(linkage_of(b"#!/bin/sh\necho hi\n"), Linkage::NotElf);
        let mut fake = vec![0u8; 64 + 56];
        fake[..6].copy_from_slice(b"\x7fELF\x02\x01");
        fake[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        fake[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        fake[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        fake[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD only
        assert_eq!(linkage_of(&fake), Linkage::Static);
        fake[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        assert_eq!(linkage_of(&fake), Linkage::Dynamic);
        assert!(which("sh").is_some());
        assert_eq!(which("./x"), Some(PathBuf::from("./x")));
    }
}

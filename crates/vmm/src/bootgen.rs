//! The generated boot blobs `softsev run` uses when no `-kernel`/`-initrd`/`-append`
//! is given. They are deterministic (the same bytes on every call and every machine)
//! and small, so the measurement of a default run can be re-computed by any tool once
//! the blobs are written out.
//!
//! * Kernel ([`kernel`], [`KERNEL_SIZE`] bytes): laid out like a Linux bzImage header so
//!   loaders recognise it — `setup_sects` = 1 at 0x1F1, boot flag 0xAA55 at 0x1FE, the
//!   `HdrS` magic at 0x202, boot protocol version 0x020F at 0x206, `loadflags` bit 0
//!   (LOADED_HIGH) at 0x211 — with the ASCII banner [`KERNEL_BANNER`] at 0, and the
//!   rest a splitmix64 stream seeded with [`KERNEL_SEED`] (little-endian words). It is
//!   not executable: the simulated guest checks its hash, it does not run it.
//! * Initrd ([`initrd`]): a `newc` cpio archive (the format Linux unpacks) with one
//!   regular file `init` (mode 0100755, mtime 0, uid/gid 0, inode 1) holding
//!   [`INIT_SCRIPT`], then the `TRAILER!!!` entry, zero-padded to a 512-byte multiple.
//! * Command line: [`CMDLINE`].

/// Size of the generated kernel (64 KiB).
pub const KERNEL_SIZE: usize = 64 << 10;
/// Seed of the kernel's filler stream ("softkrnl").
pub const KERNEL_SEED: u64 = 0x736f_6674_6b72_6e6c;
/// Banner at offset 0 of the kernel.
pub const KERNEL_BANNER: &[u8] = b"softsev generated test kernel v1\0";
/// The command line of a default run.
pub const CMDLINE: &str = "console=ttyS0 softsev.test=1";
/// Contents of `/init` in the generated initrd.
pub const INIT_SCRIPT: &str = "#!/bin/sh\n# softsev generated test initrd v1: the simulated guest never executes it\nexit 0\n";

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generated test kernel.
pub fn kernel() -> Vec<u8> {
    let mut k = vec![0u8; KERNEL_SIZE];
    let mut state = KERNEL_SEED;
    for w in k.chunks_exact_mut(8) {
        w.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    k[..KERNEL_BANNER.len()].copy_from_slice(KERNEL_BANNER);
    k[0x1F1] = 1; // setup_sects
    k[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    k[0x211] = 0x01; // loadflags: LOADED_HIGH
    k
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
    let namesize = name.len() + 1;
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        namesize as u32,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The generated test initrd (a newc cpio archive).
pub fn initrd() -> Vec<u8> {
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, 0o100755, "init", INIT_SCRIPT.as_bytes());
    cpio_entry(&mut out, 0, 0, "TRAILER!!!", &[]);
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_layout() {
        let k = kernel();
        assert_eq!(k.len(), KERNEL_SIZE);
        assert_eq!(&k[0x202..0x206], b"HdrS");
        assert_eq!(&k[0x1FE..0x200], &[0x55, 0xAA]);
        assert!(k.starts_with(KERNEL_BANNER));
        assert_eq!(kernel(), k);
        // The filler is not constant.
        assert_ne!(&k[0x1000..0x1008], &k[0x1008..0x1010]);
    }

    #[test]
    fn initrd_is_newc() {
        let i = initrd();
        assert_eq!(i.len() % 512, 0);
        assert!(i.starts_with(b"070701"));
        // filesize field (7th) of the first header = script length.
        let size = u32::from_str_radix(std::str::from_utf8(&i[54..62]).unwrap(), 16).unwrap();
        assert_eq!(size as usize, INIT_SCRIPT.len());
        // name at 110, 4-byte aligned data after it.
        assert_eq!(&i[110..115], b"init\0");
        let data = 116;
        assert_eq!(&i[data..data + INIT_SCRIPT.len()], INIT_SCRIPT.as_bytes());
        let t = i.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert!(t > data);
        assert_eq!(initrd(), i);
    }
}

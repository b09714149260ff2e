//! The kernel-hashes table (`kernel-hashes=on`): SHA-256 of the kernel, the initrd and
//! the command line with its NUL (shared/spec/snp-launch.md §5).
//!
//! Files are hashed once, streaming in 1 MiB chunks; kernel and initrd in parallel.

use crate::error::{MeasureError, Result};
use softsev_abi::kernel_hashes::PaddedSevHashTable;
use softsev_crypto::hash::{Sha256, sha256};
use std::io::Read;
use std::path::Path;
use zerocopy::IntoBytes;

/// Read size for streaming hashes.
pub const CHUNK: usize = 1 << 20;

/// The three SHA-256 digests of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KernelHashes {
    /// SHA-256 of the kernel file.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of the empty string without one).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line plus its terminating NUL.
    pub cmdline: [u8; 32],
}

/// SHA-256 of the command line as QEMU hashes it: the bytes plus a NUL; no or empty
/// command line → the single byte 0x00.
pub fn cmdline_hash(append: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(append.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.finish()
}

/// SHA-256 of a reader, streaming.
pub fn sha256_reader(mut r: impl Read) -> std::io::Result<[u8; 32]> {
    let mut buf = vec![0u8; CHUNK];
    let mut h = Sha256::new();
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(buf.get(..n).unwrap_or(&[]));
    }
    Ok(h.finish())
}

/// SHA-256 of a file, streaming.
pub fn sha256_file(what: &'static str, path: &Path) -> Result<[u8; 32]> {
    let io = |error| MeasureError::Io {
        what,
        path: path.to_owned(),
        error,
    };
    readable_file_len(path).map_err(io)?;
    let f = std::fs::File::open(path).map_err(io)?;
    let mut limited = std::io::Read::take(f, MAX_BOOT_FILE + 1);
    let h = sha256_reader(&mut limited).map_err(io)?;
    if limited.limit() == 0 {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {MAX_BOOT_FILE} bytes; QEMU loads a kernel or initrd below 4 GiB"),
        )));
    }
    Ok(h)
}

/// The most a kernel or initrd may hold: QEMU's x86 loader places both below 4 GiB.
pub const MAX_BOOT_FILE: u64 = 4 << 30;

/// The length of `path` (0 for a character device) if it can be read as a file:
/// a regular file or a character device (`/dev/null` is the usual empty input; reads of
/// a device are bounded by the caller). A FIFO, a socket, a block device or a directory
/// is an `InvalidInput` error naming what it is, so a wrong path never blocks (a FIFO
/// without a writer).
pub(crate) fn readable_file_len(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path)?;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(meta.len());
    } else if t.is_char_device() {
        return Ok(0);
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{kind}, not a regular file"),
    ))
}

impl KernelHashes {
    /// From digests already known.
    pub fn new(kernel: [u8; 32], initrd: [u8; 32], cmdline: [u8; 32]) -> Self {
        KernelHashes {
            kernel,
            initrd,
            cmdline,
        }
    }

    /// From in-memory blobs.
    pub fn from_bytes(kernel: &[u8], initrd: Option<&[u8]>, append: Option<&str>) -> Self {
        KernelHashes {
            kernel: sha256(kernel),
            initrd: sha256(initrd.unwrap_or(&[])),
            cmdline: cmdline_hash(append),
        }
    }

    /// Hash the files (kernel and initrd on two threads).
    pub fn from_files(kernel: &Path, initrd: Option<&Path>, append: Option<&str>) -> Result<Self> {
        let (k, i) = std::thread::scope(|s| {
            let ih = initrd.map(|p| s.spawn(move || sha256_file("initrd", p)));
            let k = sha256_file("kernel", kernel);
            let i = match ih {
                Some(h) => h.join().unwrap_or_else(|_| {
                    Err(MeasureError::Io {
                        what: "initrd",
                        path: initrd.map(Path::to_owned).unwrap_or_default(),
                        error: std::io::Error::other("hashing thread panicked"),
                    })
                }),
                None => Ok(sha256(&[])),
            };
            (k, i)
        });
        Ok(KernelHashes {
            kernel: k?,
            initrd: i?,
            cmdline: cmdline_hash(append),
        })
    }

    /// The padded 176-byte table.
    pub fn table(&self) -> PaddedSevHashTable {
        PaddedSevHashTable::new(self.cmdline, self.initrd, self.kernel)
    }

    /// The table as bytes.
    pub fn table_bytes(&self) -> Vec<u8> {
        self.table().as_bytes().to_vec()
    }

    /// A 4 KiB page of zeros with the table at `offset`; `None` if it does not fit.
    pub fn page(&self, offset: usize) -> Option<[u8; 4096]> {
        let t = self.table();
        let tb = t.as_bytes();
        let mut page = [0u8; 4096];
        page.get_mut(offset..offset.checked_add(tb.len())?)?
            .copy_from_slice(tb);
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_inputs_table_matches_spec() {
        // spec §5.1: the full 176 bytes for empty kernel, empty initrd, no append.
        let t = KernelHashes::from_bytes(&[], None, None).table_bytes();
        let want = "06d63894224fc94cb479a793d411fd21a800d82dd09720bd944caa78e7714d36\
ab2a32006e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a306\
17afa01d31f7ba442f3ad74b9af141e29169781d3200e3b0c44298fc1c149afb\
f4c8996fb92427ae41e4649b934ca495991b7852b8553794e74dd2ab7f42b835\
d5b172d2045b3200e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934c\
a495991b7852b8550000000000000000";
        assert_eq!(hex::encode(t), want);
        assert_eq!(cmdline_hash(Some("")), cmdline_hash(None));
    }

    #[test]
    fn page_hash_matches_spec() {
        use softsev_crypto::hash::sha384;
        let k = KernelHashes::from_bytes(&[], Some(&[]), None);
        assert_eq!(
            hex::encode(sha384(&k.page(0xC00).unwrap())),
            "7b581a6e6bc2ae2e8a0e875bd21d19d8b0cc96f035a9c8fb1d127d3ec75e21edbb830e1f1b5c47bf7644d7f3561bece3"
        );
        let k = KernelHashes::from_bytes(&[], None, Some("console=ttyS0 loglevel=7"));
        assert_eq!(
            hex::encode(sha384(&k.page(0xC00).unwrap())),
            "adbef9bc7385f7a6dcb8774523cf024b403f193a47962309b277c4109aa70b4ba0355d1657b50e9625d5bd1129e7fd27"
        );
        assert!(k.page(4096 - 175).is_none());
        assert!(k.page(4096 - 176).is_some());
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 123))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        assert_eq!(sha256_reader(&data[..]).unwrap(), sha256(&data));
    }
}

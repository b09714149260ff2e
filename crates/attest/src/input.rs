//! Bounded reads of the files a relying party is handed (reports, certificates, CRLs,
//! certificate tables, roots). Every input has a size its format allows; a larger file,
//! a FIFO, a device such as `/dev/zero` or a directory is refused before any byte is
//! read, so a wrong path neither hangs nor eats memory.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The most a certificate, CRL, certificate bundle or root file may hold (AMD's are a
/// few KiB; the largest genuine CRL is under 2 KiB).
pub const MAX_CERT_FILE: u64 = 1 << 20;

/// The most a certificate table (GHCB / extended-report certificate blob) may hold.
pub const MAX_CERT_TABLE: u64 = 1 << 20;

/// The most a report file may hold: one ATTESTATION_REPORT (0x4A0 bytes), optionally
/// followed by a certificate table (`--cert-table -`).
pub const MAX_REPORT_FILE: u64 = softsev_abi::report::REPORT_SIZE as u64 + MAX_CERT_TABLE;

/// Read `path` whole if it is a regular file (symbolic links followed) of at most `max`
/// bytes; `what` names the input in the error ("an attestation report").
pub fn read_bounded(path: &Path, max: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let kind = describe(&meta.file_type());
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{kind}, not a regular file ({what} is read from a file)"),
        ));
    }
    let too_big = |n: u64| {
        Error::new(
            ErrorKind::InvalidData,
            format!("{n} bytes; {what} is at most {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        // The file grew while it was read.
        return Err(too_big(buf.len() as u64));
    }
    Ok(buf)
}

fn describe(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_directories_and_oversized_files() {
        let e = read_bounded(Path::new("/dev/zero"), 10, "a report").unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read_bounded(Path::new("/"), 10, "a report").unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let d = std::env::temp_dir().join(format!("softsev-input-{}", std::process::id()));
        std::fs::write(&d, [7u8; 11]).unwrap();
        let e = read_bounded(&d, 10, "a report").unwrap_err();
        assert!(
            e.to_string().contains("11 bytes; a report is at most 10"),
            "{e}"
        );
        assert_eq!(read_bounded(&d, 11, "a report").unwrap(), [7u8; 11]);
        std::fs::remove_file(&d).unwrap();
    }
}

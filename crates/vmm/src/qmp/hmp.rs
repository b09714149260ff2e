//! `human-monitor-command`: the HMP commands an SEV guest owner or debugger uses —
//! `xp /FMT ADDR` and `x /FMT ADDR` (QEMU `monitor/hmp-cmds-target.c:memory_dump`,
//! the `/FMT` parsing of `monitor/hmp.c:monitor_parse_arguments`), `info status`
//! (`hmp_info_status`) and `info sev` (`target/i386/sev.c:hmp_info_sev`).
//!
//! Memory is read through [`QmpGuest::read_phys`]: with a policy that allows
//! debugging the SEV debug path decrypts (DBG_DECRYPT, as AMD's SEV debug patches for
//! QEMU register it: `sev_set_debug_ops` only without NODBG); with NODBG the monitor
//! shows what the host sees, the ciphertext. Upstream QEMU never merged those debug
//! ops, so there `xp` always prints the ciphertext of private pages.
//!
//! Output lines end in `\r\n` as the monitor writes them. Differences from QEMU: the
//! address is a number or a sum/difference of numbers (no registers), the default
//! format and size are `x` and 4 on every call (QEMU remembers the last ones), a
//! dump is limited to 1 MiB, and `/i` (disassembly) is not available.

use super::{QmpError, QmpGuest, RunState};
use std::fmt::Write;

/// The most bytes one `x`/`xp` dumps.
pub const MAX_DUMP: u64 = 1 << 20;

/// Run one HMP command line; the text it prints.
pub fn run<G: QmpGuest + ?Sized>(
    guest: &mut G,
    state: RunState,
    line: &str,
    cpu_index: Option<i64>,
) -> Result<String, QmpError> {
    let cpu = match cpu_index {
        None => 0,
        Some(i) => u32::try_from(i)
            .map_err(|_| QmpError::generic("Parameter 'cpu-index' expects a CPU number"))?,
    };
    let mut out = String::new();
    let line = line.trim();
    let (cmd, rest) = match line.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim_start()),
        None => (line, ""),
    };
    match cmd {
        "" => {}
        "xp" | "x" => dump(guest, cmd == "xp", cpu, rest, &mut out),
        "info" => match rest.split_whitespace().next() {
            Some("status") => info_status(state, &mut out),
            Some("sev") => info_sev(guest, &mut out),
            Some(other) => out.push_str(&format!("unknown command: 'info {other}'\n")),
            None => out.push_str("info status  -- show the current VM status (running|paused)\ninfo sev  -- show SEV information\n"),
        },
        other => out.push_str(&format!("unknown command: '{other}'\n")),
    }
    Ok(out.replace('\n', "\r\n"))
}

fn info_status(state: RunState, out: &mut String) {
    let running = state == RunState::Running;
    out.push_str("VM status: ");
    out.push_str(if running { "running" } else { "paused" });
    if !running && state != RunState::Paused {
        let _ = write!(out, " ({})", state.as_str());
    }
    out.push('\n');
}

fn info_sev<G: QmpGuest + ?Sized>(guest: &mut G, out: &mut String) {
    let i = guest.sev_info();
    if !i.enabled {
        out.push_str("SEV is not enabled\n");
        return;
    }
    let onoff = |b: bool| if b { "on" } else { "off" };
    let _ = writeln!(out, "SEV type: sev");
    let _ = writeln!(out, "state: {}", i.state.as_str());
    let _ = writeln!(out, "build: {}", i.build_id);
    let _ = writeln!(out, "api version: {}.{}", i.api_major, i.api_minor);
    let _ = writeln!(out, "handle: {}", i.handle);
    let _ = writeln!(out, "debug: {}", onoff(i.policy & 1 == 0));
    let _ = writeln!(out, "key-sharing: {}", onoff(i.policy & 2 == 0));
}

/// `/FMT`: count, format letter, unit size.
struct Fmt {
    count: u64,
    format: u8,
    size: usize,
}

fn parse_fmt(s: &str) -> Result<(Fmt, &str), String> {
    let Some(f) = s.strip_prefix('/') else {
        return Ok((
            Fmt {
                count: 1,
                format: b'x',
                size: 4,
            },
            s,
        ));
    };
    let b = f.as_bytes();
    let mut i = 0;
    let mut count = 1u64;
    if b.first().is_some_and(u8::is_ascii_digit) {
        count = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            count = count.saturating_mul(10).saturating_add(u64::from(d - b'0'));
            i += 1;
        }
    }
    let mut format = None;
    let mut size = None;
    while let Some(&c) = b.get(i) {
        match c {
            b'o' | b'd' | b'u' | b'x' | b'i' | b'c' => format = Some(c),
            b'b' => size = Some(1),
            b'h' => size = Some(2),
            b'w' => size = Some(4),
            b'g' | b'L' => size = Some(8),
            _ => break,
        }
        i += 1;
    }
    if let Some(&c) = b.get(i)
        && !c.is_ascii_whitespace()
    {
        return Err(format!("invalid char in format: '{}'\n", c as char));
    }
    Ok((
        Fmt {
            count,
            format: format.unwrap_or(b'x'),
            size: size.unwrap_or(4),
        },
        f[i..].trim_start(),
    ))
}

/// A number (`0x` hex, `0` octal, decimal) or a `+`/`-` chain of them.
fn parse_expr(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("unexpected end of expression\n".into());
    }
    let mut total: u64 = 0;
    let mut sign = 1i8;
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (tok, tail) = rest.split_at(end);
        if tok.is_empty() {
            return Err(match tail.chars().next() {
                Some(c) => format!("invalid char '{c}' in expression\n"),
                None => "unexpected end of expression\n".into(),
            });
        }
        let v = if let Some(h) = tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
            u64::from_str_radix(h, 16)
        } else if tok.len() > 1 && tok.starts_with('0') {
            u64::from_str_radix(&tok[1..], 8)
        } else {
            tok.parse()
        }
        .map_err(
            |_| match tok.chars().find(|c| !c.is_ascii_hexdigit() && *c != 'x') {
                Some(c) => format!("invalid char '{c}' in expression\n"),
                None => "number too large\n".into(),
            },
        )?;
        total = if sign > 0 {
            total.wrapping_add(v)
        } else {
            total.wrapping_sub(v)
        };
        let tail = tail.trim_start();
        match tail.chars().next() {
            None => return Ok(total),
            Some('+') => sign = 1,
            Some('-') => sign = -1,
            Some(c) => return Err(format!("invalid char '{c}' in expression\n")),
        }
        rest = &tail[1..];
    }
}

fn dump<G: QmpGuest + ?Sized>(
    guest: &mut G,
    physical: bool,
    cpu: u32,
    args: &str,
    out: &mut String,
) {
    let (fmt, rest) = match parse_fmt(args) {
        Ok(x) => x,
        Err(e) => return out.push_str(&e),
    };
    let addr = match parse_expr(rest) {
        Ok(a) => a,
        Err(e) => return out.push_str(&e),
    };
    if fmt.format == b'i' {
        out.push_str("softsev's monitor has no disassembler (format 'i')\n");
        return;
    }
    let mut wsize = fmt.size;
    let max_digits = match fmt.format {
        b'o' => (wsize * 8).div_ceil(3),
        b'u' | b'd' => (wsize * 8 * 10).div_ceil(33),
        b'c' => {
            wsize = 1;
            0
        }
        _ => wsize * 8 / 4,
    };
    let line_size = if wsize == 1 { 8 } else { 16 };
    let mut len = fmt.count.saturating_mul(wsize as u64);
    if len > MAX_DUMP {
        let _ = writeln!(out, "softsev: dumps are limited to {MAX_DUMP} bytes");
        return;
    }
    let mut addr = addr;
    let mut buf = [0u8; 16];
    while len > 0 {
        let _ = write!(out, "{addr:016x}:");
        let l = len.min(line_size) as usize;
        let ok = if physical {
            guest.read_phys(addr, &mut buf[..l])
        } else {
            read_virt(guest, cpu, addr, &mut buf[..l])
        };
        if !ok {
            out.push_str(" Cannot access memory\n");
            return;
        }
        let mut i = 0;
        while i < l {
            let mut v = 0u64;
            for (k, b) in buf[i..(i + wsize).min(l)].iter().enumerate() {
                v |= u64::from(*b) << (8 * k);
            }
            out.push(' ');
            match fmt.format {
                b'o' => {
                    let s = if v == 0 {
                        "0".to_string()
                    } else {
                        format!("0{v:o}")
                    };
                    let _ = write!(out, "{s:>max_digits$}");
                }
                b'u' => {
                    let _ = write!(out, "{v:>max_digits$}");
                }
                b'd' => {
                    let _ = write!(out, "{:>max_digits$}", v as i64);
                }
                b'c' => printc(out, v as u8),
                _ => {
                    let _ = write!(out, "0x{v:0max_digits$x}");
                }
            }
            i += wsize;
        }
        out.push('\n');
        addr = addr.wrapping_add(l as u64);
        len -= l as u64;
    }
}

fn read_virt<G: QmpGuest + ?Sized>(guest: &mut G, cpu: u32, vaddr: u64, buf: &mut [u8]) -> bool {
    // Page by page, as cpu_memory_rw_debug does.
    let mut done = 0;
    while done < buf.len() {
        let va = vaddr.wrapping_add(done as u64);
        let in_page = (4096 - (va & 0xFFF) as usize).min(buf.len() - done);
        let Some(pa) = guest.translate(cpu, va) else {
            return false;
        };
        if !guest.read_phys(pa, &mut buf[done..done + in_page]) {
            return false;
        }
        done += in_page;
    }
    true
}

/// `monitor_printc`.
fn printc(out: &mut String, c: u8) {
    out.push('\'');
    match c {
        b'\'' => out.push_str("\\'"),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        32..=126 => out.push(c as char),
        _ => {
            let _ = write!(out, "\\x{c:02x}");
        }
    }
    out.push('\'');
}

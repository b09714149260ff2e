//! `libsoftsev_cpuid.so`: the CPUID an SEV host tool sees under `softsev exec --host`
//! (frontends.md §3.2, §7.1 step 5).
//!
//! snphost, sevctl and the `sev` crate execute CPUID to learn that they run on an
//! SEV-SNP-capable AMD EPYC (leaves 0, 1, 0x8000_0000/1, the brand string
//! 0x8000_0002..4 and 0x8000_001F). Loaded with `LD_PRELOAD`, this library's constructor
//! reads the table in `SOFTSEV_CPUID` (`LEAF=EAX,EBX,ECX,EDX;…`, hexadecimal, `*` = the
//! real register; written by `softsev_os::cpuid::encode`), installs a SIGSEGV handler and
//! turns on CPUID faulting with `arch_prctl(ARCH_SET_CPUID, 0)` (Linux
//! `arch/x86/kernel/process.c`, `set_cpuid_mode`; needs the `cpuid_fault` CPU feature).
//! From then on every CPUID of the process raises #GP, delivered as SIGSEGV with
//! `si_code == SI_KERNEL`; the handler checks that the faulting instruction is CPUID
//! (`0F A2`), executes the real CPUID with faulting briefly off, replaces the registers
//! the table names, and resumes after the instruction. Any other SIGSEGV restores the
//! default action and returns, so the fault repeats and kills the process as it would
//! have without the library.
//!
//! The setting is per thread, inherited by threads and `fork`, and cleared by `execve`
//! (so a child program starts clean and gets the library again through its inherited
//! `LD_PRELOAD`). Statically linked programs are not reached (frontends.md §7.3).
//!
//! Without `SOFTSEV_CPUID` in the environment the library does nothing.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// The environment variable with the override table.
pub const ENV: &str = "SOFTSEV_CPUID";

/// `ARCH_GET_CPUID` / `ARCH_SET_CPUID` (Linux `arch/x86/include/uapi/asm/prctl.h`).
const ARCH_GET_CPUID: libc::c_int = 0x1011;
const ARCH_SET_CPUID: libc::c_int = 0x1012;

/// How many leaves the table holds at most (the host table has 8).
const MAX_LEAVES: usize = 32;

/// One table entry: leaf, which registers are overridden (bit i = register i of
/// EAX, EBX, ECX, EDX), and the four values. Atomics so the signal handler reads them
/// without locks (written once by the constructor before faulting is enabled).
struct Entry {
    leaf: AtomicU32,
    mask: AtomicU32,
    regs: [AtomicU32; 4],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    leaf: AtomicU32::new(0),
    mask: AtomicU32::new(0),
    regs: [
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
        AtomicU32::new(0),
    ],
};

static TABLE: [Entry; MAX_LEAVES] = [EMPTY; MAX_LEAVES];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Parse the table (`LEAF=EAX,EBX,ECX,EDX;…`) into `(leaf, mask, regs)` entries.
pub fn parse(s: &str) -> Result<Vec<(u32, u32, [u32; 4])>, String> {
    let mut out = Vec::new();
    for item in s.split(';').filter(|i| !i.is_empty()) {
        let (leaf, regs) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: no '='"))?;
        let leaf = u32::from_str_radix(leaf, 16).map_err(|e| format!("leaf {leaf:?}: {e}"))?;
        let mut mask = 0;
        let mut vals = [0u32; 4];
        let mut n = 0;
        for (i, p) in regs.split(',').enumerate() {
            if i >= 4 {
                return Err(format!("{item:?}: more than 4 registers"));
            }
            n += 1;
            if p != "*" {
                vals[i] = u32::from_str_radix(p, 16).map_err(|e| format!("{p:?}: {e}"))?;
                mask |= 1 << i;
            }
        }
        if n != 4 {
            return Err(format!("{item:?}: {n} registers, want 4"));
        }
        out.push((leaf, mask, vals));
    }
    if out.len() > MAX_LEAVES {
        return Err(format!("{} leaves, at most {MAX_LEAVES}", out.len()));
    }
    Ok(out)
}

/// Apply the table to the real registers of `leaf`.
fn answer(leaf: u32, real: [u32; 4]) -> [u32; 4] {
    let mut r = real;
    let n = COUNT.load(Ordering::Acquire).min(MAX_LEAVES);
    for e in &TABLE[..n] {
        if e.leaf.load(Ordering::Relaxed) == leaf {
            let mask = e.mask.load(Ordering::Relaxed);
            for (i, slot) in r.iter_mut().enumerate() {
                if mask & (1 << i) != 0 {
                    *slot = e.regs[i].load(Ordering::Relaxed);
                }
            }
        }
    }
    r
}

/// `arch_prctl(code, arg)`; the raw result (0 or -1 with errno).
#[allow(unsafe_code)]
fn arch_prctl(code: libc::c_int, arg: libc::c_ulong) -> libc::c_long {
    // SAFETY: arch_prctl with ARCH_GET_CPUID / ARCH_SET_CPUID takes an integer argument
    // (no pointer is dereferenced by the kernel); the raw syscall has no memory effects on
    // this process beyond the per-thread CPUID-faulting flag.
    unsafe { libc::syscall(libc::SYS_arch_prctl, code, arg) }
}

/// The real CPUID of (`leaf`, `subleaf`): faulting is turned off around the instruction
/// (the instruction would otherwise fault again inside the handler).
fn real_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let faulting = ACTIVE.load(Ordering::Relaxed);
    if faulting {
        arch_prctl(ARCH_SET_CPUID, 1);
    }
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    if faulting {
        arch_prctl(ARCH_SET_CPUID, 0);
    }
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The CPUID a program sees with the library loaded, for tests: the table applied to
/// the real instruction.
pub fn emulated(leaf: u32, subleaf: u32) -> [u32; 4] {
    answer(leaf, real_cpuid(leaf, subleaf))
}

/// Reset SIGSEGV to its default action (for a fault that is not a CPUID).
#[allow(unsafe_code)]
fn default_segv() {
    // SAFETY: `signal` with SIG_DFL installs no code of ours; it is async-signal-safe
    // (POSIX lists `signal` among them when used this way on Linux/glibc, which
    // implements it with rt_sigaction).
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
    }
}

/// The SIGSEGV handler: emulate CPUID, or fall back to the default action.
#[allow(unsafe_code)]
extern "C" fn on_segv(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    if code != libc::SI_KERNEL || ctx.is_null() {
        // A page fault or a kill(2): not ours.
        default_segv();
        return;
    }
    // SAFETY: for an SA_SIGINFO handler the third argument is the ucontext_t of the
    // interrupted thread, valid and exclusively ours until the handler returns.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    let gregs = &mut uc.uc_mcontext.gregs;
    let rip = gregs[libc::REG_RIP as usize] as usize;
    // SAFETY: a #GP with si_code SI_KERNEL was raised by executing the instruction at RIP,
    // so its bytes are mapped and executable (readable: x86-64 has no execute-only pages
    // for user code under Linux without protection keys, which these tools do not use).
    let insn = unsafe { core::ptr::read_unaligned(rip as *const [u8; 2]) };
    if insn != [0x0F, 0xA2] {
        default_segv();
        return;
    }
    // SAFETY: errno is thread-local; saving and restoring it around the syscalls keeps
    // the interrupted code's errno intact (signal-handler etiquette).
    let saved_errno = unsafe { *libc::__errno_location() };
    let leaf = gregs[libc::REG_RAX as usize] as u32;
    let subleaf = gregs[libc::REG_RCX as usize] as u32;
    let r = emulated(leaf, subleaf);
    // CPUID writes the 32-bit registers, zero-extending into the 64-bit ones.
    gregs[libc::REG_RAX as usize] = i64::from(r[0]);
    gregs[libc::REG_RBX as usize] = i64::from(r[1]);
    gregs[libc::REG_RCX as usize] = i64::from(r[2]);
    gregs[libc::REG_RDX as usize] = i64::from(r[3]);
    gregs[libc::REG_RIP as usize] = (rip + 2) as i64;
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
}

fn warn(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "softsev-cpuid: {msg}");
}

/// Load the table and turn faulting on. Returns what went wrong, if anything.
#[allow(unsafe_code)]
fn install(table: &str) -> Result<(), String> {
    let entries = parse(table)?;
    for (e, (leaf, mask, regs)) in TABLE.iter().zip(&entries) {
        e.leaf.store(*leaf, Ordering::Relaxed);
        e.mask.store(*mask, Ordering::Relaxed);
        for (slot, v) in e.regs.iter().zip(regs) {
            slot.store(*v, Ordering::Relaxed);
        }
    }
    COUNT.store(entries.len(), Ordering::Release);
    if arch_prctl(ARCH_GET_CPUID, 0) < 0 {
        return Err(format!(
            "CPUID faulting is not available ({}): the real CPUID stays visible",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we fill in the
    // handler (a plain extern "C" fn with the SA_SIGINFO signature) and flags, and pass
    // valid pointers to sigaction(2). SA_NODEFER is not set: a fault inside the handler
    // (none is expected) is blocked and so terminates the process.
    let rc = unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, core::ptr::null_mut())
    };
    if rc != 0 {
        return Err(format!(
            "sigaction(SIGSEGV): {}",
            std::io::Error::last_os_error()
        ));
    }
    if arch_prctl(ARCH_SET_CPUID, 0) != 0 {
        return Err(format!(
            "arch_prctl(ARCH_SET_CPUID, 0): {}",
            std::io::Error::last_os_error()
        ));
    }
    ACTIVE.store(true, Ordering::Release);
    Ok(())
}

/// The constructor: runs when the dynamic loader maps the library, before `main`.
extern "C" fn softsev_cpuid_init() {
    let Ok(table) = std::env::var(ENV) else {
        return;
    };
    if let Err(e) = install(&table) {
        warn(&e);
    }
}

/// Registers [`softsev_cpuid_init`] with the dynamic loader.
#[allow(unsafe_code)]
#[used]
// SAFETY: `.init_array` holds pointers to `extern "C" fn()` run once at load time; the
// function takes no arguments (glibc passes argc/argv/envp, which the C ABI lets a
// function without parameters ignore) and is safe to run before `main`.
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = softsev_cpuid_init;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_table_and_refuses_malformed_ones() {
        let t = parse("0=*,68747541,444d4163,69746e65;8000001f=3f,4c73,1fd,1").unwrap();
        assert_eq!(
            t[0],
            (0, 0b1110, [0, 0x6874_7541, 0x444d_4163, 0x6974_6e65])
        );
        assert_eq!(t[1], (0x8000_001F, 0b1111, [0x3F, 0x4C73, 0x1FD, 1]));
        assert!(parse("1=1,2,3").is_err());
        assert!(parse("1=1,2,3,4,5").is_err());
        assert!(parse("x=1,2,3,4").is_err());
        assert!(parse("1=1,2,3,zz").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }
}

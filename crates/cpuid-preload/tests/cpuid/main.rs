//! Integration test of the preload library: this test binary re-runs itself with
//! `LD_PRELOAD=libsoftsev_cpuid.so` and a table, executes CPUID there, and checks the
//! overridden leaves changed and the others did not. Skips (fails under
//! `SOFTSEV_REQUIRE_INTEROP=1`) when the CPU has no CPUID faulting or the .so was not
//! built.

use std::path::PathBuf;
use std::process::Command;

const CHILD_ENV: &str = "SOFTSEV_CPUID_TEST_CHILD";

fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn skip(why: &str) {
    if std::env::var("SOFTSEV_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{why} and SOFTSEV_REQUIRE_INTEROP=1");
    }
    eprintln!("SKIP: softsev-cpuid preload test: {why}");
}

/// The .so cargo built beside this test binary (target/<profile>/deps or its parent).
fn library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [
        deps.join("libsoftsev_cpuid.so"),
        deps.parent()?.join("libsoftsev_cpuid.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn faulting_supported() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.contains(" cpuid_fault"))
        .unwrap_or(false)
}

#[test]
fn preloaded_library_answers_the_table_and_leaves_other_leaves_real() {
    if std::env::var(CHILD_ENV).is_ok() {
        for leaf in [0u32, 1, 7, 0x8000_0002, 0x8000_001F] {
            let r = cpuid(leaf);
            println!(
                "leaf {leaf:x} = {:x} {:x} {:x} {:x}",
                r[0], r[1], r[2], r[3]
            );
        }
        return;
    }
    if !faulting_supported() {
        return skip("the CPU has no cpuid_fault");
    }
    let Some(lib) = library() else {
        return skip("libsoftsev_cpuid.so not built (cargo build -p softsev-cpuid)");
    };
    let brand = u32::from_le_bytes(*b"AMD ");
    let table =
        format!("0=*,68747541,444d4163,69746e65;8000001f=3f,4c73,1fd,1;80000002={brand:x},*,*,*");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "preloaded_library_answers_the_table_and_leaves_other_leaves_real",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("SOFTSEV_CPUID", &table)
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}{err}");
    assert!(
        !err.contains("softsev-cpuid:"),
        "the library complained: {err}"
    );
    let line = |leaf: u32| {
        // libtest prints "test … ... " before the child's first line, without a newline.
        let key = format!("leaf {leaf:x} =");
        text.lines()
            .find_map(|l| l.find(&key).map(|i| l[i..].to_string()))
            .unwrap_or_else(|| panic!("no leaf {leaf:x} in {text}"))
    };
    let real0 = cpuid(0);
    assert_eq!(
        line(0),
        format!("leaf 0 = {:x} 68747541 444d4163 69746e65", real0[0])
    );
    assert_eq!(line(0x8000_001F), "leaf 8000001f = 3f 4c73 1fd 1");
    let real_b = cpuid(0x8000_0002);
    assert_eq!(
        line(0x8000_0002),
        format!(
            "leaf 80000002 = {brand:x} {:x} {:x} {:x}",
            real_b[1], real_b[2], real_b[3]
        )
    );
    let r7 = cpuid(7);
    assert_eq!(
        line(7),
        format!("leaf 7 = {:x} {:x} {:x} {:x}", r7[0], r7[1], r7[2], r7[3])
    );
}

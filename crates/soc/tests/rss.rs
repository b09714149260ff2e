//! Memory cost of a sparse guest: a 64 GiB address space whose guest touched 100 MiB
//! must cost under 200 MiB of resident memory (Linux only; skipped elsewhere).
use softsev_abi::{Asid, Gpa, Spa, Vmpl};
use softsev_soc::*;

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Make each page private and validated, and write a full page of guest data.
fn touch(soc: &Soc, pages: impl Iterator<Item = u64>) {
    let asid = Asid(1);
    let data = vec![0xC3u8; 4096];
    for (i, spa_page) in pages.enumerate() {
        let spa = Spa(spa_page * 4096);
        let gpa = Gpa(i as u64 * 4096);
        let st = soc.rmpupdate(
            spa,
            &RmpUpdateInput {
                gpa: gpa.0,
                assigned: 1,
                asid: asid.0,
                ..Default::default()
            },
        );
        assert_eq!(st, RmpStatus::SUCCESS);
        let pv = PvalidateReq {
            asid,
            vmpl: Vmpl(0),
            gpa,
            spa,
            size: PageSize::Size4K,
            validate: true,
        };
        assert_eq!(soc.pvalidate(&pv), Ok(RmpStatus::SUCCESS));
        let acc = GuestAccess::snp(asid, gpa, spa, AccessKind::Write, true);
        soc.guest_write(&acc, &data).unwrap();
    }
}

fn measure(name: &str, pages: Vec<u64>) {
    let Some(before) = rss_bytes() else {
        println!("SKIP: /proc/self/status not available; RSS not measured");
        return;
    };
    let soc = Soc::new(SocConfig {
        seed: Some(b"rss".to_vec()),
        ..SocConfig::new(64 << 30)
    });
    soc.activate_key(Asid(1), &[9; 16]).unwrap();
    touch(&soc, pages.into_iter());
    let after = rss_bytes().unwrap_or(before);
    let delta = after.saturating_sub(before);
    println!(
        "{name}: 64 GiB SoC, 100 MiB touched: RSS grew by {} MiB",
        delta >> 20
    );
    assert!(delta < 200 << 20, "{name}: RSS grew by {} MiB", delta >> 20);
    drop(soc);
}

#[test]
fn sparse_64g_guest_touching_100m_stays_small() {
    const PAGES: u64 = 100 << 8; // 100 MiB of 4 KiB pages
    const TOTAL: u64 = (64 << 30) / 4096;
    // Runs of 1 MiB spread over the whole address space (a booted guest's pattern).
    let runs: Vec<u64> = (0..PAGES)
        .map(|i| {
            let run = i / 256;
            (run * (TOTAL / 100)) + (i % 256)
        })
        .collect();
    measure("1 MiB runs", runs);
    // Single pages scattered pseudo-randomly (worst case for 2 MiB chunking).
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut seen = std::collections::HashSet::new();
    let scattered: Vec<u64> = std::iter::from_fn(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(x % TOTAL)
    })
    .filter(|p| seen.insert(*p))
    .take(PAGES as usize)
    .collect();
    measure("scattered 4 KiB pages", scattered);
}

//! Host MSRs and the kvm_amd module parameters.

use softsev_devices::host::{
    HostMsrs, MSR_AMD64_RMP_BASE, MSR_AMD64_RMP_END, MSR_AMD64_SYSCFG, ModuleParams,
};
use softsev_devices::msr::{MsrFile, MsrSource};
use softsev_vfs::{Caller, Errno, NodeKind, OpenFlags, VirtualFs};
use std::sync::Arc;

const ROOT: Caller = Caller {
    pid: 1,
    uid: 0,
    gid: 0,
};

#[test]
fn host_msrs_show_sme_snp_and_an_rmp_covering_memory() {
    let m = HostMsrs::for_soc(1 << 30, true);
    let syscfg = m.rdmsr(MSR_AMD64_SYSCFG).unwrap();
    assert_ne!(syscfg & (1 << 23), 0, "SME (snphost ok: bit 23)");
    assert_ne!(syscfg & (1 << 24), 0, "SNP (snphost ok: bit 24)");
    let (base, end) = (
        m.rdmsr(MSR_AMD64_RMP_BASE).unwrap(),
        m.rdmsr(MSR_AMD64_RMP_END).unwrap(),
    );
    assert_eq!(base % (1 << 20), 0);
    assert!(base >= 1 << 30, "above the SoC's memory");
    // 16 KiB bookkeeping + 16 bytes per 4 KiB page, end inclusive.
    assert_eq!(end - base + 1, 0x4000 + ((1u64 << 30) / 4096) * 16);
    assert_eq!(m.rdmsr(0xC001_0131), None, "SEV_STATUS is the guest's");

    let off = HostMsrs::for_soc(1 << 30, false);
    assert_eq!(off.rdmsr(MSR_AMD64_SYSCFG).unwrap() & (1 << 24), 0);
    assert_eq!(off.rdmsr(MSR_AMD64_RMP_BASE), Some(0));

    // Through the MSR file as snphost reads it: pread(8, offset = index).
    let f = MsrFile::new(vec![Arc::new(m)]);
    assert_eq!(
        f.read("", 0, u64::from(MSR_AMD64_SYSCFG), 8, &ROOT)
            .unwrap(),
        syscfg.to_le_bytes()
    );
    assert_eq!(f.read("", 0, 0x10, 8, &ROOT), Err(Errno::EIO));
}

#[test]
fn module_parameters_read_like_sysfs_bools() {
    let p = ModuleParams::new(&softsev_host::ModuleParams {
        sev_es: false,
        ..Default::default()
    });
    assert_eq!(p.kind(""), Some(NodeKind::Dir { mode: 0o755 }));
    assert_eq!(p.readdir("").unwrap(), ["sev", "sev_es", "sev_snp"]);
    assert_eq!(
        p.kind("sev_snp"),
        Some(NodeKind::File {
            mode: 0o444,
            size: 4096
        })
    );
    assert_eq!(p.read("sev", 0, 0, 4096, &ROOT).unwrap(), b"Y\n");
    assert_eq!(p.read("sev_es", 0, 0, 4096, &ROOT).unwrap(), b"N\n");
    assert_eq!(p.read("sev_snp", 0, 1, 4096, &ROOT).unwrap(), b"\n");
    assert_eq!(p.read("sev_snp", 0, 9, 4096, &ROOT).unwrap(), b"");
    assert_eq!(p.read("nope", 0, 0, 4096, &ROOT), Err(Errno::ENOENT));
    assert_eq!(p.read("", 0, 0, 4096, &ROOT), Err(Errno::EISDIR));
    assert_eq!(p.write("sev", 0, 0, b"N\n", &ROOT), Err(Errno::EACCES));
    assert_eq!(
        p.open(
            "sev",
            OpenFlags {
                read: false,
                write: true
            },
            &ROOT
        ),
        Err(Errno::EACCES)
    );
    assert_eq!(p.readdir("sev"), Err(Errno::ENOTDIR));
}

//! The guest model's boot flow (`softsev_guest::boot`: SEV_STATUS, GHCB negotiation and
//! registration, memory acceptance, shared bounce buffers, AP creation, secrets page,
//! extended attestation report, derived key) running unchanged on the software host,
//! end to end through the firmware.
use crate::common::*;
use softsev_abi::Gpa;
use softsev_abi::report::AttestationReport;
use softsev_guest::{ApConfig, BootConfig, MemRange};
use softsev_host::*;
use std::sync::mpsc::channel;

const MEM: u64 = 16 << 20;
const SECRETS_GFN: u64 = 8;

#[test]
fn linux_like_boot_on_the_soft_host() {
    let h = host();
    let mut t = launched_snp_with(&h, MEM, 2, 8, SNP_POLICY, Some(SECRETS_GFN), true);
    let mut cfg = BootConfig::new(
        Gpa(0xA000),
        Gpa(SECRETS_GFN << 12),
        vec![MemRange::new(0, MEM)],
        MemRange::new(0x10_0000, 24 * 4096),
        [7; 64],
    );
    cfg.prevalidated = vec![MemRange::new(0, (SECRETS_GFN + 1) << 12)];
    cfg.aps = Some(ApConfig {
        apic_ids: vec![1],
        vmsa_base: Gpa(0x40_0000),
        start_ip: 0x8000,
    });
    let (tx, rx) = channel();
    t.vcpus[0].set_guest(move |cpu: &mut GuestCpu| {
        let r = softsev_guest::boot(cpu, &cfg);
        let ok = r.is_ok();
        let _ = tx.send(r.map_err(|e| e.to_string()));
        Ok(if ok {
            GuestEnd::Halt
        } else {
            GuestEnd::Shutdown
        })
    });
    // The VMM: conversions, and the certificates for the extended request (too small
    // first: the guest retries with the pages asked for).
    let certs = b"-----BEGIN CERTIFICATE-----fake VCEK-----END CERTIFICATE-----".to_vec();
    let mut cert_exits = 0;
    loop {
        let exit = t.vcpus[0].run().unwrap();
        match exit {
            VcpuExit::Hypercall { .. } => {
                assert!(t.vm.handle_map_gpa_range(exit, Prefault::OnAccess));
            }
            VcpuExit::MemoryFault { flags, gpa, size } => {
                let to = if *flags & softsev_abi::kvm::KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
                    MemAttr::Private
                } else {
                    MemAttr::Shared
                };
                let (g, s) = (*gpa, *size);
                t.vm.convert_memory(Gpa(g), s, to, Prefault::OnAccess)
                    .unwrap();
            }
            VcpuExit::SnpReqCerts { gpa, npages, ret } => {
                cert_exits += 1;
                if *npages < 5 {
                    *npages = 5;
                    *ret = Errno::ENOSPC.0 as u64;
                } else {
                    let e = softsev_abi::ghcb::CertTableEntry {
                        guid: [0x11; 16],
                        offset: 48,
                        length: certs.len() as u32,
                    };
                    let mut tbl = zerocopy::IntoBytes::as_bytes(&e).to_vec();
                    tbl.extend_from_slice(&[0; 24]);
                    tbl.extend_from_slice(&certs);
                    let at = Hva(t.uaddr.0 + *gpa);
                    t.vm.host().user().write(at, &tbl).unwrap();
                    *ret = 0;
                }
            }
            VcpuExit::Hlt => break,
            other => panic!("unexpected exit {other:?}; guest said {:?}", rx.try_recv()),
        }
    }
    let report = rx
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("guest boot failed: {e}"));
    assert_eq!(cert_exits, 2, "too small, then delivered");
    assert_eq!(report.ghcb_version, 2);
    assert_eq!(report.cbit_pos, 51);
    assert_eq!(report.aps_started, vec![1]);
    assert!(report.accepted_bytes > 0);
    assert!(report.certs.ends_with(&certs));
    assert!(report.derived_key.is_some());
    let r = AttestationReport::parse(&report.report).unwrap();
    assert_eq!(r.report_data, [7; 64]);
    assert_eq!(r.host_data, [0x42; 32]);
    let gctx = t.vm.sev_state().snp_context().unwrap();
    assert_eq!(
        Some(r.measurement),
        t.vm.host().firmware().launch_digest(gctx)
    );
    // The AP runs from the VMSA the BSP created for it.
    assert!(matches!(t.vcpus[1].ap_state(), ApState::Created(_)));
    t.vcpus[1].set_guest(|cpu: &mut GuestCpu| {
        assert!(cpu.vmsa_gpa().is_some());
        Ok(GuestEnd::Halt)
    });
    assert_eq!(t.vcpus[1].run().unwrap().clone(), VcpuExit::Hlt);
    // Ownership invariants hold after the whole boot.
    assert_eq!(softsev_host::fuzz::check_invariants(&t.vm), None);
}

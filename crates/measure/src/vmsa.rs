//! The VMSA pages QEMU + KVM measure for each vCPU (shared/spec/snp-launch.md §3):
//! VMM-specific register differences, SVSM VMSA. The vCPU types (CPUID signatures) are
//! in [`crate::qemu`].

use softsev_abi::vmsa::{VmcbSegment, Vmsa};

/// Reset address of the BSP.
pub const BSP_EIP: u32 = 0xFFFF_FFF0;
/// Default guest PAT.
pub const DEFAULT_G_PAT: u64 = 0x0007_0406_0007_0406;

/// Which VMM built the guest (register and ordering quirks).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum VmmType {
    /// QEMU + KVM.
    #[default]
    Qemu,
    /// AWS EC2 (as sev-snp-measure 0.0.13 models it: RDX 0x600).
    Ec2,
    /// Google Compute Engine.
    Gce,
    /// libkrun, as snpguest 0.11 (the `sev` crate 8.0.0, its only published model)
    /// computes it: EC2-like segment attributes with CS 0x9A on every vCPU, RDX, MXCSR
    /// and x87 FCW 0, and QEMU's metadata handling (the CPUID page measured in place).
    /// The crate's libkrun register set-up (RSI 0x7000, RBP/RSP 0x8FF0 on the BSP; CS
    /// 0x9100:0x91000 on APs) never reaches the digest: it passes the vCPU *count*
    /// where the set-up expects the vCPU index, so every vCPU takes the AP branch
    /// (RIP/RSP/RBP/RSI 0), and the reset-vector CS written afterwards replaces the
    /// AP's. softsev reproduces the tool's digest (docs/measure.md).
    Krun,
}

impl VmmType {
    /// Parse `QEMU`, `ec2`, `gce`, `krun` (case-insensitive).
    pub fn parse(s: &str) -> Option<VmmType> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Some(VmmType::Qemu),
            "ec2" => Some(VmmType::Ec2),
            "gce" => Some(VmmType::Gce),
            "krun" => Some(VmmType::Krun),
            _ => None,
        }
    }
    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
            VmmType::Krun => "krun",
        }
    }
}

/// How KVM set up an SEV-ES guest, which decides whether the launch VMSAs carry the
/// vCPU's x87/SSE reset state (shared/spec/sev-legacy.md §8.1; Linux
/// `arch/x86/kvm/svm/sev.c:sev_es_sync_vmsa`, QEMU `sev-guest` property
/// `legacy-vm-type`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum EsVmsaInit {
    /// `KVM_SEV_ES_INIT` on a default VM type (QEMU `legacy-vm-type=on`, and `auto`,
    /// QEMU's default for `sev-guest`): KVM leaves the FPU fields of the VMSA zero
    /// ("to avoid breaking older measurements"), so MXCSR and x87 FCW are 0. This is
    /// what sevctl `vmsa build` models.
    #[default]
    EsInit,
    /// `KVM_SEV_INIT2` on a `KVM_X86_SEV_ES_VM` (QEMU `legacy-vm-type=off`; always for
    /// SNP): KVM copies the guest's reset FPU state, MXCSR 0x1F80 and x87 FCW 0x37F
    /// (for QEMU; ec2 and gce set them 0 anyway). This is what sev-snp-measure models.
    Init2,
}

impl EsVmsaInit {
    /// The flavour QEMU's `legacy-vm-type` selects: `on` and `auto` → [`EsVmsaInit::EsInit`]
    /// (QEMU's auto resolves to the legacy type for `sev-guest`, §8.1), `off` →
    /// [`EsVmsaInit::Init2`]. `None` for any other word.
    pub fn from_legacy_vm_type(s: &str) -> Option<EsVmsaInit> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "auto" => Some(EsVmsaInit::EsInit),
            "off" => Some(EsVmsaInit::Init2),
            _ => None,
        }
    }
}

/// The VMSA for one vCPU of a QEMU/ec2/gce/krun SEV-ES or SNP guest started at `eip`, as
/// KVM's `KVM_SEV_INIT2` (and SNP) path writes it ([`EsVmsaInit::Init2`]).
pub fn launch_vmsa(eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> Vmsa {
    launch_vmsa_with(eip, sev_features, vcpu_sig, vmm, EsVmsaInit::Init2)
}

/// [`launch_vmsa`] for the KVM set-up `init`: with [`EsVmsaInit::EsInit`] MXCSR and
/// x87 FCW stay 0 (§8.1).
pub fn launch_vmsa_with(
    eip: u32,
    sev_features: u64,
    vcpu_sig: u32,
    vmm: VmmType,
    init: EsVmsaInit,
) -> Vmsa {
    let mut v = Vmsa::zeroed();
    let (mut cs_attr, mut ss_attr, mut tr_attr, mut rdx, mut mxcsr, mut fcw, mut g_pat) = (
        0x9B,
        0x93,
        0x8B,
        u64::from(vcpu_sig),
        0x1F80,
        0x37F,
        DEFAULT_G_PAT,
    );
    match vmm {
        VmmType::Qemu => {}
        VmmType::Ec2 => {
            if eip == BSP_EIP {
                cs_attr = 0x9A;
            }
            ss_attr = 0x92;
            tr_attr = 0x83;
            rdx = 0x600;
            mxcsr = 0;
            fcw = 0;
        }
        VmmType::Krun => {
            cs_attr = 0x9A;
            ss_attr = 0x92;
            tr_attr = 0x83;
            rdx = 0;
            mxcsr = 0;
            fcw = 0;
        }
        VmmType::Gce => {
            g_pat = 0x0007_0106;
            rdx = 0x600;
            mxcsr = 0;
            fcw = 0;
        }
    }
    let data = VmcbSegment::new(0, 0x93, 0xFFFF, 0);
    v.es = data;
    v.cs = VmcbSegment::new(0xF000, cs_attr, 0xFFFF, u64::from(eip & 0xFFFF_0000));
    v.ss = VmcbSegment::new(0, ss_attr, 0xFFFF, 0);
    v.ds = data;
    v.fs = data;
    v.gs = data;
    v.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.ldtr = VmcbSegment::new(0, 0x82, 0xFFFF, 0);
    v.tr = VmcbSegment::new(0, tr_attr, 0xFFFF, 0);
    v.efer = 0x1000;
    v.cr4 = 0x40;
    v.cr0 = 0x10;
    v.dr7 = 0x400;
    v.dr6 = 0xFFFF_0FF0;
    v.rflags = 0x2;
    v.rip = u64::from(eip & 0xFFFF);
    v.g_pat = g_pat;
    v.rdx = rdx;
    v.sev_features = sev_features;
    v.xcr0 = 0x1;
    if init == EsVmsaInit::Init2 {
        v.mxcsr = mxcsr;
        v.x87_fcw = fcw;
    }
    v
}

/// The VMSA sev-snp-measure uses for every vCPU of a COCONUT-SVSM guest (RIP = SVSM
/// entry, flat 32-bit segments, CR0 0x11, SEV_FEATURES 0x1, MXCSR 0x1F80, FCW 0 — the
/// last as the tool's published vectors embed it; spec §10.4).
pub fn svsm_vmsa(rip: u64, vcpu_sig: u32) -> Vmsa {
    let mut v = Vmsa::zeroed();
    let flat = VmcbSegment::new(16, 0xC93, 0xFFFF_FFFF, 0);
    v.es = flat;
    v.cs = VmcbSegment::new(8, 0xC9B, 0xFFFF_FFFF, 0);
    v.ss = flat;
    v.ds = flat;
    v.fs = flat;
    v.gs = VmcbSegment::new(0, 0x93, 0xFFFF, 0);
    v.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.idtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
    v.ldtr = VmcbSegment::new(0, 0x82, 0xFFFF, 0);
    v.tr = VmcbSegment::new(0, 0x8B, 0xFFFF, 0);
    v.efer = 0x1000;
    v.cr4 = 0x40;
    v.cr0 = 0x11;
    v.dr7 = 0x400;
    v.dr6 = 0xFFFF_0FF0;
    v.rflags = 0x2;
    v.rip = rip;
    v.g_pat = DEFAULT_G_PAT;
    v.rdx = u64::from(vcpu_sig);
    v.sev_features = 0x1;
    v.xcr0 = 0x1;
    v.mxcsr = 0x1F80;
    v
}

/// The 4096 bytes of a VMSA page.
pub fn page_bytes(v: &Vmsa) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(v)
}

/// The BSP and AP VMSAs of a launch; vCPU 0 is the BSP, every other vCPU uses the AP page.
#[derive(Clone, Debug)]
pub struct VcpuVmsas {
    /// vCPU 0.
    pub bsp: Vmsa,
    /// vCPUs 1.. (absent when the image has no AP reset address).
    pub ap: Option<Vmsa>,
}

impl VcpuVmsas {
    /// QEMU-style VMSAs: BSP at the reset vector, APs at the OVMF SEV-ES reset address.
    pub fn new(ap_eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> Self {
        Self::new_with(ap_eip, sev_features, vcpu_sig, vmm, EsVmsaInit::Init2)
    }

    /// [`VcpuVmsas::new`] for the KVM set-up `init` (see [`launch_vmsa_with`]).
    pub fn new_with(
        ap_eip: u32,
        sev_features: u64,
        vcpu_sig: u32,
        vmm: VmmType,
        init: EsVmsaInit,
    ) -> Self {
        VcpuVmsas {
            bsp: launch_vmsa_with(BSP_EIP, sev_features, vcpu_sig, vmm, init),
            ap: (ap_eip != 0).then(|| launch_vmsa_with(ap_eip, sev_features, vcpu_sig, vmm, init)),
        }
    }

    /// The page of vCPU `i`.
    pub fn get(&self, i: u32) -> Option<&Vmsa> {
        if i == 0 {
            Some(&self.bsp)
        } else {
            self.ap.as_ref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softsev_crypto::hash::sha384;
    use zerocopy::IntoBytes;

    #[test]
    fn qemu_bsp_nonzero_bytes_match_spec() {
        // spec §3.2: complete non-zero byte list of the QEMU BSP page (EPYC-v4, 0x21).
        let v = launch_vmsa(BSP_EIP, 0x21, 0x80_0F12, VmmType::Qemu);
        let list: Vec<String> = v
            .as_bytes()
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .map(|(i, b)| format!("{i:03x}:{b:02x}"))
            .collect();
        let want = "002:93 004:ff 005:ff 011:f0 012:9b 014:ff 015:ff 01a:ff 01b:ff 022:93 024:ff 025:ff 032:93 034:ff \
035:ff 042:93 044:ff 045:ff 052:93 054:ff 055:ff 064:ff 065:ff 072:82 074:ff 075:ff 084:ff 085:ff 092:8b \
094:ff 095:ff 0d1:10 148:40 158:10 161:04 168:f0 169:0f 16a:ff 16b:ff 170:02 178:f0 179:ff 268:06 269:04 \
26a:07 26c:06 26d:04 26e:07 310:12 311:0f 312:80 3b0:21 3e8:01 408:80 409:1f 410:7f 411:03";
        assert_eq!(list.join(" "), want);
    }

    #[test]
    fn qemu_page_hashes_match_spec() {
        let h = |eip, f| {
            hex::encode(sha384(
                launch_vmsa(eip, f, 0x80_0F12, VmmType::Qemu).as_bytes(),
            ))
        };
        assert_eq!(
            h(BSP_EIP, 1),
            "77920c4c629ff47e90c0e174fc1ad0eb6fa664f88cd4739488058a8c6cb1a77b3856f55378e9518d0da99452d51c553a"
        );
        assert_eq!(
            h(0x80B004, 1),
            "8413b852790765a310d95867a8b00bfca3a802b5a80830044b45e253fe96222657e11e53fcf63eb0e0afd722385bf7b4"
        );
        assert_eq!(
            h(BSP_EIP, 0x21),
            "ae79efa6efbe1594a2717dfd42af495a0e4ed37b00e529a5fdf349bea04c3513962ffb0c74cf65b0d9a1857271833d6e"
        );
        assert_eq!(
            h(0x80B004, 0x21),
            "180ef2675dc01615d31b3e84ef27a0a69d08bfbbb58ea4f6a0188f08884ab6407591ada42f99749ce9a406fb4e5d8355"
        );
    }
}

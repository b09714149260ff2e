//! Launch: SNP_LAUNCH_START, SNP_LAUNCH_UPDATE, SNP_LAUNCH_FINISH (AMD SEV firmware
//! `snp_mcmd_launch_*`; shared/spec/snp-launch.md §1–2, §7).

use crate::fw::{AsidState, Firmware, FwResult, State, misaligned};
use crate::guest::{Activation, GuestState};
use softsev_abi::fw_buf::{SnpCpuidPage, SnpLaunchFinish, SnpLaunchStart, SnpLaunchUpdate};
use softsev_abi::id_block::{IdAuth, IdBlock};
use softsev_abi::page_info::PageType;
use softsev_abi::rmp::PageState;
use softsev_abi::secrets::SecretsPage;
use softsev_abi::{FwStatus, Gpa, GuestPolicy, Product, Spa};
use softsev_measure::VmplPerms;
use softsev_measure::digest::page_contents;
use softsev_soc::KeySel;
use zerocopy::{FromBytes, FromZeros, IntoBytes};
use zeroize::Zeroize;

/// Version of the secrets page the firmware writes.
pub const SECRETS_PAGE_VERSION: u32 = 3;
/// TSC_FACTOR written into the secrets page (`(100000 - 99600) / 2`).
pub const TSC_FACTOR: u32 = 200;

const PAGE: usize = 0x1000;

impl Firmware {
    /// Policy bits this platform accepts (others are POLICY_FAILURE).
    fn policy_failure(&self, policy: u64, product: Product, v: crate::fw::FwVersion) -> bool {
        let p = GuestPolicy(policy);
        p.check_reserved().is_err()
            || policy & GuestPolicy::RESERVED_MBO == 0
            || (!p.smt() && self.config.smt_enabled)
            || p.abi_major() > v.major
            || (p.abi_major() == v.major && p.abi_minor() > v.minor)
            || (policy & GuestPolicy::MEM_AES_256_XTS != 0 && product == Product::Milan)
            || (policy & GuestPolicy::CIPHERTEXT_HIDING != 0 && !self.config.ciphertext_hiding)
    }

    pub(crate) fn snp_launch_start(&self, st: &mut State, cmd: SnpLaunchStart) -> FwResult {
        let ma_en = cmd.flags & SnpLaunchStart::MA_EN != 0;
        let imi_en = cmd.flags & SnpLaunchStart::IMI_EN != 0;
        if misaligned(cmd.gctx_paddr)
            || cmd.flags & !(SnpLaunchStart::MA_EN | SnpLaunchStart::IMI_EN) != 0
            || misaligned(cmd.ma_gctx_paddr)
        {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        if self.context_mut(st, cmd.gctx_paddr)?.state != GuestState::Init {
            return Err(FwStatus::INVALID_GUEST_STATE);
        }
        let mut ma = None;
        if ma_en {
            self.check_context(st, cmd.ma_gctx_paddr)?;
            let m = self.context_mut(st, cmd.ma_gctx_paddr)?;
            ma = Some((m.ma_gctx.is_some(), m.policy().single_socket(), m.report_id));
        }
        let version = st.current.version;
        let product = self.chip.product();
        let policy = GuestPolicy(cmd.policy);
        let bad = (ma_en && !policy.migrate_ma())
            || ma.is_some_and(|(has_ma, _, _)| has_ma)
            || self.policy_failure(cmd.policy, product, version)
            || (ma_en && policy.single_socket() && ma.is_some_and(|(_, ss, _)| !ss));
        if bad {
            return Err(FwStatus::POLICY_FAILURE);
        }
        let msg = crate::guest_msg::GuestMsgState::new(&mut st.rng);
        let mut vmrk = zeroize::Zeroizing::new([0u8; 32]);
        st.rng.fill(&mut vmrk[..]);
        let report_id = st.rng.array::<32>();
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        g.policy = cmd.policy;
        g.ma_gctx = ma_en.then_some(cmd.ma_gctx_paddr);
        g.msg = msg;
        g.vmrk = vmrk;
        g.report_id = report_id;
        g.report_id_ma = match ma {
            Some((_, _, id)) => id,
            None => [0xFF; 32],
        };
        g.imi_en = imi_en;
        g.gosvw = cmd.gosvw;
        g.desired_tsc_freq = cmd.desired_tsc_freq;
        g.state = GuestState::Launch;
        st.guest_count += 1;
        Ok(())
    }

    pub(crate) fn snp_launch_update(&self, st: &mut State, cmd: SnpLaunchUpdate) -> FwResult {
        if misaligned(cmd.gctx_paddr)
            || misaligned(cmd.page_paddr)
            || cmd.flags_reserved() != 0
            || cmd.reserved != 0
            || cmd.vmpl_perms & 0xFF != 0
            || cmd.reserved2 != 0
        {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        let (mut entry, pstate) = self.page_state(cmd.page_paddr)?;
        if pstate != PageState::PRE_GUEST {
            return Err(FwStatus::INVALID_PAGE_STATE);
        }
        if entry.is_2m() != cmd.page_2m() {
            return Err(FwStatus::INVALID_PAGE_SIZE);
        }
        if entry.is_2m() && cmd.page_paddr & 0x1F_FFFF != 0 {
            return Err(FwStatus::INVALID_ADDRESS);
        }
        let page_type = PageType(cmd.page_type());
        match page_type {
            PageType::NORMAL | PageType::ZERO | PageType::UNMEASURED => {}
            PageType::VMSA | PageType::SECRETS | PageType::CPUID => {
                if entry.is_2m() {
                    return Err(FwStatus::INVALID_PAGE_SIZE);
                }
            }
            _ => return Err(FwStatus::INVALID_PARAM),
        }
        let product = self.chip.product();
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        if g.state != GuestState::Launch {
            return Err(FwStatus::INVALID_GUEST_STATE);
        }
        if g.is_inactive() {
            return Err(FwStatus::INACTIVE);
        }
        if entry.asid() != g.asid {
            return Err(FwStatus::INVALID_PAGE_OWNER);
        }
        if g.imi_en && !cmd.imi_page() {
            return Err(FwStatus::INVALID_PARAM);
        }
        let [vmpl1, vmpl2, vmpl3] = cmd.vmpl_perm_bytes();
        let perms = VmplPerms {
            vmpl1,
            vmpl2,
            vmpl3,
        };
        let pages = if entry.is_2m() { 512 } else { 1 };
        let mut buf = vec![0u8; PAGE];
        let mut gpa = entry.gpa();
        let mut spa = cmd.page_paddr;
        for _ in 0..pages {
            self.read_plain(spa, &mut buf)?;
            let contents =
                page_contents(page_type, Gpa(gpa), &buf).map_err(|_| FwStatus::INVALID_PARAM)?;
            match page_type {
                PageType::ZERO => buf.fill(0),
                PageType::SECRETS => write_secrets_page(&mut buf, g, product),
                PageType::CPUID => {
                    let mut page = SnpCpuidPage::read_from_bytes(&buf[..])
                        .map_err(|_| FwStatus::INVALID_PARAM)?;
                    if let Err(s) = self.check_cpuid(&mut page) {
                        // The corrected page goes back to the host, unencrypted.
                        self.write_plain(spa, page.as_bytes())?;
                        return Err(s);
                    }
                }
                _ => {}
            }
            g.ld.update_with_contents(page_type, Gpa(gpa), &contents, perms, cmd.imi_page());
            if cmd.imi_page() {
                g.imd
                    .update_with_contents(page_type, Gpa(gpa), &contents, perms, true);
            }
            let r = self
                .soc
                .fw_write(Spa(spa), KeySel::Guest(softsev_abi::Asid(g.asid)), &buf)
                .map_err(crate::fw::soc_status);
            if page_type == PageType::SECRETS {
                buf.zeroize();
            }
            r?;
            gpa += PAGE as u64;
            spa += PAGE as u64;
        }
        entry.set_vmpl_perms(1, vmpl1);
        entry.set_vmpl_perms(2, vmpl2);
        entry.set_vmpl_perms(3, vmpl3);
        if page_type == PageType::VMSA {
            entry.set_vmsa(true);
        }
        entry.set_validated(true);
        entry.set_immutable(false);
        entry.set_lock(false);
        self.rmp_write(cmd.page_paddr, entry)
    }

    /// The CPUID page check (count and reserved fields, then every function against the
    /// platform, corrections written into `page`): `crate::cpuid`.
    fn check_cpuid(&self, page: &mut SnpCpuidPage) -> FwResult {
        crate::cpuid::check_cpuid_page(&self.cpuid, page)
    }

    pub(crate) fn snp_launch_finish(&self, st: &mut State, cmd: SnpLaunchFinish) -> FwResult {
        if misaligned(cmd.gctx_paddr)
            || cmd.flags
                & !(SnpLaunchFinish::ID_BLOCK_EN
                    | SnpLaunchFinish::AUTH_KEY_EN
                    | SnpLaunchFinish::VCEK_DIS)
                != 0
        {
            return Err(FwStatus::INVALID_PARAM);
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        let id_block_en = cmd.flags & SnpLaunchFinish::ID_BLOCK_EN != 0;
        let auth_key_en = cmd.flags & SnpLaunchFinish::AUTH_KEY_EN != 0;
        let vcek_dis = cmd.flags & SnpLaunchFinish::VCEK_DIS != 0;
        let (id_block, id_auth) = if id_block_en {
            let mut b = IdBlock::new_zeroed();
            self.read_plain(cmd.id_block_paddr, b.as_mut_bytes())?;
            let mut a = IdAuth::new_zeroed();
            self.read_plain(cmd.id_auth_paddr, a.as_mut_bytes())?;
            (Some(b), Some(a))
        } else {
            (None, None)
        };
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        if g.state != GuestState::Launch || g.imi_en {
            return Err(FwStatus::INVALID_GUEST_STATE);
        }
        if g.is_inactive() {
            return Err(FwStatus::INACTIVE);
        }
        if let (Some(block), Some(auth)) = (id_block, id_auth) {
            let ld = g.ld.digest();
            let pass = softsev_measure::id_block::check_id_block(
                &block,
                &auth,
                &ld,
                g.policy,
                auth_key_en,
            )
            .map_err(|e| FwStatus(e.status().code()))?;
            g.id_block = Some(block);
            g.id_key_digest = pass.id_key_digest;
            if let Some(d) = pass.author_key_digest {
                g.author_key_digest = d;
            }
        }
        g.host_data = cmd.host_data;
        g.id_block_en = id_block_en;
        g.author_key_en = auth_key_en;
        g.vcek_dis = vcek_dis;
        let asid = g.asid;
        if g.activation == Activation::Pending {
            g.activation = Activation::Active;
            if let Some(a) = st.asids.get_mut(asid as usize - 1) {
                *a = AsidState::InUse;
            }
        }
        let g = self.context_mut(st, cmd.gctx_paddr)?;
        g.state = GuestState::Running;
        Ok(())
    }
}

/// Fill `buf` (one page) with the secrets page of guest `g`.
fn write_secrets_page(buf: &mut [u8], g: &crate::guest::GuestContext, product: Product) {
    let mut page = SecretsPage::new(
        SECRETS_PAGE_VERSION,
        g.imi_en,
        product.cpuid_signature(),
        g.gosvw,
        &[[0; 32]; 4],
        TSC_FACTOR,
    );
    g.msg.write_secrets(&mut page);
    let bytes = page.as_mut_bytes();
    if let Some(dst) = buf.get_mut(..bytes.len()) {
        dst.copy_from_slice(bytes);
    }
    bytes.zeroize();
}

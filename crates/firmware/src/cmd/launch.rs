//! Launch: SNP_LAUNCH_START, SNP_LAUNCH_UPDATE, SNP_LAUNCH_FINISH (AMD SEV firmware
//! `snp_mcmd_launch_*`; shared/spec/snp-launch.md §1–2, §7). START turns an INIT
//! context into a LAUNCH one, FINISH a LAUNCH one into a RUNNING one with its
//! [`crate::guest_ctx::LaunchRecord`].

use crate::error::{CmdResult, FwError};
use crate::fw::{Firmware, misaligned};
use crate::guest_ctx::{Binding, GuestContext, GuestState, LaunchFinish, LaunchStart, Launching};
use crate::state::{AsidState, FwVersion, GuestHandle, State};
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
    fn policy_failure(&self, policy: u64, product: Product, v: FwVersion) -> bool {
        let p = GuestPolicy(policy);
        p.check_reserved().is_err()
            || policy & GuestPolicy::RESERVED_MBO == 0
            || (!p.smt() && self.config.smt_enabled)
            || p.abi_major() > v.major
            || (p.abi_major() == v.major && p.abi_minor() > v.minor)
            || (policy & GuestPolicy::MEM_AES_256_XTS != 0 && product == Product::Milan)
            || (policy & GuestPolicy::CIPHERTEXT_HIDING != 0 && !self.config.ciphertext_hiding)
    }

    pub(crate) fn snp_launch_start(&self, st: &mut State, cmd: SnpLaunchStart) -> CmdResult {
        let ma_en = cmd.flags & SnpLaunchStart::MA_EN != 0;
        let imi_en = cmd.flags & SnpLaunchStart::IMI_EN != 0;
        if misaligned(cmd.gctx_paddr)
            || cmd.flags & !(SnpLaunchStart::MA_EN | SnpLaunchStart::IMI_EN) != 0
            || misaligned(cmd.ma_gctx_paddr)
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        if self.context_mut(st, cmd.gctx_paddr)?.state() != GuestState::Init {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let mut ma = None;
        if ma_en {
            self.check_context(st, cmd.ma_gctx_paddr)?;
            let m = self.context_mut(st, cmd.ma_gctx_paddr)?;
            ma = Some((
                m.has_migration_agent(),
                GuestPolicy(m.policy()).single_socket(),
                m.report_id(),
            ));
        }
        let version = st.current.version;
        let product = self.chip.product();
        let policy = GuestPolicy(cmd.policy);
        let bad = (ma_en && !policy.migrate_ma())
            || ma.is_some_and(|(has_ma, _, _)| has_ma)
            || self.policy_failure(cmd.policy, product, version)
            || (ma_en && policy.single_socket() && ma.is_some_and(|(_, ss, _)| !ss));
        if bad {
            return Err(FwStatus::POLICY_FAILURE.into());
        }
        // The firmware's TRNG, in this order: VMPCK0..3, VMRK, REPORT_ID.
        let msg = crate::guest_msg::GuestMsgState::new(&mut st.rng);
        let mut vmrk = zeroize::Zeroizing::new([0u8; 32]);
        st.rng.fill(&mut vmrk[..]);
        let report_id = st.rng.array::<32>();
        let start = LaunchStart {
            policy: cmd.policy,
            ma_gctx: ma_en.then_some(Spa(cmd.ma_gctx_paddr)),
            msg,
            vmrk,
            report_id,
            report_id_ma: match ma {
                Some((_, _, id)) => id,
                None => [0xFF; 32],
            },
            imi_en,
            gosvw: cmd.gosvw,
            desired_tsc_freq: cmd.desired_tsc_freq,
        };
        st.guests
            .transition(GuestHandle::Snp(Spa(cmd.gctx_paddr)), |g| g.start(start));
        st.guest_count += 1;
        Ok(())
    }

    pub(crate) fn snp_launch_update(&self, st: &mut State, cmd: SnpLaunchUpdate) -> CmdResult {
        if misaligned(cmd.gctx_paddr)
            || misaligned(cmd.page_paddr)
            || cmd.flags_reserved() != 0
            || cmd.reserved != 0
            || cmd.vmpl_perms & 0xFF != 0
            || cmd.reserved2 != 0
        {
            return Err(FwStatus::INVALID_PARAM.into());
        }
        self.require_init(st)?;
        self.check_context(st, cmd.gctx_paddr)?;
        let (mut entry, pstate) = self.page_state(cmd.page_paddr)?;
        if pstate != PageState::PRE_GUEST {
            return Err(FwStatus::INVALID_PAGE_STATE.into());
        }
        if entry.is_2m() != cmd.page_2m() {
            return Err(FwStatus::INVALID_PAGE_SIZE.into());
        }
        if entry.is_2m() && cmd.page_paddr & 0x1F_FFFF != 0 {
            return Err(FwStatus::INVALID_ADDRESS.into());
        }
        let page_type = PageType(cmd.page_type());
        match page_type {
            PageType::NORMAL | PageType::ZERO | PageType::UNMEASURED => {}
            PageType::VMSA | PageType::SECRETS | PageType::CPUID => {
                if entry.is_2m() {
                    return Err(FwStatus::INVALID_PAGE_SIZE.into());
                }
            }
            _ => return Err(FwStatus::INVALID_PARAM.into()),
        }
        let product = self.chip.product();
        let GuestContext::Launch(g) = self.context_mut(st, cmd.gctx_paddr)? else {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        };
        let Binding::Pending(asid) = g.binding else {
            return Err(FwStatus::INACTIVE.into());
        };
        if entry.asid() != asid {
            return Err(FwStatus::INVALID_PAGE_OWNER.into());
        }
        if g.imi_en && !cmd.imi_page() {
            return Err(FwStatus::INVALID_PARAM.into());
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
                        .map_err(|_| FwError::Status(FwStatus::INVALID_PARAM))?;
                    if let Err(s) = self.check_cpuid(&mut page) {
                        // The corrected page goes back to the host, unencrypted.
                        self.write_plain(spa, page.as_bytes())?;
                        return Err(s.into());
                    }
                }
                _ => {}
            }
            g.ld.update_with_contents(page_type, Gpa(gpa), &contents, perms, cmd.imi_page());
            if cmd.imi_page() {
                g.imd
                    .update_with_contents(page_type, Gpa(gpa), &contents, perms, true);
            }
            let r = self.write_with(spa, KeySel::Guest(softsev_abi::Asid(asid)), &buf);
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
    fn check_cpuid(&self, page: &mut SnpCpuidPage) -> Result<(), FwStatus> {
        crate::cpuid::check_cpuid_page(&self.cpuid, page)
    }

    pub(crate) fn snp_launch_finish(&self, st: &mut State, cmd: SnpLaunchFinish) -> CmdResult {
        if misaligned(cmd.gctx_paddr)
            || cmd.flags
                & !(SnpLaunchFinish::ID_BLOCK_EN
                    | SnpLaunchFinish::AUTH_KEY_EN
                    | SnpLaunchFinish::VCEK_DIS)
                != 0
        {
            return Err(FwStatus::INVALID_PARAM.into());
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
        let GuestContext::Launch(g) = self.context_mut(st, cmd.gctx_paddr)? else {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        };
        if g.imi_en {
            return Err(FwStatus::INVALID_GUEST_STATE.into());
        }
        let Binding::Pending(asid) = g.binding else {
            return Err(FwStatus::INACTIVE.into());
        };
        let mut finish = LaunchFinish {
            family_id: [0; 16],
            image_id: [0; 16],
            guest_svn: 0,
            id_block_en,
            id_key_digest: [0; 48],
            author_key_en: auth_key_en,
            author_key_digest: [0; 48],
            host_data: cmd.host_data,
            vcek_disabled: vcek_dis,
        };
        if let (Some(block), Some(auth)) = (id_block, id_auth) {
            let ld = g.ld.digest();
            let pass = softsev_measure::id_block::check_id_block(
                &block,
                &auth,
                &ld,
                g.policy,
                auth_key_en,
            )
            .map_err(|e| FwError::Status(FwStatus(e.status().code())))?;
            finish.family_id = block.family_id;
            finish.image_id = block.image_id;
            finish.guest_svn = block.guest_svn;
            finish.id_key_digest = pass.id_key_digest;
            if let Some(d) = pass.author_key_digest {
                finish.author_key_digest = d;
            }
        }
        // The pending activation takes effect: the ASID is in use from now on.
        st.asids.set(asid, AsidState::InUse);
        st.guests
            .transition(GuestHandle::Snp(Spa(cmd.gctx_paddr)), |g| g.finish(finish));
        Ok(())
    }
}

/// Fill `buf` (one page) with the secrets page of guest `g`.
fn write_secrets_page(buf: &mut [u8], g: &Launching, product: Product) {
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

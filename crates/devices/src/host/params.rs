//! `/sys/module/kvm_amd/parameters/{sev,sev_es,sev_snp}` (frontends.md §2.2: snphost
//! `ok` prints "SEV-SNP enabled in KVM" from `sev_snp`). The three are `bool` module
//! parameters of mode 0444 (`arch/x86/kvm/svm/sev.c`: `module_param_named(sev, ...,
//! 0444)`); sysfs shows a bool as `"Y\n"` or `"N\n"` (`kernel/params.c:param_get_bool`)
//! and a text attribute's size as 4096. Reads honour the offset; writes fail with
//! `EACCES` (the attribute has no write permission; sysfs refuses at open for a
//! writer, which the FUSE adapter reports through the mode bits first).

use softsev_vfs::{Caller, Errno, NodeKind, OpenFlags, VirtualFs};

/// The kvm_amd `parameters` directory, mounted at
/// `/sys/module/kvm_amd/parameters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleParams {
    sev: bool,
    sev_es: bool,
    sev_snp: bool,
}

const NAMES: [&str; 3] = ["sev", "sev_es", "sev_snp"];

impl ModuleParams {
    /// The parameters the host was loaded with.
    pub fn new(params: &softsev_host::ModuleParams) -> Self {
        ModuleParams {
            sev: params.sev,
            sev_es: params.sev_es,
            sev_snp: params.sev_snp,
        }
    }

    fn value(&self, name: &str) -> Option<bool> {
        match name {
            "sev" => Some(self.sev),
            "sev_es" => Some(self.sev_es),
            "sev_snp" => Some(self.sev_snp),
            _ => None,
        }
    }

    /// The text of attribute `name` (`"Y\n"` / `"N\n"`), if it exists.
    pub fn text(&self, name: &str) -> Option<&'static str> {
        self.value(name).map(|v| if v { "Y\n" } else { "N\n" })
    }
}

impl VirtualFs for ModuleParams {
    fn kind(&self, path: &str) -> Option<NodeKind> {
        if path.is_empty() {
            return Some(NodeKind::Dir { mode: 0o755 });
        }
        self.value(path).map(|_| NodeKind::File {
            mode: 0o444,
            size: 4096,
        })
    }

    fn readdir(&self, path: &str) -> Result<Vec<String>, Errno> {
        match self.kind(path) {
            Some(NodeKind::Dir { .. }) => Ok(NAMES.iter().map(|s| s.to_string()).collect()),
            Some(NodeKind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn open(&self, path: &str, flags: OpenFlags, _caller: &Caller) -> Result<u64, Errno> {
        match self.kind(path) {
            None => Err(Errno::ENOENT),
            Some(NodeKind::File { .. }) if flags.write => Err(Errno::EACCES),
            Some(_) => Ok(0),
        }
    }

    fn read(
        &self,
        path: &str,
        _fh: u64,
        offset: u64,
        size: u32,
        _caller: &Caller,
    ) -> Result<Vec<u8>, Errno> {
        let text = match self.kind(path) {
            None => return Err(Errno::ENOENT),
            Some(NodeKind::Dir { .. }) => return Err(Errno::EISDIR),
            Some(NodeKind::File { .. }) => self.text(path).ok_or(Errno::ENOENT)?,
        };
        let b = text.as_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        let end = start.saturating_add(size as usize).min(b.len());
        Ok(b[start..end].to_vec())
    }

    fn write(
        &self,
        path: &str,
        _fh: u64,
        _offset: u64,
        _data: &[u8],
        _caller: &Caller,
    ) -> Result<u32, Errno> {
        match self.kind(path) {
            None => Err(Errno::ENOENT),
            Some(NodeKind::Dir { .. }) => Err(Errno::EISDIR),
            Some(NodeKind::File { .. }) => Err(Errno::EACCES),
        }
    }
}

//! Emitters: a [`Config`] as the equivalent QEMU command line and as a TOML document.
//! Parsing either gives the configuration back (built-in blobs excepted: they have no
//! path; notes are not configuration).

use super::{Blob, ConfidentialGuest, Config, MemoryBackend, SevGuestConfig, SnpGuestConfig};
use crate::keyval;
use base64::Engine;
use toml::{Table, Value};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn onoff(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn blob_path(b: &Blob) -> Option<String> {
    match b {
        Blob::File(p) => Some(p.to_string_lossy().into_owned()),
        Blob::Builtin => None,
    }
}

/// `-object memory-backend-*,…`.
fn backend_arg(b: &MemoryBackend) -> String {
    let mut o = format!(
        "{},id={},size={},share={},reserve={}",
        b.kind.qom_type(),
        keyval::escape(&b.id),
        b.size,
        onoff(b.share),
        onoff(b.reserve)
    );
    if let Some(p) = &b.mem_path {
        o.push_str(&format!(
            ",mem-path={}",
            keyval::escape(&p.to_string_lossy())
        ));
    }
    o
}

/// `-object sev-snp-guest,…`.
fn snp_arg(s: &SnpGuestConfig) -> String {
    let mut o = format!(
        "sev-snp-guest,id={},sev-device={},cbitpos={},reduced-phys-bits={},policy={:#x},\
         kernel-hashes={},author-key-enabled={},vcek-disabled={},\
         guest-visible-workarounds={},host-data={}",
        keyval::escape(&s.id),
        keyval::escape(&s.sev_device),
        s.cbitpos,
        s.reduced_phys_bits,
        s.policy,
        onoff(s.kernel_hashes),
        onoff(s.author_key_enabled),
        onoff(s.vcek_disabled),
        b64(&s.gosvw),
        b64(&s.host_data)
    );
    if s.debug_swap {
        o.push_str(",debug-swap=on");
    }
    if let Some(b) = &s.id_block {
        o.push_str(&format!(",id-block={}", b64(b)));
    }
    if let Some(b) = &s.id_auth {
        o.push_str(&format!(",id-auth={}", b64(b)));
    }
    if let Some(p) = &s.certs_path {
        o.push_str(&format!(
            ",certs-path={}",
            keyval::escape(&p.to_string_lossy())
        ));
    }
    o
}

/// `-object sev-guest,…`.
fn sev_arg(g: &SevGuestConfig) -> String {
    let mut o = format!(
        "sev-guest,id={},sev-device={},cbitpos={},reduced-phys-bits={},policy={:#x},\
         handle={},kernel-hashes={},legacy-vm-type={}",
        keyval::escape(&g.id),
        keyval::escape(&g.sev_device),
        g.cbitpos,
        g.reduced_phys_bits,
        g.policy,
        g.handle,
        onoff(g.kernel_hashes),
        g.legacy_vm_type.as_str()
    );
    for (name, p) in [
        ("dh-cert-file", &g.dh_cert_file),
        ("session-file", &g.session_file),
    ] {
        if let Some(p) = p {
            o.push_str(&format!(",{name}={}", keyval::escape(&p.to_string_lossy())));
        }
    }
    o
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn path_value(p: &std::path::Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

/// `[[object]]` of a memory backend.
fn backend_table(b: &MemoryBackend) -> Table {
    let mut o = Table::new();
    o.insert("qom-type".into(), Value::String(b.kind.qom_type().into()));
    o.insert("id".into(), Value::String(b.id.clone()));
    o.insert("size".into(), int(b.size));
    o.insert("share".into(), Value::Boolean(b.share));
    o.insert("reserve".into(), Value::Boolean(b.reserve));
    if let Some(p) = &b.mem_path {
        o.insert("mem-path".into(), path_value(p));
    }
    o
}

/// `[[object]]` of a `sev-snp-guest`.
fn snp_table(s: &SnpGuestConfig) -> Table {
    let mut o = Table::new();
    o.insert("qom-type".into(), Value::String("sev-snp-guest".into()));
    o.insert("id".into(), Value::String(s.id.clone()));
    o.insert("sev-device".into(), Value::String(s.sev_device.clone()));
    o.insert("cbitpos".into(), int(u64::from(s.cbitpos)));
    o.insert(
        "reduced-phys-bits".into(),
        int(u64::from(s.reduced_phys_bits)),
    );
    o.insert("policy".into(), Value::String(format!("{:#x}", s.policy)));
    o.insert("kernel-hashes".into(), Value::Boolean(s.kernel_hashes));
    o.insert("debug-swap".into(), Value::Boolean(s.debug_swap));
    o.insert(
        "author-key-enabled".into(),
        Value::Boolean(s.author_key_enabled),
    );
    o.insert("vcek-disabled".into(), Value::Boolean(s.vcek_disabled));
    o.insert(
        "guest-visible-workarounds".into(),
        Value::String(b64(&s.gosvw)),
    );
    o.insert("host-data".into(), Value::String(b64(&s.host_data)));
    if let Some(b) = &s.id_block {
        o.insert("id-block".into(), Value::String(b64(b)));
    }
    if let Some(b) = &s.id_auth {
        o.insert("id-auth".into(), Value::String(b64(b)));
    }
    if let Some(p) = &s.certs_path {
        o.insert("certs-path".into(), path_value(p));
    }
    o
}

/// `[[object]]` of a `sev-guest`.
fn sev_table(g: &SevGuestConfig) -> Table {
    let mut o = Table::new();
    o.insert("qom-type".into(), Value::String("sev-guest".into()));
    o.insert("id".into(), Value::String(g.id.clone()));
    o.insert("sev-device".into(), Value::String(g.sev_device.clone()));
    o.insert("cbitpos".into(), int(u64::from(g.cbitpos)));
    o.insert(
        "reduced-phys-bits".into(),
        int(u64::from(g.reduced_phys_bits)),
    );
    o.insert("policy".into(), Value::String(format!("{:#x}", g.policy)));
    o.insert("handle".into(), int(u64::from(g.handle)));
    o.insert("kernel-hashes".into(), Value::Boolean(g.kernel_hashes));
    o.insert(
        "legacy-vm-type".into(),
        Value::String(g.legacy_vm_type.as_str().into()),
    );
    if let Some(p) = &g.dh_cert_file {
        o.insert("dh-cert-file".into(), path_value(p));
    }
    if let Some(p) = &g.session_file {
        o.insert("session-file".into(), path_value(p));
    }
    o
}

impl ConfidentialGuest {
    /// The `-object` argument of this object.
    pub fn to_object_arg(&self) -> String {
        match self {
            ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g) => sev_arg(g),
            ConfidentialGuest::Snp(s) => snp_arg(s),
        }
    }

    /// This object as a TOML `[[object]]` table.
    pub fn to_toml_table(&self) -> Table {
        match self {
            ConfidentialGuest::Sev(g) | ConfidentialGuest::SevEs(g) => sev_table(g),
            ConfidentialGuest::Snp(s) => snp_table(s),
        }
    }
}

impl Config {
    /// The equivalent QEMU command line (without program name). Parsing it gives back
    /// this configuration (built-in blobs excepted: they have no path).
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        if let Some(n) = &self.name {
            push("-name", keyval::escape(n));
        }
        let mut m = format!(
            "{},confidential-guest-support={}",
            self.machine.name,
            keyval::escape(self.confidential_guest.id())
        );
        if let Some(b) = &self.memory.backend {
            m.push_str(&format!(",memory-backend={}", keyval::escape(&b.id)));
        }
        if let Some(x) = self.machine.max_ram_below_4g {
            m.push_str(&format!(",max-ram-below-4g={x}"));
        }
        push("-machine", m);
        if let Some(b) = &self.memory.backend {
            push("-object", backend_arg(b));
        }
        push("-object", self.confidential_guest.to_object_arg());
        if self.memory.backend.is_none() {
            push("-m", format!("{}B", self.memory.size));
        }
        let t = &self.smp;
        push(
            "-smp",
            format!(
                "cpus={},maxcpus={},sockets={},dies={},cores={},threads={}",
                t.cpus, t.maxcpus, t.sockets, t.dies, t.cores, t.threads
            ),
        );
        push("-cpu", self.cpu_arg());
        if let Some(p) = blob_path(&self.firmware) {
            push("-bios", p);
        }
        if let Some(p) = self.kernel.as_ref().and_then(blob_path) {
            push("-kernel", p);
        }
        if let Some(p) = self.initrd.as_ref().and_then(blob_path) {
            push("-initrd", p);
        }
        if let Some(x) = &self.append {
            push("-append", x.clone());
        }
        if let Some(q) = &self.qmp {
            push("-qmp", q.to_arg());
        }
        if let Some(i) = &self.incoming {
            push("-incoming", i.to_arg());
        }
        if self.start_paused {
            a.push("-S".to_string());
        }
        a
    }

    /// `-cpu` with its feature flags.
    fn cpu_arg(&self) -> String {
        let mut cpu = self.cpu.name.clone();
        for f in &self.cpu.features {
            cpu.push(',');
            cpu.push_str(&keyval::escape(f));
        }
        cpu
    }

    /// The configuration as a TOML document in the format [`super::from_toml`] reads
    /// (built-in blobs have no path and are omitted; notes are not configuration).
    pub fn to_toml(&self) -> String {
        let mut t = Table::new();
        if let Some(n) = &self.name {
            t.insert("name".into(), Value::String(n.clone()));
        }
        let mut m = Table::new();
        m.insert("type".into(), Value::String(self.machine.name.clone()));
        m.insert(
            "confidential-guest-support".into(),
            Value::String(self.confidential_guest.id().to_string()),
        );
        if let Some(b) = &self.memory.backend {
            m.insert("memory-backend".into(), Value::String(b.id.clone()));
        }
        if let Some(x) = self.machine.max_ram_below_4g {
            m.insert("max-ram-below-4g".into(), int(x));
        }
        t.insert("machine".into(), Value::Table(m));
        if self.memory.backend.is_none() {
            t.insert("m".into(), Value::String(format!("{}B", self.memory.size)));
        }
        let mut smp = Table::new();
        for (k, v) in [
            ("cpus", self.smp.cpus),
            ("maxcpus", self.smp.maxcpus),
            ("sockets", self.smp.sockets),
            ("dies", self.smp.dies),
            ("cores", self.smp.cores),
            ("threads", self.smp.threads),
        ] {
            smp.insert(k.into(), int(u64::from(v)));
        }
        t.insert("smp".into(), Value::Table(smp));
        t.insert("cpu".into(), Value::String(self.cpu_arg()));
        if let Some(p) = blob_path(&self.firmware) {
            t.insert("bios".into(), Value::String(p));
        }
        if let Some(p) = self.kernel.as_ref().and_then(blob_path) {
            t.insert("kernel".into(), Value::String(p));
        }
        if let Some(p) = self.initrd.as_ref().and_then(blob_path) {
            t.insert("initrd".into(), Value::String(p));
        }
        if let Some(a) = &self.append {
            t.insert("append".into(), Value::String(a.clone()));
        }
        if let Some(q) = &self.qmp {
            t.insert("qmp".into(), Value::String(q.to_arg()));
        }
        if self.start_paused {
            t.insert("S".into(), Value::Boolean(true));
        }
        if let Some(i) = &self.incoming {
            t.insert("incoming".into(), Value::String(i.to_arg()));
        }
        let mut objects = Vec::new();
        if let Some(b) = &self.memory.backend {
            objects.push(Value::Table(backend_table(b)));
        }
        objects.push(Value::Table(self.confidential_guest.to_toml_table()));
        t.insert("object".into(), Value::Array(objects));
        toml::to_string(&t).unwrap_or_default()
    }
}

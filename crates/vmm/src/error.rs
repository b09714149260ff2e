//! Errors of the launcher. Configuration errors read like QEMU's (they name the option,
//! the object and the property); plan errors name the file, section or address.

use std::path::PathBuf;

/// A configuration QEMU (or KVM, or the firmware at launch) would refuse.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line option QEMU does not know.
    #[error("{option}: invalid option")]
    UnknownOption {
        /// The option as given.
        option: String,
    },
    /// An option that needs an argument came last.
    #[error("{option}: requires an argument")]
    MissingArgument {
        /// The option.
        option: String,
    },
    /// A malformed `key=value,...` string.
    #[error("{option} '{text}': {reason}")]
    BadOptionString {
        /// The option.
        option: String,
        /// The string given.
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A property the object type does not have.
    #[error("Property '{object}.{property}' not found")]
    UnknownProperty {
        /// Object type (`sev-snp-guest`, `q35-machine`, ...).
        object: String,
        /// The property.
        property: String,
    },
    /// A mandatory property is absent.
    #[error("{object}: Parameter '{property}' is missing")]
    MissingParameter {
        /// Object type or option.
        object: String,
        /// The property.
        property: String,
    },
    /// A value of the wrong type.
    #[error("{object}: Parameter '{property}' expects {expected} (got '{value}')")]
    BadValue {
        /// Object type or option.
        object: String,
        /// The property.
        property: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A base64 property that does not decode.
    #[error("{object}.{property}: Base64 data is not valid")]
    BadBase64 {
        /// Object type.
        object: String,
        /// The property.
        property: String,
    },
    /// A decoded blob of the wrong length.
    #[error("{object}.{property}: parameter length of {len} {rule}")]
    BlobLength {
        /// Object type.
        object: String,
        /// The property.
        property: String,
        /// Decoded length.
        len: usize,
        /// The rule (`not equal to 96`, `exceeds max of 4096`).
        rule: String,
    },
    /// cbitpos differs from the host's CPUID 0x8000001F EBX\[5:0\].
    #[error(
        "sev-snp-guest.cbitpos check failed, host '{host}' requested '{requested}' \
         ({product} reports the C-bit at {host} in CPUID 0x8000001F EBX[5:0])"
    )]
    CbitPos {
        /// The host C-bit position.
        host: u32,
        /// The configured value.
        requested: u32,
        /// The host product.
        product: softsev_abi::Product,
    },
    /// A `sev-guest` cbitpos that differs from the host's CPUID 0x8000001F EBX\[5:0\]
    /// (QEMU `sev_common_kvm_init`, its words; an unset cbitpos is 0).
    #[error("sev_common_kvm_init: cbitpos check failed, host '{host}' requested '{requested}'")]
    SevCbitPos {
        /// The host C-bit position.
        host: u32,
        /// The configured value.
        requested: u32,
    },
    /// A `sev-guest` reduced-phys-bits outside 1..=63 (QEMU `sev_common_kvm_init`; an
    /// unset value is 0).
    #[error(
        "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range of 1 to 63, requested '{0}'"
    )]
    SevReducedPhysBits(u32),
    /// `legacy-vm-type=off` on a host without the SEV / SEV-ES VM type (QEMU
    /// `sev_kvm_type`).
    #[error(
        "SEV: host kernel does not support requested {vm_type} VM type. To allow use of the \
         legacy KVM_X86_DEFAULT_VM VM type, the 'legacy-vm-type' argument must be set to 'on' \
         or 'auto' for the sev-guest object."
    )]
    SevVmType {
        /// `KVM_X86_SEV_VM` or `KVM_X86_SEV_ES_VM`.
        vm_type: &'static str,
    },
    /// `dh-cert-file` or `session-file` unreadable (QEMU `sev_read_file_base64`).
    #[error("SEV: Failed to read '{}' ({reason})", path.display())]
    SevReadFile {
        /// The file.
        path: PathBuf,
        /// GLib's message.
        reason: String,
    },
    /// An enum property given a value it does not have (QAPI `input_type_enum`).
    #[error("Parameter '{property}' does not accept value '{value}'")]
    EnumValue {
        /// The property.
        property: String,
        /// The value given.
        value: String,
    },
    /// A QemuOpts error in QEMU's words (`-qmp` chardev options).
    #[error("{0}")]
    QemuOpt(String),
    /// reduced-phys-bits outside 1..=63.
    #[error(
        "sev-snp-guest.reduced-phys-bits check failed, it should be in the range of 1 to 63, requested '{0}'"
    )]
    ReducedPhysBits(u32),
    /// A guest policy KVM_SEV_SNP_LAUNCH_START (or the firmware) refuses.
    #[error("sev-snp-guest.policy {policy:#x}: {reason}")]
    Policy {
        /// The policy.
        policy: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An option or property that needs another one.
    #[error("{what} requires {needs}")]
    Requires {
        /// The option or property set.
        what: String,
        /// What must accompany it.
        needs: String,
    },
    /// A link property naming an object that does not exist.
    #[error("Property '{property}' can't find value '{id}'")]
    ObjectNotFound {
        /// `<type>.<property>`.
        property: String,
        /// The id given.
        id: String,
    },
    /// A link property naming an object of the wrong type.
    #[error("Property '{property}': object '{id}' is a {found}, not a {wanted}")]
    WrongObjectType {
        /// `<type>.<property>`.
        property: String,
        /// The id given.
        id: String,
        /// Its type.
        found: String,
        /// The wanted type.
        wanted: &'static str,
    },
    /// Two objects with one id.
    #[error("attempt to add duplicate property '{0}' to object (type 'container')")]
    DuplicateId(String),
    /// An `-object` type QEMU does not have.
    #[error("-object: invalid object type: {0}")]
    UnknownObjectType(String),
    /// A machine type that is not a PC (q35 / i440fx) machine.
    #[error("-machine: unsupported machine type '{0}' (softsev models q35 and pc)")]
    UnknownMachine(String),
    /// A CPU model QEMU does not have.
    #[error("unable to find CPU model '{0}'")]
    UnknownCpu(String),
    /// An invalid -smp configuration.
    #[error("-smp: {0}")]
    Smp(String),
    /// Memory sizes that do not fit together.
    #[error("{0}")]
    Memory(String),
    /// No SEV-SNP guest object is attached to the machine.
    #[error(
        "softsev launches SEV-SNP guests: give -machine confidential-guest-support=<id> and \
         -object sev-snp-guest,id=<id>,cbitpos=51,reduced-phys-bits=1"
    )]
    NoSnpGuest,
    /// A valid QEMU configuration that softsev cannot launch.
    #[error("{what}: {reason}")]
    Unsupported {
        /// The option or object.
        what: String,
        /// Why.
        reason: &'static str,
    },
    /// A TOML configuration file that does not parse or has unknown keys.
    #[error("TOML configuration: {0}")]
    Toml(String),
    /// A file could not be read.
    #[error("cannot read {what} '{}': {error}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Why a launch plan could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The configuration's confidential guest is not one the launcher runs (SEV and
    /// SEV-ES guests; [`crate::config::ConfidentialGuest::launchable_snp`]).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Firmware, kernel, initrd or certificate file unreadable.
    #[error("cannot read {what} '{}': {error}", path.display())]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write '{}': {error}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The firmware image or its metadata is unusable.
    #[error("firmware: {0}")]
    Measure(#[from] softsev_measure::MeasureError),
    /// The firmware has no SEV metadata (QEMU: "Failed to locate SEV metadata header").
    #[error("firmware has no SEV metadata ('ASEV' table); SEV-SNP guests need OVMF built with it")]
    NoMetadata,
    /// kernel-hashes=on but the firmware has no usable hash-table area.
    #[error("SEV: kernel specified but guest firmware has no hashes table GUID")]
    NoHashTable,
    /// The firmware's hash-table area is too small or at 0.
    #[error("SEV: guest firmware hashes table area is invalid (base={base:#x} size={size:#x})")]
    HashTableArea {
        /// Base GPA.
        base: u32,
        /// Size.
        size: u32,
    },
    /// A metadata section lies outside guest RAM below 4 GiB.
    #[error(
        "SEV metadata section {kind} at {base:#x}+{size:#x} is outside guest RAM below 4 GiB (ends at {ram_end:#x})"
    )]
    SectionOutsideRam {
        /// Section type name.
        kind: String,
        /// Base GPA.
        base: u32,
        /// Size.
        size: u32,
        /// End of RAM below 4 GiB.
        ram_end: u64,
    },
    /// Two launch ranges cover the same page (KVM would refuse the second: the page is
    /// already private).
    #[error(
        "launch ranges overlap: {first} at {first_gpa:#x}+{first_len:#x} and {second} at {second_gpa:#x}+{second_len:#x}"
    )]
    Overlap {
        /// The earlier range.
        first: String,
        /// Its start.
        first_gpa: u64,
        /// Its length.
        first_len: u64,
        /// The later range.
        second: String,
        /// Its start.
        second_gpa: u64,
        /// Its length.
        second_len: u64,
    },
    /// The firmware overlaps RAM below 4 GiB.
    #[error("firmware at {gpa:#x} overlaps guest RAM below 4 GiB (ends at {ram_end:#x})")]
    FirmwareOverlapsRam {
        /// Firmware GPA.
        gpa: u64,
        /// End of RAM below 4 GiB.
        ram_end: u64,
    },
}

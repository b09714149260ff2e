//! One module per subcommand.

pub(crate) mod exec;
pub(crate) mod id_block;
pub(crate) mod kds;
pub(crate) mod measure;
pub(crate) mod migrate;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod sev;
pub(crate) mod verify;

//! One module per subcommand.

pub mod id_block;
pub mod measure;
pub mod report;
pub mod run;
pub mod verify;

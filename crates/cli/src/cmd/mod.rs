//! One module per subcommand.

pub mod id_block;
pub mod measure;

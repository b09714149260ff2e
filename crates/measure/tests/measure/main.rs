//! Integration tests of softsev-measure: one test binary for the crate (each file a module),
//! so the workspace links one binary per crate instead of one per file.

mod golden;
mod id_block_fuzz;
mod id_block_interop;
mod id_block_vectors;
mod ovmf_fuzz_replay;
mod seves_init;

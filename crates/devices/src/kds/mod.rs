//! The loopback AMD KDS (frontends.md §4): filled by the host front-end work.

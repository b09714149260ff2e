//! Host-side device models (frontends.md §5.3): filled by the host front-end work.

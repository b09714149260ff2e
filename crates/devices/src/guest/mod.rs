//! Guest-side device models (frontends.md §5.1, §5.2): filled by the guest front-end work.

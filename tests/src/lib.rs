//! Shared helpers for the integration tests: network namespaces, SIPp, processes under test.

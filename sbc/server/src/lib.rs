//! The `sbc` server: transports, the driver loop around `sbc-proto`, configuration, the admin API and metrics.

pub mod admin;
pub mod api;
pub mod canary;
pub mod cdr_sink;
pub mod config;
pub mod dns;
pub mod drain;
pub mod driver;
pub mod edge;
pub mod ha;
pub mod hep;
pub mod lint;
pub mod listeners;
pub mod logging;
pub mod media_link;
pub mod metrics;
pub mod ng_link;
pub mod reload;
pub mod server;
pub mod service;
pub mod tls;
pub mod transport;

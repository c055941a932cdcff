#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod events;
mod payloads;
mod reports;
mod vectors;

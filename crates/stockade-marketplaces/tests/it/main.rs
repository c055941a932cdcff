#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod discover;
mod events;
mod payloads;
mod reports;
mod vectors;

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app_share;
mod contract;
mod discover;
mod events;
mod payloads;
mod push_rounds;
mod reports;
mod vectors;

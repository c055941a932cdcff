#![allow(clippy::unwrap_used, clippy::expect_used)]

mod events;
mod payloads;
mod vectors;

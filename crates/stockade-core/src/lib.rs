//! Stockade's domain types and rules, with no I/O.
//!
//! Everything here is safe to pass around a running system: an [`Environment`] can only
//! be one of the three known names, a [`Pii`] value never prints its contents, and a
//! [`Secret`] never prints at all. Higher crates (vault, store, server) build on these.

pub mod actor;
// The clock shared decisions follow; clock jumps and skew.
pub mod clock;
pub mod codec;
pub mod env;
pub mod event;
pub mod free_text;
pub mod order;
pub mod pii;
pub mod secret;
pub mod time;

pub use actor::Actor;
pub use env::Environment;
pub use event::{Event, EventRecord};
pub use pii::Pii;
pub use secret::{Secret, SecretBytes, SecretString};

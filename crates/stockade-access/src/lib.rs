//! Stockade's access rules, without I/O: the password policy and argon2id hashing, TOTP
//! (RFC 6238) with replay protection, and the Fail2Ban-style ban guard. The server and
//! the store wire them to requests, sessions and persisted state.

pub mod ban;
pub mod password;
pub mod totp;

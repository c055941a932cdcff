//! Stockade's access control.
//!
//! Pure rules, without I/O: the password policy and argon2id hashing ([`password`]),
//! TOTP per RFC 6238 with replay protection ([`totp`]), the Fail2Ban-style ban guard
//! ([`ban`]), the per-account throttle ([`throttle`]) and the role table ([`roles`]).
//! [`service`] persists them through the audited store: users, sign-in, MFA
//! enrollment, sessions, API keys and bans.

pub mod ban;
pub mod password;
pub mod roles;
pub mod service;
pub mod throttle;
pub mod totp;

pub use ban::Jail;
pub use roles::{PERMISSIONS, Permission, ROLES, Role};
pub use service::{
    Access, AccessConfig, AccessError, ApiKeyInfo, ApiPrincipal, BanInfo, BanTelemetry, Enrollment,
    FailureKind, JailLabels, KeyRejection, LoginError, NewSession, SecondFactor, SessionState,
    SessionView, Stage, UserInfo,
};
// The security page's session review.
pub use service::{SessionInfo, valid_session_id};

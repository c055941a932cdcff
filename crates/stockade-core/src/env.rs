//! The environment a process, a database, a master key and every token belong to.
//!
//! Production and development data are strictly isolated: the environment name is
//! recorded in the database, bound into every ciphertext's associated data, and written
//! on every audit row. Anything from another environment is refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the three environments Stockade knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Live marketplaces, real buyers.
    Prod,
    /// Pre-production: sandbox endpoints, production-like configuration.
    Staging,
    /// Development and tests: sandbox endpoints only.
    Dev,
}

/// The name given was not one of `prod`, `staging`, `dev`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown environment {0:?}: use one of prod, staging, dev")]
pub struct UnknownEnvironment(pub String);

impl Environment {
    /// All environments, in order of decreasing sensitivity.
    pub const ALL: [Environment; 3] = [Environment::Prod, Environment::Staging, Environment::Dev];

    /// The canonical lower-case name, as stored and bound into ciphertexts.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Prod => "prod",
            Environment::Staging => "staging",
            Environment::Dev => "dev",
        }
    }

    /// Parse a canonical name. Aliases are deliberately not accepted: an environment
    /// name is a security boundary, so "production" and "Prod" are errors, not guesses.
    pub fn parse(name: &str) -> Result<Self, UnknownEnvironment> {
        match name {
            "prod" => Ok(Environment::Prod),
            "staging" => Ok(Environment::Staging),
            "dev" => Ok(Environment::Dev),
            other => Err(UnknownEnvironment(other.chars().take(32).collect())),
        }
    }

    /// Whether this environment may talk to live marketplace endpoints.
    pub fn is_production(self) -> bool {
        self == Environment::Prod
    }
}

impl FromStr for Environment {
    type Err = UnknownEnvironment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Environment::parse(s)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        for env in Environment::ALL {
            assert_eq!(Environment::parse(env.as_str()), Ok(env));
            assert_eq!(env.to_string(), env.as_str());
        }
    }

    #[test]
    fn aliases_and_case_variants_are_refused() {
        for bad in ["production", "Prod", "DEV", "", "test", "prod "] {
            assert!(Environment::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn only_prod_is_production() {
        assert!(Environment::Prod.is_production());
        assert!(!Environment::Staging.is_production());
        assert!(!Environment::Dev.is_production());
    }
}

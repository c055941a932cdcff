//! Who made a change: written on every audit row.

use std::fmt;

/// The author of a change. Rendered as `kind:id` on audit rows; ids only, never names
/// or emails, so an actor string holds no PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user, by user id (`usr_…`).
    User(String),
    /// An API key, by key id (`key_…`).
    ApiKey(String),
    /// A workflow execution, by execution id.
    Workflow(String),
    /// Stockade itself; the string names the component (`cli`, `scheduler`, `sync`).
    System(&'static str),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::ApiKey(id) => write!(f, "apikey:{id}"),
            Actor::Workflow(exec) => write!(f, "workflow:{exec}"),
            Actor::System(component) => write!(f, "system:{component}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_render_as_kind_and_id() {
        assert_eq!(Actor::User("usr_4".into()).to_string(), "user:usr_4");
        assert_eq!(Actor::ApiKey("key_9".into()).to_string(), "apikey:key_9");
        assert_eq!(Actor::Workflow("e-12".into()).to_string(), "workflow:e-12");
        assert_eq!(Actor::System("cli").to_string(), "system:cli");
    }
}

//! Roles and the one table of who may do what.
//!
//! Least privilege: every endpoint names one [`Permission`]; [`PERMISSIONS`] is the only
//! place that grants it to roles. The server's route table and its test walk this table.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including users, API keys, bans and incident response.
    Admin,
    /// Day-to-day operations: connections, catalog, sync, workflows. No access control.
    Operator,
    /// Read-only view of stock, orders (without buyer fields) and sync status.
    Viewer,
    /// Read-only view of the audit log and security state, nothing commercial.
    Auditor,
}

pub const ROLES: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor];

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role holds `permission` according to [`PERMISSIONS`].
    pub fn can(&self, permission: Permission) -> bool {
        PERMISSIONS
            .iter()
            .find(|(p, _)| *p == permission)
            .is_some_and(|(_, roles)| roles.contains(self))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use one of admin, operator, viewer, auditor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ROLES
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Who am I: any signed-in user or valid key.
    Whoami,
    /// Read stock, listings, orders without buyer fields, sync status.
    ViewStock,
    /// Change connections, catalog, sync settings; run workflows.
    ManageSync,
    /// Add, disable and re-role users; reset MFA.
    ManageUsers,
    /// Create, list and revoke API keys.
    ManageApiKeys,
    /// Read the ban list.
    ViewBans,
    /// Ban and unban addresses.
    ManageBans,
    /// Read and verify the audit log.
    ViewAudit,
    /// Incident response: lock down, revoke sessions, rotate keys.
    IncidentResponse,
    /// List workflows, their versions and executions (step timelines without outputs).
    ViewWorkflows,
    /// Start, cancel and rerun workflow executions.
    RunWorkflows,
    /// Approve a pending workflow version (never one's own: the registry refuses it).
    ApproveWorkflows,
    /// Scrape `/metrics` (counts per channel: commercial, so not auditors).
    ViewMetrics,
    /// Decrypt one order's buyer fields (name, email, phone, address), with a typed
    /// reason, one audit row per reveal (orders part of the console).
    ///
    /// Admins only. Stockade syncs stock; nobody's daily work in it needs a buyer's
    /// identity (fulfilment and customer service happen in the marketplaces' own seller
    /// centres, which show the buyer there). A marketplace data-protection review asks
    /// that PII be reachable only on a need-to-know basis, by as few people as possible,
    /// each access attributable: so not operators (they run the sync every day and would
    /// make every reveal routine), not viewers, not auditors (they see that a reveal
    /// happened, in the audit log, never the data). Admins hold MFA-gated sessions and are
    /// already trusted with keys and users; each reveal is still one order, one reason,
    /// one audit row.
    RevealBuyer,
}

use Role::{Admin, Auditor, Operator, Viewer};

/// Who may do what. One row per permission; a permission not listed is granted to no one.
pub const PERMISSIONS: &[(Permission, &[Role])] = &[
    (Permission::Whoami, &[Admin, Operator, Viewer, Auditor]),
    (Permission::ViewStock, &[Admin, Operator, Viewer]),
    (Permission::ManageSync, &[Admin, Operator]),
    (Permission::ManageUsers, &[Admin]),
    (Permission::ManageApiKeys, &[Admin]),
    (Permission::ViewBans, &[Admin, Auditor]),
    (Permission::ManageBans, &[Admin]),
    (Permission::ViewAudit, &[Admin, Auditor]),
    (Permission::IncidentResponse, &[Admin]),
    (Permission::ViewWorkflows, &[Admin, Operator, Viewer]),
    (Permission::RunWorkflows, &[Admin, Operator]),
    (Permission::ApproveWorkflows, &[Admin, Operator]),
    (Permission::ViewMetrics, &[Admin, Operator]),
    // Orders part of the console: see `RevealBuyer`.
    (Permission::RevealBuyer, &[Admin]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print() {
        for r in ROLES {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("admin, operator, viewer, auditor"));
    }

    #[test]
    fn least_privilege_holds() {
        // Only admins manage access; auditors see audit and bans but nothing commercial;
        // viewers change nothing.
        for p in [
            Permission::ManageUsers,
            Permission::ManageApiKeys,
            Permission::ManageBans,
            Permission::IncidentResponse,
            Permission::RevealBuyer,
        ] {
            assert_eq!(
                ROLES.into_iter().filter(|r| r.can(p)).collect::<Vec<_>>(),
                vec![Admin]
            );
        }
        assert!(Auditor.can(Permission::ViewAudit) && !Auditor.can(Permission::ViewStock));
        assert!(!Viewer.can(Permission::ManageSync) && !Viewer.can(Permission::ViewAudit));
        assert!(!Operator.can(Permission::ViewAudit) && Operator.can(Permission::ManageSync));
        // Every permission appears exactly once.
        for (i, (p, _)) in PERMISSIONS.iter().enumerate() {
            assert!(
                PERMISSIONS[i + 1..].iter().all(|(q, _)| q != p),
                "{p:?} listed twice"
            );
        }
    }
}

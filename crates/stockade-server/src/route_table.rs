//! The route table: every route the server answers, once, with who may call it (see
//! [`crate::routes`] for the gate that reads it). A route missing here is refused; a test
//! checks the table against the router and the OpenAPI document.

use stockade_access::Permission;
use stockade_core::order::Marketplace;

use crate::routes::{Gate, RouteSpec, r};

/// Every route the server answers, and who may call it.
pub const ROUTES: &[RouteSpec] = &[
    r("GET", "/healthz", Gate::Public),
    r("GET", "/readyz", Gate::Public),
    r("GET", "/static/app.css", Gate::Public),
    r("POST", "/api/v1/auth/login", Gate::Public),
    r("POST", "/api/v1/auth/mfa/enroll", Gate::Public),
    r("POST", "/api/v1/auth/mfa/confirm", Gate::Public),
    r("POST", "/api/v1/auth/logout", Gate::SignIn),
    r("GET", "/api/v1/whoami", Gate::Needs(Permission::Whoami)),
    r("GET", "/api/v1/users", Gate::Needs(Permission::ManageUsers)),
    r(
        "GET",
        "/api/v1/apikeys",
        Gate::Needs(Permission::ManageApiKeys),
    ),
    r("GET", "/api/v1/bans", Gate::Needs(Permission::ViewBans)),
    r("POST", "/api/v1/bans", Gate::Needs(Permission::ManageBans)),
    r(
        "DELETE",
        "/api/v1/bans/{ip}",
        Gate::Needs(Permission::ManageBans),
    ),
    r(
        "GET",
        "/api/v1/audit/verify",
        Gate::Needs(Permission::ViewAudit),
    ),
    r("GET", "/login", Gate::Public),
    r("POST", "/login", Gate::Public),
    r("GET", "/mfa", Gate::SignIn),
    r("POST", "/mfa", Gate::SignIn),
    r("GET", "/mfa/enroll", Gate::SignIn),
    r("POST", "/mfa/enroll", Gate::SignIn),
    r("GET", "/lock", Gate::SignIn),
    r("POST", "/lock", Gate::SignIn),
    r("POST", "/logout", Gate::SignIn),
    r("GET", "/", Gate::Needs(Permission::Whoami)),
    r("GET", "/alerts", Gate::Needs(Permission::ViewStock)),
    r("GET", "/api/v1/alerts", Gate::Needs(Permission::ViewStock)),
    r(
        "GET",
        "/api/v1/workflows",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "GET",
        "/api/v1/workflows/{name}/versions",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "POST",
        "/api/v1/workflows/{name}/versions/{version}/approve",
        Gate::Needs(Permission::ApproveWorkflows),
    ),
    r(
        "POST",
        "/api/v1/workflows/{name}/run",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r(
        "GET",
        "/api/v1/executions",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "GET",
        "/api/v1/executions/{id}",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "POST",
        "/api/v1/executions/{id}/cancel",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r(
        "POST",
        "/api/v1/executions/{id}/rerun",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r(
        "POST",
        "/hooks/tiktok/{connection}",
        Gate::MarketplaceSignature(Marketplace::TikTok),
    ),
    r(
        "POST",
        "/hooks/amazon/{connection}",
        Gate::MarketplaceSignature(Marketplace::Amazon),
    ),
    r(
        "POST",
        "/hooks/ebay/{connection}",
        Gate::MarketplaceSignature(Marketplace::Ebay),
    ),
    // eBay's endpoint validation challenge.
    r(
        "GET",
        "/hooks/ebay/{connection}",
        Gate::MarketplaceSignature(Marketplace::Ebay),
    ),
    r("POST", "/hooks/workflows/{*path}", Gate::WorkflowHook),
    // The API's OpenAPI document: public, it holds no secret and no instance data.
    r("GET", "/api/v1/openapi.json", Gate::Public),
    r("GET", "/api/v1/audit", Gate::Needs(Permission::ViewAudit)),
    // The console.
    r("GET", "/static/htmx.min.js", Gate::Public),
    r("GET", "/lang", Gate::Public),
    r("GET", "/overview", Gate::Needs(Permission::ViewStock)),
    r("GET", "/overview/live", Gate::Needs(Permission::ViewStock)),
    r("GET", "/inventory", Gate::Needs(Permission::ViewStock)),
    r(
        "POST",
        "/inventory/adjust",
        Gate::Needs(Permission::ManageSync),
    ),
    r("GET", "/audit", Gate::Needs(Permission::ViewAudit)),
    r("GET", "/audit.csv", Gate::Needs(Permission::ViewAudit)),
    r("GET", "/metrics", Gate::MetricsScrape),
    // Orders (console and API): reading needs ViewStock, the buyer fields RevealBuyer.
    r("GET", "/orders", Gate::Needs(Permission::ViewStock)),
    r("GET", "/orders/{id}", Gate::Needs(Permission::ViewStock)),
    r(
        "POST",
        "/orders/{id}/reveal",
        Gate::Needs(Permission::RevealBuyer),
    ),
    r("GET", "/api/v1/orders", Gate::Needs(Permission::ViewStock)),
    r(
        "GET",
        "/api/v1/orders/{id}",
        Gate::Needs(Permission::ViewStock),
    ),
    r(
        "POST",
        "/api/v1/orders/{id}/reveal",
        Gate::Needs(Permission::RevealBuyer),
    ),
    // The console's Workflows, Executions and Alerts pages, and their API additions.
    r("GET", "/workflows", Gate::Needs(Permission::ViewWorkflows)),
    r(
        "GET",
        "/workflows/{name}",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "POST",
        "/workflows/{name}/versions/{version}/approve",
        Gate::Needs(Permission::ApproveWorkflows),
    ),
    r(
        "POST",
        "/workflows/{name}/versions/{version}/reject",
        Gate::Needs(Permission::ApproveWorkflows),
    ),
    r(
        "POST",
        "/workflows/{name}/run",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r("GET", "/executions", Gate::Needs(Permission::ViewWorkflows)),
    r(
        "GET",
        "/executions/{id}",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "POST",
        "/executions/{id}/cancel",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r(
        "POST",
        "/executions/{id}/rerun",
        Gate::Needs(Permission::RunWorkflows),
    ),
    r("POST", "/alerts/test", Gate::Needs(Permission::ManageSync)),
    r(
        "POST",
        "/api/v1/workflows/{name}/versions/{version}/reject",
        Gate::Needs(Permission::ApproveWorkflows),
    ),
    r(
        "GET",
        "/api/v1/workflows/{name}/diff",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "GET",
        "/api/v1/workflows/{name}/versions/{version}/lint",
        Gate::Needs(Permission::ViewWorkflows),
    ),
    r(
        "POST",
        "/api/v1/alerts/channels/{name}/test",
        Gate::Needs(Permission::ManageSync),
    ),
    // Connections and Security pages and their API.
    r("GET", "/connections", Gate::Needs(Permission::ViewStock)),
    r(
        "POST",
        "/connections/pause",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/connections/resume",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/connections/revoke",
        Gate::Needs(Permission::ManageSync),
    ),
    r("GET", "/security", Gate::Needs(Permission::ViewBans)),
    r(
        "POST",
        "/security/bans/add",
        Gate::Needs(Permission::ManageBans),
    ),
    r(
        "POST",
        "/security/bans/lift",
        Gate::Needs(Permission::ManageBans),
    ),
    r(
        "POST",
        "/security/apikeys/revoke",
        Gate::Needs(Permission::ManageApiKeys),
    ),
    r(
        "POST",
        "/security/sessions/revoke",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/security/sessions/revoke-user",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "GET",
        "/api/v1/connections",
        Gate::Needs(Permission::ViewStock),
    ),
    r(
        "POST",
        "/api/v1/connections/{name}/pause",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/api/v1/connections/{name}/resume",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/api/v1/connections/{name}/revoke",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "GET",
        "/api/v1/security/sessions",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/security/sessions/{id}/revoke",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/security/users/{id}/sessions/revoke",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/apikeys/{id}/revoke",
        Gate::Needs(Permission::ManageApiKeys),
    ),
    // Incident response: read by administrators and auditors, acted on by administrators.
    r(
        "POST",
        "/incidents",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r("GET", "/incidents/{id}", Gate::Needs(Permission::ViewAudit)),
    r(
        "POST",
        "/incidents/{id}/revoke",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/isolate",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/release",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/lockdown",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/note",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/notify",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/close",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/incidents/{id}/report",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "GET",
        "/api/v1/incidents",
        Gate::Needs(Permission::ViewAudit),
    ),
    r(
        "POST",
        "/api/v1/incidents",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "GET",
        "/api/v1/incidents/{id}",
        Gate::Needs(Permission::ViewAudit),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/revoke",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/isolate",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/release",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/lockdown",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/notes",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/notify",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/close",
        Gate::Needs(Permission::IncidentResponse),
    ),
    r(
        "POST",
        "/api/v1/incidents/{id}/report",
        Gate::Needs(Permission::IncidentResponse),
    ),
    // Stock over the API and the inventory's CSV export.
    r("GET", "/api/v1/stock", Gate::Needs(Permission::ViewStock)),
    r(
        "GET",
        "/api/v1/stock.csv",
        Gate::Needs(Permission::ViewStock),
    ),
    r(
        "GET",
        "/api/v1/stock/{sku}",
        Gate::Needs(Permission::ViewStock),
    ),
    r(
        "POST",
        "/api/v1/stock/{sku}/adjust",
        Gate::Needs(Permission::ManageSync),
    ),
    r("GET", "/inventory.csv", Gate::Needs(Permission::ViewStock)),
    r(
        "POST",
        "/api/v1/stock/import",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/api/v1/stock/discover",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/inventory/import",
        Gate::Needs(Permission::ManageSync),
    ),
    r(
        "POST",
        "/inventory/discover",
        Gate::Needs(Permission::ManageSync),
    ),
    // Compliance (admin, auditor: the audit permission).
    r("GET", "/compliance", Gate::Needs(Permission::ViewAudit)),
    r(
        "GET",
        "/api/v1/compliance",
        Gate::Needs(Permission::ViewAudit),
    ),
];

//! Conversion, report and lint of each fixture, and the bad inputs.

use stockade_n8n::{ImportError, Options, Status};

use crate::{fixture, import, lint};

fn status(i: &stockade_n8n::Import, wf: &str, node: &str) -> Status {
    i.workflow(wf)
        .and_then(|w| w.node(node))
        .map(|n| n.status)
        .unwrap_or_else(|| panic!("{wf}/{node}"))
}

fn rules(i: &stockade_n8n::Import, file: &str) -> Vec<String> {
    lint(i)
        .into_iter()
        .filter(|(f, _, _)| f == file)
        .map(|(_, r, _)| r)
        .collect()
}

#[test]
fn the_seller_export_converts_with_exact_expressions_and_an_error_workflow() {
    let i = import("seller-order-sync.json");
    let names: Vec<&str> = i.workflows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tiktok-order-sync",
            "order-sync-errors",
            "hourly-stock-check"
        ]
    );
    let w = i.workflow("tiktok-order-sync").unwrap();
    // The webhook, the Code node kept verbatim, the IF per item with an exact condition.
    assert!(
        w.yaml
            .contains("webhook:\n    path: tiktok-orders\n    auth: api_key"),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("const order = $input.first().json.body;"));
    assert!(w.yaml.contains("input: \"{{ trigger }}\""));
    assert!(
        w.yaml.contains(
            "uses: for_each\n    with:\n      items: \"{{ steps.order_lines.output.items }}\""
        ),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("condition: \"(item.qty) > (0)\""));
    // The HTTP body translated exactly inside the loop; retries kept; a credential by name.
    assert!(
        w.yaml.contains("quantity: \"{{ item.qty }}\""),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("credential: wms-api"));
    assert!(w.yaml.contains("attempts: 3"));
    // DingTalk bot call → alert.send; the access token in its URL is never copied.
    assert!(w.yaml.contains("message: \"Order {{ steps.order_lines.output.items[0].order_id }} has a line without quantity\""));
    assert!(w.yaml.contains("channel: dingtalk"));
    assert!(!w.yaml.contains("access_token"));
    assert!(!w.yaml.contains("oapi.dingtalk.com"));
    // settings.errorWorkflow → on_error naming the converted error workflow.
    assert!(w.yaml.contains("on_error: order-sync-errors"));
    assert_eq!(
        status(&i, "tiktok-order-sync", "Order Lines"),
        Status::Converted
    );
    assert_eq!(
        status(&i, "tiktok-order-sync", "Has Quantity"),
        Status::Converted
    );
    assert_eq!(
        status(&i, "tiktok-order-sync", "DingTalk Alert"),
        Status::Converted
    );
    assert_eq!(
        status(&i, "tiktok-order-sync", "Reserve Stock"),
        Status::Review
    );
    assert_eq!(
        status(&i, "tiktok-order-sync", "Log to NocoDB"),
        Status::Review
    );
    let creds: Vec<&str> = w.credentials.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(creds, ["wms-api", "nocodb-ops"]);
    assert_eq!(w.hosts, ["wms.example-warehouse.com"]);
    let report = w.report();
    assert!(report.contains("stockade credential set wms-api --workflow tiktok-order-sync --host wms.example-warehouse.com --secret-stdin"), "{report}");
    // The NocoDB placeholder host fails lint until it is set; review points are lint problems.
    let r = rules(&i, "tiktok-order-sync.yaml");
    assert!(r.contains(&"undeclared-host".to_owned()), "{r:?}");
    assert!(r.contains(&"needs-review".to_owned()));
    let e = i.workflow("order-sync-errors").unwrap();
    assert!(e.yaml.contains("event:\n    kind: workflow.failed"));
    assert!(e.yaml.contains("events:\n    - workflow.failed"));
}

#[test]
fn with_the_nocodb_url_and_the_review_lines_removed_the_order_sync_lints_clean() {
    let options = Options {
        nocodb_url: Some("https://nocodb.example.com".into()),
    };
    let i = stockade_n8n::import(&fixture("seller-order-sync.json"), &options).unwrap();
    let w = i.workflow("tiktok-order-sync").unwrap();
    assert!(w.hosts.contains(&"nocodb.example.com".to_owned()));
    // What a reviewer does: check each marked point and delete its line.
    let reviewed: String = w
        .yaml
        .lines()
        .filter(|l| !l.contains(stockade_n8n::convert::REVIEW_MARKER))
        .map(|l| format!("{l}\n"))
        .collect();
    let problems = stockade_workflows::lint_document(&reviewed, &Default::default()).problems;
    assert!(problems.is_empty(), "{problems:?}\n{reviewed}");
}

#[test]
fn bad_input_is_named_in_the_report_and_caught_by_lint() {
    let i = import("seller-order-sync.json");
    let w = i.workflow("hourly-stock-check").unwrap();
    let notes = |node: &str| w.node(node).unwrap().notes.join("\n");
    // Unknown node type → an unsupported step, a lint error naming node and type.
    assert_eq!(w.node("Google Sheets").unwrap().status, Status::Unsupported);
    let problems = lint(&i);
    assert!(
        problems
            .iter()
            .any(|(f, r, m)| f == "hourly-stock-check.yaml"
                && r == "unsupported-node"
                && m.contains("\"Google Sheets\"")
                && m.contains("n8n-nodes-base.googleSheets"))
    );
    // Pinned data, require, $env, $now: reported for review.
    assert!(notes("Fetch Stock").contains("pinned data"));
    assert!(notes("Legacy Helper").contains("require"));
    assert!(notes("Count Low").contains("$env"));
    assert!(notes("Count Low").contains("$now"));
    // A secret in a header value: replaced by a credential reference, never copied.
    assert!(!w.yaml.contains("wms_live_"));
    assert!(w.yaml.contains("credential_header: X-Api-Key"));
    // A credential name that looks like a token: refused, a safe name generated.
    assert!(!w.yaml.contains("ghp_") && !w.report().contains("ghp_"));
    assert!(
        notes("Fetch Stock").contains("looks like it holds a secret"),
        "{}",
        notes("Fetch Stock")
    );
    assert!(w.yaml.contains("- hourly-stock-check-x-api-key"));
    assert!(
        problems
            .iter()
            .any(|(f, r, _)| f == "hourly-stock-check.yaml" && r == "needs-review")
    );
    assert!(!problems.iter().any(|(_, r, _)| r == "secret-literal"));
}

#[test]
fn not_n8n_json_and_oversized_input_are_refused_whole() {
    let none = Options::default();
    assert!(matches!(
        stockade_n8n::import(b"name: x", &none),
        Err(ImportError::NotJson(_))
    ));
    assert!(matches!(
        stockade_n8n::import(b"{\"name\": \"x\"}", &none),
        Err(ImportError::NotN8n(_))
    ));
    assert!(matches!(
        stockade_n8n::import(b"[]", &none),
        Err(ImportError::NotN8n(_))
    ));
    assert!(matches!(
        stockade_n8n::import(b"{\"nodes\": [{\"name\": 1}]}", &none),
        Err(ImportError::NotN8n(_))
    ));
    let big = vec![b' '; stockade_n8n::MAX_INPUT + 1];
    assert!(matches!(
        stockade_n8n::import(&big, &none),
        Err(ImportError::TooLarge(_))
    ));
}

#[test]
fn the_seller_stock_routing_converts_merge_edit_fields_and_switch_exactly() {
    // Stockade-written (no permissively licensed public export with Merge and Switch
    // was found; see SOURCES.md).
    let i = import("seller-stock-routing.json");
    let w = &i.workflows[0];
    assert!(
        w.report()
            .contains("9 converted, 0 need review, 0 unsupported, 0 left out"),
        "{}",
        w.report()
    );
    for node in [
        "Start",
        "East Stock",
        "West Stock",
        "All Stock",
        "Quantities As Numbers",
        "By Warehouse",
    ] {
        assert_eq!(w.node(node).unwrap().status, Status::Converted, "{node}");
    }
    assert_eq!(
        w.node("All Stock").unwrap().step.as_deref(),
        Some("all_stock")
    );
    assert!(
        w.yaml
            .contains("return [...$(\"East Stock\").all(), ...$(\"West Stock\").all()];"),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("put(out, [\"qty\"], Number(($json.qty)));"));
    assert!(
        w.yaml.contains("const out = { ...$json };"),
        "includeOtherFields"
    );
    assert!(
        w.yaml.contains(
            r#"value: "{{ \"0\" if ((item.warehouse) == (\"east\")) else \"1\" if ((item.warehouse) == (\"west\")) else \"2\" }}""#
        ),
        "{}",
        w.yaml
    );
    assert_eq!(lint(&i), Vec::<(String, String, String)>::new());
}

#[test]
fn a_public_webhook_template_converts_its_code_and_answers_with_json() {
    let i = import("studiomeyer-template-skeleton.json");
    let w = &i.workflows[0];
    assert!(
        w.report()
            .contains("1 converted, 2 need review, 0 unsupported, 1 left out"),
        "{}",
        w.report()
    );
    assert_eq!(
        w.node("Sticky Note - Intro").unwrap().status,
        Status::LeftOut
    );
    // n8n had no authentication on the webhook: Stockade asks for a key (reviewed).
    assert_eq!(w.node("Webhook").unwrap().status, Status::Review);
    assert_eq!(
        w.node("Normalize Payload").unwrap().status,
        Status::Converted
    );
    assert_eq!(w.node("Respond").unwrap().status, Status::Review);
    assert!(
        w.yaml
            .contains("path: your-trigger\n    auth: api_key\n    respond: result"),
        "{}",
        w.yaml
    );
    assert!(
        w.yaml
            .contains("const body = $input.first().json.body || {};")
    );
    assert!(w.yaml.contains("input: \"{{ trigger }}\""));
    // The JSON text n8n answers with is parsed, as n8n parses it.
    assert!(w.yaml.contains("JSON.parse(i.json)"), "{}", w.yaml);
    let rules: Vec<String> = lint(&i).into_iter().map(|p| p.1).collect();
    assert!(
        !rules.is_empty() && rules.iter().all(|r| r == "needs-review"),
        "{rules:?}"
    );
}

#[test]
fn a_public_schedule_if_http_workflow_names_env_require_and_the_error_branch() {
    let i = import("studiomeyer-ssl-expiry-watcher.json");
    let w = &i.workflows[0];
    assert!(
        w.report()
            .contains("3 converted, 3 need review, 1 unsupported, 3 left out"),
        "{}",
        w.report()
    );
    let st = |n: &str| w.node(n).unwrap().status;
    assert_eq!(st("Schedule Trigger"), Status::Converted);
    assert!(w.yaml.contains("cron: \"0 9 * * *\""), "{}", w.yaml);
    assert_eq!(st("Load Domains"), Status::Review);
    assert_eq!(st("Check Expiry"), Status::Review);
    let notes = |n: &str| w.node(n).unwrap().notes.join("\n");
    assert!(notes("Load Domains").contains("$env"));
    assert!(notes("Check Expiry").contains("require"));
    assert_eq!(st("Should Alert?"), Status::Converted);
    assert!(w.yaml.contains("condition: \"(item.shouldAlert) == true\""));
    assert_eq!(st("Build Slack Message"), Status::Converted);
    assert_eq!(st("Slack Alert"), Status::Review);
    // The Slack Alert's expressions read the Build Slack Message item: the script
    // computing them runs inside the same for_each as the request.
    assert!(
        w.yaml.contains(
            "items: \"{{ steps.build_slack_message.output.items }}\"\n              max_items: 1000\n            steps:\n              - id: slack_alert_expr"
        ),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("continue_on_error: true"));
    // The node on n8n's error output is named, never dropped.
    assert_eq!(st("Error Fallback"), Status::Unsupported);
    let mut rules: Vec<String> = lint(&i).into_iter().map(|p| p.1).collect();
    rules.sort();
    rules.dedup();
    assert_eq!(
        rules,
        [
            "needs-review",
            "script",
            "undeclared-host",
            "unsupported-node"
        ]
    );
    let problems = lint(&i);
    assert!(
        problems
            .iter()
            .any(|(_, r, m)| r == "script" && m.contains("`require`"))
    );
    assert!(
        problems
            .iter()
            .any(|(_, r, m)| r == "script" && m.contains("`$env`"))
    );
    assert!(
        problems
            .iter()
            .any(|(_, r, m)| r == "unsupported-node" && m.contains("\"Error Fallback\""))
    );
}

#[test]
fn every_node_is_reported_once() {
    for f in [
        "seller-order-sync.json",
        "seller-stock-routing.json",
        "studiomeyer-template-skeleton.json",
        "studiomeyer-ssl-expiry-watcher.json",
        "studiomeyer-rss-multi-channel.json",
        "mrumpold-webhook.json",
        "mrumpold-weather-api-1.json",
        "mrumpold-daily-email-reminder.json",
    ] {
        let raw: serde_json::Value = serde_json::from_slice(&fixture(f)).unwrap();
        let list = raw.as_array().cloned().unwrap_or_else(|| vec![raw.clone()]);
        let i = import(f);
        for (w, r) in i.workflows.iter().zip(&list) {
            assert_eq!(w.nodes.len(), r["nodes"].as_array().unwrap().len(), "{f}");
        }
    }
}

#[test]
fn a_public_http_workflow_converts_exactly_and_lints_clean() {
    let i = import("mrumpold-weather-api-1.json");
    let w = &i.workflows[0];
    for node in ["Manual Trigger", "Get Weather", "Format Message"] {
        assert_eq!(w.node(node).unwrap().status, Status::Converted, "{node}");
    }
    assert_eq!(w.node("Sticky Note").unwrap().status, Status::LeftOut);
    assert_eq!(w.hosts, ["api.open-meteo.com"]);
    assert!(
        w.yaml
            .contains("input: \"{{ steps.get_weather.output.body }}\"")
    );
    assert!(w.yaml.contains("${$json.current_weather.temperature}°C"));
    assert_eq!(lint(&i), Vec::<(String, String, String)>::new());
}

#[test]
fn a_public_schedule_workflow_keeps_its_time_and_names_what_it_cannot_send() {
    let i = import("mrumpold-daily-email-reminder.json");
    let w = &i.workflows[0];
    assert!(w.yaml.contains("cron: \"0 9 * * *\""), "{}", w.yaml);
    assert!(
        w.node("Schedule Trigger")
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("UTC"))
    );
    assert_eq!(w.node("Edit Fields").unwrap().status, Status::Converted);
    assert_eq!(w.node("Send Email").unwrap().status, Status::Unsupported);
    let problems = lint(&i);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].1, "unsupported-node");
    assert!(
        problems[0].2.contains("\"Send Email\"")
            && problems[0].2.contains("n8n-nodes-base.emailSend")
    );
}

#[test]
fn a_public_webhook_with_respond_to_webhook_answers_with_the_result() {
    let i = import("mrumpold-webhook.json");
    let w = &i.workflows[0];
    assert!(
        w.yaml
            .contains("path: hello-webhook\n    auth: api_key\n    respond: result"),
        "{}",
        w.yaml
    );
    assert_eq!(w.node("Set Response").unwrap().status, Status::Converted);
    assert_eq!(w.node("Respond to Webhook").unwrap().status, Status::Review);
    assert_eq!(w.node("Webhook").unwrap().status, Status::Review);
    let rules: Vec<String> = lint(&i).into_iter().map(|p| p.1).collect();
    assert_eq!(rules, ["needs-review"]);
}

#[test]
fn a_secret_inside_an_expression_never_reaches_the_report_and_fails_lint() {
    let export = serde_json::json!({
        "name": "Leaky",
        "nodes": [
            { "name": "Start", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1, "parameters": {} },
            { "name": "Call", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4.2, "parameters": {
                "method": "POST", "url": "https://api.example.com/x", "sendBody": true,
                "bodyParameters": { "parameters": [
                    { "name": "key", "value": "={{ 'sk_live_a1b2c3d4e5f6a7b8c9d0e1f2' + $json.x }}" } ] },
                "sendHeaders": true,
                "headerParameters": { "parameters": [
                    { "name": "Authorization", "value": "=Bearer {{ $env.API_TOKEN }}" } ] } } }
        ],
        "connections": { "Start": { "main": [[{ "node": "Call", "type": "main", "index": 0 }]] } }
    });
    let i = stockade_n8n::import(export.to_string().as_bytes(), &Options::default()).unwrap();
    let w = &i.workflows[0];
    let report = w.report();
    assert!(
        !report.contains("sk_live_") && !report.contains("a1b2c3d4"),
        "{report}"
    );
    assert!(
        !w.yaml.contains("API_TOKEN"),
        "the $env header became a credential reference"
    );
    assert!(
        w.yaml.contains("credential: leaky-authorization"),
        "{}",
        w.yaml
    );
    // The body expression is kept verbatim for review, so lint sees the secret in it.
    let rules: Vec<String> = lint(&i).into_iter().map(|p| p.1).collect();
    assert!(rules.contains(&"secret-literal".to_owned()), "{rules:?}");
}

#[test]
fn a_public_switch_workflow_routes_case_insensitively_and_names_its_credentials() {
    let i = import("studiomeyer-rss-multi-channel.json");
    let w = &i.workflows[0];
    assert!(
        w.report()
            .contains("3 converted, 11 need review, 2 unsupported, 3 left out"),
        "{}",
        w.report()
    );
    let st = |n: &str| w.node(n).unwrap().status;
    assert_eq!(st("Schedule Trigger"), Status::Converted);
    assert_eq!(st("Normalize Items"), Status::Converted);
    // Switch 3.2, case-insensitive, no fallback output: an unmatched item goes nowhere.
    assert_eq!(st("Route by Channel"), Status::Converted);
    assert!(
        w.yaml.contains(
            r#"value: "{{ \"0\" if (((item.channel) | lower) == ((\"x\") | lower)) else \"1\" if (((item.channel) | lower) == ((\"linkedin\") | lower)) else \"2\" if (((item.channel) | lower) == ((\"discord\") | lower)) else \"none\" }}""#
        ),
        "{}",
        w.yaml
    );
    assert!(w.yaml.contains("        default: []"));
    // The export names no credential for X and LinkedIn, but n8n authenticated both:
    // each request gets a credential reference, and the reviewer is told why.
    let creds: Vec<&str> = w.credentials.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        creds,
        [
            "rss-to-multi-channel-social-x-linkedin-discord-twitteroauth1api",
            "rss-to-multi-channel-social-x-linkedin-discord-linkedinoauth2api"
        ]
    );
    assert_eq!(w.hosts, ["api.linkedin.com", "api.x.com"]);
    let notes = |n: &str| w.node(n).unwrap().notes.join("\n");
    assert!(notes("X Post").contains("`twitterOAuth1Api` credential the export does not name"));
    assert!(notes("LinkedIn Post").contains("OAuth2"));
    assert!(
        w.yaml.contains(
            "credential: rss-to-multi-channel-social-x-linkedin-discord-twitteroauth1api"
        )
    );
    // The JSON bodies built with JSON.stringify are parsed before sending, as n8n does.
    assert!(w.yaml.contains(
        "(((b) => (typeof b === \"string\" ? JSON.parse(b) : b))(JSON.stringify({ text: $json.xText })))"
    ));
    // A node fed from three branches, and a node on error outputs, are named.
    assert!(notes("Aggregate Results").contains("fed from several branches"));
    assert_eq!(st("Error Fallback"), Status::Unsupported);
    // The alert after it runs only on n8n's error path: it is named too, rather than
    // left to run on every execution once the reviewer removes the error node.
    assert_eq!(st("Error Slack Alert"), Status::Unsupported);
    assert!(notes("Error Slack Alert").contains("only after a node on the error output"));
    for n in ["List Feeds", "Rate Limit (opt-in)", "Set Channel Targets"] {
        assert!(notes(n).contains("$env"), "{n}");
    }
    assert!(notes("Idempotency Filter (opt-in)").contains("require"));
    assert!(notes("Rate Limit (opt-in)").contains("static data"));
    let mut rules: Vec<String> = lint(&i).into_iter().map(|p| p.1).collect();
    rules.sort();
    rules.dedup();
    assert_eq!(
        rules,
        [
            "needs-review",
            "script",
            "undeclared-host",
            "unsupported-node"
        ]
    );
}

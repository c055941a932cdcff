//! HTTP Request (v1 and v3/v4 parameters) → `http.request`: the URL's host becomes a
//! declared host, n8n credentials become named credential references, header values
//! that look like secrets are replaced by a credential reference (never copied), query
//! parameters join the URL, the body keeps its fields (a JSON body an expression gives as
//! text is parsed, as n8n parses it). An authenticated request whose export names no
//! credential still gets a reference, named from its credential type. Calls to DingTalk /
//! Feishu / Lark bot webhooks become `alert.send` to a named channel instead.

use serde_json::Value;

use crate::convert::{Cx, Draft};
use crate::expr::Items;
use crate::yaml::Y;

/// Bot webhook hosts that are alert channels in Stockade.
pub const BOT_HOSTS: &[(&str, &str)] = &[
    ("oapi.dingtalk.com", "dingtalk"),
    ("open.feishu.cn", "feishu"),
    ("open.larksuite.com", "lark"),
];

/// A credential to inject: its name and the header it goes in (`None`: the default).
type CredentialRef = (String, Option<String>);

/// Header names whose literal value is a secret whatever it looks like.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "xc-token",
    "xc-auth",
    "x-access-token",
    "cookie",
];

/// The host of a URL written literally up to its path (`None` when computed).
pub fn literal_host(url: &str) -> Option<(bool, String)> {
    let url = url.strip_prefix('=').unwrap_or(url);
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty() && !host.contains("{{") && !host.contains('}') && !host.contains('@'))
        .then(|| (https, host.to_ascii_lowercase()))
}

fn pairs(v: Option<&Value>, key: &str) -> Vec<(String, Value)> {
    v.and_then(|p| p.get(key))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p.get("name")?.as_str()?.to_owned(),
                        p.get("value").cloned().unwrap_or(Value::Null),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn http(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let v1 = cx.node.version < 2.0;
    let url = cx.node.str_param("url").unwrap_or("").to_owned();
    let host = literal_host(&url);
    if let Some((_, h)) = &host
        && let Some((_, channel)) = BOT_HOSTS.iter().find(|(b, _)| h == b)
    {
        let body = body_value(cx, v1);
        return crate::nodes::alert::bot_call(cx, channel, body);
    }
    let method = cx
        .node
        .str_param(if v1 { "requestMethod" } else { "method" })
        .unwrap_or("GET")
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
        return Err(format!("method {method}"));
    }
    match &host {
        Some((true, h)) => {
            cx.acc.hosts.insert(h.clone());
        }
        Some((false, h)) => {
            cx.acc.hosts.insert(h.clone());
            cx.review(
                "an http:// URL: Stockade sends HTTPS only (lint reports it until it is https://)",
            );
        }
        None => {
            cx.review("the URL's host is computed: write the host literally so it can be declared")
        }
    }
    let mut full_url = url.clone();
    let query = query_params(cx, v1);
    if !query.is_empty() {
        let literal = query
            .iter()
            .all(|(_, v)| v.as_str().is_some_and(|s| !s.starts_with('=')));
        if !literal {
            cx.review("query parameters computed from expressions are appended to the URL without URL-encoding");
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) if !s.starts_with('=') => enc(s),
                    Value::String(s) => s.trim_start_matches('=').to_owned(),
                    other => other.to_string(),
                };
                format!("{}={text}", enc(k))
            })
            .collect();
        full_url = format!("={}{sep}{}", url.trim_start_matches('='), q.join("&"));
    }
    let url_y = cx.value("url", &Value::String(full_url));
    let mut with = vec![("url", url_y)];
    if method != "GET" {
        with.push(("method", Y::s(method)));
    }
    let host_name = host.map(|(_, h)| h);
    let (headers, credential) = headers(cx, v1, host_name.as_deref());
    if !headers.is_empty() {
        with.push(("headers", Y::Map(headers)));
    }
    if let Some(body) = body_value(cx, v1) {
        let b = cx.value("body", &body);
        with.push(("body", b));
    }
    let from_node = node_credential(cx, host_name.as_deref());
    let credential = credential.or(from_node);
    if let Some((name, header)) = credential {
        with.push(("credential", Y::s(name)));
        if let Some(h) = header {
            with.push(("credential_header", Y::s(h)));
        }
    }
    let mut d = cx.step("http.request", with);
    if let Some(ms) = cx
        .node
        .param("options")
        .and_then(|o| o.get("timeout"))
        .and_then(Value::as_u64)
    {
        d.entries
            .push(("timeout".into(), Y::s(crate::nodes::iso_ms(ms))));
    }
    if cx
        .node
        .param("options")
        .and_then(|o| o.get("response"))
        .is_some()
        || cx
            .node
            .str_param("responseFormat")
            .is_some_and(|f| f != "json")
    {
        cx.note("n8n's response options (format, full response) differ: the output is {status, headers, body}");
    }
    cx.out = Items::Single(format!("steps.{}.output.body", cx.id));
    Ok(vec![d])
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query_params(cx: &Cx<'_>, v1: bool) -> Vec<(String, Value)> {
    if v1 {
        return pairs(cx.node.param("queryParametersUi"), "parameter");
    }
    if cx.node.param("sendQuery").and_then(Value::as_bool) != Some(true) {
        return Vec::new();
    }
    pairs(cx.node.param("queryParameters"), "parameters")
}

/// Headers, with any secret-looking value replaced by a credential reference.
fn headers(
    cx: &mut Cx<'_>,
    v1: bool,
    host: Option<&str>,
) -> (Vec<(String, Y)>, Option<CredentialRef>) {
    let list = if v1 {
        pairs(cx.node.param("headerParametersUi"), "parameter")
    } else if cx.node.param("sendHeaders").and_then(Value::as_bool) == Some(true) {
        if cx.node.str_param("specifyHeaders") == Some("json") {
            cx.review("headers given as JSON text: check them");
            match cx
                .node
                .str_param("jsonHeaders")
                .and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t).ok())
            {
                Some(m) => m.into_iter().collect(),
                None => Vec::new(),
            }
        } else {
            pairs(cx.node.param("headerParameters"), "parameters")
        }
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let mut credential = None;
    for (name, value) in list {
        let text = value.as_str().unwrap_or("");
        let literal = !text.starts_with('=');
        let secret = stockade_workflows::secrets::looks_like_secret(text).is_some()
            || (literal
                && !text.is_empty()
                && SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        if secret || crate::expr::reads_env(text) {
            let slot = crate::slug(&name, '-');
            let cred = cx.credential(
                "",
                &slot,
                host,
                &format!(
                    "the value of header {name}, which held a secret in the export (not copied)"
                ),
            );
            cx.review(format!("header {name} held a secret or an environment variable: replaced by credential `{cred}` (not copied; rotate the old secret if the export was shared)"));
            let header = (!name.eq_ignore_ascii_case("authorization")
                || !text.trim_start_matches('=').starts_with("Bearer "))
            .then(|| {
                if name.eq_ignore_ascii_case("authorization") {
                    let scheme = text.split_whitespace().next().unwrap_or("Bearer");
                    format!("Authorization: {scheme}")
                } else {
                    name.clone()
                }
            });
            credential = Some((cred, header));
            continue;
        }
        let y = cx.value(&format!("headers.{name}"), &value);
        out.push((name, y));
    }
    (out, credential)
}

/// The node's n8n credential as a named reference (header to check when unknown).
fn node_credential(cx: &mut Cx<'_>, host: Option<&str>) -> Option<CredentialRef> {
    let auth = cx.node.str_param("authentication").unwrap_or("none");
    if auth == "none" && cx.node.version >= 2.0 {
        return None;
    }
    let (slot, cred_name) = match cx.node.credentials.first().cloned() {
        Some(c) => c,
        None => {
            // Shared exports often drop the `credentials` entry: the credential type is
            // still in the parameters, and the request still needs one.
            let slot = match auth {
                "predefinedCredentialType" => cx.node.str_param("nodeCredentialType"),
                "genericCredentialType" => cx.node.str_param("genericAuthType"),
                _ => None,
            }?
            .to_owned();
            cx.review(format!(
                "n8n authenticated with a `{slot}` credential the export does not name: a credential is referenced by a generated name"
            ));
            (slot, String::new())
        }
    };
    let why = format!("n8n credential type `{slot}`");
    let name = cx.credential(&cred_name, &slot, host, &why);
    let header = match slot.as_str() {
        "httpHeaderAuth" => {
            cx.review(format!("credential `{name}`: n8n kept the header name in the credential; set `credential_header` to it (default Authorization: Bearer)"));
            None
        }
        "httpBearerAuth" => None,
        "httpQueryAuth" | "httpBasicAuth" | "httpDigestAuth" | "oAuth1Api" => {
            cx.review(format!("credential `{name}` ({slot}): Stockade injects one header; check how the API takes it"));
            None
        }
        s if s.starts_with("oAuth2") || s.ends_with("OAuth2Api") => {
            cx.review(format!("credential `{name}` is OAuth2 in n8n: Stockade injects a stored token and does not refresh it"));
            None
        }
        _ => {
            cx.review(format!("credential `{name}` is n8n's predefined `{slot}` type: check the header the API expects"));
            None
        }
    };
    cx.note(format!(
        "credential `{name}` (n8n: {slot}) — create it with `stockade credential set`"
    ));
    Some((name, header))
}

/// The request body as a parameter value (`None`: no body).
pub fn body_value(cx: &mut Cx<'_>, v1: bool) -> Option<Value> {
    if v1 {
        if cx.node.param("jsonParameters").and_then(Value::as_bool) == Some(true) {
            return json_text(cx, cx.node.param("bodyParametersJson").cloned());
        }
        let p = pairs(cx.node.param("bodyParametersUi"), "parameter");
        return (!p.is_empty()).then(|| Value::Object(p.into_iter().collect()));
    }
    if cx.node.param("sendBody").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let content = cx.node.str_param("contentType").unwrap_or("json");
    if content != "json" {
        cx.review(format!(
            "body content type `{content}`: Stockade sends a mapping as JSON and a string as text"
        ));
    }
    match (
        content,
        cx.node.str_param("specifyBody").unwrap_or("keypair"),
    ) {
        ("raw", _) => cx.node.param("body").cloned(),
        (_, "json") => json_text(cx, cx.node.param("jsonBody").cloned()),
        _ => {
            let p = pairs(cx.node.param("bodyParameters"), "parameters");
            Some(Value::Object(p.into_iter().collect()))
        }
    }
}

/// A JSON body written as text: parsed when literal, kept as an expression otherwise.
fn json_text(cx: &mut Cx<'_>, v: Option<Value>) -> Option<Value> {
    let text = v?.as_str()?.to_owned();
    match serde_json::from_str::<Value>(&text) {
        Ok(parsed) => Some(parsed),
        Err(_) if text.starts_with('=') => {
            // `={ "sku": "{{ $json.sku }}" }`: a JSON template; parse it with the
            // expressions as strings when each sits inside quotes.
            let inner = &text[1..];
            match serde_json::from_str::<Value>(inner) {
                Ok(parsed) => Some(mark_expressions(parsed)),
                Err(_) => {
                    cx.review("the JSON body is built by an expression: computed by a script");
                    Some(Value::String(parsed_as_json(&text)))
                }
            }
        }
        Err(_) => Some(Value::String(text)),
    }
}

/// n8n parses the text a JSON body expression gives (`={{ JSON.stringify($json) }}`)
/// and sends the value: a body that is one expression is wrapped so the script does
/// the same. Other templates are left as they are (sent as text; reviewed).
fn parsed_as_json(text: &str) -> String {
    let inner = text.trim_start_matches('=').trim();
    match inner.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
        Some(e) if !e.contains("{{") && !e.contains("}}") => format!(
            "={{{{ ((b) => (typeof b === \"string\" ? JSON.parse(b) : b))({}) }}}}",
            e.trim()
        ),
        _ => text.to_owned(),
    }
}

/// Strings of a parsed JSON template holding `{{ }}` become n8n expressions again.
fn mark_expressions(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => Value::String(format!("={s}")),
        Value::Array(a) => Value::Array(a.into_iter().map(mark_expressions).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, mark_expressions(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::parsed_as_json;

    #[test]
    fn a_body_that_is_one_expression_is_parsed_and_a_template_is_left_as_text() {
        assert_eq!(
            parsed_as_json("={{ JSON.stringify($json) }}"),
            "={{ ((b) => (typeof b === \"string\" ? JSON.parse(b) : b))(JSON.stringify($json)) }}"
        );
        // Text around the expression, or nested braces that would end the expression
        // early, are not wrapped (the body stays a reviewed string).
        assert_eq!(parsed_as_json("=id: {{ $json.id }}"), "=id: {{ $json.id }}");
        assert_eq!(parsed_as_json("={{ {a: {b: 1}} }}"), "={{ {a: {b: 1}} }}");
    }
}

//! `[log] format = "json"` on a real `stockade serve`: every line it writes is one JSON
//! object (a timestamp, a level and the message fields), and what a caller sent as a
//! secret (a password, an API key) is in none of them. The same process serves
//! `/metrics` to a loopback caller without credentials.

use serde_json::{Value, json};

use crate::server::{Server, init};

const SECRET_PASSWORD: &str = "Cobalt-Heron-Sings-7731";
const SECRET_KEY: &str = "stk_0123456789abcdefghijklmnopqrstuv";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_carry_no_secret() {
    let sb = init("dev", "[log]\nformat = \"json\"\n");
    let server = Server::start(&sb);
    // Things that log: a failed sign-in, a bad API key.
    let res = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": "nobody@shop.example", "password": SECRET_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = server
        .client
        .get(server.url("/api/v1/whoami"))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains("stockade_build_info{version="), "{text}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "too few log lines:\n{log}");
    for line in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("authentication failure")),
        "the bad key is logged (without the key):\n{log}"
    );
    for secret in [SECRET_PASSWORD, SECRET_KEY, "0123456789abcdef"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

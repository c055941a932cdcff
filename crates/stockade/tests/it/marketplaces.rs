//! `stockade sandbox` run as a user would, and the `[egress]` settings.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Sandbox;

/// Kills the sandbox process when the test ends, pass or fail.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn base_url(section: &str, text: &str) -> String {
    let start = text.find(&format!("[{section}]")).unwrap();
    text[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("base_url      = "))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_sandbox_command_serves_three_marketplaces_over_tls_with_their_contracts() {
    let sb = Sandbox::new();
    let ca = sb.dir.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["sandbox", "--seed", "3", "--skus", "4", "--orders", "5"])
        .arg("--fault")
        .arg("ebay:error_rate=1")
        .arg("--ca-file")
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C stops the sandbox");
        text.push_str(&line);
        text.push('\n');
        if done {
            break;
        }
    }
    assert!(text.contains("client_secret"), "{text}");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();

    // Amazon's LWA endpoint checks the client credentials like the real one.
    let amazon = base_url("amazon", &text);
    let res = client
        .post(format!("{amazon}/auth/o2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "Atzr|not-a-real-token"),
            ("client_id", "amzn1.application-oa2-client.nobody"),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // TikTok refuses an unsigned call with its own envelope.
    let tiktok = base_url("tiktok", &text);
    let res = client
        .get(format!(
            "{tiktok}/authorization/202309/shops?app_key=x&timestamp=1"
        ))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let body: Value = res.json().await.unwrap();
    assert_ne!(body["code"], json!(0), "{body}");

    // The orders generated at start exist; the fault given at start is in force.
    let res = client
        .get(format!("{amazon}/_sandbox/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let n = body
        .as_array()
        .or_else(|| body["orders"].as_array())
        .map(Vec::len);
    assert_eq!(n, Some(5), "{body}");
    let ebay = base_url("ebay", &text);
    let res = client
        .get(format!("{ebay}/sell/fulfillment/v1/order/1"))
        .bearer_auth("v^1.1#whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // …and faults change at run time.
    let res = client
        .put(format!("{ebay}/_sandbox/faults"))
        .json(&json!({"error_rate": 0.0}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let res = client
        .get(format!("{ebay}/sell/fulfillment/v1/order/1"))
        .bearer_auth("v^1.1#whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "a bad token, no longer a fault"
    );
    drop(running);
}

#[test]
fn sandbox_flags_and_egress_settings_are_checked() {
    let sb = Sandbox::new();
    let out = sb
        .run(&["sandbox", "--fault", "amazon:meltdown=1"])
        .expect_code(2);
    assert!(
        out.stderr().contains("MARKETPLACE:NAME=VALUE"),
        "{}",
        out.stderr()
    );
    let out = sb
        .run(&["sandbox", "--webhook", "tiktok=http://127.0.0.1:9/hook"])
        .expect_code(2);
    assert!(out.stderr().contains("https://"), "{}", out.stderr());

    let cfg = sb.dir.join("egress.toml");
    std::fs::write(
        &cfg,
        "env = \"dev\"\n[egress]\nallowed_hosts = [\"https://api.ebay.com/\"]\n",
    )
    .unwrap();
    let out = sb
        .run(&["--config", cfg.to_str().unwrap(), "config"])
        .expect_code(2);
    assert!(
        out.stderr().contains("egress.allowed_hosts"),
        "{}",
        out.stderr()
    );
    std::fs::write(
        &cfg,
        "env = \"dev\"\n[egress]\nallowed_hosts = [\"api.ebay.com\"]\nrequest_timeout = \"10s\"\n",
    )
    .unwrap();
    let out = sb
        .run(&["--config", cfg.to_str().unwrap(), "config"])
        .expect_code(0)
        .stdout();
    assert!(out.contains("api.ebay.com") && out.contains("10s"), "{out}");
}

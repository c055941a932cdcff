//! Regression: settings needed a restart and a stalled channel looked healthy. A running
//! `stockade serve` whose egress allowlist leaves out the (simulated) eBay host shows the
//! stalled channel in `connection show` and `sku list` (failing, the last error, since
//! when); an invalid reload (SIGHUP) is refused and the old settings stay; a valid
//! `stockade config reload` lets eBay through and adds an alert channel that then gets
//! the next alert, with no restart; a setting that cannot change live is reported as
//! needing a restart.

use std::time::{Duration, Instant};

use serde_json::json;
use stockade_core::order::Marketplace;
use stockade_sandbox::bots::{Bots, BotsConfig, FeishuBotSpec};
use stockade_sandbox::{Sandbox as Sims, SandboxConfig};

use crate::harness::Sandbox;
use crate::server::{Server, init};
use crate::sync::credentials_file;

fn config(sb: &Sandbox, base: &str, hosts: &[&str], extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let ca = |n: &str| sb.data().join(n).display().to_string();
    format!(
        "{base}\n[egress]\nextra_root_certs = [\"{}\", \"{}\"]\nallowed_hosts = [{}]\n{extra}",
        ca("bots-ca.pem"),
        ca("sims-ca.pem"),
        hosts.join(", ")
    )
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
}

fn sighup(sb: &Sandbox) {
    let pid: i32 = std::fs::read_to_string(sb.data().join("serve.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_restart_and_a_stalled_channel_shows_it() {
    let bots = Bots::start(BotsConfig::default()).await.unwrap();
    let feishu = bots.add_feishu(FeishuBotSpec {
        name: "feishu".into(),
        sign: true,
        keywords: vec![],
        ip_allow: vec![],
    });
    let sims = Sims::start(SandboxConfig {
        skus: 2,
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let ebay = sims.endpoint(Marketplace::Ebay);
    let ebay_host = ebay.addr.to_string();
    let seller = &ebay.sellers[0];

    let sb = init("dev", "[sync]\nreconcile_interval = \"never\"\n");
    std::fs::write(sb.data().join("bots-ca.pem"), &bots.ca_pem).unwrap();
    std::fs::write(sb.data().join("sims-ca.pem"), &sims.ca_pem).unwrap();
    let path = sb.data().join("stockade.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    // eBay's simulator is not on the allowlist yet: its pushes are refused.
    std::fs::write(&path, config(&sb, &base, &["api.sandbox.ebay.com"], "")).unwrap();

    let creds = credentials_file(
        &sb,
        "ebay",
        json!({"client_id": ebay.app.client_id,
               "client_secret": ebay.app.client_secret.expose_secret(),
               "refresh_token": seller.refresh_token.expose_secret(),
               "verification_token": sims.ebay_verification_token().expose_secret()}),
    );
    sb.run(&[
        "connection",
        "add",
        "--marketplace",
        "ebay",
        "--name",
        "ebay",
        "--account",
        &seller.user_id,
        "--api-url",
        &ebay.base_url,
        "--marketplace-id",
        &seller.marketplace_id,
        "--endpoint-url",
        "https://127.0.0.1:9/hooks/ebay/ebay",
        "--credentials-file",
        creds.to_str().unwrap(),
    ])
    .expect_code(0);
    let mut csv = String::from("sku,on_hand,ebay:listing,ebay:buffer,ebay:max\n");
    for l in sims.listings(Marketplace::Ebay) {
        csv.push_str(&format!("{},40,{},0,\n", l.sku, l.offer_id));
    }
    let csv_path = sb.dir.join("catalog.csv");
    std::fs::write(&csv_path, csv).unwrap();
    sb.run(&["sku", "import", csv_path.to_str().unwrap()])
        .expect_code(0);

    let started = stockade_core::time::now_ms();
    let server = Server::start(&sb);
    assert!(sb.data().join("serve.pid").is_file());

    // The stalled channel looks stalled.
    let show = wait_for("the failing pushes", 30, || {
        let out = sb
            .run(&["connection", "show", "ebay"])
            .expect_code(0)
            .stdout();
        out.contains("FAILING since").then_some(out)
    })
    .await;
    let pushes = line(&show, "pushes");
    let since = pushes
        .split("FAILING since ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(
        since.as_str() >= stockade_core::time::format_rfc3339_ms(started).as_str(),
        "{show}"
    );
    let last = line(&show, "last error");
    assert!(
        last.contains("blocked") && !last.contains(ebay.app.client_secret.expose_secret()),
        "{show}"
    );
    let list = sb.run(&["sku", "list"]).expect_code(0).stdout();
    assert!(
        list.contains("ebay 40/- FAILING") && list.contains("failing pushes (2):"),
        "{list}"
    );
    let failing = list
        .lines()
        .find(|l| l.trim_start().starts_with("SKU-0001 on ebay"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        failing.contains(&format!("failing since {since}")),
        "{list}"
    );

    // An invalid file: `config reload` refuses it before signalling (exit 2), and a
    // SIGHUP with it is refused by the server; the old settings stay in force.
    std::fs::write(&path, config(&sb, &base, &["https://127.0.0.1/"], "")).unwrap();
    let out = sb.run(&["config", "reload"]).expect_code(2);
    assert!(
        out.stderr().contains("egress.allowed_hosts"),
        "{}",
        out.stderr()
    );
    let out = sb.run(&["config"]).expect_code(2);
    assert!(
        out.stderr().contains("egress.allowed_hosts"),
        "{}",
        out.stderr()
    );
    sighup(&sb);
    let answer = wait_for("the refusal", 10, || {
        let t = std::fs::read_to_string(sb.data().join("serve.reload")).unwrap_or_default();
        t.contains("result refused").then_some(t)
    })
    .await;
    assert!(answer.contains("egress.allowed_hosts"), "{answer}");
    assert!(
        server.log_text().contains("configuration reload refused"),
        "{}",
        server.log_text()
    );
    // Every command refuses the invalid file; with the old one back, the server still
    // runs under it: the same streak, still blocked.
    std::fs::write(&path, config(&sb, &base, &["api.sandbox.ebay.com"], "")).unwrap();
    let show = sb
        .run(&["connection", "show", "ebay"])
        .expect_code(0)
        .stdout();
    assert!(
        line(&show, "pushes").contains(&format!("FAILING since {since}"))
            && line(&show, "last error").contains("blocked"),
        "{show}"
    );

    // A valid file: eBay allowed, an alert channel added, a restart-only change.
    std::fs::write(
        &path,
        config(
            &sb,
            &base,
            &["api.sandbox.ebay.com", &ebay_host],
            &format!(
                "\n[[alerts.channel]]\nname = \"ops-feishu\"\nkind = \"feishu\"\nurl = \"{}/open-apis/bot/v2/hook\"\nsources = [\"access\"]\n",
                bots.base_url
            ),
        )
        .replace("reconcile_interval = \"never\"", "reconcile_interval = \"10m\""),
    )
    .unwrap();
    let secret = credentials_file(
        &sb,
        "feishu",
        json!({"hook_id": feishu.hook_id, "secret": feishu.secret}),
    );
    sb.run(&[
        "alert",
        "secret",
        "set",
        "ops-feishu",
        "--credentials-file",
        secret.to_str().unwrap(),
    ])
    .expect_code(0);
    let out = sb.run(&["config", "reload"]).expect_code(0).stdout();
    assert!(
        out.contains("reloaded:")
            && out.contains(&format!(
                "egress.allowed_hosts = api.sandbox.ebay.com, {ebay_host}"
            ))
            && out.contains("alerts.channels = ops-feishu")
            && out.contains("needs a restart: sync.reconcile_interval"),
        "{out}"
    );
    // The channel catches up without a restart…
    wait_for("the channel to catch up", 60, || {
        let out = sb
            .run(&["connection", "show", "ebay"])
            .expect_code(0)
            .stdout();
        line(&out, "pushes").ends_with(" ok").then_some(out)
    })
    .await;
    let list = sb.run(&["sku", "list"]).expect_code(0).stdout();
    assert!(
        list.contains("ebay 40/40") && !list.contains("FAILING"),
        "{list}"
    );
    // …and the new channel gets the next alert.
    sb.run(&["ban", "add", "198.51.100.9", "--duration", "1h"])
        .expect_code(0);
    wait_for("the ban alert on the new channel", 20, || {
        bots.accepted("feishu")
            .iter()
            .any(|r| r.body.to_string().contains("banned"))
            .then(String::new)
    })
    .await;
    drop(server);
    assert!(
        !sb.data().join("serve.pid").exists() || {
            // Killed (not stopped): the file may stay; `config reload` then says so.
            let out = sb.run(&["config", "reload"]).expect_code(1);
            out.stderr().contains("not running")
        }
    );
    sims.shutdown().await;
    bots.shutdown().await;
}

/// Regression: `stockade config` accepted settings `serve` then refused. It runs the same
/// checks: prod without a certificate (unless self-signed), an unreadable certificate,
/// a bad alert channel, a malformed egress host; each exit 2 with serve's message.
#[test]
fn config_refuses_what_serve_refuses() {
    let sb = init("prod", "");
    let path = sb.data().join("stockade.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    let config = sb.run(&["config"]).expect_code(2);
    let serve = sb.run(&["serve", "--listen", "127.0.0.1:0"]).expect_code(2);
    assert!(
        config
            .stderr()
            .contains("no TLS certificate configured for prod")
            && config.stderr() == serve.stderr(),
        "{}\n{}",
        config.stderr(),
        serve.stderr()
    );
    std::fs::write(&path, format!("{base}\n[server]\nself_signed = true\n")).unwrap();
    sb.run(&["config"]).expect_code(0);
    let missing = sb.dir.join("missing.pem");
    std::fs::write(
        &path,
        format!(
            "{base}\n[server]\ntls_cert = \"{0}\"\ntls_key = \"{0}\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let config = sb.run(&["config"]).expect_code(2);
    let serve = sb.run(&["serve", "--listen", "127.0.0.1:0"]).expect_code(2);
    assert!(
        !config.stderr().is_empty() && config.stderr() == serve.stderr(),
        "{}\n{}",
        config.stderr(),
        serve.stderr()
    );
    for (bad, word) in [
        (
            "[server]\nself_signed = true\n[[alerts.channel]]\nname = \"x\"\nkind = \"pager\"\n",
            "kind \"pager\"",
        ),
        (
            "[server]\nself_signed = true\n[[alerts.channel]]\nname = \"x\"\nkind = \"webhook\"\n",
            "needs url",
        ),
        (
            "[server]\nself_signed = true\n[egress]\nallowed_hosts = [\"Api.Ebay.com/x\"]\n",
            "egress.allowed_hosts",
        ),
    ] {
        std::fs::write(&path, format!("{base}\n{bad}")).unwrap();
        let out = sb.run(&["config"]).expect_code(2);
        assert!(out.stderr().contains(word), "{bad}: {}", out.stderr());
    }
}

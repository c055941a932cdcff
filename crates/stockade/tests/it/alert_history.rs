//! Regression: alerts were invisible without a DingTalk or Feishu channel. With no channel
//! configured every alert is in `stockade alert list` and on `/alerts`, dated by when
//! it happened (UTC, ISO-8601), before and after the server routes it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::server::{Auth, Server, init};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_without_channels_are_listed_with_their_time() {
    let sb = init("dev", "");
    let before = stockade_core::time::now_ms();
    sb.run(&["ban", "add", "203.0.113.77", "--duration", "1h"])
        .expect_code(0);
    let after = stockade_core::time::now_ms();
    // Listed at once (no server, no router, no channel).
    let list = sb.run(&["alert", "list"]).expect_code(0).stdout();
    let header = list.lines().next().unwrap();
    assert!(header.starts_with("time (UTC)"), "{list}");
    let row = list
        .lines()
        .find(|l| l.contains("banned"))
        .unwrap_or_else(|| panic!("the ban alert is not listed:\n{list}"));
    let time = row.split_whitespace().next().unwrap();
    // ISO-8601 UTC with milliseconds, within the command's run: the event's time.
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.contains('T'),
        "{row}"
    );
    let (lo, hi) = (
        stockade_core::time::format_rfc3339_ms(before),
        stockade_core::time::format_rfc3339_ms(after),
    );
    assert!(
        lo.as_str() <= time && time <= hi.as_str(),
        "{lo} {time} {hi}"
    );
    assert!(row.contains("not routed yet"), "{row}");

    // A running server routes it; with no channel it stays on the dashboard, with the
    // same time (the event's, not the routing's).
    let server = Server::start(&sb);
    let deadline = Instant::now() + Duration::from_secs(15);
    let list = loop {
        let list = sb.run(&["alert", "list"]).expect_code(0).stdout();
        if list.contains("dashboard only") {
            break list;
        }
        assert!(Instant::now() < deadline, "never routed:\n{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let row = list.lines().find(|l| l.contains("banned")).unwrap();
    assert!(row.starts_with(time), "{row}");
    let key = sb
        .run(&["apikey", "create", "--name", "dash", "--role", "viewer"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let (status, body) = server
        .get_with("/api/v1/alerts", &Auth::Key(key.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alerts = body["alerts"].as_array().unwrap();
    let ban = alerts
        .iter()
        .find(|a| a["kind"] == "ban")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(ban["at"], time, "{body}");
    assert_eq!(ban["delivery"], "dashboard only", "{body}");
    let res = server
        .client
        .get(server.url("/alerts"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    // The console page: the time in the console's zone (UTC kept in `datetime`).
    assert!(
        html.contains(&format!("<time datetime=\"{time}\">"))
            && html.contains(" CST</time>")
            && html.contains("kept on this page only"),
        "{html}"
    );
    drop(server);
}

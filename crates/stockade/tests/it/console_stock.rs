//! Stock in the console and over the API, against a real
//! `stockade serve`, on SQLite and (when STOCKADE_TEST_PG_URL is set) PostgreSQL: the
//! inventory in both languages with each channel's target, pushed and confirmed
//! quantities and the unmatched order lines highlighted; the CSV export of the current
//! filter; `/api/v1/stock` with its cursor, filters and refusals; an adjustment over the
//! API (ledger and audit row; a viewer refused; refusals write nothing) and refused in
//! the form inline in the user's language; `Server-Timing` on every answer.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{CONSOLE_CONFIG, assert_translated, get, on_hand};
use crate::harness::{Sandbox, drop_schema, pg_schema_url, require_tool};
use crate::server::{Auth, Server, add_user, enroll, init};

const CATALOG: &str =
    "sku,on_hand,tiktok:listing\nMUG-RED-350ML,12,1729:3301\nTEE-BLK-XL,2,1729:3302\nCAP-GRN,30,\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_stock_api_on_sqlite() {
    if !require_tool("oathtool", "oathtool", "the console stock test") {
        return;
    }
    let sb = init("dev", CONSOLE_CONFIG);
    let url = stockade_store::DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    stock_pages(sb, url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_stock_api_on_postgres() {
    if !require_tool("oathtool", "oathtool", "the console stock test") {
        return;
    }
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let path = sb.data().join("stockade.toml");
    let text = std::fs::read_to_string(&path).unwrap() + "\n" + CONSOLE_CONFIG;
    std::fs::write(&path, text).unwrap();
    stock_pages(sb, stockade_store::DatabaseUrl::parse(&url).unwrap()).await;
    drop_schema(&schema).await;
}

/// An order for MUG-RED-350ML and for MUG-BLUE (in no catalogue row), stored the way the
/// engine stores it.
async fn unmatched_order(url: &stockade_store::DatabaseUrl) {
    use stockade_core::order::{Buyer, Marketplace, Order, OrderLine, OrderStatus};
    let store =
        stockade_store::Store::open(url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    let conn = stockade_sync::connections::get(&store, "tiktok")
        .await
        .unwrap();
    let line = |id: &str, sku: &str| OrderLine {
        line_id: id.into(),
        sku: sku.into(),
        quantity: 2,
        listing_id: None,
    };
    let order = Order {
        marketplace: Marketplace::TikTok,
        external_id: "576000000000000042".into(),
        status: OrderStatus::Placed,
        marketplace_status: "AWAITING_SHIPMENT".into(),
        created_at_ms: 1,
        updated_at_ms: 2,
        lines: vec![line("l1", "MUG-RED-350ML"), line("l2", "MUG-BLUE")],
        buyer: Buyer::default(),
    };
    let change = stockade_sync::ingest::order_change(
        conn.id,
        "tiktok",
        &order,
        [None, None, None, None],
        stockade_sync::ingest::Source::Poll,
        3,
    );
    store
        .commit(&stockade_core::Actor::System("test"), vec![change])
        .await
        .unwrap();
    store.close().await;
}

async fn api(server: &Server, auth: &Auth, path: &str) -> (StatusCode, Value) {
    let res = auth
        .apply(server.client.get(server.url(path)))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn adjust(
    server: &Server,
    auth: &Auth,
    sku: &str,
    body: Value,
    lang: &str,
) -> (StatusCode, Value) {
    let res = auth
        .apply(
            server
                .client
                .post(server.url(&format!("/api/v1/stock/{sku}/adjust"))),
        )
        .header("accept-language", lang)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The form post in a language: the status and the page.
async fn form(server: &Server, auth: &Auth, body: &str, lang: &str) -> (StatusCode, String) {
    form_at(server, auth, "/inventory/adjust", body, lang).await
}

async fn form_at(
    server: &Server,
    auth: &Auth,
    path: &str,
    body: &str,
    lang: &str,
) -> (StatusCode, String) {
    let Auth::Cookie { csrf, .. } = auth else {
        panic!("a session")
    };
    let res = auth
        .apply(server.client.post(server.url(path)))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-language", lang)
        .body(format!("csrf={csrf}&{body}"))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn stock_pages(sb: Sandbox, url: stockade_store::DatabaseUrl) {
    crate::sync::add_unreachable_tiktok(&sb, "s");
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, CATALOG).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    unmatched_order(&url).await;
    for (email, role) in [
        ("op@shop.example", "operator"),
        ("view@shop.example", "viewer"),
        ("admin@shop.example", "admin"),
    ] {
        add_user(&sb, email, role);
    }
    let server = Server::start(&sb);
    let (_, op, _, _) = enroll(&server, "op@shop.example").await;
    let (_, viewer, _, _) = enroll(&server, "view@shop.example").await;
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;

    // The inventory in both languages: channels, unmatched lines, the export link.
    let (s, zh) = get(&server, &viewer, "/inventory", "zh-CN").await;
    assert_eq!(s, StatusCode::OK);
    let (_, en) = get(&server, &viewer, "/inventory", "en").await;
    assert_translated("/inventory", &zh, &en);
    assert!(
        en.contains("Unmatched order lines") && en.contains("MUG-BLUE"),
        "{en}"
    );
    assert!(
        zh.contains("未匹配的订单行") && zh.contains("MUG-BLUE"),
        "{zh}"
    );
    assert!(
        en.contains("href=\"/inventory.csv?q=&#38;filter=all\""),
        "{en}"
    );
    assert!(en.contains("class=\"conn\">tiktok</span>"), "{en}");

    // The CSV of the current filter: TEE-BLK-XL (2 available) is low, the others are not.
    let (s, low) = get(&server, &viewer, "/inventory.csv?filter=low", "en").await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<&str> = low.lines().collect();
    assert!(
        lines[0].starts_with("sku,on_hand,reserved,available,"),
        "{low}"
    );
    assert_eq!(lines.len(), 2, "{low}");
    assert!(lines[1].starts_with("TEE-BLK-XL,2,0,2,5,tiktok,"), "{low}");
    let (_, cap) = get(&server, &viewer, "/api/v1/stock.csv?q=cap", "en").await;
    assert_eq!(cap.lines().nth(1), Some("CAP-GRN,30,0,30,5,,,,,"), "{cap}");

    // The list, by SKU, one at a time through the cursor.
    let (s, p1) = api(&server, &viewer, "/api/v1/stock?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{p1}");
    let skus = |p: &Value| -> Vec<String> {
        p["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(skus(&p1), ["CAP-GRN", "MUG-RED-350ML"]);
    // MUG-RED-350ML: 2 reserved by the order's matched line.
    assert_eq!(p1["rows"][1]["reserved"], 2, "{p1}");
    assert_eq!(p1["rows"][1]["channels"][0]["connection"], "tiktok", "{p1}");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = api(
        &server,
        &viewer,
        &format!("/api/v1/stock?limit=2&cursor={cursor}"),
    )
    .await;
    assert_eq!(skus(&p2), ["TEE-BLK-XL"]);
    assert!(p2["next_cursor"].is_null());
    let (_, lowj) = api(&server, &viewer, "/api/v1/stock?filter=low").await;
    assert_eq!(skus(&lowj), ["TEE-BLK-XL"]);
    let (_, found) = api(&server, &viewer, "/api/v1/stock?q=mug").await;
    assert_eq!(skus(&found), ["MUG-RED-350ML"]);
    for (bad, code) in [
        ("/api/v1/stock?cursor=bm9wZQ", "invalid_cursor"),
        ("/api/v1/stock?filter=bogus", "invalid_request"),
        ("/api/v1/stock?surprise=1", "invalid_request"),
    ] {
        let (s, e) = api(&server, &viewer, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(e["error"]["code"], code, "{bad}: {e}");
    }
    let (s, one) = api(&server, &viewer, "/api/v1/stock/TEE-BLK-XL").await;
    assert_eq!(
        (s, one["on_hand"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{one}"
    );
    assert_eq!(one["low"], true);
    let (s, _) = api(&server, &viewer, "/api/v1/stock/NO-SUCH").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Adjust over the API: a viewer is refused; refusals write nothing; then it moves.
    let good = json!({"delta": 5, "reason": "found a box"});
    let (s, _) = adjust(&server, &viewer, "MUG-RED-350ML", good.clone(), "en").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (body, status) in [
        (
            json!({"delta": 0, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"delta": -100, "reason": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"delta": 3, "reason": " "}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"delta": "3", "reason": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, e) = adjust(&server, &op, "MUG-RED-350ML", body.clone(), "en").await;
        assert_eq!(s, status, "{body}: {e}");
    }
    let (s, e) = adjust(&server, &op, "NO-SUCH", good.clone(), "zh-CN").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("商品目录中没有这个 SKU"),
        "{e}"
    );
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "12");
    let (s, after) = adjust(&server, &op, "MUG-RED-350ML", good, "en").await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["on_hand"], 17, "{after}");
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "17");
    let (_, audit) = api(&server, &admin, "/api/v1/audit?action=stock.adjust").await;
    let rows = audit["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{audit}");
    assert_eq!(rows[0]["resource"], "sku:MUG-RED-350ML");
    assert!(
        rows[0]["actor"].as_str().unwrap().starts_with("user:"),
        "{audit}"
    );

    // The form's refusal: the inventory again, the reason inline, in the user's language.
    let (s, page) = form(&server, &op, "sku=MUG-RED-350ML&delta=3&reason=", "zh-CN").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("role=\"alert\"") && page.contains("库存调整必须填写原因"),
        "{page}"
    );
    assert!(
        page.contains("id=\"skus\""),
        "the inventory is shown with it: {page}"
    );
    let (_, page) = form(
        &server,
        &op,
        "sku=MUG-RED-350ML&delta=-999&reason=oops",
        "en",
    )
    .await;
    assert!(page.contains("fewer than zero units"), "{page}");
    assert_eq!(on_hand(&sb, "MUG-RED-350ML"), "17");

    // Import, in the form and over the API (`stockade sku import`'s checks): a refused
    // file names its line and writes nothing; a viewer has no form and is refused.
    assert!(!en.contains("/inventory/import") && !en.contains("/inventory/discover"));
    let (_, opage) = get(&server, &op, "/inventory", "en").await;
    assert!(
        opage.contains("action=\"/inventory/import\"")
            && opage.contains("<option value=\"tiktok\">")
    );
    let bad = "csv=sku%2Con_hand%0ANEW-1%2C4%0ANEW-2%2Cmany%0A";
    let (s, page) = form_at(&server, &op, "/inventory/import", bad, "en").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains("The import was refused") && page.contains("line 3"),
        "{page}"
    );
    let (s, _) = api(&server, &viewer, "/api/v1/stock/NEW-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refused file wrote nothing");
    let (s, page) = form_at(
        &server,
        &viewer,
        "/inventory/import",
        "csv=sku%2Con_hand%0ANEW-1%2C4%0A",
        "en",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    let (s, page) = form_at(
        &server,
        &op,
        "/inventory/import",
        "csv=sku%2Con_hand%0ANEW-1%2C4%0A",
        "zh-CN",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("SKU 数： 1"), "{page}");
    let zh = page;
    let (_, en) = form_at(
        &server,
        &op,
        "/inventory/import",
        "csv=sku%2Con_hand%0ANEW-1%2C4%0A",
        "en",
    )
    .await;
    assert_translated("/inventory/import", &zh, &en);
    assert!(en.contains("SKUs: 1"), "{en}");
    let (_, opage_zh) = get(&server, &op, "/inventory", "zh-CN").await;
    assert_translated("/inventory (operator)", &opage_zh, &opage);
    let res = op
        .apply(server.client.post(server.url("/api/v1/stock/import")))
        .header("content-type", "text/csv")
        .body("sku,on_hand\nNEW-2,9\nMUG-BLUE,3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let r: Value = res.json().await.unwrap();
    // MUG-BLUE's waiting order line is matched (and reserved: the order is open).
    assert_eq!(
        (r["skus"].as_i64(), r["matched_lines"].as_i64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let (_, blue) = api(&server, &viewer, "/api/v1/stock/MUG-BLUE").await;
    assert_eq!(blue["reserved"], 2, "{blue}");
    let (_, inv) = get(&server, &viewer, "/inventory", "en").await;
    assert!(!inv.contains("Unmatched order lines"), "matched now: {inv}");
    // Discovery needs the running engine: this server has none, and says so.
    let (s, page) = form_at(
        &server,
        &op,
        "/inventory/discover",
        "connection=tiktok&dry_run=1",
        "en",
    )
    .await;
    assert!(
        s == StatusCode::UNPROCESSABLE_ENTITY || s.is_server_error() || s == StatusCode::OK,
        "{s}: {page}"
    );

    // Every answer says its server time; the document lists the stock routes.
    let res = admin
        .apply(server.client.get(server.url("/overview")))
        .send()
        .await
        .unwrap();
    let timing = res.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(timing.starts_with("app;dur="), "{timing}");
    let (_, doc) = api(&server, &Auth::None, "/api/v1/openapi.json").await;
    for p in [
        "/api/v1/stock",
        "/api/v1/stock/{sku}",
        "/api/v1/stock/{sku}/adjust",
        "/api/v1/stock.csv",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} not documented");
    }
}

//! A minimal W3C WebDriver client for the browser tests: headless Chromium driven through
//! `chromedriver` over plain JSON on loopback, with the `reqwest` the tests already use.
//! A dozen endpoints cover what the tests do (navigate, find, type, click, read, take a
//! screenshot); a WebDriver crate would add its own HTTP stack and macros to compile.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The first of `names` found on PATH (or the path in `env`, when set).
pub fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver for the browser test `test` (its description, used in the
/// message), or `None` after reporting the test as skipped — which CI forbids.
pub fn browser_binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    let found = (
        find_binary(
            "STOCKADE_TEST_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
        find_binary("STOCKADE_TEST_CHROMEDRIVER", &["chromedriver"]),
    );
    let (Some(chromium), Some(chromedriver)) = found else {
        let why = format!(
            "{test}: Chromium or chromedriver is not installed (Debian packages `chromium` and `chromium-driver`; ./scripts/test installs them)"
        );
        assert!(
            !crate::harness::require_all(),
            "CI / STOCKADE_REQUIRE_ALL forbid skipping {why}"
        );
        crate::harness::skipped(&why);
        return None;
    };
    Some((chromium, chromedriver))
}

/// A free loopback port (the listener is dropped just before chromedriver binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium session. Dropping it ends the session (closing the browser) and
/// stops chromedriver.
pub struct Browser {
    driver: Child,
    port: u16,
    http: reqwest::Client,
    session: String,
    _profile: PathBuf,
}

impl Browser {
    /// Start chromedriver and a fresh headless Chromium that accepts the development
    /// certificate (`acceptInsecureCerts`, the WebDriver way to say
    /// `--ignore-certificate-errors`).
    pub async fn start(chromium: &Path, chromedriver: &Path, profile: PathBuf) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(res) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = res.json::<Value>().await
                && v["value"]["ready"] == true
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not become ready on port {port}");
        std::fs::create_dir_all(&profile).unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1000,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver did not start Chromium: {res}"))
            .to_owned();
        Browser {
            driver,
            port,
            http,
            session,
            _profile: profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        )
    }

    async fn call_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        let res = rb.send().await.unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        (status, v["value"].clone())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call_raw(method, path, body).await;
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    pub async fn count(&self, css: &str) -> usize {
        self.post("/elements", json!({"using": "css selector", "value": css}))
            .await
            .as_array()
            .map_or(0, Vec::len)
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Click something that loads a new page, and wait until the new page has loaded (the
    /// old page's root element goes stale, then the document is complete).
    pub async fn click(&self, css: &str) {
        let old_root = self.find("html").await;
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
        for _ in 0..300 {
            let (status, _) = self
                .call_raw(
                    reqwest::Method::GET,
                    &format!("/element/{old_root}/name"),
                    None,
                )
                .await;
            if !status.is_success() {
                let state = self
                    .post(
                        "/execute/sync",
                        json!({"script": "return document.readyState", "args": []}),
                    )
                    .await;
                if state == "complete" {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} did not load a new page");
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.get(&format!("/element/{id}/text"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn inner_html(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.get(&format!("/element/{id}/property/innerHTML"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Run an asynchronous script in the page (its last argument is the callback) and
    /// return what it passed to the callback.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Resize the window (the screenshots' laptop and phone widths).
    pub async fn set_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Save a PNG of the page (the tests look at these when a page changes).
    pub async fn screenshot(&self, file: &Path) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(file, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Synchronously end the session so Chromium exits with it, even after a panic.
        use std::io::{Read, Write};
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

//! A real headless Chromium for end-to-end tests of the dashboard, driven through
//! chromedriver's W3C WebDriver API on a free loopback port. The driver and the browser run in
//! their own process group, ended when the [`Browser`] drops, pass or fail.

use crate::common::{eventually, free_port, kill_group};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// Where the tests save their screenshots.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The base64 SHA-256 of the public key of the cluster's CA, which Chromium is told to trust
/// (and nothing else) with `--ignore-certificate-errors-spki-list`.
fn spki_hash(ca: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        ca.display()
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Browser {
    /// Starts chromedriver and a Chromium session that trusts the cluster's CA `ca`.
    pub fn start(ca: &Path, width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: the dashboard tests drive Debian's chromium and chromium-driver \
                 (scripts/test.sh installs them; or apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port();
        let profile = tempfile::Builder::new().prefix("th-chromium-").tempdir().unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut browser = Browser { driver, base: format!("http://127.0.0.1:{port}"), agent, _profile: profile };
        eventually(30, "chromedriver to answer", || {
            browser.agent.get(format!("{}/status", browser.base)).call().ok().filter(|r| r.status() == 200)
        });
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--enable-precise-memory-info".into(),
            "--js-flags=--expose-gc".into(),
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--ignore-certificate-errors-spki-list={}", spki_hash(ca)),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let session = browser.raw("POST", "/session", Some(caps));
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {session}"));
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let answer = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self.agent.post(&url).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = answer.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let value: Value = response.body_mut().with_config().limit(64 << 20).read_json().unwrap();
        let value = value["value"].clone();
        if let Some(error) = value.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    pub fn goto(&self, url: &str) {
        self.raw("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `body` (a function body; `arguments[i]` are `args`) in the page and returns its value.
    pub fn js(&self, body: &str, args: Value) -> Value {
        self.raw("POST", "/execute/sync", Some(json!({"script": body, "args": args})))
    }

    /// Sends the DevTools command `cmd` to the page (chromedriver's `goog/cdp/execute`) and
    /// returns its answer; no script of the test runs in the page.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.raw("POST", "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params})))
    }

    /// The bytes of the page's JS heap in use after DevTools' full garbage collection.
    ///
    /// Not `window.gc()` and `performance.memory` from a WebDriver script: that collection
    /// leaves the code chromedriver compiles for its own scripts (find, click: its call wrapper
    /// and atoms), about 300 KiB per page change, which only this memory-reducing one frees.
    pub fn js_heap(&self) -> u64 {
        self.cdp("HeapProfiler.collectGarbage", json!({}));
        self.cdp("Runtime.getHeapUsage", json!({}))["usedSize"].as_f64().unwrap() as u64
    }

    /// Waits until `body` returns something truthy, and returns it.
    pub fn wait(&self, secs: u64, what: &str, body: &str, args: Value) -> Value {
        let mut last = Value::Null;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(secs, what, || {
                last = self.js(body, args.clone());
                let truthy = !matches!(&last, Value::Null | Value::Bool(false))
                    && last != json!("")
                    && last != json!(0)
                    && last != json!([]);
                truthy.then(|| last.clone())
            })
        }));
        match found {
            Ok(v) => v,
            Err(_) => {
                self.screenshot(&format!("timeout-{}", what.replace(|c: char| !c.is_alphanumeric(), "-")));
                panic!("timed out after {secs} s waiting for {what}; the page shows:\n{}", self.page_text());
            }
        }
    }

    /// Waits for an element matching `css` and returns its WebDriver id.
    pub fn find(&self, css: &str) -> String {
        self.wait(
            20,
            &format!("an element {css}"),
            "return document.querySelector(arguments[0]) !== null;",
            json!([css]),
        );
        let found = self.raw("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    /// Clicks the element `css` as a user would (scrolled into view, through the pointer).
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.raw("POST", &format!("/element/{id}/click"), None);
    }

    /// Clears the field `css` and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.raw("POST", &format!("/element/{id}/clear"), None);
        self.raw("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    /// Chooses the option `value` of the select `css`.
    pub fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"));
    }

    pub fn text(&self, css: &str) -> String {
        self.find(css);
        self.js("return document.querySelector(arguments[0]).innerText;", json!([css])).as_str().unwrap_or("").into()
    }

    pub fn page_text(&self) -> String {
        self.js("return document.body ? document.body.innerText : '';", json!([])).as_str().unwrap_or("").into()
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.raw("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Saves a PNG of the window as `NAME.png` among the test screenshots; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.raw("GET", "/screenshot", None);
        let bytes = decode_base64(png.as_str().unwrap());
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, which closes Chromium; the group kill covers a driver that hangs.
        let _ = self.agent.delete(&self.base).call();
        kill_group(self.driver.id());
        let _ = self.driver.wait();
    }
}

/// Decodes base64 with coreutils' `base64 -d`.
fn decode_base64(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    // Written from a thread: a screenshot outgrows the pipe while `base64` fills the other one.
    let mut stdin = child.stdin.take().unwrap();
    let text = text.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "base64 -d failed");
    out.stdout
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}

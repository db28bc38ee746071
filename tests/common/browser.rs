//! A real browser for the web view's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` over WebDriver with fantoccini; and `sweep serve` started on a free port.

use super::{Db, Workspace, stderr};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A chromedriver process and a WebDriver session on it; both end when this is dropped.
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver: {e}; the web view's tests need a real browser: run \
                     `apt-get install -y chromium chromium-driver` (the README's test command does)"
                )
            });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = fantoccini::ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Browser { client, driver }
    }

    /// Evaluates `script` (a function body that returns a value) in the page.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Waits until `script` returns something truthy, and returns it; fails after `seconds`
    /// with `what` and the page's text.
    pub async fn wait_for(&self, what: &str, seconds: u64, script: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let value = self.eval(script).await;
            let truthy = match &value {
                serde_json::Value::Null | serde_json::Value::Bool(false) => false,
                serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
                serde_json::Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body.innerText").await;
                panic!("waited {seconds} s for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Opens `url` and waits for the page's script to have drawn something.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.wait_for(
            "the page to draw",
            20,
            "return !document.querySelector('#main p.muted') || \
             document.querySelector('#main').innerText !== 'Loading…'",
        )
        .await;
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// A `sweep serve` process and the URL it printed; killed when dropped.
pub struct Server {
    pub child: Child,
    /// The URL it printed (with `?token=` when it has one).
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// `sweep serve --db DB --bind 127.0.0.1:0` plus `extra`, once it listens.
    pub fn start(ws: &Workspace, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sweep"))
            .current_dir(ws.dir.path())
            .args(["serve", "--db", &ws.db_arg(), "--bind", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SWEEP_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("sweep serve printed no URL: {err}");
        }
        let url = line.trim().to_string();
        let base = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .map(|host| format!("http://{host}"))
            .unwrap();
        Server { child, url, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET of `path` with `headers`: (status, body).
pub fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// A finished two-trial sweep named `small` on `db`, for the web view to show.
pub fn finished(db: Db) -> Workspace {
    let ws = Workspace::on(db);
    let experiment = ws.experiment(
        "small.toml",
        "[sweep]\nname = \"small\"\n[data]\nsplit = 0.8\n[grid]\narch = \"mlp\"\n\
         lr = [0.001, 0.01]\nbatch_size = 32\nepochs = 2\n",
    );
    let out = ws.run(&experiment, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    ws
}

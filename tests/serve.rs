//! `sweep serve` in a real browser (headless Chromium over WebDriver) on SQLite and
//! PostgreSQL: a live sweep's page fills in without a reload, a trial's confusion matrix, the
//! filter and its caret message, compare; then the token, the read-only connection, escaping
//! of what the database holds, and the answers to bad requests.

mod common;

use common::browser::{Browser, Server, finished, get};
use common::{Db, Workspace, stderr, write_dataset};
use std::process::{Command, Stdio};
use sweep::store::Store;

/// Three MLP trials, one at a time, each long enough (40 epochs on 1,500 images) that an open
/// page sees the running one's curve grow.
const LIVE: &str = "[sweep]\nname = \"live\"\njobs = 1\n[data]\nsplit = 0.8\n[grid]\n\
arch = \"mlp\"\noptimizer = \"adam\"\nlr = [0.001, 0.002, 0.004]\nbatch_size = 32\nepochs = 40\n";

fn live_run(ws: &Workspace) -> std::process::Child {
    let data = ws.path("bigger");
    write_dataset(&data, 1500, 100);
    let experiment = ws.experiment("live.toml", LIVE);
    Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(ws.dir.path())
        .args([
            "run",
            experiment.to_str().unwrap(),
            "--db",
            &ws.db_arg(),
            "--data",
        ])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

const TABLE_ROWS: &str = "return document.querySelectorAll('#trials-table tbody tr').length";
const CURVE_POINTS: &str =
    "const c = document.querySelector('#curves'); return c ? Number(c.dataset.points || 0) : 0";

async fn live_sweep_in_the_browser(server: &Server, run: &mut std::process::Child) {
    let browser = Browser::start().await;

    // The sweep page: trials listed, the running trial's curve growing with no reload.
    browser.open(&format!("{}/sweeps/live", server.base)).await;
    browser.wait_for("the trials table", 20, TABLE_ROWS).await;
    let first = browser
        .wait_for("a curve point", 20, CURVE_POINTS)
        .await
        .as_f64()
        .unwrap();
    browser.eval("window.__same_page = true; return 1").await;
    browser
        .wait_for(
            "the running trial's curve to gain points",
            60,
            &format!(
                "const c = document.querySelector('#curves'); \
                 return c && Number(c.dataset.points || 0) > {first}"
            ),
        )
        .await;
    // Trials finishing show up in the summary, still without a reload.
    browser
        .wait_for(
            "a done count in the summary",
            90,
            "return document.querySelector('[data-card=done]')",
        )
        .await;
    assert_eq!(
        browser.eval("return window.__same_page === true").await,
        serde_json::json!(true),
        "the page reloaded"
    );
    let status = run.wait().unwrap();
    assert!(status.success(), "the sweep failed");

    // The filter narrows the table; a malformed one shows the caret message in the page.
    browser.open(&format!("{}/sweeps/live", server.base)).await;
    browser
        .wait_for(
            "all three trials",
            20,
            &TABLE_ROWS.replace("return ", "return 3 === "),
        )
        .await;
    let filter = browser
        .client
        .find(fantoccini::Locator::Css("#filter"))
        .await
        .unwrap();
    filter.send_keys("lr > 0.0015\n").await.unwrap();
    browser
        .wait_for(
            "the table to narrow to two",
            20,
            &TABLE_ROWS.replace("return ", "return 2 === "),
        )
        .await;
    assert!(
        browser
            .eval("return location.search")
            .await
            .as_str()
            .unwrap()
            .contains("where="),
        "the filter is in the URL, so the view can be shared"
    );
    filter.clear().await.unwrap();
    filter.send_keys("lr >\n").await.unwrap();
    let message = browser
        .wait_for(
            "the caret message",
            20,
            "const e = document.querySelector('#filter-error'); return e && !e.hidden && e.textContent",
        )
        .await;
    assert!(message.as_str().unwrap().contains('^'), "{message}");

    // A trial: its confusion matrix and class accuracies.
    browser.open(&format!("{}/trials/1", server.base)).await;
    let rows = browser
        .wait_for(
            "the confusion matrix",
            20,
            "return document.querySelectorAll('#confusion tbody tr').length",
        )
        .await;
    assert_eq!(rows, serde_json::json!(10));
    let commands = browser
        .eval(
            "return [...document.querySelectorAll('code.cmd')].map(c => c.textContent).join('\\n')",
        )
        .await;
    assert!(
        commands.as_str().unwrap().contains("sweep predict 1 --db "),
        "{commands}"
    );

    // Compare three trials: the learning rates differ, the architecture does not.
    browser
        .open(&format!("{}/compare?ids=1,2,3", server.base))
        .await;
    let differing = browser
        .wait_for(
            "the compare table",
            20,
            "return [...document.querySelectorAll('#compare tr.differs td:first-child')].map(t => t.textContent).join(',')",
        )
        .await;
    let differing = differing.as_str().unwrap();
    assert!(differing.contains("lr"), "{differing}");
    assert!(!differing.split(',').any(|f| f == "arch"), "{differing}");
    browser.close().await;
}

fn on(db: Db) {
    let ws = Workspace::on(db);
    let mut run = live_run(&ws);
    ws.wait_for_epochs(&mut run, 1);
    let server = Server::start(&ws, &[]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(live_sweep_in_the_browser(&server, &mut run));
}

#[test]
fn a_live_sweep_in_the_browser_on_sqlite() {
    on(Db::Sqlite);
}

#[test]
fn a_live_sweep_in_the_browser_on_postgresql() {
    on(Db::Postgres);
}

fn read_only_connection_refuses_writes(db: Db) {
    let ws = finished(db);
    let store = Store::open_read_only(ws.db()).unwrap();
    assert_eq!(store.list_trials(Some("small")).unwrap().len(), 2);
    let refused = store.finish_sweep(1).unwrap_err().to_string();
    assert!(
        refused.contains("readonly") || refused.contains("read-only"),
        "{refused}"
    );
    drop(store);
    // Nothing changed: the sweep's end time is still the run's.
    let writable = Store::open_existing(ws.db()).unwrap();
    assert_eq!(writable.list_trials(Some("small")).unwrap().len(), 2);
}

#[test]
fn bad_requests_get_400_and_404_never_a_500() {
    let ws = finished(Db::Sqlite);
    let server = Server::start(&ws, &[]);
    let cases = [
        ("/api/sweeps/small/trials?where=lr%20%3E", 400, "^"),
        (
            "/api/sweeps/small/trials?where=nonsense%20%3D%201",
            400,
            "unknown field",
        ),
        ("/api/sweeps/small/trials?page=0", 400, "page=0"),
        ("/api/sweeps/small/trials?page=abc", 400, "page=abc"),
        ("/api/sweeps/small/trials?per_page=100000", 400, "per_page"),
        ("/api/sweeps/small/trials?sort=nope", 400, "unknown field"),
        ("/api/trials/abc", 400, "not a trial id"),
        ("/api/trials/-1", 400, "not a trial id"),
        ("/api/trials/999", 404, "no trial 999"),
        ("/api/compare?ids=1", 400, "2 to 10"),
        ("/api/compare?ids=1,x", 400, "not a trial id"),
        ("/api/sweeps/nosuch", 404, "nosuch"),
        ("/api/sweeps/nosuch/trials", 404, "nosuch"),
        ("/api/nothing", 404, "no such API route"),
        ("/etc/passwd", 404, "no such page"),
        ("/assets/../../Cargo.toml", 404, ""),
        ("/assets/Cargo.toml", 404, "no such asset"),
    ];
    for (path, want, says) in cases {
        let (status, body) = get(&server.base, path, &[]);
        assert_eq!(status, want, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
    // The good ones answer with the field names of `sweep ls --format json`.
    let (status, body) = get(&server.base, "/api/sweeps/small/trials?sort=-val_acc", &[]);
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed = &ws.ls_json()[0];
    for key in listed.as_object().unwrap().keys() {
        assert!(
            page["trials"][0].get(key).is_some(),
            "missing {key}: {body}"
        );
    }
    assert_eq!(page["total"], 2);
}

#[test]
fn a_token_guards_every_request_and_other_addresses_need_one() {
    let ws = finished(Db::Sqlite);
    let out = ws.sweep(&["serve", "--db", &ws.db_arg(), "--bind", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));

    let server = Server::start(&ws, &["--token", "s3cret-token"]);
    assert!(
        server.url.ends_with("/?token=s3cret-token"),
        "{}",
        server.url
    );
    for path in ["/", "/api/sweeps", "/assets/app.js", "/api/trials/1"] {
        let (status, _) = get(&server.base, path, &[]);
        assert_eq!(status, 401, "{path} without the token");
        let (status, _) = get(&server.base, path, &[("Authorization", "Bearer wrong")]);
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, _) = get(
            &server.base,
            path,
            &[("Authorization", "Bearer s3cret-token")],
        );
        assert_eq!(status, 200, "{path} with the token");
        let (status, _) = get(
            &server.base,
            path,
            &[("Cookie", "sweep_token=s3cret-token")],
        );
        assert_eq!(status, 200, "{path} with the cookie");
    }
    // In the browser: the printed URL sets the cookie, and the page's own requests carry it.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start().await;
        browser.open(&server.url).await;
        browser
            .wait_for(
                "the sweeps table",
                20,
                "return document.querySelector('#sweeps [data-sweep=small]')",
            )
            .await;
        browser.open(&format!("{}/trials/2", server.base)).await;
        browser
            .wait_for(
                "the trial page",
                20,
                "return document.querySelector('#params')",
            )
            .await;
        browser.close().await;
    });
}

/// Sets a sweep's name and a trial's error to hostile text, behind the binary's back.
fn plant(ws: &Workspace, db: Db, name: &str, error: &str) {
    let quote = |s: &str| s.replace('\'', "''");
    let sql = format!(
        "UPDATE sweeps SET name = '{}'; UPDATE trials SET error = '{}', status = 'failed' WHERE id = 1;",
        quote(name),
        quote(error)
    );
    match db {
        Db::Postgres => {
            ws.psql(&sql);
        }
        Db::Sqlite => {
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
                    &ws.db_arg(),
                    &sql,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
}

fn database_text_is_shown_as_text(db: Db) {
    let ws = finished(db);
    let name = "<img src=x onerror=\"window.__pwned=1\">'\"&amp;";
    let error = "<script>window.__pwned=2</script><b onmouseover=\"window.__pwned=3\">bold</b>";
    plant(&ws, db, name, error);
    let server = Server::start(&ws, &[]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start().await;
        browser.open(&server.url).await;
        let shown = browser
            .wait_for(
                "the sweep's name",
                20,
                "const a = document.querySelector('#sweeps a'); return a && a.textContent",
            )
            .await;
        assert_eq!(shown, serde_json::json!(name));
        let href = browser
            .eval("return document.querySelector('#sweeps a').getAttribute('href')")
            .await;
        browser
            .open(&format!("{}{}", server.base, href.as_str().unwrap()))
            .await;
        browser
            .wait_for("the sweep page", 20, TABLE_ROWS)
            .await;
        let heading = browser.eval("return document.querySelector('h1').textContent").await;
        assert_eq!(heading, serde_json::json!(name));
        browser.open(&format!("{}/trials/1", server.base)).await;
        let text = browser
            .wait_for(
                "the error text",
                20,
                "const e = document.querySelector('#trial-error'); return e && e.textContent",
            )
            .await;
        assert_eq!(text, serde_json::json!(error));
        assert_eq!(
            browser
                .eval("return document.querySelectorAll('#main script, #main img, #trial-error *, h1 *').length")
                .await,
            serde_json::json!(0)
        );
        assert_eq!(
            browser.eval("return window.__pwned === undefined").await,
            serde_json::json!(true),
            "a script from the database ran"
        );
        browser.close().await;
    });
}

on_both_databases!(
    read_only_connection_refuses_writes,
    database_text_is_shown_as_text
);

#[test]
fn a_database_written_by_no_sweep_is_refused_with_the_fix() {
    let ws = Workspace::new();
    let out = ws.sweep(&["serve", "--db", &ws.db_arg()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sweep run"), "{}", stderr(&out));
}

//! The web view while its PostgreSQL server goes away and comes back: the open page shows the
//! error, then carries on by itself once the server is back, with no `sweep serve` restart. A
//! file of its own, so that stopping this process's test server disturbs no other test.

mod common;

use common::browser::{Browser, Server, finished};
use common::{Db, postgres};

#[test]
fn an_open_page_shows_a_lost_database_and_recovers_when_it_is_back() {
    let ws = finished(Db::Postgres);
    let server = Server::start(&ws, &[]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start().await;
        browser.open(&format!("{}/sweeps/small", server.base)).await;
        browser
            .wait_for(
                "the trials table",
                20,
                "return document.querySelectorAll('#trials-table tbody tr').length",
            )
            .await;
        postgres::cluster().stop();
        let banner = browser
            .wait_for(
                "the error banner",
                30,
                "const s = document.querySelector('#status'); return !s.hidden && s.textContent",
            )
            .await;
        assert!(
            banner.as_str().unwrap().contains("database"),
            "the banner names the database: {banner}"
        );
        postgres::cluster().start();
        browser
            .wait_for(
                "the banner to clear",
                30,
                "return document.querySelector('#status').hidden",
            )
            .await;
        assert_eq!(
            browser
                .eval("return document.querySelectorAll('#trials-table tbody tr').length")
                .await,
            serde_json::json!(2)
        );
        browser.close().await;
    });
}

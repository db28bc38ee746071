//! `sweep serve`: the read-only web view. One page of embedded assets (no CDN: it works on a
//! cluster login node with no internet) and a JSON API under `/api/` behind every view. It
//! reads the store through a read-only connection while `sweep run` and `sweep worker` write,
//! and answers each request from the same computations as `sweep report`.

mod analysis;
mod api;
mod assets;
mod auth;
mod views;

use crate::error::{Error, Result};
use crate::store::{Location, Store};
use std::net::SocketAddr;
use std::sync::Arc;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The results database.
    pub db: Location,
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The token every request must carry; required for an address that is not loopback.
    pub token: Option<String>,
}

/// Serves until interrupted (Ctrl-C or SIGTERM). `ready` is called once with the URL to open
/// (carrying the token, when there is one) as soon as the socket listens.
pub fn serve(options: ServeOptions, ready: impl FnOnce(&str)) -> Result<()> {
    if !options.bind.ip().is_loopback() && options.token.is_none() {
        return Err(Error::Usage(format!(
            "--bind {} is reachable from other machines, so it needs a token: pass --token \
             SECRET (or set SWEEP_TOKEN), or bind 127.0.0.1",
            options.bind
        )));
    }
    if options
        .token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(Error::Usage(
            "--token is empty: pass a secret, such as the output of `openssl rand -hex 16`".into(),
        ));
    }
    let store = Arc::new(Store::open_read_only(&options.db)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io(std::path::Path::new("tokio runtime"), e))?;
    let outcome = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot listen on {}: {e} (is another `sweep serve` using it? pass --bind \
                     with another port)",
                    options.bind
                ))
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io(std::path::Path::new("socket"), e))?;
        let url = match &options.token {
            Some(token) => format!("http://{address}/?token={token}"),
            None => format!("http://{address}/"),
        };
        ready(&url);
        let app = api::router(Arc::clone(&store), options.token.clone());
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| Error::io(std::path::Path::new("socket"), e))
    });
    runtime.shutdown_background();
    outcome
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = interrupt => {}
        _ = async {
            match terminate.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

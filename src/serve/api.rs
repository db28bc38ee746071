//! The routes: the page's URLs, the embedded assets, and the JSON API. Handlers are thin: they
//! parse the request, run a [`views`] function on a blocking thread (the store's calls block)
//! and turn its error into a status: 400 for bad input, 404 for what does not exist, 503 while
//! the database cannot be reached. Never a panic, never a 500 for a bad request.

use super::analysis::{self, Cache};
use super::views::{self, PageParams};
use super::{assets, auth};
use crate::error::Error;
use crate::store::Store;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
struct App {
    store: Arc<Store>,
    cache: Arc<Cache>,
}

/// An API error: its status and a message for the page.
struct ApiError(StatusCode, String);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Usage(_) | Error::Spec(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unreachable { .. } | Error::Store { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<axum::Json<serde_json::Value>, ApiError>;

/// Runs a view on a blocking thread.
async fn answer(
    app: &App,
    view: impl FnOnce(&Arc<Store>, &Arc<Cache>) -> crate::error::Result<serde_json::Value>
    + Send
    + 'static,
) -> Answer {
    let (store, cache) = (Arc::clone(&app.store), Arc::clone(&app.cache));
    match tokio::task::spawn_blocking(move || view(&store, &cache)).await {
        Ok(result) => Ok(axum::Json(result?)),
        Err(e) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's worker stopped: {e}"),
        )),
    }
}

/// The application: pages, assets and API, behind the token check when there is a token.
/// Starts computing every sweep's analysis in the background.
pub fn router(store: Arc<Store>, token: Option<String>) -> Router {
    let app = App {
        store,
        cache: Arc::new(Cache::default()),
    };
    analysis::warm(Arc::clone(&app.store), Arc::clone(&app.cache));
    let api = Router::new()
        .route("/api/sweeps", get(sweeps))
        .route("/api/sweeps/{name}", get(sweep))
        .route("/api/sweeps/{name}/version", get(version))
        .route("/api/sweeps/{name}/trials", get(trials))
        .route("/api/sweeps/{name}/analysis", get(sweep_analysis))
        .route("/api/sweeps/{name}/curves", get(curves))
        .route("/api/trials/{id}", get(trial))
        .route("/api/compare", get(compare))
        .route("/api/{*rest}", get(unknown_api))
        .with_state(app);
    Router::new()
        .route("/", get(assets::index))
        .route("/sweeps/{name}", get(assets::index))
        .route("/trials/{id}", get(assets::index))
        .route("/compare", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_token,
        ))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404: no such page\n").into_response()
}

async fn unknown_api() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such API route; see docs/web-view.md".into(),
    )
}

async fn sweeps(State(app): State<App>) -> Answer {
    answer(&app, |store, _| views::sweeps(store)).await
}

async fn sweep(State(app): State<App>, Path(name): Path<String>) -> Answer {
    answer(&app, move |store, _| views::sweep(store, &name)).await
}

async fn version(State(app): State<App>, Path(name): Path<String>) -> Answer {
    answer(&app, move |store, _| views::version(store, &name)).await
}

async fn trials(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    answer(&app, move |store, _| {
        let params = PageParams::parse(&query)?;
        views::trials(store, &name, &params)
    })
    .await
}

async fn sweep_analysis(State(app): State<App>, Path(name): Path<String>) -> Answer {
    answer(&app, move |store, cache| {
        analysis::analysis(store, cache, &name)
    })
    .await
}

async fn curves(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    answer(&app, move |store, _| {
        let top = views::number_param(&query, "top", 5, 1, 50)?;
        views::curves(store, &name, top, query.get("since").map(String::as_str))
    })
    .await
}

async fn trial(State(app): State<App>, Path(id): Path<String>) -> Answer {
    answer(&app, move |store, _| views::trial(store, &id)).await
}

async fn compare(State(app): State<App>, Query(query): Query<HashMap<String, String>>) -> Answer {
    answer(&app, move |store, _| {
        views::compare(store, query.get("ids").map_or("", String::as_str))
    })
    .await
}

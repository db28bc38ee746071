//! The token check: with `--token`, every request carries it as `Authorization: Bearer`, as the
//! `sweep_token` cookie, or once as `?token=` in the URL the CLI printed (answered with the
//! cookie, so the page's own requests carry it from then on).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

const COOKIE: &str = "sweep_token";

/// Equal without an early exit, so the time taken does not tell how much of a guess matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn presented(headers: &HeaderMap) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        found.push(bearer.trim().to_string());
    }
    for cookies in headers.get_all(header::COOKIE) {
        if let Ok(cookies) = cookies.to_str() {
            for pair in cookies.split(';') {
                if let Some((name, value)) = pair.trim().split_once('=')
                    && name == COOKIE
                {
                    found.push(value.to_string());
                }
            }
        }
    }
    found
}

fn from_query(request: &Request) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "token").then(|| value.to_string())
    })
}

/// Lets a request through when no token is set or it carries the token; 401 otherwise.
pub async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_deref() else {
        return next.run(request).await;
    };
    if presented(request.headers()).iter().any(|t| same(t, token)) {
        return next.run(request).await;
    }
    if from_query(&request).is_some_and(|t| same(&t, token)) {
        let mut response = next.run(request).await;
        if let Ok(cookie) = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/").parse() {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "401: this sweep serve needs its token: open the URL it printed (with ?token=), or send \
         `Authorization: Bearer TOKEN`\n",
    )
        .into_response()
}

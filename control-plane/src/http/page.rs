//! The verification page of the device flow and the IdP callback. The page shows the code
//! and asks the user to confirm it (no auto-submit); the form carries a single-use CSRF token
//! bound to that code; every request counts against a per-IP limit.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tracing::error;

use super::{AppState, client_ip, form};
use crate::error_report::Report;
use crate::identity::{IdentityError, LoginOutcome, normalize_user_code};

#[derive(Debug, Deserialize)]
pub(super) struct ShowQuery {
    user_code: Option<String>,
}

/// `GET /device[?user_code=…]`.
pub(super) async fn show(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<ShowQuery>,
) -> Response {
    if let Some(limited) = rate_limited(&state, &headers, peer).await {
        return limited;
    }
    let Some(typed) = query.user_code.filter(|c| !c.trim().is_empty()) else {
        return page(StatusCode::OK, &entry_form(None));
    };
    let device = match state.identity.pending_device(&typed).await {
        Ok(Some(device)) => device,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                &entry_form(Some(
                    "That code is unknown or has expired. Check it, or start again.",
                )),
            );
        }
        Err(err) => return internal(&err),
    };
    match state.identity.confirmation_token(&device).await {
        Ok(csrf) => page(
            StatusCode::OK,
            &format!(
                "<h1>Sign in to Tollgate</h1>\
                 <p>Confirm that this code matches the one shown on your device:</p>\
                 <p class=\"code\">{code}</p>\
                 <form method=\"post\" action=\"device\">\
                 <input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
                 <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
                 <button type=\"submit\" name=\"action\" value=\"approve\">Confirm and sign in</button> \
                 <button type=\"submit\" name=\"action\" value=\"deny\">This is not my code</button>\
                 </form>",
                code = device.user_code,
                csrf = csrf.expose_secret(),
            ),
        ),
        Err(err) => internal(&err),
    }
}

/// `POST /device`: the confirmation form.
pub(super) async fn confirm(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(limited) = rate_limited(&state, &headers, peer).await {
        return limited;
    }
    let fields = form(&body);
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let Some(user_code) = normalize_user_code(field("user_code")) else {
        return page(
            StatusCode::BAD_REQUEST,
            &entry_form(Some("That is not a valid code.")),
        );
    };
    let device = match state
        .identity
        .confirm(field("csrf_token"), &user_code)
        .await
    {
        Ok(Some(device)) => device,
        Ok(None) => {
            return page(
                StatusCode::FORBIDDEN,
                "<h1>This form has expired</h1><p>Open the link from your device again.</p>",
            );
        }
        Err(err) => return internal(&err),
    };
    if field("action") != "approve" {
        return match state.identity.deny_device(device.id).await {
            Ok(()) => page(
                StatusCode::OK,
                "<h1>Sign-in cancelled</h1><p>The device was not signed in. You can close this page.</p>",
            ),
            Err(err) => internal(&err),
        };
    }
    let redirect_uri = format!("{}/oauth/callback", state.base_url(&headers));
    match state.identity.begin_login(&device, &redirect_uri).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(IdentityError::NoIdp) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "<h1>Single sign-on is not configured</h1><p>Ask your administrator to configure the identity provider.</p>",
        ),
        Err(err) => internal(&err),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /oauth/callback`: the IdP's redirect back.
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(login_state) = query.state.filter(|s| !s.is_empty()) else {
        return page(StatusCode::BAD_REQUEST, "<h1>Invalid sign-in response</h1>");
    };
    let redirect_uri = format!("{}/oauth/callback", state.base_url(&headers));
    let outcome = state
        .identity
        .finish_login(
            &login_state,
            query.code.as_deref(),
            query.error.as_deref(),
            &redirect_uri,
        )
        .await;
    match outcome {
        Ok(LoginOutcome::Approved { email }) => page(
            StatusCode::OK,
            &format!(
                "<h1>You are signed in</h1><p>Signed in as {}. Return to your device; you can close this page.</p>",
                escape(&email)
            ),
        ),
        Ok(LoginOutcome::Denied { reason }) => page(
            StatusCode::FORBIDDEN,
            &format!("<h1>Sign-in refused</h1><p>{}</p>", escape(&reason)),
        ),
        Ok(LoginOutcome::UnknownState) => page(
            StatusCode::BAD_REQUEST,
            "<h1>Unknown or expired sign-in</h1><p>Start again from your device.</p>",
        ),
        Err(err) => internal(&err),
    }
}

async fn rate_limited(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Option<Response> {
    match state
        .identity
        .verification_allowed(&client_ip(headers, peer))
        .await
    {
        Ok(true) => None,
        Ok(false) => {
            let mut response = page(
                StatusCode::TOO_MANY_REQUESTS,
                "<h1>Too many requests</h1><p>Wait a minute and try again.</p>",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            Some(response)
        }
        Err(err) => Some(internal(&err)),
    }
}

fn entry_form(problem: Option<&str>) -> String {
    format!(
        "<h1>Sign in to Tollgate</h1>{}\
         <form method=\"get\" action=\"device\">\
         <label>Code shown on your device <input name=\"user_code\" autocomplete=\"off\" autofocus></label> \
         <button type=\"submit\">Continue</button></form>",
        problem
            .map(|p| format!("<p class=\"problem\">{p}</p>"))
            .unwrap_or_default()
    )
}

fn internal(err: &IdentityError) -> Response {
    error!(error = %Report(err), "verification page failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "<h1>Something went wrong</h1><p>Try again in a moment.</p>",
    )
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Tollgate sign-in</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}\
         .code{{font-size:2rem;font-family:monospace;letter-spacing:.2rem}}.problem{{color:#b00}}</style>\
         </head><body>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

//! The API's errors: `{"error": {"code": "...", "message": "..."}}` with a 4xx or 5xx
//! status. The code is stable (clients and the page branch on it); the message is for
//! people and may change.
//!
//! | code | status | when |
//! |---|---|---|
//! | `bad_parameter` | 400 | a query parameter or path segment is not valid; the message names it |
//! | `too_broad` | 400 | the search would read too much (a time window over [`super::params::MAX_WINDOW_DAYS`] days) |
//! | `unauthorized` | 401 | `[http.tokens]` is set and the request has no `Authorization: Bearer TOKEN` it names |
//! | `not_found` | 404 | no such call, message, endpoint or asset |
//! | `method_not_allowed` | 405 | anything but `GET` (and `HEAD`) |
//! | `store_unavailable` | 503 | the server writes no store (`store:DIR` output), or it cannot be read |
//! | `overloaded` | 503 | more requests at once than the server takes ([`super::MAX_IN_FLIGHT`]) |
//! | `timeout` | 503 | the request took longer than [`super::REQUEST_TIMEOUT`] |
//! | `peers_unanswered` | 502 | a call or message not found here, and a `[cluster]` peer that may hold it did not answer: the body's `unanswered` names each |
//! | `internal` | 500 | a bug; the message says what failed |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cluster::Unanswered;

/// An API error: a status, a stable code and a message; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The `[cluster]` peers that did not answer (`peers_unanswered`).
    pub unanswered: Vec<Unanswered>,
}

impl ApiError {
    /// `400 bad_parameter`: `message` names the parameter.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_parameter", message)
    }

    /// `400 too_broad`.
    pub fn too_broad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "too_broad", message)
    }

    /// `401 unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `503 store_unavailable`.
    pub fn store_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        )
    }

    /// `500 internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// `502 peers_unanswered`: not found on the nodes that answered; `unanswered` did
    /// not.
    pub fn peers_unanswered(message: impl Into<String>, unanswered: Vec<Unanswered>) -> Self {
        Self {
            unanswered,
            ..Self::new(StatusCode::BAD_GATEWAY, "peers_unanswered", message)
        }
    }

    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            unanswered: Vec::new(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
    #[serde(skip_serializing_if = "<[Unanswered]>::is_empty")]
    unanswered: &'a [Unanswered],
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
            unanswered: &self.unanswered,
        };
        let mut response = super::json_response(&body);
        *response.status_mut() = self.status;
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hep-server\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_json_with_its_code_and_message() {
        let r = ApiError::bad_parameter("limit: expected 1 to 1000, found 0").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
    }
}

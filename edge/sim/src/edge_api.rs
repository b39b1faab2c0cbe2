//! The store daemon's HTTP API as a member of staff calls it: signed in with a staff id and
//! PIN, signing in again once when the session has expired. The staff simulator works the
//! store through it; the rider simulator reads a bag's label through it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

/// An HTTP failure with the edge's `{error, message}`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

impl CallError {
    /// The status the edge answered with; `None` if it did not answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Transport(_) => None,
        }
    }
}

/// A staff session on one store daemon.
#[derive(Debug)]
pub struct EdgeApi {
    http: reqwest::Client,
    base: String,
    staff_id: String,
    pin: String,
    token: String,
}

impl EdgeApi {
    /// A client for the daemon at `base` (e.g. `http://127.0.0.1:8080`), not signed in yet.
    pub fn new(base: &str, staff_id: &str, pin: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            staff_id: staff_id.to_owned(),
            pin: pin.to_owned(),
            token: String::new(),
        })
    }

    /// The daemon's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallError> {
        let mut signed_in_again = false;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}/api/v1{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status();
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(value);
            }
            // A session that expired (or none yet): sign in once and repeat the call.
            if status == StatusCode::UNAUTHORIZED && !signed_in_again && path != "/auth/sign-in" {
                signed_in_again = true;
                Box::pin(self.sign_in()).await?;
                continue;
            }
            let message = value["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            return Err(CallError::Api { status, message });
        }
    }

    /// `GET /api/v1{path}`.
    pub async fn get(&mut self, path: &str) -> Result<Value, CallError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&mut self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `PUT /api/v1{path}` with a JSON body.
    pub async fn put(&mut self, path: &str, body: Value) -> Result<Value, CallError> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Signs in; the answer holds the session's `token` and the member's `role`.
    pub async fn sign_in(&mut self) -> Result<Value, CallError> {
        let body = json!({"staff_id": self.staff_id, "pin": self.pin});
        let signed_in = self.post("/auth/sign-in", body).await?;
        self.token = signed_in["token"].as_str().unwrap_or_default().to_owned();
        Ok(signed_in)
    }
}

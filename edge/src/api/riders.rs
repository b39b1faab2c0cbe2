//! Rider device enrolment over HTTP: a rider's phone trades its one-time code (from the
//! cloud's roster) for a client certificate from the store CA, which is what the riders' front
//! then authenticates it with. The code is the credential here, so no staff sign-in is involved.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

use super::error::{ApiError, Json, Path};
use crate::riders::{self, CertBundle, ClientKey, Riders};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrolment {
    /// The one-time enrolment code.
    code: String,
    /// A PKCS#10 request in PEM, so the private key never leaves the device; without it the
    /// store generates the key and returns it once.
    csr_pem: Option<String>,
}

/// `POST /riders/{id}/enrol`, with its own state (the riders service).
pub fn routes<S>(riders: Arc<Riders>) -> Router<S> {
    Router::new()
        .route("/riders/{id}/enrol", post(enrol))
        .with_state(riders)
}

async fn enrol(
    State(riders): State<Arc<Riders>>,
    Path(rider_id): Path<String>,
    Json(enrolment): Json<Enrolment>,
) -> Result<Json<CertBundle>, ApiError> {
    let key = enrolment
        .csr_pem
        .map_or(ClientKey::Generate, ClientKey::Csr);
    riders
        .enrol(&rider_id, &enrolment.code, key)
        .await
        .map(Json)
        .map_err(|error| {
            use riders::Error as E;
            let (status, code) = match &error {
                E::UnknownRider(_) => (StatusCode::NOT_FOUND, "unknown_rider"),
                E::InvalidRiderId(_) | E::BadCsr(_) => (StatusCode::BAD_REQUEST, "invalid"),
                E::BadEnrolmentCode => (StatusCode::FORBIDDEN, "bad_enrolment_code"),
                E::Revoked(_) => (StatusCode::FORBIDDEN, "revoked"),
                _ => {
                    tracing::error!(%error, "rider enrolment failed");
                    return ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "enrolment failed; see the store's log",
                    );
                }
            };
            ApiError::new(status, code, error.to_string())
        })
}

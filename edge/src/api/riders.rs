//! Rider device enrolment, served on the enrolment listener only ([`super::https`]): a rider's
//! phone trades its one-time code (from the cloud's roster) for a client certificate from the
//! store CA, which is what the riders' broker then authenticates it with. The code is the
//! credential here, so no staff sign-in is involved; wrong codes are throttled like wrong PINs.
//! Before that, the phone fetches the CA certificate and checks it against the fingerprint in
//! its QR code, so it verifies the listener before it sends the code.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::error::{ApiError, Json, Path};
use super::system::Peer;
use crate::lockout::{SignInConfig, Throttle};
use crate::riders::{self, CertBundle, ClientKey, Riders};
use crate::{Error, limits};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrolment {
    /// The one-time enrolment code.
    code: String,
    /// A PKCS#10 request in PEM, so the private key never leaves the device; without it the
    /// store generates the key and returns it once.
    csr_pem: Option<String>,
}

/// What enrolment needs: the riders service, and a throttle of its own. The code is a secret
/// checked over the LAN, so guesses are counted per rider and per client address like PIN
/// sign-ins (same rules, separate counts: a locked-out phone does not lock staff out).
#[derive(Debug)]
struct Enrolments {
    riders: Arc<Riders>,
    throttle: Throttle,
}

/// `POST /riders/{id}/enrol` and `GET /riders/ca`, with their own state (the riders service
/// and the enrolment throttle).
pub fn routes<S>(riders: Arc<Riders>, sign_in: SignInConfig) -> Router<S> {
    Router::new()
        .route("/riders/{id}/enrol", post(enrol))
        .route("/riders/ca", get(ca_certificate))
        .with_state(Arc::new(Enrolments {
            riders,
            throttle: Throttle::new(sign_in),
        }))
}

/// `POST /riders/{id}/enrol` on the plain listener: the code must not cross the LAN in clear.
pub async fn https_only() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "https_required",
        "rider enrolment is served over HTTPS only, on the store's enrolment listener \
         ([riders] enrol_listen)",
    )
}

/// `GET /riders/ca`: the store CA certificate (PEM). Public, like any CA certificate; a phone
/// trusts it only if its SHA-256 matches the fingerprint in the QR code HQ gave the rider.
async fn ca_certificate(State(enrolments): State<Arc<Enrolments>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        enrolments.riders.ca_pem().to_owned(),
    )
}

async fn enrol(
    State(enrolments): State<Arc<Enrolments>>,
    Peer(client): Peer,
    Path(rider_id): Path<String>,
    Json(enrolment): Json<Enrolment>,
) -> Result<Json<CertBundle>, ApiError> {
    // Bounded before anything is tracked under this name.
    limits::id("rider_id", &rider_id)?;
    let attempt = enrolments
        .throttle
        .begin(&rider_id, client)
        .map_err(|locked| {
            tracing::warn!(
                rider_id,
                ?client,
                reason = locked.reason(),
                retry_after_secs = locked.retry_after().as_secs(),
                "enrolment refused: locked"
            );
            ApiError::from(Error::Locked {
                message: format!(
                    "too many failed enrolments for `{rider_id}` or from this device: try again \
                     in {} s",
                    locked.retry_after().as_secs().max(1)
                ),
                retry_after_secs: locked.retry_after().as_secs().max(1),
            })
        })?;
    let key = enrolment
        .csr_pem
        .map_or(ClientKey::Generate, ClientKey::Csr);
    let error = match enrolments
        .riders
        .enrol(&rider_id, &enrolment.code, key)
        .await
    {
        Ok(bundle) => {
            enrolments.throttle.succeeded(attempt);
            return Ok(Json(bundle));
        }
        Err(error) => error,
    };
    use riders::Error as E;
    // Only a wrong code was a guess against a secret; every other refusal had nothing to
    // match, so it is not held against the rider or the phone.
    if matches!(error, E::BadEnrolmentCode) {
        drop(attempt);
    } else {
        enrolments.throttle.not_counted(attempt);
    }
    let (status, code) = match &error {
        E::UnknownRider(_) => (StatusCode::NOT_FOUND, "unknown_rider"),
        E::InvalidRiderId(_) | E::BadCsr(_) => (StatusCode::BAD_REQUEST, "invalid"),
        E::BadEnrolmentCode | E::NoPendingCode => (StatusCode::FORBIDDEN, "bad_enrolment_code"),
        E::Revoked(_) => (StatusCode::FORBIDDEN, "revoked"),
        _ => {
            tracing::error!(%error, "rider enrolment failed");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "enrolment failed; see the store's log",
            ));
        }
    };
    Err(ApiError::new(status, code, error.to_string()))
}

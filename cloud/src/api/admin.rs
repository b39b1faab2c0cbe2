//! HQ's administration: store registration and tokens, store profiles, the rider roster,
//! customers, coupons and the per-store figures. Everything here takes the admin credential.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::api::{MAX_MONEY_MINOR, check_text};
use crate::hq::{Coupon, RosterRider, StoreProfile};
use crate::http::auth::Admin;
use crate::http::error::{ApiError, Json, OptionalJson, Path};
use crate::http::state::AppState;
use crate::store_writes::StoreWrite;

#[derive(Debug, serde::Deserialize)]
struct RegisterStore {
    id: String,
}

#[derive(Debug, Serialize)]
struct Registered {
    store_id: String,
    token: String,
}

/// `POST /admin/v1/stores`: a new store and its token (shown once).
pub async fn register_store(
    State(state): State<AppState>,
    _: Admin,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RegisterStore = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"id\": \"...\"}}: {e}")))?;
    let token = state.registry.register(&request.id).await?;
    state.stores.replica(&request.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            store_id: request.id,
            token,
        }),
    )
        .into_response())
}

/// The options of a token rotation (the body may be left out).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateToken {
    /// Also unbind the edge database (it was replaced); the next one to say hello binds.
    #[serde(default)]
    release_edge_site: bool,
}

/// `POST /admin/v1/stores/{id}/token`: a new token for a registered store; the old one stops
/// working at once. The edge database stays bound unless the (optional) body says
/// `{"release_edge_site": true}`.
pub async fn rotate_store_token(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<RotateToken>,
) -> Result<Response, ApiError> {
    let token = state
        .registry
        .rotate(&id, request.release_edge_site)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            store_id: id,
            token,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCustomer {
    first_name: String,
}

/// `POST /admin/v1/customers`: a customer and its token (shown once).
pub async fn create_customer(
    State(state): State<AppState>,
    _: Admin,
    Json(request): Json<NewCustomer>,
) -> Result<Response, ApiError> {
    let name = request.first_name.trim().to_owned();
    check_text("first_name", &name, 100, true)?;
    let (id, token) = state.hq.create_customer(name).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "customer_id": id, "token": token })),
    )
        .into_response())
}

/// `PUT /admin/v1/stores/{id}/profile`: where a registered store is and what it serves. A body
/// without `paused` keeps the store's pause as it is (see `POST /admin/v1/stores/{id}/pause`);
/// one with it sets the pause and its `paused_reason`.
pub async fn put_store_profile(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    let keep_pause = body.get("paused").is_none();
    let mut profile: StoreProfile = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    profile.id = id.clone();
    profile.check_new().map_err(ApiError::Unprocessable)?;
    profile.validate().map_err(ApiError::Unprocessable)?;
    if !state.registry.store_ids().await?.contains(&id) {
        return Err(ApiError::NotFound(format!(
            "store {id} is not registered: POST /admin/v1/stores first"
        )));
    }
    // The store's own row in its replica (cloud-owned) tells the edge its name and place.
    state
        .store_writes
        .write(
            &id,
            vec![StoreWrite::Store {
                id: profile.id.clone(),
                name: profile.name.clone(),
                lat: profile.lat,
                lon: profile.lon,
            }],
        )
        .await?;
    let stored = state
        .hq
        .put_store_keeping_pause(profile, keep_pause)
        .await?;
    Ok(Json(stored).into_response())
}

/// `GET /admin/v1/stores`: every profiled store with its live figures (the last hour).
pub async fn list_stores(State(state): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let since = crate::clock::rfc3339(crate::clock::now() - time::Duration::hours(1));
    let figures = state.projection.store_figures(since).await?;
    let grace = std::time::Duration::from_millis(state.intake_grace_ms);
    let stores: Vec<serde_json::Value> = state
        .hq
        .stores()
        .iter()
        .map(|s| {
            let id = &s.profile.id;
            serde_json::json!({
                "profile": s.profile,
                "online": state.intake.liveness.online(id, grace),
                "figures": figures.iter().find(|f| &f.store_id == id),
            })
        })
        .collect();
    Ok(Json(stores).into_response())
}

/// `GET /admin/v1/stock/{product_id}`: available pieces per store, from the read model.
pub async fn stock(
    State(state): State<AppState>,
    _: Admin,
    Path(product_id): Path<String>,
) -> Result<Response, ApiError> {
    let available = state.projection.available(vec![product_id]).await?;
    let stores: serde_json::Map<String, serde_json::Value> = available
        .into_iter()
        .map(|((store, _), pieces)| (store, pieces.into()))
        .collect();
    Ok(Json(stores).into_response())
}

/// `PUT /admin/v1/riders/{id}`: HQ's rider roster; the rider row goes to the home store.
pub async fn put_rider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Json(mut rider): Json<RosterRider>,
) -> Result<Response, ApiError> {
    rider.id = id;
    rider.validate().map_err(ApiError::Unprocessable)?;
    if !state
        .registry
        .store_ids()
        .await?
        .contains(&rider.home_store_id)
    {
        return Err(ApiError::Unprocessable(format!(
            "home store {} is not registered",
            rider.home_store_id
        )));
    }
    state
        .store_writes
        .write(
            &rider.home_store_id,
            vec![StoreWrite::Rider {
                id: rider.id.clone(),
                home_store_id: rider.home_store_id.clone(),
                name: rider.name.clone(),
                vehicle: rider.vehicle.clone(),
                active: rider.active,
            }],
        )
        .await?;
    state.hq.put_rider(rider.clone()).await?;
    Ok(Json(rider).into_response())
}

/// Letters and digits of an enrolment code (RFC 4648 base32: no 0, 1, 8 or 9 to mistake).
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Characters of an enrolment code (50 random bits), typed in two groups of five.
const CODE_CHARS: usize = 10;

/// Longest validity a request may ask for.
const MAX_CODE_VALIDITY_S: i64 = 30 * 24 * 3600;

/// The options of an enrolment code (the body may be left out).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCode {
    /// Seconds the code stays valid; the configured `[riders] enrolment_code_ttl_hours` when
    /// absent.
    #[serde(default)]
    valid_for_s: Option<i64>,
}

#[derive(Debug, Serialize)]
struct EnrolmentCode {
    rider_id: String,
    home_store_id: String,
    /// Shown once: the cloud keeps only its SHA-256.
    code: String,
    /// What the QR code shown to the rider encodes.
    qr_payload: String,
    expires_at: String,
}

/// `POST /admin/v1/riders/{id}/enrolment-code`: a new one-time enrolment code for a rider's
/// phone, replacing any earlier one. The code's SHA-256 and expiry go to the rider's home
/// store (its edge checks them at enrolment); the code itself is in this answer only.
pub async fn issue_enrolment_code(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<IssueCode>,
) -> Result<Response, ApiError> {
    let validity = match request.valid_for_s {
        None => state.enrolment_code_ttl,
        Some(s) if (1..=MAX_CODE_VALIDITY_S).contains(&s) => time::Duration::seconds(s),
        Some(_) => {
            return Err(ApiError::Unprocessable(format!(
                "valid_for_s is 1-{MAX_CODE_VALIDITY_S}"
            )));
        }
    };
    let rider = state
        .hq
        .riders()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no rider {id} on the roster")))?;
    if !rider.active {
        return Err(ApiError::Conflict(format!(
            "rider {id} is deactivated: reactivate them before enrolling a phone"
        )));
    }
    let code = new_enrolment_code();
    let code_sha256 = crate::registry::hex(&sha2::Sha256::digest(code.as_bytes()));
    let expires_at = crate::clock::rfc3339(crate::clock::now() + validity);
    // The phone pins the store's CA by this; without it a phone could not tell the store's
    // enrolment listener from an impostor on the Wi-Fi, so no code is issued. Read from the
    // read model, which every instance has (the store's replica is the lease holder's).
    let Some(ca_sha256) = state
        .projection
        .riders_ca_sha256(&rider.home_store_id)
        .await?
    else {
        return Err(ApiError::Conflict(format!(
            "store {} has not reported its riders' certificate authority yet: start its \
             edge with riders enabled and let it sync, then ask again",
            rider.home_store_id
        )));
    };
    // The rider is on HQ's roster for this home store, so the store's journal has their row
    // (`put_rider` journals it before the roster takes them): the code, journaled after it,
    // applies to it whichever instance holds the store.
    state
        .store_writes
        .write(
            &rider.home_store_id,
            vec![StoreWrite::EnrolmentCode {
                rider_id: rider.id.clone(),
                code_sha256,
                expires_at: expires_at.clone(),
            }],
        )
        .await?;
    tracing::info!(rider = %id, store = %rider.home_store_id, %expires_at, "enrolment code issued");
    let qr_payload = format!(
        "flashkart-enrol:v1?store={}&rider={}&code={code}&ca={ca_sha256}",
        rider.home_store_id, rider.id
    );
    Ok((
        StatusCode::CREATED,
        Json(EnrolmentCode {
            rider_id: rider.id,
            home_store_id: rider.home_store_id,
            code,
            qr_payload,
            expires_at,
        }),
    )
        .into_response())
}

/// `XXXXX-XXXXX` from the operating system's CSPRNG (through the thread's ChaCha generator,
/// seeded from it).
fn new_enrolment_code() -> String {
    let mut bytes = [0u8; CODE_CHARS];
    rand::rng().fill_bytes(&mut bytes);
    let mut code = String::with_capacity(CODE_CHARS + 1);
    for (i, b) in bytes.iter().enumerate() {
        if i == CODE_CHARS / 2 {
            code.push('-');
        }
        code.push(char::from(CODE_ALPHABET[usize::from(b & 31)]));
    }
    code
}

/// `PUT /admin/v1/coupons/{code}`
pub async fn put_coupon(
    State(state): State<AppState>,
    _: Admin,
    Path(code): Path<String>,
    Json(mut coupon): Json<Coupon>,
) -> Result<Response, ApiError> {
    coupon.code = code;
    check_text("coupon code", &coupon.code, 32, true)?;
    let money = 0..=MAX_MONEY_MINOR;
    if !(0..=100).contains(&coupon.percent_off)
        || !money.contains(&coupon.amount_off_minor)
        || !money.contains(&coupon.min_basket_minor)
    {
        return Err(ApiError::Unprocessable(format!(
            "percent_off is 0-100; amount_off_minor and min_basket_minor are 0-{MAX_MONEY_MINOR}"
        )));
    }
    state.hq.put_coupon(coupon).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! `GET /api/v1/areas`: where FlashKart delivers, for the customer app's map. Each store's
//! name, position and service area (GeoJSON, as HQ drew it), which any delivery site shows
//! its customers anyway; nothing else of the profile (capacity, hours, a pause and its reason
//! stay HQ's). Public, like the storefront: an address is chosen before signing in.
//!
//! Why a map of areas and no address search: there is no geocoder (stores may be offline and
//! the cloud needs no internet), so the customer places the door on the map, or the browser
//! says where the phone is.

use axum::extract::State;
use serde::Serialize;

use crate::http::error::Json;
use crate::http::state::AppState;

/// Most stores listed. Each area is at most `MAX_AREA_POSITIONS` positions, so this bounds
/// the answer (a city's stores are far fewer).
const MAX_STORES: usize = 200;

#[derive(Debug, Serialize)]
pub(crate) struct Area {
    id: String,
    name: String,
    lat: f64,
    lon: f64,
    service_area: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct Areas {
    stores: Vec<Area>,
}

/// `GET /api/v1/areas`: the stores with a profile, by id, at most 200.
pub async fn areas(State(state): State<AppState>) -> Json<Areas> {
    let mut stores: Vec<Area> = state
        .hq
        .stores()
        .iter()
        .map(|s| Area {
            id: s.profile.id.clone(),
            name: s.profile.name.clone(),
            lat: s.profile.lat,
            lon: s.profile.lon,
            service_area: s.profile.service_area.clone(),
        })
        .collect();
    stores.sort_by(|a, b| a.id.cmp(&b.id));
    stores.truncate(MAX_STORES);
    Json(Areas { stores })
}

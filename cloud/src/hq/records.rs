//! The records HQ keeps (store profiles, the riders' roster, coupons, idempotency records) and
//! the checks each must pass before it is stored: apart from the database that holds them so
//! routing, dispatch and pricing can read what a record means without its storage.

use serde::{Deserialize, Serialize};

use crate::area::ServiceArea;

/// Opening hours in the store's local time as minutes after midnight, with the UTC offset the
/// store keeps (no DST rules here: HQ updates the offset when clocks change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    /// "HH:MM"
    pub opens: String,
    /// "HH:MM"; before `opens` means the store closes after midnight.
    pub closes: String,
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl OpeningHours {
    fn minutes(text: &str) -> Option<i32> {
        let (h, m) = text.split_once(':')?;
        let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
        ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60)
            .then_some(h * 60 + m)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, value) in [("opens", &self.opens), ("closes", &self.closes)] {
            if Self::minutes(value).is_none() {
                return Err(format!("hours.{name} `{value}` is not HH:MM"));
            }
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            return Err("hours.utc_offset_minutes is outside -840..=840".into());
        }
        Ok(())
    }

    /// Whether the store is open at `now` (Unix seconds).
    pub fn is_open(&self, now_unix: i64) -> bool {
        let (Some(opens), Some(closes)) = (Self::minutes(&self.opens), Self::minutes(&self.closes))
        else {
            return false;
        };
        let local = (now_unix / 60 + i64::from(self.utc_offset_minutes)).rem_euclid(24 * 60);
        let local = i32::try_from(local).unwrap_or(0);
        if opens == closes {
            true
        } else if opens < closes {
            (opens..closes).contains(&local)
        } else {
            local >= opens || local < closes
        }
    }
}

/// What HQ knows about a store for routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreProfile {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// GeoJSON `Polygon` or `MultiPolygon` of the addresses the store delivers to.
    pub service_area: serde_json::Value,
    /// No delivery further than this from the store, whatever the polygon says.
    pub max_radius_m: f64,
    pub hours: OpeningHours,
    /// Open orders (routed, not yet picked up) the store can take.
    pub capacity: u32,
    /// Minutes from order to door the store promises.
    pub sla_minutes: u32,
    /// HQ stopped new orders to the store (routing skips it as it skips a closed one; the
    /// orders it has go on). Set by `POST /admin/v1/stores/{id}/pause`; a profile PUT that
    /// leaves it out keeps the stored pause.
    #[serde(default)]
    pub paused: bool,
    /// Why, as HQ wrote it (HQ sees it; a customer's refusal only says the store is paused).
    #[serde(default)]
    pub paused_reason: Option<String>,
}

impl StoreProfile {
    /// Checks the profile and parses its area.
    pub fn validate(&self) -> Result<ServiceArea, String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name must be 1-200 characters".into());
        }
        if !(-90.0..=90.0).contains(&self.lat) || !(-180.0..=180.0).contains(&self.lon) {
            return Err("lat/lon are not a position on Earth".into());
        }
        if !(self.max_radius_m > 0.0 && self.max_radius_m <= 100_000.0) {
            return Err("max_radius_m must be in (0, 100000]".into());
        }
        if self.capacity == 0 || self.capacity > 100_000 {
            return Err("capacity must be 1-100000".into());
        }
        if self.sla_minutes == 0 || self.sla_minutes > 24 * 60 {
            return Err("sla_minutes must be 1-1440".into());
        }
        self.hours.validate()?;
        ServiceArea::from_geojson(&self.service_area)
    }

    /// What a new profile must meet besides [`validate`](Self::validate): not part of it, so
    /// a profile stored before the bound still loads.
    pub fn check_new(&self) -> Result<(), String> {
        if self.name.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        if let Some(reason) = &self.paused_reason {
            check_pause_reason(reason)?;
        }
        // Routing tests every order's address against every area, so an area's size is a
        // cost paid per order; a drawn delivery area needs hundreds of positions, not more.
        let positions = positions(&self.service_area, 0);
        if positions > MAX_AREA_POSITIONS {
            return Err(format!(
                "service_area has more than {MAX_AREA_POSITIONS} positions"
            ));
        }
        Ok(())
    }
}

/// A pause reason: at most 200 bytes, no control characters.
fn check_pause_reason(reason: &str) -> Result<(), String> {
    if reason.len() > 200 || reason.chars().any(char::is_control) {
        return Err("a pause reason is at most 200 bytes without control characters".into());
    }
    Ok(())
}

/// Most positions (vertices, all rings and polygons together) of a service area.
pub const MAX_AREA_POSITIONS: usize = 5_000;

/// Arrays of two numbers anywhere in `value`: the positions of a GeoJSON geometry. Stops
/// counting past the limit.
fn positions(value: &serde_json::Value, counted: usize) -> usize {
    match value {
        serde_json::Value::Array(items)
            if items.len() == 2 && items.iter().all(serde_json::Value::is_number) =>
        {
            counted + 1
        }
        serde_json::Value::Array(items) => items.iter().fold(counted, |n, item| {
            if n > MAX_AREA_POSITIONS {
                n
            } else {
                positions(item, n)
            }
        }),
        serde_json::Value::Object(fields) => fields.values().fold(counted, |n, item| {
            if n > MAX_AREA_POSITIONS {
                n
            } else {
                positions(item, n)
            }
        }),
        _ => counted,
    }
}

/// A store profile with its area parsed, as routing uses it.
#[derive(Debug, Clone)]
pub struct RoutableStore {
    pub profile: StoreProfile,
    pub area: ServiceArea,
}

/// A rider on HQ's roster, as dispatch uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterRider {
    #[serde(default)]
    pub id: String,
    pub home_store_id: String,
    pub name: String,
    /// `bicycle`, `scooter` or `car`.
    #[serde(default = "bicycle")]
    pub vehicle: String,
    /// Bags the rider carries at once (at most 3).
    #[serde(default = "three")]
    pub capacity: u8,
    /// 1-5.
    #[serde(default = "five")]
    pub rating: f32,
    /// Shift hours; always on shift when absent.
    #[serde(default)]
    pub shift: Option<OpeningHours>,
    #[serde(default = "yes")]
    pub active: bool,
}

fn bicycle() -> String {
    "bicycle".into()
}
fn three() -> u8 {
    3
}
fn five() -> f32 {
    5.0
}

impl RosterRider {
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a rider id is 1-64 letters, digits, `-` or `_`".into());
        }
        if self.name.trim().is_empty()
            || self.name.len() > 100
            || self.name.chars().any(char::is_control)
        {
            return Err("name must be 1-100 bytes without control characters".into());
        }
        if !matches!(self.vehicle.as_str(), "bicycle" | "scooter" | "car") {
            return Err("vehicle is `bicycle`, `scooter` or `car`".into());
        }
        if !(1..=3).contains(&self.capacity) {
            return Err("capacity is 1-3 bags".into());
        }
        if !(1.0..=5.0).contains(&self.rating) {
            return Err("rating is 1-5".into());
        }
        if let Some(shift) = &self.shift {
            shift.validate()?;
        }
        Ok(())
    }
}

/// A coupon as pricing applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupon {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub percent_off: i64,
    #[serde(default)]
    pub amount_off_minor: i64,
    #[serde(default)]
    pub min_basket_minor: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// An order already placed under an idempotency key.
#[derive(Debug, Clone)]
pub struct Placed {
    pub request_sha256: String,
    pub order_id: String,
    pub store_id: String,
    pub placed: String,
}

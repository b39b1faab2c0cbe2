//! Arrival at the store: a rider is "at the store" within a radius of its coordinates.
//!
//! Haversine distance (via `geo`) is exact enough at tens of metres and cheap enough to run on
//! every location fix of every rider.

use geo::{Distance, Haversine, Point};

/// A circle around the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geofence {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

impl Geofence {
    /// Metres from the centre to `(lat, lon)`.
    pub fn distance_m(&self, lat: f64, lon: f64) -> f64 {
        Haversine.distance(Point::new(self.lon, self.lat), Point::new(lon, lat))
    }

    /// Whether `(lat, lon)` lies inside.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.distance_m(lat, lon) <= self.radius_m
    }
}

#[cfg(test)]
mod tests {
    use super::Geofence;

    #[test]
    fn fifty_metres_inside_five_hundred_outside() {
        let store = Geofence {
            lat: 48.137,
            lon: 11.575,
            radius_m: 75.0,
        };
        // 0.00045 degrees of latitude is about 50 m.
        assert!(store.contains(48.13745, 11.575));
        assert!(!store.contains(48.1415, 11.575));
        assert!((store.distance_m(48.1415, 11.575) - 500.0).abs() < 5.0);
    }
}

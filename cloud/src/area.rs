//! Where a store delivers: its service area from GeoJSON, and distances on the Earth.
//!
//! HQ draws service areas in a map tool and sends them as GeoJSON; only the two geometry types
//! an area can be (`Polygon`, `MultiPolygon`, with optional holes) are accepted, so a point or
//! a line sent by mistake is refused instead of matching nothing. Coordinates are GeoJSON's
//! `[longitude, latitude]`.

use geo::{Contains, Distance, Haversine, LineString, MultiPolygon, Point, Polygon};
use serde::Deserialize;

/// A parsed service area.
#[derive(Debug, Clone)]
pub struct ServiceArea {
    shape: MultiPolygon<f64>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Geometry {
    Polygon {
        coordinates: Vec<Vec<[f64; 2]>>,
    },
    MultiPolygon {
        coordinates: Vec<Vec<Vec<[f64; 2]>>>,
    },
}

impl ServiceArea {
    /// Parses a GeoJSON `Polygon` or `MultiPolygon` geometry.
    pub fn from_geojson(value: &serde_json::Value) -> Result<Self, String> {
        let geometry: Geometry = serde_json::from_value(value.clone())
            .map_err(|e| format!("service_area must be a GeoJSON Polygon or MultiPolygon: {e}"))?;
        let polygons = match geometry {
            Geometry::Polygon { coordinates } => vec![polygon(coordinates)?],
            Geometry::MultiPolygon { coordinates } => coordinates
                .into_iter()
                .map(polygon)
                .collect::<Result<Vec<_>, _>>()?,
        };
        if polygons.is_empty() {
            return Err("service_area has no polygon".into());
        }
        Ok(Self {
            shape: MultiPolygon::new(polygons),
        })
    }

    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.shape.contains(&Point::new(lon, lat))
    }
}

fn polygon(rings: Vec<Vec<[f64; 2]>>) -> Result<Polygon<f64>, String> {
    let mut rings = rings.into_iter().map(|ring| {
        if ring.len() < 4 || ring.first() != ring.last() {
            return Err(
                "a ring needs at least 4 positions, the last equal to the first".to_owned(),
            );
        }
        for [lon, lat] in &ring {
            if !(-180.0..=180.0).contains(lon) || !(-90.0..=90.0).contains(lat) {
                return Err(format!(
                    "position [{lon}, {lat}] is not [longitude, latitude]"
                ));
            }
        }
        Ok(LineString::from(
            ring.into_iter()
                .map(|[lon, lat]| (lon, lat))
                .collect::<Vec<_>>(),
        ))
    });
    let exterior = rings.next().ok_or("a polygon needs an exterior ring")??;
    let holes = rings.collect::<Result<Vec<_>, _>>()?;
    Ok(Polygon::new(exterior, holes))
}

/// Great-circle distance in metres.
pub fn distance_m(from: (f64, f64), to: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(from.1, from.0), Point::new(to.1, to.0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn polygon_with_hole_contains_what_it_should() {
        let area = ServiceArea::from_geojson(&json!({
            "type": "Polygon",
            "coordinates": [
                [[13.0, 52.0], [14.0, 52.0], [14.0, 53.0], [13.0, 53.0], [13.0, 52.0]],
                [[13.4, 52.4], [13.6, 52.4], [13.6, 52.6], [13.4, 52.6], [13.4, 52.4]]
            ]
        }))
        .expect("valid area");
        assert!(area.contains(52.2, 13.2));
        assert!(!area.contains(52.5, 13.5), "inside the hole");
        assert!(!area.contains(51.0, 13.5), "outside");
    }

    #[test]
    fn refuses_what_is_not_an_area() {
        for bad in [
            json!({"type": "Point", "coordinates": [13.0, 52.0]}),
            json!({"type": "Polygon", "coordinates": [[[13.0, 52.0], [14.0, 52.0], [13.0, 52.0]]]}),
            json!({"type": "Polygon", "coordinates": [[[200.0, 52.0], [14.0, 52.0], [14.0, 53.0], [200.0, 52.0]]]}),
            json!({"type": "MultiPolygon", "coordinates": []}),
            json!("nonsense"),
        ] {
            assert!(ServiceArea::from_geojson(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn distance_is_in_metres() {
        let d = distance_m((52.52, 13.405), (52.53, 13.405));
        assert!((d - 1112.0).abs() < 5.0, "{d}");
    }
}

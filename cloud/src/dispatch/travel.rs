//! Travel time between two points. The dispatcher only ever asks "how many minutes from here
//! to there", so a road-routing engine can replace the straight-line estimates here later by
//! implementing [`TravelTime`].

/// A position: planar metres (`x` east, `y` north) for [`PlanarMetres`], or degrees
/// (`x` longitude, `y` latitude) for [`Haversine`]. One dispatcher uses one convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }
}

/// Minutes of travel from one point to another. `Sync` because a tick scores bundles on
/// several threads.
pub trait TravelTime: Sync {
    fn minutes(&self, from: Point, to: Point) -> f64;
}

/// Straight-line travel on a plane measured in metres, at a fixed speed. With `whole_minutes`
/// the time is rounded up to a whole minute, as the MDRP checker does.
#[derive(Debug, Clone, Copy)]
pub struct PlanarMetres {
    pub metres_per_minute: f64,
    pub whole_minutes: bool,
}

impl TravelTime for PlanarMetres {
    fn minutes(&self, from: Point, to: Point) -> f64 {
        // sqrt of the squared sum rather than `hypot`: several times faster, and exact enough
        // at city scale (integer MDRP coordinates give an exactly rounded result either way).
        let (dx, dy) = (from.x - to.x, from.y - to.y);
        let metres = (dx * dx + dy * dy).sqrt();
        let minutes = metres / self.metres_per_minute;
        if self.whole_minutes {
            minutes.ceil()
        } else {
            minutes
        }
    }
}

/// Great-circle travel between longitude/latitude points at a fixed speed: the live estimate
/// until a routing engine exists. Hand-written because the formula is a few lines and the pure
/// dispatch core then needs no geometry crate.
#[derive(Debug, Clone, Copy)]
pub struct Haversine {
    pub metres_per_minute: f64,
}

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_METRES: f64 = 6_371_008.8;

impl Haversine {
    /// Great-circle distance in metres.
    pub fn metres(from: Point, to: Point) -> f64 {
        let (lat1, lat2) = (from.y.to_radians(), to.y.to_radians());
        let half_dlat = (lat2 - lat1) / 2.0;
        let half_dlon = (to.x - from.x).to_radians() / 2.0;
        let a = half_dlat.sin().powi(2) + lat1.cos() * lat2.cos() * half_dlon.sin().powi(2);
        2.0 * EARTH_RADIUS_METRES * a.sqrt().min(1.0).asin()
    }
}

impl TravelTime for Haversine {
    fn minutes(&self, from: Point, to: Point) -> f64 {
        Self::metres(from, to) / self.metres_per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planar_rounds_up_like_the_mdrp_checker() {
        let travel = PlanarMetres {
            metres_per_minute: 320.0,
            whole_minutes: true,
        };
        assert_eq!(
            travel.minutes(Point::new(0.0, 0.0), Point::new(320.0, 0.0)),
            1.0
        );
        assert_eq!(
            travel.minutes(Point::new(0.0, 0.0), Point::new(321.0, 0.0)),
            2.0
        );
        assert_eq!(
            travel.minutes(Point::new(5.0, 5.0), Point::new(5.0, 5.0)),
            0.0
        );
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // One degree of latitude is about 111.2 km.
        let metres = Haversine::metres(Point::new(77.0, 12.0), Point::new(77.0, 13.0));
        assert!((metres - 111_195.0).abs() < 100.0, "{metres}");
        let travel = Haversine {
            metres_per_minute: 400.0,
        };
        let minutes = travel.minutes(Point::new(77.0, 12.0), Point::new(77.0, 13.0));
        assert!((minutes - 278.0).abs() < 1.0, "{minutes}");
    }
}

//! Just enough planar geometry for a city a few kilometres wide: a local
//! east/north plane in metres around Dijon, projected equirectangularly
//! (the error is a few centimetres over the metropolis, far below GPS noise).

/// Latitude of the plane's origin, Dijon's place de la Libération.
pub const ORIGIN_LAT: f64 = 47.3220;
/// Longitude of the plane's origin.
pub const ORIGIN_LON: f64 = 5.0415;
const METRES_PER_DEGREE_LAT: f64 = 111_320.0;

fn metres_per_degree_lon() -> f64 {
    METRES_PER_DEGREE_LAT * ORIGIN_LAT.to_radians().cos()
}

/// A point on the local plane, metres east (`x`) and north (`y`) of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Xy {
    pub x: f64,
    pub y: f64,
}

/// A WGS 84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

impl LonLat {
    pub fn to_xy(self) -> Xy {
        Xy {
            x: (self.lon - ORIGIN_LON) * metres_per_degree_lon(),
            y: (self.lat - ORIGIN_LAT) * METRES_PER_DEGREE_LAT,
        }
    }
}

impl Xy {
    pub const fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    /// WGS 84, rounded to 1e-7 degree (about 1 cm): short, stable JSON.
    pub fn to_lonlat(self) -> LonLat {
        let round = |v: f64| (v * 1e7).round() / 1e7;
        LonLat {
            lon: round(ORIGIN_LON + self.x / metres_per_degree_lon()),
            lat: round(ORIGIN_LAT + self.y / METRES_PER_DEGREE_LAT),
        }
    }

    pub fn distance(self, other: Xy) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }

    /// Linear interpolation: `self` at `t = 0`, `other` at `t = 1`.
    pub fn lerp(self, other: Xy, t: f64) -> Xy {
        Xy::new(self.x + (other.x - self.x) * t, self.y + (other.y - self.y) * t)
    }

    /// Compass heading from `self` to `other`, degrees clockwise from north in [0, 360).
    pub fn heading_to(self, other: Xy) -> f64 {
        let h = (other.x - self.x).atan2(other.y - self.y).to_degrees();
        let h = if h < 0.0 { h + 360.0 } else { h };
        if h >= 360.0 { 0.0 } else { h }
    }

    pub fn offset(self, dx: f64, dy: f64) -> Xy {
        Xy::new(self.x + dx, self.y + dy)
    }
}

/// Area of a simple polygon (shoelace), in square metres.
pub fn polygon_area(ring: &[Xy]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.x * b.y - b.x * a.y
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

/// Even-odd point-in-polygon test.
pub fn contains(ring: &[Xy], p: Xy) -> bool {
    let n = ring.len();
    let mut inside = false;
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (a, b) = (ring[i], ring[j]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_round_trips_to_the_centimetre() {
        let p = Xy::new(1234.5, -987.6);
        let back = p.to_lonlat().to_xy();
        assert!(p.distance(back) < 0.02, "{back:?}");
    }

    #[test]
    fn headings_follow_the_compass() {
        let o = Xy::default();
        assert_eq!(o.heading_to(Xy::new(0.0, 1.0)), 0.0);
        assert_eq!(o.heading_to(Xy::new(1.0, 0.0)), 90.0);
        assert_eq!(o.heading_to(Xy::new(0.0, -1.0)), 180.0);
        assert_eq!(o.heading_to(Xy::new(-1.0, 0.0)), 270.0);
    }

    #[test]
    fn squares_have_area_and_an_inside() {
        let sq = [
            Xy::new(0.0, 0.0),
            Xy::new(10.0, 0.0),
            Xy::new(10.0, 10.0),
            Xy::new(0.0, 10.0),
        ];
        assert_eq!(polygon_area(&sq), 100.0);
        assert!(contains(&sq, Xy::new(5.0, 5.0)));
        assert!(!contains(&sq, Xy::new(15.0, 5.0)));
    }
}

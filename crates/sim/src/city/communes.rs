//! Dijon Métropole's communes: names, postal codes, approximate town-hall
//! positions and populations (INSEE, rounded). Neuilly-lès-Dijon and Crimolois
//! merged into Neuilly-Crimolois in 2019; the metropolis' OnDijon programme and
//! Vigie's reference count 24 communes, so they stay two (communes déléguées).

/// A commune of the reference metropolis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommuneSpec {
    pub slug: &'static str,
    pub name: &'static str,
    pub postal_code: &'static str,
    pub lat: f64,
    pub lon: f64,
    pub population: u32,
}

const fn c(
    slug: &'static str,
    name: &'static str,
    postal_code: &'static str,
    lat: f64,
    lon: f64,
    population: u32,
) -> CommuneSpec {
    CommuneSpec {
        slug,
        name,
        postal_code,
        lat,
        lon,
        population,
    }
}

/// The 24 communes, Dijon first.
pub const DIJON_METROPOLE: [CommuneSpec; 24] = [
    c("dijon", "Dijon", "21000", 47.3220, 5.0415, 159_350),
    c("chenove", "Chenôve", "21300", 47.2922, 5.0053, 13_900),
    c("talant", "Talant", "21240", 47.3367, 5.0058, 11_700),
    c(
        "fontaine-les-dijon",
        "Fontaine-lès-Dijon",
        "21121",
        47.3425,
        5.0208,
        9_100,
    ),
    c("quetigny", "Quetigny", "21800", 47.3142, 5.1075, 9_700),
    c("longvic", "Longvic", "21600", 47.2878, 5.0633, 9_500),
    c(
        "chevigny-saint-sauveur",
        "Chevigny-Saint-Sauveur",
        "21800",
        47.3006,
        5.1353,
        11_300,
    ),
    c(
        "saint-apollinaire",
        "Saint-Apollinaire",
        "21850",
        47.3319,
        5.0858,
        7_700,
    ),
    c(
        "marsannay-la-cote",
        "Marsannay-la-Côte",
        "21160",
        47.2708,
        4.9897,
        5_200,
    ),
    c(
        "plombieres-les-dijon",
        "Plombières-lès-Dijon",
        "21370",
        47.3375,
        4.9656,
        2_900,
    ),
    c(
        "sennecey-les-dijon",
        "Sennecey-lès-Dijon",
        "21800",
        47.2892,
        5.1050,
        2_300,
    ),
    c("ahuy", "Ahuy", "21121", 47.3694, 5.0211, 1_300),
    c("daix", "Daix", "21121", 47.3503, 4.9986, 1_500),
    c(
        "hauteville-les-dijon",
        "Hauteville-lès-Dijon",
        "21121",
        47.3653,
        4.9967,
        1_200,
    ),
    c(
        "bressey-sur-tille",
        "Bressey-sur-Tille",
        "21560",
        47.3086,
        5.1856,
        1_000,
    ),
    c("breteniere", "Bretenière", "21110", 47.2378, 5.1097, 900),
    c(
        "corcelles-les-monts",
        "Corcelles-les-Monts",
        "21160",
        47.2986,
        4.9394,
        650,
    ),
    c("crimolois", "Crimolois", "21800", 47.2686, 5.1236, 750),
    c("fenay", "Fénay", "21600", 47.2333, 5.0617, 1_750),
    c("flavignerot", "Flavignerot", "21160", 47.2894, 4.9008, 200),
    c("magny-sur-tille", "Magny-sur-Tille", "21110", 47.2817, 5.1758, 900),
    c(
        "neuilly-les-dijon",
        "Neuilly-lès-Dijon",
        "21800",
        47.2811,
        5.1075,
        2_100,
    ),
    c("ouges", "Ouges", "21600", 47.2614, 5.0736, 1_400),
    c(
        "perrigny-les-dijon",
        "Perrigny-lès-Dijon",
        "21160",
        47.2656,
        5.0042,
        1_800,
    ),
];

/// Splits `total` among weights by the largest-remainder method, so the parts
/// add up exactly and follow the weights as closely as integers can.
pub fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let quotas: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Ties broken by index so the split is deterministic.
    order.sort_by(|&a, &b| {
        let (ra, rb) = (quotas[a] - quotas[a].floor(), quotas[b] - quotas[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    let missing = total - parts.iter().sum::<usize>();
    for &i in order.iter().take(missing) {
        parts[i] += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_valid_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for c in DIJON_METROPOLE {
            vigie_core::CommuneId::new(c.slug).unwrap();
            assert!(seen.insert(c.slug), "{}", c.slug);
        }
    }

    #[test]
    fn apportioning_is_exact() {
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0.0, 2.0]), vec![0, 7]);
        assert_eq!(apportion(5, &[]), Vec::<usize>::new());
    }
}

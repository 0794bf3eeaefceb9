//! A commune's synthetic street network: a rotated, jittered grid clipped to
//! the commune's boundary and to a built-up disc sized so that lights every
//! ~30 m fill it. Rows and columns are the streets, each with a name; the grid
//! is also the graph vehicles drive on.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::geo::{Xy, contains, polygon_area};

/// Distance between two street lights along a street, the usual urban spacing.
pub const LIGHT_SPACING_M: f64 = 30.0;
const MIN_BLOCK_M: f64 = 40.0;
const MAX_BLOCK_M: f64 = 160.0;

const PREFIXES: [&str; 6] = ["Rue", "Avenue", "Allée", "Boulevard", "Chemin", "Impasse"];
const NAMES: [&str; 60] = [
    "de la Liberté",
    "Jean Jaurès",
    "Victor Hugo",
    "Pasteur",
    "des Forges",
    "Monge",
    "Berbisey",
    "du Bourg",
    "Chabot-Charny",
    "Devosge",
    "de la Préfecture",
    "Verrerie",
    "Vannerie",
    "Jeannin",
    "des Godrans",
    "Musette",
    "Charrue",
    "Amiral Roussin",
    "Buffon",
    "Mably",
    "Gustave Eiffel",
    "du Général de Gaulle",
    "Jean Moulin",
    "de Mirande",
    "d'Auxonne",
    "de Langres",
    "de Talant",
    "des Vignes",
    "du Lavoir",
    "de l'Église",
    "des Tilleuls",
    "des Acacias",
    "du Stade",
    "de la Mairie",
    "des Écoles",
    "du Moulin",
    "des Peupliers",
    "des Champs",
    "de la Gare",
    "Pierre Curie",
    "Colette",
    "Gabriel Fauré",
    "Hector Berlioz",
    "Jules Ferry",
    "Anatole France",
    "Émile Zola",
    "Paul Cézanne",
    "Gustave Flaubert",
    "d'Alsace",
    "de Lorraine",
    "du Drapeau",
    "Carnot",
    "de Sévigné",
    "Clemenceau",
    "Maréchal Foch",
    "Rameau",
    "Sambin",
    "Bossuet",
    "de la Charmette",
    "du Castel",
];

/// Index of a grid node, `j * nx + i`.
pub type NodeIx = u32;

/// A street section between two neighbouring grid nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub a: NodeIx,
    pub b: NodeIx,
    pub street: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreetGrid {
    nx: usize,
    ny: usize,
    /// Jittered node positions; `None` outside the built-up area.
    nodes: Vec<Option<Xy>>,
    /// Street names: the `ny` rows first, then the `nx` columns.
    names: Vec<String>,
}

impl StreetGrid {
    /// Builds the network of a commune centred on `centre` within `boundary`,
    /// long enough for `lights` lights at [`LIGHT_SPACING_M`].
    pub fn build(centre: Xy, boundary: &[Xy], lights: usize, rng: &mut ChaCha8Rng) -> Self {
        let needed = lights.max(2) as f64 * LIGHT_SPACING_M;
        let angle = rng.random_range(0.0..std::f64::consts::FRAC_PI_2);
        let jitter_seed: u64 = rng.random();
        let mut spacing = (2.0 * polygon_area(boundary) / needed).clamp(MIN_BLOCK_M, MAX_BLOCK_M);
        let mut best = Self::lay_out(centre, boundary, needed, spacing, angle, jitter_seed);
        // The boundary clips the built-up disc; tighten the blocks until the
        // streets are long enough (or blocks are as small as towns make them).
        for _ in 0..6 {
            let length = best.total_length();
            if length >= 0.9 * needed || spacing <= MIN_BLOCK_M / 2.0 {
                break;
            }
            spacing = (spacing * (length / needed).clamp(0.5, 0.95)).max(MIN_BLOCK_M / 2.0);
            best = Self::lay_out(centre, boundary, needed, spacing, angle, jitter_seed);
        }
        best.names = street_names(best.nx + best.ny, rng);
        best
    }

    fn lay_out(centre: Xy, boundary: &[Xy], needed: f64, spacing: f64, angle: f64, jitter_seed: u64) -> Self {
        use rand::SeedableRng;
        let mut jitter = ChaCha8Rng::seed_from_u64(jitter_seed);
        let radius = ((needed * spacing / (2.0 * std::f64::consts::PI)).sqrt() * 1.25).max(spacing);
        let half = (radius / spacing).ceil() as i64;
        let n = (2 * half + 1) as usize;
        let (sin, cos) = angle.sin_cos();
        let mut nodes = Vec::with_capacity(n * n);
        for j in 0..n {
            for i in 0..n {
                let (u, v) = ((i as i64 - half) as f64 * spacing, (j as i64 - half) as f64 * spacing);
                let amp = spacing * 0.12;
                let (du, dv) = (jitter.random_range(-amp..=amp), jitter.random_range(-amp..=amp));
                let (u, v) = (u + du, v + dv);
                let p = centre.offset(u * cos - v * sin, u * sin + v * cos);
                let inside = p.distance(centre) <= radius && contains(boundary, p);
                nodes.push(inside.then_some(p));
            }
        }
        let mut grid = Self {
            nx: n,
            ny: n,
            nodes,
            names: Vec::new(),
        };
        if grid.edges().next().is_none() {
            // A hamlet smaller than one block: one street through its centre.
            let mid = half as usize * n + half as usize;
            grid.nodes[mid] = Some(centre);
            grid.nodes[mid + 1] = Some(centre.offset(spacing * cos, spacing * sin));
        }
        grid
    }

    pub fn node(&self, n: NodeIx) -> Option<Xy> {
        self.nodes.get(n as usize).copied().flatten()
    }

    /// Every node inside the built-up area.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIx, Xy)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(ix, p)| p.map(|p| (ix as NodeIx, p)))
    }

    /// Street sections, row by row then column by column, so consecutive
    /// sections follow one street.
    pub fn edges(&self) -> impl Iterator<Item = Edge> + '_ {
        let (nx, ny) = (self.nx, self.ny);
        let rows = (0..ny).flat_map(move |j| (0..nx.saturating_sub(1)).map(move |i| (j * nx + i, j * nx + i + 1, j)));
        let cols =
            (0..nx).flat_map(move |i| (0..ny.saturating_sub(1)).map(move |j| (j * nx + i, (j + 1) * nx + i, ny + i)));
        rows.chain(cols).filter_map(|(a, b, street)| {
            (self.nodes[a].is_some() && self.nodes[b].is_some()).then_some(Edge {
                a: a as NodeIx,
                b: b as NodeIx,
                street: street as u32,
            })
        })
    }

    pub fn total_length(&self) -> f64 {
        self.edges().map(|e| self.edge_length(e)).sum()
    }

    pub fn edge_length(&self, e: Edge) -> f64 {
        match (self.node(e.a), self.node(e.b)) {
            (Some(a), Some(b)) => a.distance(b),
            _ => 0.0,
        }
    }

    /// The built-up neighbours of a node (the crossings a vehicle can drive to).
    pub fn neighbours(&self, n: NodeIx) -> impl Iterator<Item = NodeIx> + '_ {
        let (nx, ny, n) = (self.nx as i64, self.ny as i64, n as i64);
        let (i, j) = (n % nx, n / nx);
        [(i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
            .into_iter()
            .filter(move |&(a, b)| a >= 0 && b >= 0 && a < nx && b < ny)
            .map(move |(a, b)| (b * nx + a) as NodeIx)
            .filter(|&m| self.node(m).is_some())
    }

    /// The street a section belongs to.
    pub fn street_name(&self, street: u32) -> &str {
        self.names.get(street as usize).map_or("", String::as_str)
    }

    /// A plausible house number for a point `t` (0..1) along a section: about
    /// eight numbers per block and side, odd numbers on one side.
    pub fn house_number(&self, e: Edge, t: f64) -> u32 {
        let ordinal = if (e.street as usize) < self.ny {
            e.a as usize % self.nx
        } else {
            e.a as usize / self.nx
        };
        ((ordinal as f64 + t) * 8.0) as u32 * 2 + 1
    }

    /// The two streets crossing at a node: its row and its column.
    pub fn crossing_streets(&self, n: NodeIx) -> (u32, u32) {
        let (nx, ny) = (self.nx as u32, self.ny as u32);
        (n / nx, ny + n % nx)
    }
}

fn street_names(count: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut order: Vec<usize> = (0..NAMES.len()).collect();
    order.shuffle(rng);
    let mut names: Vec<String> = (0..count)
        .map(|k| {
            let name = NAMES[order[k % NAMES.len()]];
            let prefix = PREFIXES[(k / NAMES.len()) % PREFIXES.len()];
            match k / (NAMES.len() * PREFIXES.len()) {
                0 => format!("{prefix} {name}"),
                n => format!("{prefix} {name} {}", n + 1),
            }
        })
        .collect();
    // Mix rows and columns, so avenues are not all parallel.
    names.shuffle(rng);
    names
}

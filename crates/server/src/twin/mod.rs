//! The live twin: the current state of every entity, in memory, with a spatial
//! index. Reads (the API, the console) never touch the store; the ingest writer
//! is the only mutator and commits here right after the store has made a batch
//! durable, so what the twin shows is always on disk.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use rstar::primitives::GeomWithData;
use rstar::{AABB, RTree};
use vigie_core::status::Condition;
use vigie_core::{AttributeKind, Entity, EntityId, Scope};

/// What a map needs of a located asset, kept in the spatial index itself so
/// that drawing 250,000 assets never reads their attributes: computed once
/// per change by the writer's commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Glance {
    pub id: EntityId,
    pub entity_type: Arc<str>,
    pub scope: Option<Arc<Scope>>,
    pub at: [f64; 2],
    pub condition: Condition,
}

type Located = GeomWithData<[f64; 2], Arc<Glance>>;

/// An entity as [`Twin::for_each_glance`] shows it.
pub enum Sighting<'a> {
    Located(&'a Glance),
    Unlocated(&'a Entity),
}

/// Entity types and scopes shared by every glance (a city has a few dozen
/// types and a few hundred scopes, for hundreds of thousands of assets).
#[derive(Default)]
struct Interned {
    types: std::collections::HashMap<String, Arc<str>>,
    scopes: std::collections::HashMap<Scope, Arc<Scope>>,
}

impl Interned {
    fn glance(&mut self, e: &Entity, at: [f64; 2]) -> Arc<Glance> {
        let entity_type = Arc::clone(
            self.types
                .entry(e.entity_type.clone())
                .or_insert_with(|| Arc::from(e.entity_type.as_str())),
        );
        let scope = e
            .scope
            .as_ref()
            .map(|s| Arc::clone(self.scopes.entry(s.clone()).or_insert_with(|| Arc::new(s.clone()))));
        Arc::new(Glance {
            id: e.id.clone(),
            entity_type,
            scope,
            at,
            condition: Condition::of(e),
        })
    }
}

/// Which entities a query starts from, before its filter.
pub enum Candidates<'a> {
    All,
    /// Every entity whose id sorts after this one: a page that follows
    /// another starts with a seek, whatever its depth.
    After(&'a EntityId),
    Ids(&'a [EntityId]),
    /// Entities whose location lies in this lon/lat rectangle.
    Area {
        min: [f64; 2],
        max: [f64; 2],
    },
}

/// One page of a query, in entity id order (stable across pages).
pub struct Page {
    pub entities: Vec<Arc<Entity>>,
    /// How many entities match in all, when asked.
    pub total: Option<usize>,
}

#[derive(Default)]
struct State {
    entities: BTreeMap<EntityId, Arc<Entity>>,
    spatial: RTree<Located>,
    /// Entities without a location (few: the spatial index holds the rest).
    unlocated: std::collections::BTreeSet<EntityId>,
    interned: Interned,
    catalog: Catalog,
}

/// What the twin holds, by entity type and attribute, kept up to date on
/// every commit so that discovery (`/types`, `/attributes`) counts every
/// entity without scanning them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Catalog {
    pub types: BTreeMap<String, TypeStats>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TypeStats {
    pub entities: usize,
    /// Per attribute name: how many entities of the type have it, by kind.
    pub attributes: BTreeMap<String, BTreeMap<AttributeKind, usize>>,
}

impl Catalog {
    fn add(&mut self, e: &Entity) {
        let t = self.types.entry(e.entity_type.clone()).or_default();
        t.entities += 1;
        for (name, attr) in &e.attributes {
            *t.attributes
                .entry(name.clone())
                .or_default()
                .entry(attr.kind)
                .or_insert(0) += 1;
        }
    }

    fn remove(&mut self, e: &Entity) {
        let Some(t) = self.types.get_mut(&e.entity_type) else {
            return;
        };
        t.entities = t.entities.saturating_sub(1);
        for (name, attr) in &e.attributes {
            if let Some(kinds) = t.attributes.get_mut(name) {
                if let Some(n) = kinds.get_mut(&attr.kind) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        kinds.remove(&attr.kind);
                    }
                }
                if kinds.is_empty() {
                    t.attributes.remove(name);
                }
            }
        }
        if t.entities == 0 {
            self.types.remove(&e.entity_type);
        }
    }

    /// Whether two states of an entity count the same (the usual telemetry
    /// update: same type, same attribute names and kinds, new values).
    fn same_shape(a: &Entity, b: &Entity) -> bool {
        a.entity_type == b.entity_type
            && a.attributes.len() == b.attributes.len()
            && a.attributes
                .iter()
                .zip(b.attributes.iter())
                .all(|((n1, a1), (n2, a2))| n1 == n2 && a1.kind == a2.kind)
    }
}

/// One committed batch as the live feed carries it: each entity's new state,
/// `None` for a deletion.
pub type Committed = Arc<[(EntityId, Option<Arc<Entity>>)]>;

/// Batches the live feed holds for a slow reader before it lags (and then
/// resynchronises from the twin).
const FEED_CAPACITY: usize = 1024;

pub struct Twin {
    state: RwLock<State>,
    /// Every commit, for live views (the console's server-sent events).
    feed: tokio::sync::broadcast::Sender<Committed>,
}

impl Default for Twin {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

fn location(e: &Entity) -> Option<[f64; 2]> {
    e.point()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| [x, y])
}

impl Twin {
    /// Builds the twin from entities loaded from the store.
    pub fn from_entities(entities: impl IntoIterator<Item = Entity>) -> Self {
        let mut map = BTreeMap::new();
        let mut located = Vec::new();
        let mut unlocated = std::collections::BTreeSet::new();
        let mut interned = Interned::default();
        let mut catalog = Catalog::default();
        for e in entities {
            catalog.add(&e);
            match location(&e) {
                Some(p) => located.push(Located::new(p, interned.glance(&e, p))),
                None => {
                    unlocated.insert(e.id.clone());
                }
            }
            map.insert(e.id.clone(), Arc::new(e));
        }
        Self {
            state: RwLock::new(State {
                entities: map,
                spatial: RTree::bulk_load(located),
                unlocated,
                interned,
                catalog,
            }),
            ..Self::default()
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entity>> {
        self.read().entities.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies committed changes: `Some` is the entity's new state, `None` a deletion.
    pub fn commit(&self, changes: impl IntoIterator<Item = (EntityId, Option<Arc<Entity>>)>) {
        let changes: Committed = changes.into_iter().collect();
        self.apply(changes.iter().cloned());
        // No live view listening is the common case, not an error.
        let _ = self.feed.send(changes);
    }

    /// Every commit from now on, in commit order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Committed> {
        self.feed.subscribe()
    }

    fn apply(&self, changes: impl IntoIterator<Item = (EntityId, Option<Arc<Entity>>)>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let State {
            entities,
            spatial,
            unlocated,
            interned,
            catalog,
        } = &mut *state;
        for (id, new) in changes {
            let new_location = new.as_deref().and_then(location);
            let old = match &new {
                Some(e) => entities.insert(id.clone(), Arc::clone(e)),
                None => entities.remove(&id),
            };
            match (old.as_deref(), new.as_deref()) {
                (Some(o), Some(n)) if Catalog::same_shape(o, n) => {}
                (o, n) => {
                    if let Some(o) = o {
                        catalog.remove(o);
                    }
                    if let Some(n) = n {
                        catalog.add(n);
                    }
                }
            }
            // The glance changes with the location, the state or the scope:
            // replace it (an R-tree entry is found by its whole value).
            let old_glance = old.as_deref().and_then(|o| location(o).map(|p| interned.glance(o, p)));
            let new_glance = new.as_deref().zip(new_location).map(|(n, p)| interned.glance(n, p));
            if old_glance != new_glance {
                if let Some(g) = old_glance {
                    spatial.remove(&Located::new(g.at, g));
                }
                if let Some(g) = new_glance {
                    spatial.insert(Located::new(g.at, g));
                }
            }
            if new.is_some() && new_location.is_none() {
                unlocated.insert(id);
            } else {
                unlocated.remove(&id);
            }
        }
    }

    /// Entities from `candidates` that pass `filter`, in id order, after
    /// skipping `offset`, at most `limit`; counts all matches when `count`.
    pub fn select(
        &self,
        candidates: Candidates<'_>,
        filter: &dyn Fn(&Entity) -> bool,
        offset: usize,
        limit: usize,
        count: bool,
    ) -> Page {
        let state = self.read();
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut matched = 0usize;
        let mut visit = |e: &Arc<Entity>| -> bool {
            if !filter(e) {
                return true;
            }
            if matched >= offset && page.len() < limit {
                page.push(Arc::clone(e));
            }
            matched += 1;
            // Keep going only while the page needs more, or the count does.
            count || page.len() < limit
        };
        match candidates {
            Candidates::All => {
                for e in state.entities.values() {
                    if !visit(e) {
                        break;
                    }
                }
            }
            Candidates::After(id) => {
                let after = (std::ops::Bound::Excluded(id), std::ops::Bound::Unbounded);
                for e in state.entities.range::<EntityId, _>(after).map(|(_, e)| e) {
                    if !visit(e) {
                        break;
                    }
                }
            }
            Candidates::Ids(ids) => {
                let mut ids: Vec<&EntityId> = ids.iter().collect();
                ids.sort();
                ids.dedup();
                for id in ids {
                    if let Some(e) = state.entities.get(id)
                        && !visit(e)
                    {
                        break;
                    }
                }
            }
            Candidates::Area { min, max } => {
                let mut ids: Vec<&EntityId> = state
                    .spatial
                    .locate_in_envelope_intersecting(&AABB::from_corners(min, max))
                    .map(|l| &l.data.id)
                    .collect();
                ids.sort();
                ids.dedup();
                for id in ids {
                    if let Some(e) = state.entities.get(id)
                        && !visit(e)
                    {
                        break;
                    }
                }
            }
        }
        Page {
            entities: page,
            total: count.then_some(matched),
        }
    }

    /// Visits the glance of every located entity in the lon/lat rectangle, in
    /// no order, under one read lock (keep `visit` short: commits wait).
    pub fn for_each_in(&self, min: [f64; 2], max: [f64; 2], visit: &mut dyn FnMut(&Glance)) {
        let state = self.read();
        for located in state
            .spatial
            .locate_in_envelope_intersecting(&AABB::from_corners(min, max))
        {
            visit(&located.data);
        }
    }

    /// Visits every entity under one read lock: the located ones by their
    /// glance, then the others.
    pub fn for_each_glance(&self, visit: &mut dyn FnMut(Sighting<'_>)) {
        let state = self.read();
        for l in state.spatial.iter() {
            visit(Sighting::Located(&l.data));
        }
        for e in state.unlocated.iter().filter_map(|id| state.entities.get(id)) {
            visit(Sighting::Unlocated(e));
        }
    }

    /// Visits every entity, in id order, under one read lock.
    pub fn for_each(&self, visit: &mut dyn FnMut(&Entity)) {
        for e in self.read().entities.values() {
            visit(e);
        }
    }

    /// The lon/lat rectangle around every located entity, if any.
    pub fn extent(&self) -> Option<([f64; 2], [f64; 2])> {
        let state = self.read();
        (state.spatial.size() > 0).then(|| {
            let envelope = state.spatial.root().envelope();
            (envelope.lower(), envelope.upper())
        })
    }

    /// Distinct entity types with their counts (for the overview and discovery).
    pub fn types(&self) -> BTreeMap<String, usize> {
        let state = self.read();
        state
            .catalog
            .types
            .iter()
            .map(|(t, s)| (t.clone(), s.entities))
            .collect()
    }

    /// Types and attributes of every entity, `visible` deciding which
    /// entities count (the caller's sight): the catalog when every entity
    /// counts, a scan otherwise.
    pub fn catalog(&self, visible: Option<&dyn Fn(&Entity) -> bool>) -> Catalog {
        let state = self.read();
        match visible {
            None => state.catalog.clone(),
            Some(visible) => {
                let mut catalog = Catalog::default();
                for e in state.entities.values().filter(|e| visible(e)) {
                    catalog.add(e);
                }
                catalog
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_core::{Attribute, Timestamp};

    fn light(n: u32, lon: f64, lat: f64) -> Entity {
        let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}")).unwrap();
        Entity::new(id, "Streetlight", None).with("location", Attribute::point(lon, lat))
    }

    #[test]
    fn pages_are_stable_and_complete() {
        let twin = Twin::from_entities((0..1000).rev().map(|n| light(n, 5.0, 47.0)));
        let mut seen = Vec::new();
        for page in 0..10 {
            let p = twin.select(Candidates::All, &|_| true, page * 100, 100, page == 0);
            if page == 0 {
                assert_eq!(p.total, Some(1000));
            }
            seen.extend(p.entities.iter().map(|e| e.id.clone()));
        }
        assert_eq!(seen.len(), 1000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn spatial_index_follows_moves_and_deletions() {
        let twin = Twin::from_entities([light(1, 5.0, 47.0), light(2, 6.0, 48.0)]);
        let near = |lon: f64, lat: f64| {
            twin.select(
                Candidates::Area {
                    min: [lon - 0.01, lat - 0.01],
                    max: [lon + 0.01, lat + 0.01],
                },
                &|_| true,
                0,
                10,
                true,
            )
            .total
        };
        assert_eq!(near(5.0, 47.0), Some(1));
        let moved = light(1, 5.5, 47.5);
        twin.commit([(moved.id.clone(), Some(Arc::new(moved)))]);
        assert_eq!(near(5.0, 47.0), Some(0));
        assert_eq!(near(5.5, 47.5), Some(1));
        twin.commit([(light(2, 0.0, 0.0).id, None)]);
        assert_eq!(near(6.0, 48.0), Some(0));
        assert_eq!(twin.len(), 1);
    }

    #[test]
    fn glances_follow_state_changes_and_locations() {
        use vigie_core::status::AssetStatus;
        let twin = Twin::from_entities([light(1, 5.0, 47.0), light(2, 5.0, 47.0)]);
        let statuses = |twin: &Twin| {
            let mut seen = Vec::new();
            twin.for_each_in([4.0, 46.0], [6.0, 48.0], &mut |g| {
                seen.push((
                    g.id.to_string(),
                    g.condition
                        .status(Timestamp::now(), jiff::SignedDuration::from_hours(1)),
                ));
            });
            seen.sort();
            seen
        };
        assert_eq!(statuses(&twin).len(), 2);
        let broken = light(1, 5.0, 47.0).with("status", Attribute::property("defectiveLamp"));
        twin.commit([(broken.id.clone(), Some(Arc::new(broken)))]);
        assert_eq!(statuses(&twin)[0].1, AssetStatus::Fault);
        assert_eq!(statuses(&twin)[1].1, AssetStatus::Working);
        // Losing its location takes it off the map, not out of the overview.
        let nowhere = Entity::new(light(2, 0.0, 0.0).id, "Streetlight", None);
        twin.commit([(nowhere.id.clone(), Some(Arc::new(nowhere)))]);
        assert_eq!(statuses(&twin).len(), 1);
        let mut unlocated = 0;
        twin.for_each_glance(&mut |s| unlocated += usize::from(matches!(s, Sighting::Unlocated(_))));
        assert_eq!(unlocated, 1);
    }

    #[test]
    fn the_catalog_follows_every_commit() {
        let twin = Twin::from_entities((0..3).map(|n| light(n, 5.0, 47.0)));
        let counts = |twin: &Twin| {
            let c = twin.catalog(None);
            let scanned = twin.catalog(Some(&|_| true));
            assert_eq!(c, scanned, "the incremental catalog drifted from a scan");
            c
        };
        assert_eq!(counts(&twin).types["Streetlight"].entities, 3);
        let lit = light(1, 5.0, 47.0).with("powerState", Attribute::property("on"));
        twin.commit([(lit.id.clone(), Some(Arc::new(lit)))]);
        let c = counts(&twin);
        assert_eq!(
            c.types["Streetlight"].attributes["powerState"][&AttributeKind::Property],
            1
        );
        assert_eq!(
            c.types["Streetlight"].attributes["location"][&AttributeKind::GeoProperty],
            3
        );
        let cabinet = Entity::new(EntityId::new("urn:ngsi-ld:Cabinet:1").unwrap(), "Cabinet", None);
        twin.commit([(cabinet.id.clone(), Some(Arc::new(cabinet)))]);
        twin.commit((0..3).map(|n| (light(n, 0.0, 0.0).id, None)));
        let c = counts(&twin);
        assert_eq!(c.types.keys().collect::<Vec<_>>(), ["Cabinet"]);
    }
}

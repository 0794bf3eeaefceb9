//! An entity's attributes: a map from name to the instances of that attribute
//! (NGSI-LD multi-attributes, clause 4.5.5), kept as one sorted, exactly sized
//! vector of `(name, instance)` pairs. A city's twin holds millions of small
//! maps (a light has a dozen attributes): a `BTreeMap` would allocate nodes of
//! eleven slots each whatever their fill, several times the attributes' size.
//!
//! Instances of one name sit next to each other, the default instance (no
//! `datasetId`) first, then by `datasetId`. A single-instance attribute costs
//! exactly what it cost before multi-attributes: one pair, no extra field.
//!
//! Name-level methods (`get`, `contains_key`, `remove`, `keys`, `len`) treat an
//! attribute with all its instances as one; instance-level methods take the
//! `datasetId` (`None` for the default instance).

use std::ops::Index;

use crate::Attribute;

/// Most instances one attribute name may hold: each is a separate source
/// (a GPS and a speedometer for one speed), a handful in practice.
pub const MAX_INSTANCES: usize = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Vec<(String, Attribute)>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// The range of positions holding `name`'s instances (empty where they would go).
    fn run(&self, name: &str) -> std::ops::Range<usize> {
        let start = self.0.partition_point(|(n, _)| n.as_str() < name);
        let len = self.0[start..].iter().take_while(|(n, _)| n == name).count();
        start..start + len
    }

    /// Where the instance `(name, dataset_id)` is, or where it would go.
    /// Within a run the search is linear: runs are one or a few instances.
    fn position(&self, name: &str, dataset_id: Option<&str>) -> Result<usize, usize> {
        let run = self.run(name);
        for i in run.clone() {
            let here = self.0[i].1.dataset_id.as_deref();
            match here.cmp(&dataset_id) {
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => return Err(i),
                std::cmp::Ordering::Less => {}
            }
        }
        Err(run.end)
    }

    /// Sets the instance of `name` with `attribute`'s `datasetId` (the default
    /// instance when it has none), returning the instance it replaces. Other
    /// instances of `name` are kept, as NGSI-LD appends and updates do.
    pub fn insert(&mut self, name: String, attribute: Attribute) -> Option<Attribute> {
        match self.position(&name, attribute.dataset_id.as_deref()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, attribute)),
            Err(i) => {
                // Grow by one, not by doubling: most maps are built once.
                self.0.reserve_exact(1);
                self.0.insert(i, (name, attribute));
                None
            }
        }
    }

    /// The attribute `name` as one value: its default instance or, when it
    /// only has instances with a `datasetId`, the first of them by `datasetId`.
    ///
    /// NGSI-LD writes without a `datasetId` target the default instance only
    /// (use [`Self::instance`] for that), but reads of an attribute (a `q`
    /// test, a geo-query, a history point) see it whatever its instances: an
    /// attribute whose only sources are named is not absent.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        let run = self.run(name);
        self.0.get(run.start).filter(|_| !run.is_empty()).map(|(_, a)| a)
    }

    /// As [`Self::get`], mutably. Changing the instance's `dataset_id` through
    /// it is a logic error (lookups would miss it): remove and insert instead.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Attribute> {
        let run = self.run(name);
        self.0.get_mut(run.start).filter(|_| !run.is_empty()).map(|(_, a)| a)
    }

    /// The instance of `name` with this `datasetId` (`None`: the default instance).
    pub fn instance(&self, name: &str, dataset_id: Option<&str>) -> Option<&Attribute> {
        self.position(name, dataset_id).ok().map(|i| &self.0[i].1)
    }

    pub fn instance_mut(&mut self, name: &str, dataset_id: Option<&str>) -> Option<&mut Attribute> {
        self.position(name, dataset_id).ok().map(|i| &mut self.0[i].1)
    }

    /// Every instance of `name`, the default one first, then by `datasetId`.
    pub fn instances(&self, name: &str) -> impl ExactSizeIterator<Item = &Attribute> + Clone {
        self.0[self.run(name)].iter().map(|(_, a)| a)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        !self.run(name).is_empty()
    }

    /// Removes the attribute `name`, every instance of it, returning what
    /// [`Self::get`] returned.
    pub fn remove(&mut self, name: &str) -> Option<Attribute> {
        let mut removed = self.0.drain(self.run(name));
        removed.next().map(|(_, a)| a)
    }

    /// Removes one instance of `name` (`None`: the default instance).
    pub fn remove_instance(&mut self, name: &str, dataset_id: Option<&str>) -> Option<Attribute> {
        self.position(name, dataset_id).ok().map(|i| self.0.remove(i).1)
    }

    /// The number of attribute names (not instances): counted, as maps are small.
    pub fn len(&self) -> usize {
        self.keys().count()
    }

    /// The number of instances, all names together.
    pub fn instance_count(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every instance with its name, in name order then as [`Self::instances`].
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Attribute)> {
        self.0.iter().map(|(n, a)| (n, a))
    }

    /// Each attribute name once, in order, with its instances (never empty).
    pub fn by_name(&self) -> impl Iterator<Item = (&String, &[(String, Attribute)])> {
        self.0
            .chunk_by(|(a, _), (b, _)| a == b)
            .filter_map(|run| run.first().map(|(name, _)| (name, run)))
    }

    /// Each attribute name once, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_name().map(|(name, _)| name)
    }

    /// Every instance, as [`Self::iter`].
    pub fn values(&self) -> impl Iterator<Item = &Attribute> {
        self.0.iter().map(|(_, a)| a)
    }
}

impl Extend<(String, Attribute)> for Attributes {
    fn extend<I: IntoIterator<Item = (String, Attribute)>>(&mut self, items: I) {
        for (name, attribute) in items {
            self.insert(name, attribute);
        }
    }
}

impl FromIterator<(String, Attribute)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Attribute)>>(items: I) -> Self {
        let mut all: Vec<(String, Attribute)> = items.into_iter().collect();
        // Sorted and deduplicated, the last instance of a (name, datasetId)
        // winning as with `insert`: reversed, then a stable sort keeps it first.
        all.reverse();
        all.sort_by(|(n1, a1), (n2, a2)| (n1, &a1.dataset_id).cmp(&(n2, &a2.dataset_id)));
        all.dedup_by(|later, kept| later.0 == kept.0 && later.1.dataset_id == kept.1.dataset_id);
        all.shrink_to_fit();
        Self(all)
    }
}

impl IntoIterator for Attributes {
    type Item = (String, Attribute);
    type IntoIter = std::vec::IntoIter<(String, Attribute)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a String, &'a Attribute);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, Attribute)>, fn(&'a (String, Attribute)) -> Self::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, a)| (n, a))
    }
}

impl Index<&str> for Attributes {
    type Output = Attribute;
    /// Panics when absent, like `BTreeMap`'s index: for tests and known names.
    fn index(&self, name: &str) -> &Attribute {
        match self.get(name) {
            Some(a) => a,
            None => panic!("no attribute '{name}'"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_dataset(value: i64, dataset_id: &str) -> Attribute {
        let mut a = Attribute::property(value);
        a.dataset_id = Some(dataset_id.to_owned());
        a
    }

    #[test]
    fn behaves_as_a_sorted_map() {
        let mut m = Attributes::new();
        assert!(m.insert("status".into(), Attribute::property("ok")).is_none());
        assert!(m.insert("location".into(), Attribute::point(5.0, 47.0)).is_none());
        let old = m.insert("status".into(), Attribute::property("defectiveLamp"));
        assert_eq!(old.map(|a| a.value), Some(serde_json::json!("ok")));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["location", "status"]);
        assert_eq!(m["status"].value, "defectiveLamp");
        assert!(m.contains_key("location") && !m.contains_key("name"));
        assert!(m.remove("location").is_some());
        assert_eq!(m.len(), 1);

        let built: Attributes = [
            ("b".to_owned(), Attribute::property(1)),
            ("a".to_owned(), Attribute::property(2)),
            ("b".to_owned(), Attribute::property(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(built.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(built["b"].value, 3, "the last value of a name wins");
    }

    #[test]
    fn instances_are_kept_apart_by_dataset_id() {
        let mut m = Attributes::new();
        m.insert("speed".into(), in_dataset(52, "urn:gps"));
        m.insert("speed".into(), in_dataset(50, "urn:meter"));
        m.insert("name".into(), Attribute::property("bus 12"));
        // No default instance: `get` reads the first by datasetId.
        assert_eq!(m["speed"].value, 52);
        assert!(m.instance("speed", None).is_none());
        m.insert("speed".into(), Attribute::property(51));
        assert_eq!(m["speed"].value, 51, "the default instance comes first");
        assert_eq!(
            m.instances("speed").map(|a| a.value.clone()).collect::<Vec<_>>(),
            [51, 52, 50]
        );
        assert_eq!(
            m.instance("speed", Some("urn:meter")).map(|a| &a.value),
            Some(&50.into())
        );

        let replaced = m.insert("speed".into(), in_dataset(53, "urn:gps"));
        assert_eq!(replaced.map(|a| a.value), Some(52.into()));
        assert_eq!((m.len(), m.instance_count()), (2, 4));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["name", "speed"]);
        assert_eq!(m.by_name().map(|(_, run)| run.len()).collect::<Vec<_>>(), [1, 3]);

        assert_eq!(m.remove_instance("speed", None).map(|a| a.value), Some(51.into()));
        assert!(m.remove_instance("speed", None).is_none());
        assert_eq!(m["speed"].value, 53);
        assert!(m.remove("speed").is_some());
        assert!(!m.contains_key("speed") && m.instance_count() == 1);
    }

    #[test]
    fn collecting_keeps_the_last_instance_of_each_dataset_id() {
        let built: Attributes = [
            ("a".to_owned(), in_dataset(1, "urn:d1")),
            ("a".to_owned(), Attribute::property(2)),
            ("a".to_owned(), in_dataset(3, "urn:d1")),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            built.instances("a").map(|a| a.value.clone()).collect::<Vec<_>>(),
            [2, 3]
        );
    }
}

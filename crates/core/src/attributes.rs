//! An entity's attributes: a map from name to [`Attribute`], kept as one
//! sorted, exactly sized vector. A city's twin holds millions of small maps
//! (a light has a dozen attributes): a `BTreeMap` would allocate nodes of
//! eleven slots each whatever their fill, several times the attributes' size.

use std::ops::Index;

use crate::Attribute;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Vec<(String, Attribute)>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Sets `name`, returning the attribute it replaces.
    pub fn insert(&mut self, name: String, attribute: Attribute) -> Option<Attribute> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, attribute)),
            Err(i) => {
                // Grow by one, not by doubling: most maps are built once.
                self.0.reserve_exact(1);
                self.0.insert(i, (name, attribute));
                None
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Attribute> {
        self.position(name).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    pub fn remove(&mut self, name: &str) -> Option<Attribute> {
        self.position(name).ok().map(|i| self.0.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In name order, like every other iterator here.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Attribute)> {
        self.0.iter().map(|(n, a)| (n, a))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(n, _)| n)
    }

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
        // Sorted and deduplicated, the last value of a name winning as with `insert`.
        all.reverse();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|later, kept| later.0 == kept.0);
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
}

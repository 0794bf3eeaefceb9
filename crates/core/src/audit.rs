//! The audit trail's chain: records that each carry the hash of the one
//! before, so that changing, removing or reordering any of them is detected
//! and named. Pure: the server appends and stores, this module seals records
//! and verifies a sequence of them.
//!
//! What the chain proves, and what it does not:
//! - any edit of a record's content breaks its own hash ([`Problem::Changed`]);
//! - a deleted record leaves a gap in the sequence numbers ([`Problem::Removed`]);
//! - a moved record (or renumbered ones) breaks the link to its predecessor
//!   ([`Problem::Reordered`]);
//! - cutting the tail leaves a valid, shorter chain: only an *anchor* kept
//!   elsewhere (the last sequence number and hash) reveals it
//!   ([`Problem::Truncated`]), and a chain rewritten wholesale with recomputed
//!   hashes is caught only where it disagrees with that anchor
//!   ([`Problem::AnchorMismatch`]). There is no secret in the hash: whoever can
//!   rewrite both the records and the anchor defeats it, which is why the
//!   anchor should also be shipped to another system (docs/security.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Timestamp;
use crate::access::Role;

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bumped if the hashed encoding ever changes; part of every hash.
const DOMAIN: &[u8] = b"vigie-audit-v1";

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by access control (401/403).
    Denied,
    /// Attempted and failed (not found, conflict, invalid, store error).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Denied, Outcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome '{0}': expected ok, denied or failed")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, UnknownOutcome> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// What happened, who did it, from where: an audit record before it has a
/// place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When, to the microsecond (what the store keeps; finer is truncated when sealed).
    pub at: Timestamp,
    /// Who: the principal's subject (user name, API key or service name,
    /// `vigie` for the platform itself).
    pub actor: String,
    /// The role acted as; none when unknown (a failed login).
    pub role: Option<Role>,
    /// How the actor proved who it is: `session`, `api-key`, `anonymous`, `system`...
    pub credential: String,
    /// The client's IP address, when there is one.
    pub source: Option<String>,
    /// A dotted verb: `entity.update`, `device.provision`, `login.failed`...
    pub action: String,
    /// What it concerns: an entity id, a device id, a user name.
    pub target: Option<String>,
    pub outcome: Outcome,
    /// Why it was denied or failed, or a short summary.
    pub detail: Option<String>,
    /// The state before the action, when it changed something.
    pub before: Option<Value>,
    /// The state after the action.
    pub after: Option<Value>,
}

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// 1, 2, 3... with no gap.
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and every other field, lowercase hex.
    pub hash: String,
}

/// The end of a chain: what an anchor keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl Head {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }

    pub fn of(record: &AuditRecord) -> Self {
        Self {
            seq: record.seq,
            hash: record.hash.clone(),
        }
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {} hash {}", self.seq, self.hash)
    }
}

impl AuditRecord {
    /// Places an event after `prev` in the chain: the next sequence number,
    /// the link, and the hash. The time is truncated to the microsecond so
    /// that the record reads back from the store exactly as it was hashed.
    pub fn seal(prev: &Head, mut event: AuditEvent) -> Self {
        event.at = Timestamp::from_microsecond(event.at.as_microsecond()).unwrap_or(event.at);
        let mut record = Self {
            seq: prev.seq + 1,
            event,
            prev_hash: prev.hash.clone(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        record
    }

    /// The hash the record's content gives, whatever its `hash` field says.
    ///
    /// The encoding is unambiguous by construction: a domain tag, then every
    /// field in a fixed order, integers as 8 bytes big-endian, strings as an
    /// 8-byte length then their UTF-8 bytes, optional fields as a 0/1 byte
    /// then the value. Length prefixes mean no choice of content can make two
    /// different records encode alike (`actor="a", target="bc"` vs
    /// `actor="ab", target="c"`), which plain concatenation or separators
    /// would allow. `before`/`after` are JSON, hashed as their canonical text
    /// (object keys sorted, no whitespace) so that an engine storing JSON with
    /// another key order (PostgreSQL `jsonb`) still verifies. The whole
    /// record is not hashed as one JSON text because the envelope would then
    /// depend on a JSON canonicalization for every field, which an external
    /// verifier in another language would have to reproduce exactly;
    /// docs/security.md describes this encoding for such verifiers.
    pub fn compute_hash(&self) -> String {
        let e = &self.event;
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(self.seq.to_be_bytes());
        put_str(&mut h, &self.prev_hash);
        h.update(e.at.as_microsecond().to_be_bytes());
        put_str(&mut h, &e.actor);
        put_opt(&mut h, e.role.map(Role::as_str));
        put_str(&mut h, &e.credential);
        put_opt(&mut h, e.source.as_deref());
        put_str(&mut h, &e.action);
        put_opt(&mut h, e.target.as_deref());
        put_str(&mut h, e.outcome.as_str());
        put_opt(&mut h, e.detail.as_deref());
        put_opt(&mut h, e.before.as_ref().map(canonical_json).as_deref());
        put_opt(&mut h, e.after.as_ref().map(canonical_json).as_deref());
        hex(&h.finalize())
    }
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn put_opt(h: &mut Sha256, s: Option<&str>) {
    match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            put_str(h, s);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// JSON text with object keys sorted (by their UTF-8 bytes) and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(child) = m.get(k) {
                    write_canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first thing wrong with a trail, naming the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// The record's content does not give its hash: it was edited.
    #[error("record {seq} was changed (its content does not match its hash)")]
    Changed { seq: u64 },
    /// Sequence numbers jump: `missing` records after `after_seq` are gone.
    #[error("{}", removed_message(*after_seq, *missing))]
    Removed {
        #[serde(rename = "afterSeq")]
        after_seq: u64,
        missing: u64,
    },
    /// The record does not link to the one before it: records were moved or
    /// renumbered (or the one before was rewritten with a recomputed hash).
    #[error("record {seq} is out of order (it does not follow record {} in the chain)", seq.saturating_sub(1))]
    Reordered { seq: u64 },
    /// The chain ends before the anchor's head: its tail was cut.
    #[error("{}", truncated_message(*last_seq, *anchor_seq))]
    Truncated {
        #[serde(rename = "lastSeq")]
        last_seq: u64,
        #[serde(rename = "anchorSeq")]
        anchor_seq: u64,
    },
    /// The record at the anchor's sequence number is not the one anchored:
    /// the chain was rewritten (hashes recomputed) up to there.
    #[error("record {seq} does not match the anchor (the trail was rewritten up to it)")]
    AnchorMismatch { seq: u64 },
}

fn removed_message(after_seq: u64, missing: u64) -> String {
    if missing == 1 {
        format!("record {} is missing", after_seq + 1)
    } else {
        format!("records {}–{} are missing", after_seq + 1, after_seq + missing)
    }
}

fn truncated_message(last_seq: u64, anchor_seq: u64) -> String {
    if last_seq == 0 {
        format!("the trail is empty but the anchor says {anchor_seq}")
    } else {
        format!("the trail ends at {last_seq} but the anchor says {anchor_seq}")
    }
}

impl Problem {
    /// The record the problem is at (for `Truncated`, the anchor's).
    pub fn seq(&self) -> u64 {
        match *self {
            Problem::Changed { seq } | Problem::Reordered { seq } | Problem::AnchorMismatch { seq } => seq,
            Problem::Removed { after_seq, .. } => after_seq + 1,
            Problem::Truncated { anchor_seq, .. } => anchor_seq,
        }
    }
}

/// A trail that verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub records: u64,
    /// The last record's seq and hash; `None` for an empty trail.
    pub head: Option<Head>,
    /// Whether an anchor was checked (without one, a cut tail goes unseen).
    pub anchored: bool,
}

/// Checks records one at a time, in sequence order, so that a trail of any
/// length is verified in constant memory.
#[derive(Debug, Clone)]
pub struct Verifier {
    anchor: Option<Head>,
    last: Head,
    records: u64,
}

impl Verifier {
    /// `anchor`: the head recorded outside the trail, if any. Records past it
    /// are accepted (the anchor is written after the records, so it may lag).
    pub fn new(anchor: Option<Head>) -> Self {
        Self {
            anchor,
            last: Head::genesis(),
            records: 0,
        }
    }

    /// The next record, in sequence-number order (as the store reads them;
    /// sort an export by `seq` before verifying it).
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), Problem> {
        let expected = self.last.seq + 1;
        if r.seq < expected {
            return Err(Problem::Reordered { seq: r.seq });
        }
        if r.seq > expected {
            return Err(Problem::Removed {
                after_seq: self.last.seq,
                missing: r.seq - expected,
            });
        }
        if r.prev_hash != self.last.hash {
            return Err(Problem::Reordered { seq: r.seq });
        }
        if r.compute_hash() != r.hash {
            return Err(Problem::Changed { seq: r.seq });
        }
        if let Some(a) = &self.anchor
            && a.seq == r.seq
            && a.hash != r.hash
        {
            return Err(Problem::AnchorMismatch { seq: r.seq });
        }
        self.last = Head::of(r);
        self.records += 1;
        Ok(())
    }

    /// The head verified so far.
    pub fn head(&self) -> &Head {
        &self.last
    }

    /// Ends the trail: it must reach the anchor.
    pub fn finish(self) -> Result<Verified, Problem> {
        if let Some(a) = &self.anchor
            && a.seq > self.last.seq
        {
            return Err(Problem::Truncated {
                last_seq: self.last.seq,
                anchor_seq: a.seq,
            });
        }
        Ok(Verified {
            records: self.records,
            head: (self.records > 0).then_some(self.last),
            anchored: self.anchor.is_some(),
        })
    }
}

/// Verifies a whole trail held in memory (tests, small exports).
pub fn verify<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    anchor: Option<&Head>,
) -> Result<Verified, Problem> {
    let mut v = Verifier::new(anchor.cloned());
    for r in records {
        v.push(r)?;
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(n: u64) -> AuditEvent {
        AuditEvent {
            at: Timestamp::from_second(1_795_000_000 + i64::try_from(n).unwrap()).unwrap(),
            actor: "camille".into(),
            role: Some(Role::Operator),
            credential: "session".into(),
            source: Some("192.0.2.7".into()),
            action: "entity.update".into(),
            target: Some(format!("urn:ngsi-ld:Streetlight:dijon:{n:06}")),
            outcome: Outcome::Ok,
            detail: None,
            before: Some(json!({"powerState": {"type": "Property", "value": "off"}})),
            after: Some(json!({"powerState": {"type": "Property", "value": "on"}, "n": n})),
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut head = Head::genesis();
        (1..=n)
            .map(|i| {
                let r = AuditRecord::seal(&head, event(i));
                head = Head::of(&r);
                r
            })
            .collect()
    }

    fn anchor(records: &[AuditRecord]) -> Head {
        Head::of(records.last().unwrap())
    }

    #[test]
    fn an_untouched_chain_verifies_with_its_anchor() {
        let c = chain(10);
        let ok = verify(&c, Some(&anchor(&c))).unwrap();
        assert_eq!(ok.records, 10);
        assert_eq!(ok.head, Some(anchor(&c)));
        assert!(ok.anchored);
        assert_eq!(c[0].prev_hash, GENESIS);
        assert_eq!(c[0].hash.len(), 64);
        assert!(verify(&[], None).unwrap().head.is_none());
        assert!(verify(&[], Some(&Head::genesis())).is_ok());
    }

    #[test]
    fn an_edited_record_is_named() {
        let mut c = chain(10);
        let a = anchor(&c);
        c[4].event.after = Some(json!({"powerState": {"type": "Property", "value": "off"}}));
        assert_eq!(verify(&c, Some(&a)), Err(Problem::Changed { seq: 5 }));

        // Every field is covered by the hash.
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.event.actor.push('x')),
            Box::new(|r| r.event.role = Some(Role::Administrator)),
            Box::new(|r| r.event.role = None),
            Box::new(|r| r.event.credential = "api-key".into()),
            Box::new(|r| r.event.source = None),
            Box::new(|r| r.event.action = "entity.delete".into()),
            Box::new(|r| r.event.target = Some("urn:x".into())),
            Box::new(|r| r.event.outcome = Outcome::Denied),
            Box::new(|r| r.event.detail = Some("nothing happened".into())),
            Box::new(|r| r.event.before = None),
            Box::new(|r| r.event.at += jiff::SignedDuration::from_micros(1)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut c = chain(3);
            edit(&mut c[1]);
            assert_eq!(verify(&c, None), Err(Problem::Changed { seq: 2 }), "edit {i}");
        }
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut c = chain(10);
        let a = anchor(&c);
        c.remove(3);
        let err = verify(&c, Some(&a)).unwrap_err();
        assert_eq!(
            err,
            Problem::Removed {
                after_seq: 3,
                missing: 1
            }
        );
        assert_eq!(err.to_string(), "record 4 is missing");

        let mut c = chain(10);
        c.drain(0..2);
        assert_eq!(verify(&c, None).unwrap_err().to_string(), "records 1–2 are missing");
    }

    #[test]
    fn reordered_records_are_named() {
        // Two records' sequence numbers swapped (the store reads in seq order).
        let mut c = chain(10);
        let a = anchor(&c);
        c.swap(5, 6);
        c[5].seq = 6;
        c[6].seq = 7;
        let err = verify(&c, Some(&a)).unwrap_err();
        assert_eq!(err, Problem::Reordered { seq: 6 });
        assert_eq!(
            err.to_string(),
            "record 6 is out of order (it does not follow record 5 in the chain)"
        );

        // A record removed and the later ones renumbered to hide the gap.
        let mut c = chain(10);
        c.remove(2);
        for r in &mut c[2..] {
            r.seq -= 1;
        }
        assert_eq!(verify(&c, None), Err(Problem::Reordered { seq: 3 }));
    }

    #[test]
    fn a_cut_tail_is_caught_by_the_anchor_only() {
        let mut c = chain(12);
        let a = anchor(&c);
        c.truncate(9);
        assert!(verify(&c, None).is_ok(), "the chain alone cannot tell");
        let err = verify(&c, Some(&a)).unwrap_err();
        assert_eq!(
            err,
            Problem::Truncated {
                last_seq: 9,
                anchor_seq: 12
            }
        );
        assert_eq!(err.to_string(), "the trail ends at 9 but the anchor says 12");
        assert_eq!(
            verify(&[], Some(&a)).unwrap_err().to_string(),
            "the trail is empty but the anchor says 12"
        );
    }

    #[test]
    fn a_rewritten_chain_is_caught_by_the_anchor_only() {
        let c = chain(6);
        let a = anchor(&c);
        // Edit record 2 and recompute every hash from there: a valid chain.
        let mut head = Head::of(&c[0]);
        let mut forged = vec![c[0].clone()];
        for r in &c[1..] {
            let mut e = r.event.clone();
            if r.seq == 2 {
                e.after = Some(json!("forged"));
            }
            let f = AuditRecord::seal(&head, e);
            head = Head::of(&f);
            forged.push(f);
        }
        assert!(verify(&forged, None).is_ok());
        assert_eq!(verify(&forged, Some(&a)), Err(Problem::AnchorMismatch { seq: 6 }));
    }

    #[test]
    fn records_past_the_anchor_are_accepted() {
        let c = chain(5);
        let lagging = Head::of(&c[2]);
        assert_eq!(verify(&c, Some(&lagging)).unwrap().records, 5);
    }

    #[test]
    fn the_encoding_is_unambiguous_and_stable() {
        let mut a = event(1);
        let mut b = event(1);
        a.actor = "ab".into();
        a.credential = "c".into();
        b.actor = "a".into();
        b.credential = "bc".into();
        let g = Head::genesis();
        assert_ne!(AuditRecord::seal(&g, a).hash, AuditRecord::seal(&g, b).hash);

        let mut some_empty = event(1);
        some_empty.detail = Some(String::new());
        assert_ne!(
            AuditRecord::seal(&g, some_empty).hash,
            AuditRecord::seal(&g, event(1)).hash,
            "None and Some(\"\") differ"
        );

        // Key order does not matter; values do.
        let mut x = event(1);
        let mut y = event(1);
        x.after = Some(serde_json::from_str(r#"{"a":1,"b":[true,null,"é"]}"#).unwrap());
        y.after = Some(serde_json::from_str(r#"{ "b": [true, null, "é"], "a": 1 }"#).unwrap());
        assert_eq!(AuditRecord::seal(&g, x).hash, AuditRecord::seal(&g, y).hash);
        assert_eq!(
            canonical_json(&json!({"z": {"b": 1, "a": 2}, "a": "\"q\""})),
            r#"{"a":"\"q\"","z":{"a":2,"b":1}}"#
        );
    }

    #[test]
    fn sealing_truncates_time_to_the_microsecond() {
        let mut e = event(1);
        e.at = Timestamp::from_nanosecond(1_795_000_000_123_456_789).unwrap();
        let r = AuditRecord::seal(&Head::genesis(), e);
        assert_eq!(r.event.at.as_nanosecond(), 1_795_000_000_123_456_000);
        assert_eq!(r.compute_hash(), r.hash);
    }

    #[test]
    fn records_round_trip_through_json() {
        let c = chain(2);
        let text = serde_json::to_string(&c[1]).unwrap();
        assert!(text.contains("\"prevHash\""), "{text}");
        let back: AuditRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c[1]);
        assert_eq!(back.compute_hash(), back.hash);
        let p = serde_json::to_value(Problem::Removed {
            after_seq: 3,
            missing: 2,
        })
        .unwrap();
        assert_eq!(p, json!({"problem": "removed", "afterSeq": 3, "missing": 2}));
    }
}

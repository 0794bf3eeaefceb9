//! The two rmqtt extension points Vigie must fill in.
//!
//! rmqtt 0.24's core ships stubs for both: its default `SharedSubscription`
//! says "unsupported" (CONNACK then advertises no shared subscriptions and
//! `$share/...` filters are refused) and its default `RetainStorage` drops
//! every retained message with a warning (the real ones live in rmqtt's
//! plugins, which we do not pull in). Both implementations here are small,
//! in-memory and per broker instance: no state is shared between brokers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rmqtt::context::ServerContext;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, Retain, SharedGroup, SubscriptionIdentifier, SubscriptionOptions, TopicFilter,
    TopicName,
};

/// A member of a share group as rmqtt hands it to [`SharedSubscription::choice`].
type GroupMember = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

/// Round-robin over the members of each share group, preferring connected ones.
///
/// Each message matching `$share/{group}/{filter}` goes to exactly one member.
/// If no member is connected, the next one in turn still gets the message: its
/// persistent session queues it until it reconnects (or the session expires).
#[derive(Default)]
pub(crate) struct RoundRobinSharedSubscription {
    /// Next position per (group, filter-independent) share group name.
    cursors: Mutex<HashMap<SharedGroup, usize>>,
}

impl RoundRobinSharedSubscription {
    fn next_start(&self, group: &SharedGroup) -> usize {
        // A poisoned lock only means another thread panicked mid-increment:
        // the counter is still a usable number.
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        let cursor = cursors.entry(group.clone()).or_default();
        let start = *cursor;
        *cursor = cursor.wrapping_add(1);
        start
    }
}

#[async_trait]
impl SharedSubscription for RoundRobinSharedSubscription {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        group: &SharedGroup,
        _publisher_id: &Id,
        _topic: &TopicName,
        members: &[GroupMember],
    ) -> Option<(usize, IsOnline)> {
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.next_start(group);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&idx| members[idx].4 == Some(true))
            .map(|idx| (idx, true))
            .or(Some((start % n, false)))
    }
}

/// In-memory retained messages, delegating to rmqtt's own retain tree.
///
/// Expired retained messages are filtered out on read and replaced on write;
/// nothing sweeps them in the background (no extra task per broker).
#[derive(Default)]
pub(crate) struct MemoryRetainStorage {
    inner: DefaultRetainStorage,
}

#[async_trait]
impl RetainStorage for MemoryRetainStorage {
    fn enable(&self) -> bool {
        true
    }

    async fn set(&self, topic: &TopicName, retain: Retain, expiry_interval: Option<Duration>) -> rmqtt::Result<()> {
        self.inner.set_with_timeout(topic, retain, expiry_interval).await
    }

    async fn get(&self, topic_filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.inner.get_message(topic_filter).await
    }

    async fn get_all_paginated(
        &self,
        offset: usize,
        limit: usize,
    ) -> rmqtt::Result<(Vec<(TopicName, Retain, Option<Duration>)>, bool)> {
        self.inner.get_all_paginated(offset, limit).await
    }

    async fn count(&self) -> isize {
        self.inner.count().await
    }

    async fn max(&self) -> isize {
        self.inner.max().await
    }
}

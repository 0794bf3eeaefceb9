//! Ingestion: everything that changes the twin goes through one bounded queue
//! to one writer, which commits batches to the store and only then updates the
//! twin, acknowledges MQTT messages and answers HTTP writers.
//!
//! ```text
//! MQTT consumer ─┐                      ┌─▶ store (one transaction per batch)
//!                ├─▶ bounded queue ─▶ writer ─▶ twin
//! NGSI-LD API  ──┘   (backpressure)     └─▶ MQTT acks, HTTP replies
//! ```

pub mod gatekeeper;
pub mod mqtt;
pub mod registry;
pub mod writer;

pub use registry::DeviceRegistry;
pub use writer::{
    Acknowledge, AuditNote, AuditTrail, Audited, BatchKind, Change, ChangeObserver, Edit, Edited, IngestHandle, Work,
    WriteError, WriteOp, WriteOutcome, Writer, WriterTask,
};

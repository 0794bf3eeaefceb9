//! What a rule does besides raising and clearing alarms (the alarm desk's
//! own work): commands to equipment, notifications, attribute changes, work
//! orders and public information. Each is carried out without making the
//! desk wait on a network or the writer, and recorded in the audit trail
//! under the rule's name and version.

use std::sync::Arc;

use serde_json::json;
use vigie_core::rules::{Channel, Firing, Priority, RuleAction, template};
use vigie_core::{Attribute, Entity, EntityId, Observation, Timestamp};

use crate::audit::Audit;
use crate::ingest::{IngestHandle, WriteError, WriteOp};
use crate::notify::Notifier;

/// A rule's request for field work on one piece of equipment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkOrderRequest {
    /// What to do, as the rule names it: `lamp-replacement`, `gritting`.
    pub kind: String,
    pub priority: Priority,
    pub equipment: EntityId,
    pub scope: Option<vigie_core::Scope>,
    /// Longitude, latitude.
    pub location: Option<(f64, f64)>,
    /// `rule:<id> v<version>`.
    pub requested_by: String,
    pub requested_at: Timestamp,
}

/// Where work orders are opened. The field-operations capability implements
/// it with its work-order register; until then [`AuditedWorkOrders`] keeps
/// each request in the audit trail.
#[async_trait::async_trait]
pub trait WorkOrders: Send + Sync {
    /// Opens a work order; returns its reference.
    async fn open(&self, request: WorkOrderRequest) -> anyhow::Result<String>;
}

/// Work-order requests recorded as `work-order.request` audit events, for
/// the field team to pick up until the work-order register exists.
pub struct AuditedWorkOrders {
    pub audit: Arc<Audit>,
}

#[async_trait::async_trait]
impl WorkOrders for AuditedWorkOrders {
    async fn open(&self, request: WorkOrderRequest) -> anyhow::Result<String> {
        let event = vigie_core::audit::AuditEvent {
            target: Some(request.equipment.to_string()),
            detail: Some(serde_json::to_string(&request)?),
            ..crate::audit::system_event("work-order.request")
        };
        let head = self.audit.record(event).await?;
        Ok(format!("audit-{}", head.seq))
    }
}

pub struct Actions {
    commands: Arc<crate::commands::Commands>,
    notifier: Arc<Notifier>,
    ingest: IngestHandle,
    work_orders: Arc<dyn WorkOrders>,
    audit: Arc<Audit>,
}

impl Actions {
    pub fn new(
        commands: Arc<crate::commands::Commands>,
        notifier: Arc<Notifier>,
        ingest: IngestHandle,
        work_orders: Arc<dyn WorkOrders>,
        audit: Arc<Audit>,
    ) -> Self {
        Self {
            commands,
            notifier,
            ingest,
            work_orders,
            audit,
        }
    }

    /// Carries out one action of a firing on `entity` (alarms excepted).
    /// A clearing firing only ends what the rule published.
    pub async fn carry_out(&self, firing: &Firing, entity: &Entity, action: &RuleAction) {
        let by = format!("rule:{} v{}", firing.rule_id, firing.rule_version);
        match action {
            RuleAction::RaiseAlarm { .. } | RuleAction::ClearAlarm { .. } => {}
            RuleAction::PublishInformation { .. } if firing.cleared => {
                self.end_information(firing, entity);
            }
            _ if firing.cleared => {}
            RuleAction::SendCommand { command, value } => {
                if let Err(e) = self
                    .commands
                    .send(entity, command, value, &format!("rule:{}", firing.rule_id))
                    .await
                {
                    tracing::warn!(rule = %firing.rule_id, entity = %entity.id, error = %e, "a rule's command was refused");
                }
            }
            RuleAction::Notify { channel, to, template } => {
                let text = template::render(template, entity);
                let what = format!("{by} on {}", entity.id);
                match channel {
                    Channel::Webhook => self.notifier.post_json(
                        to,
                        json!({
                            "rule": {"id": &*firing.rule_id, "version": firing.rule_version},
                            "entityId": entity.id,
                            "at": firing.at,
                            "text": text,
                        }),
                        what,
                    ),
                    Channel::Email => {
                        let subject = format!("[Vigie] {}", text.lines().next().unwrap_or_default());
                        let body = format!("{text}\n\n{by}, {}\n", entity.id);
                        self.notifier.mail(to, subject, body, what);
                    }
                }
                self.record(&by, "rule.notify", entity, format!("{} {to}", channel.as_str()));
            }
            RuleAction::SetAttribute { name, value } => {
                let observation = Observation {
                    entity_id: entity.id.clone(),
                    attribute: name.clone(),
                    value: value.clone(),
                    observed_at: firing.at,
                    unit_code: None,
                };
                self.write(
                    WriteOp::Observe {
                        entity: entity.clone(),
                        observations: vec![observation],
                        create: false,
                    },
                    &by,
                );
                self.record(&by, "rule.set-attribute", entity, format!("{name} = {value}"));
            }
            RuleAction::OpenWorkOrder { kind, priority } => {
                let request = WorkOrderRequest {
                    kind: kind.clone(),
                    priority: *priority,
                    equipment: entity.id.clone(),
                    scope: entity.scope.clone(),
                    location: entity.point(),
                    requested_by: by.clone(),
                    requested_at: firing.at,
                };
                let work_orders = Arc::clone(&self.work_orders);
                tokio::spawn(async move {
                    let equipment = request.equipment.clone();
                    match work_orders.open(request).await {
                        Ok(reference) => tracing::info!(%equipment, reference, by, "work order requested"),
                        Err(e) => tracing::error!(%equipment, by, error = %e, "the work order could not be opened"),
                    }
                });
            }
            RuleAction::PublishInformation { template, category } => {
                match information(firing, entity, template, category.as_deref()) {
                    Some(alert) => {
                        self.write(
                            WriteOp::Batch {
                                kind: crate::ingest::BatchKind::UpsertReplace,
                                entities: vec![alert],
                            },
                            &by,
                        );
                        self.record(
                            &by,
                            "rule.publish-information",
                            entity,
                            template::render(template, entity),
                        );
                    }
                    None => {
                        tracing::warn!(rule = %firing.rule_id, entity = %entity.id, "no id for the public information")
                    }
                }
            }
        }
    }

    /// The published information ends when the rule clears (`validTo`).
    fn end_information(&self, firing: &Firing, entity: &Entity) {
        let Some(id) = information_id(&firing.rule_id, &entity.id) else {
            return;
        };
        let at = firing.at;
        let edit: crate::ingest::Edit = Box::new(move |alert: &mut Entity| {
            alert
                .attributes
                .insert("validTo".into(), Attribute::property(json!(at)));
            Ok(crate::ingest::Edited {
                updated: vec!["validTo".into()],
                not_updated: Vec::new(),
            })
        });
        self.write(
            WriteOp::Edit { id, edit },
            &format!("rule:{} v{}", firing.rule_id, firing.rule_version),
        );
    }

    /// Queues a write without waiting for it: the desk goes on.
    fn write(&self, op: WriteOp, by: &str) {
        let ingest = self.ingest.clone();
        let by = by.to_owned();
        tokio::spawn(async move {
            match ingest.write(op).await {
                Ok(_) => {}
                // The equipment or information went away meanwhile: nothing to change.
                Err(e @ WriteError::NotFound(_)) => tracing::info!(by, error = %e, "a rule's write found nothing"),
                Err(e) => tracing::warn!(by, error = %e, "a rule's write failed"),
            }
        });
    }

    fn record(&self, by: &str, verb: &str, entity: &Entity, detail: String) {
        let event = vigie_core::audit::AuditEvent {
            target: Some(entity.id.to_string()),
            detail: Some(format!("{by}: {detail}")),
            ..crate::audit::system_event(verb)
        };
        let audit = Arc::clone(&self.audit);
        tokio::spawn(async move {
            if let Err(e) = audit.record(event).await {
                tracing::error!(error = %e, "cannot audit a rule's action");
            }
        });
    }
}

/// One information item per rule and equipment: a rule firing again
/// replaces it rather than adding another.
fn information_id(rule: &str, source: &EntityId) -> Option<EntityId> {
    EntityId::new(format!("urn:ngsi-ld:Alert:rule:{rule}:{source}")).ok()
}

/// The public information as a Smart Data Models `Alert`, where and in the
/// scope of its source.
fn information(firing: &Firing, source: &Entity, text: &str, category: Option<&str>) -> Option<Entity> {
    let id = information_id(&firing.rule_id, &source.id)?;
    let category = category.unwrap_or_else(|| default_category(source));
    let mut alert = Entity::new(id, "Alert", source.scope.clone())
        .with("category", Attribute::property(category))
        .with("description", Attribute::property(template::render(text, source)))
        .with("alertSource", Attribute::property(source.id.as_str()))
        .with("dateIssued", Attribute::property(json!(firing.at)))
        .with("validFrom", Attribute::property(json!(firing.at)))
        .with("severity", Attribute::property("informational"));
    if let Some(location) = source.attributes.get("location") {
        alert = alert.with("location", location.clone());
    }
    Some(alert)
}

/// The `Alert` category a business line's information falls in.
fn default_category(source: &Entity) -> &'static str {
    if source.entity_type.starts_with("Weather") {
        return "weather";
    }
    match source.scope.as_ref().map(|s| s.business_line.as_str()) {
        Some("traffic" | "roads" | "parking" | "fleet") => "traffic",
        Some("environment" | "water" | "waste" | "green-spaces") => "environment",
        _ => "security",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn information_is_an_alert_in_its_source_scope() {
        let scope = vigie_core::Scope::from_ngsi("/dijon/roads").expect("scope");
        let station = Entity::new(
            EntityId::conventional("WeatherObserved", "dijon", "w1").expect("id"),
            "WeatherObserved",
            Some(scope.clone()),
        )
        .with("location", Attribute::point(5.04, 47.32))
        .with("name", Attribute::property("Station Darcy"));
        let firing = Firing {
            rule_id: "frost-on-roads".into(),
            rule_version: 2,
            entity_id: station.id.clone(),
            actions: Arc::from(Vec::new()),
            cleared: false,
            at: "2026-12-01T05:00:00Z".parse().expect("ts"),
        };
        let alert = information(&firing, &station, "Verglas près de {name}", None).expect("alert");
        assert_eq!(
            alert.id.as_str(),
            "urn:ngsi-ld:Alert:rule:frost-on-roads:urn:ngsi-ld:WeatherObserved:dijon:w1"
        );
        assert_eq!(alert.entity_type, "Alert");
        assert_eq!(alert.scope, Some(scope));
        let text = |name: &str| alert.attributes.get(name).map(|a| a.value.clone());
        assert_eq!(text("description"), Some(Value::from("Verglas près de Station Darcy")));
        assert_eq!(text("category"), Some(Value::from("weather")));
        assert_eq!(text("validFrom"), Some(json!("2026-12-01T05:00:00Z")));
        assert!(alert.point().is_some());
    }
}

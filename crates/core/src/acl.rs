//! Who may publish and subscribe to what on MQTT: the rules that keep a
//! device from impersonating another.
//!
//! Three kinds of authenticated client ([`Principal`]):
//!
//! - a **device** publishes only on its own topics — IoT Agent JSON
//!   `/{its apikey}/{its device_id}/attrs` and `.../cmdexe` (also with the
//!   `/json` prefix), LoRaWAN `application/+/device/{its dev_eui}/event/+` —
//!   and subscribes only to its own command topic `/{apikey}/{device_id}/cmd`;
//! - a **gateway** is a trusted integration that speaks for many devices: a
//!   ChirpStack deployment has *one* MQTT integration client publishing the
//!   uplinks of every LoRaWAN device (`application/#`), and the simulator of
//!   `vigie demo` plays a whole city through one connection. Its rules are
//!   topic filters configured by the operator ([`GatewayRules`]);
//! - Vigie's own **service** client subscribes to every topic it consumes
//!   ([`SERVICE_SUBSCRIBE`]) and publishes commands ([`SERVICE_PUBLISH`]).
//!
//! The MQTT client id is bound to the identity too ([`client_id_allowed`]):
//! a device whose client id were free could take over another client's
//! session (MQTT hands a client id to the newest connection).

use crate::decode::{self, Topic};
use crate::{Device, Transport};

/// Topic filters Vigie's own client may subscribe to (possibly through
/// `$share/{group}/`): everything it consumes.
pub const SERVICE_SUBSCRIBE: &[&str] = &[
    "/+/+/attrs",
    "/+/+/cmdexe",
    "/json/+/+/attrs",
    "/json/+/+/cmdexe",
    "application/+/device/+/event/+",
];

/// Topic filters Vigie's own client may publish on: device commands.
pub const SERVICE_PUBLISH: &[&str] = &["/+/+/cmd", "/json/+/+/cmd", "application/+/device/+/command/down"];

/// What a gateway may do: MQTT topic filters, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayRules {
    /// Filters the gateway may publish on (e.g. `application/+/device/+/event/+`).
    pub publish: Vec<String>,
    /// Filters the gateway may subscribe to; a subscription must lie within
    /// one of them (e.g. `application/+/device/+/command/down`).
    pub subscribe: Vec<String>,
}

/// An authenticated MQTT client.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// Vigie's own consumer.
    Service,
    /// A provisioned device.
    Device(&'a Device),
    /// A trusted integration, by its configured name.
    Gateway { name: &'a str, rules: &'a GatewayRules },
}

/// Whether `who` may publish on `topic` (a topic name, no wildcards).
pub fn may_publish(who: Principal<'_>, topic: &str) -> bool {
    if topic.contains(['+', '#']) {
        return false;
    }
    match who {
        Principal::Service => SERVICE_PUBLISH.iter().any(|f| topic_matches(f, topic)),
        Principal::Gateway { rules, .. } => rules.publish.iter().any(|f| topic_matches(f, topic)),
        Principal::Device(device) => match (decode::parse_topic(topic), &device.transport) {
            (
                Ok(Topic::IotAgentAttrs { apikey, device_id } | Topic::IotAgentCommandResult { apikey, device_id }),
                Transport::IotAgentJson { apikey: own },
            ) => apikey == own && device_id == device.device_id,
            (Ok(Topic::ChirpStackEvent { dev_eui, .. }), Transport::Lorawan { dev_eui: own }) => {
                dev_eui.eq_ignore_ascii_case(own)
            }
            _ => false,
        },
    }
}

/// Whether `who` may subscribe to `filter` (which may carry wildcards and a
/// `$share/{group}/` prefix).
pub fn may_subscribe(who: Principal<'_>, filter: &str) -> bool {
    let Some(filter) = strip_share(filter) else {
        return false;
    };
    if !valid_filter(filter) {
        return false;
    }
    match who {
        Principal::Service => SERVICE_SUBSCRIBE.iter().any(|allowed| filter_covers(allowed, filter)),
        Principal::Gateway { rules, .. } => rules.subscribe.iter().any(|allowed| filter_covers(allowed, filter)),
        // Exactly its own command topic: a wildcard would reach other devices'.
        Principal::Device(device) => match &device.transport {
            Transport::IotAgentJson { apikey } => {
                let own = [
                    format!("/{apikey}/{}/cmd", device.device_id),
                    format!("/json/{apikey}/{}/cmd", device.device_id),
                ];
                own.iter().any(|t| t == filter)
            }
            // LoRaWAN devices do not speak MQTT themselves; their downlinks
            // go through the ChirpStack gateway.
            Transport::Lorawan { .. } => false,
        },
    }
}

/// Whether `who` may use `client_id`. A device must use its device id; a
/// gateway its name or its name followed by `-` and anything (several
/// connections, e.g. one per publisher); Vigie's service its configured id,
/// which the caller checks.
pub fn client_id_allowed(who: Principal<'_>, client_id: &str) -> bool {
    match who {
        Principal::Service => true,
        Principal::Device(device) => client_id == device.device_id,
        Principal::Gateway { name, .. } => {
            client_id == name || client_id.strip_prefix(name).is_some_and(|rest| rest.starts_with('-'))
        }
    }
}

/// The same rules as a mosquitto `acl_file`: one `user` block for Vigie's
/// own client (`service_username`), one per gateway and one per device,
/// listing exactly the topics [`may_publish`] and [`may_subscribe`] allow
/// (mosquitto checks `$share/{group}/` subscriptions on the filter after the
/// prefix). Passwords go in mosquitto's own `password_file`
/// (`mosquitto_passwd`); Vigie's hashes cannot be converted to its format.
pub fn mosquitto_acl<'a>(
    service_username: &str,
    gateways: impl IntoIterator<Item = (&'a str, &'a GatewayRules)>,
    devices: impl IntoIterator<Item = &'a Device>,
) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "# mosquitto acl_file generated by `vigie devices mosquitto-acl`:\n\
         # each device writes only its own topics and reads only its own commands.\n",
    );
    let mut block = |user: &str, write: &[String], read: &[String]| {
        let _ = writeln!(out, "\nuser {user}");
        for t in write {
            let _ = writeln!(out, "topic write {t}");
        }
        for t in read {
            let _ = writeln!(out, "topic read {t}");
        }
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    block(service_username, &owned(SERVICE_PUBLISH), &owned(SERVICE_SUBSCRIBE));
    for (name, rules) in gateways {
        block(name, &rules.publish, &rules.subscribe);
    }
    for d in devices {
        let id = &d.device_id;
        match &d.transport {
            Transport::IotAgentJson { apikey } => block(
                id,
                &[
                    format!("/{apikey}/{id}/attrs"),
                    format!("/{apikey}/{id}/cmdexe"),
                    format!("/json/{apikey}/{id}/attrs"),
                    format!("/json/{apikey}/{id}/cmdexe"),
                ],
                &[format!("/{apikey}/{id}/cmd"), format!("/json/{apikey}/{id}/cmd")],
            ),
            Transport::Lorawan { dev_eui } => block(id, &[format!("application/+/device/{dev_eui}/event/+")], &[]),
        }
    }
    out
}

/// The filter without a `$share/{group}/` prefix; `None` when the prefix is malformed.
fn strip_share(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, filter) = rest.split_once('/')?;
            (!group.is_empty() && !group.contains(['+', '#']) && !filter.is_empty()).then_some(filter)
        }
    }
}

/// Whether `filter` is a well-formed MQTT topic filter: `+` and `#` only as
/// whole levels, `#` only last.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        l => !l.contains(['+', '#']),
    })
}

/// MQTT matching of a topic name against a filter. Wildcards in the first
/// level do not match topics starting with `$` (MQTT 3.1.1 §4.7.2).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `requested` can match is matched by `allowed`
/// (both filters): `a/+/c` covers `a/b/c` and `a/+/c`, not `a/#`.
pub fn filter_covers(allowed: &str, requested: &str) -> bool {
    if requested.starts_with('$') && (allowed.starts_with('+') || allowed.starts_with('#')) {
        return false;
    }
    let mut a = allowed.split('/');
    let mut r = requested.split('/');
    loop {
        match (a.next(), r.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(rl)) if rl != "#" => {}
            (Some(al), Some(rl)) if al == rl && al != "+" && al != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntityId;

    fn device(id: &str, transport: Transport) -> Device {
        Device {
            device_id: id.into(),
            transport,
            entity_name: EntityId::new(format!("urn:ngsi-ld:Streetlight:{id}")).unwrap(),
            entity_type: "Streetlight".into(),
            scope: None,
            attributes: vec![],
            mqtt_password_hash: None,
        }
    }

    fn light(id: &str) -> Device {
        device(
            id,
            Transport::IotAgentJson {
                apikey: "lighting".into(),
            },
        )
    }

    #[test]
    fn a_device_publishes_on_its_own_topics_only() {
        let a = light("SL-1");
        let me = Principal::Device(&a);
        for ok in [
            "/lighting/SL-1/attrs",
            "/lighting/SL-1/cmdexe",
            "/json/lighting/SL-1/attrs",
        ] {
            assert!(may_publish(me, ok), "{ok}");
        }
        for refused in [
            "/lighting/SL-2/attrs",      // another device
            "/parking/SL-1/attrs",       // its id under another apikey
            "/lighting/SL-1/cmd",        // commands go to it, not from it
            "/lighting/SL-1/attrs/more", // not a device topic
            "/lighting/+/attrs",         // wildcards are not topics
            "application/1/device/0004a30b001c0530/event/up",
            "$SYS/broker",
            "",
        ] {
            assert!(!may_publish(me, refused), "{refused}");
        }
    }

    #[test]
    fn a_lorawan_device_publishes_its_own_uplinks_only() {
        let d = device(
            "park-1",
            Transport::Lorawan {
                dev_eui: "a81758fffe030001".into(),
            },
        );
        let me = Principal::Device(&d);
        assert!(may_publish(me, "application/7/device/a81758fffe030001/event/up"));
        assert!(may_publish(me, "application/7/device/A81758FFFE030001/event/status"));
        assert!(!may_publish(me, "application/7/device/a81758fffe030002/event/up"));
        assert!(!may_publish(me, "application/7/device/a81758fffe030001/command/down"));
        assert!(!may_publish(me, "/lighting/park-1/attrs"));
        assert!(!may_subscribe(me, "application/7/device/a81758fffe030001/command/down"));
    }

    #[test]
    fn a_device_subscribes_to_its_own_commands_only() {
        let a = light("SL-1");
        let me = Principal::Device(&a);
        assert!(may_subscribe(me, "/lighting/SL-1/cmd"));
        assert!(may_subscribe(me, "/json/lighting/SL-1/cmd"));
        assert!(may_subscribe(me, "$share/g//lighting/SL-1/cmd"));
        for refused in [
            "/lighting/SL-2/cmd",
            "/lighting/+/cmd",
            "/lighting/#",
            "#",
            "/lighting/SL-1/attrs",
            "$share//lighting/SL-1/cmd",
        ] {
            assert!(!may_subscribe(me, refused), "{refused}");
        }
    }

    #[test]
    fn the_service_subscribes_to_what_it_consumes() {
        for ok in [
            "$share/vigie//+/+/attrs",
            "/+/+/attrs",
            "$share/vigie/application/+/device/+/event/+",
            "/json/+/+/attrs",
            "/lighting/SL-1/attrs",
        ] {
            assert!(may_subscribe(Principal::Service, ok), "{ok}");
        }
        for refused in ["#", "$SYS/#", "/+/+/cmd", "application/#", "/+/+/+"] {
            assert!(!may_subscribe(Principal::Service, refused), "{refused}");
        }
        assert!(may_publish(Principal::Service, "/lighting/SL-1/cmd"));
        assert!(!may_publish(Principal::Service, "/lighting/SL-1/attrs"));
    }

    #[test]
    fn a_gateway_does_what_its_rules_say() {
        let rules = GatewayRules {
            publish: vec!["application/#".into()],
            subscribe: vec!["application/+/device/+/command/down".into()],
        };
        let gw = Principal::Gateway {
            name: "chirpstack",
            rules: &rules,
        };
        assert!(may_publish(gw, "application/1/device/0004a30b001c0530/event/up"));
        assert!(!may_publish(gw, "/lighting/SL-1/attrs"));
        assert!(may_subscribe(gw, "application/+/device/+/command/down"));
        assert!(may_subscribe(gw, "application/1/device/0004a30b001c0530/command/down"));
        assert!(!may_subscribe(gw, "application/#"));
        assert!(client_id_allowed(gw, "chirpstack"));
        assert!(client_id_allowed(gw, "chirpstack-2"));
        assert!(!client_id_allowed(gw, "chirpstackx"));
        assert!(!client_id_allowed(gw, "SL-1"));
    }

    #[test]
    fn a_device_must_use_its_own_client_id() {
        let a = light("SL-1");
        assert!(client_id_allowed(Principal::Device(&a), "SL-1"));
        assert!(!client_id_allowed(Principal::Device(&a), "SL-2"));
        assert!(!client_id_allowed(Principal::Device(&a), "vigie"));
    }

    #[test]
    fn the_mosquitto_acl_lists_each_device_s_own_topics() {
        let a = light("SL-1");
        let p = device(
            "park-1",
            Transport::Lorawan {
                dev_eui: "a81758fffe030001".into(),
            },
        );
        let rules = GatewayRules {
            publish: vec!["application/#".into()],
            subscribe: vec![],
        };
        let acl = mosquitto_acl("vigie", [("chirpstack", &rules)], [&a, &p]);
        assert!(acl.contains("\nuser vigie\ntopic write /+/+/cmd\n"), "{acl}");
        assert!(acl.contains("topic read /+/+/attrs\n"), "{acl}");
        assert!(acl.contains("\nuser chirpstack\ntopic write application/#\n"), "{acl}");
        assert!(acl.contains("\nuser SL-1\ntopic write /lighting/SL-1/attrs\n"), "{acl}");
        assert!(acl.contains("topic read /lighting/SL-1/cmd\n"), "{acl}");
        assert!(
            acl.contains("\nuser park-1\ntopic write application/+/device/a81758fffe030001/event/+\n"),
            "{acl}"
        );
        assert!(!acl.contains("pattern"));
    }

    #[test]
    fn topic_matching_follows_mqtt() {
        assert!(topic_matches("/+/+/attrs", "/lighting/SL-1/attrs"));
        assert!(!topic_matches("+/+/attrs", "/lighting/SL-1/attrs"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(topic_matches("#", "a/b"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(topic_matches("a/+", "a/"));
    }

    #[test]
    fn filter_coverage() {
        assert!(filter_covers("a/+/c", "a/b/c"));
        assert!(filter_covers("a/+/c", "a/+/c"));
        assert!(!filter_covers("a/+/c", "a/#"));
        assert!(!filter_covers("a/b/c", "a/+/c"));
        assert!(filter_covers("a/#", "a/+/c/#"));
        assert!(filter_covers("#", "a/b"));
        assert!(!filter_covers("#", "$SYS/b"));
        assert!(!filter_covers("a/b", "a/b/c"));
        assert!(valid_filter("a/+/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b+"));
        assert!(!valid_filter(""));
    }
}

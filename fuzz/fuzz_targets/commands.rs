//! Commands to equipment: a device's answer (`cmdexe`) on arbitrary bytes,
//! and command validation on arbitrary type, name and JSON value; whatever
//! validation accepts must be within its type's specification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_core::command::{Argument, commands_for, parse_results, payload, validate};

fuzz_target!(|data: &[u8]| {
    let _ = parse_results(data);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(entity_type), Some(name), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(value) else {
        return;
    };
    if let Ok(sent) = validate(entity_type, name, &value) {
        let spec = commands_for(entity_type)
            .iter()
            .find(|s| s.name == name)
            .expect("validate accepted a command its type does not have");
        match spec.argument {
            Argument::OneOf(words) => assert!(sent.as_str().is_some_and(|w| words.contains(&w))),
            Argument::Integer { min, max } => assert!(sent.as_i64().is_some_and(|n| (min..=max).contains(&n))),
        }
        let _ = payload(name, &sent);
    }
});

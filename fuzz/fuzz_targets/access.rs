//! What people and integrators type into access control: scope grants
//! (`communes` and `business_lines` split on the first newline), role names,
//! account names and passwords. Parsing must never panic, and what parses
//! must print back to itself and decide consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_core::access::{Role, ScopeGrant, password};
use vigie_core::account::validate_account_name;
use vigie_core::Scope;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<Role>();
    let _ = validate_account_name(text);
    let (communes, lines) = text.split_once('\n').unwrap_or((text, "*"));
    let _ = password::check(communes, lines);
    if let Ok(grant) = ScopeGrant::parse(communes, lines) {
        let json = serde_json::to_value(&grant).expect("a grant serializes");
        let back: ScopeGrant = serde_json::from_value(json).expect("a printed grant parses");
        assert_eq!(back, grant);
        if let Ok(scope) = Scope::from_ngsi(&format!("/{}", text.replace('\n', "/"))) {
            let _ = grant.covers(Some(&scope));
        }
        let _ = grant.covers(None);
    }
});

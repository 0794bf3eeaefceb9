//! Who may do what, and where: roles, the permission matrix, scope grants and
//! the principal every request acts as. Pure: the server authenticates, this
//! module decides.
//!
//! Two questions are asked of every request: may this role perform this class
//! of action at all ([`Role::allows`]), and does the principal's scope grant
//! cover the entity concerned ([`ScopeGrant::covers`])? An entity outside the
//! grant does not exist for the principal: it is filtered from queries and
//! counts, and reads of it answer "not found" so that ids leak nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{BusinessLine, CommuneId, Scope, ScopeError};

/// A person's or a service's job at the control post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the platform: accounts, keys, devices. Sees no personal data.
    Administrator,
    /// Municipal police: oversees operations, CCTV, the audit trail.
    Supervisor,
    /// A control-room agent: supervises and commands equipment.
    Operator,
    /// Manages one or several business lines (lighting, traffic...).
    BusinessLineManager,
    /// Works on equipment in the field.
    FieldTechnician,
    /// A private contractor's agent working on a contract's equipment.
    Contractor,
    /// The data protection officer: personal data and the audit trail.
    DataProtectionOfficer,
    /// Reads everything in scope, changes nothing.
    Auditor,
}

/// A class of action: every endpoint belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Read and query entities (NGSI-LD).
    ReadEntities,
    /// Create, update, delete entities and their attributes.
    WriteEntities,
    /// Read personal data: CCTV, citizens' data, vehicle positions (audited).
    ReadPersonalData,
    /// See provisioned devices.
    ReadDevices,
    /// Provision and remove devices.
    ManageDevices,
    /// Operations data: dead letters, metrics.
    ReadOperations,
    /// See accounts and API keys.
    ReadAccounts,
    /// Create, change and remove accounts and API keys.
    ManageAccounts,
    /// Query and export the audit trail.
    ReadAudit,
    /// Write, change, enable and retire automation rules. Global: a rule
    /// may span communes and business lines.
    ManageRules,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::ReadEntities,
        Action::WriteEntities,
        Action::ReadPersonalData,
        Action::ReadDevices,
        Action::ManageDevices,
        Action::ReadOperations,
        Action::ReadAccounts,
        Action::ManageAccounts,
        Action::ReadAudit,
        Action::ManageRules,
    ];

    /// Actions whose data cannot be cut by scope (accounts, the audit trail,
    /// platform-wide counters): they need a grant covering everything.
    pub fn is_global(self) -> bool {
        matches!(
            self,
            Action::ReadOperations
                | Action::ReadAccounts
                | Action::ManageAccounts
                | Action::ReadAudit
                | Action::ManageRules
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadEntities => "read-entities",
            Action::WriteEntities => "write-entities",
            Action::ReadPersonalData => "read-personal-data",
            Action::ReadDevices => "read-devices",
            Action::ManageDevices => "manage-devices",
            Action::ReadOperations => "read-operations",
            Action::ReadAccounts => "read-accounts",
            Action::ManageAccounts => "manage-accounts",
            Action::ReadAudit => "read-audit",
            Action::ManageRules => "manage-rules",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Administrator,
        Role::Supervisor,
        Role::Operator,
        Role::BusinessLineManager,
        Role::FieldTechnician,
        Role::Contractor,
        Role::DataProtectionOfficer,
        Role::Auditor,
    ];

    /// The permission matrix (docs/security.md prints it). Separation of
    /// duties: the administrator runs the platform but reads no personal
    /// data; the auditor and the data protection officer change nothing.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        use Role::*;
        match action {
            ReadEntities => true,
            WriteEntities => matches!(
                self,
                Administrator | Supervisor | Operator | BusinessLineManager | FieldTechnician | Contractor
            ),
            ReadPersonalData => matches!(self, Supervisor | DataProtectionOfficer),
            ReadDevices => !matches!(self, DataProtectionOfficer),
            ManageDevices => matches!(self, Administrator | BusinessLineManager),
            ReadOperations => matches!(self, Administrator | Supervisor | Operator | Auditor),
            ReadAccounts => matches!(self, Administrator | Supervisor | DataProtectionOfficer | Auditor),
            ManageAccounts => matches!(self, Administrator),
            ReadAudit => matches!(self, Administrator | Supervisor | DataProtectionOfficer | Auditor),
            ManageRules => matches!(self, Administrator | Supervisor | BusinessLineManager),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Supervisor => "supervisor",
            Role::Operator => "operator",
            Role::BusinessLineManager => "business-line-manager",
            Role::FieldTechnician => "field-technician",
            Role::Contractor => "contractor",
            Role::DataProtectionOfficer => "data-protection-officer",
            Role::Auditor => "auditor",
        }
    }

    /// The role's name in the console, in French.
    pub fn label_fr(self) -> &'static str {
        match self {
            Role::Administrator => "Administrateur",
            Role::Supervisor => "Superviseur (police municipale)",
            Role::Operator => "Opérateur",
            Role::BusinessLineManager => "Responsable de métier",
            Role::FieldTechnician => "Technicien terrain",
            Role::Contractor => "Prestataire",
            Role::DataProtectionOfficer => "Délégué à la protection des données",
            Role::Auditor => "Auditeur",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role '{0}': expected one of administrator, supervisor, operator, business-line-manager, field-technician, contractor, data-protection-officer, auditor"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Either every member of a set, or some of them. Written `*` or a
/// comma-separated list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selection<T: Ord> {
    All,
    Only(BTreeSet<T>),
}

impl<T: Ord> Selection<T> {
    pub fn contains(&self, item: &T) -> bool {
        match self {
            Selection::All => true,
            Selection::Only(set) => set.contains(item),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Selection::All)
    }
}

impl<T: Ord + fmt::Display> fmt::Display for Selection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::All => f.write_str("*"),
            Selection::Only(set) => {
                let mut first = true;
                for item in set {
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

impl<T: Ord + FromStr<Err = ScopeError>> FromStr for Selection<T> {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, ScopeError> {
        let s = s.trim();
        if s == "*" {
            return Ok(Selection::All);
        }
        let set = s
            .split(',')
            .map(str::trim)
            .map(T::from_str)
            .collect::<Result<BTreeSet<T>, _>>()?;
        Ok(Selection::Only(set))
    }
}

/// Where a principal may act: a set of communes × a set of business lines.
/// Serialized as `{"communes": "*", "business_lines": "lighting,traffic"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "GrantText", into = "GrantText")]
pub struct ScopeGrant {
    pub communes: Selection<CommuneId>,
    pub business_lines: Selection<BusinessLine>,
}

#[derive(Serialize, Deserialize)]
struct GrantText {
    communes: String,
    business_lines: String,
}

impl TryFrom<GrantText> for ScopeGrant {
    type Error = ScopeError;
    fn try_from(t: GrantText) -> Result<Self, ScopeError> {
        ScopeGrant::parse(&t.communes, &t.business_lines)
    }
}

impl From<ScopeGrant> for GrantText {
    fn from(g: ScopeGrant) -> Self {
        GrantText {
            communes: g.communes.to_string(),
            business_lines: g.business_lines.to_string(),
        }
    }
}

impl ScopeGrant {
    /// Every commune, every business line.
    pub fn everywhere() -> Self {
        Self {
            communes: Selection::All,
            business_lines: Selection::All,
        }
    }

    /// Parses `*` or comma-separated slugs for each side.
    pub fn parse(communes: &str, business_lines: &str) -> Result<Self, ScopeError> {
        Ok(Self {
            communes: communes.parse()?,
            business_lines: business_lines.parse()?,
        })
    }

    pub fn is_everywhere(&self) -> bool {
        self.communes.is_all() && self.business_lines.is_all()
    }

    /// Whether the grant covers an entity's scope. An entity without a scope
    /// belongs to no commune: only a grant covering everything reaches it.
    pub fn covers(&self, scope: Option<&Scope>) -> bool {
        match scope {
            Some(s) => self.communes.contains(&s.commune) && self.business_lines.contains(&s.business_line),
            None => self.is_everywhere(),
        }
    }
}

impl fmt::Display for ScopeGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "communes {} × business lines {}", self.communes, self.business_lines)
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    /// A console session after a password login.
    Session,
    /// A console session after single sign-on.
    SingleSignOn,
    /// An integrator's API key.
    ApiKey,
    /// A service's bearer token.
    ServiceToken,
    /// Security is switched off (development only): everyone is an administrator.
    Anonymous,
}

/// The identity a request acts as, with what it may do and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Who: a user name, or the API key's or service's name.
    pub subject: String,
    pub credential: Credential,
    pub role: Role,
    pub scope: ScopeGrant,
}

/// Why a principal may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("the role {role} may not {action}")]
    Role { role: Role, action: Action },
    #[error("{action} concerns every commune and business line; the grant covers only {grant}")]
    GlobalAction { action: Action, grant: String },
    #[error("{scope} is outside the grant ({grant})")]
    OutOfScope { scope: String, grant: String },
}

impl Principal {
    /// Whether the role allows the action at all (and, for global actions,
    /// whether the grant covers everything).
    pub fn check(&self, action: Action) -> Result<(), Denied> {
        if !self.role.allows(action) {
            return Err(Denied::Role {
                role: self.role,
                action,
            });
        }
        if action.is_global() && !self.scope.is_everywhere() {
            return Err(Denied::GlobalAction {
                action,
                grant: self.scope.to_string(),
            });
        }
        Ok(())
    }

    /// Whether the action is allowed on something in `scope`.
    pub fn check_in(&self, action: Action, scope: Option<&Scope>) -> Result<(), Denied> {
        self.check(action)?;
        if self.scope.covers(scope) {
            Ok(())
        } else {
            Err(Denied::OutOfScope {
                scope: scope.map_or_else(|| "an entity without scope".to_owned(), Scope::to_ngsi),
                grant: self.scope.to_string(),
            })
        }
    }

    /// Whether something in `scope` exists for this principal.
    pub fn sees(&self, scope: Option<&Scope>) -> bool {
        self.scope.covers(scope)
    }
}

/// The permission matrix as a Markdown table (docs/security.md holds it; a
/// test keeps the two in step).
pub fn permission_matrix_markdown() -> String {
    let mut out = String::from("| Action |");
    for r in Role::ALL {
        out.push_str(&format!(" {} |", r.as_str()));
    }
    out.push_str("\n|---|");
    out.push_str(&":---:|".repeat(Role::ALL.len()));
    out.push('\n');
    for a in Action::ALL {
        let global = if a.is_global() { " (global)" } else { "" };
        out.push_str(&format!("| {}{global} |", a.as_str()));
        for r in Role::ALL {
            out.push_str(if r.allows(a) { " ✓ |" } else { " · |" });
        }
        out.push('\n');
    }
    out
}

/// Password rules, after NIST SP 800-63B: length and a blocklist rather
/// than composition rules, which push people to predictable patterns.
pub mod password {
    pub const MIN_CHARS: usize = 12;
    /// Bounds the hashing work an attacker can ask for.
    pub const MAX_BYTES: usize = 128;

    /// Passwords seen first in breach lists, and this product's own words.
    const BLOCKLIST: [&str; 12] = [
        "123456789012",
        "password1234",
        "motdepasse123",
        "azertyuiop12",
        "qwertyuiop12",
        "administrateur",
        "administrator",
        "vigie-vigie-vigie",
        "changeme1234",
        "dijonmetropole",
        "ondijon12345",
        "iloveyou1234",
    ];

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum Weak {
        #[error("the password must have at least {MIN_CHARS} characters")]
        TooShort,
        #[error("the password must have at most {MAX_BYTES} bytes")]
        TooLong,
        #[error("the password must not contain the user name")]
        ContainsUserName,
        #[error("the password is too common")]
        Common,
        #[error("the password must not repeat one character")]
        Repetitive,
    }

    pub fn check(user_name: &str, password: &str) -> Result<(), Weak> {
        if password.chars().count() < MIN_CHARS {
            return Err(Weak::TooShort);
        }
        if password.len() > MAX_BYTES {
            return Err(Weak::TooLong);
        }
        let lower = password.to_lowercase();
        if user_name.chars().count() >= 3 && lower.contains(&user_name.to_lowercase()) {
            return Err(Weak::ContainsUserName);
        }
        if BLOCKLIST.iter().any(|b| lower == *b) {
            return Err(Weak::Common);
        }
        let mut chars = password.chars();
        if let Some(first) = chars.next()
            && chars.all(|c| c == first)
        {
            return Err(Weak::Repetitive);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::from_ngsi(s).unwrap()
    }

    #[test]
    fn roles_round_trip_and_unknown_roles_are_named() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        assert!("root".parse::<Role>().unwrap_err().to_string().contains("'root'"));
    }

    #[test]
    fn read_only_roles_change_nothing() {
        for action in [Action::WriteEntities, Action::ManageDevices, Action::ManageAccounts] {
            assert!(!Role::Auditor.allows(action));
            assert!(!Role::DataProtectionOfficer.allows(action));
        }
    }

    #[test]
    fn only_police_and_dpo_read_personal_data() {
        let readers: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(Action::ReadPersonalData))
            .collect();
        assert_eq!(readers, [Role::Supervisor, Role::DataProtectionOfficer]);
    }

    #[test]
    fn grants_cover_communes_times_lines() {
        let g = ScopeGrant::parse("dijon,chenove", "lighting").unwrap();
        assert!(g.covers(Some(&scope("/dijon/lighting"))));
        assert!(g.covers(Some(&scope("/chenove/lighting"))));
        assert!(!g.covers(Some(&scope("/dijon/traffic"))));
        assert!(!g.covers(Some(&scope("/talant/lighting"))));
        assert!(!g.covers(None), "unscoped entities need an all-covering grant");
        assert!(ScopeGrant::everywhere().covers(None));
        let all_lines = ScopeGrant::parse("talant", "*").unwrap();
        assert!(all_lines.covers(Some(&scope("/talant/cctv"))));
    }

    #[test]
    fn grants_parse_and_print() {
        let g = ScopeGrant::parse(" chenove , dijon", "*").unwrap();
        assert_eq!(g.to_string(), "communes chenove,dijon × business lines *");
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"communes": "chenove,dijon", "business_lines": "*"})
        );
        assert_eq!(serde_json::from_value::<ScopeGrant>(json).unwrap(), g);
        assert!(ScopeGrant::parse("Dijon", "*").is_err());
        assert!(ScopeGrant::parse("dijon,", "*").is_err());
    }

    #[test]
    fn principals_are_checked_by_role_then_scope() {
        let tech = Principal {
            subject: "camille".into(),
            credential: Credential::Session,
            role: Role::FieldTechnician,
            scope: ScopeGrant::parse("dijon", "lighting").unwrap(),
        };
        assert!(
            tech.check_in(Action::WriteEntities, Some(&scope("/dijon/lighting")))
                .is_ok()
        );
        let err = tech
            .check_in(Action::WriteEntities, Some(&scope("/dijon/traffic")))
            .unwrap_err();
        assert!(err.to_string().contains("/dijon/traffic"), "{err}");
        assert!(matches!(tech.check(Action::ManageAccounts), Err(Denied::Role { .. })));

        let local_auditor = Principal {
            role: Role::Auditor,
            ..tech.clone()
        };
        assert!(matches!(
            local_auditor.check(Action::ReadAudit),
            Err(Denied::GlobalAction { .. })
        ));
    }

    #[test]
    fn the_documented_matrix_is_the_enforced_one() {
        let doc = include_str!("../../../docs/security.md");
        let table = permission_matrix_markdown();
        assert!(
            doc.contains(&table),
            "docs/security.md must contain the permission matrix exactly as enforced:\n{table}"
        );
    }

    #[test]
    fn password_rules() {
        use password::{Weak, check};
        assert_eq!(check("alice", "short"), Err(Weak::TooShort));
        assert_eq!(check("alice", &"x".repeat(200)), Err(Weak::TooLong));
        assert_eq!(check("alice", "my-Alice-password"), Err(Weak::ContainsUserName));
        assert_eq!(check("bob", "Password1234"), Err(Weak::Common));
        assert_eq!(check("bob", "aaaaaaaaaaaaaa"), Err(Weak::Repetitive));
        assert_eq!(check("bob", "lampadaire-rue-de-la-liberté"), Ok(()));
    }
}

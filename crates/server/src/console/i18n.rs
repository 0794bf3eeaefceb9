//! The console's words, in French (first: its users are French municipal
//! agents) and English. One table per language, so a missing translation is
//! a compile error, not a blank label.

use vigie_core::account::Language;
use vigie_core::status::AssetStatus;

/// Every label of the console in one language.
pub struct Texts {
    pub lang: &'static str,
    pub other_lang_name: &'static str,
    pub switch_title: &'static str,
    pub nav_map: &'static str,
    pub nav_overview: &'static str,
    pub logout: &'static str,
    pub search_placeholder: &'static str,
    pub search_label: &'static str,
    pub no_result: &'static str,
    pub legend: &'static str,
    pub layers: &'static str,
    pub commune: &'static str,
    pub all_communes: &'static str,
    pub assets: &'static str,
    pub close: &'static str,
    pub attributes: &'static str,
    pub attribute: &'static str,
    pub value: &'static str,
    pub observed: &'static str,
    pub history: &'static str,
    pub related: &'static str,
    pub recent_events: &'static str,
    pub no_events: &'static str,
    pub commands: &'static str,
    pub command_on: &'static str,
    pub command_off: &'static str,
    pub command_dim: &'static str,
    pub command_send: &'static str,
    pub command_states: [&'static str; 4],
    pub no_chart: &'static str,
    pub range_6h: &'static str,
    pub range_24h: &'static str,
    pub range_7d: &'static str,
    pub overview_title: &'static str,
    pub business_line: &'static str,
    pub total: &'static str,
    pub freshness: &'static str,
    pub live: &'static str,
    pub reconnecting: &'static str,
    pub not_found: &'static str,
    pub nav_alarms: &'static str,
    pub alarms_title: &'static str,
    pub no_alarm: &'static str,
    pub severity: &'static str,
    pub alarm_type: &'static str,
    pub source: &'static str,
    pub state: &'static str,
    pub raised: &'static str,
    pub occurrences: &'static str,
    pub children: &'static str,
    pub assignee: &'static str,
    pub actions: &'static str,
    pub all: &'static str,
    pub acknowledge: &'static str,
    pub shelve_hour: &'static str,
    pub close_alarm: &'static str,
    pub on_map: &'static str,
    pub severities: [&'static str; 4],
    pub procedure: &'static str,
    pub no_procedure: &'static str,
    pub done: &'static str,
    pub call: &'static str,
    pub comments: &'static str,
    pub add_comment: &'static str,
    pub back_to_board: &'static str,
    pub alarm_states: [&'static str; 4],
    statuses: [&'static str; 5],
    lines: [&'static str; 12],
}

pub const FR: Texts = Texts {
    lang: "fr",
    other_lang_name: "English",
    switch_title: "Switch the console to English",
    nav_map: "Carte",
    nav_overview: "Vue d'ensemble",
    logout: "Se déconnecter",
    search_placeholder: "Identifiant, nom, adresse, n° de support…",
    search_label: "Rechercher un équipement",
    no_result: "Aucun équipement trouvé",
    legend: "Légende",
    layers: "Métiers",
    commune: "Commune",
    all_communes: "Toutes les communes",
    assets: "équipements",
    close: "Fermer",
    attributes: "Attributs",
    attribute: "Attribut",
    value: "Valeur",
    observed: "Observé",
    history: "Historique",
    related: "Équipements liés",
    recent_events: "Événements récents",
    no_events: "Aucun événement récent",
    commands: "Commandes",
    command_on: "Allumer",
    command_off: "Éteindre",
    command_dim: "Niveau d'éclairage (%)",
    command_send: "Envoyer",
    command_states: ["envoyée", "acquittée", "échouée", "expirée"],
    no_chart: "Aucune mesure numérique à tracer",
    range_6h: "6 h",
    range_24h: "24 h",
    range_7d: "7 j",
    overview_title: "Vue d'ensemble par commune et par métier",
    business_line: "Métier",
    total: "Total",
    freshness: "Données fraîches",
    live: "En direct",
    reconnecting: "Reconnexion…",
    not_found: "Cet équipement n'existe pas ou n'est pas dans votre périmètre.",
    nav_alarms: "Alarmes",
    alarms_title: "Alarmes en cours",
    no_alarm: "Aucune alarme en cours",
    severity: "Gravité",
    alarm_type: "Type",
    source: "Équipement",
    state: "État",
    raised: "Levée",
    occurrences: "Occurrences",
    children: "Équipements touchés",
    assignee: "Assignée à",
    actions: "Actions",
    all: "Toutes",
    acknowledge: "Acquitter",
    shelve_hour: "Mettre en attente 1 h",
    close_alarm: "Clore",
    on_map: "Sur la carte",
    severities: ["Critique", "Majeure", "Mineure", "Avertissement"],
    procedure: "Procédure d'intervention",
    no_procedure: "Aucune procédure pour ce type d'alarme",
    done: "Fait",
    call: "À appeler",
    comments: "Commentaires",
    add_comment: "Ajouter",
    back_to_board: "Retour aux alarmes",
    alarm_states: ["Active", "Acquittée", "Disparue", "Close"],
    statuses: [
        "En panne",
        "Hors ligne",
        "Sans données récentes",
        "Abaissé",
        "En service",
    ],
    lines: [
        "Éclairage public",
        "Trafic",
        "Vidéoprotection",
        "Contrôle d'accès",
        "Flotte",
        "Voirie",
        "Déchets",
        "Eau",
        "Stationnement",
        "Environnement",
        "Bâtiments",
        "Espaces verts",
    ],
};

pub const EN: Texts = Texts {
    lang: "en",
    other_lang_name: "Français",
    switch_title: "Passer la console en français",
    nav_map: "Map",
    nav_overview: "Overview",
    logout: "Log out",
    search_placeholder: "Id, name, address, pole number…",
    search_label: "Find equipment",
    no_result: "No equipment found",
    legend: "Legend",
    layers: "Business lines",
    commune: "Commune",
    all_communes: "All communes",
    assets: "assets",
    close: "Close",
    attributes: "Attributes",
    attribute: "Attribute",
    value: "Value",
    observed: "Observed",
    history: "History",
    related: "Related equipment",
    recent_events: "Recent events",
    no_events: "No recent event",
    commands: "Commands",
    command_on: "Switch on",
    command_off: "Switch off",
    command_dim: "Light level (%)",
    command_send: "Send",
    command_states: ["sent", "acknowledged", "failed", "expired"],
    no_chart: "No numeric measure to chart",
    range_6h: "6 h",
    range_24h: "24 h",
    range_7d: "7 d",
    overview_title: "Overview by commune and business line",
    business_line: "Business line",
    total: "Total",
    freshness: "Fresh data",
    live: "Live",
    reconnecting: "Reconnecting…",
    not_found: "This equipment does not exist or is outside your scope.",
    nav_alarms: "Alarms",
    alarms_title: "Open alarms",
    no_alarm: "No open alarm",
    severity: "Severity",
    alarm_type: "Type",
    source: "Equipment",
    state: "State",
    raised: "Raised",
    occurrences: "Occurrences",
    children: "Affected equipment",
    assignee: "Assigned to",
    actions: "Actions",
    all: "All",
    acknowledge: "Acknowledge",
    shelve_hour: "Shelve for 1 h",
    close_alarm: "Close",
    on_map: "On the map",
    severities: ["Critical", "Major", "Minor", "Warning"],
    procedure: "Intervention procedure",
    no_procedure: "No procedure for this type of alarm",
    done: "Done",
    call: "Call",
    comments: "Comments",
    add_comment: "Add",
    back_to_board: "Back to the alarms",
    alarm_states: ["Active", "Acknowledged", "Cleared", "Closed"],
    statuses: ["Fault", "Offline", "No recent data", "Dimmed", "Working"],
    lines: [
        "Street lighting",
        "Traffic",
        "CCTV",
        "Access control",
        "Fleet",
        "Roads",
        "Waste",
        "Water",
        "Parking",
        "Environment",
        "Buildings",
        "Green spaces",
    ],
};

impl Texts {
    pub fn of(language: Language) -> &'static Texts {
        match language {
            Language::Fr => &FR,
            Language::En => &EN,
        }
    }

    pub fn status(&self, status: AssetStatus) -> &'static str {
        self.statuses[status.index()]
    }

    /// A business line's name; a city's own lines show their slug.
    pub fn line<'a>(&self, slug: &'a str) -> &'a str {
        vigie_core::BusinessLine::WELL_KNOWN
            .iter()
            .position(|l| *l == slug)
            .map_or(slug, |ix| self.lines[ix])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_name_every_status_and_line_differently_from_the_slug() {
        for texts in [&FR, &EN] {
            for s in AssetStatus::ALL {
                assert!(!texts.status(s).is_empty());
            }
            assert_eq!(
                texts.line("lighting"),
                if texts.lang == "fr" {
                    "Éclairage public"
                } else {
                    "Street lighting"
                }
            );
            assert_eq!(texts.line("snow-clearing"), "snow-clearing");
        }
    }
}

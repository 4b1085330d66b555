//! Relation logic against the relation data the real charms publish
//! (shared/reference/ops-and-interfaces.md §3): the legacy reactive
//! PostgreSQL charm, the current machine charm, the legacy and current
//! MongoDB charms, an http manager service, and the NRPE subordinate.
//!
//! Why one file over 600 lines: one fixture per real charm's relation data,
//! next to the tests that read it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wsgi_app::charm::relations::libpq::{split_standbys, Conninfo};
use wsgi_app::charm::relations::nrpe::{render_nrpe, NrpeCheck};
use wsgi_app::charm::relations::percent::{decode_component, encode_component};
use wsgi_app::charm::relations::{
    database_url, manager_service_url, mongo_connection, mongo_url, pgsql_request, website_data,
    DatabaseUrl, PgsqlInput, PgsqlWaiting,
};
use wsgi_app::ops::backend::Bag;

const OUR_UNIT: &str = "wsgi-app/1";
const DATABASE: &str = "wsgi-app";
const PASSWORD: &str = "Zq7xVnR2kLp9";

fn bag(pairs: &[(&str, &str)]) -> Bag {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A PostgreSQL unit as the legacy reactive charm (stub42/postgresql-charm)
/// publishes it: discrete keys, `master` mirrored, newline-separated
/// standbys, `allowed-units` of the client units with addresses.
fn legacy_master(allowed_units: &str) -> Bag {
    bag(&[
        ("host", "10.0.0.10"),
        ("port", "5432"),
        ("user", "juju_wsgi-app"),
        ("password", PASSWORD),
        ("schema_user", "juju_wsgi-app"),
        ("schema_password", PASSWORD),
        ("database", DATABASE),
        (
            "master",
            "dbname=wsgi-app host=10.0.0.10 password=Zq7xVnR2kLp9 port=5432 user=juju_wsgi-app",
        ),
        (
            "standbys",
            "dbname=wsgi-app host=10.0.0.11 password=Zq7xVnR2kLp9 port=5432 user=juju_wsgi-app\n\
             dbname=wsgi-app host=10.0.0.12 password=Zq7xVnR2kLp9 port=5432 user=juju_wsgi-app",
        ),
        ("allowed-units", allowed_units),
        ("allowed-subnets", "10.0.0.20/32,10.0.0.21/32"),
        ("state", "master"),
        ("version", "12"),
        ("private-address", "10.0.0.10"),
        ("egress-subnets", "10.0.0.10/32"),
    ])
}

/// A PostgreSQL unit as the current machine charm (canonical/postgresql-operator
/// `src/relations/db.py`) publishes it: user `relation-<id>`, comma-joined
/// standbys, sorted allowed-units/subnets.
fn current_master(allowed_units: &str) -> Bag {
    bag(&[
        ("host", "10.0.0.10"),
        ("port", "5432"),
        ("user", "relation-7"),
        ("password", PASSWORD),
        ("schema_user", "relation-7"),
        ("schema_password", PASSWORD),
        ("database", DATABASE),
        (
            "master",
            "dbname=wsgi-app host=10.0.0.10 password=Zq7xVnR2kLp9 port=5432 user=relation-7",
        ),
        (
            "standbys",
            "dbname=wsgi-app host=10.0.0.11 password=Zq7xVnR2kLp9 port=5432 user=relation-7,\
             dbname=wsgi-app host=10.0.0.12 password=Zq7xVnR2kLp9 port=5432 user=relation-7",
        ),
        ("allowed-units", allowed_units),
        ("allowed-subnets", "10.0.0.20/32,10.0.0.21/32"),
        ("state", "master"),
        ("version", "14.9"),
    ])
}

fn hot_standby() -> Bag {
    let mut standby = legacy_master("wsgi-app/0 wsgi-app/1");
    standby.insert("state".into(), "hot standby".into());
    standby.insert("host".into(), "10.0.0.11".into());
    standby
}

struct Relation {
    units: BTreeMap<String, Bag>,
    app_bag: Bag,
    egress: Vec<String>,
    requested: String,
}

impl Relation {
    fn new(units: &[(&str, Bag)]) -> Self {
        Relation {
            units: units
                .iter()
                .map(|(name, bag)| (name.to_string(), bag.clone()))
                .collect(),
            app_bag: Bag::new(),
            egress: vec!["10.0.0.21/32".to_string()],
            requested: DATABASE.to_string(),
        }
    }

    fn url(&self) -> Result<DatabaseUrl, PgsqlWaiting> {
        database_url(&PgsqlInput {
            our_unit: OUR_UNIT,
            our_egress_subnets: &self.egress,
            requested_database: &self.requested,
            remote_units: &self.units,
            remote_app_bag: &self.app_bag,
        })
    }

    fn waiting(&self) -> String {
        self.url().unwrap_err().to_string()
    }
}

#[test]
fn request_sends_the_database_name() {
    assert_eq!(pgsql_request("wsgi-app"), bag(&[("database", "wsgi-app")]));
    assert!(
        pgsql_request("").is_empty(),
        "no name: the server picks ours"
    );
}

#[test]
fn allowed_units_gate_waits_until_we_are_listed() {
    let not_yet = Relation::new(&[("postgresql/0", legacy_master("wsgi-app/0"))]);
    assert_eq!(
        not_yet.waiting(),
        "waiting for postgresql/0 to list wsgi-app/1 in allowed-units"
    );

    let listed = Relation::new(&[("postgresql/0", legacy_master("wsgi-app/0 wsgi-app/1"))]);
    let url = listed.url().unwrap();
    assert_eq!(
        url.expose(),
        "postgresql://juju_wsgi-app:Zq7xVnR2kLp9@10.0.0.10:5432/wsgi-app"
    );
    assert_eq!(url.source(), "postgresql/0");
}

#[test]
fn a_unit_name_prefix_is_not_a_listing() {
    let relation = Relation::new(&[("postgresql/0", legacy_master("wsgi-app/10 wsgi-app/11"))]);
    assert!(relation.url().is_err(), "wsgi-app/1 is not wsgi-app/10");
}

#[test]
fn allowed_subnets_gate_for_cross_model_relations() {
    let mut cross_model = current_master("");
    cross_model.insert(
        "allowed-subnets".into(),
        "192.0.2.0/24,198.51.100.0/24".into(),
    );
    let mut relation = Relation::new(&[("postgresql/0", cross_model)]);

    relation.egress = vec!["192.0.2.5/32".into(), "198.51.100.0/25".into()];
    assert_eq!(
        relation.url().unwrap().expose(),
        "postgresql://relation-7:Zq7xVnR2kLp9@10.0.0.10:5432/wsgi-app"
    );

    relation.egress = vec!["192.0.2.5/32".into(), "203.0.113.9/32".into()];
    assert_eq!(
        relation.waiting(),
        "waiting for postgresql/0 to list 203.0.113.9/32 in allowed-subnets"
    );

    relation.egress = vec![];
    assert!(matches!(
        relation.url(),
        Err(PgsqlWaiting::NoEgressSubnets { .. })
    ));
}

#[test]
fn allowed_subnets_gate_with_ipv6() {
    let mut cross_model = current_master("");
    cross_model.insert("allowed-subnets".into(), "2001:db8:1::/48".into());
    let mut relation = Relation::new(&[("postgresql/0", cross_model)]);
    relation.egress = vec!["2001:db8:1:2::15/128".into()];
    assert!(relation.url().is_ok());
    relation.egress = vec!["2001:db8:2::15/128".into()];
    assert!(relation.url().is_err());
}

#[test]
fn no_access_list_at_all_waits_for_allowed_units() {
    let mut unlisted = current_master("");
    unlisted.remove("allowed-subnets");
    let relation = Relation::new(&[("postgresql/0", unlisted)]);
    assert_eq!(
        relation.waiting(),
        "waiting for postgresql/0 to list wsgi-app/1 in allowed-units"
    );
}

#[test]
fn password_with_url_delimiters_round_trips_through_a_url_parser() {
    let password = "p@ss:w/rd%?#[] with spaces";
    let user = "relation:7@x";
    let database = "my db/2";
    let mut master = current_master("wsgi-app/1");
    master.insert("password".into(), password.into());
    master.insert("user".into(), user.into());
    master.insert("database".into(), database.into());
    master.insert("host".into(), "2001:db8::10".into());
    master.insert("port".into(), "6432".into());
    let mut relation = Relation::new(&[("postgresql/0", master)]);
    relation.requested = database.into();

    let url = relation.url().unwrap();
    let exposed = url.expose();
    assert_eq!(
        exposed,
        "postgresql://relation%3A7%40x:p%40ss%3Aw%2Frd%25%3F%23%5B%5D%20with%20spaces\
         @[2001:db8::10]:6432/my%20db%2F2"
    );

    let parsed = url::Url::parse(&exposed).unwrap();
    assert_eq!(parsed.scheme(), "postgresql");
    assert_eq!(decode_component(parsed.username()).unwrap(), user);
    assert_eq!(
        decode_component(parsed.password().unwrap()).unwrap(),
        password
    );
    assert_eq!(parsed.host_str(), Some("[2001:db8::10]"));
    assert_eq!(parsed.port(), Some(6432));
    assert_eq!(decode_component(&parsed.path()[1..]).unwrap(), database);
    assert_eq!(parsed.query(), None);
    assert_eq!(parsed.fragment(), None);
}

#[test]
fn the_password_never_shows_in_debug_display_or_waiting() {
    let relation = Relation::new(&[("postgresql/0", legacy_master("wsgi-app/1"))]);
    let url = relation.url().unwrap();
    for shown in [format!("{url:?}"), url.to_string(), url.redacted()] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert_eq!(
        url.redacted(),
        "postgresql://juju_wsgi-app:***@10.0.0.10:5432/wsgi-app"
    );

    let mut broken = legacy_master("wsgi-app/1");
    broken.remove("host");
    broken.insert("master".into(), format!("host=h password={PASSWORD} stray"));
    let waiting = Relation::new(&[("postgresql/0", broken)])
        .url()
        .unwrap_err();
    assert!(matches!(waiting, PgsqlWaiting::UnreadableMaster { .. }));
    for shown in [format!("{waiting:?}"), waiting.to_string()] {
        assert!(
            !shown.contains(PASSWORD) && !shown.contains("stray"),
            "{shown}"
        );
    }
}

#[test]
fn database_not_mirrored_yet_waits() {
    let mut master = current_master("wsgi-app/1");
    master.insert("database".into(), "postgresql-default".into());
    let relation = Relation::new(&[("postgresql/0", master)]);
    assert_eq!(
        relation.waiting(),
        "waiting for postgresql to create database \"wsgi-app\""
    );
}

#[test]
fn with_no_specific_request_the_servers_database_is_used() {
    let mut master = current_master("wsgi-app/1");
    master.insert("database".into(), "wsgi-app-default".into());
    let mut relation = Relation::new(&[("postgresql/0", master)]);
    relation.requested = String::new();
    assert_eq!(relation.url().unwrap().database(), "wsgi-app-default");
}

#[test]
fn legacy_and_current_standbys_shapes_give_the_same_standbys() {
    for master in [legacy_master("wsgi-app/1"), current_master("wsgi-app/1")] {
        let url = Relation::new(&[("postgresql/0", master)]).url().unwrap();
        let hosts: Vec<String> = url
            .standby_conninfos()
            .iter()
            .map(|s| Conninfo::parse(s).unwrap().get("host").unwrap().to_string())
            .collect();
        assert_eq!(hosts, vec!["10.0.0.11", "10.0.0.12"]);
    }

    let mut no_standbys = current_master("wsgi-app/1");
    no_standbys.insert("standbys".into(), String::new());
    let url = Relation::new(&[("postgresql/0", no_standbys)])
        .url()
        .unwrap();
    assert!(url.standby_conninfos().is_empty());
}

#[test]
fn underscore_allowed_units_is_ignored_for_the_hyphen_key() {
    // The current charm's relation-departed rewrites `allowed_units`; only
    // `allowed-units` says what pg_hba allows.
    let mut stale_grants_us = current_master("wsgi-app/0");
    stale_grants_us.insert("allowed_units".into(), "wsgi-app/0 wsgi-app/1".into());
    assert_eq!(
        Relation::new(&[("postgresql/0", stale_grants_us)]).waiting(),
        "waiting for postgresql/0 to list wsgi-app/1 in allowed-units"
    );

    let mut stale_drops_us = current_master("wsgi-app/0 wsgi-app/1");
    stale_drops_us.insert("allowed_units".into(), "wsgi-app/0".into());
    assert!(Relation::new(&[("postgresql/0", stale_drops_us)])
        .url()
        .is_ok());
}

#[test]
fn the_master_is_chosen_among_hot_standbys() {
    let relation = Relation::new(&[
        ("postgresql/0", hot_standby()),
        ("postgresql/1", legacy_master("wsgi-app/1")),
        ("postgresql/2", hot_standby()),
    ]);
    let url = relation.url().unwrap();
    assert_eq!(url.source(), "postgresql/1");
    assert_eq!(url.host(), "10.0.0.10");
}

#[test]
fn no_master_lists_each_units_state() {
    let relation = Relation::new(&[("postgresql/0", hot_standby())]);
    assert_eq!(
        relation.waiting(),
        "waiting for a PostgreSQL master (units: postgresql/0 hot standby)"
    );

    let mut failover = hot_standby();
    failover.insert("state".into(), "failover".into());
    let relation = Relation::new(&[("postgresql/0", failover), ("postgresql/1", Bag::new())]);
    assert_eq!(
        relation.waiting(),
        "waiting for a PostgreSQL master (units: postgresql/0 failover, postgresql/1 not ready)"
    );

    assert_eq!(
        Relation::new(&[]).waiting(),
        "waiting for a PostgreSQL master (no units yet)"
    );
}

#[test]
fn standalone_counts_only_when_alone() {
    let mut standalone = legacy_master("wsgi-app/1");
    standalone.insert("state".into(), "standalone".into());
    assert!(Relation::new(&[("postgresql/0", standalone.clone())])
        .url()
        .is_ok());
    assert!(matches!(
        Relation::new(&[
            ("postgresql/0", standalone),
            ("postgresql/1", hot_standby())
        ])
        .url(),
        Err(PgsqlWaiting::NoMaster { .. })
    ));
}

#[test]
fn two_masters_wait_for_the_failover_to_settle() {
    let relation = Relation::new(&[
        ("postgresql/0", legacy_master("wsgi-app/1")),
        ("postgresql/1", legacy_master("wsgi-app/1")),
    ]);
    assert_eq!(
        relation.waiting(),
        "waiting for a single PostgreSQL master (postgresql/0, postgresql/1 all claim it)"
    );
}

#[test]
fn master_conninfo_is_used_when_discrete_keys_are_absent() {
    let mut master = bag(&[
        ("state", "master"),
        ("database", DATABASE),
        ("allowed-units", "wsgi-app/1"),
        (
            "master",
            r"dbname=wsgi-app host=10.0.0.10 user=relation-7 password='a b\'c'",
        ),
    ]);
    let url = Relation::new(&[("postgresql/0", master.clone())])
        .url()
        .unwrap();
    assert_eq!(
        url.expose(),
        "postgresql://relation-7:a%20b%27c@10.0.0.10:5432/wsgi-app",
        "port defaults to libpq's 5432"
    );

    master.insert("master".into(), "dbname=wsgi-app host=10.0.0.10".into());
    assert_eq!(
        Relation::new(&[("postgresql/0", master)]).waiting(),
        "waiting for postgresql/0 to publish user, password"
    );
}

#[test]
fn missing_discrete_keys_are_named() {
    let mut master = current_master("wsgi-app/1");
    master.remove("password");
    master.remove("port");
    assert_eq!(
        Relation::new(&[("postgresql/0", master)]).waiting(),
        "waiting for postgresql/0 to publish port, password"
    );
}

#[test]
fn a_joined_unit_without_data_waits_for_a_master() {
    let relation = Relation::new(&[(
        "postgresql/0",
        bag(&[
            ("private-address", "10.0.0.10"),
            ("egress-subnets", "10.0.0.10/32"),
        ]),
    )]);
    assert_eq!(
        relation.waiting(),
        "waiting for a PostgreSQL master (units: postgresql/0 not ready)"
    );
}

#[test]
fn protocol_v2_server_data_in_the_application_bag() {
    let mut relation = Relation::new(&[("postgresql/0", Bag::new())]);
    relation.app_bag = bag(&[
        ("database", DATABASE),
        ("allowed-subnets", "10.0.0.0/24"),
        (
            "master",
            "dbname=wsgi-app user=relation-7 password=pw host=10.0.0.10 port=5432",
        ),
    ]);
    let url = relation.url().unwrap();
    assert_eq!(url.source(), "postgresql");
    assert_eq!(
        url.expose(),
        "postgresql://relation-7:pw@10.0.0.10:5432/wsgi-app"
    );
}

// --- mongodb -------------------------------------------------------------

fn mongo_unit(name: &str, pairs: &[(&str, &str)]) -> (String, Bag) {
    (name.to_string(), bag(pairs))
}

#[test]
fn mongodb_replica_set_of_two_units_and_one_without_port() {
    let units = [
        mongo_unit(
            "mongodb/1",
            &[
                ("hostname", "10.0.0.31"),
                ("port", "27017"),
                ("replset", "mongodb"),
                ("type", "database"),
                ("version", "5.0"),
            ],
        ),
        mongo_unit(
            "mongodb/2",
            &[("hostname", "10.0.0.32"), ("replset", "mongodb")],
        ),
        mongo_unit(
            "mongodb/0",
            &[
                ("hostname", "10.0.0.30"),
                ("port", "27017"),
                ("replset", "mongodb"),
                ("type", "database"),
            ],
        ),
    ];
    let connection = mongo_connection(&units, Some("wsgi-app")).unwrap();
    assert_eq!(
        connection.url,
        "mongodb://10.0.0.30:27017,10.0.0.31:27017/wsgi-app?replicaSet=mongodb"
    );
    assert!(connection.notes.is_empty(), "{:?}", connection.notes);
    assert_eq!(
        mongo_url(&units, None).as_deref(),
        Some("mongodb://10.0.0.30:27017,10.0.0.31:27017/?replicaSet=mongodb")
    );
}

// --- http: manager-service and website -----------------------------------

#[test]
fn manager_service_prefers_a_qualified_hostname() {
    let fqdn = [(
        "manager/0".to_string(),
        bag(&[
            ("hostname", "manager.internal.example"),
            ("private-address", "10.0.0.40"),
            ("port", "8000"),
        ]),
    )];
    assert_eq!(
        manager_service_url("https", &fqdn).unwrap().as_deref(),
        Some("https://manager.internal.example:8000")
    );

    let short_name = [(
        "manager/0".to_string(),
        bag(&[
            ("hostname", "juju-4f2a-3"),
            ("private-address", "10.0.0.40"),
            ("port", "8000"),
        ]),
    )];
    assert_eq!(
        manager_service_url("http", &short_name).unwrap().as_deref(),
        Some("http://10.0.0.40:8000")
    );

    let ip_hostname = [(
        "manager/0".to_string(),
        bag(&[
            ("hostname", "10.0.0.41"),
            ("private-address", "10.0.0.40"),
            ("port", "8000"),
        ]),
    )];
    assert_eq!(
        manager_service_url("http", &ip_hostname)
            .unwrap()
            .as_deref(),
        Some("http://10.0.0.41:8000")
    );
}

#[test]
fn manager_service_protocol_errors_name_the_option() {
    let error = manager_service_url("gopher", &[]).unwrap_err();
    assert_eq!(error.option, "manager_service_protocol");
    assert!(error.to_string().starts_with("manager_service_protocol: "));
}

#[test]
fn website_publishes_what_haproxy_reads() {
    assert_eq!(
        website_data("10.0.0.21", 8080),
        bag(&[
            ("hostname", "10.0.0.21"),
            ("private-address", "10.0.0.21"),
            ("port", "8080"),
        ])
    );
}

// --- nrpe-external-master -------------------------------------------------

fn nrpe_check<'a>(content: &'a str, relation_hostname: Option<&'a str>) -> NrpeCheck<'a> {
    NrpeCheck {
        app: "wsgi-app",
        unit: "wsgi-app/0",
        nagios_context: "juju",
        nagios_servicegroups: "",
        relation_nagios_hostname: relation_hostname,
        address: "10.0.0.20",
        port: 8080,
        index_path: "/",
        expected_status: 200,
        index_content: content,
        check_http_path: "/usr/lib/nagios/plugins/check_http",
    }
}

#[test]
fn nrpe_command_file_golden() {
    let files = render_nrpe(&nrpe_check(r#"It works! "quoted" $(reboot)"#, None)).unwrap();
    assert_eq!(
        files.command.path.to_str(),
        Some("etc/nagios/nrpe.d/check_wsgi-app_http.cfg")
    );
    assert_eq!(
        files.command.contents,
        "#---------------------------------------------------\n\
         # This file is managed by the wsgi-app charm through Juju.\n\
         # Local changes are overwritten.\n\
         #---------------------------------------------------\n\
         # check_wsgi-app_http: the wsgi-app index page on port 8080 answers as expected\n\
         # servicegroups: juju\n\
         command[check_wsgi-app_http]=/usr/lib/nagios/plugins/check_http -I 10.0.0.20 -p 8080 -u / -e 200 \
         -s 'It works! \"quoted\" $$(reboot)'\n"
    );
}

#[test]
fn nrpe_command_without_content_and_with_quotes_in_path() {
    let mut check = nrpe_check("", None);
    check.index_path = "/it's";
    check.check_http_path = "/usr/local/lib/nagios/plugins/check_http";
    let files = render_nrpe(&check).unwrap();
    let command = files.command.contents.lines().last().unwrap();
    assert_eq!(
        command,
        r"command[check_wsgi-app_http]=/usr/local/lib/nagios/plugins/check_http -I 10.0.0.20 -p 8080 -u '/it'\''s' -e 200"
    );
}

#[test]
fn nagios_service_export_golden() {
    let mut check = nrpe_check("", Some("juju-web-prod-wsgi-app-0"));
    check.nagios_servicegroups = "web, prod";
    let files = render_nrpe(&check).unwrap();
    assert_eq!(files.nagios_hostname, "juju-web-prod-wsgi-app-0");
    assert_eq!(
        files.service_export.path.to_str(),
        Some("var/lib/nagios/export/service__juju-web-prod-wsgi-app-0_check_wsgi-app_http.cfg")
    );
    assert_eq!(
        files.service_export.contents,
        "#---------------------------------------------------\n\
         # This file is managed by the wsgi-app charm through Juju.\n\
         # Local changes are overwritten.\n\
         #---------------------------------------------------\n\
         define service {\n\
         \x20   use                             active-service\n\
         \x20   host_name                       juju-web-prod-wsgi-app-0\n\
         \x20   service_description             juju-web-prod-wsgi-app-0[check_wsgi-app_http] Check wsgi-app index page\n\
         \x20   check_command                   check_nrpe!check_wsgi-app_http\n\
         \x20   servicegroups                   web,prod\n\
         }\n"
    );
    assert!(files
        .command
        .contents
        .contains("# servicegroups: web,prod\n"));
}

#[test]
fn nrpe_monitors_relation_value() {
    let files = render_nrpe(&nrpe_check("", None)).unwrap();
    assert_eq!(files.nagios_hostname, "juju-wsgi-app-0");
    let monitors: serde_json::Value = serde_json::from_str(&files.monitors).unwrap();
    assert_eq!(
        monitors,
        serde_json::json!({
            "monitors": {"remote": {"nrpe": {"check_wsgi-app_http": {"command": "check_wsgi-app_http"}}}},
            "version": "0.3"
        })
    );
    assert_eq!(files.relation_data().get("monitors"), Some(&files.monitors));
}

#[test]
fn nrpe_refuses_what_it_cannot_carry() {
    let error = render_nrpe(&nrpe_check("two\nlines", None)).unwrap_err();
    assert!(
        error.to_string().starts_with("nagios_index_content: "),
        "{error}"
    );

    let long = "x".repeat(3000);
    let error = render_nrpe(&nrpe_check(&long, None)).unwrap_err();
    assert!(
        error.to_string().starts_with("nagios_index_content: "),
        "{error}"
    );
    assert!(error.to_string().contains("2045"), "{error}");

    let mut bad_path = nrpe_check("", None);
    bad_path.index_path = "health";
    let error = render_nrpe(&bad_path).unwrap_err();
    assert!(
        error.to_string().starts_with("nagios_index_path: "),
        "{error}"
    );

    let error = render_nrpe(&nrpe_check("", Some("../../etc/evil"))).unwrap_err();
    assert!(error.to_string().contains("nagios_hostname"), "{error}");
}

// --- property tests -------------------------------------------------------

/// libpq keywords as servers write them: no whitespace, no `=`.
fn keyword() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,12}"
}

proptest! {
    #[test]
    fn conninfo_parser_never_panics(text in any::<String>()) {
        let _ = Conninfo::parse(&text);
        let _ = split_standbys(&text);
    }

    #[test]
    fn conninfo_round_trips_any_values(
        pairs in prop::collection::vec((keyword(), any::<String>()), 0..6)
    ) {
        let info = Conninfo::from_pairs(pairs.clone());
        let parsed = Conninfo::parse(&info.to_conninfo_string()).unwrap();
        prop_assert_eq!(parsed.pairs(), &pairs[..]);
    }

    #[test]
    fn standbys_split_back_into_their_entries(
        entries in prop::collection::vec(
            prop::collection::vec((keyword(), any::<String>()), 1..4), 0..4),
        newline_separated in any::<bool>(),
    ) {
        let strings: Vec<String> = entries
            .iter()
            .map(|pairs| Conninfo::from_pairs(pairs.clone()).to_conninfo_string())
            .collect();
        let joined = strings.join(if newline_separated { "\n" } else { "," });
        let split = split_standbys(&joined);
        prop_assert_eq!(split.len(), strings.len());
        for (piece, pairs) in split.iter().zip(&entries) {
            let parsed = Conninfo::parse(piece).unwrap();
            prop_assert_eq!(parsed.pairs(), &pairs[..]);
        }
    }

    #[test]
    fn percent_encoding_round_trips(text in any::<String>()) {
        let encoded = encode_component(&text);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
        prop_assert_eq!(decode_component(&encoded), Some(text));
    }

    #[test]
    fn any_password_survives_a_url_parser(password in any::<String>(), user in "[^\u{0}]{1,20}") {
        let master = {
            let mut master = current_master("wsgi-app/1");
            master.insert("password".into(), password.clone());
            master.insert("user".into(), user.clone());
            master
        };
        let url = Relation::new(&[("postgresql/0", master)]).url();
        // An empty password is "not published yet".
        if password.is_empty() {
            prop_assert!(url.is_err());
        } else {
            let exposed = url.unwrap().expose();
            let parsed = url::Url::parse(&exposed).unwrap();
            prop_assert_eq!(decode_component(parsed.username()), Some(user));
            prop_assert_eq!(decode_component(parsed.password().unwrap()), Some(password));
            prop_assert_eq!(parsed.host_str(), Some("10.0.0.10"));
        }
    }
}

//! The `pgsql` endpoint (requires, legacy `pgsql` interface): what we ask
//! PostgreSQL for, and when its answer is good enough to write
//! `DATABASE_URL`. Reference §3(a), "How a client must gate on readiness" and
//! its "Recommended for a Rust client" list, which this module follows step
//! by step:
//!
//! 1. pick the unit whose `state` is `master`, or `standalone` when it is the
//!    only unit (`hot standby` and `failover` units are never used);
//! 2. require `host`/`port`/`user`/`password`/`database` there, or the
//!    `master` libpq string when `host` is absent;
//! 3. require our unit name in its space-separated `allowed-units`, or, when
//!    that is absent or empty (cross-model relations), every CIDR of our
//!    `egress-subnets` inside its comma-separated `allowed-subnets`;
//! 4. require the mirrored `database` to equal what we requested;
//! 5. build `postgresql://user:password@host:port/database`, every part
//!    percent-encoded.
//!
//! Until all of that holds the answer is a [`PgsqlWaiting`] naming exactly
//! what is missing — never an error: a later `relation-changed` will come.
//!
//! The current machine charm rewrites a key spelled `allowed_units`
//! (underscore) when a unit departs; the reference says to treat the hyphen
//! spelling as authoritative, so the underscore key is never read.
//!
//! The remote application bag is consulted only when no unit bag qualifies:
//! ops-lib-pgsql's `protocol.md` (v2) lets a server publish `master`,
//! `allowed-subnets` and the mirrored `database` there. The same gates apply.
//!
//! Why one file over 600 lines: the gate's steps above are one decision, and
//! the tests of each step sit beside it.

use std::collections::BTreeMap;
use std::fmt;

use super::cidr::Cidr;
use super::libpq::{split_standbys, Conninfo, ConninfoError};
use super::percent::encode_component;
use super::{app_of_unit, bracket_ipv6, split_comma_list, unit_order_key};
use crate::ops::backend::Bag;

/// libpq's default port, used when a `master` string names no port.
const DEFAULT_POSTGRESQL_PORT: u16 = 5432;

/// What our side of a `pgsql` relation sends (our unit bag, and our app bag
/// when we lead): the database we want. An empty name sends nothing, and
/// the server then uses our application name (reference §3(a), `database`
/// row).
pub fn pgsql_request(database: &str) -> Bag {
    let mut bag = Bag::new();
    if !database.is_empty() {
        bag.insert("database".to_string(), database.to_string());
    }
    bag
}

/// Everything [`database_url`] needs, as the charm read it from one `pgsql`
/// relation. Its `Debug` shows unit names and keys only: the bags hold
/// passwords.
#[derive(Clone, Copy)]
pub struct PgsqlInput<'a> {
    /// Our unit, e.g. `wsgi-app/1` (`JUJU_UNIT_NAME`).
    pub our_unit: &'a str,
    /// Our unit's egress subnets, e.g. `["10.0.0.5/32"]` (the
    /// `egress-subnets` Juju puts in our own unit bag, split with
    /// [`super::split_comma_list`]).
    pub our_egress_subnets: &'a [String],
    /// The database we requested; empty when we asked for the default.
    pub requested_database: &'a str,
    /// Each PostgreSQL unit's bag, by unit name.
    pub remote_units: &'a BTreeMap<String, Bag>,
    /// The PostgreSQL application's bag (empty when it writes none).
    pub remote_app_bag: &'a Bag,
}

impl fmt::Debug for PgsqlInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys_only = |bag: &Bag| bag.keys().cloned().collect::<Vec<_>>();
        f.debug_struct("PgsqlInput")
            .field("our_unit", &self.our_unit)
            .field("our_egress_subnets", &self.our_egress_subnets)
            .field("requested_database", &self.requested_database)
            .field(
                "remote_units",
                &self
                    .remote_units
                    .iter()
                    .map(|(unit, bag)| (unit, keys_only(bag)))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("remote_app_bag", &keys_only(self.remote_app_bag))
            .finish()
    }
}

/// A ready PostgreSQL connection. The password is never shown by `Debug` or
/// `Display`; use [`DatabaseUrl::redacted`] for logs and
/// [`DatabaseUrl::expose`] only for the application's environment file.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    source: String,
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
    standbys: Vec<String>,
}

impl DatabaseUrl {
    fn build(&self, password: &str) -> String {
        format!(
            "postgresql://{}:{}@{}:{}/{}",
            encode_component(&self.user),
            password,
            url_host(&self.host),
            self.port,
            encode_component(&self.database),
        )
    }

    /// The full URL, password included, for `DATABASE_URL`.
    pub fn expose(&self) -> String {
        self.build(&encode_component(&self.password))
    }

    /// The URL with the password replaced by `***`, for logs and status.
    pub fn redacted(&self) -> String {
        self.build("***")
    }

    /// The unit (or application) whose data the URL came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The hot standbys' libpq connection strings (read-only replicas), as
    /// the server published them. They hold passwords: do not log them.
    pub fn standby_conninfos(&self) -> &[String] {
        &self.standbys
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("url", &self.redacted())
            .field("source", &self.source)
            .field("standbys", &self.standbys.len())
            .finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A host for the authority part of a URL: IPv6 in brackets, anything else
/// percent-encoded as a registered name (libpq decodes `%XX` in hosts, which
/// also carries a Unix-socket directory such as `/var/run/postgresql`).
fn url_host(host: &str) -> String {
    let bracketed = bracket_ipv6(host);
    if bracketed != host {
        bracketed
    } else {
        encode_component(host)
    }
}

/// Why the relation cannot give a `DATABASE_URL` yet; `Display` is the
/// Waiting status message. Holds unit names, key names, subnets and database
/// names only — never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgsqlWaiting {
    /// No unit is `master` (or a lone `standalone`).
    NoMaster {
        /// Each unit and its `state`, `None` when it has published none.
        units: Vec<(String, Option<String>)>,
    },
    /// More than one unit claims to be master (a failover in progress).
    SeveralMasters { units: Vec<String> },
    /// The master has not published these connection keys yet.
    MissingDetails {
        unit: String,
        missing: Vec<&'static str>,
    },
    /// The master's `master` connection string does not parse.
    UnreadableMaster { unit: String, error: ConninfoError },
    /// The master published a `port` that is not a TCP port.
    BadPort { unit: String },
    /// Our unit is not (yet) in the master's `allowed-units`.
    NotInAllowedUnits { unit: String, our_unit: String },
    /// Some of our egress subnets are not (yet) in `allowed-subnets`.
    SubnetsNotAllowed { unit: String, missing: Vec<String> },
    /// The master lists neither `allowed-units` nor `allowed-subnets`.
    NoAccessListed { unit: String, our_unit: String },
    /// `allowed-subnets` is what gates us, but Juju gave us no egress
    /// subnets to check against it.
    NoEgressSubnets { unit: String, our_unit: String },
    /// The server has not mirrored the database we requested.
    DatabaseNotCreated { app: String, database: String },
}

impl fmt::Display for PgsqlWaiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgsqlWaiting::NoMaster { units } if units.is_empty() => {
                write!(f, "waiting for a PostgreSQL master (no units yet)")
            }
            PgsqlWaiting::NoMaster { units } => {
                let listed: Vec<String> = units
                    .iter()
                    .map(|(unit, state)| match state {
                        Some(state) => format!("{unit} {state}"),
                        None => format!("{unit} not ready"),
                    })
                    .collect();
                write!(
                    f,
                    "waiting for a PostgreSQL master (units: {})",
                    listed.join(", ")
                )
            }
            PgsqlWaiting::SeveralMasters { units } => write!(
                f,
                "waiting for a single PostgreSQL master ({} all claim it)",
                units.join(", ")
            ),
            PgsqlWaiting::MissingDetails { unit, missing } => write!(
                f,
                "waiting for {unit} to publish {}",
                missing.join(", ")
            ),
            PgsqlWaiting::UnreadableMaster { unit, error } => write!(
                f,
                "waiting for {unit} to publish a readable master connection string ({error})"
            ),
            PgsqlWaiting::BadPort { unit } => {
                write!(f, "waiting for {unit} to publish a valid port")
            }
            PgsqlWaiting::NotInAllowedUnits { unit, our_unit }
            | PgsqlWaiting::NoAccessListed { unit, our_unit } => {
                write!(f, "waiting for {unit} to list {our_unit} in allowed-units")
            }
            PgsqlWaiting::SubnetsNotAllowed { unit, missing } => write!(
                f,
                "waiting for {unit} to list {} in allowed-subnets",
                missing.join(", ")
            ),
            PgsqlWaiting::NoEgressSubnets { unit, our_unit } => write!(
                f,
                "waiting for Juju to give {our_unit} egress-subnets to check against {unit}'s allowed-subnets"
            ),
            PgsqlWaiting::DatabaseNotCreated { app, database } => {
                write!(f, "waiting for {app} to create database {database:?}")
            }
        }
    }
}

/// States a usable server is in; `hot standby` and `failover` are not.
const STATE_MASTER: &str = "master";
const STATE_STANDALONE: &str = "standalone";

/// Decide whether the relation gives us a database, following the module's
/// five steps. See [`PgsqlWaiting`] for every way it may not (yet).
pub fn database_url(input: &PgsqlInput<'_>) -> Result<DatabaseUrl, PgsqlWaiting> {
    let (source, bag) = choose_master(input)?;
    let details = connection_details(source, bag)?;
    check_access(input, source, bag)?;
    check_database_mirrored(input, source, bag, &details)?;
    Ok(DatabaseUrl {
        source: source.to_string(),
        user: details.user,
        password: details.password,
        host: details.host,
        port: details.port,
        database: details.database,
        standbys: bag
            .get("standbys")
            .map_or_else(Vec::new, |raw| split_standbys(raw)),
    })
}

/// A unit's published `state`, `None` until it has published one.
fn state_of(bag: &Bag) -> Option<&str> {
    bag.get("state").map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// Step 1: the unit to use, with its bag.
fn choose_master<'a>(input: &PgsqlInput<'a>) -> Result<(&'a str, &'a Bag), PgsqlWaiting> {
    let mut units: Vec<(&'a String, &'a Bag)> = input.remote_units.iter().collect();
    units.sort_by_key(|(unit, _)| unit_order_key(unit));

    let masters: Vec<_> = units
        .iter()
        .filter(|(_, bag)| state_of(bag) == Some(STATE_MASTER))
        .collect();
    match masters.as_slice() {
        [(unit, bag)] => return Ok((unit.as_str(), bag)),
        [] => {}
        several => {
            return Err(PgsqlWaiting::SeveralMasters {
                units: several.iter().map(|(unit, _)| unit.to_string()).collect(),
            })
        }
    }
    // `standalone` is trusted only from a lone unit: with several units, a
    // standalone one is a member that has not joined replication yet.
    if let [(unit, bag)] = units.as_slice() {
        if state_of(bag) == Some(STATE_STANDALONE) {
            return Ok((unit.as_str(), bag));
        }
    }
    // Protocol v2 servers may publish in the application bag instead.
    if units.iter().all(|(_, bag)| state_of(bag).is_none())
        && input
            .remote_app_bag
            .get("master")
            .is_some_and(|m| !m.trim().is_empty())
    {
        let app = units
            .first()
            .map_or("the PostgreSQL application", |(unit, _)| app_of_unit(unit));
        return Ok((app, input.remote_app_bag));
    }
    Err(PgsqlWaiting::NoMaster {
        units: units
            .iter()
            .map(|(unit, bag)| (unit.to_string(), state_of(bag).map(str::to_string)))
            .collect(),
    })
}

/// What a URL is built from.
struct ConnectionDetails {
    host: String,
    port: u16,
    user: String,
    password: String,
    /// The database the connection details name (`database` key, or
    /// `dbname` in the `master` string).
    database: String,
}

fn non_empty<'b>(bag: &'b Bag, key: &str) -> Option<&'b str> {
    bag.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Step 2: the discrete keys when `host` is there, else the `master` string.
fn connection_details(unit: &str, bag: &Bag) -> Result<ConnectionDetails, PgsqlWaiting> {
    if non_empty(bag, "host").is_some() {
        let keys = ["host", "port", "user", "password", "database"];
        let missing: Vec<&'static str> = keys
            .into_iter()
            .filter(|key| non_empty(bag, key).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(PgsqlWaiting::MissingDetails {
                unit: unit.to_string(),
                missing,
            });
        }
        let value = |key: &str| non_empty(bag, key).unwrap_or_default().to_string();
        return Ok(ConnectionDetails {
            host: value("host"),
            port: parse_port(unit, &value("port"))?,
            user: value("user"),
            password: value("password"),
            database: value("database"),
        });
    }

    let Some(master) = non_empty(bag, "master") else {
        return Err(PgsqlWaiting::MissingDetails {
            unit: unit.to_string(),
            missing: vec!["host", "port", "user", "password", "database"],
        });
    };
    let conninfo = Conninfo::parse(master).map_err(|error| PgsqlWaiting::UnreadableMaster {
        unit: unit.to_string(),
        error,
    })?;
    let field = |key: &str| conninfo.get(key).filter(|v| !v.is_empty());
    // libpq takes `hostaddr` when there is no `host`.
    let host = field("host").or_else(|| field("hostaddr"));
    let mut missing = Vec::new();
    if host.is_none() {
        missing.push("host");
    }
    if field("user").is_none() {
        missing.push("user");
    }
    if field("password").is_none() {
        missing.push("password");
    }
    // The database comes from the conninfo, or else the mirrored key.
    let database = field("dbname").or_else(|| non_empty(bag, "database"));
    if database.is_none() {
        missing.push("database");
    }
    if !missing.is_empty() {
        return Err(PgsqlWaiting::MissingDetails {
            unit: unit.to_string(),
            missing,
        });
    }
    Ok(ConnectionDetails {
        host: host.unwrap_or_default().to_string(),
        port: match field("port") {
            Some(port) => parse_port(unit, port)?,
            None => DEFAULT_POSTGRESQL_PORT,
        },
        user: field("user").unwrap_or_default().to_string(),
        password: field("password").unwrap_or_default().to_string(),
        database: database.unwrap_or_default().to_string(),
    })
}

fn parse_port(unit: &str, text: &str) -> Result<u16, PgsqlWaiting> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| PgsqlWaiting::BadPort {
            unit: unit.to_string(),
        })
}

/// Step 3: has the server granted *us* access (pg_hba updated)?
fn check_access(input: &PgsqlInput<'_>, unit: &str, bag: &Bag) -> Result<(), PgsqlWaiting> {
    let allowed_units: Vec<&str> = bag
        .get("allowed-units")
        .map_or_else(Vec::new, |raw| raw.split_whitespace().collect());
    if !allowed_units.is_empty() {
        return if allowed_units.contains(&input.our_unit) {
            Ok(())
        } else {
            Err(PgsqlWaiting::NotInAllowedUnits {
                unit: unit.to_string(),
                our_unit: input.our_unit.to_string(),
            })
        };
    }

    let allowed_subnets: Vec<Cidr> = bag
        .get("allowed-subnets")
        .map_or_else(Vec::new, |raw| split_comma_list(raw))
        .iter()
        // A malformed entry grants nothing; it does not void the others.
        .filter_map(|text| Cidr::parse(text).ok())
        .collect();
    if allowed_subnets.is_empty() {
        return Err(PgsqlWaiting::NoAccessListed {
            unit: unit.to_string(),
            our_unit: input.our_unit.to_string(),
        });
    }
    // An empty egress list would be vacuously "contained" (ops-lib-pgsql
    // accepts it); we refuse, because it proves nothing about pg_hba.
    if input.our_egress_subnets.is_empty() {
        return Err(PgsqlWaiting::NoEgressSubnets {
            unit: unit.to_string(),
            our_unit: input.our_unit.to_string(),
        });
    }
    let missing: Vec<String> = input
        .our_egress_subnets
        .iter()
        .filter(|egress| match Cidr::parse(egress) {
            Ok(egress) => !allowed_subnets
                .iter()
                .any(|allowed| allowed.contains(&egress)),
            Err(_) => true,
        })
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PgsqlWaiting::SubnetsNotAllowed {
            unit: unit.to_string(),
            missing,
        })
    }
}

/// Step 4: the server mirrors `database` once it has created it. With no
/// specific request (empty), whatever it created is fine.
fn check_database_mirrored(
    input: &PgsqlInput<'_>,
    unit: &str,
    bag: &Bag,
    details: &ConnectionDetails,
) -> Result<(), PgsqlWaiting> {
    let requested = input.requested_database;
    if requested.is_empty() {
        return Ok(());
    }
    let mirrored = non_empty(bag, "database");
    if mirrored == Some(requested) && details.database == requested {
        Ok(())
    } else {
        Err(PgsqlWaiting::DatabaseNotCreated {
            app: app_of_unit(unit).to_string(),
            database: requested.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn master(extra: &[(&str, &str)]) -> Bag {
        let mut bag = bag(&[
            ("state", "master"),
            ("host", "10.0.0.10"),
            ("port", "5432"),
            ("user", "u"),
            ("password", "s3cret-pw"),
            ("database", "db"),
            ("allowed-units", "app/0"),
        ]);
        for (k, v) in extra {
            bag.insert(k.to_string(), v.to_string());
        }
        bag
    }

    fn run(remote: Bag, egress: &[&str]) -> Result<DatabaseUrl, PgsqlWaiting> {
        let units = BTreeMap::from([("pg/0".to_string(), remote)]);
        let egress: Vec<String> = egress.iter().map(|s| s.to_string()).collect();
        database_url(&PgsqlInput {
            our_unit: "app/0",
            our_egress_subnets: &egress,
            requested_database: "db",
            remote_units: &units,
            remote_app_bag: &Bag::new(),
        })
    }

    #[test]
    fn input_debug_shows_keys_not_values() {
        let units = BTreeMap::from([("pg/0".to_string(), master(&[]))]);
        let input = PgsqlInput {
            our_unit: "app/0",
            our_egress_subnets: &[],
            requested_database: "db",
            remote_units: &units,
            remote_app_bag: &Bag::new(),
        };
        let shown = format!("{input:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("\"password\""), "{shown}");
    }

    #[test]
    fn a_port_that_is_not_a_port_waits() {
        let waiting = run(master(&[("port", "65536")]), &[]).unwrap_err();
        assert_eq!(
            waiting,
            PgsqlWaiting::BadPort {
                unit: "pg/0".into()
            }
        );
        assert_eq!(
            waiting.to_string(),
            "waiting for pg/0 to publish a valid port"
        );
        assert!(run(master(&[("port", "0")]), &[]).is_err());
    }

    #[test]
    fn malformed_allowed_subnets_entries_grant_nothing_but_void_nothing() {
        let remote = master(&[
            ("allowed-units", ""),
            ("allowed-subnets", "garbage,10.0.0.0/8"),
        ]);
        assert!(run(remote.clone(), &["10.1.2.3/32"]).is_ok());
        assert_eq!(
            run(remote, &["10.1.2.3/32", "not-a-subnet"]).unwrap_err(),
            PgsqlWaiting::SubnetsNotAllowed {
                unit: "pg/0".into(),
                missing: vec!["not-a-subnet".into()]
            }
        );
    }

    #[test]
    fn dbname_in_master_string_must_match_the_request_too() {
        let remote = bag(&[
            ("state", "master"),
            ("database", "db"),
            ("allowed-units", "app/0"),
            ("master", "host=h user=u password=p dbname=other"),
        ]);
        assert!(matches!(
            run(remote, &[]),
            Err(PgsqlWaiting::DatabaseNotCreated { .. })
        ));
    }

    #[test]
    fn hosts_in_the_url_authority() {
        assert_eq!(url_host("db.example.com"), "db.example.com");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("/var/run/postgresql"), "%2Fvar%2Frun%2Fpostgresql");
    }
}

//! The requirer side of `postgresql_client` and `mongodb_client` (the
//! data_interfaces v0 protocol; shared/reference/modern-interfaces.md §2,
//! §3 and §6): what our leader asks for, where the provider's answer is
//! (its application bag, and the Juju secrets it names), and the URLs the
//! application gets from it.
//!
//! 1. [`database_request`]: the leader writes `database` and
//!    `requested-secrets` (JSON text) in our application bag, and
//!    `requested-secrets` in our unit bag too (§2.1); a name PostgreSQL 16
//!    would refuse is refused here first (§2.6).
//! 2. [`SecretUris::from_app_bag`]: the `secret-user` / `secret-tls` URIs,
//!    each read by the charm with `secret-get <uri> --label
//!    <endpoint>.<relation-id>.<group>.secret --refresh` ([`secret_label`],
//!    §2.3–2.4). Without them (Juju without secrets, or a provider that
//!    ignored `requested-secrets`) the same fields are plain bag keys (§2.5).
//! 3. [`provider_answer`]: the app bag and the secrets' content as typed
//!    credentials, or what is still missing or malformed ([`DbProblem`],
//!    naming the relation and the field, never a value). Until `secret-user`
//!    or both `username` and `password` are there, the provider has not
//!    answered yet (the library's `database_created` test, §2.2).
//! 4. [`DbAnswer::urls`]: `DATABASE_URL` / `MONGO_URL` (the provider's
//!    `uris` when it gave one, else built from endpoints and credentials,
//!    every part percent-encoded), `DATABASE_READ_ONLY_URL` when there are
//!    read-only endpoints, the TLS query parameters when `tls` is `True`,
//!    and the 12-factor names (§2.7).
//!
//! Everything that holds a password shows it only through `expose()`.

use std::fmt;

use super::percent::encode_component;
use super::{bracket_ipv6, split_comma_list};
use crate::ops::backend::Bag;
use crate::ops::SecretContent;

/// Which provider interface a relation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbKind {
    /// `postgresql_client`: `DATABASE_URL`, `DATABASE_READ_ONLY_URL`.
    Postgresql,
    /// `mongodb_client`: `MONGO_URL`.
    Mongodb,
}

impl DbKind {
    fn name(self) -> &'static str {
        match self {
            DbKind::Postgresql => "PostgreSQL",
            DbKind::Mongodb => "MongoDB",
        }
    }

    fn schemes(self) -> &'static [&'static str] {
        match self {
            DbKind::Postgresql => &["postgresql", "postgres"],
            DbKind::Mongodb => &["mongodb"],
        }
    }

    /// The variable the application reads, and its 12-factor twin.
    pub fn url_variables(self) -> (&'static str, &'static str) {
        match self {
            DbKind::Postgresql => ("DATABASE_URL", "POSTGRESQL_DB_CONNECT_STRING"),
            DbKind::Mongodb => ("MONGO_URL", "MONGODB_DB_CONNECT_STRING"),
        }
    }
}

/// The fields we ask to receive inside Juju secrets: the `user` and `tls`
/// groups (§2.3). Entity and mTLS fields are for requests we never make.
pub const REQUESTED_SECRETS: &[&str] = &[
    "username",
    "password",
    "tls",
    "tls-ca",
    "uris",
    "read-only-uris",
];

/// What the leader writes on `<endpoint>-relation-created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRequest {
    /// Our application bag: `database`, `requested-secrets`.
    pub app: Bag,
    /// Our unit bag: `requested-secrets` (the library writes it to both).
    pub unit: Bag,
}

/// Why we will not ask for a database name (the operator's
/// `database_name`); `Display` is the Blocked message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    #[error("database_name is empty")]
    Empty,
    #[error("database_name {0:?} is reserved by PostgreSQL (databases, postgres, template0 and template1 are refused)")]
    Reserved(String),
    #[error(
        "database_name {name:?} is {length} characters long; PostgreSQL 16 accepts at most 49"
    )]
    TooLong { name: String, length: usize },
    #[error("database_name {0:?} holds a control character")]
    ControlCharacter(String),
}

/// The longest database name PostgreSQL 16's charm accepts: 63 bytes of
/// identifier less its `charmed_` prefix and `_owner` suffix (§2.6).
pub const MAX_POSTGRESQL_DATABASE: usize = 49;

/// The request for `database` (§2.1), refused when the provider would
/// refuse the name (§2.6: PostgreSQL blocks on it, which we should say
/// first and plainly).
pub fn database_request(kind: DbKind, database: &str) -> Result<DatabaseRequest, RequestRefused> {
    if database.is_empty() {
        return Err(RequestRefused::Empty);
    }
    if database.chars().any(char::is_control) {
        return Err(RequestRefused::ControlCharacter(database.to_string()));
    }
    if kind == DbKind::Postgresql {
        if ["databases", "postgres", "template0", "template1"].contains(&database) {
            return Err(RequestRefused::Reserved(database.to_string()));
        }
        let length = database.chars().count();
        if length > MAX_POSTGRESQL_DATABASE {
            return Err(RequestRefused::TooLong {
                name: database.to_string(),
                length,
            });
        }
    }
    let requested = serde_json::to_string(REQUESTED_SECRETS).expect("a list of strings serialises");
    let unit = Bag::from([("requested-secrets".to_string(), requested)]);
    let mut app = unit.clone();
    app.insert("database".to_string(), database.to_string());
    Ok(DatabaseRequest { app, unit })
}

/// The label a requirer binds to the provider's secret of `group` (`user`,
/// `tls`): `<our endpoint>.<relation id>.<group>.secret` (§2.3).
pub fn secret_label(endpoint: &str, relation_id: u32, group: &str) -> String {
    format!("{endpoint}.{relation_id}.{group}.secret")
}

/// The relation and group a label names (`JUJU_SECRET_LABEL` in
/// `secret-changed`), if it is one of [`secret_label`]'s.
pub fn parse_secret_label(label: &str) -> Option<(&str, u32, &str)> {
    let rest = label.strip_suffix(".secret")?;
    let (rest, group) = rest.rsplit_once('.')?;
    let (endpoint, id) = rest.rsplit_once('.')?;
    if endpoint.is_empty() || endpoint.contains('.') || group.is_empty() {
        return None;
    }
    Some((endpoint, id.parse().ok()?, group))
}

/// The secrets the provider names in its application bag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretUris {
    /// `secret-user`: username, password, uris, read-only-uris.
    pub user: Option<String>,
    /// `secret-tls`: tls, tls-ca.
    pub tls: Option<String>,
}

impl SecretUris {
    pub fn from_app_bag(bag: &Bag) -> SecretUris {
        let uri = |key: &str| {
            bag.get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        SecretUris {
            user: uri("secret-user"),
            tls: uri("secret-tls"),
        }
    }
}

/// What the charm read for one relation. `Debug` shows keys only.
#[derive(Clone, Copy)]
pub struct ProviderInput<'a> {
    pub kind: DbKind,
    /// `postgresql:7`, for messages.
    pub relation: &'a str,
    /// The provider application's name, for messages.
    pub provider: &'a str,
    /// The database our leader requested.
    pub requested_database: &'a str,
    /// The provider's application bag.
    pub app_bag: &'a Bag,
    /// The content of `secret-user`, when the bag names it.
    pub user_secret: Option<&'a SecretContent>,
    /// The content of `secret-tls`, when the bag names it.
    pub tls_secret: Option<&'a SecretContent>,
}

impl fmt::Debug for ProviderInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderInput")
            .field("kind", &self.kind)
            .field("relation", &self.relation)
            .field("app_bag_keys", &self.app_bag.keys().collect::<Vec<_>>())
            .field("user_secret", &self.user_secret)
            .field("tls_secret", &self.tls_secret)
            .finish()
    }
}

/// Why there is no URL yet; `Display` is the status message. Names the
/// relation and fields, never a value that could be a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbProblem {
    /// Neither `secret-user` nor `username` and `password` yet (Waiting).
    NotAnswered { relation: String, provider: String },
    /// The provider created another database than ours (Blocked).
    OtherDatabase {
        relation: String,
        requested: String,
        got: String,
    },
    /// Fields the answer needs but lacks (Waiting).
    Missing {
        relation: String,
        fields: Vec<&'static str>,
    },
    /// A field that is there but unusable (Blocked).
    Malformed {
        relation: String,
        field: &'static str,
        why: String,
    },
    /// Credentials that came before our request (Waiting): data_interfaces'
    /// provider refuses to write them until the requirer's `database` is
    /// there (`PrematureDataAccessError`, §2.2), so they answer no request
    /// of ours.
    Premature { relation: String },
    /// The secret a field names cannot be read (`why` says how); Waiting
    /// when the provider may still grant or publish it.
    SecretUnreadable {
        relation: String,
        field: &'static str,
        why: String,
        waiting: bool,
    },
}

impl DbProblem {
    /// Whether a later answer may fix it on its own (Waiting), or an
    /// operator must act (Blocked).
    pub fn is_waiting(&self) -> bool {
        match self {
            DbProblem::NotAnswered { .. }
            | DbProblem::Missing { .. }
            | DbProblem::Premature { .. } => true,
            DbProblem::SecretUnreadable { waiting, .. } => *waiting,
            DbProblem::OtherDatabase { .. } | DbProblem::Malformed { .. } => false,
        }
    }
}

impl fmt::Display for DbProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbProblem::NotAnswered { relation, provider } => {
                write!(
                    f,
                    "waiting for {provider} to create the database ({relation})"
                )
            }
            DbProblem::OtherDatabase {
                relation,
                requested,
                got,
            } => write!(
                f,
                "{relation}: asked for database {requested:?}, the provider created {got:?}"
            ),
            DbProblem::Missing { relation, fields } => {
                write!(f, "{relation}: waiting for {}", fields.join(", "))
            }
            DbProblem::Malformed {
                relation,
                field,
                why,
            } => write!(f, "{relation}: {field} {why}"),
            DbProblem::Premature { relation } => write!(
                f,
                "{relation}: the provider sent credentials before our request (no database in its answer); refused, waiting for its answer to our request"
            ),
            DbProblem::SecretUnreadable {
                relation,
                field,
                why,
                ..
            } => write!(f, "{relation}: {field} {why}"),
        }
    }
}

/// One `host:port` as endpoints list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    fn authority(&self) -> String {
        let host = bracket_ipv6(&self.host);
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

/// A host we can write into a URL as it is: an IP address or a DNS name
/// (MongoDB URIs do not decode `%XX` in hosts).
fn is_plain_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
}

fn parse_endpoint(entry: &str) -> Option<Endpoint> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some(Endpoint {
            host: host.to_string(),
            port,
        });
    }
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(Endpoint {
            host: entry.to_string(),
            port: None,
        });
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().ok().filter(|&p| p != 0)?)),
        None => (entry, None),
    };
    is_plain_host(host).then(|| Endpoint {
        host: host.to_string(),
        port,
    })
}

fn parse_endpoints(
    relation: &str,
    field: &'static str,
    raw: Option<&str>,
) -> Result<Vec<Endpoint>, DbProblem> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    split_comma_list(raw)
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            parse_endpoint(entry).ok_or_else(|| DbProblem::Malformed {
                relation: relation.to_string(),
                field,
                why: format!("entry {} is not host:port", i + 1),
            })
        })
        .collect()
}

/// A connection URL with a password in it: shown only by
/// [`SecretUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: String,
    /// Where the password is in `url` (byte range), for [`Self::redacted`].
    password: Option<(usize, usize)>,
}

impl SecretUrl {
    /// The whole URL, for the application's environment file only.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The URL with its password as `***`, for logs and statuses.
    pub fn redacted(&self) -> String {
        match self.password {
            Some((start, end)) => format!("{}***{}", &self.url[..start], &self.url[end..]),
            None => self.url.clone(),
        }
    }

    /// What the store may keep: the redacted URL without its query or
    /// fragment, where a provider could have put a password too
    /// (`?password=` is valid libpq).
    pub fn for_the_store(&self) -> String {
        let mut redacted = self.redacted();
        if let Some(cut) = redacted.find(['?', '#']) {
            redacted.truncate(cut);
        }
        redacted
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Check that `text` is a `<scheme>://…` URL of this kind with a host, and
/// find its password. `None` for anything else; the caller names the field.
fn checked_url(kind: DbKind, text: &str) -> Option<SecretUrl> {
    let (scheme, rest) = text.split_once("://")?;
    if !kind.schemes().contains(&scheme)
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let start = scheme.len() + 3;
    let (password, hosts) = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let password = userinfo
                .find(':')
                .map(|colon| (start + colon + 1, start + at));
            (password, &authority[at + 1..])
        }
        None => (None, authority),
    };
    if hosts.is_empty() || hosts.split(',').any(str::is_empty) {
        return None;
    }
    Some(SecretUrl {
        url: text.to_string(),
        password,
    })
}

/// Add query parameters to a URL (`?` or `&` as it needs).
fn with_query(mut url: SecretUrl, params: &[(&str, String)]) -> SecretUrl {
    if params.is_empty() {
        return url;
    }
    let mut sep = if url.url.contains('?') { '&' } else { '?' };
    for (key, value) in params {
        url.url.push(sep);
        url.url.push_str(key);
        url.url.push('=');
        url.url.push_str(&encode_component(value));
        sep = '&';
    }
    url
}

/// The provider's answer, typed. `Debug` hides the password and the URIs.
#[derive(Clone, PartialEq, Eq)]
pub struct DbAnswer {
    kind: DbKind,
    pub database: String,
    pub username: String,
    password: String,
    pub endpoints: Vec<Endpoint>,
    pub read_only_endpoints: Vec<Endpoint>,
    pub replset: Option<String>,
    pub version: Option<String>,
    pub tls: bool,
    /// The CA (PEM) to trust when `tls`; empty when the provider sent none.
    pub tls_ca: String,
    uris: Option<SecretUrl>,
    read_only_uris: Option<SecretUrl>,
}

impl fmt::Debug for DbAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbAnswer")
            .field("kind", &self.kind)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("endpoints", &self.endpoints)
            .field("read_only_endpoints", &self.read_only_endpoints)
            .field("replset", &self.replset)
            .field("tls", &self.tls)
            .field("uris", &self.uris)
            .finish_non_exhaustive()
    }
}

/// The application's connection settings from one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrls {
    pub primary: SecretUrl,
    /// PostgreSQL only, when the provider lists read-only endpoints.
    pub read_only: Option<SecretUrl>,
}

impl DbUrls {
    /// The variables for the application's environment: the URL (and its
    /// 12-factor twin), and `DATABASE_READ_ONLY_URL` when there is one.
    pub fn variables(&self, kind: DbKind) -> Vec<(&'static str, &SecretUrl)> {
        let (name, twelve_factor) = kind.url_variables();
        let mut vars = vec![(name, &self.primary), (twelve_factor, &self.primary)];
        if let Some(read_only) = &self.read_only {
            vars.push(("DATABASE_READ_ONLY_URL", read_only));
        }
        vars
    }
}

/// Read the provider's answer (§2.2, §3): fields from the secrets when the
/// bag names them (their content wins over plain keys), else plain keys.
pub fn provider_answer(input: &ProviderInput<'_>) -> Result<DbAnswer, DbProblem> {
    let relation = input.relation.to_string();
    let field = |key: &str| -> Option<String> {
        let from_secret = match key {
            "username" | "password" | "uris" | "read-only-uris" => input.user_secret,
            "tls" | "tls-ca" => input.tls_secret,
            _ => None,
        }
        .and_then(|content| content.get(key));
        from_secret
            .or_else(|| input.app_bag.get(key).map(String::as_str))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (username, password) = (field("username"), field("password"));
    let answered = input.user_secret.is_some() || (username.is_some() && password.is_some());
    if !answered {
        return Err(DbProblem::NotAnswered {
            relation,
            provider: input.provider.to_string(),
        });
    }
    let database = field("database");
    if let Some(got) = &database {
        if got != input.requested_database {
            return Err(DbProblem::OtherDatabase {
                relation,
                requested: input.requested_database.to_string(),
                got: got.clone(),
            });
        }
    }
    let malformed = |field: &'static str, why: &str| DbProblem::Malformed {
        relation: relation.clone(),
        field,
        why: why.to_string(),
    };
    let uri = |key: &'static str| -> Result<Option<SecretUrl>, DbProblem> {
        match field(key) {
            None => Ok(None),
            Some(text) => checked_url(input.kind, &text).map(Some).ok_or_else(|| {
                malformed(key, &format!("is not a {}:// URI", input.kind.schemes()[0]))
            }),
        }
    };
    let uris = uri("uris")?;
    let read_only_uris = uri("read-only-uris")?;
    let endpoints = parse_endpoints(input.relation, "endpoints", field("endpoints").as_deref())?;
    let read_only_endpoints = parse_endpoints(
        input.relation,
        "read-only-endpoints",
        field("read-only-endpoints").as_deref(),
    )?;
    let tls = match field("tls") {
        None => false,
        Some(flag) if flag.eq_ignore_ascii_case("true") => true,
        Some(flag) if flag.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(malformed("tls", "is neither True nor False")),
    };
    let tls_ca = field("tls-ca").unwrap_or_default();

    let mut missing = Vec::new();
    if username.is_none() {
        missing.push("username");
    }
    if password.is_none() {
        missing.push("password");
    }
    if uris.is_none() {
        if database.is_none() {
            missing.push("database");
        }
        if endpoints.is_empty() {
            missing.push("endpoints");
        }
    }
    if tls && tls_ca.is_empty() {
        missing.push("tls-ca");
    }
    if !missing.is_empty() {
        return Err(DbProblem::Missing {
            relation,
            fields: missing,
        });
    }
    Ok(DbAnswer {
        kind: input.kind,
        database: database.unwrap_or_else(|| input.requested_database.to_string()),
        username: username.unwrap_or_default(),
        password: password.unwrap_or_default(),
        endpoints,
        read_only_endpoints,
        replset: field("replset"),
        version: field("version"),
        tls,
        tls_ca,
        uris,
        read_only_uris,
    })
}

impl DbAnswer {
    /// The password, for the one place that needs it apart from a URL.
    pub fn expose_password(&self) -> &str {
        &self.password
    }

    /// Build `scheme://user:password@hosts/database[?query]`, every part
    /// percent-encoded, remembering where the password is.
    fn build(&self, hosts: &[Endpoint], query: &[(&str, String)]) -> SecretUrl {
        let scheme = self.kind.schemes()[0];
        let user = encode_component(&self.username);
        let prefix = format!("{scheme}://{user}:");
        let start = prefix.len();
        let password = encode_component(&self.password);
        let end = start + password.len();
        let hosts: Vec<String> = hosts.iter().map(Endpoint::authority).collect();
        let url = format!(
            "{prefix}{password}@{}/{}",
            hosts.join(","),
            encode_component(&self.database)
        );
        with_query(
            SecretUrl {
                url,
                password: Some((start, end)),
            },
            query,
        )
    }

    /// The URLs for the application. `ca_file` is where the charm put
    /// [`DbAnswer::tls_ca`] when `tls` (a path the app user can read); with
    /// TLS the URLs verify the server against it.
    pub fn urls(&self, ca_file: Option<&str>) -> DbUrls {
        let tls: Vec<(&str, String)> = match (self.tls, ca_file) {
            (true, Some(path)) => match self.kind {
                DbKind::Postgresql => vec![
                    ("sslmode", "verify-full".to_string()),
                    ("sslrootcert", path.to_string()),
                ],
                DbKind::Mongodb => {
                    vec![("tls", "true".to_string()), ("tlsCAFile", path.to_string())]
                }
            },
            (true, None) => match self.kind {
                DbKind::Postgresql => vec![("sslmode", "verify-full".to_string())],
                DbKind::Mongodb => vec![("tls", "true".to_string())],
            },
            (false, _) => Vec::new(),
        };
        let primary = match (&self.uris, self.kind) {
            (Some(uris), _) => with_query(uris.clone(), &tls),
            (None, DbKind::Postgresql) => self.build(&self.endpoints[..1], &tls),
            (None, DbKind::Mongodb) => {
                let mut query = Vec::new();
                if let Some(replset) = &self.replset {
                    query.push(("replicaSet", replset.clone()));
                }
                query.push(("authSource", "admin".to_string()));
                query.extend(tls.iter().cloned());
                self.build(&self.endpoints, &query)
            }
        };
        let read_only = match self.kind {
            DbKind::Mongodb => None,
            DbKind::Postgresql => match (&self.read_only_uris, self.read_only_endpoints.is_empty())
            {
                (Some(uris), _) => Some(with_query(uris.clone(), &tls)),
                (None, false) => Some(self.build(&self.read_only_endpoints, &tls)),
                (None, true) => None,
            },
        };
        DbUrls { primary, read_only }
    }

    /// For messages: e.g. `PostgreSQL 16.4 at 10.0.0.5:5432`.
    pub fn describe(&self) -> String {
        let mut text = self.kind.name().to_string();
        if let Some(version) = &self.version {
            text.push(' ');
            text.push_str(version);
        }
        if let Some(first) = self.endpoints.first() {
            text.push_str(" at ");
            text.push_str(&first.authority());
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn content(pairs: &[(&str, &str)]) -> SecretContent {
        SecretContent::new(bag(pairs).into_iter().collect::<BTreeMap<_, _>>())
    }

    fn input<'a>(
        kind: DbKind,
        app_bag: &'a Bag,
        user: Option<&'a SecretContent>,
        tls: Option<&'a SecretContent>,
    ) -> ProviderInput<'a> {
        ProviderInput {
            kind,
            relation: "postgresql:7",
            provider: "postgresql",
            requested_database: "shop",
            app_bag,
            user_secret: user,
            tls_secret: tls,
        }
    }

    const PASSWORD: &str = "p@ss:w/rd ?#%&";

    #[test]
    fn the_request_carries_database_and_requested_secrets_in_both_bags() {
        let request = database_request(DbKind::Postgresql, "shop").unwrap();
        let requested = r#"["username","password","tls","tls-ca","uris","read-only-uris"]"#;
        assert_eq!(
            request.app,
            bag(&[("database", "shop"), ("requested-secrets", requested)])
        );
        assert_eq!(request.unit, bag(&[("requested-secrets", requested)]));
    }

    #[test]
    fn names_postgresql_16_refuses_are_refused_first() {
        for reserved in ["databases", "postgres", "template0", "template1"] {
            assert_eq!(
                database_request(DbKind::Postgresql, reserved),
                Err(RequestRefused::Reserved(reserved.into()))
            );
            // MongoDB has no such rule.
            assert!(database_request(DbKind::Mongodb, reserved).is_ok());
        }
        let long = "d".repeat(50);
        let refused = database_request(DbKind::Postgresql, &long).unwrap_err();
        assert!(refused.to_string().contains("at most 49"), "{refused}");
        assert!(database_request(DbKind::Postgresql, &"d".repeat(49)).is_ok());
        assert_eq!(
            database_request(DbKind::Mongodb, ""),
            Err(RequestRefused::Empty)
        );
        assert!(database_request(DbKind::Postgresql, "a\nb").is_err());
    }

    #[test]
    fn labels_name_our_endpoint_the_bare_relation_id_and_the_group() {
        assert_eq!(
            secret_label("postgresql", 7, "user"),
            "postgresql.7.user.secret"
        );
        assert_eq!(
            parse_secret_label("mongodb-client.12.tls.secret"),
            Some(("mongodb-client", 12, "tls"))
        );
        for bad in [
            "database.x.user.secret",
            "user.secret",
            "a.b.7.user.secret",
            "a.7.user",
        ] {
            assert_eq!(parse_secret_label(bad), None, "{bad}");
        }
        let uris = SecretUris::from_app_bag(&bag(&[
            ("secret-user", "secret:cn8f3mvmp25c7a5b6b2g"),
            ("secret-tls", " "),
        ]));
        assert_eq!(uris.user.as_deref(), Some("secret:cn8f3mvmp25c7a5b6b2g"));
        assert_eq!(uris.tls, None);
    }

    #[test]
    fn no_answer_until_the_secret_or_both_credentials_are_there() {
        // Endpoints may come before our request is answered (§2.2).
        let early = bag(&[("endpoints", "10.0.0.5:5432")]);
        let problem = provider_answer(&input(DbKind::Postgresql, &early, None, None)).unwrap_err();
        assert!(problem.is_waiting());
        assert_eq!(
            problem.to_string(),
            "waiting for postgresql to create the database (postgresql:7)"
        );
        let half = bag(&[("endpoints", "10.0.0.5:5432"), ("username", "relation-7")]);
        assert!(matches!(
            provider_answer(&input(DbKind::Postgresql, &half, None, None)),
            Err(DbProblem::NotAnswered { .. })
        ));
    }

    #[test]
    fn postgresql_from_a_secret_builds_an_encoded_url() {
        let app = bag(&[
            ("database", "shop"),
            ("endpoints", "10.0.0.5:5432"),
            ("read-only-endpoints", "10.0.0.6:5432,10.0.0.7:5432"),
            ("version", "16.4"),
            ("secret-user", "secret:cn8f3mvmp25c7a5b6b2g"),
            // A plain key the secret overrides.
            ("password", "stale"),
        ]);
        let user = content(&[("username", "relation-7"), ("password", PASSWORD)]);
        let answer = provider_answer(&input(DbKind::Postgresql, &app, Some(&user), None)).unwrap();
        assert!(!format!("{answer:?}").contains("p@ss"));
        assert_eq!(answer.describe(), "PostgreSQL 16.4 at 10.0.0.5:5432");
        let urls = answer.urls(None);
        let encoded = "p%40ss%3Aw%2Frd%20%3F%23%25%26";
        assert_eq!(
            urls.primary.expose(),
            format!("postgresql://relation-7:{encoded}@10.0.0.5:5432/shop")
        );
        assert_eq!(
            urls.primary.redacted(),
            "postgresql://relation-7:***@10.0.0.5:5432/shop"
        );
        assert_eq!(urls.primary.to_string(), urls.primary.redacted());
        assert!(!format!("{urls:?}").contains("p%40ss"));
        assert_eq!(
            urls.read_only.as_ref().unwrap().expose(),
            format!("postgresql://relation-7:{encoded}@10.0.0.6:5432,10.0.0.7:5432/shop")
        );
        let vars: Vec<&str> = urls
            .variables(DbKind::Postgresql)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            vars,
            [
                "DATABASE_URL",
                "POSTGRESQL_DB_CONNECT_STRING",
                "DATABASE_READ_ONLY_URL"
            ]
        );
    }

    #[test]
    fn the_store_form_shows_no_password_in_userinfo_or_query() {
        let url = checked_url(
            DbKind::Postgresql,
            "postgresql://u:s3cret@h:5432/db?password=s3cret&sslmode=require",
        )
        .unwrap();
        assert_eq!(url.for_the_store(), "postgresql://u:***@h:5432/db");
        let bare = checked_url(DbKind::Mongodb, "mongodb://h/db#s3cret").unwrap();
        assert_eq!(bare.for_the_store(), "mongodb://h/db");
    }

    #[test]
    fn the_providers_uris_win_and_tls_adds_verification() {
        let app = bag(&[
            ("database", "shop"),
            ("endpoints", "10.0.0.5:5432"),
            ("secret-user", "secret:a"),
            ("secret-tls", "secret:b"),
        ]);
        let user = content(&[
            ("username", "relation-7"),
            ("password", "pw"),
            ("uris", "postgresql://relation-7:pw@10.0.0.5:5432/shop"),
        ]);
        let tls = content(&[("tls", "True"), ("tls-ca", "-----BEGIN CERTIFICATE-----")]);
        let answer =
            provider_answer(&input(DbKind::Postgresql, &app, Some(&user), Some(&tls))).unwrap();
        assert!(answer.tls);
        let urls = answer.urls(Some("/var/lib/shop/db ca.pem"));
        assert_eq!(
            urls.primary.expose(),
            "postgresql://relation-7:pw@10.0.0.5:5432/shop?sslmode=verify-full&sslrootcert=%2Fvar%2Flib%2Fshop%2Fdb%20ca.pem"
        );
        assert_eq!(
            urls.primary.redacted(),
            "postgresql://relation-7:***@10.0.0.5:5432/shop?sslmode=verify-full&sslrootcert=%2Fvar%2Flib%2Fshop%2Fdb%20ca.pem"
        );
        assert_eq!(urls.read_only, None);

        // tls without a CA: waiting for it, naming the field.
        let no_ca = content(&[("tls", "True")]);
        let problem = provider_answer(&input(DbKind::Postgresql, &app, Some(&user), Some(&no_ca)))
            .unwrap_err();
        assert_eq!(problem.to_string(), "postgresql:7: waiting for tls-ca");
    }

    #[test]
    fn plain_bag_mode_for_juju_without_secrets() {
        let app = bag(&[
            ("database", "shop"),
            ("endpoints", "[2001:db8::5]:5432"),
            ("username", "relation-7"),
            ("password", "pw"),
            ("tls", "False"),
        ]);
        let answer = provider_answer(&input(DbKind::Postgresql, &app, None, None)).unwrap();
        assert_eq!(
            answer.urls(Some("/ignored")).primary.expose(),
            "postgresql://relation-7:pw@[2001:db8::5]:5432/shop"
        );
    }

    #[test]
    fn bad_provider_data_names_the_field_never_the_value() {
        let user = content(&[
            ("username", "relation-7"),
            ("password", "hunter2"),
            ("uris", "hunter2 is not a URL"),
        ]);
        let app = bag(&[("database", "shop"), ("secret-user", "secret:a")]);
        let problem =
            provider_answer(&input(DbKind::Postgresql, &app, Some(&user), None)).unwrap_err();
        assert!(!problem.is_waiting());
        assert_eq!(
            problem.to_string(),
            "postgresql:7: uris is not a postgresql:// URI"
        );
        assert!(!format!("{problem:?}").contains("hunter2"));

        for (key, value, field) in [
            ("endpoints", "10.0.0.5:99999", "endpoints"),
            ("endpoints", "host name:5432", "endpoints"),
            ("read-only-endpoints", "10.0.0.6:x", "read-only-endpoints"),
            ("tls", "maybe", "tls"),
        ] {
            let mut app = bag(&[
                ("database", "shop"),
                ("endpoints", "10.0.0.5:5432"),
                ("username", "u"),
                ("password", "hunter2"),
            ]);
            app.insert(key.into(), value.into());
            match provider_answer(&input(DbKind::Postgresql, &app, None, None)) {
                Err(DbProblem::Malformed { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{key}={value}: {other:?}"),
            }
        }

        let other = bag(&[("database", "other"), ("username", "u"), ("password", "p")]);
        assert!(matches!(
            provider_answer(&input(DbKind::Postgresql, &other, None, None)),
            Err(DbProblem::OtherDatabase { .. })
        ));
        let no_endpoints = bag(&[("database", "shop"), ("username", "u"), ("password", "p")]);
        assert_eq!(
            provider_answer(&input(DbKind::Postgresql, &no_endpoints, None, None))
                .unwrap_err()
                .to_string(),
            "postgresql:7: waiting for endpoints"
        );
        // A secret without the credentials it should hold.
        let empty = content(&[("uris", "postgresql://u:p@h/shop")]);
        assert_eq!(
            provider_answer(&input(
                DbKind::Postgresql,
                &app_with_secret(),
                Some(&empty),
                None
            ))
            .unwrap_err()
            .to_string(),
            "postgresql:7: waiting for username, password"
        );
    }

    fn app_with_secret() -> Bag {
        bag(&[("database", "shop"), ("secret-user", "secret:a")])
    }

    #[test]
    fn mongodb_builds_a_replica_set_url_with_auth_source_and_tls() {
        let app = bag(&[
            ("database", "shop"),
            ("endpoints", "10.0.0.8,10.0.0.9:27018"),
            ("replset", "rs 0"),
            ("secret-user", "secret:a"),
            ("tls", "True"),
            ("tls-ca", "PEM"),
        ]);
        let user = content(&[("username", "relation-3"), ("password", PASSWORD)]);
        let mut mongo = input(DbKind::Mongodb, &app, Some(&user), None);
        mongo.relation = "mongodb-client:3";
        let answer = provider_answer(&mongo).unwrap();
        let urls = answer.urls(Some("/etc/ca.pem"));
        assert_eq!(
            urls.primary.expose(),
            "mongodb://relation-3:p%40ss%3Aw%2Frd%20%3F%23%25%26@10.0.0.8,10.0.0.9:27018/shop?replicaSet=rs%200&authSource=admin&tls=true&tlsCAFile=%2Fetc%2Fca.pem"
        );
        assert_eq!(
            urls.primary.redacted(),
            "mongodb://relation-3:***@10.0.0.8,10.0.0.9:27018/shop?replicaSet=rs%200&authSource=admin&tls=true&tlsCAFile=%2Fetc%2Fca.pem"
        );
        assert_eq!(urls.read_only, None);
        let vars: Vec<&str> = urls
            .variables(DbKind::Mongodb)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(vars, ["MONGO_URL", "MONGODB_DB_CONNECT_STRING"]);

        // The provider's uris (the non-TLS form) get the TLS parameters.
        let with_uris = content(&[
            ("username", "relation-3"),
            ("password", "pw"),
            (
                "uris",
                "mongodb://relation-3:pw@10.0.0.8:27017/shop?replicaSet=rs0&authSource=admin",
            ),
        ]);
        let mongo = input(DbKind::Mongodb, &app, Some(&with_uris), None);
        let urls = provider_answer(&mongo).unwrap().urls(Some("/etc/ca.pem"));
        assert_eq!(
            urls.primary.expose(),
            "mongodb://relation-3:pw@10.0.0.8:27017/shop?replicaSet=rs0&authSource=admin&tls=true&tlsCAFile=%2Fetc%2Fca.pem"
        );
        assert_eq!(
            urls.primary.redacted(),
            "mongodb://relation-3:***@10.0.0.8:27017/shop?replicaSet=rs0&authSource=admin&tls=true&tlsCAFile=%2Fetc%2Fca.pem"
        );
        // A postgresql:// URI is not a MongoDB one.
        let wrong = content(&[
            ("username", "u"),
            ("password", "p"),
            ("uris", "postgresql://u:p@h/shop"),
        ]);
        let mongo = input(DbKind::Mongodb, &app, Some(&wrong), None);
        assert!(matches!(
            provider_answer(&mongo),
            Err(DbProblem::Malformed { field: "uris", .. })
        ));
    }
}

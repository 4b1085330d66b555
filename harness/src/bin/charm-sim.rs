//! `charm-sim`: a small Juju for one machine. Also every emulated hook tool
//! (started through a symlink named `config-get`, `relation-set`, …).
//! Argument parsing only; the work is in `harness::sim`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::sim::store::Machines;
use harness::sim::{commands, tools, Result, DEFAULT_MODEL_DIR, MODEL_ENV};

#[derive(Parser)]
#[command(
    name = "charm-sim",
    version,
    about = "A small Juju on one machine: deploy a charm on simulated units and drive it",
    long_about = "A small Juju on one machine: deploy a charm on simulated units (each with its own \
                  directory and loopback address), set config, relate to remote applications whose \
                  data you give, to emulated PostgreSQL and MongoDB providers (the PostgreSQL one \
                  optionally backed by a real local server: add-remote --provider --postgres URL), \
                  to a real haproxy in front of the units, or to a collector feeding a real \
                  Prometheus that scrapes them, run actions and commands, and show \
                  status. The charm's real \
                  dispatch runs for every hook, with emulated hook tools on its PATH."
)]
struct Cli {
    /// The model directory [default: $CHARM_SIM_MODEL, else ./.charm-sim]
    #[arg(long, global = true, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Print only results and errors, not hook progress
    #[arg(long, short, global = true)]
    quiet: bool,
    /// For a new model: the loopback block its units get addresses in
    /// (units 127.0.1.1, .2, ...; remote units the next block up), so
    /// several models can run side by side [default: $CHARM_SIM_ADDRESS_BLOCK, else 127.0.1]
    #[arg(long, global = true, value_name = "127.X.Y")]
    address_block: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy a charm (directory or .charm file; default: build this source tree)
    Deploy {
        /// A charm directory or .charm file [default: assemble wsgi-app from source]
        charm: Option<PathBuf>,
        /// How many units
        #[arg(long, short = 'n', default_value_t = 1)]
        units: u32,
        /// A config option, key=value (repeatable)
        #[arg(long, value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// The application name [default: the charm's name]
        #[arg(long)]
        name: Option<String>,
        /// What each unit is: `directory` (its own root directory, the
        /// charm's direct supervisor) or `container` (a systemd-nspawn
        /// machine booted with systemd over a cached Debian 12 root; root only)
        #[arg(long, default_value = "directory", value_parser = ["directory", "container"])]
        machines: String,
    },
    /// Set config options (key= resets to default) and run config-changed; without settings, show config
    Config {
        app: String,
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Add units to the application
    AddUnit {
        app: String,
        #[arg(long = "num-units", short = 'n', default_value_t = 1)]
        count: u32,
    },
    /// Remove a unit (departed/broken for its relations, stop, remove)
    RemoveUnit { unit: String },
    /// Add a remote application (no charm, no hooks) whose relation data you give
    AddRemote {
        name: String,
        /// The interface it speaks (must match the endpoint it is related to)
        #[arg(long)]
        interface: String,
        /// Its endpoint name [default: the interface name]
        #[arg(long)]
        endpoint: Option<String>,
        /// Data in each of its units' bags, key=value (repeatable)
        #[arg(long = "unit-data", value_name = "KEY=VALUE")]
        unit_data: Vec<String>,
        /// Data in its application bag, key=value (repeatable)
        #[arg(long = "app-data", value_name = "KEY=VALUE")]
        app_data: Vec<String>,
        /// How many units
        #[arg(long, default_value_t = 1)]
        units: u32,
        /// Answer like Charmed PostgreSQL (postgresql_client) or Charmed
        /// MongoDB (mongodb_client): credentials in a secret once our leader
        /// has asked for a database [endpoint default: database]
        #[arg(long, conflicts_with_all = ["haproxy", "prometheus"])]
        provider: bool,
        /// With --provider for postgresql_client: a real PostgreSQL, as
        /// postgresql://ADMIN[:PASSWORD]@HOST[:PORT][/DATABASE] (a
        /// superuser; without a password psql looks in PGPASSWORD and
        /// ~/.pgpass). The provider creates role relation-<id> with a random
        /// password and the requested database in it, publishes HOST:PORT
        /// as its endpoints, and rotate-password changes the password there
        #[arg(long, value_name = "URL", requires = "provider")]
        postgres: Option<String>,
        /// Back it with a real haproxy (Debian's) listening on ADDRESS:PORT
        /// (loopback): related to an `http` endpoint such as `website`, it
        /// balances over our units' private-address and port, checks each
        /// on our nagios_index_path, and reloads gracefully when they
        /// change; see `lb-status` [endpoint default: reverseproxy]
        #[arg(long, value_name = "ADDRESS:PORT", conflicts_with = "prometheus")]
        haproxy: Option<String>,
        /// Emulate the opentelemetry-collector subordinate (cos_agent),
        /// feeding a real Prometheus (Debian's) listening on ADDRESS:PORT
        /// (loopback): related to `cos-agent`, each unit of ours gets a
        /// collector unit that turns its metrics_scrape_jobs into scrape
        /// jobs (localhost = that unit's address, juju_* topology labels)
        /// and its metrics_alert_rules into a rule file; see `prom-status`
        /// and `prom-query` [endpoint default: cos-agent]
        #[arg(long, value_name = "ADDRESS:PORT")]
        prometheus: Option<String>,
    },
    /// Remove a remote application: its relations first (departed, broken), then it; a load balancer's haproxy stops
    RemoveRemote { name: String },
    /// Show a load balancer's (add-remote --haproxy) backend servers and their state (UP, DOWN, ...)
    LbStatus {
        name: String,
        /// json, or tabular (the default)
        #[arg(long, value_parser = ["json", "tabular"])]
        format: Option<String>,
    },
    /// Show a collector's (add-remote --prometheus) Prometheus: its scrape targets' health and its rule groups
    PromStatus {
        name: String,
        /// json, or tabular (the default)
        #[arg(long, value_parser = ["json", "tabular"])]
        format: Option<String>,
    },
    /// Ask a collector's (add-remote --prometheus) Prometheus an instant PromQL query; prints its JSON answer
    PromQuery {
        name: String,
        #[arg(value_name = "PROMQL")]
        query: String,
    },
    /// Change a remote unit's (or, given an app name, the remote app's) data; fires relation-changed
    SetRemoteData {
        #[arg(value_name = "UNIT_OR_APP")]
        target: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// Create a secret owned by a remote application, granted on its relations; prints the URI
    AddSecret {
        #[arg(value_name = "REMOTE_APP")]
        owner: String,
        /// The owner's label for it
        #[arg(long, default_value = "")]
        label: String,
        /// A relation (id, or ENDPOINT:ID) whose other side may read it (repeatable)
        #[arg(long, value_name = "RELATION")]
        grant: Vec<String>,
        #[arg(value_name = "KEY=VALUE", required = true)]
        content: Vec<String>,
    },
    /// Publish a new revision of a remote application's secret; consumers run secret-changed
    RotateSecret {
        #[arg(value_name = "SECRET_URI")]
        uri: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        content: Vec<String>,
    },
    /// An emulated provider (add-remote --provider) gives each of its relations' users a new
    /// password (ALTER ROLE in its real PostgreSQL with --postgres) in a new secret revision;
    /// consumers run secret-changed
    RotatePassword {
        #[arg(value_name = "PROVIDER_APP")]
        app: String,
    },
    /// Take back a remote application's grant of a secret on a relation
    RevokeSecret {
        #[arg(value_name = "SECRET_URI")]
        uri: String,
        /// The relation (id, or ENDPOINT:ID) to revoke it on
        #[arg(long, value_name = "RELATION")]
        relation: String,
    },
    /// Relate APP:ENDPOINT to a remote application
    Relate {
        #[arg(value_name = "APP:ENDPOINT")]
        first: String,
        #[arg(value_name = "REMOTE[:ENDPOINT]")]
        second: String,
    },
    /// Remove a relation (departed per remote unit, then broken)
    Unrelate {
        #[arg(value_name = "APP:ENDPOINT")]
        first: String,
        #[arg(value_name = "REMOTE[:ENDPOINT]")]
        second: String,
    },
    /// Run an action on a unit and print its results as YAML
    Run {
        unit: String,
        action: String,
        #[arg(value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Run a command on a unit with its hook environment (like juju exec)
    Exec {
        unit: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<String>,
    },
    /// Run update-status on every unit
    UpdateStatus,
    /// Show the model like juju status
    Status {
        /// json, or tabular (the default)
        #[arg(long, value_parser = ["json", "tabular"])]
        format: Option<String>,
    },
    /// Show a unit's relation data like juju show-unit (JSON)
    ShowUnit { unit: String },
    /// Retry a unit's failed hook (or, with --no-retry, skip it)
    Resolve {
        unit: String,
        #[arg(long)]
        no_retry: bool,
    },
    /// Power a container unit's machine off, boot it again, then run start (as Juju does)
    Reboot {
        unit: String,
        /// Only queue start; it runs with the next command that runs hooks
        #[arg(long)]
        no_hooks: bool,
    },
    /// Run every unit's NRPE checks from this machine with check_nrpe (container units)
    Nagios,
    /// Remove every unit, end every process the model started, delete the model
    Destroy,
}

fn main() -> ExitCode {
    // Die quietly when our output is piped into `head` and the like, as
    // command-line tools do, instead of panicking on a closed stdout.
    // (Children still start with the default disposition either way.)
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_default();
    let invoked_as = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if tools::is_tool(&invoked_as) {
        let args: Vec<String> = argv.collect();
        return ExitCode::from(tools::run_tool(&invoked_as, &args) as u8);
    }

    let cli = Cli::parse();
    let model_dir = cli
        .model
        .or_else(|| {
            std::env::var_os(MODEL_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR));
    let address_block = cli
        .address_block
        .or_else(|| {
            std::env::var("CHARM_SIM_ADDRESS_BLOCK")
                .ok()
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "127.0.1".to_string());
    let global = commands::Global {
        model_dir,
        quiet: cli.quiet,
        address_block,
    };
    match run(&global, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("charm-sim: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(g: &commands::Global, command: Command) -> Result<u8> {
    match command {
        Command::Deploy {
            charm,
            units,
            config,
            name,
            machines,
        } => {
            let machines = if machines == "container" {
                Machines::Container
            } else {
                Machines::Directory
            };
            commands::deploy(
                g,
                charm.as_deref(),
                units,
                &config,
                name.as_deref(),
                machines,
            )?
        }
        Command::Config { app, settings } => commands::config(g, &app, &settings)?,
        Command::AddUnit { app, count } => commands::add_unit(g, &app, count)?,
        Command::RemoveUnit { unit } => commands::remove_unit(g, &unit)?,
        Command::AddRemote {
            name,
            interface,
            endpoint,
            unit_data,
            app_data,
            units,
            provider,
            postgres,
            haproxy,
            prometheus,
        } => commands::add_remote(
            g,
            &name,
            &interface,
            endpoint.as_deref(),
            &unit_data,
            &app_data,
            units,
            provider,
            postgres.as_deref(),
            haproxy.as_deref(),
            prometheus.as_deref(),
        )?,
        Command::RemoveRemote { name } => commands::remove_remote(g, &name)?,
        Command::LbStatus { name, format } => {
            let healthy = commands::lb_status(g, &name, format.as_deref() == Some("json"))?;
            return Ok(if healthy { 0 } else { 1 });
        }
        Command::PromStatus { name, format } => {
            let healthy = commands::prom_status(g, &name, format.as_deref() == Some("json"))?;
            return Ok(if healthy { 0 } else { 1 });
        }
        Command::PromQuery { name, query } => {
            return Ok(if commands::prom_query(g, &name, &query)? {
                0
            } else {
                1
            });
        }
        Command::SetRemoteData { target, settings } => {
            commands::set_remote_data(g, &target, &settings)?
        }
        Command::AddSecret {
            owner,
            label,
            grant,
            content,
        } => println!(
            "{}",
            commands::add_secret(g, &owner, &label, &grant, &content)?
        ),
        Command::RotateSecret { uri, content } => {
            let revision = commands::rotate_secret(g, &uri, &content)?;
            println!("{uri} revision {revision}");
        }
        Command::RotatePassword { app } => {
            for line in commands::rotate_password(g, &app)? {
                println!("{line}");
            }
        }
        Command::RevokeSecret { uri, relation } => commands::revoke_secret(g, &uri, &relation)?,
        Command::Relate { first, second } => commands::relate(g, &first, &second)?,
        Command::Unrelate { first, second } => commands::unrelate(g, &first, &second)?,
        Command::Run {
            unit,
            action,
            params,
        } => {
            return Ok(if commands::run_action(g, &unit, &action, &params)? {
                0
            } else {
                1
            });
        }
        Command::Exec { unit, command } => {
            let code = commands::exec(g, &unit, &command)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::UpdateStatus => commands::update_status(g)?,
        Command::Status { format } => commands::status(g, format.as_deref() == Some("json"))?,
        Command::ShowUnit { unit } => commands::show_unit(g, &unit)?,
        Command::Resolve { unit, no_retry } => commands::resolve(g, &unit, no_retry)?,
        Command::Reboot { unit, no_hooks } => commands::reboot(g, &unit, no_hooks)?,
        Command::Nagios => return Ok(if commands::nagios(g)? { 0 } else { 1 }),
        Command::Destroy => commands::destroy(g)?,
    }
    Ok(0)
}

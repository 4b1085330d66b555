//! The workload: a Python WSGI app under gunicorn on this machine. Builds,
//! archives, downloads, the environment file, the service managers (systemd
//! and the charm's own supervisor), health checks, users and where things
//! live on disk. It knows WSGI, gunicorn, Python and the machine, and
//! nothing of Juju: no module here imports `ops` or `charm`
//! (tests/rooms.rs checks it).

pub mod app_user;
pub mod archive;
pub mod builds;
pub mod envvars;
pub mod fetch;
pub mod health;
pub mod layout;
pub mod machine;
pub mod metrics;
pub mod preflight;
pub mod proxy;
pub mod service;
pub mod substrate;
pub mod supervisor;
pub mod system;
pub mod systemd;
pub mod text;
pub mod users;

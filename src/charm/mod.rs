//! The wsgi-app charm: knows WSGI, talks to Juju only through `ops`.

pub mod archive;
pub mod envvars;
pub mod fetch;
pub mod health;
pub mod machine;
pub mod relations;
pub mod service;
pub mod supervisor;
pub mod systemd;
pub mod text;
pub mod users;

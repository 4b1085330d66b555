//! The Nagios check, Juju and disk side: write the NRPE command and the
//! Nagios service export rendered by [`relations::nrpe`](super::relations::nrpe),
//! announce the check on the relation, reload NRPE when they change, and
//! remove them when the relation goes.

use std::fs;
use std::path::Path;

use super::config::Config;
use super::reconcile::Report;
use super::relations::nrpe as render;
use super::relations::NrpeCheck;
use super::{Ctx, Endpoint};
use crate::ops::{BagOwner, HandlerError, LogLevel, Scope};
use crate::workload::layout::Layout;
use crate::workload::machine::{CommandSpec, Machine, ServiceManagerKind};
use crate::workload::service::write_if_changed;
use crate::workload::text::at_path;

const NRPE_DIR: &str = "/etc/nagios/nrpe.d";
const EXPORT_DIR: &str = "/var/lib/nagios/export";
const DEFAULT_CHECK_HTTP: &str = "/usr/lib/nagios/plugins/check_http";

pub fn reconcile(
    machine: &Machine,
    ctx: &mut Ctx<'_, '_>,
    layout: &Layout,
    config: &Config,
    report: &mut Report,
) -> Result<(), HandlerError> {
    let relations = ctx.model.relations(Endpoint::NrpeExternalMaster)?;
    let Some(&first) = relations.first() else {
        return remove_files(machine, layout);
    };
    let units = ctx.model.relation_units(first)?.to_vec();
    let mut sent_hostname = None;
    for unit in units {
        let bag = ctx.model.relation_data(first, &BagOwner::Unit(unit))?;
        if let Some(h) = bag.get("nagios_hostname").filter(|h| !h.is_empty()) {
            sent_hostname = Some(h.clone());
            break;
        }
    }
    let address = ctx
        .model
        .network(Endpoint::NrpeExternalMaster.as_ref(), Some(first))?
        .ingress_address()
        .map(str::to_string)
        .unwrap_or_else(|| machine.bind_address.clone());
    let check_http =
        render::resolve_check_http(|p| machine.path(p).exists() || Path::new(p).exists())
            .unwrap_or_else(|| {
                ctx.model.log(
                    LogLevel::Warning,
                    "check_http not found; install monitoring-plugins-basic (the nrpe charm does)",
                );
                DEFAULT_CHECK_HTTP
            });
    let unit = ctx.model.unit_name().to_string();
    let check = NrpeCheck {
        app: &layout.app,
        unit: &unit,
        nagios_context: &config.nagios_context,
        nagios_servicegroups: &config.nagios_servicegroups,
        relation_nagios_hostname: sent_hostname.as_deref(),
        address: &address,
        port: config.listen_port,
        index_path: &config.nagios_index_path,
        expected_status: config.nagios_expected_status,
        index_content: &config.nagios_index_content,
        check_http_path: check_http,
    };
    let files = match render::render_nrpe(&check) {
        Ok(files) => files,
        Err(e) => {
            report.blocked(e.to_string());
            return Ok(());
        }
    };
    let mut changed = write_if_changed(
        &machine.path(Path::new("/").join(&files.command.path)),
        files.command.contents.as_bytes(),
        0o644,
    )?;
    let export_dir = machine.path(EXPORT_DIR);
    if export_dir.is_dir() {
        remove_exports(&export_dir, &layout.app, Some(&files.service_export.path))?;
        changed |= write_if_changed(
            &machine.path(Path::new("/").join(&files.service_export.path)),
            files.service_export.contents.as_bytes(),
            0o644,
        )?;
    }
    for rel in relations {
        ctx.model
            .update_relation_data(rel, Scope::Unit, &files.relation_data())?;
    }
    if changed {
        reload_nrpe(machine, ctx);
    }
    Ok(())
}

/// Remove this app's service exports, except `keep`.
fn remove_exports(dir: &Path, app: &str, keep: Option<&Path>) -> std::io::Result<()> {
    let suffix = render::service_export_suffix(app);
    let keep_name = keep.and_then(|k| k.file_name());
    for entry in fs::read_dir(dir).map_err(at_path(dir))?.flatten() {
        let name = entry.file_name();
        let is_ours = name.to_string_lossy().starts_with("service__")
            && name.to_string_lossy().ends_with(&suffix);
        if is_ours && Some(name.as_os_str()) != keep_name {
            fs::remove_file(entry.path()).map_err(at_path(&entry.path()))?;
        }
    }
    Ok(())
}

/// Reload NRPE so it reads the new command (never during update-status:
/// this runs only from a full reconcile).
fn reload_nrpe(machine: &Machine, ctx: &mut Ctx<'_, '_>) {
    let installed = machine.path("/etc/init.d/nagios-nrpe-server").exists()
        || machine
            .path("/lib/systemd/system/nagios-nrpe-server.service")
            .exists();
    if !installed {
        return;
    }
    let cmd = match machine.service_manager {
        ServiceManagerKind::Systemd => {
            CommandSpec::new("systemctl").args(["reload", "nagios-nrpe-server"])
        }
        ServiceManagerKind::Direct => {
            CommandSpec::new("service").args(["nagios-nrpe-server", "reload"])
        }
    };
    match machine.runner.run(&cmd) {
        Ok(out) if out.success() => {}
        Ok(out) => ctx.model.log(
            LogLevel::Warning,
            &format!("reloading nagios-nrpe-server: {}", out.tail(2)),
        ),
        Err(e) => ctx.model.log(
            LogLevel::Warning,
            &format!("reloading nagios-nrpe-server: {e}"),
        ),
    }
}

/// Remove the check files (the relation is gone, or the unit is).
pub fn remove_files(machine: &Machine, layout: &Layout) -> Result<(), HandlerError> {
    let command = machine
        .path(NRPE_DIR)
        .join(format!("{}.cfg", render::check_name(&layout.app)));
    match fs::remove_file(&command) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let export_dir = machine.path(EXPORT_DIR);
    if export_dir.is_dir() {
        remove_exports(&export_dir, &layout.app, None)?;
    }
    Ok(())
}

//! The environment Juju gives a hook: what [`Context::hook_env`] builds
//! for an event in a state (reference §1.2 and Appendix B).

use super::*;

impl<C: Charm> Context<C> {
    /// The environment Juju would give the charm for `event` in `state`
    /// (reference §1.2 and Appendix B).
    pub fn hook_env(
        &self,
        event: &EventSpec,
        state: &State,
    ) -> Result<BTreeMap<String, String>, HarnessError> {
        self.check_event(event, state)?;
        let run = self.next_run();
        let unit = self.unit_name(state);
        let agent = format!("unit-{}-{}", self.meta.name, state.unit_id);
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        let charm_dir = format!("/var/lib/juju/agents/{agent}/charm");
        set("CHARM_DIR", charm_dir.clone());
        set("JUJU_CHARM_DIR", charm_dir);
        set(
            "JUJU_AGENT_SOCKET_ADDRESS",
            format!("@/var/lib/juju/agents/{agent}/agent.socket"),
        );
        set("JUJU_AGENT_SOCKET_NETWORK", "unix".into());
        set("JUJU_UNIT_NAME", unit.clone());
        set("JUJU_MODEL_NAME", state.model_name.clone());
        set("JUJU_MODEL_UUID", state.model_uuid.clone());
        set("JUJU_API_ADDRESSES", "192.0.2.254:17070".into());
        set("JUJU_MACHINE_ID", state.unit_id.to_string());
        set("JUJU_PRINCIPAL_UNIT", String::new());
        set("JUJU_AVAILABILITY_ZONE", String::new());
        set("JUJU_VERSION", self.juju_version.clone());
        set("CLOUD_API_VERSION", String::new());
        for (key, variable) in MODEL_PROXY_KEYS {
            set(
                variable,
                state.model_config.get(key).cloned().unwrap_or_default(),
            );
        }
        set("JUJU_SLA", "unsupported".into());
        set("APT_LISTCHANGES_FRONTEND", "none".into());
        set("DEBIAN_FRONTEND", "noninteractive".into());
        set("LANG", "C.UTF-8".into());
        set("TERM", "tmux-256color".into());
        set(
            "PATH",
            format!("/var/lib/juju/tools/{agent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        );
        let (path, hook_name) = match event {
            EventSpec::Unit(hook) => (
                format!("hooks/{}", hook.as_ref()),
                hook.as_ref().to_string(),
            ),
            EventSpec::Relation {
                hook,
                id,
                remote_unit,
                departing,
            } => {
                let rel = state.relation(*id).expect("checked above");
                let name = format!("{}-relation-{}", rel.endpoint, hook.as_ref());
                set("JUJU_RELATION", rel.endpoint.clone());
                set("JUJU_RELATION_ID", rel.juju_id());
                let remote_app = if rel.remote_app.is_empty() {
                    self.meta.name.clone()
                } else {
                    rel.remote_app.clone()
                };
                set("JUJU_REMOTE_APP", remote_app.clone());
                let remote = remote_unit.map(|n| format!("{remote_app}/{n}"));
                // Present but empty for created, broken and app-level changed.
                set("JUJU_REMOTE_UNIT", remote.clone().unwrap_or_default());
                if *hook == RelationHook::Departed {
                    let leaving = match departing {
                        Departing::Remote => remote.unwrap_or_default(),
                        Departing::ThisUnit => unit.clone(),
                    };
                    set("JUJU_DEPARTING_UNIT", leaving);
                }
                (format!("hooks/{name}"), name)
            }
            EventSpec::Action { name, id, .. } => {
                let id = id.clone().unwrap_or_else(|| run.to_string());
                set("JUJU_ACTION_NAME", name.clone());
                set("JUJU_ACTION_UUID", id.clone());
                set("JUJU_ACTION_TAG", format!("action-{id}"));
                (format!("actions/{name}"), String::new())
            }
            EventSpec::Storage {
                hook,
                storage,
                index,
                location,
            } => {
                let name = format!("{storage}-storage-{}", hook.as_ref());
                set("JUJU_STORAGE_ID", format!("{storage}/{index}"));
                set("JUJU_STORAGE_LOCATION", location.clone());
                set("JUJU_STORAGE_KIND", "filesystem".into());
                (format!("hooks/{name}"), name)
            }
            EventSpec::Secret {
                hook,
                id,
                label,
                revision,
            } => {
                let name = format!("secret-{}", hook.as_ref());
                set("JUJU_SECRET_ID", id.clone());
                set("JUJU_SECRET_LABEL", label.clone());
                let carries_revision = matches!(hook, SecretHook::Expired | SecretHook::Remove);
                if let Some(r) = revision.filter(|r| *r > 0 && carries_revision) {
                    set("JUJU_SECRET_REVISION", r.to_string());
                }
                (format!("hooks/{name}"), name)
            }
            EventSpec::Path(path) => {
                let hook = path.strip_prefix("hooks/").unwrap_or_default();
                (path.clone(), hook.to_string())
            }
        };
        let context_name = if hook_name.is_empty() {
            path.rsplit('/').next().unwrap_or_default().to_string()
        } else {
            hook_name.clone()
        };
        set(
            "JUJU_CONTEXT_ID",
            format!(
                "{unit}-{context_name}-{:012x}",
                0x5eed_0000_u64 + u64::from(run)
            ),
        );
        set("JUJU_HOOK_NAME", hook_name);
        set("JUJU_DISPATCH_PATH", path);
        Ok(env)
    }
}

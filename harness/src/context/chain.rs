//! Chaining: several events in a row, each run from the last one's
//! output state, and Juju's deploy sequence as one chain.

use super::*;

impl<C: Charm> Context<C> {
    /// Start a chain of runs from `state`.
    pub fn chain(&self, state: State) -> Chain<'_, C> {
        Chain {
            ctx: self,
            state,
            outputs: Vec::new(),
        }
    }

    /// Deploy: install, `-relation-created` for each relation already in
    /// the State, leader-elected (leader) or leader-settings-changed
    /// (others), config-changed, start — Juju's order (reference §2.3).
    pub fn run_initial_hooks(&self, state: State) -> Result<Chain<'_, C>, HarnessError> {
        self.chain(state).run_initial_hooks()
    }
}

/// Several events in a row, each run from the previous output's state. A
/// chain stops at the first dispatch that fails (as Juju stops on a hook
/// error): `run` returns [`HarnessError::HookFailed`] with its output.
pub struct Chain<'c, C: Charm> {
    ctx: &'c Context<C>,
    state: State,
    outputs: Vec<Output>,
}

impl<'c, C: Charm> Chain<'c, C> {
    pub fn run(mut self, event: EventSpec) -> Result<Self, HarnessError> {
        let label = event.label();
        let output = self.ctx.run(event, self.state.clone())?;
        if !output.succeeded() {
            return Err(HarnessError::HookFailed {
                event: label,
                output: Box::new(output),
            });
        }
        self.state = output.state.clone();
        self.outputs.push(output);
        Ok(self)
    }

    /// Change the state between runs, e.g. a remote unit writing its bag:
    /// `.update_state(|s| s.update_remote_unit_data(1, 0, bag([...])))`.
    pub fn update_state(mut self, change: impl FnOnce(State) -> State) -> Self {
        self.state = change(self.state);
        self
    }

    /// See [`Context::run_initial_hooks`].
    pub fn run_initial_hooks(self) -> Result<Self, HarnessError> {
        let mut ids: Vec<u32> = self.state.relations.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let leader = self.state.leader;
        let mut chain = self.run(crate::on::install())?;
        for id in ids {
            chain = chain.run(crate::on::relation_created(id))?;
        }
        chain = chain.run(if leader {
            crate::on::leader_elected()
        } else {
            crate::on::leader_settings_changed()
        })?;
        chain
            .run(crate::on::config_changed())?
            .run(crate::on::start())
    }

    /// `juju integrate`, for a relation already in the State: created, then
    /// [`Chain::join_units`].
    pub fn relate(self, id: u32) -> Result<Self, HarnessError> {
        self.run(crate::on::relation_created(id))?.join_units(id)
    }

    /// The hooks Juju runs as a relation's remote side shows up: the
    /// application-level changed if the remote app bag has data, then, for
    /// each remote unit in order, joined followed by changed.
    pub fn join_units(self, id: u32) -> Result<Self, HarnessError> {
        let rel = self
            .state
            .relation(id)
            .ok_or_else(|| HarnessError::Inconsistent(format!("the State has no relation {id}")))?;
        let app_data = !rel.remote_app_data.is_empty();
        let mut units: Vec<(String, u32)> = rel
            .remote_units
            .keys()
            .map(|n| (rel.remote_unit_name(*n), *n))
            .collect();
        // Juju orders unit names as strings.
        units.sort();
        let mut chain = self;
        if app_data {
            chain = chain.run(crate::on::relation_changed(id, None))?;
        }
        for (_, n) in units {
            chain = chain
                .run(crate::on::relation_joined(id, n))?
                .run(crate::on::relation_changed(id, Some(n)))?;
        }
        Ok(chain)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn into_state(self) -> State {
        self.state
    }

    /// Every output so far, oldest first.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The latest output. Panics if nothing has run yet.
    pub fn last(&self) -> &Output {
        self.outputs.last().expect("the chain has not run anything")
    }

    pub fn into_last(mut self) -> Output {
        self.outputs.pop().expect("the chain has not run anything")
    }
}

//! [`Cluster`]: several units of one application, as Juju runs them
//! together: each unit a [`State`] run one dispatch at a time by the
//! [`Context`], and between them what Juju does with a peer relation.
//!
//! - A unit's committed write to its own peer bag reaches every other unit's
//!   view of it, and queues `-relation-changed` (that unit) on each of them;
//!   the leader's write to the application bag reaches every unit and queues
//!   the application-level `-relation-changed` (a unit never hears of its
//!   own writes). A failed hook writes nothing, as in Juju.
//! - Deploying and adding a unit run Juju's sequence on it (install, the
//!   peer's `-created`, leader-elected or leader-settings-changed,
//!   config-changed, start, then joined/changed per peer), and joined/changed
//!   on the others.
//! - Removing a unit runs its own `-departed` hooks, stop and remove, and
//!   queues `-departed` on the others (peer relations are never broken).
//! - A leadership change queues leader-elected on the new leader and
//!   leader-settings-changed on the others; the application status moves
//!   with leadership.
//!
//! Hooks run in the order they were queued, one at a time (Juju runs units
//! in parallel; any order it could pick is one a test may queue). A hook
//! already queued for a unit is not queued twice, as Juju coalesces them.

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use wsgi_app::ops::{Bag, Charm, Status};

use crate::on::{self, EventSpec};
use crate::state::{MachineDir, Relation, State};
use crate::{Context, HarnessError, Output};

/// What one committed dispatch changed in the peer bags, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerWrite {
    pub unit: u32,
    pub event: String,
    /// The application bag after the dispatch, when the leader changed it.
    pub app_bag: Option<Bag>,
    /// The unit's own bag after the dispatch, when it changed.
    pub unit_bag: Option<Bag>,
}

/// How many hooks [`Cluster::settle`] runs before calling it a livelock.
const SETTLE_LIMIT: usize = 1_000;

pub struct Cluster<'c, C: Charm> {
    ctx: &'c Context<C>,
    units: BTreeMap<u32, State>,
    peer_id: u32,
    queue: VecDeque<(u32, EventSpec)>,
    /// The application status: the leader's to set, kept across leaders.
    app_status: Status,
    writes: Vec<PeerWrite>,
    next_unit: u32,
}

impl<'c, C: Charm> Cluster<'c, C> {
    /// `juju deploy -n <units>`: unit 0 leads; each unit starts from
    /// `template` (config, other relations) on a machine of its own, with
    /// the peer relation `peer_endpoint` (id `peer_id`). Settled.
    pub fn deploy(
        ctx: &'c Context<C>,
        template: State,
        peer_endpoint: &str,
        peer_id: u32,
        units: u32,
    ) -> Result<Self, HarnessError> {
        let mut cluster = Cluster {
            ctx,
            units: BTreeMap::new(),
            peer_id,
            queue: VecDeque::new(),
            app_status: Status::unknown(),
            writes: Vec::new(),
            next_unit: units,
        };
        let everyone: Vec<u32> = (0..units).collect();
        for &n in &everyone {
            let peers = everyone.iter().copied().filter(|&m| m != n);
            let state = State {
                unit_id: n,
                leader: n == 0,
                machine: MachineDir::new(),
                stored_state: None,
                services: BTreeMap::new(),
                ..template.clone()
            }
            .with_relation(Relation::peer(peer_id, peer_endpoint).with_remote_units(peers));
            cluster.units.insert(n, state);
        }
        for &n in &everyone {
            cluster.queue_initial_hooks(n);
        }
        for &n in &everyone {
            for &m in everyone.iter().filter(|&&m| m != n) {
                cluster.queue_joined(n, m);
            }
        }
        cluster.settle()?;
        Ok(cluster)
    }

    fn queue_initial_hooks(&mut self, n: u32) {
        let leader = self.units[&n].leader;
        for event in [
            on::install(),
            on::relation_created(self.peer_id),
            if leader {
                on::leader_elected()
            } else {
                on::leader_settings_changed()
            },
            on::config_changed(),
            on::start(),
        ] {
            self.queue(n, event);
        }
    }

    fn queue_joined(&mut self, n: u32, peer: u32) {
        self.queue(n, on::relation_joined(self.peer_id, peer));
        self.queue(n, on::relation_changed(self.peer_id, Some(peer)));
    }

    /// Queue `event` on unit `n`, unless the same hook is already waiting.
    pub fn queue(&mut self, n: u32, event: EventSpec) {
        if !self.queue.iter().any(|(m, e)| *m == n && *e == event) {
            self.queue.push_back((n, event));
        }
    }

    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Run the next queued hook; `None` when nothing is queued. A hook
    /// that fails is an error: Juju would retry it, the test should look.
    pub fn step(&mut self) -> Result<Option<Output>, HarnessError> {
        let Some((n, event)) = self.queue.pop_front() else {
            return Ok(None);
        };
        let out = self.run_now(n, event.clone())?;
        if !out.succeeded() {
            return Err(HarnessError::HookFailed {
                event: format!("unit {n}: {}", event.label()),
                output: Box::new(out),
            });
        }
        Ok(Some(out))
    }

    /// Run queued hooks until none is left.
    pub fn settle(&mut self) -> Result<(), HarnessError> {
        for _ in 0..SETTLE_LIMIT {
            if self.step()?.is_none() {
                return Ok(());
            }
        }
        Err(HarnessError::Inconsistent(format!(
            "the units did not settle within {SETTLE_LIMIT} hooks"
        )))
    }

    /// Dispatch `event` on unit `n` now (an action, or a hook out of
    /// turn) and pass on what it committed. The Output is returned whether
    /// it succeeded or not.
    pub fn run_now(&mut self, n: u32, event: EventSpec) -> Result<Output, HarnessError> {
        let mut state = self.unit(n).clone();
        if state.leader {
            state.app_status = self.app_status.clone();
        }
        let label = event.label();
        let out = self.ctx.run(event, state)?;
        if out.succeeded() {
            self.commit(n, &label, out.state.clone());
        } else {
            // The machine changed; Juju's side of the hook did not.
            self.units.get_mut(&n).expect("unit exists").services = out.state.services.clone();
        }
        Ok(out)
    }

    /// A hook killed before it finished (SIGKILL, power cut): what it did
    /// to the machine stays, its relation writes and store transaction are
    /// gone, and Juju runs it again (queued first).
    pub fn kill_during(&mut self, n: u32, event: EventSpec) -> Result<Output, HarnessError> {
        let state = self.unit(n).clone();
        let out = self.ctx.run(event.clone(), state)?;
        self.units.get_mut(&n).expect("unit exists").services = out.state.services.clone();
        self.queue.push_front((n, event));
        Ok(out)
    }

    fn commit(&mut self, n: u32, label: &str, after: State) {
        let before = self.units[&n].clone();
        let peer_id = self.peer_id;
        let bag_of = |s: &State, app: bool| {
            s.relation(peer_id).map(|r| {
                if app {
                    r.local_app_data.clone()
                } else {
                    r.local_unit_data.clone()
                }
            })
        };
        let unit_bag = bag_of(&after, false).filter(|b| Some(b) != bag_of(&before, false).as_ref());
        let app_bag = bag_of(&after, true)
            .filter(|b| after.leader && Some(b) != bag_of(&before, true).as_ref());
        if after.leader {
            self.app_status = after.app_status.clone();
        }
        if unit_bag.is_some() || app_bag.is_some() {
            self.writes.push(PeerWrite {
                unit: n,
                event: label.to_string(),
                app_bag: app_bag.clone(),
                unit_bag: unit_bag.clone(),
            });
        }
        self.units.insert(n, after);
        let others: Vec<u32> = self.units.keys().copied().filter(|&m| m != n).collect();
        for m in others {
            let Some(rel) = self.units.get_mut(&m).and_then(|s| s.relation_mut(peer_id)) else {
                continue;
            };
            let mut changed = Vec::new();
            if let Some(bag) = &unit_bag {
                if let Some(view) = rel.remote_units.get_mut(&n) {
                    *view = bag.clone();
                    changed.push(on::relation_changed(peer_id, Some(n)));
                }
            }
            if let Some(bag) = &app_bag {
                rel.local_app_data = bag.clone();
                changed.push(on::relation_changed(peer_id, None));
            }
            for event in changed {
                self.queue(m, event);
            }
        }
    }

    /// `juju config`: every unit gets config-changed.
    pub fn set_config(&mut self, option: &str, value: impl Into<Value>) {
        let value = value.into();
        let units: Vec<u32> = self.units.keys().copied().collect();
        for n in units {
            let state = self.units.get_mut(&n).expect("unit exists");
            state.config.insert(option.to_string(), value.clone());
            self.queue(n, on::config_changed());
        }
    }

    /// Run action `name` on unit `n` now (actions come before queued
    /// hooks in Juju's order).
    pub fn action(&mut self, n: u32, name: &str, params: Value) -> Result<Output, HarnessError> {
        self.run_now(n, on::action(name, params))
    }

    /// Leadership moves to unit `n`.
    pub fn elect(&mut self, n: u32) {
        let units: Vec<u32> = self.units.keys().copied().collect();
        for m in &units {
            self.units.get_mut(m).expect("unit exists").leader = *m == n;
        }
        self.queue(n, on::leader_elected());
        for m in units.into_iter().filter(|&m| m != n) {
            self.queue(m, on::leader_settings_changed());
        }
    }

    /// `juju add-unit`: a new unit on a machine of its own, which sees the
    /// others' bags and the application bag as they are now. Returns its
    /// number; its hooks are queued, not run.
    pub fn add_unit(&mut self) -> u32 {
        let n = self.next_unit;
        self.next_unit += 1;
        let peer_id = self.peer_id;
        let template = self.units.values().next().expect("a unit to copy").clone();
        let rel = template.relation(peer_id).expect("the peer relation");
        let mut peer = Relation::peer(peer_id, rel.endpoint.clone());
        peer.local_app_data = rel.local_app_data.clone();
        for (m, state) in &self.units {
            let bag = state
                .relation(peer_id)
                .map(|r| r.local_unit_data.clone())
                .unwrap_or_default();
            peer.remote_units.insert(*m, bag);
        }
        let mut state = State {
            unit_id: n,
            leader: false,
            machine: MachineDir::new(),
            stored_state: None,
            services: BTreeMap::new(),
            unit_status: Status::unknown(),
            charm_set_unit_status: false,
            opened_ports: Default::default(),
            ..template
        };
        state.relations.retain(|r| r.id != peer_id);
        state = state.with_relation(peer);
        let others: Vec<u32> = self.units.keys().copied().collect();
        for m in &others {
            let rel = self
                .units
                .get_mut(m)
                .and_then(|s| s.relation_mut(peer_id))
                .expect("the peer relation");
            rel.remote_units
                .insert(n, crate::state::seeded_unit_bag(crate::state::UNIT_ADDRESS));
        }
        self.units.insert(n, state);
        self.queue_initial_hooks(n);
        for m in others {
            self.queue_joined(n, m);
            self.queue_joined(m, n);
        }
        n
    }

    /// `juju remove-unit`: unit `n` runs its `-departed` hooks, stop and
    /// remove now, and leaves; the others get `-departed` (queued). Hooks
    /// still queued for it, or about it, are dropped.
    pub fn remove_unit(&mut self, n: u32) -> Result<(), HarnessError> {
        let peer_id = self.peer_id;
        self.queue.retain(|(m, event)| {
            *m != n && !matches!(event, EventSpec::Relation { remote_unit: Some(u), .. } if *u == n)
        });
        let peers: Vec<u32> = self.units[&n]
            .relation(peer_id)
            .map(|r| r.remote_units.keys().copied().collect())
            .unwrap_or_default();
        for &m in &peers {
            self.expect_success(n, on::relation_departed_by_this_unit(peer_id, m))?;
        }
        self.expect_success(n, on::stop())?;
        self.expect_success(n, on::remove())?;
        self.units.remove(&n);
        let others: Vec<u32> = self.units.keys().copied().collect();
        for m in others {
            self.queue(m, on::relation_departed(peer_id, n));
        }
        Ok(())
    }

    fn expect_success(&mut self, n: u32, event: EventSpec) -> Result<Output, HarnessError> {
        let label = event.label();
        let out = self.run_now(n, event)?;
        if out.succeeded() {
            Ok(out)
        } else {
            Err(HarnessError::HookFailed {
                event: format!("unit {n}: {label}"),
                output: Box::new(out),
            })
        }
    }

    pub fn unit(&self, n: u32) -> &State {
        self.units
            .get(&n)
            .unwrap_or_else(|| panic!("the cluster has no unit {n}"))
    }

    pub fn unit_numbers(&self) -> Vec<u32> {
        self.units.keys().copied().collect()
    }

    pub fn leader(&self) -> u32 {
        self.units
            .iter()
            .find(|(_, s)| s.leader)
            .map(|(n, _)| *n)
            .expect("a leader")
    }

    /// The application status, as the leader last set it.
    pub fn app_status(&self) -> &Status {
        &self.app_status
    }

    /// The application's peer bag, as the leader last wrote it.
    pub fn app_bag(&self) -> Bag {
        self.unit(self.leader())
            .relation(self.peer_id)
            .map(|r| r.local_app_data.clone())
            .unwrap_or_default()
    }

    /// Unit `n`'s own peer bag.
    pub fn unit_bag(&self, n: u32) -> Bag {
        self.unit(n)
            .relation(self.peer_id)
            .map(|r| r.local_unit_data.clone())
            .unwrap_or_default()
    }

    /// Every committed change to the peer bags so far, in order.
    pub fn writes(&self) -> &[PeerWrite] {
        &self.writes
    }
}

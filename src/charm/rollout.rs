//! The application's rollout: how the units move from one build to the
//! next, coordinated by the leader through the `rollout` peer relation.
//!
//! The leader keeps one [`Record`] in the application's bag: which rollout
//! (an id that only grows), to which build, from which, which units may move
//! now (the grants), and whether it runs, halted or is done. Every unit keeps
//! a [`UnitReport`] in its own bag: the build it serves, its pin, and how its
//! last grant ended. What to grant and what a unit serves are pure functions
//! of those bags ([`lead`], [`unit_plan`], [`app_status`]), so the protocol
//! is tested without Juju; [`Turn`] reads and writes the bags through `ops`.
//!
//! The invariants: no more than the batch (`rollout_max_unavailable`) is
//! granted at once; the leader is granted only when no other unit is
//! granted or left to move; a failed unit halts the rollout, and only an
//! operator (resume-rollout, abort-rollout, a new current_symlink) moves it
//! on; a grant is acted on once (the unit's report names the rollout id).

use std::collections::{BTreeMap, BTreeSet};

use super::config::{Config, MaxUnavailable};
use super::{Ctx, Endpoint};
use crate::ops::{Bag, BagOwner, HandlerError, LogLevel, RelationId, Scope, Status};

/// The application bag's keys (written by the leader only).
const ID: &str = "rollout-id";
const TARGET: &str = "rollout-target";
const FROM: &str = "rollout-from";
const GRANTED: &str = "rollout-granted";
const PHASE: &str = "rollout-phase";
const HALTED_UNIT: &str = "rollout-halted-unit";
const HALT_REASON: &str = "rollout-halt-reason";
const ABANDONED: &str = "rollout-abandoned";

/// A unit bag's keys (each unit writes its own).
const SERVING: &str = "serving";
const PINNED: &str = "pinned";
const REPORT_ID: &str = "rollout-id";
const REPORT_TARGET: &str = "rollout-target";
const REPORT_STATE: &str = "rollout-state";
const REPORT_REASON: &str = "rollout-reason";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// A unit failed its health gate; nothing moves until an operator acts.
    Halted {
        unit: String,
        reason: String,
    },
    Done,
}

/// The leader's record of the application's rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub target: String,
    /// The build the application served before this rollout, if any:
    /// where abort-rollout takes the moved units back to.
    pub from: Option<String>,
    /// The units allowed to move now, and not yet reported back.
    pub granted: BTreeSet<String>,
    pub phase: Phase,
    /// The build an operator aborted a rollout to: it is not rolled out
    /// again while current_symlink still names it, unless resume-rollout.
    pub abandoned: Option<String>,
}

impl Record {
    pub fn from_bag(bag: &Bag) -> Option<Record> {
        let get = |key: &str| bag.get(key).filter(|v| !v.is_empty()).cloned();
        let id = get(ID)?.parse().ok()?;
        let target = get(TARGET)?;
        let phase = match get(PHASE).as_deref() {
            Some("halted") => Phase::Halted {
                unit: get(HALTED_UNIT).unwrap_or_default(),
                reason: get(HALT_REASON).unwrap_or_default(),
            },
            Some("done") => Phase::Done,
            _ => Phase::Running,
        };
        Some(Record {
            id,
            target,
            from: get(FROM),
            granted: get(GRANTED)
                .map(|g| {
                    g.split(',')
                        .filter(|u| !u.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            phase,
            abandoned: get(ABANDONED),
        })
    }

    /// Every key, `""` for the absent ones, so a write removes stale keys.
    pub fn to_bag(&self) -> Bag {
        let (phase, unit, reason) = match &self.phase {
            Phase::Running => ("running", "", ""),
            Phase::Halted { unit, reason } => ("halted", unit.as_str(), reason.as_str()),
            Phase::Done => ("done", "", ""),
        };
        let granted: Vec<&str> = self.granted.iter().map(String::as_str).collect();
        [
            (ID, self.id.to_string()),
            (TARGET, self.target.clone()),
            (FROM, self.from.clone().unwrap_or_default()),
            (GRANTED, granted.join(",")),
            (PHASE, phase.to_string()),
            (HALTED_UNIT, unit.to_string()),
            (HALT_REASON, reason.to_string()),
            (ABANDONED, self.abandoned.clone().unwrap_or_default()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The phase as one word, for rollout-status.
    pub fn phase_name(&self) -> &'static str {
        match (&self.phase, &self.abandoned) {
            (Phase::Running, None) => "running",
            (Phase::Running, Some(_)) => "aborting",
            (Phase::Halted { .. }, _) => "halted",
            (Phase::Done, None) => "done",
            (Phase::Done, Some(_)) => "aborted",
        }
    }

    /// A rollout to `target` after `self`, keeping the grants still in
    /// flight: those units may be switching now, and count against the batch.
    fn succeeded_by(&self, target: &str, units: &BTreeMap<String, UnitReport>) -> Record {
        let served_before = if self.phase == Phase::Done || self.abandoned.is_some() {
            Some(self.target.clone())
        } else {
            self.from.clone()
        };
        Record {
            id: self.id + 1,
            target: target.to_string(),
            from: served_before,
            granted: self
                .granted
                .iter()
                .filter(|u| {
                    units
                        .get(*u)
                        .is_some_and(|r| r.outcome_for(self.id).is_none())
                })
                .cloned()
                .collect(),
            phase: Phase::Running,
            abandoned: None,
        }
    }

    /// resume-rollout: a halted rollout runs again under a new id, so the
    /// unit that failed is granted afresh; an aborted one is forgotten, so
    /// the application's build is rolled out again.
    pub fn resumed(&self) -> Result<Record, String> {
        match (&self.phase, &self.abandoned) {
            (Phase::Halted { .. }, _) => Ok(Record {
                id: self.id + 1,
                phase: Phase::Running,
                ..self.clone()
            }),
            (Phase::Done, Some(_)) => Ok(Record {
                abandoned: None,
                ..self.clone()
            }),
            (Phase::Running, _) => Err(format!(
                "nothing to resume: the rollout of {} is running",
                self.target
            )),
            (Phase::Done, None) => Err(format!(
                "nothing to resume: the rollout of {} is done",
                self.target
            )),
        }
    }

    /// abort-rollout: a rollout back to the build served before, the
    /// aborted build set aside.
    pub fn aborted(&self, units: &BTreeMap<String, UnitReport>) -> Result<Record, String> {
        if self.abandoned.is_some() {
            return Err(format!(
                "the rollout of {} is already aborted; resume-rollout rolls it out again",
                self.abandoned.as_deref().unwrap_or_default()
            ));
        }
        if self.phase == Phase::Done {
            return Err(format!(
                "the rollout of {} is done; to go back, set current_symlink to the build to serve",
                self.target
            ));
        }
        let Some(back) = &self.from else {
            return Err(format!(
                "the rollout of {} has no build to go back to: the application served none before",
                self.target
            ));
        };
        let mut record = self.succeeded_by(back, units);
        record.from = Some(self.target.clone());
        record.abandoned = Some(self.target.clone());
        Ok(record)
    }
}

/// How a unit's grant ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Moved,
    /// The health gate refused the build; the unit went back.
    Failed(String),
    /// The unit is pinned with set-current-symlink and stays.
    SkippedPinned,
}

/// What a unit says in its own bag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitReport {
    pub serving: Option<String>,
    pub pinned: Option<String>,
    /// (rollout id, target, outcome) of the last grant it acted on.
    pub last_grant: Option<(u64, String, Outcome)>,
}

impl UnitReport {
    pub fn from_bag(bag: &Bag) -> UnitReport {
        let get = |key: &str| bag.get(key).filter(|v| !v.is_empty()).cloned();
        let outcome = match get(REPORT_STATE).as_deref() {
            Some("moved") => Some(Outcome::Moved),
            Some("failed") => Some(Outcome::Failed(get(REPORT_REASON).unwrap_or_default())),
            Some("skipped-pinned") => Some(Outcome::SkippedPinned),
            _ => None,
        };
        let id = get(REPORT_ID).and_then(|id| id.parse().ok());
        UnitReport {
            serving: get(SERVING),
            pinned: get(PINNED),
            last_grant: match (id, outcome) {
                (Some(id), Some(outcome)) => {
                    Some((id, get(REPORT_TARGET).unwrap_or_default(), outcome))
                }
                _ => None,
            },
        }
    }

    pub fn to_bag(&self) -> Bag {
        let (id, target, state, reason) = match &self.last_grant {
            None => (String::new(), "", "", ""),
            Some((id, target, outcome)) => {
                let (state, reason) = match outcome {
                    Outcome::Moved => ("moved", ""),
                    Outcome::Failed(reason) => ("failed", reason.as_str()),
                    Outcome::SkippedPinned => ("skipped-pinned", ""),
                };
                (id.to_string(), target.as_str(), state, reason)
            }
        };
        [
            (SERVING, self.serving.clone().unwrap_or_default()),
            (PINNED, self.pinned.clone().unwrap_or_default()),
            (REPORT_ID, id),
            (REPORT_TARGET, target.to_string()),
            (REPORT_STATE, state.to_string()),
            (REPORT_REASON, reason.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn outcome_for(&self, id: u64) -> Option<&Outcome> {
        self.last_grant
            .as_ref()
            .filter(|(grant, _, _)| *grant == id)
            .map(|(_, _, outcome)| outcome)
    }
}

/// Units in the order they are moved: by unit number, as an operator
/// reads them (`app/2` before `app/10`).
pub fn by_number(units: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut units: Vec<String> = units.into_iter().collect();
    units.sort_by_key(|u| {
        let n: u64 = u
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        (n, u.clone())
    });
    units
}

/// The leader's step: given the last record, every unit's report
/// (`units` includes the leader, its report fresh from this hook) and the
/// build the application wants, the record to publish.
pub fn lead(
    previous: Option<&Record>,
    leader: &str,
    units: &BTreeMap<String, UnitReport>,
    wanted: &str,
    max_unavailable: MaxUnavailable,
) -> Record {
    let mut record = match previous {
        Some(r) if r.target == wanted => Record {
            // current_symlink names the build the abort went back to: the
            // abort is over.
            abandoned: None,
            ..r.clone()
        },
        Some(r) if r.abandoned.as_deref() == Some(wanted) => r.clone(),
        Some(r) => r.succeeded_by(wanted, units),
        None => Record {
            id: 1,
            target: wanted.to_string(),
            from: units.get(leader).and_then(|r| r.serving.clone()),
            granted: BTreeSet::new(),
            phase: Phase::Running,
            abandoned: None,
        },
    };
    if !record.is_running() {
        return record;
    }
    // Settle the grants: reported, departed, or failed.
    for unit in record.granted.clone() {
        let Some(report) = units.get(&unit) else {
            record.granted.remove(&unit);
            continue;
        };
        match report.outcome_for(record.id) {
            Some(Outcome::Failed(reason)) => {
                record.granted.remove(&unit);
                record.phase = Phase::Halted {
                    unit: unit.clone(),
                    reason: reason.clone(),
                };
            }
            Some(_) => {
                record.granted.remove(&unit);
            }
            None => {}
        }
    }
    if !record.is_running() {
        return record;
    }
    let left_to_move = |unit: &String| {
        let report = &units[unit];
        report.serving.as_deref() != Some(record.target.as_str())
            && report.pinned.is_none()
            && report.outcome_for(record.id).is_none()
            && !record.granted.contains(unit)
    };
    let followers: Vec<String> = by_number(units.keys().filter(|u| *u != leader).cloned())
        .into_iter()
        .filter(left_to_move)
        .collect();
    let leader_left = units.contains_key(leader) && left_to_move(&leader.to_string());
    let batch = max_unavailable.batch(units.len());
    for unit in &followers {
        if record.granted.len() >= batch {
            break;
        }
        record.granted.insert(unit.clone());
    }
    let followers_done = record.granted.is_empty() && followers.is_empty();
    if followers_done && leader_left {
        record.granted.insert(leader.to_string());
    } else if followers_done {
        record.phase = Phase::Done;
    }
    record
}

/// What a unit serves, as the rollout allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Serve the build the application wants: there is no peer relation
    /// (a rollout of one), or no record yet and nothing serves here.
    FollowApplication,
    /// Serve this build, with no grant involved.
    Serve(String),
    /// Move to `target` under the grant of rollout `id`, and report.
    Move { id: u64, target: String },
    /// Serve nothing yet: a unit that joined during a rollout waits for
    /// its grant.
    Wait,
}

/// A unit's step: given the leader's record, its own name and report.
pub fn unit_plan(record: Option<&Record>, me: &str, own: &UnitReport) -> Plan {
    let Some(record) = record else {
        return match &own.serving {
            // The leader has not said anything yet: stay.
            Some(serving) => Plan::Serve(serving.clone()),
            None => Plan::FollowApplication,
        };
    };
    let granted =
        record.is_running() && record.granted.contains(me) && own.outcome_for(record.id).is_none();
    if granted {
        return Plan::Move {
            id: record.id,
            target: record.target.clone(),
        };
    }
    if record.phase == Phase::Done {
        return Plan::Serve(record.target.clone());
    }
    match &own.serving {
        Some(serving) => Plan::Serve(serving.clone()),
        // The application's first build: no unit serves anything to keep.
        None if record.from.is_none() => Plan::Serve(record.target.clone()),
        // A unit that joins mid-rollout installs only build_label, so the
        // build the others still serve may not be here: it serves nothing
        // until the leader grants it its turn (it counts as a unit not yet
        // moved) or the rollout is done.
        None => Plan::Wait,
    }
}

/// A unit's report after an operator's action moved or pinned it (outside
/// any grant): a grant it held is answered, moved or skipped, so the
/// leader does not wait for a hook that may not come.
pub fn answer_grant(record: Option<&Record>, me: &str, mut own: UnitReport) -> UnitReport {
    if let Plan::Move { id, target } = unit_plan(record, me, &own) {
        let outcome = if own.pinned.is_some() {
            Some(Outcome::SkippedPinned)
        } else if own.serving.as_deref() == Some(target.as_str()) {
            Some(Outcome::Moved)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            own.last_grant = Some((id, target, outcome));
        }
    }
    own
}

/// How many units serve the record's target, of how many.
fn on_target(record: &Record, units: &BTreeMap<String, UnitReport>) -> (usize, usize) {
    let on = units
        .values()
        .filter(|r| r.serving.as_deref() == Some(record.target.as_str()))
        .count();
    (on, units.len())
}

/// The application status the leader sets for the record.
pub fn app_status(record: &Record, units: &BTreeMap<String, UnitReport>) -> Status {
    let (on, total) = on_target(record, units);
    let target = &record.target;
    let count = format!("{on} of {total} units on {target}");
    match (&record.phase, &record.abandoned) {
        (Phase::Halted { unit, reason }, _) => Status::blocked(format!(
            "rollout of {target} halted: {unit}: {reason} ({count}); run resume-rollout or abort-rollout on the leader"
        )),
        (Phase::Running, None) => Status::maintenance(format!(
            "rolling out {target}: {count}; moving {}",
            by_number(record.granted.iter().cloned()).join(", ")
        )),
        (Phase::Running, Some(aborted)) => Status::maintenance(format!(
            "aborting the rollout of {aborted}: {count}; moving {}",
            by_number(record.granted.iter().cloned()).join(", ")
        )),
        (Phase::Done, Some(aborted)) => Status::active(format!(
            "rollout of {aborted} aborted: {count}; resume-rollout or a new current_symlink rolls out again"
        )),
        (Phase::Done, None) => {
            let pinned = units
                .values()
                .filter(|r| r.pinned.is_some() && r.serving.as_deref() != Some(target))
                .count();
            if pinned > 0 {
                Status::active(format!("{count} ({pinned} pinned elsewhere)"))
            } else {
                Status::active(count)
            }
        }
    }
}

/// What a unit serving `serving` adds to its status while the record's
/// rollout has not reached it.
pub fn waiting_note(record: Option<&Record>, serving: Option<&str>) -> Option<String> {
    let record = record?;
    if serving == Some(record.target.as_str()) {
        return None;
    }
    match (&record.phase, &record.abandoned) {
        (Phase::Done, _) => None,
        (Phase::Halted { .. }, None) => Some(format!("rollout of {} halted", record.target)),
        (Phase::Halted { .. }, Some(aborted)) => {
            Some(format!("the abort of the rollout of {aborted} halted"))
        }
        (Phase::Running, None) => Some(format!(
            "waiting for its turn in the rollout of {}",
            record.target
        )),
        (Phase::Running, Some(aborted)) => {
            Some(format!("waiting for its turn to leave {aborted}, aborted"))
        }
    }
}

/// Where a unit stands in the record's rollout, for rollout-status.
pub fn unit_state(record: Option<&Record>, unit: &str, report: &UnitReport) -> String {
    let Some(record) = record else {
        return "no rollout: follows current_symlink".into();
    };
    if let Some(pin) = &report.pinned {
        return format!("skipped: pinned to {pin}");
    }
    match report.outcome_for(record.id) {
        Some(Outcome::Failed(reason)) => return format!("failed: {reason}"),
        Some(Outcome::SkippedPinned) => return "skipped: pinned".into(),
        Some(Outcome::Moved) | None => {}
    }
    if record.granted.contains(unit) {
        "moving".into()
    } else if report.serving.as_deref() == Some(record.target.as_str()) {
        "moved".into()
    } else if let Phase::Halted { unit: failed, .. } = &record.phase {
        if failed == unit {
            "failed".into()
        } else {
            "waiting (halted)".into()
        }
    } else {
        "waiting".into()
    }
}

/// What every peer says, as one unit reads it.
#[derive(Debug, Clone)]
pub struct Peers {
    pub relation: RelationId<Endpoint>,
    pub me: String,
    pub leader: bool,
    pub record: Option<Record>,
    /// This unit's bag as last committed.
    pub own: UnitReport,
    /// Every other unit's report; read by the leader and rollout-status only.
    pub others: BTreeMap<String, UnitReport>,
}

impl Peers {
    /// The peer relation's view, or `None` before Juju created it (the
    /// install hook) or when the charm runs without it.
    pub fn read(ctx: &mut Ctx<'_, '_>, with_others: bool) -> Result<Option<Peers>, HandlerError> {
        let Some(relation) = ctx.model.relations(Endpoint::Rollout)?.first().copied() else {
            return Ok(None);
        };
        let me = ctx.model.unit_name().to_string();
        let app = ctx.model.app_name().to_string();
        let leader = ctx.model.is_leader()?;
        let record = Record::from_bag(ctx.model.relation_data(relation, &BagOwner::App(app))?);
        let own = UnitReport::from_bag(
            ctx.model
                .relation_data(relation, &BagOwner::Unit(me.clone()))?,
        );
        let mut others = BTreeMap::new();
        if leader || with_others {
            for unit in ctx.model.relation_units(relation)?.to_vec() {
                let report = UnitReport::from_bag(
                    ctx.model
                        .relation_data(relation, &BagOwner::Unit(unit.clone()))?,
                );
                others.insert(unit, report);
            }
        }
        Ok(Some(Peers {
            relation,
            me,
            leader,
            record,
            own,
            others,
        }))
    }

    /// Every unit's report, this one's given fresh.
    pub fn all_units(&self, own: &UnitReport) -> BTreeMap<String, UnitReport> {
        let mut units = self.others.clone();
        units.insert(self.me.clone(), own.clone());
        units
    }

    /// The leader publishes `record` and the application status it gives.
    pub fn publish_record(
        &self,
        ctx: &mut Ctx<'_, '_>,
        record: &Record,
        own: &UnitReport,
    ) -> Result<(), HandlerError> {
        if Some(record) != self.record.as_ref() {
            ctx.model.log(
                LogLevel::Info,
                &format!(
                    "rollout {} of {}: {}{}",
                    record.id,
                    record.target,
                    record.phase_name(),
                    if record.granted.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", granted to {}",
                            by_number(record.granted.iter().cloned()).join(", ")
                        )
                    }
                ),
            );
        }
        ctx.model
            .update_relation_data(self.relation, Scope::App, &record.to_bag())?;
        ctx.model
            .set_app_status(&app_status(record, &self.all_units(own)))?;
        Ok(())
    }

    pub fn publish_own(&self, ctx: &mut Ctx<'_, '_>, own: &UnitReport) -> Result<(), HandlerError> {
        Ok(ctx
            .model
            .update_relation_data(self.relation, Scope::Unit, &own.to_bag())?)
    }
}

/// One unit's part in the rollout during a reconcile: what it may serve
/// (`plan`), and, once the switch is over, what it reports and (as leader)
/// what it grants next.
pub struct Turn {
    peers: Option<Peers>,
    /// The record this hook acts on (the leader's freshly decided one).
    record: Option<Record>,
    pub plan: Plan,
}

impl Turn {
    /// Read the peers and, as leader, take the rollout's next step. `wanted`
    /// is the build the application wants, if it is installed here;
    /// `own` this unit's report from its store.
    pub fn begin(
        ctx: &mut Ctx<'_, '_>,
        config: &Config,
        wanted: Option<&str>,
        own: UnitReport,
    ) -> Result<Turn, HandlerError> {
        let Some(mut peers) = Peers::read(ctx, false)? else {
            return Ok(Turn {
                peers: None,
                record: None,
                plan: Plan::FollowApplication,
            });
        };
        let own = UnitReport {
            last_grant: peers.own.last_grant.clone(),
            ..own
        };
        let record = match (peers.leader, wanted) {
            (true, Some(wanted)) => Some(lead(
                peers.record.as_ref(),
                &peers.me,
                &peers.all_units(&own),
                wanted,
                config.rollout_max_unavailable,
            )),
            _ => peers.record.clone(),
        };
        let plan = unit_plan(record.as_ref(), &peers.me, &own);
        peers.own = own;
        Ok(Turn {
            peers: Some(peers),
            record,
            plan,
        })
    }

    /// What this unit's status adds about the rollout, now that it
    /// serves `serving`.
    pub fn note(&self, serving: Option<&str>) -> Option<String> {
        waiting_note(self.record.as_ref(), serving)
    }

    /// Whether this unit has peers to coordinate with.
    pub fn has_peers(&self) -> bool {
        self.peers.is_some()
    }

    /// Report how this unit's grant ended (`outcome`, when it acted on
    /// one) and what it serves now; as leader, settle the grants again with
    /// this report and publish the record. Returns the rollout's phase as
    /// this hook leaves it.
    pub fn finish(
        self,
        ctx: &mut Ctx<'_, '_>,
        config: &Config,
        wanted: Option<&str>,
        serving: Option<String>,
        pinned: Option<String>,
        outcome: Option<Outcome>,
    ) -> Result<Option<Phase>, HandlerError> {
        let Some(peers) = self.peers else {
            return Ok(None);
        };
        let mut own = UnitReport {
            serving,
            pinned,
            last_grant: peers.own.last_grant.clone(),
        };
        if let (Plan::Move { id, target }, Some(outcome)) = (&self.plan, outcome) {
            own.last_grant = Some((*id, target.clone(), outcome));
        }
        peers.publish_own(ctx, &own)?;
        if !peers.leader {
            return Ok(self.record.map(|r| r.phase));
        }
        let record = match (wanted, &self.record) {
            (Some(wanted), record) => Some(lead(
                record.as_ref(),
                &peers.me,
                &peers.all_units(&own),
                wanted,
                config.rollout_max_unavailable,
            )),
            (None, record) => record.clone(),
        };
        if let Some(record) = &record {
            peers.publish_record(ctx, record, &own)?;
        }
        Ok(record.map(|r| r.phase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(build: &str) -> UnitReport {
        UnitReport {
            serving: Some(build.into()),
            ..UnitReport::default()
        }
    }

    fn units(builds: &[&str]) -> BTreeMap<String, UnitReport> {
        builds
            .iter()
            .enumerate()
            .map(|(n, b)| (format!("app/{n}"), serving(b)))
            .collect()
    }

    fn granted(record: &Record) -> Vec<&str> {
        record.granted.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_new_target_starts_a_rollout_from_what_the_leader_serves() {
        let record = lead(
            None,
            "app/0",
            &units(&["r1", "r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(record.id, 1);
        assert_eq!(record.from.as_deref(), Some("r1"));
        assert_eq!(granted(&record), ["app/1"]);
        assert_eq!(record.phase, Phase::Running);
    }

    #[test]
    fn grants_fill_the_batch_in_unit_number_order_and_never_more() {
        let mut all = units(&["r1"; 12]);
        all.insert("app/10".into(), serving("r1"));
        let record = lead(None, "app/0", &all, "r2", MaxUnavailable::Percent(25));
        // 25% of 12 units is 3.
        assert_eq!(granted(&record), ["app/1", "app/2", "app/3"]);
        let record = lead(None, "app/0", &all, "r2", MaxUnavailable::Units(100));
        assert_eq!(record.granted.len(), 11, "every unit but the leader");
        assert!(!record.granted.contains("app/0"));
    }

    #[test]
    fn the_leader_is_granted_alone_once_every_other_unit_moved() {
        let first = lead(
            None,
            "app/0",
            &units(&["r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let mut after = units(&["r1", "r2"]);
        after.get_mut("app/1").unwrap().last_grant = Some((first.id, "r2".into(), Outcome::Moved));
        let next = lead(
            Some(&first),
            "app/0",
            &after,
            "r2",
            MaxUnavailable::Units(5),
        );
        assert_eq!(granted(&next), ["app/0"]);
        let mut after = units(&["r2", "r2"]);
        after.get_mut("app/0").unwrap().last_grant = Some((next.id, "r2".into(), Outcome::Moved));
        let done = lead(Some(&next), "app/0", &after, "r2", MaxUnavailable::Units(5));
        assert_eq!(done.phase, Phase::Done);
        assert!(done.granted.is_empty());
    }

    #[test]
    fn a_failed_unit_halts_and_a_halt_grants_nothing_until_resumed() {
        let first = lead(
            None,
            "app/0",
            &units(&["r1", "r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let mut after = units(&["r1", "r1", "r1"]);
        after.get_mut("app/1").unwrap().last_grant = Some((
            first.id,
            "r2".into(),
            Outcome::Failed("GET /: HTTP 500".into()),
        ));
        let halted = lead(
            Some(&first),
            "app/0",
            &after,
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(
            halted.phase,
            Phase::Halted {
                unit: "app/1".into(),
                reason: "GET /: HTTP 500".into()
            }
        );
        assert!(halted.granted.is_empty());
        assert_eq!(
            lead(
                Some(&halted),
                "app/0",
                &after,
                "r2",
                MaxUnavailable::Units(1)
            ),
            halted
        );
        let status = app_status(&halted, &after);
        assert_eq!(status.name, crate::ops::StatusName::Blocked);
        assert!(
            status
                .message
                .starts_with("rollout of r2 halted: app/1: GET /: HTTP 500 (0 of 3 units on r2)"),
            "{}",
            status.message
        );

        let resumed = halted.resumed().unwrap();
        let again = lead(
            Some(&resumed),
            "app/0",
            &after,
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(granted(&again), ["app/1"], "the failed unit is tried again");
        assert_eq!(
            unit_plan(Some(&again), "app/1", &after["app/1"]),
            Plan::Move {
                id: again.id,
                target: "r2".into()
            }
        );
    }

    #[test]
    fn a_grant_is_acted_on_once() {
        let record = lead(
            None,
            "app/0",
            &units(&["r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let mut own = serving("r1");
        assert!(matches!(
            unit_plan(Some(&record), "app/1", &own),
            Plan::Move { .. }
        ));
        own.last_grant = Some((record.id, "r2".into(), Outcome::Failed("no".into())));
        assert_eq!(
            unit_plan(Some(&record), "app/1", &own),
            Plan::Serve("r1".into())
        );
    }

    #[test]
    fn grants_of_departed_units_are_released_and_in_flight_ones_kept() {
        let first = lead(
            None,
            "app/0",
            &units(&["r1", "r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let mut gone = units(&["r1", "r1", "r1"]);
        gone.remove("app/1");
        let next = lead(Some(&first), "app/0", &gone, "r2", MaxUnavailable::Units(1));
        assert_eq!(granted(&next), ["app/2"]);
        // A new target keeps the unanswered grant: that unit may be moving.
        let newer = lead(Some(&next), "app/0", &gone, "r3", MaxUnavailable::Units(1));
        assert_eq!(newer.id, next.id + 1);
        assert_eq!(granted(&newer), ["app/2"]);
        assert_eq!(newer.from.as_deref(), Some("r1"));
    }

    #[test]
    fn an_action_answers_a_pending_grant() {
        let record = lead(
            None,
            "app/0",
            &units(&["r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let pinned = UnitReport {
            pinned: Some("r1".into()),
            ..serving("r1")
        };
        let answered = answer_grant(Some(&record), "app/1", pinned);
        assert_eq!(
            answered.last_grant,
            Some((record.id, "r2".into(), Outcome::SkippedPinned))
        );
        let answered = answer_grant(Some(&record), "app/1", serving("r2"));
        assert_eq!(
            answered.last_grant,
            Some((record.id, "r2".into(), Outcome::Moved))
        );
        let untouched = answer_grant(Some(&record), "app/1", serving("r1"));
        assert_eq!(untouched.last_grant, None, "still to act on");
        let not_granted = answer_grant(Some(&record), "app/0", serving("r2"));
        assert_eq!(not_granted.last_grant, None);
    }

    #[test]
    fn pinned_units_are_skipped() {
        let mut all = units(&["r1", "r1", "r1"]);
        all.get_mut("app/1").unwrap().pinned = Some("r1".into());
        let record = lead(None, "app/0", &all, "r2", MaxUnavailable::Units(1));
        assert_eq!(granted(&record), ["app/2"]);
        assert_eq!(
            unit_state(Some(&record), "app/1", &all["app/1"]),
            "skipped: pinned to r1"
        );
    }

    #[test]
    fn abort_goes_back_and_is_not_undone_by_the_same_target() {
        let first = lead(
            None,
            "app/0",
            &units(&["r1", "r2", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        let aborted = first.aborted(&units(&["r1", "r2", "r1"])).unwrap();
        assert_eq!(aborted.target, "r1");
        assert_eq!(aborted.abandoned.as_deref(), Some("r2"));
        let next = lead(
            Some(&aborted),
            "app/0",
            &units(&["r1", "r2", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(
            next.target, "r1",
            "current_symlink still naming r2 does not restart it"
        );
        // app/2's grant to r2 is still unanswered: it holds the batch.
        assert_eq!(granted(&next), ["app/2"]);
        let mut back = units(&["r1"; 3]);
        back.get_mut("app/2").unwrap().last_grant = Some((next.id, "r1".into(), Outcome::Moved));
        let done = lead(Some(&next), "app/0", &back, "r2", MaxUnavailable::Units(1));
        assert_eq!(done.phase_name(), "aborted");
        let resumed = done.resumed().unwrap();
        let again = lead(
            Some(&resumed),
            "app/0",
            &units(&["r1"; 3]),
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(
            (again.target.as_str(), again.from.as_deref()),
            ("r2", Some("r1"))
        );
        assert!(
            first.resumed().is_err(),
            "a running rollout has nothing to resume"
        );
    }

    #[test]
    fn records_and_reports_survive_their_bags() {
        let record = Record {
            id: 7,
            target: "r3".into(),
            from: Some("r2".into()),
            granted: ["app/1".to_string(), "app/10".to_string()].into(),
            phase: Phase::Halted {
                unit: "app/2".into(),
                reason: "build r3 did not start".into(),
            },
            abandoned: None,
        };
        assert_eq!(Record::from_bag(&record.to_bag()), Some(record));
        let report = UnitReport {
            serving: Some("r2".into()),
            pinned: None,
            last_grant: Some((7, "r3".into(), Outcome::SkippedPinned)),
        };
        assert_eq!(UnitReport::from_bag(&report.to_bag()), report);
        assert_eq!(Record::from_bag(&Bag::new()), None);
    }

    #[test]
    fn a_unit_joining_mid_rollout_waits_and_serves_the_target_once_done() {
        let mut record = lead(
            None,
            "app/0",
            &units(&["r1", "r1"]),
            "r2",
            MaxUnavailable::Units(1),
        );
        assert_eq!(
            unit_plan(Some(&record), "app/5", &UnitReport::default()),
            Plan::Wait
        );
        record.phase = Phase::Done;
        assert_eq!(
            unit_plan(Some(&record), "app/5", &UnitReport::default()),
            Plan::Serve("r2".into())
        );
        assert_eq!(
            unit_plan(None, "app/5", &UnitReport::default()),
            Plan::FollowApplication
        );
        let fresh: BTreeMap<String, UnitReport> = ["app/0", "app/1"]
            .map(|u| (u.to_string(), UnitReport::default()))
            .into();
        let first = lead(None, "app/0", &fresh, "r1", MaxUnavailable::Units(1));
        assert_eq!(first.phase, Phase::Running);
        assert_eq!(
            unit_plan(Some(&first), "app/5", &UnitReport::default()),
            Plan::Serve("r1".into()),
            "a first deploy has nothing to wait for"
        );
    }
}

//! Juju secrets in the in-memory Juju, seen from the unit under test
//! (shared/reference/modern-interfaces.md §6, juju-hook-tools.md §3.20).
//!
//! A [`Secret`] has an owner (an application, or one of its units), numbered
//! revisions of content, and grants: each grant is a relation id, and the
//! application at the other end of that relation may read the secret. The
//! unit under test is either the owner (it always reads the latest revision
//! and may not `--refresh`) or a consumer, for which Juju keeps two things:
//!
//! - the **tracked revision**: the first read starts tracking the latest;
//!   later reads keep returning the tracked one until a read with
//!   `--refresh` moves it to the latest; `--peek` shows the latest once and
//!   moves nothing (but a first read, even a peek, starts tracking: Juju
//!   treats a consumer it does not know yet as a refresh);
//! - the **consumer label**: bound by a read with both an ID and `--label`;
//!   from then on `--label` alone finds the secret.
//!
//! Both change at once, not at the hook's commit: the hook context sends a
//! consumer's read straight to the controller, which records them while
//! answering; only the hook's own secret-add/secret-set are buffered
//! (juju `HookContext.GetSecret`, read in source).
//! A consumer without a live grant gets `permission denied`.
//!
//! [`State::publish_secret_revision`] is the owner publishing new content:
//! it returns the `secret-changed` event Juju sends a consumer that tracks
//! an older revision.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};

use wsgi_app::ops::{
    Bag, ModelError, SecretContent, SecretInfo, SecretOwner, SecretRead, SecretRef,
};

use crate::on::{self, EventSpec};
use crate::state::{Relation, State};

/// One Juju secret as the unit under test can know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The URI, `secret:<20 characters>`.
    pub id: String,
    /// The owning application: a remote application for a provider's
    /// secret, this charm's own for a secret it created.
    pub owner_app: String,
    /// The owning unit, for a unit-owned secret (`--owner unit`).
    pub owner_unit: Option<String>,
    /// The label the owner gave it (`secret-add --label`); empty for none.
    pub owner_label: String,
    pub description: String,
    /// Content by revision number, from 1.
    pub revisions: BTreeMap<u32, Bag>,
    /// The relations it is granted on (`secret-grant -r <id>`).
    pub grants: BTreeSet<u32>,
    /// The revision this unit tracks as a consumer; `None` until it reads.
    pub tracked: Option<u32>,
    /// The label this unit bound as a consumer.
    pub consumer_label: Option<String>,
}

/// A fresh secret ID in Juju's form (xid: 20 characters of `[0-9a-v]`).
pub fn new_secret_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let mut tail = String::new();
    let mut rest = n;
    for _ in 0..7 {
        tail.insert(0, DIGITS[(rest % 32) as usize] as char);
        rest /= 32;
    }
    format!("secret:d4hc0nsk3tvr3m{tail}")
}

/// The part of a secret URI that names it: `secret:<id>` and
/// `secret://<model-uuid>/<id>` are the same secret.
pub fn short_id(uri: &str) -> &str {
    let rest = uri.strip_prefix("secret:").unwrap_or(uri);
    rest.rsplit('/').next().unwrap_or(rest)
}

impl Secret {
    /// A secret owned by application `owner_app`, at revision 1 with
    /// `content`, granted nowhere yet.
    pub fn new(owner_app: impl Into<String>, content: Bag) -> Self {
        Secret {
            id: new_secret_id(),
            owner_app: owner_app.into(),
            owner_unit: None,
            owner_label: String::new(),
            description: String::new(),
            revisions: [(1, content)].into(),
            grants: BTreeSet::new(),
            tracked: None,
            consumer_label: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Owned by one unit of the owning application.
    pub fn with_owner_unit(mut self, unit: impl Into<String>) -> Self {
        self.owner_unit = Some(unit.into());
        self
    }

    pub fn with_owner_label(mut self, label: impl Into<String>) -> Self {
        self.owner_label = label.into();
        self
    }

    /// Granted on relation `id` (to the application at its other end).
    pub fn granted_on(mut self, relation_id: u32) -> Self {
        self.grants.insert(relation_id);
        self
    }

    /// This unit already read it: it tracks `revision` and bound `label`.
    pub fn tracked_by_unit(mut self, revision: u32, label: Option<&str>) -> Self {
        self.tracked = Some(revision);
        self.consumer_label = label.map(str::to_string);
        self
    }

    /// Another revision of content, published after the existing ones.
    pub fn with_revision(mut self, content: Bag) -> Self {
        let next = self.latest() + 1;
        self.revisions.insert(next, content);
        self
    }

    /// The newest revision number.
    pub fn latest(&self) -> u32 {
        self.revisions.keys().next_back().copied().unwrap_or(0)
    }

    /// Content of revision `n`.
    pub fn content(&self, n: u32) -> Option<&Bag> {
        self.revisions.get(&n)
    }

    fn is_owned_by(&self, app: &str, unit: &str) -> bool {
        match &self.owner_unit {
            Some(owner) => owner == unit,
            None => self.owner_app == app,
        }
    }

    /// A live relation in `relations` carries a grant to the owner's peer.
    fn granted_to_us(&self, relations: &[Relation]) -> bool {
        self.grants.iter().any(|id| {
            relations
                .iter()
                .any(|r| r.id == *id && r.remote_app == self.owner_app)
        })
    }
}

fn not_found(what: impl std::fmt::Display) -> ModelError {
    ModelError::SecretNotFound(format!("secret {what} not found"))
}

fn permission_denied() -> ModelError {
    ModelError::AccessDenied("permission denied".into())
}

/// Who asks: this unit and its application.
pub(crate) struct Asker<'a> {
    pub app: &'a str,
    pub unit: &'a str,
    pub leader: bool,
}

fn find<'s>(
    secrets: &'s mut [Secret],
    asker: &Asker<'_>,
    secret: SecretRef<'_>,
) -> Result<&'s mut Secret, ModelError> {
    match secret.id() {
        Some(id) => secrets
            .iter_mut()
            .find(|s| short_id(&s.id) == short_id(id))
            .ok_or_else(|| not_found(format!("{id:?}"))),
        None => {
            let label = secret.label().unwrap_or_default();
            secrets
                .iter_mut()
                .find(|s| {
                    if s.is_owned_by(asker.app, asker.unit) {
                        s.owner_label == label
                    } else {
                        s.consumer_label.as_deref() == Some(label)
                    }
                })
                // Owned secrets are looked up first; what is left is a
                // consumer label, and Juju's error says so.
                .ok_or_else(|| {
                    ModelError::SecretNotFound(format!("consumer label {label:?} not found"))
                })
        }
    }
}

/// `secret-get`, with Juju's rules for owners and consumers.
pub(crate) fn secret_get(
    secrets: &mut [Secret],
    relations: &[Relation],
    asker: &Asker<'_>,
    secret: SecretRef<'_>,
    read: SecretRead,
) -> Result<SecretContent, ModelError> {
    let found = find(secrets, asker, secret)?;
    if found.is_owned_by(asker.app, asker.unit) {
        if read == SecretRead::Refresh {
            return Err(ModelError::SecretOwnerCannotRefresh(
                "secret owner cannot use --refresh".into(),
            ));
        }
        // ID and label from the owner (or, for an application's secret,
        // its leader) relabel it, as Juju 3.6's controller does
        // (`updateLabelForAppOwnedOrUnitOwnedSecret`); older agents refused
        // the pair only with --refresh (LP#2042596), refused above.
        if let SecretRef::IdWithLabel { label, .. } = secret {
            if found.owner_unit.is_some() || asker.leader {
                found.owner_label = label.to_string();
            }
        }
        let latest = found.latest();
        let content = found.content(latest).cloned().unwrap_or_default();
        return Ok(SecretContent::new(content));
    }
    if !found.granted_to_us(relations) {
        return Err(permission_denied());
    }
    if let SecretRef::IdWithLabel { label, .. } = secret {
        found.consumer_label = Some(label.to_string());
    }
    let latest = found.latest();
    let revision = match read {
        // A first read tracks the latest whatever its flags (Juju's
        // getConsumedRevision treats a consumer it does not know as a refresh).
        SecretRead::Peek => {
            found.tracked.get_or_insert(latest);
            latest
        }
        SecretRead::Refresh => {
            found.tracked = Some(latest);
            latest
        }
        SecretRead::Tracked => *found.tracked.get_or_insert(latest),
    };
    let content = found
        .content(revision)
        .cloned()
        .ok_or_else(|| not_found(format!("{:?} revision {revision}", found.id)))?;
    // A label now bound here is no other secret's.
    if let SecretRef::IdWithLabel { label, .. } = secret {
        let id = found.id.clone();
        for other in secrets.iter_mut().filter(|s| s.id != id) {
            if other.consumer_label.as_deref() == Some(label) {
                other.consumer_label = None;
            }
        }
    }
    Ok(SecretContent::new(content))
}

/// `secret-info-get`: the owner's view; a consumer is refused.
pub(crate) fn secret_info_get(
    secrets: &mut [Secret],
    asker: &Asker<'_>,
    secret: SecretRef<'_>,
) -> Result<SecretInfo, ModelError> {
    if let SecretRef::IdWithLabel { .. } = secret {
        return Err(wsgi_app::ops::backend::secret_info_ref_error());
    }
    let found = find(secrets, asker, secret)?;
    if !found.is_owned_by(asker.app, asker.unit) {
        return Err(permission_denied());
    }
    Ok(SecretInfo {
        id: found.id.clone(),
        revision: found.latest(),
        label: found.owner_label.clone(),
        owner: if found.owner_unit.is_some() {
            SecretOwner::Unit
        } else {
            SecretOwner::Application
        },
        description: Some(found.description.clone()).filter(|d| !d.is_empty()),
        rotation: None,
        expiry: None,
        rotates: None,
    })
}

/// `secret-ids`: what this unit owns, and what its application owns.
pub(crate) fn secret_ids(secrets: &[Secret], asker: &Asker<'_>) -> Vec<String> {
    let mut ids: Vec<String> = secrets
        .iter()
        .filter(|s| s.is_owned_by(asker.app, asker.unit))
        .map(|s| s.id.clone())
        .collect();
    ids.sort();
    ids
}

impl State {
    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    /// The secret with this URI (either URI form).
    pub fn secret(&self, id: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .find(|s| short_id(&s.id) == short_id(id))
    }

    fn expect_secret(&mut self, id: &str) -> &mut Secret {
        self.secrets
            .iter_mut()
            .find(|s| short_id(&s.id) == short_id(id))
            .unwrap_or_else(|| panic!("the State has no secret {id}"))
    }

    /// The owner publishes `content` as a new revision (`secret-set`).
    /// Returns the `secret-changed` Juju then runs on this unit, if it is a
    /// consumer tracking an older revision (with the label it bound);
    /// `None` if it never read the secret, or owns it.
    pub fn publish_secret_revision(&mut self, id: &str, content: Bag) -> Option<EventSpec> {
        let secret = self.expect_secret(id);
        let revision = secret.latest() + 1;
        secret.revisions.insert(revision, content);
        let tracked = secret.tracked?;
        (tracked < revision).then(|| {
            on::secret_changed(
                &secret.id,
                secret.consumer_label.as_deref().unwrap_or_default(),
            )
        })
    }

    /// The owner revokes the grant on relation `relation_id`
    /// (`secret-revoke -r`): reads by the other side are then refused.
    pub fn revoke_secret(mut self, id: &str, relation_id: u32) -> Self {
        self.expect_secret(id).grants.remove(&relation_id);
        self
    }
}

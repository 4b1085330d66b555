//! The `cos-agent` endpoint, Juju side: every unit writes its own bag (the
//! collector is a subordinate, one per machine, and reads only its
//! principal unit's bag), from the options and the model's topology, on
//! each full reconcile, so a change of `metrics_port` or of a threshold
//! reaches the collector with the hook that made it. What goes in the bag
//! is [`relations::cos_agent`](super::relations::cos_agent)'s to say.

use super::config::Config;
use super::relations::cos_agent::{self, Inputs, Topology};
use super::{Ctx, Endpoint};
use crate::ops::{HandlerError, Scope};

pub fn publish(ctx: &mut Ctx<'_, '_>, config: &Config) -> Result<(), HandlerError> {
    let relations = ctx.model.relations(Endpoint::CosAgent)?;
    if relations.is_empty() {
        return Ok(());
    }
    let topology = Topology {
        model: ctx.model.model_name().to_string(),
        model_uuid: ctx.model.model_uuid().to_string(),
        application: ctx.model.app_name().to_string(),
    };
    let data = cos_agent::unit_data(&Inputs {
        topology: &topology,
        metrics_port: config.metrics_port,
        thresholds: config.alerts,
    });
    for rel in relations {
        ctx.model.update_relation_data(rel, Scope::Unit, &data)?;
    }
    Ok(())
}

//! Packing and handing over: the bag's weight against the catalog, the label, READY, and the
//! rider's handoff scan.
//!
//! The expected weight is what was picked: catalog unit weights for counted goods, the
//! scanned weight for weighed goods, plus the bags' tare. A bag outside the tolerance is
//! refused so the packer checks it before the rider leaves with a wrong order; a lead (or a
//! manager) who has checked the bags can override the refusal (`"override": true`), and the
//! PACKED transition then records who overrode it, with the weights, in its note.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::work::ctx::{Ctx, new_id};
use crate::work::orders::{self, Status};
use crate::work::staff::Role;

/// Tolerances for the bag weight check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackConfig {
    /// Relative tolerance, percent of the expected weight.
    pub tolerance_pct: f64,
    /// Absolute tolerance floor, grams.
    pub tolerance_g: i64,
    /// Weight of one empty bag, grams.
    pub bag_tare_g: i64,
}

impl Default for PackConfig {
    fn default() -> Self {
        Self {
            tolerance_pct: 5.0,
            tolerance_g: 30,
            bag_tare_g: 0,
        }
    }
}

/// The packer's input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    /// Bags used (1 by default).
    pub bags: Option<i64>,
    /// What the scale read for all bags together; skipped check when absent (no scale).
    pub bag_weight_g: Option<i64>,
    /// A lead or manager packs bags outside the weight tolerance anyway (they checked them).
    #[serde(default, rename = "override")]
    pub override_weight: bool,
    /// Why the weight was overridden ("bottle of oil swapped for a larger one"); recorded.
    pub override_reason: Option<String>,
}

/// A weight check that a lead overrode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightOverride {
    /// Who overrode it (staff id).
    pub by: String,
    pub role: Role,
    pub measured_g: i64,
    pub expected_g: i64,
    pub tolerance_g: i64,
    pub reason: Option<String>,
}

/// A packed order.
#[derive(Debug, Clone, Serialize)]
pub struct Packed {
    pub order_id: String,
    pub status: Status,
    pub label_id: String,
    pub bags: i64,
    pub expected_weight_g: i64,
    pub tolerance_g: i64,
    pub bag_weight_g: Option<i64>,
    /// Set when a lead packed the bags outside the tolerance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_override: Option<WeightOverride>,
}

/// Packs a completely picked order: checks the weight, assigns a label id, PACKED. `role` is
/// the packer's: only a lead or above may override the weight check.
pub fn pack(
    conn: &Connection,
    ctx: &mut Ctx,
    config: &PackConfig,
    order_id: &str,
    input: &Pack,
    role: Role,
) -> Result<Packed, Error> {
    if input.override_weight && role < Role::Lead {
        return Err(Error::Forbidden(format!(
            "{} is a {}: overriding the bag weight check needs a lead or a manager",
            ctx.actor,
            role.as_str()
        )));
    }
    orders::ensure_not_cancelling(conn, order_id)?;
    let status = orders::status(conn, order_id)?;
    if !status.can_become(Status::Packed) {
        return Err(Error::InvalidTransition {
            order_id: order_id.to_owned(),
            status,
            action: "pack",
        });
    }
    let lines = orders::lines(conn, order_id)?;
    let open: Vec<String> = lines
        .iter()
        .filter(|l| l.open_qty > 0)
        .map(|l| format!("line {} ({} open)", l.line_no, l.open_qty))
        .collect();
    if !open.is_empty() {
        return Err(Error::Conflict(format!(
            "order {order_id} is not completely picked: {}; pick or short them first",
            open.join(", ")
        )));
    }
    if lines.iter().all(|l| l.picked_qty == 0) {
        return Err(Error::Conflict(format!(
            "nothing of order {order_id} was picked: it cannot be packed"
        )));
    }
    let bags = input.bags.unwrap_or(1);
    if !(1..=20).contains(&bags) {
        return Err(Error::Invalid("bags must be 1..=20".into()));
    }
    if let Some(weight) = input.bag_weight_g {
        crate::limits::weight_g("bag_weight_g", weight)?;
    }
    if let Some(reason) = &input.override_reason {
        crate::limits::text("override_reason", reason, crate::limits::MAX_NOTE)?;
    }
    let overflow = || Error::Invalid(format!("the expected weight of order {order_id} overflows"));
    let expected = lines
        .iter()
        .try_fold(0_i64, |sum, l| sum.checked_add(l.picked_weight_g))
        .and_then(|picked| picked.checked_add(bags.checked_mul(config.bag_tare_g)?))
        .ok_or_else(overflow)?;
    // Rounded to whole grams: a tolerance is a scale reading, not a precise figure.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let relative = (expected as f64 * config.tolerance_pct / 100.0).round() as i64;
    let tolerance = relative.max(config.tolerance_g);
    let mut weight_override = None;
    if let Some(weight) = input.bag_weight_g
        && weight.abs_diff(expected) > tolerance.unsigned_abs()
    {
        if !input.override_weight {
            return Err(Error::Conflict(format!(
                "the bags weigh {weight} g but order {order_id} should weigh {expected} g \
                 (± {tolerance} g): check the bags, or a lead overrides the check"
            )));
        }
        weight_override = Some(WeightOverride {
            by: ctx.actor.clone(),
            role,
            measured_g: weight,
            expected_g: expected,
            tolerance_g: tolerance,
            reason: input
                .override_reason
                .as_deref()
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| r.chars().take(200).collect()),
        });
    }
    let label_id = format!(
        "FK-{}",
        new_id().replace('-', "")[20..].to_ascii_uppercase()
    );
    conn.prepare_cached(
        "UPDATE order_progress SET label_id = ?2, bags = ?3, expected_weight_g = ?4,
            bag_weight_g = ?5 WHERE order_id = ?1",
    )?
    .execute(params![
        order_id,
        label_id,
        bags,
        expected,
        input.bag_weight_g
    ])?;
    let note = match &weight_override {
        None => label_id.clone(),
        Some(o) => format!(
            "{label_id}; weight check overridden by {} ({}): the bags weigh {} g, expected {} g \
             (± {} g){}",
            o.by,
            o.role.as_str(),
            o.measured_g,
            o.expected_g,
            o.tolerance_g,
            o.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    };
    orders::transition(conn, ctx, order_id, Status::Packed, "pack", Some(&note))?;
    Ok(Packed {
        order_id: order_id.to_owned(),
        status: Status::Packed,
        label_id,
        bags,
        expected_weight_g: expected,
        tolerance_g: tolerance,
        bag_weight_g: input.bag_weight_g,
        weight_override,
    })
}

/// A status change's result.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub order_id: String,
    pub from: Status,
    pub status: Status,
}

/// The packed order is on the pickup shelf: READY.
pub fn ready(conn: &Connection, ctx: &mut Ctx, order_id: &str) -> Result<Moved, Error> {
    orders::ensure_not_cancelling(conn, order_id)?;
    let from = orders::transition(conn, ctx, order_id, Status::Ready, "mark ready", None)?;
    Ok(Moved {
        order_id: order_id.to_owned(),
        from,
        status: Status::Ready,
    })
}

/// The rider's handoff scan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub rider_id: String,
    /// The bag label the rider scanned; must be this order's.
    pub label_id: String,
}

/// Hands the order to the rider: PICKED_UP, with a `handoffs` row.
pub fn handoff(
    conn: &Connection,
    ctx: &mut Ctx,
    order_id: &str,
    input: &Handoff,
) -> Result<Moved, Error> {
    orders::ensure_not_cancelling(conn, order_id)?;
    if input.rider_id.trim().is_empty() {
        return Err(Error::Invalid("a handoff names the rider".into()));
    }
    let label: Option<String> = conn
        .prepare_cached("SELECT label_id FROM order_progress WHERE order_id = ?1")?
        .query_row([order_id], |row| row.get(0))
        .optional()?
        .ok_or_else(|| Error::not_found("order", order_id))?;
    if label.as_deref() != Some(input.label_id.as_str()) {
        return Err(Error::Conflict(format!(
            "label {} is not order {order_id}'s bag",
            input.label_id
        )));
    }
    let from = orders::transition(conn, ctx, order_id, Status::PickedUp, "hand off", None)?;
    conn.prepare_cached(
        "INSERT INTO handoffs (order_id, store_id, rider_id, label_id, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![order_id, ctx.store_id, input.rider_id, input.label_id, ctx.at])?;
    Ok(Moved {
        order_id: order_id.to_owned(),
        from,
        status: Status::PickedUp,
    })
}

//! `GET /api/v1/orders/{id}/events`: an order's progress pushed to its customer (SSE), so the
//! tracking page needs no polling. Each event is the whole tracking view (status, timeline,
//! promise, the delivery PIN to tell the rider, and once the order is on its way the rider's
//! position with a fresh ETA from it to the door); a new one is sent whenever the read model
//! changes what the view says, and the stream ends after the order is finished. Only the
//! order's own customer may follow it (another's is 404, as for `GET /api/v1/orders/{id}`).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::area::distance_m;
use crate::http::error::{ApiError, Path};
use crate::http::state::AppState;
use crate::intake::Customer;
use crate::projection::{Backend, Projection, TimelineEntry};

/// Statuses after which nothing moves on the customer's map.
const FINISHED: &[&str] = &["DELIVERED", "CLOSED", "CANCELLED", "REFUNDED"];

/// A position older than this is not shown as the rider's (the phone stopped reporting).
const RIDER_FRESH: time::Duration = time::Duration::minutes(2);

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Position {
    lat: f64,
    lon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct RiderFix {
    lat: f64,
    lon: f64,
    at: String,
}

/// What the customer's tracking page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Tracking {
    order_id: String,
    status: String,
    status_at: String,
    placed_at: String,
    promised_at: Option<String>,
    timeline: Vec<TimelineEntry>,
    delivery_pin: Option<String>,
    /// The door.
    destination: Position,
    /// The rider's latest fix while the order is on its way.
    rider: Option<RiderFix>,
    /// Minutes to the door: from the rider's position at the rider's speed once on its way,
    /// else what is left of the promise; none once finished.
    eta_minutes: Option<i64>,
    finished: bool,
}

/// The order's tracking view, or `None` if it is not `customer`'s.
async fn tracking(
    state: &AppState,
    customer: &Customer,
    order_id: &str,
) -> Result<Option<Tracking>, ApiError> {
    let Some(order) = state
        .projection
        .order(order_id)
        .await?
        .filter(|o| o.customer_id.as_deref() == Some(customer.id.as_str()))
    else {
        return Ok(None);
    };
    let on_its_way = order.status == "PICKED_UP";
    let rider_id = if on_its_way {
        crate::dashboard::detail::order_rider(&state.projection, order_id).await?
    } else {
        None
    };
    let (destination, fix) = destination_and_fix(&state.projection, order_id, rider_id).await?;
    let now = crate::clock::now();
    let rider =
        fix.filter(|f| crate::clock::parse(&f.at).is_some_and(|at| now - at <= RIDER_FRESH));
    let finished = FINISHED.contains(&order.status.as_str());
    let eta_minutes = if finished {
        None
    } else if let Some(rider) = &rider {
        let metres = distance_m((rider.lat, rider.lon), (destination.lat, destination.lon));
        let metres_per_minute = (state.rider_speed_kmh * 1000.0 / 60.0).max(1.0);
        Some((metres / metres_per_minute).ceil() as i64)
    } else {
        order
            .promised_at
            .as_deref()
            .and_then(crate::clock::parse)
            .map(|promised| (promised - now).whole_minutes().max(0))
    };
    let delivery_pin = if finished {
        None
    } else {
        state.hq.delivery_pin(order_id).await?
    };
    Ok(Some(Tracking {
        order_id: order.id,
        status: order.status,
        status_at: order.status_at,
        placed_at: order.placed_at,
        promised_at: order.promised_at,
        timeline: order.timeline,
        delivery_pin,
        destination,
        rider,
        eta_minutes,
        finished,
    }))
}

fn event(view: &Tracking, seq: u64) -> Event {
    Event::default()
        .event("order")
        .id(seq.to_string())
        .data(serde_json::to_string(view).unwrap_or_else(|_| "{}".into()))
}

/// `GET /api/v1/orders/{id}/events`
pub async fn order_events(
    State(state): State<AppState>,
    customer: Customer,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let first = tracking(&state, &customer, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no order {id}")))?;
    let projected = state.projection.projected();
    let written = state.projection.written();
    let shutdown = state.shutdown.clone();
    struct Follow {
        state: AppState,
        customer: Customer,
        id: String,
        last: Option<Tracking>,
        pending: Option<Tracking>,
        seq: u64,
        projected: tokio::sync::watch::Receiver<u64>,
        written: tokio::sync::watch::Receiver<u64>,
        shutdown: tokio_util::sync::CancellationToken,
    }
    let follow = Follow {
        state,
        customer,
        id,
        last: None,
        pending: Some(first),
        seq: 0,
        projected,
        written,
        shutdown,
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(view) = f.pending.take()
                && f.last.as_ref() != Some(&view)
            {
                f.seq += 1;
                let sent = event(&view, f.seq);
                f.last = Some(view);
                return Some((Ok(sent), f));
            }
            if f.last.as_ref().is_some_and(|v| v.finished) {
                return None;
            }
            // The ETA from a rider's position ages even when nothing is projected: look again
            // every 15 s as well.
            tokio::select! {
                () = f.shutdown.cancelled() => return None,
                changed = f.projected.changed() => changed.ok()?,
                changed = f.written.changed() => changed.ok()?,
                () = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            }
            match tracking(&f.state, &f.customer, &f.id).await {
                Ok(view) => f.pending = view,
                Err(error) => {
                    tracing::warn!(order = %f.id, %error, "tracking view not read");
                    return None;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The order's drop-off and its rider's last fix (if a rider is named and has been seen), as
/// the read model has them.
async fn destination_and_fix(
    projection: &Projection,
    order_id: &str,
    rider_id: Option<String>,
) -> Result<(Position, Option<RiderFix>), crate::CloudError> {
    let id = order_id.to_owned();
    Ok(match projection.backend() {
        Backend::Sqlite(db) => {
            db.read(move |conn| -> Result<_, flashkart_sync::Error> {
                let destination = conn
                    .prepare_cached("SELECT lat, lon FROM rm_orders WHERE id = ?1")?
                    .query_row([&id], |r| {
                        Ok(Position {
                            lat: r.get(0)?,
                            lon: r.get(1)?,
                        })
                    })?;
                let fix = match rider_id {
                    Some(rider) => conn
                        .prepare_cached("SELECT lat, lon, at FROM rm_riders WHERE rider_id = ?1")?
                        .query_row([rider], |r| {
                            Ok(RiderFix {
                                lat: r.get(0)?,
                                lon: r.get(1)?,
                                at: r.get(2)?,
                            })
                        })
                        .optional()?,
                    None => None,
                };
                Ok((destination, fix))
            })
            .await?
        }
        Backend::Postgres(pg) => {
            let client = pg.client().await?;
            let row = client
                .query_one("SELECT lat, lon FROM rm_orders WHERE id = $1", &[&id])
                .await?;
            let destination = Position {
                lat: row.get(0),
                lon: row.get(1),
            };
            let fix = match rider_id {
                Some(rider) => client
                    .query_opt(
                        "SELECT lat, lon, at FROM rm_riders WHERE rider_id = $1",
                        &[&rider],
                    )
                    .await?
                    .map(|r| RiderFix {
                        lat: r.get(0),
                        lon: r.get(1),
                        at: r.get(2),
                    }),
                None => None,
            };
            (destination, fix)
        }
    })
}

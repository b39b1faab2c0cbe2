//! Sign-in and staff, the live event stream, health, metrics, status placeholders, and the
//! dev-only catalog seed.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::auth::{Staff, Token};
use super::error::{ApiError, Json, Path};
use crate::Error;
use crate::app::{App, SignedIn};
use crate::devices::{BindRequest, Binding};
use crate::events::{Event, Resume};
use crate::lockout::LockInfo;
use crate::work::catalog::{self, CatalogSeed, SeedSummary};
use crate::work::staff::{Member, NewStaff, Role, Session};

type Reply<T> = Result<Json<T>, ApiError>;

pub async fn healthz(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "store_id": app.store_id,
        "schema_version": app.db.schema_version(),
    }))
}

pub async fn metrics(State(app): State<Arc<App>>) -> Result<impl IntoResponse, ApiError> {
    if let Some(riders) = app.riders.get() {
        let (stats, online) = riders.read();
        app.metrics.riders(&stats, online);
    }
    let text = app.metrics.encode().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding metrics: {e}"),
        )
    })?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    staff_id: String,
    pin: String,
}

/// The caller's IP address as the TCP connection has it (served with connect info). Not
/// `X-Forwarded-For`: on the store LAN anyone could write that header to dodge their lock.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_canonical()),
        ))
    }
}

pub async fn sign_in(
    State(app): State<Arc<App>>,
    Peer(client): Peer,
    Json(body): Json<SignIn>,
) -> Reply<SignedIn> {
    Ok(Json(app.sign_in(body.staff_id, body.pin, client).await?))
}

#[derive(Debug, Serialize)]
pub struct Unlocked {
    unlocked: String,
    was_locked: bool,
}

/// A manager clears a member of staff's failed sign-ins and lock.
pub async fn unlock_staff(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
) -> Reply<Unlocked> {
    staff.require(Role::Manager)?;
    let was_locked = app.unlock_account(&staff.staff_id, &id);
    Ok(Json(Unlocked {
        unlocked: id,
        was_locked,
    }))
}

/// A manager clears a device's (IP address's) failed sign-ins and lock.
pub async fn unlock_client(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(ip): Path<String>,
) -> Reply<Unlocked> {
    staff.require(Role::Manager)?;
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| Error::Invalid(format!("`{}` is not an IP address", ip.escape_debug())))?;
    let was_locked = app.unlock_client(&staff.staff_id, addr.to_canonical());
    Ok(Json(Unlocked {
        unlocked: addr.to_string(),
        was_locked,
    }))
}

/// Sign-in locks in force (accounts and devices), for a manager.
pub async fn lockouts(State(app): State<Arc<App>>, Staff(staff): Staff) -> Reply<Vec<LockInfo>> {
    staff.require(Role::Manager)?;
    Ok(Json(app.locks()))
}

pub async fn me(Staff(staff): Staff) -> Json<Session> {
    Json(staff)
}

/// Ends the caller's session: the token stops working at once (the tablet's "Sign out").
pub async fn sign_out(
    State(app): State<Arc<App>>,
    Token(token): Token,
) -> Result<StatusCode, ApiError> {
    app.sign_out(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every member of staff, for the manager.
pub async fn list_staff(State(app): State<Arc<App>>, Staff(staff): Staff) -> Reply<Vec<Member>> {
    staff.require(Role::Manager)?;
    Ok(Json(app.read(crate::work::staff::list).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPin {
    pin: String,
}

/// A manager sets a forgotten (or leaked) PIN; the member's open sessions end.
pub async fn reset_pin(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(body): Json<NewPin>,
) -> Reply<Value> {
    staff.require(Role::Manager)?;
    app.reset_pin(&staff.staff_id, id.clone(), body.pin).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Debug, Serialize)]
pub struct StaffAdded {
    id: String,
    role: Role,
}

pub async fn add_staff(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(new): Json<NewStaff>,
) -> Result<(StatusCode, Json<StaffAdded>), ApiError> {
    staff.require(Role::Manager)?;
    let added = StaffAdded {
        id: new.id.clone(),
        role: new.role,
    };
    app.add_staff(&staff.staff_id, new).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Every configured device with its health, printer faults and scanner binding.
pub async fn devices(State(app): State<Arc<App>>, _staff: Staff) -> Json<Value> {
    Json(app.devices.report())
}

/// Binds a scanner to the caller and the order they pick: its scans then act as theirs.
pub async fn bind_device(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(request): Json<BindRequest>,
) -> Reply<Binding> {
    Ok(Json(app.devices.bind(&*app, &id, &staff, request).await?))
}

/// Unbinds a scanner (its picker, or a lead and above).
pub async fn unbind_device(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
) -> Reply<Value> {
    let removed = app.devices.unbind(&id, &staff)?;
    Ok(Json(json!({ "scanner": id, "unbound": removed })))
}

/// Sync's status, with `lag_changes` counted from the store database (see
/// [`crate::link::sync::unacked_changes`]); without `[sync]`, what is true of this replica.
pub async fn sync_status(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Value> {
    let site_id: String = app
        .db
        .site_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match app.sync.get() {
        Some(status) => {
            let mut status = status.borrow().clone();
            let site = app.db.site_id();
            let acked = status.acked_db_version;
            status.lag_changes = app
                .read(move |conn| crate::link::sync::unacked_changes(conn, &site, acked))
                .await?;
            Ok(Json(json!({
                "configured": true,
                "status": status,
                "site_id": site_id,
                "schema_version": app.db.schema_version(),
            })))
        }
        None => Ok(Json(json!({
            "configured": false,
            "message": "no [sync] section in the config: orders arrive through /api/v1/intake/orders",
            "site_id": site_id,
            "schema_version": app.db.schema_version(),
        }))),
    }
}

/// The live stream of order, stock, device and sync changes (Server-Sent Events). Each event
/// carries its seq as the SSE id. The first event, `hello`, carries the current seq; a client
/// that reconnects with `Last-Event-ID` (browsers send it themselves; `?last_event_id=` works
/// too) first gets the events it missed, or `reset` when some are gone and it must reload.
pub async fn events(
    State(app): State<Arc<App>>,
    _staff: Staff,
    headers: HeaderMap,
    uri: Uri,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            uri.query().and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("last_event_id="))
                    .map(str::to_owned)
            })
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Subscribed before the ring is read: an event published in between is in both, and the
    // replayed seqs filter it out of the live part.
    let receiver = app.hub.subscribe();
    let mut first =
        vec![SseEvent::default().event("hello").data(
            json!({ "seq": app.hub.current_seq(), "resumed": last_seen.is_some() }).to_string(),
        )];
    let mut replayed = HashSet::new();
    if let Some(last) = last_seen {
        match app.hub.since(last) {
            Resume::Replay(missed) => {
                for event in &missed {
                    replayed.insert(event.seq());
                    first.push(sse_event(event));
                }
            }
            Resume::Reload => first.push(SseEvent::default().event("reset").data("{}")),
        }
    }
    let guard = app.metrics.stream_client();
    let shutdown = app.shutdown.clone();
    let stream = futures::stream::unfold(
        (first.into_iter(), replayed, receiver, shutdown, guard),
        |(mut first, replayed, mut receiver, shutdown, guard)| async move {
            if let Some(event) = first.next() {
                return Some((Ok(event), (first, replayed, receiver, shutdown, guard)));
            }
            let event = loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    next = receiver.recv() => next,
                };
                match next {
                    Ok(event) if replayed.contains(&event.seq()) => {}
                    Ok(event) => break sse_event(&event),
                    Err(RecvError::Lagged(missed)) => {
                        break SseEvent::default()
                            .event("lagged")
                            .data(json!({ "missed": missed }).to_string());
                    }
                    Err(RecvError::Closed) => return None,
                }
            };
            Some((Ok(event), (first, replayed, receiver, shutdown, guard)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn sse_event(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event)
        .unwrap_or_else(|e| json!({ "type": "error", "message": e.to_string() }).to_string());
    SseEvent::default()
        .event(event.name())
        .id(event.seq().to_string())
        .data(data)
}

/// Writes catalog rows as the cloud would. Only with `dev_endpoints` on (tests, demo).
pub async fn seed_catalog(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(seed): Json<CatalogSeed>,
) -> Reply<SeedSummary> {
    if !app.dev_endpoints {
        return Err(
            Error::not_found("endpoint", "/api/v1/dev/catalog (dev_endpoints is off)").into(),
        );
    }
    staff.require(Role::Manager)?;
    app.require_no_cloud_sync("the catalog")?;
    Ok(Json(
        app.write(&staff.staff_id, move |conn, _| catalog::seed(conn, &seed))
            .await?,
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

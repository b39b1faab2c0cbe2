//! Stock endpoints: catalog lookup, bins and slotting, receive, adjust, count, levels.

use std::sync::Arc;

use axum::extract::State;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::auth::Staff;
use super::error::{ApiError, Json, Path, Query};
use crate::app::App;
use crate::config::VariableMeasureConfig;
use crate::work::barcode;
use crate::work::bins::{self, Bin};
use crate::work::catalog::{self, Scanned};
use crate::work::ctx::Ctx;
use crate::work::staff::Role;
use crate::work::stock::{
    self, Adjust, Count, Level, MoveOutcome, Receive, ShelfProduct, StockReport,
};

type Reply<T> = Result<Json<T>, ApiError>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    code: String,
}

/// What a scanned code is (GTIN or variable-measure).
pub async fn lookup(
    State(app): State<Arc<App>>,
    _staff: Staff,
    Query(query): Query<LookupQuery>,
) -> Reply<Scanned> {
    let event = barcode::decode_entered(&query.code, &app.layout)?;
    Ok(Json(
        app.read(move |conn| catalog::resolve(conn, &event)).await?,
    ))
}

/// The products on the shelves with their stock (goods in, substitutions).
pub async fn products(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Vec<ShelfProduct>> {
    Ok(Json(app.read(stock::shelf).await?))
}

pub async fn bins(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Vec<Bin>> {
    Ok(Json(app.read(bins::list).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinBody {
    #[serde(default)]
    aisle: String,
    #[serde(default)]
    bay: String,
    #[serde(default)]
    shelf: String,
    pick_seq: i64,
}

pub async fn put_bin(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Json(body): Json<BinBody>,
) -> Reply<Bin> {
    staff.require(Role::Lead)?;
    let bin = Bin {
        id,
        aisle: body.aisle,
        bay: body.bay,
        shelf: body.shelf,
        pick_seq: body.pick_seq,
    };
    Ok(Json(
        app.write(&staff.staff_id, move |conn, ctx| {
            bins::upsert(conn, ctx, &bin)
        })
        .await?,
    ))
}

#[derive(Debug, Serialize)]
pub struct Slotted {
    product_id: String,
    bins: Vec<Bin>,
}

pub async fn slot(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Path((product_id, bin_id)): Path<(String, String)>,
) -> Reply<Slotted> {
    staff.require(Role::Lead)?;
    let slotted = app
        .write(&staff.staff_id, move |conn, ctx| {
            bins::slot(conn, ctx, &product_id, &bin_id)?;
            let bins = bins::slots_of(conn, &product_id)?;
            Ok(Slotted { product_id, bins })
        })
        .await?;
    Ok(Json(slotted))
}

pub async fn levels(State(app): State<Arc<App>>, _staff: Staff) -> Reply<Vec<Level>> {
    Ok(Json(app.read(stock::levels).await?))
}

pub async fn report(
    State(app): State<Arc<App>>,
    _staff: Staff,
    Path(product_id): Path<String>,
) -> Reply<StockReport> {
    Ok(Json(
        app.read(move |conn| stock::report(conn, &product_id))
            .await?,
    ))
}

pub async fn receive(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(body): Json<Receive>,
) -> Reply<MoveOutcome> {
    book(&app, &staff.staff_id, body, stock::receive).await
}

pub async fn adjust(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(body): Json<Adjust>,
) -> Reply<MoveOutcome> {
    staff.require(Role::Lead)?;
    book(&app, &staff.staff_id, body, stock::adjust).await
}

pub async fn count(
    State(app): State<Arc<App>>,
    Staff(staff): Staff,
    Json(body): Json<Count>,
) -> Reply<MoveOutcome> {
    staff.require(Role::Lead)?;
    book(&app, &staff.staff_id, body, stock::count).await
}

/// A write of the stock ledger (receive, adjust, count); each reads the codes in its body with
/// the store's variable-measure layout.
type LedgerWrite<B> =
    fn(&Connection, &mut Ctx, &VariableMeasureConfig, &B) -> Result<MoveOutcome, crate::Error>;

/// Books `body` into the stock ledger through `write`, as `actor`.
async fn book<B: Send + 'static>(
    app: &App,
    actor: &str,
    body: B,
    write: LedgerWrite<B>,
) -> Reply<MoveOutcome> {
    let layout = app.layout.clone();
    Ok(Json(
        app.write(actor, move |conn, ctx| write(conn, ctx, &layout, &body))
            .await?,
    ))
}

//! Validation, pricing and the routing decision of a new order. Nothing here writes, so a
//! refused order leaves no trace and a decided one can be recorded before any side effect.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rusqlite::OptionalExtension;

use crate::area::distance_m;
use crate::routing::{self, Candidate, Estimates};

use super::{Customer, Intake, IntakeError, OrderRequest, PlacedOrder, PricedLine};

/// Highest delivery fee in minor units; far above any real fee, well inside `i64`.
const MAX_FEE_MINOR: f64 = 1e12;

fn out_of_range(what: &str) -> IntakeError {
    IntakeError::Invalid(format!(
        "the price of {what} is out of range: the order cannot be priced"
    ))
}

/// Four digits from the thread's CSPRNG (ChaCha, seeded from the operating system).
fn new_delivery_pin() -> String {
    format!("{:04}", rand::rng().random_range(0..10_000_u32))
}

/// What an order to an address would get now ([`Intake::quote`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Quote {
    pub store_id: String,
    pub store_name: String,
    pub eta_minutes: u32,
    pub delivery_fee_minor: i64,
    pub surge_factor: f64,
}

struct Product {
    active: bool,
    unit: String,
    unit_weight_g: i64,
    price_minor: Option<i64>,
    currency: String,
}
impl Intake {
    /// Validates, prices and routes; writes nothing.
    pub(super) async fn decide(
        &self,
        customer: &Customer,
        request: OrderRequest,
    ) -> Result<PlacedOrder, IntakeError> {
        let limits = &self.config;
        let address = &request.address;
        if !(-90.0..=90.0).contains(&address.lat) || !(-180.0..=180.0).contains(&address.lon) {
            return Err(IntakeError::Invalid(
                "address lat/lon is not a position on Earth".into(),
            ));
        }
        if address.text.trim().is_empty() || address.text.len() > 500 {
            return Err(IntakeError::Invalid(
                "address.text must be 1-500 characters".into(),
            ));
        }
        if request.lines.is_empty() || request.lines.len() > limits.max_lines {
            return Err(IntakeError::Invalid(format!(
                "an order has 1-{} lines",
                limits.max_lines
            )));
        }
        if let Some(slot) = &request.delivery_slot
            && slot.len() > 64
        {
            return Err(IntakeError::Invalid(
                "delivery_slot is at most 64 characters".into(),
            ));
        }
        if let Some(code) = &request.coupon
            && (code.is_empty() || code.len() > 32)
        {
            return Err(IntakeError::Invalid(
                "a coupon code is 1-32 characters".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for line in &request.lines {
            if line.product_id.is_empty() || line.product_id.len() > 64 {
                return Err(IntakeError::Invalid(
                    "a product_id is 1-64 characters".into(),
                ));
            }
            if line.qty < 1 || line.qty > limits.max_qty_per_line {
                return Err(IntakeError::Invalid(format!(
                    "qty of {} must be 1-{}",
                    line.product_id, limits.max_qty_per_line
                )));
            }
            if !seen.insert(line.product_id.as_str()) {
                return Err(IntakeError::Invalid(format!(
                    "product {} is on two lines: put the quantity on one",
                    line.product_id
                )));
            }
        }
        let products = self.products(&request).await?;
        let mut lines = Vec::with_capacity(request.lines.len());
        let mut currency = None;
        for (index, line) in request.lines.iter().enumerate() {
            let product = products.get(&line.product_id).ok_or_else(|| {
                IntakeError::Invalid(format!("unknown product {}", line.product_id))
            })?;
            let price = match (product.active, product.price_minor) {
                (true, Some(price)) => price,
                _ => {
                    return Err(IntakeError::Invalid(format!(
                        "product {} is not sold",
                        line.product_id
                    )));
                }
            };
            if *currency.get_or_insert(product.currency.clone()) != product.currency {
                return Err(IntakeError::Invalid(
                    "products are priced in different currencies".into(),
                ));
            }
            // Sold by weight: a piece is priced at the catalog's typical weight; the store
            // weighs it and the payment is adjusted at capture.
            let unit_price_minor = if product.unit == "kg" {
                i64::try_from(i128::from(price) * i128::from(product.unit_weight_g) / 1000)
                    .map_err(|_| out_of_range(&line.product_id))?
            } else {
                price
            };
            if unit_price_minor < 0 {
                return Err(out_of_range(&line.product_id));
            }
            lines.push(PricedLine {
                line_no: i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1),
                product_id: line.product_id.clone(),
                qty: line.qty,
                unit_price_minor,
                line_minor: unit_price_minor
                    .checked_mul(line.qty)
                    .ok_or_else(|| out_of_range(&line.product_id))?,
            });
        }
        let items_minor = lines
            .iter()
            .try_fold(0_i64, |sum, l| sum.checked_add(l.line_minor))
            .ok_or_else(|| out_of_range("the basket"))?;
        let discount_minor = match &request.coupon {
            None => 0,
            Some(code) => {
                let coupon = self
                    .hq
                    .coupon(code)
                    .await?
                    .filter(|c| c.active)
                    .ok_or_else(|| IntakeError::Invalid(format!("coupon {code} is not valid")))?;
                if items_minor < coupon.min_basket_minor {
                    return Err(IntakeError::Invalid(format!(
                        "coupon {code} needs a basket of at least {}",
                        coupon.min_basket_minor
                    )));
                }
                // Coupons from before their amounts were bounded may hold anything.
                let percent = i128::from(items_minor) * i128::from(coupon.percent_off) / 100;
                let off = percent
                    .saturating_add(i128::from(coupon.amount_off_minor))
                    .clamp(0, i128::from(items_minor));
                i64::try_from(off).unwrap_or(items_minor)
            }
        };

        let quantities: Vec<i64> = lines.iter().map(|l| l.qty).collect();
        let product_ids: Vec<String> = lines.iter().map(|l| l.product_id.clone()).collect();
        let (available, backlog, riders) = tokio::try_join!(
            self.projection.available(product_ids.clone()),
            self.projection.backlog(),
            self.projection.riders_seen(crate::clock::rfc3339(
                crate::clock::now() - time::Duration::minutes(10)
            )),
        )?;
        let stores = self.hq.stores();
        let candidates = self.candidates(
            &stores,
            (address.lat, address.lon),
            &product_ids,
            &available,
            &backlog,
            None,
        );
        let estimates = self.estimates();
        let choice = routing::choose(&candidates, &quantities, &estimates)?;
        let (delivery_fee_minor, surge_factor) = self.delivery_fee(&choice, &backlog, &riders)?;
        let total_minor = items_minor
            .checked_sub(discount_minor)
            .and_then(|t| t.checked_add(delivery_fee_minor))
            .ok_or_else(|| out_of_range("the order total"))?;
        let placed = crate::clock::now();
        let sla = stores
            .iter()
            .find(|s| s.profile.id == choice.store_id)
            .map_or(30, |s| s.profile.sla_minutes);
        let promised = placed + time::Duration::minutes(i64::from(sla));
        Ok(PlacedOrder {
            order_id: uuid::Uuid::now_v7().to_string(),
            store_id: choice.store_id,
            status: "ROUTED".into(),
            placed_at: crate::clock::rfc3339(placed),
            promised_at: crate::clock::rfc3339(promised),
            eta_minutes: choice.eta_minutes.ceil() as u32,
            currency: currency.unwrap_or_else(|| "EUR".into()),
            lines,
            items_minor,
            discount_minor,
            delivery_fee_minor,
            surge_factor,
            total_minor,
            customer_first_name: customer.first_name.clone(),
            address: address.text.clone(),
            lat: address.lat,
            lon: address.lon,
            delivery_slot: request.delivery_slot,
            contactless: request.contactless,
            payment_method: request.payment.method().to_owned(),
            delivery_pin: (!request.contactless).then(new_delivery_pin),
        })
    }

    /// The delivery fee of an order `choice` routed, and its surge factor: base + distance,
    /// times a surge from the store's demand (its backlog and this order) per rider seen.
    fn delivery_fee(
        &self,
        choice: &routing::Choice,
        backlog: &BTreeMap<String, u32>,
        riders: &BTreeMap<String, u32>,
    ) -> Result<(i64, f64), IntakeError> {
        let demand = f64::from(
            backlog
                .get(&choice.store_id)
                .copied()
                .unwrap_or(0)
                .saturating_add(1),
        );
        let supply = f64::from(riders.get(&choice.store_id).copied().unwrap_or(0));
        let surge_factor = if supply == 0.0 {
            self.config.surge_cap
        } else {
            (demand / supply).clamp(1.0, self.config.surge_cap)
        };
        let surge_factor = (surge_factor * 100.0).round() / 100.0;
        let km = choice.distance_m / 1000.0;
        let fee = (self.config.base_fee_minor as f64 + self.config.fee_per_km_minor as f64 * km)
            * surge_factor;
        // `as` would saturate a huge or NaN fee silently; refuse it instead.
        let fee = fee.round();
        if !(0.0..=MAX_FEE_MINOR).contains(&fee) {
            return Err(out_of_range("the delivery fee"));
        }
        Ok((fee as i64, surge_factor))
    }

    /// What an order to `(lat, lon)` would get now, before there is a basket: the store that
    /// would take it (as routing chooses for an order whose lines every store has), the fee
    /// and the ETA. Writes nothing; `Err` says why nobody can deliver there now.
    pub async fn quote(&self, lat: f64, lon: f64) -> Result<Quote, IntakeError> {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(IntakeError::Invalid(
                "the address's position is not on the Earth".into(),
            ));
        }
        let (backlog, riders) = tokio::try_join!(
            self.projection.backlog(),
            self.projection.riders_seen(crate::clock::rfc3339(
                crate::clock::now() - time::Duration::minutes(10)
            )),
        )?;
        let stores = self.hq.stores();
        let candidates =
            self.candidates(&stores, (lat, lon), &[], &BTreeMap::new(), &backlog, None);
        let choice = routing::choose(&candidates, &[], &self.estimates())?;
        let (delivery_fee_minor, surge_factor) = self.delivery_fee(&choice, &backlog, &riders)?;
        let store_name = stores
            .iter()
            .find(|s| s.profile.id == choice.store_id)
            .map(|s| s.profile.name.clone())
            .unwrap_or_default();
        Ok(Quote {
            store_id: choice.store_id,
            store_name,
            eta_minutes: choice.eta_minutes.ceil() as u32,
            delivery_fee_minor,
            surge_factor,
        })
    }

    /// What routing needs to know of every profiled store (but `except`) for an address.
    pub(super) fn candidates(
        &self,
        stores: &[crate::hq::RoutableStore],
        (lat, lon): (f64, f64),
        product_ids: &[String],
        available: &BTreeMap<(String, String), i64>,
        backlog: &BTreeMap<String, u32>,
        except: Option<&str>,
    ) -> Vec<Candidate> {
        let now_unix = crate::clock::now().unix_timestamp();
        let grace = Duration::from_millis(self.config.offline_grace_ms);
        stores
            .iter()
            .filter(|s| except != Some(s.profile.id.as_str()))
            .map(|s| {
                let p = &s.profile;
                Candidate {
                    store_id: p.id.clone(),
                    in_area: s.area.contains(lat, lon),
                    distance_m: distance_m((p.lat, p.lon), (lat, lon)),
                    max_radius_m: p.max_radius_m,
                    open: p.hours.is_open(now_unix),
                    paused: p.paused,
                    online: self.liveness.online(&p.id, grace),
                    backlog: backlog.get(&p.id).copied().unwrap_or(0),
                    capacity: p.capacity,
                    sla_minutes: p.sla_minutes,
                    available: product_ids
                        .iter()
                        .map(|product| {
                            available
                                .get(&(p.id.clone(), product.clone()))
                                .copied()
                                .unwrap_or(0)
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub(super) fn estimates(&self) -> Estimates {
        Estimates {
            prep_minutes: self.config.prep_minutes,
            minutes_per_queued_order: self.config.minutes_per_queued_order,
            speed_m_per_min: self.config.rider_speed_kmh * 1000.0 / 60.0,
        }
    }

    async fn products(
        &self,
        request: &OrderRequest,
    ) -> Result<BTreeMap<String, Product>, IntakeError> {
        let ids: Vec<String> = request.lines.iter().map(|l| l.product_id.clone()).collect();
        Ok(self
            .stores
            .catalog()
            .read(move |conn| -> Result<_, flashkart_sync::Error> {
                let mut stmt = conn.prepare_cached(
                    "SELECT p.active, p.unit, p.unit_weight_g, pr.unit_price_minor, pr.currency
                     FROM products p LEFT JOIN prices pr ON pr.product_id = p.id WHERE p.id = ?1",
                )?;
                let mut out = BTreeMap::new();
                for id in ids {
                    let product = stmt
                        .query_row([&id], |row| {
                            Ok(Product {
                                active: row.get(0)?,
                                unit: row.get(1)?,
                                unit_weight_g: row.get(2)?,
                                price_minor: row.get(3)?,
                                currency: row
                                    .get::<_, Option<String>>(4)?
                                    .unwrap_or_else(|| "EUR".into()),
                            })
                        })
                        .optional()?;
                    if let Some(product) = product {
                        out.insert(id, product);
                    }
                }
                Ok(out)
            })
            .await?)
    }
}

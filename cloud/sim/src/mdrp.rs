//! Reader for Meal Delivery Routing Problem instance folders (the Grubhub instances: tab-
//! separated `orders.txt`, `couriers.txt`, `restaurants.txt`, `instance_parameters.txt`), so the
//! dispatcher can be replayed against a published benchmark. Malformed input is an error
//! naming the file, line and field, never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use flashkart_cloud::dispatch::travel::Point;

const ORDERS: &str = "orders.txt";
const COURIERS: &str = "couriers.txt";
const RESTAURANTS: &str = "restaurants.txt";
const PARAMETERS: &str = "instance_parameters.txt";

const ORDERS_HEADER: &[&str] = &[
    "order",
    "x",
    "y",
    "placement_time",
    "restaurant",
    "ready_time",
];
const COURIERS_HEADER: &[&str] = &["courier", "x", "y", "on_time", "off_time"];
const RESTAURANTS_HEADER: &[&str] = &["restaurant", "x", "y"];
const PARAMETERS_HEADER: &[&str] = &[
    "meters_per_minute",
    "pickup service minutes",
    "dropoff service minutes",
    "target click-to-door",
    "maximum click-to-door",
    "pay per order",
    "guaranteed pay per hour",
];

#[derive(Debug, thiserror::Error)]
pub enum MdrpError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: empty, expected the header `{expected}`")]
    Empty {
        file: &'static str,
        expected: String,
    },
    #[error("{file}: header is `{found}`, expected `{expected}`")]
    Header {
        file: &'static str,
        found: String,
        expected: String,
    },
    #[error("{file} line {line}: {found} fields, expected {expected}")]
    FieldCount {
        file: &'static str,
        line: usize,
        found: usize,
        expected: usize,
    },
    #[error("{file} line {line}: {column} `{value}` is not a finite number")]
    Number {
        file: &'static str,
        line: usize,
        column: &'static str,
        value: String,
    },
    #[error("{file} line {line}: `{name}` appears twice")]
    Duplicate {
        file: &'static str,
        line: usize,
        name: String,
    },
    #[error("{file} line {line}: unknown restaurant `{name}`")]
    UnknownRestaurant {
        file: &'static str,
        line: usize,
        name: String,
    },
    #[error("{file} line {line}: {reason}")]
    Invalid {
        file: &'static str,
        line: usize,
        reason: &'static str,
    },
    #[error("{file}: no rows")]
    NoRows { file: &'static str },
}

/// `instance_parameters.txt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    pub metres_per_minute: f64,
    pub pickup_service: f64,
    pub dropoff_service: f64,
    pub target_click_to_door: f64,
    pub max_click_to_door: f64,
    pub pay_per_order: f64,
    pub pay_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Restaurant {
    pub name: String,
    pub position: Point,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Courier {
    pub name: String,
    pub start: Point,
    pub on_time: f64,
    pub off_time: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceOrder {
    pub name: String,
    pub dropoff: Point,
    pub placed_at: f64,
    /// Index into [`Instance::restaurants`].
    pub restaurant: usize,
    pub ready_at: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    pub parameters: Parameters,
    pub restaurants: Vec<Restaurant>,
    pub couriers: Vec<Courier>,
    pub orders: Vec<InstanceOrder>,
}

/// The four files' contents.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub orders: &'a str,
    pub couriers: &'a str,
    pub restaurants: &'a str,
    pub parameters: &'a str,
}

impl Instance {
    /// Reads the instance folder `dir`; the instance is named after the folder.
    pub fn load(dir: &Path) -> Result<Self, MdrpError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| MdrpError::Io { path, source })
        };
        let (orders, couriers, restaurants, parameters) = (
            read(ORDERS)?,
            read(COURIERS)?,
            read(RESTAURANTS)?,
            read(PARAMETERS)?,
        );
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::parse(
            name,
            Sources {
                orders: &orders,
                couriers: &couriers,
                restaurants: &restaurants,
                parameters: &parameters,
            },
        )
    }

    pub fn parse(name: String, sources: Sources<'_>) -> Result<Self, MdrpError> {
        let parameters = parse_parameters(sources.parameters)?;
        let mut restaurant_index = HashMap::new();
        let mut restaurants = Vec::new();
        for row in rows(RESTAURANTS, sources.restaurants, RESTAURANTS_HEADER)? {
            let row = row?;
            if restaurant_index
                .insert(row.text(0).to_owned(), restaurants.len())
                .is_some()
            {
                return Err(row.duplicate());
            }
            restaurants.push(Restaurant {
                name: row.text(0).to_owned(),
                position: Point::new(row.number(1)?, row.number(2)?),
            });
        }
        let mut courier_names = HashMap::new();
        let mut couriers = Vec::new();
        for row in rows(COURIERS, sources.couriers, COURIERS_HEADER)? {
            let row = row?;
            if courier_names.insert(row.text(0).to_owned(), ()).is_some() {
                return Err(row.duplicate());
            }
            let (on_time, off_time) = (row.number(3)?, row.number(4)?);
            if off_time < on_time {
                return Err(row.invalid("off_time is before on_time"));
            }
            couriers.push(Courier {
                name: row.text(0).to_owned(),
                start: Point::new(row.number(1)?, row.number(2)?),
                on_time,
                off_time,
            });
        }
        let mut order_names = HashMap::new();
        let mut orders = Vec::new();
        for row in rows(ORDERS, sources.orders, ORDERS_HEADER)? {
            let row = row?;
            if order_names.insert(row.text(0).to_owned(), ()).is_some() {
                return Err(row.duplicate());
            }
            let restaurant =
                *restaurant_index
                    .get(row.text(4))
                    .ok_or_else(|| MdrpError::UnknownRestaurant {
                        file: row.file,
                        line: row.line,
                        name: row.text(4).to_owned(),
                    })?;
            let (placed_at, ready_at) = (row.number(3)?, row.number(5)?);
            if ready_at < placed_at {
                return Err(row.invalid("ready_time is before placement_time"));
            }
            orders.push(InstanceOrder {
                name: row.text(0).to_owned(),
                dropoff: Point::new(row.number(1)?, row.number(2)?),
                placed_at,
                restaurant,
                ready_at,
            });
        }
        Ok(Self {
            name,
            parameters,
            restaurants,
            couriers,
            orders,
        })
    }
}

fn parse_parameters(text: &str) -> Result<Parameters, MdrpError> {
    let mut all = rows(PARAMETERS, text, PARAMETERS_HEADER)?;
    let row = all.next().ok_or(MdrpError::NoRows { file: PARAMETERS })??;
    let parameters = Parameters {
        metres_per_minute: row.number(0)?,
        pickup_service: row.number(1)?,
        dropoff_service: row.number(2)?,
        target_click_to_door: row.number(3)?,
        max_click_to_door: row.number(4)?,
        pay_per_order: row.number(5)?,
        pay_per_hour: row.number(6)?,
    };
    if parameters.metres_per_minute <= 0.0 {
        return Err(row.invalid("meters_per_minute must be positive"));
    }
    if parameters.pickup_service < 0.0 || parameters.dropoff_service < 0.0 {
        return Err(row.invalid("service minutes must not be negative"));
    }
    Ok(parameters)
}

/// One data line, already split into the header's number of fields.
struct Row<'a> {
    file: &'static str,
    line: usize,
    fields: Vec<&'a str>,
    header: &'static [&'static str],
}

impl Row<'_> {
    fn text(&self, column: usize) -> &str {
        self.fields.get(column).copied().unwrap_or_default()
    }

    fn number(&self, column: usize) -> Result<f64, MdrpError> {
        let value = self.text(column);
        value
            .parse::<f64>()
            .ok()
            .filter(|number| number.is_finite())
            .ok_or_else(|| MdrpError::Number {
                file: self.file,
                line: self.line,
                column: self.header.get(column).copied().unwrap_or("field"),
                value: value.to_owned(),
            })
    }

    fn duplicate(&self) -> MdrpError {
        MdrpError::Duplicate {
            file: self.file,
            line: self.line,
            name: self.text(0).to_owned(),
        }
    }

    fn invalid(&self, reason: &'static str) -> MdrpError {
        MdrpError::Invalid {
            file: self.file,
            line: self.line,
            reason,
        }
    }
}

/// Checks the header and yields the data lines (blank lines skipped), numbered from 1 at the
/// header as an editor shows them.
fn rows<'a>(
    file: &'static str,
    text: &'a str,
    header: &'static [&'static str],
) -> Result<impl Iterator<Item = Result<Row<'a>, MdrpError>>, MdrpError> {
    let mut lines = text.lines().enumerate();
    let expected = header.join("\t");
    let (_, first) = lines.next().ok_or_else(|| MdrpError::Empty {
        file,
        expected: expected.clone(),
    })?;
    let found: Vec<&str> = first.split('\t').map(str::trim).collect();
    if found != header {
        return Err(MdrpError::Header {
            file,
            found: first.trim_end().to_owned(),
            expected,
        });
    }
    Ok(lines
        .filter(|(_, line)| !line.trim().is_empty())
        .map(move |(number, line)| {
            let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
            if fields.len() != header.len() {
                return Err(MdrpError::FieldCount {
                    file,
                    line: number + 1,
                    found: fields.len(),
                    expected: header.len(),
                });
            }
            Ok(Row {
                file,
                line: number + 1,
                fields,
                header,
            })
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMETERS_TEXT: &str = "meters_per_minute\tpickup service minutes\tdropoff service minutes\ttarget click-to-door\tmaximum click-to-door\tpay per order\tguaranteed pay per hour\n320\t4\t4\t40\t90\t10\t15\n";
    const RESTAURANTS_TEXT: &str = "restaurant\tx\ty\nr1\t0\t0\nr2\t1000\t0\n";
    const COURIERS_TEXT: &str = "courier\tx\ty\ton_time\toff_time\nc1\t10\t10\t0\t90\n";
    const ORDERS_TEXT: &str =
        "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t500\t0\t5\tr2\t15\n";

    fn parse(orders: &str, couriers: &str, restaurants: &str) -> Result<Instance, MdrpError> {
        Instance::parse(
            "test".to_owned(),
            Sources {
                orders,
                couriers,
                restaurants,
                parameters: PARAMETERS_TEXT,
            },
        )
    }

    #[test]
    fn parses_a_well_formed_instance() -> Result<(), MdrpError> {
        let instance = parse(ORDERS_TEXT, COURIERS_TEXT, RESTAURANTS_TEXT)?;
        assert_eq!(instance.parameters.metres_per_minute, 320.0);
        assert_eq!(instance.orders[0].restaurant, 1);
        assert_eq!(instance.couriers[0].off_time, 90.0);
        Ok(())
    }

    #[test]
    fn refuses_malformed_files_with_a_clear_error() {
        let bad_number =
            "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t500\t0\tsoon\tr2\t15\n";
        let message = parse(bad_number, COURIERS_TEXT, RESTAURANTS_TEXT)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("orders.txt line 2: placement_time `soon` is not a finite number")
        );

        let short = "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t500\t0\n";
        assert!(matches!(
            parse(short, COURIERS_TEXT, RESTAURANTS_TEXT),
            Err(MdrpError::FieldCount {
                line: 2,
                found: 3,
                expected: 6,
                ..
            })
        ));

        let unknown =
            "order\tx\ty\tplacement_time\trestaurant\tready_time\no1\t500\t0\t5\tr9\t15\n";
        assert!(matches!(
            parse(unknown, COURIERS_TEXT, RESTAURANTS_TEXT),
            Err(MdrpError::UnknownRestaurant { .. })
        ));

        assert!(matches!(
            parse(ORDERS_TEXT, "courier\tx\ty\n", RESTAURANTS_TEXT),
            Err(MdrpError::Header {
                file: "couriers.txt",
                ..
            })
        ));
        assert!(matches!(
            parse(ORDERS_TEXT, COURIERS_TEXT, ""),
            Err(MdrpError::Empty { .. })
        ));
        let backwards = "courier\tx\ty\ton_time\toff_time\nc1\t10\t10\t90\t0\n";
        assert!(matches!(
            parse(ORDERS_TEXT, backwards, RESTAURANTS_TEXT),
            Err(MdrpError::Invalid { line: 2, .. })
        ));
    }

    #[test]
    fn a_missing_folder_is_an_io_error() {
        assert!(matches!(
            Instance::load(Path::new("/nonexistent/mdrp/instance")),
            Err(MdrpError::Io { .. })
        ));
    }
}

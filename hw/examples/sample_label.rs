//! Prints the ZPL of a sample bag label (used by scripts/verify-zpl.sh).

use flashkart_hw::printer::BagLabel;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let order_id = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "FK-000123".into());
    let label = BagLabel {
        store_name: "FlashKart Indiranagar".into(),
        handoff_code: format!("FKH:{order_id}:1:9f2a"),
        order_id,
        bag: 1,
        bags: 2,
        customer_first_name: "José".into(),
        delivery_slot: "18:00-18:30".into(),
    };
    print!("{}", label.to_zpl()?);
    Ok(())
}

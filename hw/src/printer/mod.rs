//! Label and receipt printers: ZPL II bag labels, ESC/POS receipts, status
//! queries before and after each job, and a job queue that retries safely and
//! never prints a label twice.

pub mod driver;
pub mod escpos;
pub mod queue;
pub mod status;
pub mod zpl;

pub use driver::{Printer, PrinterConfig, PrinterError, PrinterLanguage};
pub use queue::{JobOutcome, JobQueue, PrintJob};
pub use status::{PrinterStatus, StatusError};
pub use zpl::{BagLabel, LabelError};

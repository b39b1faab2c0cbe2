//! The HTTP plumbing shared by every route: the state handlers get (`state`), who is calling
//! (`auth`), the guard that authenticates before a body is read (`guard`), errors and the
//! extractors whose rejections are those errors (`error`), per-request ids and metrics
//! (`observe`), the sync endpoints, whose bodies are protobuf rather than JSON (`sync`), and the
//! bound on failed secret checks per client address (`throttle`), and the web apps' embedded
//! files with their security headers (`embedded`).
//!
//! The JSON handlers live in `api/` and the route table in `routes.rs`; this module depends on
//! neither, so there is no cycle between the plumbing and what it carries.

pub mod auth;
pub mod embedded;
pub mod error;
pub(crate) mod guard;
pub mod observe;
pub mod state;
pub mod sync;
pub mod throttle;

pub use error::ApiError;
pub use state::AppState;

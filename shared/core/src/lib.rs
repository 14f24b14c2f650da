//! deltadesk's core: the canonical help-desk model, the ports, and the use cases that make up the engine.
//!
//! # Layout
//! - [`model`]: tickets, comments, attachments, users, organizations, groups — no HTTP or cloud types.
//! - [`window`]: delta windows and the watermark timing rules (publication lag, overlap).
//! - [`ports`]: narrow async traits — help-desk source and target, queue, blob store, state store.
//! - [`engine`]: the use cases (`plan_window`, `fetch_page`, `fetch_ticket`, `write_ticket`), run bookkeeping,
//!   reports, `verify`, and the embedded runner that drives them. The Lambda handlers call the same use cases.
//! - [`vocabulary`]: each side's groups, fields, agents…, and the matching behind `deltadesk mapping init`.
//! - [`failpoint`]: named crash points, compiled in only with the `failpoints` feature (fault tests).

pub mod engine;
pub mod failpoint;
pub mod model;
pub mod ports;
pub mod vocabulary;
pub mod window;

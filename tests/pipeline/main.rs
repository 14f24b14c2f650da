//! Whole-pipeline tests: the embedded engine against Zendesk simulators on port 0. Each test names the
//! guarantee it checks (W1–W4 watermark protocol, U1–U5 upsert protocol; see README "Guarantees").

#[cfg(feature = "moto")]
mod aws;
mod bad_input;
mod bulk_import;
#[cfg(feature = "contract")]
mod contract;
#[cfg(feature = "failpoints")]
mod crash;
mod delivery;
mod e2e;
mod freshdesk;
mod freshdesk_faults;
mod soak;
mod source_faults;
#[cfg(feature = "rt")]
mod rt;
mod upsert;
mod vocabulary;
mod watermark;

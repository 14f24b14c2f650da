//! Named crash points for the fault-injection tests, compiled only with the `failpoints` feature.
//!
//! A test arms a point for the engines whose instance name starts with a prefix; when such an engine
//! reaches it, the point either *pauses* forever (the test then tears the process's runtime down: a crash
//! exactly there, with no cleanup code running) or fails the step with an error.

/// Every point the engine has, in the order a ticket meets them.
pub const POINTS: [&str; 7] = [
    "after_page_read",
    "after_blob_staged",
    "during_attachment_upload",
    "after_target_create",
    "after_comment_append",
    "before_watermark_commit",
    "after_watermark_commit",
];

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        Pause,
        Error,
    }

    struct Armed {
        action: Action,
        hits: u64,
    }

    fn registry() -> &'static Mutex<HashMap<(String, String), Armed>> {
        static R: OnceLock<Mutex<HashMap<(String, String), Armed>>> = OnceLock::new();
        R.get_or_init(|| Mutex::new(HashMap::new()))
    }

    /// Arms `point` for engines whose instance starts with `instance_prefix`.
    pub fn arm(point: &str, instance_prefix: &str, action: Action) {
        registry().lock().unwrap_or_else(|e| e.into_inner()).insert((point.into(), instance_prefix.into()), Armed { action, hits: 0 });
    }

    pub fn disarm(point: &str, instance_prefix: &str) {
        registry().lock().unwrap_or_else(|e| e.into_inner()).remove(&(point.into(), instance_prefix.into()));
    }

    /// How often engines under `instance_prefix` reached `point` while it was armed.
    pub fn hits(point: &str, instance_prefix: &str) -> u64 {
        registry().lock().unwrap_or_else(|e| e.into_inner()).get(&(point.into(), instance_prefix.into())).map(|a| a.hits).unwrap_or(0)
    }

    pub async fn hit(point: &str, instance: &str) -> Result<(), String> {
        let action = {
            let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
            r.iter_mut().find(|((p, prefix), _)| p == point && instance.starts_with(prefix.as_str())).map(|(_, a)| {
                a.hits += 1;
                a.action
            })
        };
        match action {
            None => Ok(()),
            Some(Action::Error) => Err(format!("failpoint {point} (injected)")),
            Some(Action::Pause) => std::future::pending().await,
        }
    }
}

#[cfg(feature = "failpoints")]
pub use imp::{arm, disarm, hit, hits, Action};

/// Reaches a crash point: a no-op unless built with `failpoints` and armed for this engine.
#[macro_export]
macro_rules! failpoint {
    ($engine:expr, $point:expr) => {{
        #[cfg(feature = "failpoints")]
        {
            if let Err(e) = $crate::failpoint::hit($point, &$engine.instance).await {
                return Err($crate::engine::EngineError::Busy(e).into());
            }
        }
    }};
}

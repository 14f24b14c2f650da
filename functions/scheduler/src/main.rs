//! scheduler: plans recurring deltas (EventBridge schedule), reruns on alarms (CloudWatch alarm state
//! changes via EventBridge) and on-demand runs. Wiring only; the logic is `deltadesk_serverless::scheduler`.

use std::sync::Arc;

use deltadesk_serverless::context::Context;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    deltadesk_aws::lambda::init_tracing();
    let ctx = Arc::new(Context::new(deltadesk_aws::lambda::backends_from_env().await?));
    run(service_fn(move |event: LambdaEvent<Value>| {
        let ctx = ctx.clone();
        async move { Ok::<Value, Error>(deltadesk_serverless::scheduler::handle(&ctx, &event.payload).await?) }
    }))
    .await
}

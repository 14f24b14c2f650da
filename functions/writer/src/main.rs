//! writer: SQS-triggered; upserts staged tickets into the target, records mappings; the last write of a window commits the watermark.
//! Wiring only; the logic is `deltadesk_serverless::sqs_batch` over the engine's use cases.

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use deltadesk_serverless::context::Context;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    deltadesk_aws::lambda::init_tracing();
    let ctx = Arc::new(Context::new(deltadesk_aws::lambda::backends_from_env().await?));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let ctx = ctx.clone();
        async move {
            let queue = ctx.backends.write_queue.clone();
            let (response, _) = deltadesk_serverless::sqs_batch::handle_sqs_event(&ctx, queue.as_ref(), event.payload).await;
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}

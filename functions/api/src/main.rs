//! api: the trigger API behind API Gateway — migrations, runs, run status and reports, reset to full.
//! Wiring only; the logic is `deltadesk_serverless::api`.

use std::sync::Arc;

use deltadesk_serverless::api::{handle, ApiRequest};
use deltadesk_serverless::context::Context;
use lambda_http::{run, service_fn, Body, Error, Request, RequestExt, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    deltadesk_aws::lambda::init_tracing();
    let ctx = Arc::new(Context::new(deltadesk_aws::lambda::backends_from_env().await?));
    run(service_fn(move |req: Request| {
        let ctx = ctx.clone();
        async move {
            let body = match req.body() {
                Body::Empty => None,
                Body::Text(t) => Some(t.clone()),
                Body::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            };
            // The path without the stage prefix (`/v1`), as the routes are written.
            let request = ApiRequest { method: req.method().to_string(), path: req.raw_http_path().to_string(), body };
            let out = handle(&ctx, &request).await;
            Response::builder()
                .status(out.status)
                .header("content-type", out.content_type())
                .body(Body::Text(out.body.to_string()))
                .map_err(Error::from)
        }
    }))
    .await
}

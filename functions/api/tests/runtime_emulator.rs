//! The real `api` binary under cargo-lambda's Lambda Runtime API emulator, answering API Gateway (REST)
//! events: create and list migrations, start a run, and a bad request as problem+json.

use deltadesk_tests::moto_support::{deploy, moto, start_sims, LambdaEmulator};
use serde_json::{json, Value};

fn request(method: &str, path: &str, body: Option<&str>) -> Value {
    let p = format!("{}/../../tests/fixtures/events/apigw-rest-request.json", env!("CARGO_MANIFEST_DIR"));
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    e["httpMethod"] = method.into();
    e["path"] = path.into();
    e["requestContext"]["httpMethod"] = method.into();
    e["requestContext"]["path"] = format!("/v1{path}").into();
    e["body"] = body.map(Value::from).unwrap_or(Value::Null);
    e
}

fn body(answer: &Value) -> Value {
    serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_binary_answers_api_gateway_events_under_the_runtime_emulator() {
    let d = deploy(5).await;
    let (source, target) = start_sims(2).await;
    let lambda = LambdaEmulator::start(env!("CARGO_BIN_EXE_api"), &d.function_env()).await;
    // The source wants its API token, which lives only in the migration's Secrets Manager secret.
    aws_sdk_secretsmanager::Client::new(&moto().await)
        .create_secret()
        .name(format!("{}viaapi", d.ctx.backends.secret_prefix))
        .secret_string(json!({"SOURCE_TOKEN": "src-t0ken"}).to_string())
        .send()
        .await
        .expect("secret");
    let def = json!({
        "id": "viaapi",
        "source": {"kind": "zendesk", "base_url": source.base_url(), "email": "admin@source.test", "token_env": "SOURCE_TOKEN", "publication_lag_secs": 1},
        "target": {"kind": "zendesk", "base_url": target.base_url(), "publication_lag_secs": 1},
        "overlap_secs": 3
    });
    let created = lambda.invoke(&request("POST", "/migrations", Some(&def.to_string()))).await;
    assert_eq!(created["statusCode"], 201, "{created}");
    let listed = lambda.invoke(&request("GET", "/migrations", None)).await;
    assert_eq!(listed["statusCode"], 200);
    assert_eq!(body(&listed)["migrations"][0]["id"], "viaapi");

    let bad = lambda.invoke(&request("POST", "/migrations", Some("{oops"))).await;
    assert_eq!(bad["statusCode"], 400, "{bad}");
    let ct = bad["headers"]["content-type"].as_str().or_else(|| bad["multiValueHeaders"]["content-type"][0].as_str());
    assert_eq!(ct, Some("application/problem+json"), "{bad}");
    assert!(body(&bad)["detail"].as_str().unwrap_or_default().contains("body"), "{bad}");

    let run = lambda.invoke(&request("POST", "/migrations/viaapi/runs", Some(r#"{"kind":"full"}"#))).await;
    assert_eq!(run["statusCode"], 202, "{run}");
    let run_id = body(&run)["run_id"].as_str().unwrap().to_string();
    let status = lambda.invoke(&request("GET", &format!("/migrations/viaapi/runs/{run_id}"), None)).await;
    assert_eq!(status["statusCode"], 200, "{status}");
    assert_eq!(body(&status)["status"], "open");
}

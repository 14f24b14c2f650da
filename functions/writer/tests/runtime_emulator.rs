//! The real `writer` binary under cargo-lambda's Lambda Runtime API emulator, answering a real SQS event
//! whose messages the fetcher use case staged on moto.

use std::time::Duration;

use deltadesk_serverless::scheduler;
use deltadesk_tests::moto_support::{deploy, register, start_sims, LambdaEmulator};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_writer_binary_answers_an_sqs_event_under_the_runtime_emulator() {
    let d = deploy(5).await;
    let (source, target) = start_sims(3).await;
    register(&d, "emu", &source, &target, 5).await;
    scheduler::handle(&d.ctx, &json!({"action": "run", "migration": "emu", "kind": "full"})).await.expect("plan");
    // The fetcher's work, in process, until the three tickets' writes wait on the write queue.
    let mut batch = 0;
    for _ in 0..50 {
        d.pump(&d.fetch_url, d.ctx.backends.fetch_queue.as_ref(), &mut batch, 0).await;
        if d.ctx.backends.write_queue.depth().await.unwrap().visible >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let event = d.receive_event(&d.write_url).await;
    assert!(!event.records.is_empty(), "no write messages to deliver");

    let lambda = LambdaEmulator::start(env!("CARGO_BIN_EXE_writer"), &d.function_env()).await;
    let answer = lambda.invoke(&serde_json::to_value(&event).unwrap()).await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let written = target.snapshot()["tickets"].as_array().unwrap().len();
    assert_eq!(written, event.records.len(), "each delivered write created one target ticket");

    // A record that is not a deltadesk message is reported as a batch item failure, the rest still done.
    let mut bad = event.clone();
    bad.records.truncate(1);
    bad.records[0].body = Some("{\"type\":\"nonsense\"}".into());
    bad.records[0].message_id = Some("not-ours".into());
    let answer = lambda.invoke(&serde_json::to_value(&bad).unwrap()).await;
    assert_eq!(answer["batchItemFailures"], json!([{"itemIdentifier": "not-ours"}]), "{answer}");
}

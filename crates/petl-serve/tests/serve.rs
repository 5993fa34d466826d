//! `petl serve` end to end on the real MiniLM: mixed-task batches give each task exactly what
//! it gives alone, and every error path answers a 4xx JSON error.

mod common;

use common::{expected, minilm, start, write_task, SENTENCES};
use petl_models::BaseModel;
use petl_serve::client::Client;
use petl_serve::ServeConfig;
use serde_json::json;
use std::time::Duration;

/// Every kind of task: LoRA, IA³, adapters, prefixes (sharing one layout), MAM, sparse diffs,
/// and two that need forwards of their own (BitFit replaces biases; prompts lengthen the input).
const TASKS: [(&str, &str); 11] = [
    ("lora-a", "lora"),
    ("lora-b", "lora"),
    ("ia3", "ia3"),
    ("houlsby", "houlsby"),
    ("pa", "pa-ffn"),
    ("prefix-a", "prefix-flat"),
    ("prefix-b", "prefix-flat"),
    ("diff-a", "sparse-diff"),
    ("diff-b", "sparse-diff"),
    ("bitfit", "bitfit"),
    ("prompt", "prompt"),
];

fn classify(task: &str) -> serde_json::Value {
    json!({"task": task, "inputs": SENTENCES})
}

fn scores(answer: &serde_json::Value) -> Vec<Vec<f32>> {
    answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_task_batches_match_each_task_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (model, encoder) = minilm();
    let mut want = Vec::new();
    for (i, (name, method)) in TASKS.iter().enumerate() {
        let path = write_task(&model, &encoder, dir.path(), name, method, 100 + i as u64);
        want.push(expected(&model, &encoder, &path));
    }
    // Each task really changes the function, differently from every other task, so a row
    // routed to the wrong task's hooks would show.
    for i in 0..want.len() {
        for j in 0..i {
            let d = max_diff(&want[i], &want[j]);
            assert!(d > 1e-3, "{} and {} predict alike ({d})", TASKS[i].0, TASKS[j].0);
        }
    }
    // A long window makes every concurrent request land in one batch.
    let mut config = ServeConfig::new(dir.path().to_path_buf());
    config.batch_window = Duration::from_millis(400);
    config.max_batch_rows = 256;
    let server = start(config).await;
    // Load first, so the batch is not split by loading time.
    let mut c = Client::connect(server.addr).await.unwrap();
    for (name, _) in TASKS {
        let r = c
            .request("POST", &format!("/v1/artifacts/{name}/load"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let answers = futures_join(TASKS.iter().map(|(name, _)| {
        let addr = server.addr;
        async move {
            let mut c = Client::connect(addr).await.unwrap();
            c.post_json("/v1/classify", &classify(name)).await.unwrap()
        }
    }))
    .await;
    for ((name, _), (answer, want)) in TASKS.iter().zip(answers.iter().zip(&want)) {
        assert_eq!(answer.status, 200, "{name}: {}", answer.text());
        let got = scores(&answer.json().unwrap());
        let d = max_diff(&got, want);
        eprintln!("{name}: mixed batch max |Δp| = {d:.2e}");
        assert!(
            d <= 2e-5,
            "{name}: mixed batch differs from the task alone by {d}"
        );
    }
    let (forwards, most_tasks) = server.metrics.forwards();
    eprintln!("{forwards} forwards, at most {most_tasks} tasks in one");
    // 9 tasks share one layout class or the prefix class; BitFit and prompt run alone.
    assert!(
        most_tasks >= 7,
        "no mixed batch formed: at most {most_tasks} tasks per forward"
    );

    // One task at a time takes the merged path (LoRA folded, the diff written into the base),
    // which must give the same answers and leave the base as it was for the next task.
    for ((name, _), want) in TASKS.iter().zip(&want) {
        let r = c.post_json("/v1/classify", &classify(name)).await.unwrap();
        let d = max_diff(&scores(&r.json().unwrap()), want);
        assert!(d <= 2e-5, "{name}: merged single-task path differs by {d}");
    }
    let _ = server.stop.send(());
    server.done.await.unwrap().unwrap();
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn error_of(c: &mut Client, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let r = c
        .request(method, path, Some(body.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("{method} {path} ({} bytes): {e}", body.len()));
    let j = r
        .json()
        .unwrap_or_else(|_| panic!("{path}: not a JSON error: {}", r.text()));
    (
        r.status,
        j["error"]["kind"].as_str().unwrap_or_default().to_string(),
        j["error"]["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model, encoder) = minilm();
    write_task(&model, &encoder, dir.path(), "lora", "lora", 1);
    // An artifact for another base model: the same files with a different fingerprint.
    let other = write_task(&model, &encoder, dir.path(), "other-base", "lora", 2);
    let meta = other.join("artifact.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let fp = model.fingerprint().0.clone();
    std::fs::write(&meta, text.replace(&fp, "0000000000000000")).unwrap();
    // A corrupt artifact.
    let corrupt = write_task(&model, &encoder, dir.path(), "corrupt", "lora", 3);
    std::fs::write(corrupt.join("weights.safetensors"), b"not safetensors").unwrap();

    let mut config = ServeConfig::new(dir.path().to_path_buf());
    config.max_tokens = 16;
    config.max_inputs_per_request = 4;
    let server = start(config).await;
    let mut c = Client::connect(server.addr).await.unwrap();
    let post = "POST";

    let cases: Vec<(&str, String, u16, &str, &str)> = vec![
        (
            "/v1/classify",
            "{\"task\": \"lora\", \"inputs\": [".into(),
            400,
            "bad_request",
            "",
        ),
        (
            "/v1/classify",
            json!({"task": "lora"}).to_string(),
            400,
            "bad_request",
            "inputs",
        ),
        (
            "/v1/classify",
            json!({"task": "lora", "inputs": ["x"], "temperature": 1}).to_string(),
            400,
            "bad_request",
            "temperature",
        ),
        (
            "/v1/classify",
            json!({"task": "lora", "inputs": []}).to_string(),
            400,
            "bad_request",
            "empty",
        ),
        (
            "/v1/classify",
            json!({"task": "nope", "inputs": ["x"]}).to_string(),
            404,
            "unknown_task",
            "nope",
        ),
        (
            "/v1/classify",
            json!({"task": "../lora", "inputs": ["x"]}).to_string(),
            404,
            "unknown_task",
            "",
        ),
        (
            "/v1/classify",
            json!({"task": "lora", "inputs": ["word ".repeat(40)]}).to_string(),
            413,
            "too_large",
            "16 tokens",
        ),
        (
            "/v1/classify",
            json!({"task": "lora", "inputs": ["a", "b", "c", "d", "e"]}).to_string(),
            413,
            "too_large",
            "limit is 4",
        ),
        (
            "/v1/classify",
            json!({"task": "other-base", "inputs": ["x"]}).to_string(),
            422,
            "unloadable_artifact",
            "trained on base model",
        ),
        (
            "/v1/classify",
            json!({"task": "corrupt", "inputs": ["x"]}).to_string(),
            422,
            "unloadable_artifact",
            "corrupt",
        ),
        (
            "/v1/artifacts/other-base/load",
            String::new(),
            422,
            "unloadable_artifact",
            "base model",
        ),
        (
            "/v1/artifacts/nope/unload",
            String::new(),
            404,
            "unknown_task",
            "",
        ),
        (
            "/v1/generate",
            json!({"task": "lora", "prompt": "hi"}).to_string(),
            501,
            "not_available",
            "encoder",
        ),
    ];
    for (path, body, status, kind, words) in cases {
        let (got, got_kind, message) = error_of(&mut c, post, path, &body).await;
        assert_eq!(
            (got, got_kind.as_str()),
            (status, kind),
            "{path} {body}: {message}"
        );
        assert!(
            message.contains(words),
            "{path}: message {message:?} lacks {words:?}"
        );
    }
    // A body over the limit (4 inputs × 64 KiB) is refused before it is parsed.
    let huge = format!(
        "{{\"task\": \"lora\", \"inputs\": [\"{}\"]}}",
        "x".repeat(600_000)
    );
    let mut fresh = Client::connect(server.addr).await.unwrap();
    let (status, kind, _) = error_of(&mut fresh, post, "/v1/classify", &huge).await;
    assert_eq!((status, kind.as_str()), (413, "too_large"));
    // The corrupt artifact's message names the file.
    let (_, _, message) = error_of(&mut c, post, "/v1/artifacts/corrupt/load", "").await;
    assert!(message.contains("weights.safetensors"), "{message}");

    // Truncation on request; the server stays healthy after all of the above.
    let r = c
        .post_json(
            "/v1/classify",
            &json!({"task": "lora", "inputs": ["word ".repeat(40)], "truncate": true}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.get("/health").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["status"], "ok");
    let list = c.get("/v1/artifacts").await.unwrap().json().unwrap();
    let names: Vec<&str> = list["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["corrupt", "lora", "other-base"]);
    let r = c.request(post, "/v1/artifacts/lora/unload", None).await.unwrap();
    assert_eq!(r.json().unwrap()["unloaded"], true);
    let metrics = c.get("/metrics").await.unwrap().text();
    for needle in [
        "petl_requests_total{endpoint=\"classify\",status=\"413\"} 3",
        "petl_requests_total{endpoint=\"classify\",status=\"200\"} 1",
        "petl_request_duration_seconds_bucket{endpoint=\"classify\",le=\"+Inf\"}",
        "petl_batch_rows_count",
        "petl_loaded_artifacts 0",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    let _ = server.stop.send(());
    server.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_and_shutdown_drains_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (model, encoder) = minilm();
    write_task(&model, &encoder, dir.path(), "lora", "lora", 1);
    let mut config = ServeConfig::new(dir.path().to_path_buf());
    config.queue_capacity = 2;
    config.batch_window = Duration::from_millis(300);
    config.max_batch_rows = 1;
    let server = start(config).await;
    let addr = server.addr;
    let requests = || {
        (0..12).map(move |_| async move {
            let mut c = Client::connect(addr).await.unwrap();
            // 16 inputs run as 16 one-row forwards: the worker stays busy while the others
            // arrive, so the two-slot queue fills however fast the machine is.
            c.post_json(
                "/v1/classify",
                &json!({"task": "lora", "inputs": vec!["fine"; 16]}),
            )
            .await
            .map(|r| r.status)
        })
    };
    let statuses: Vec<u16> = futures_join(requests())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let busy = statuses.iter().filter(|&&s| s == 429).count();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!(busy > 0 && ok > 0 && busy + ok == 12, "{statuses:?}");

    // Requests accepted before shutdown are all answered; then the server exits.
    let handles: Vec<_> = requests().map(tokio::spawn).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = server.stop.send(());
    let mut answered = 0;
    for h in handles {
        if let Ok(s) = h.await.unwrap() {
            assert!(s == 200 || s == 429, "status {s} during shutdown");
            answered += usize::from(s == 200);
        }
    }
    assert!(answered > 0);
    tokio::time::timeout(Duration::from_secs(30), server.done)
        .await
        .expect("server did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_tasks_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (model, encoder) = minilm();
    for i in 0..5 {
        write_task(&model, &encoder, dir.path(), &format!("t{i}"), "lora", i);
    }
    let mut config = ServeConfig::new(dir.path().to_path_buf());
    // LoRA r=8 on q,v of MiniLM plus the head: about 0.3 MB each; room for two.
    config.max_loaded_bytes = 700_000;
    let server = start(config).await;
    let mut c = Client::connect(server.addr).await.unwrap();
    for round in 0..2 {
        for i in 0..5 {
            let r = c
                .post_json(
                    "/v1/classify",
                    &json!({"task": format!("t{i}"), "inputs": ["ok"]}),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "round {round} t{i}: {}", r.text());
            let list = c.get("/v1/artifacts").await.unwrap().json().unwrap();
            let loaded: Vec<&str> = list["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["loaded"] == true)
                .map(|a| a["name"].as_str().unwrap())
                .collect();
            assert!(loaded.len() <= 2, "{loaded:?} loaded");
            assert!(loaded.contains(&format!("t{i}").as_str()), "{loaded:?}");
        }
    }
    let _ = server.stop.send(());
    server.done.await.unwrap().unwrap();
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let (model, encoder) = minilm();
    let mut config = ServeConfig::new("/nonexistent/petl-artifacts".into());
    let e = petl_serve::Server::new(model, &encoder, config.clone())
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/petl-artifacts"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    config.artifacts = dir.path().to_path_buf();
    config.max_tokens = 100_000;
    let (model, _) = minilm();
    let e = petl_serve::Server::new(model, &encoder, config).err().unwrap();
    assert!(e.to_string().contains("max_tokens"), "{e}");
}

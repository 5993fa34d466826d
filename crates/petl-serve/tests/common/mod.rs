//! Fixtures: the real MiniLM, task artifacts of every kind with randomised (nonzero) state,
//! and a running server.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use petl_data::{Example, Label, TaskKind, TaskSpec, TextEncoder};
use petl_methods::preset;
use petl_models::BaseModel;
use petl_models::{EncoderModel, ModelDir, Pooling};
use petl_serve::{ServeConfig, Server};
use petl_sparse::{SparseDiff, SparseTensor};
use petl_train::TaskModel;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const SENTENCES: [&str; 4] = [
    "a gripping, beautifully acted film",
    "the plot was dull and the ending made no sense",
    "",
    "an ambitious mess that never quite works, though the score is lovely",
];

pub fn minilm_dir() -> PathBuf {
    petl_hub::ensure("minilm").expect("fetch all-MiniLM-L6-v2")
}

pub fn minilm() -> (EncoderModel, TextEncoder) {
    let dir = ModelDir::open(minilm_dir()).unwrap();
    let model = EncoderModel::load(&dir, &Device::Cpu).unwrap();
    let encoder = TextEncoder::from_file(&dir.tokenizer_path().unwrap(), 128).unwrap();
    (model, encoder)
}

pub fn spec() -> TaskSpec {
    TaskSpec::default_for(
        "sentiment",
        TaskKind::Classification {
            labels: vec!["negative".into(), "positive".into()],
        },
    )
}

/// Moves every trainable tensor by seeded noise, so zero-initialised parts (LoRA's B, adapter
/// up-projections) act and a wrong mapping cannot hide.
fn perturb(tm: &TaskModel<'_>, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (_, var) in tm.params().iter() {
        let t = var.as_tensor();
        let noise: Vec<f32> = (0..t.elem_count())
            .map(|_| rng.random_range(-0.08..0.08))
            .collect();
        let noise = Tensor::from_vec(noise, t.shape(), t.device()).unwrap();
        var.set(&(t + noise).unwrap()).unwrap();
    }
}

/// A random sparse diff touching every kind of base tensor: embedding rows the test sentences
/// use, positions, LayerNorms, attention and FFN weights and biases, the pooler.
pub fn random_diff(model: &EncoderModel, encoder: &TextEncoder, seed: u64) -> SparseDiff {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids = BTreeSet::new();
    for s in SENTENCES {
        let e = encoder
            .encode(&Example {
                text_a: s.into(),
                text_b: None,
                label: Label::Unlabeled,
            })
            .unwrap();
        ids.extend(e.input_ids);
    }
    let base = model.base_params();
    let mut diff = SparseDiff::new();
    let names = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.0.attention.self.value.bias",
        "encoder.layer.2.attention.output.LayerNorm.weight",
        "encoder.layer.3.intermediate.dense.weight",
        "encoder.layer.4.output.dense.weight",
        "encoder.layer.5.output.LayerNorm.bias",
        "pooler.dense.weight",
    ];
    for name in names {
        let dims = base[name].dims().to_vec();
        let numel: usize = dims.iter().product();
        let mut positions = BTreeSet::new();
        if name == "embeddings.word_embeddings.weight" {
            let d = dims[1];
            for &id in &ids {
                for _ in 0..3 {
                    positions.insert(id as u64 * d as u64 + rng.random_range(0..d as u64));
                }
            }
        } else {
            for _ in 0..(numel / 200).max(3) {
                positions.insert(rng.random_range(0..numel as u64));
            }
        }
        let positions: Vec<u64> = positions.into_iter().collect();
        let values = positions.iter().map(|_| rng.random_range(-0.3f32..0.3)).collect();
        diff.insert(name, SparseTensor::new(dims, positions, values).unwrap());
    }
    diff
}

/// Writes task `name` with method `method` (a preset) into `dir`; `sparse-diff` gets a random
/// diff.
pub fn write_task(
    model: &EncoderModel,
    encoder: &TextEncoder,
    dir: &Path,
    name: &str,
    method: &str,
    seed: u64,
) -> PathBuf {
    let method = preset(method).unwrap();
    let diff = (method.name == "sparse-diff").then(|| random_diff(model, encoder, seed));
    let tm = TaskModel::with_sparse_diff(model, &method, spec(), Pooling::Cls, seed, diff.as_ref()).unwrap();
    perturb(&tm, seed);
    let out = dir.join(name);
    tm.save_artifact(&out).unwrap();
    out
}

/// Each task's probabilities for [`SENTENCES`], computed by loading its artifact on its own
/// (sparse diffs applied densely): the reference the server must match.
pub fn expected(model: &EncoderModel, encoder: &TextEncoder, dir: &Path) -> Vec<Vec<f32>> {
    let tm = TaskModel::from_artifact(model, dir).unwrap();
    let encoded: Vec<_> = SENTENCES
        .iter()
        .map(|s| {
            encoder
                .encode(&Example {
                    text_a: s.to_string(),
                    text_b: None,
                    label: Label::Unlabeled,
                })
                .unwrap()
        })
        .collect();
    tm.predict(&encoded, 8, encoder.pad_id())
        .unwrap()
        .into_iter()
        .map(|p| p.scores)
        .collect()
}

/// A server on a free loopback port; `stop` ends it and `done` reports its exit.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics: std::sync::Arc<petl_serve::Metrics>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub done: tokio::task::JoinHandle<Result<(), petl_serve::StartError>>,
}

pub async fn start(config: ServeConfig) -> Running {
    let (model, encoder) = minilm();
    let server = Server::new(model, &encoder, config).unwrap();
    let metrics = server.metrics();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(listener, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        metrics,
        stop,
        done,
    }
}

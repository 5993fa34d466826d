//! Times the train step of one method on MiniLM (batch 16, seq 128) for profiling the engine:
//! `cargo run --release -p petl-train --example step_profile -- lora 5`.
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_models::{EncoderModel, ForwardCtx, ModelDir, Pooling};
use petl_ops::DropoutRng;
use petl_train::{AdamW, AdamWConfig, TaskModel};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    petl_ops::reuse_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let method = args.get(1).map(String::as_str).unwrap_or("lora");
    let steps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let batch: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let dir = petl_hub::ensure("minilm")?;
    let model = EncoderModel::load(&ModelDir::open(&dir)?, &candle_core::Device::Cpu)?;
    let spec = TaskSpec::default_for(
        "b",
        TaskKind::Classification {
            labels: vec!["a".into(), "b".into()],
        },
    );
    let tm = TaskModel::new(&model, &petl_methods::preset(method)?, spec, Pooling::Cls, 1)?;
    let items: Vec<Encoded> = (0..batch)
        .map(|i| Encoded {
            input_ids: (0..128)
                .map(|j| {
                    if j == 0 {
                        101
                    } else {
                        1000 + ((i * 131 + j * 7) % 20000) as u32
                    }
                })
                .collect(),
            type_ids: vec![0; 128],
            label: Label::Class(i % 2),
        })
        .collect();
    let refs: Vec<&Encoded> = items.iter().collect();
    let b = collate(&refs, 0)?;
    let mut opt = AdamW::new(tm.params().iter(), AdamWConfig::default())?;
    let mut ctx = ForwardCtx::train(DropoutRng::new(1));
    for s in 0..steps {
        let t = Instant::now();
        let loss = tm.loss(&b, &mut ctx)?;
        let t_f = t.elapsed();
        let store = loss.backward()?;
        let t_b = t.elapsed();
        let mut grads = BTreeMap::new();
        for (name, var) in tm.params().iter() {
            if let Some(g) = store.get(var) {
                grads.insert(name.to_string(), g.clone());
            }
        }
        drop(store);
        opt.step(&grads, 1e-4)?;
        println!(
            "step {s}: fwd {:.0} ms, bwd {:.0} ms, total {:.0} ms, loss {:.4}",
            t_f.as_secs_f64() * 1e3,
            (t_b - t_f).as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3,
            loss.to_scalar::<f32>()?
        );
    }
    Ok(())
}

//! Parameter accounting against the budgets He et al. print: MAM is 6.7% (27.4M) of BART-large,
//! and the GLUE configurations are about 0.5% of RoBERTa-base. The configs are the models'
//! `config.json` files as published on the Hugging Face hub.

use petl_methods::{bottleneck_for_budget, preset};
use petl_models::ModelShape;
use std::path::Path;

fn shape(name: &str) -> ModelShape {
    ModelShape::from_config_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/configs")
            .join(name),
    )
    .unwrap()
}

fn percent(stored: usize, shape: &ModelShape) -> f64 {
    100.0 * stored as f64 / shape.base_params as f64
}

#[test]
fn mam_is_six_point_seven_percent_of_bart_large() {
    let bart = shape("bart-large.json");
    assert_eq!(bart.base_params, 406_291_456);
    let mam = preset("mam").unwrap().count(&bart);
    // Prefix: 2·30·1024 per attention × 36 attentions; PA: (2·1024·512 + 512 + 1024) × 24 FFNs.
    assert_eq!(
        mam.stored,
        2 * 30 * 1024 * 36 + (2 * 1024 * 512 + 512 + 1024) * 24
    );
    assert_eq!(format!("{:.1}M", mam.stored as f64 / 1e6), "27.4M");
    assert_eq!(format!("{:.1}", percent(mam.stored, &bart)), "6.7");
    // The prefix generators (one per attention kind) train but are not stored.
    assert!(mam.trainable > 3 * mam.stored);
    let prefix = preset("prefix").unwrap().count(&bart);
    assert_eq!(format!("{:.1}", percent(prefix.stored, &bart)), "3.6");
}

#[test]
fn glue_budgets_are_half_a_percent_of_roberta_base() {
    let roberta = shape("roberta-base.json");
    assert_eq!(roberta.base_params, 124_645_632);
    for (name, expected) in [("mam-glue", 0.48), ("lora", 0.47)] {
        let c = preset(name).unwrap().count(&roberta);
        assert!((percent(c.stored, &roberta) - expected).abs() < 0.005, "{name}");
    }
    let (r, m) = bottleneck_for_budget(&preset("lora").unwrap(), &roberta, 0.005).unwrap();
    assert_eq!(r, 17);
    assert!((percent(m.count(&roberta).stored, &roberta) - 0.5).abs() < 0.01);
    let (l, _) = bottleneck_for_budget(&preset("prefix").unwrap(), &roberta, 0.005).unwrap();
    assert_eq!(l, 34);
    assert_eq!(
        bottleneck_for_budget(&preset("bitfit").unwrap(), &roberta, 0.005),
        None
    );
}

/// Parameters of one prefix generator: `Embedding(l, d) → Linear(d, h) → tanh →
/// Linear(h, n·2·d)` over `n` layers.
fn generator(l: usize, d: usize, n: usize, h: usize) -> usize {
    l * d + (h * d + h) + (n * 2 * d) * h + n * 2 * d
}

#[test]
fn an_encoder_decoder_trains_one_prefix_generator_per_attention_kind() {
    let bart = shape("bart-large.json");
    let prefix = preset("prefix").unwrap().count(&bart);
    // He et al.'s `wte_enc`, `wte` and `wte2` networks, 12 layers each, l = 200, mid_dim 800.
    assert_eq!(prefix.trainable, 3 * generator(200, 1024, 12, 800));
    assert_eq!(prefix.stored, 2 * 200 * 1024 * 36);
    // On RoBERTa-base their code builds all three too (jxhe/unify-parameter-efficient-tuning
    // issue #15): 46,783,200 trainable parameters, 16,000,160 without the two generators an
    // encoder does not use. The difference is two of petl's generators for the GLUE MAM
    // prefix (l = 16, mid_dim 800, 12 layers of width 768), which is all petl builds there.
    let roberta = shape("roberta-base.json");
    let mam = preset("mam-glue").unwrap().count(&roberta);
    assert_eq!(
        mam.trainable - mam.stored,
        generator(16, 768, 12, 800) - 2 * 16 * 768 * 12
    );
    assert_eq!(46_783_200 - 16_000_160, 2 * generator(16, 768, 12, 800));
}

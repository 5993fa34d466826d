//! peft adapter directory → petl task model on a loaded base.

use crate::config::{AdapterConfig, MethodConfig, PeftType, CONFIG_FILE, PICKLE_FILE, WEIGHTS_FILE};
use crate::names::{
    head_name, ia3_name, lora_name, parse_site, prefix_names, prompt_name, PROMPT_EMBEDDINGS, PROMPT_ROOT,
    TUNER_ROOT,
};
use crate::{PeftError, Result};
use candle_core::{DType, Tensor};
use petl_data::{TaskKind, TaskSpec};
use petl_methods::{Composition, DeltaSpec, Form, InitScheme, Layers, Method, PrefixActivation, Scale, Site};
use petl_models::BaseModel;
use petl_models::{EncoderModel, Pooling, Proj};
use petl_train::TaskModel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A peft adapter read onto a petl base model.
pub struct Imported<'m> {
    /// The task model: the adapter as a petl method, its head, on the base it was read onto
    /// (whose fingerprint an artifact saved from it records).
    pub task_model: TaskModel<'m>,
    /// The adapter's configuration.
    pub config: AdapterConfig,
    /// For each petl parameter, the peft key it was read from.
    pub sources: BTreeMap<String, String>,
}

/// Reads the peft adapter directory `dir` (`adapter_config.json` + `adapter_model.safetensors`)
/// onto `model` as a petl task model with a [`Pooling::Cls`] head.
///
/// `task` gives the head's label names and metrics; without it the labels are `LABEL_0`, …
/// (transformers' default names), or a regression task when the classifier has one output.
///
/// # Errors
///
/// A missing file, a config petl cannot represent (see [`crate::config`]), a tensor that is
/// neither the method's nor the head's, a missing or mis-shaped tensor, an adapter without a
/// classifier, or a task whose label count differs from the classifier's outputs.
pub fn import<'m>(model: &'m EncoderModel, dir: &Path, task: Option<TaskSpec>) -> Result<Imported<'m>> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(not_found(&config_path));
    }
    let config = AdapterConfig::read(&config_path)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    if !weights_path.is_file() {
        if dir.join(PICKLE_FILE).is_file() {
            return Err(PeftError::PickleAdapter {
                path: dir.to_path_buf(),
            });
        }
        return Err(not_found(&weights_path));
    }
    let bad = |message: String| PeftError::BadWeights {
        path: weights_path.clone(),
        message,
    };
    let raw =
        candle_core::safetensors::load(&weights_path, model.device()).map_err(|e| bad(e.to_string()))?;
    let kind = config.peft_type();
    let c = model.config();
    let encoder_prefix = c.family.checkpoint_prefix();
    let root = if kind.is_prompt_learning() {
        PROMPT_ROOT
    } else {
        TUNER_ROOT
    };

    // Sort every tensor into the method's, the head's, or an error.
    let mut head: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    let mut sites: BTreeMap<(usize, Proj), BTreeMap<String, (String, Tensor)>> = BTreeMap::new();
    let mut embeddings: Option<Tensor> = None;
    for (key, t) in raw {
        if !t.dtype().is_float() {
            return Err(bad(format!(
                "tensor `{key}` has dtype {:?}, not floating point",
                t.dtype()
            )));
        }
        let t = t.to_dtype(DType::F32)?;
        if key == PROMPT_EMBEDDINGS && kind.is_prompt_learning() {
            embeddings = Some(t);
            continue;
        }
        let Some(path) = key.strip_prefix(root) else {
            return Err(bad(format!(
                "tensor `{key}` is neither `{PROMPT_EMBEDDINGS}` nor under `{root}`"
            )));
        };
        if let Some(name) = head_name(path, encoder_prefix) {
            head.insert(name, (key.clone(), t));
            continue;
        }
        let inner = path.strip_prefix(encoder_prefix).unwrap_or(path);
        match parse_site(inner) {
            Some((l, p, leaf)) if !kind.is_prompt_learning() => {
                sites
                    .entry((l, p))
                    .or_default()
                    .insert(leaf.to_string(), (key.clone(), t));
            }
            _ => {
                return Err(bad(format!(
                    "tensor `{key}` is not a {} weight of an encoder projection and not a head tensor \
                     petl knows (classifier, pooler)",
                    kind.as_str()
                )))
            }
        }
    }

    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let deltas = match &config.method {
        MethodConfig::Lora(lc) => {
            // (layer set, r, scale) → projections: one petl delta per group.
            let mut per_proj: BTreeMap<(Proj, usize, u64), BTreeSet<usize>> = BTreeMap::new();
            let mut by_site = BTreeMap::new();
            for (&(l, p), leaves) in &sites {
                let get = |leaf: &str| {
                    leaves.get(leaf).ok_or_else(|| {
                        bad(format!(
                            "layer {l} {} has no `{leaf}` (it has {:?})",
                            petl_methods::proj_name(p),
                            leaves.keys().collect::<Vec<_>>()
                        ))
                    })
                };
                if let Some(extra) = leaves
                    .keys()
                    .find(|k| *k != "lora_A.weight" && *k != "lora_B.weight")
                {
                    let why = if extra.contains("magnitude") {
                        " (a DoRA magnitude vector)"
                    } else {
                        ""
                    };
                    return Err(bad(format!(
                        "tensor `{}` is not a LoRA matrix{why}",
                        leaves[extra].0
                    )));
                }
                let (a, b) = (get("lora_A.weight")?, get("lora_B.weight")?);
                let (r, r_b) = (a.1.dims()[0], b.1.dims().get(1).copied().unwrap_or(0));
                if a.1.rank() != 2 || b.1.rank() != 2 || r != r_b || r == 0 {
                    return Err(bad(format!(
                        "`{}` {:?} and `{}` {:?} are not a rank-r pair [r, in], [out, r]",
                        a.0,
                        a.1.dims(),
                        b.0,
                        b.1.dims()
                    )));
                }
                let scale = if lc.use_rslora {
                    lc.lora_alpha / (r as f64).sqrt()
                } else {
                    lc.lora_alpha / r as f64
                };
                per_proj.entry((p, r, scale.to_bits())).or_default().insert(l);
                by_site.insert((l, p), (a.clone(), b.clone()));
            }
            let mut groups: BTreeMap<(Vec<usize>, usize, u64), Vec<Proj>> = BTreeMap::new();
            for ((p, r, s), ls) in per_proj {
                groups
                    .entry((ls.into_iter().collect(), r, s))
                    .or_default()
                    .push(p);
            }
            let mut deltas = Vec::new();
            for (k, ((ls, r, s), projs)) in groups.into_iter().enumerate() {
                for &l in &ls {
                    for &p in &projs {
                        let (a, b) = &by_site[&(l, p)];
                        put(&mut tensors, &mut sources, lora_name(k, l, p, false), a);
                        put(&mut tensors, &mut sources, lora_name(k, l, p, true), b);
                    }
                }
                let scale = f64::from_bits(s);
                deltas.push(DeltaSpec {
                    composition: if scale == 1.0 {
                        Composition::Add
                    } else {
                        Composition::Scaled(Scale::Fixed(scale))
                    },
                    layers: layers_of(ls, c.num_layers),
                    init: InitScheme::Lora,
                    dropout: lc.lora_dropout,
                    ..DeltaSpec::new(Form::LowRank { r }, Site::Weights(projs))
                });
            }
            deltas
        }
        MethodConfig::Ia3(_) => {
            let mut per_proj: BTreeMap<(Proj, bool), BTreeSet<usize>> = BTreeMap::new();
            let mut by_site = BTreeMap::new();
            for (&(l, p), leaves) in &sites {
                let Some((key, t)) = leaves.get("ia3_l").filter(|_| leaves.len() == 1) else {
                    let (key, _) = leaves.values().next().expect("a site has a tensor");
                    return Err(bad(format!("tensor `{key}` is not an IA3 vector (`…ia3_l`)")));
                };
                let on_input = match t.dims() {
                    [1, _] => true,
                    [_, 1] => false,
                    other => {
                        return Err(bad(format!(
                            "`{key}` has shape {other:?}; IA3 vectors are [out, 1] or [1, in]"
                        )))
                    }
                };
                per_proj.entry((p, on_input)).or_default().insert(l);
                by_site.insert((l, p), (key.clone(), t.flatten_all()?));
            }
            let mut groups: BTreeMap<Vec<usize>, Vec<(Proj, bool)>> = BTreeMap::new();
            for ((p, on_input), ls) in per_proj {
                groups
                    .entry(ls.into_iter().collect())
                    .or_default()
                    .push((p, on_input));
            }
            let mut deltas = Vec::new();
            for (k, (ls, projs)) in groups.into_iter().enumerate() {
                for &l in &ls {
                    for &(p, _) in &projs {
                        put(&mut tensors, &mut sources, ia3_name(k, l, p), &by_site[&(l, p)]);
                    }
                }
                let scale_input = projs.iter().filter(|(_, i)| *i).map(|(p, _)| *p).collect();
                deltas.push(DeltaSpec {
                    layers: layers_of(ls, c.num_layers),
                    ..DeltaSpec::new(
                        Form::Scaling { scale_input },
                        Site::Weights(projs.iter().map(|(p, _)| *p).collect()),
                    )
                });
            }
            deltas
        }
        MethodConfig::PrefixTuning { tokens, .. } | MethodConfig::PromptTuning(tokens) => {
            let Some(e) = embeddings else {
                return Err(bad(format!("`{PROMPT_EMBEDDINGS}` is missing")));
            };
            let (n, d, layers) = (tokens.num_virtual_tokens, c.hidden_size, c.num_layers);
            let mismatch = |field: &str, theirs: Option<usize>, ours: usize| {
                theirs.filter(|&v| v != ours).map(|v| PeftError::BadConfig {
                    path: config_path.clone(),
                    message: format!("`{field}` is {v}, but the base model has {ours}"),
                })
            };
            if let Some(err) = mismatch("token_dim", tokens.token_dim, d)
                .or_else(|| mismatch("num_layers", tokens.num_layers, layers))
                .or_else(|| mismatch("num_attention_heads", tokens.num_attention_heads, c.num_heads))
            {
                return Err(err);
            }
            let key = PROMPT_EMBEDDINGS.to_string();
            if kind == PeftType::PrefixTuning {
                if e.dims() != [n, layers * 2 * d] {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}; prefix tuning of {n} tokens on this base ({layers} layers, \
                         width {d}) needs [{n}, {}]",
                        e.dims(),
                        layers * 2 * d
                    )));
                }
                for l in 0..layers {
                    let (kn, vn) = prefix_names(0, l);
                    let k = e.narrow(1, 2 * l * d, d)?.contiguous()?;
                    let v = e.narrow(1, (2 * l + 1) * d, d)?.contiguous()?;
                    put(&mut tensors, &mut sources, kn, &(key.clone(), k));
                    put(&mut tensors, &mut sources, vn, &(key.clone(), v));
                }
                vec![DeltaSpec {
                    composition: Composition::Gated,
                    ..DeltaSpec::new(
                        Form::Prefix {
                            length: n,
                            activation: PrefixActivation::Softmax,
                            reparam: None,
                            explicit_gate: false,
                            // Hugging Face BERT numbers real tokens after the cached prefix.
                            shift_positions: true,
                        },
                        Site::Heads,
                    )
                }]
            } else {
                if e.dims() != [n, d] {
                    return Err(bad(format!(
                        "`{key}` has shape {:?}; prompt tuning of {n} tokens on this base needs [{n}, {d}]",
                        e.dims()
                    )));
                }
                put(&mut tensors, &mut sources, prompt_name(0), &(key, e));
                vec![DeltaSpec::new(Form::Prompt { length: n }, Site::Embeddings)]
            }
        }
    };
    if deltas.is_empty() {
        return Err(bad(format!("the file holds no {} weights", kind.as_str())));
    }

    // The head: its width decides the task's.
    let out_name = match c.family {
        petl_models::Family::Bert => "classifier.weight",
        petl_models::Family::Roberta => "classifier.out_proj.weight",
    };
    let Some((_, classifier)) = head.get(out_name) else {
        return Err(PeftError::UnsupportedPeft {
            path: weights_path.clone(),
            what: format!("an adapter without `{out_name}`"),
            reason: "petl task models carry their head: save the adapter with task_type SEQ_CLS, whose \
                     modules_to_save holds the classifier"
                .into(),
        });
    };
    let outputs = classifier.dims()[0];
    let spec = match task {
        Some(spec) => spec,
        None if outputs == 1 => TaskSpec::default_for("peft-import", TaskKind::Regression),
        None => TaskSpec::default_for(
            "peft-import",
            TaskKind::Classification {
                labels: (0..outputs).map(|i| format!("LABEL_{i}")).collect(),
            },
        ),
    };
    if spec.num_outputs() != outputs {
        return Err(bad(format!(
            "the classifier has {outputs} outputs, but task `{}` has {}",
            spec.name,
            spec.num_outputs()
        )));
    }
    for (name, t) in head {
        put(&mut tensors, &mut sources, name, &t);
    }

    let method = Method {
        name: format!("peft-{}", kind.as_str().to_lowercase().replace('_', "-")),
        deltas,
    };
    let task_model = TaskModel::new(model, &method, spec, Pooling::Cls, 0)?;
    let store = task_model.params();
    for (name, var) in store.iter() {
        match tensors.get(name) {
            None => {
                return Err(bad(format!(
                    "the adapter lacks petl parameter `{name}` {:?} (the {} needs it on this base)",
                    var.dims(),
                    if name.starts_with("delta") {
                        "method"
                    } else {
                        "head"
                    }
                )))
            }
            Some(t) if t.dims() != var.dims() => {
                return Err(bad(format!(
                    "`{}` has shape {:?}; petl parameter `{name}` on this base is {:?}",
                    sources[name],
                    t.dims(),
                    var.dims()
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = tensors.keys().find(|n| store.get(n).is_none()) {
        return Err(bad(format!(
            "`{}` has no place in a petl task model on this base (as `{name}`)",
            sources[name]
        )));
    }
    store.assign(&tensors).map_err(petl_train::TrainError::from)?;
    Ok(Imported {
        task_model,
        config,
        sources,
    })
}

fn put(
    tensors: &mut BTreeMap<String, Tensor>,
    sources: &mut BTreeMap<String, String>,
    name: String,
    (key, t): &(String, Tensor),
) {
    sources.insert(name.clone(), key.clone());
    tensors.insert(name, t.clone());
}

fn layers_of(ls: Vec<usize>, num_layers: usize) -> Layers {
    if ls.len() == num_layers {
        Layers::All
    } else {
        Layers::Only(ls)
    }
}

fn not_found(path: &Path) -> PeftError {
    PeftError::Io {
        path: PathBuf::from(path),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
    }
}

//! petl task model → peft adapter directory.

use crate::config::{
    AdapterConfig, Ia3Config, LoraConfig, MethodConfig, PeftType, TargetModules, TaskType, VirtualTokens,
    CONFIG_FILE, WEIGHTS_FILE,
};
use crate::names::{
    head_path, ia3_name, lora_name, module_of, prefix_names, prompt_name, site_path, PROMPT_EMBEDDINGS,
    PROMPT_ROOT, TUNER_ROOT,
};
use crate::{PeftError, Result};
use candle_core::{DType, Tensor};
use petl_methods::{Composition, DeltaSpec, Form, Method, PrefixActivation, Scale, Site};
use petl_models::{Pooling, Proj};
use petl_train::TaskModel;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Written as `base_model_name_or_path`: the base model's hub id or directory, which
    /// `PeftModel.from_pretrained` does not read but tools show and `AutoPeftModel` loads.
    pub base_model_name_or_path: Option<String>,
    /// Leave the head out and write a `FEATURE_EXTRACTION` adapter for the bare encoder. The
    /// only way to export a mean-pooling head's encoder delta, since Hugging Face has no
    /// mean-pooling sequence classifier.
    pub without_head: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The configuration written.
    pub config: AdapterConfig,
    /// Number of tensors in `adapter_model.safetensors`.
    pub tensors: usize,
    /// Scalar parameters in it.
    pub params: usize,
}

/// Writes `tm`'s delta and head as a peft adapter directory `out` (created if missing):
/// `adapter_model.safetensors` first, then `adapter_config.json`, each atomically.
///
/// # Errors
///
/// [`PeftError::NotRepresentable`] when peft has no format for the method (bottleneck and
/// parallel adapters, MAM and other combinations, BitFit, full fine-tuning, diffs, learned or
/// gated compositions, prefixes without shifted positions) or, without
/// [`ExportOptions::without_head`], for a mean-pooling head.
pub fn export(tm: &TaskModel<'_>, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let (config, tensors) = to_peft(tm, opts)?;
    std::fs::create_dir_all(out).map_err(|source| PeftError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    petl_artifact::write_safetensors_atomic(&out.join(WEIGHTS_FILE), &tensors)?;
    petl_artifact::write_json_atomic(&out.join(CONFIG_FILE), &config.to_json())?;
    Ok(ExportReport {
        config,
        tensors: tensors.len(),
        params: tensors.values().map(Tensor::elem_count).sum(),
    })
}

/// The peft configuration and tensors (under peft's keys) of `tm`, without writing them.
pub fn to_peft(
    tm: &TaskModel<'_>,
    opts: &ExportOptions,
) -> Result<(AdapterConfig, BTreeMap<String, Tensor>)> {
    let model = tm.model();
    let c = model.config();
    let method = tm.method().ejected();
    let kind = peft_type_of(&method)?;
    let task_type = if opts.without_head {
        TaskType::FeatureExtraction
    } else {
        if tm.head_pooling() == Pooling::Mean {
            return Err(not_representable(
                "the head's mean pooling",
                "Hugging Face's *ForSequenceClassification reads the first token through the \
                 pooler; export the encoder delta alone with --without-head (FEATURE_EXTRACTION), \
                 or train with --pooling cls",
            ));
        }
        TaskType::SeqCls
    };
    let encoder_prefix = match task_type {
        TaskType::SeqCls => c.family.checkpoint_prefix(),
        TaskType::FeatureExtraction => "",
    };
    let root = if kind.is_prompt_learning() {
        PROMPT_ROOT
    } else {
        TUNER_ROOT
    };
    let mut stored = Stored(tm.stored_tensors()?);
    let mut out = BTreeMap::new();
    let layers = c.num_layers;
    let site_key = |l: usize, p: Proj, leaf: &str| -> Result<String> {
        let path = site_path(l, p).ok_or_else(|| {
            not_representable(
                petl_methods::proj_name(p),
                "a BERT-family encoder has no such projection",
            )
        })?;
        Ok(format!("{TUNER_ROOT}{encoder_prefix}{path}.{leaf}"))
    };
    let method_config = match kind {
        PeftType::Lora => {
            let mut sites = BTreeSet::new();
            let mut shape: Option<(usize, f64)> = None;
            let mut dropout: f64 = 0.0;
            for (k, d) in method.deltas.iter().enumerate() {
                let (Form::LowRank { r }, Site::Weights(projs)) = (&d.form, &d.site) else {
                    unreachable!("peft_type_of checked the form")
                };
                let s = match d.composition {
                    Composition::Add => 1.0,
                    Composition::Scaled(Scale::Fixed(s)) => s,
                    other => return Err(composition_error(k, d, other)),
                };
                match shape {
                    None => shape = Some((*r, s)),
                    Some(first) if first != (*r, s) => {
                        return Err(not_representable(
                            &format!("delta {k} (r = {r}, scale {s})"),
                            &format!(
                                "peft's LoRA config has one r and one α/r for every module, and delta 0 has \
                                 r = {}, scale {}",
                                first.0, first.1
                            ),
                        ))
                    }
                    Some(_) => {}
                }
                dropout = dropout.max(d.dropout);
                for l in d.layers.select(layers) {
                    for &p in projs {
                        if !sites.insert((l, p)) {
                            return Err(not_representable(
                                &format!("two low-rank deltas on layer {l} {}", petl_methods::proj_name(p)),
                                "a peft adapter has one LoRA per module",
                            ));
                        }
                        out.insert(
                            site_key(l, p, "lora_A.weight")?,
                            stored.take(&lora_name(k, l, p, false))?,
                        );
                        out.insert(
                            site_key(l, p, "lora_B.weight")?,
                            stored.take(&lora_name(k, l, p, true))?,
                        );
                    }
                }
            }
            let (r, s) = shape.unwrap_or((1, 1.0));
            MethodConfig::Lora(LoraConfig {
                r,
                lora_alpha: s * r as f64,
                lora_dropout: dropout,
                use_rslora: false,
                target_modules: targets(&sites, layers),
            })
        }
        PeftType::Ia3 => {
            let mut sites = BTreeSet::new();
            let mut inputs = BTreeSet::new();
            for (k, d) in method.deltas.iter().enumerate() {
                let (Form::Scaling { scale_input }, Site::Weights(projs)) = (&d.form, &d.site) else {
                    unreachable!("peft_type_of checked the form")
                };
                for l in d.layers.select(layers) {
                    for &p in projs {
                        if !sites.insert((l, p)) {
                            return Err(not_representable(
                                &format!("two scalings of layer {l} {}", petl_methods::proj_name(p)),
                                "a peft IA3 adapter has one vector per module",
                            ));
                        }
                        let v = stored.take(&ia3_name(k, l, p))?;
                        let n = v.elem_count();
                        let v = if scale_input.contains(&p) {
                            inputs.insert((l, p));
                            v.reshape((1, n))?
                        } else {
                            v.reshape((n, 1))?
                        };
                        out.insert(site_key(l, p, "ia3_l")?, v);
                    }
                }
            }
            MethodConfig::Ia3(Ia3Config {
                target_modules: targets(&sites, layers),
                feedforward_modules: targets(&inputs, layers),
            })
        }
        PeftType::PrefixTuning => {
            let d = only_delta(&method)?;
            let Form::Prefix {
                length,
                activation,
                shift_positions,
                ..
            } = d.form
            else {
                unreachable!("peft_type_of checked the form")
            };
            if activation != PrefixActivation::Softmax || d.composition != Composition::Gated {
                return Err(not_representable(
                    "a prefix delta that is not softmax attention with the gated composition",
                    "peft's prefix tuning concatenates prefixes to keys and values (softmax, gated); \
                     multi-head parallel adapters and ungated prefixes have no peft format",
                ));
            }
            if d.layers.select(layers).len() != layers {
                return Err(not_representable(
                    "a prefix on some layers only",
                    "peft's prefix tuning prefixes every layer",
                ));
            }
            if !shift_positions {
                return Err(not_representable(
                    "a prefix with shift_positions = false",
                    "Hugging Face BERT numbers the real tokens after peft's prefix (positions n, n+1, …), \
                     so this prefix would compute something else in peft; train with \
                     --set method.delta.0.form.shift_positions=true",
                ));
            }
            let mut parts = Vec::with_capacity(2 * layers);
            for l in 0..layers {
                let (k, v) = prefix_names(0, l);
                parts.push(stored.take(&k)?);
                parts.push(stored.take(&v)?);
            }
            out.insert(PROMPT_EMBEDDINGS.to_string(), Tensor::cat(&parts, 1)?);
            MethodConfig::PrefixTuning {
                tokens: tokens(length, tm),
                prefix_projection: false,
                encoder_hidden_size: Some(c.hidden_size),
            }
        }
        PeftType::PromptTuning => {
            let d = only_delta(&method)?;
            let Form::Prompt { length } = d.form else {
                unreachable!("peft_type_of checked the form")
            };
            out.insert(PROMPT_EMBEDDINGS.to_string(), stored.take(&prompt_name(0))?);
            MethodConfig::PromptTuning(tokens(length, tm))
        }
    };
    let mut modules_to_save = Vec::new();
    let rest = std::mem::take(&mut stored.0);
    for (name, t) in rest {
        if name.starts_with("delta") {
            return Err(not_representable(
                &format!("stored tensor `{name}`"),
                "it is not part of the peft form of this method",
            ));
        }
        if opts.without_head {
            continue;
        }
        let (path, module) = head_path(&name, encoder_prefix);
        if !modules_to_save.contains(&module.to_string()) {
            modules_to_save.push(module.to_string());
        }
        out.insert(format!("{root}{path}"), t);
    }
    if opts.without_head {
        tracing::warn!(
            "the head is not exported: the peft adapter is FEATURE_EXTRACTION, for the bare encoder"
        );
    }
    let out = out
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let config = AdapterConfig {
        task_type: Some(task_type),
        base_model_name_or_path: opts.base_model_name_or_path.clone(),
        modules_to_save,
        method: method_config,
        unknown_keys: Vec::new(),
    };
    Ok((config, out))
}

/// The stored tensors, taken out one by one so that what is left over can be checked.
struct Stored(BTreeMap<String, Tensor>);

impl Stored {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0.remove(name).ok_or_else(|| {
            not_representable(
                &format!("tensor `{name}`"),
                "the method should store it but the task model has no such tensor",
            )
        })
    }
}

fn tokens(length: usize, tm: &TaskModel<'_>) -> VirtualTokens {
    let c = tm.model().config();
    VirtualTokens {
        num_virtual_tokens: length,
        token_dim: Some(c.hidden_size),
        num_layers: Some(c.num_layers),
        num_attention_heads: Some(c.num_heads),
        num_transformer_submodules: Some(1),
    }
}

/// The peft method of a petl method, or why there is none.
fn peft_type_of(method: &Method) -> Result<PeftType> {
    let Some(first) = method.deltas.first() else {
        return Err(not_representable(
            &format!("method `{}` (head only)", method.name),
            "a peft adapter needs a peft method; the head alone has no peft format \
             (use petl's artifact format, docs/artifact-format.md)",
        ));
    };
    let kind = |d: &DeltaSpec, k: usize| -> Result<PeftType> {
        match (&d.form, &d.site) {
            (Form::LowRank { .. }, Site::Weights(_)) => Ok(PeftType::Lora),
            (Form::Scaling { .. }, Site::Weights(_)) => Ok(PeftType::Ia3),
            (Form::Prefix { .. }, _) => Ok(PeftType::PrefixTuning),
            (Form::Prompt { .. }, _) => Ok(PeftType::PromptTuning),
            (Form::LowRank { .. }, site) => Err(not_representable(
                &format!("delta {k}: a low-rank delta at the {site} sub-layer"),
                "peft's LoRA wraps single linear layers (site weights); a low-rank adapter on a \
                 sub-layer has no peft format (use petl's artifact format, docs/artifact-format.md)",
            )),
            (form, site) => Err(not_representable(
                &format!("delta {k}: form {} at {site}", form.kind()),
                &format!(
                    "peft has no format for {} (use petl's artifact format, docs/artifact-format.md)",
                    describe(form)
                ),
            )),
        }
    };
    if let Some(other) = method.deltas.iter().find(|d| d.form.kind() != first.form.kind()) {
        return Err(not_representable(
            &format!("method `{}` ({} deltas)", method.name, method.deltas.len()),
            &format!(
                "a peft adapter holds one method, and this combines {} with {} (e.g. MAM, UniPELT); \
                 use petl's artifact format (docs/artifact-format.md)",
                first.form.kind(),
                other.form.kind()
            ),
        ));
    }
    let first_kind = kind(first, 0)?;
    for (k, d) in method.deltas.iter().enumerate().skip(1) {
        kind(d, k)?;
    }
    Ok(first_kind)
}

fn describe(form: &Form) -> &'static str {
    match form {
        Form::Bottleneck { .. } => "bottleneck adapters (Houlsby, Pfeiffer, parallel, scaled parallel)",
        Form::Bias {} => "BitFit",
        Form::Dense {} => "full fine-tuning as a dense diff",
        Form::Diff { .. } | Form::SparseDiff {} => "diff pruning's diffs (sparse or dense)",
        _ => "this form",
    }
}

fn only_delta(method: &Method) -> Result<&DeltaSpec> {
    match method.deltas.as_slice() {
        [d] => Ok(d),
        _ => Err(not_representable(
            &format!("method `{}`", method.name),
            "a peft prompt-learning adapter holds exactly one prefix or prompt",
        )),
    }
}

fn composition_error(k: usize, d: &DeltaSpec, c: Composition) -> PeftError {
    let what = match c {
        Composition::Scaled(Scale::Learned) => "a learned scale",
        Composition::Gated => "a gated composition",
        _ => "this composition",
    };
    not_representable(
        &format!("delta {k} ({} at {})", d.form.kind(), d.site),
        &format!("{what} has no peft LoRA equivalent (peft scales by the fixed α/r)"),
    )
}

/// `target_modules` matching exactly `sites`: module-name suffixes when every named
/// projection is covered in every layer and the suffixes are unambiguous, otherwise one
/// regex over the full module names.
fn targets(sites: &BTreeSet<(usize, Proj)>, layers: usize) -> TargetModules {
    let mut by_proj: BTreeMap<Proj, Vec<usize>> = BTreeMap::new();
    for &(l, p) in sites {
        by_proj.entry(p).or_default().push(l);
    }
    let every_layer = by_proj.values().all(|ls| ls.len() == layers);
    // "output.dense" would also match attention.output.dense.
    if every_layer && !by_proj.contains_key(&Proj::FfnDown) {
        return TargetModules::Names(
            by_proj
                .keys()
                .map(|&p| match p {
                    Proj::Query => "query",
                    Proj::Key => "key",
                    Proj::Value => "value",
                    other => module_of(other).unwrap_or("?"),
                })
                .map(str::to_string)
                .collect(),
        );
    }
    let alternatives: Vec<String> = by_proj
        .iter()
        .map(|(&p, ls)| {
            let ls: Vec<String> = ls.iter().map(usize::to_string).collect();
            format!(
                "(?:{})\\.{}",
                ls.join("|"),
                module_of(p).unwrap_or("?").replace('.', "\\.")
            )
        })
        .collect();
    TargetModules::Regex(format!(".*encoder\\.layer\\.(?:{})", alternatives.join("|")))
}

fn not_representable(what: &str, reason: &str) -> PeftError {
    PeftError::NotRepresentable {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_modules_are_names_when_unambiguous_and_a_regex_otherwise() {
        let all = |ps: &[Proj]| -> BTreeSet<(usize, Proj)> {
            (0..2).flat_map(|l| ps.iter().map(move |&p| (l, p))).collect()
        };
        assert_eq!(
            targets(&all(&[Proj::Query, Proj::Value]), 2),
            TargetModules::Names(vec!["query".into(), "value".into()])
        );
        assert_eq!(
            targets(&all(&[Proj::Key, Proj::FfnDown]), 2),
            TargetModules::Regex(
                ".*encoder\\.layer\\.(?:(?:0|1)\\.attention\\.self\\.key|(?:0|1)\\.output\\.dense)".into()
            )
        );
        let some: BTreeSet<_> = [(1, Proj::Query)].into();
        assert_eq!(
            targets(&some, 2),
            TargetModules::Regex(".*encoder\\.layer\\.(?:(?:1)\\.attention\\.self\\.query)".into())
        );
    }
}

//! `petl peft export|import`: petl artifacts to and from Hugging Face peft adapter directories.

use crate::args::ModelArg;
use crate::commands::{artifact_dir, resolve_model};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use petl::data::{GlueTask, TaskKind, TaskSpec};
use petl::models::BaseModel;
use petl::models::{EncoderModel, ModelDir};
use petl::peft::{ExportOptions, MethodConfig};
use petl::train::TaskModel;
use std::path::PathBuf;

/// The base model and its directory (no tokenizer needed: nothing is tokenised).
fn load_model(arg: &ModelArg, quiet: bool) -> Result<(PathBuf, EncoderModel)> {
    let dir = resolve_model(arg, quiet)?;
    let model = EncoderModel::load(&ModelDir::open(&dir)?, &Device::Cpu)
        .with_context(|| format!("cannot load the base model {}", dir.display()))?;
    Ok((dir, model))
}

#[derive(Debug, Subcommand)]
pub enum PeftCommand {
    /// Write an artifact as a Hugging Face peft adapter directory (adapter_config.json +
    /// adapter_model.safetensors): LoRA, IA³, prefix or prompt tuning, the head as
    /// modules_to_save. Load it with PeftModel.from_pretrained(BertForSequenceClassification…).
    Export(PeftExportArgs),
    /// Read a peft adapter directory (LoRA, IA³, prefix or prompt tuning, task SEQ_CLS) onto a
    /// base model and save it as a petl artifact recording that base.
    Import(PeftImportArgs),
}

#[derive(Debug, Args)]
pub struct PeftExportArgs {
    /// Artifact directory (a run's `artifact/`, or the run directory itself).
    pub artifact: PathBuf,
    /// The base model the artifact was trained on.
    #[command(flatten)]
    pub model: ModelArg,
    /// peft adapter directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// `base_model_name_or_path` to record (e.g. a hub id). [default: the base model's directory]
    #[arg(long)]
    pub base_name: Option<String>,
    /// Leave the head out and write a FEATURE_EXTRACTION adapter for the bare encoder (the
    /// only way to export the delta of a mean-pooling head, which Hugging Face lacks).
    #[arg(long)]
    pub without_head: bool,
}

#[derive(Debug, Args)]
pub struct PeftImportArgs {
    /// peft adapter directory.
    pub adapter: PathBuf,
    /// The base model to read it onto; the artifact records its fingerprint.
    #[command(flatten)]
    pub model: ModelArg,
    /// Artifact directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Task name; a GLUE task (sst2, rte, …) brings its labels and metrics.
    #[arg(long)]
    pub task: Option<String>,
    /// Label names in class-id order, comma-separated. [default: LABEL_0, LABEL_1, …]
    #[arg(long, value_delimiter = ',')]
    pub task_labels: Vec<String>,
    /// The head is a regressor (one output).
    #[arg(long, conflicts_with = "task_labels")]
    pub regression: bool,
}

pub fn run(c: PeftCommand, quiet: bool) -> Result<()> {
    match c {
        PeftCommand::Export(a) => export(a, quiet),
        PeftCommand::Import(a) => import(a, quiet),
    }
}

fn export(a: PeftExportArgs, quiet: bool) -> Result<()> {
    let (model_dir, model) = load_model(&a.model, quiet)?;
    let dir = artifact_dir(&a.artifact);
    let tm = TaskModel::from_artifact(&model, &dir)?;
    let base_name = a.base_name.clone().unwrap_or_else(|| {
        model_dir
            .canonicalize()
            .unwrap_or(model_dir.clone())
            .display()
            .to_string()
    });
    let opts = ExportOptions {
        base_model_name_or_path: Some(base_name),
        without_head: a.without_head,
    };
    let report = petl::peft::export(&tm, &a.out, &opts)
        .with_context(|| format!("cannot export {} to peft", dir.display()))?;
    if !quiet {
        let task = report.config.task_type.map_or("none", |t| t.as_str());
        println!(
            "wrote peft {} adapter ({task}, {} tensors, {} parameters) to {}",
            report.config.peft_type().as_str(),
            report.tensors,
            report.params,
            a.out.display()
        );
    }
    Ok(())
}

fn import(a: PeftImportArgs, quiet: bool) -> Result<()> {
    let spec = task_spec(&a)?;
    let (_, model) = load_model(&a.model, quiet)?;
    let imported = petl::peft::import(&model, &a.adapter, spec)
        .with_context(|| format!("cannot import peft adapter {}", a.adapter.display()))?;
    let tm = &imported.task_model;
    tm.save_artifact(&a.out)
        .with_context(|| format!("cannot write artifact {}", a.out.display()))?;
    if !quiet {
        let detail = match &imported.config.method {
            MethodConfig::Lora(l) => format!("r {}, α {}", l.r, l.lora_alpha),
            MethodConfig::Ia3(_) => String::new(),
            MethodConfig::PrefixTuning { tokens, .. } | MethodConfig::PromptTuning(tokens) => {
                format!("{} virtual tokens", tokens.num_virtual_tokens)
            }
        };
        println!(
            "imported peft {} adapter ({detail}) as method `{}`, task `{}` ({} parameters)",
            imported.config.peft_type().as_str(),
            tm.method().name,
            tm.spec().name,
            tm.params().num_elements()
        );
        println!(
            "artifact {} (base fingerprint {})",
            a.out.display(),
            model.fingerprint()
        );
    }
    Ok(())
}

/// The head's task from the flags, or `None` for the importer's default.
fn task_spec(a: &PeftImportArgs) -> Result<Option<TaskSpec>> {
    let glue = a.task.as_deref().and_then(GlueTask::from_name);
    let name = a.task.clone().unwrap_or_else(|| "peft-import".into());
    Ok(match (glue, a.task_labels.is_empty(), a.regression) {
        (Some(g), true, false) => Some(g.spec()),
        (Some(g), _, _) => bail!(
            "--task {} is a GLUE task with its own labels; drop --task-labels / --regression",
            g.name()
        ),
        (None, false, _) => Some(TaskSpec::default_for(
            &name,
            TaskKind::Classification {
                labels: a.task_labels.clone(),
            },
        )),
        (None, true, true) => Some(TaskSpec::default_for(&name, TaskKind::Regression)),
        (None, true, false) if a.task.is_some() => {
            bail!("--task {name} is not a GLUE task; give its labels with --task-labels (or --regression)")
        }
        (None, true, false) => None,
    })
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn peft(args: &[&str]) -> Result<super::PeftCommand, clap::Error> {
        let cli = Cli::try_parse_from(["petl", "peft"].iter().chain(args))?;
        match cli.command {
            Command::Peft(c) => Ok(c),
            other => panic!("not peft: {other:?}"),
        }
    }

    #[test]
    fn export_and_import_flags_parse_with_defaults() {
        let super::PeftCommand::Export(e) = peft(&["export", "runs/x", "--out", "p"]).unwrap() else {
            panic!("not export")
        };
        assert_eq!(e.artifact, std::path::PathBuf::from("runs/x"));
        assert!(e.model.model.is_none() && e.base_name.is_none() && !e.without_head);
        assert!(peft(&["export", "runs/x"]).is_err(), "--out is required");

        let super::PeftCommand::Import(i) =
            peft(&["import", "adapter", "--out", "a", "--task-labels", "neg,pos"]).unwrap()
        else {
            panic!("not import")
        };
        assert_eq!(i.task_labels, vec!["neg", "pos"]);
        assert!(i.task.is_none() && !i.regression);
        assert_eq!(super::task_spec(&i).unwrap().unwrap().num_outputs(), 2);
        assert!(peft(&[
            "import",
            "adapter",
            "--out",
            "a",
            "--task-labels",
            "x",
            "--regression"
        ])
        .is_err());
        let super::PeftCommand::Import(i) =
            peft(&["import", "adapter", "--out", "a", "--task", "rte"]).unwrap()
        else {
            panic!("not import")
        };
        assert_eq!(super::task_spec(&i).unwrap().unwrap().name, "rte");
        let super::PeftCommand::Import(i) = peft(&["import", "adapter", "--out", "a"]).unwrap() else {
            panic!("not import")
        };
        assert!(super::task_spec(&i).unwrap().is_none());

        let cli = Cli::try_parse_from(["petl", "predict", "--artifact", "a", "--logits"]).unwrap();
        let Command::Predict(p) = cli.command else {
            panic!("not predict")
        };
        assert!(p.logits && !p.json);
    }
}

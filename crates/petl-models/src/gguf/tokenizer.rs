//! The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata.
//!
//! A GGUF has no `tokenizer.json`; it stores the vocabulary, merges, token types and special ids
//! under llama.cpp's keys. This module builds the same [`Tokenizer`] transformers builds from those
//! keys (transformers 5.23, `integrations/gguf/gguf_tokenizer_mapping.py` plus
//! `TokenizersBackend`'s special-token and post-processor handling), so both give the same ids:
//!
//! * `gpt2`: byte-level BPE (`GPT2Tokenizer`): the `ByteLevel` pre-tokenizer with GPT-2's regex,
//!   replaced by a `Split` on the model's own regex when `tokenizer.ggml.pre` is one transformers knows
//!   (`llama-bpe`, `qwen2`, …). Other `pre` values, SmolLM's `smollm` among them, keep GPT-2's regex.
//! * `llama`: SentencePiece-style BPE with byte fallback (`LlamaTokenizer`): `Metaspace` with the
//!   `▁` prefix on the first word; merges from the file, or rebuilt from the token scores.
//!
//! In both, tokens typed CONTROL (3) become special added tokens, USER_DEFINED (4) plain added
//! tokens, the BOS/EOS/UNK/PAD tokens are special, and BOS/EOS are added to every encoding when
//! `tokenizer.ggml.add_bos_token` / `add_eos_token` say so (`llama` defaults to BOS on).

use std::collections::{HashMap, HashSet};

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::error::{GgufError, Result};
use super::file::GgufFile;

/// The `tokenizer.ggml.model` values petl builds.
pub const SUPPORTED_TOKENIZERS: &str = "gpt2, llama";

/// llama.cpp token types (`llama_token_type`).
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_SPLIT: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` → split regex (transformers' `GGUF_PRE_TOKENIZER_SPLITS`).
fn split_regex(pre: &str) -> Option<&'static str> {
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_SPLIT,
        "tekken" => TEKKEN_SPLIT,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_SPLIT,
        "qwen35" => QWEN35_SPLIT,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_SPLIT,
        _ => return None,
    })
}

/// The ids of the named special tokens, in `Spec::special_ids` order.
const SPECIAL_ID_KEYS: [&str; 4] = [
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
];

/// What the metadata says about the tokenizer, read once.
struct Spec<'a> {
    tokens: Vec<&'a str>,
    token_types: Option<Vec<i64>>,
    merges: Option<Vec<&'a str>>,
    scores: Option<Vec<f64>>,
    pre: Option<&'a str>,
    /// BOS, EOS, UNK, PAD (see [`SPECIAL_ID_KEYS`]).
    special_ids: [Option<u64>; 4],
    add_bos: bool,
    add_eos: bool,
}

/// Builds the tokenizer described by `file`'s metadata.
pub(crate) fn build(file: &GgufFile) -> Result<Tokenizer> {
    let model = file
        .metadata_str("tokenizer.ggml.model")?
        .ok_or_else(|| GgufError::MissingMetadata {
            key: "tokenizer.ggml.model".into(),
        })?;
    let tokens =
        file.metadata_strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| GgufError::MissingMetadata {
                key: "tokenizer.ggml.tokens".into(),
            })?;
    let (add_bos, add_eos) = bos_eos_flags(file)?;
    let spec = Spec {
        token_types: file.metadata_ints("tokenizer.ggml.token_type")?,
        merges: file.metadata_strings("tokenizer.ggml.merges")?,
        scores: file.metadata_floats("tokenizer.ggml.scores")?,
        pre: file.metadata_str("tokenizer.ggml.pre")?,
        special_ids: [
            file.metadata_u64(SPECIAL_ID_KEYS[0])?,
            file.metadata_u64(SPECIAL_ID_KEYS[1])?,
            file.metadata_u64(SPECIAL_ID_KEYS[2])?,
            file.metadata_u64(SPECIAL_ID_KEYS[3])?,
        ],
        add_bos,
        add_eos,
        tokens,
    };
    if let Some(types) = &spec.token_types {
        check_len("tokenizer.ggml.token_type", types.len(), spec.tokens.len())?;
    }
    let (mut tokenizer, byte_level) = match model {
        "gpt2" => (byte_level_bpe(&spec)?, true),
        "llama" => (sentencepiece_bpe(&spec)?, false),
        other => {
            return Err(GgufError::UnsupportedTokenizer {
                model: other.to_string(),
                supported: SUPPORTED_TOKENIZERS,
            })
        }
    };
    add_special_tokens(&mut tokenizer, &spec, byte_level)?;
    if let Some(regex) = spec.pre.and_then(split_regex) {
        let split = Split::new(
            SplitPattern::Regex(regex.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tokenizer_error("pre-tokenizer regex", e))?;
        let byte_level = ByteLevel::default().add_prefix_space(false).use_regex(false);
        tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])));
    }
    tokenizer.with_post_processor(Some(post_processor(&spec)?));
    Ok(tokenizer)
}

/// Whether encodings start with BOS / end with EOS (`tokenizer.ggml.add_bos_token` /
/// `add_eos_token`). Like transformers (and llama.cpp), a `llama` (sentencepiece) vocabulary that does
/// not say gets BOS.
pub(crate) fn bos_eos_flags(file: &GgufFile) -> Result<(bool, bool)> {
    let sentencepiece = file.metadata_str("tokenizer.ggml.model")? == Some("llama");
    Ok((
        file.metadata_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(sentencepiece),
        file.metadata_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false),
    ))
}

/// GPT-2's byte → printable-character table (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        // Every value is below 256 + 68, a valid scalar.
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// `byte_level_tokenizer`: byte-level BPE over the file's vocabulary and merges.
fn byte_level_bpe(spec: &Spec) -> Result<Tokenizer> {
    let spelling = bytes_to_unicode();
    let alphabet: HashSet<char> = spelling.iter().copied().collect();
    // A token written in plain UTF-8 instead of the byte alphabet is re-spelled, as transformers does.
    let vocab: Vocab = spec
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| {
            let spelled = if t.chars().all(|c| alphabet.contains(&c)) {
                t.to_string()
            } else {
                t.bytes().map(|b| spelling[b as usize]).collect()
            };
            (spelled, id as u32)
        })
        .collect();
    let merges = spec.merges.as_ref().ok_or_else(|| GgufError::MissingMetadata {
        key: "tokenizer.ggml.merges".into(),
    })?;
    let merges = parse_merges(merges)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| tokenizer_error("byte-level BPE", e))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// `sentencepiece_tokenizer` + `LlamaTokenizer`: BPE with byte fallback and the `▁` word prefix.
fn sentencepiece_bpe(spec: &Spec) -> Result<Tokenizer> {
    let vocab: HashMap<&str, u32> = spec
        .tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (*t, id as u32))
        .collect();
    let merges = match &spec.merges {
        Some(merges) => parse_merges(merges)?,
        None => {
            let scores = spec.scores.as_ref().ok_or_else(|| GgufError::MissingMetadata {
                key: "tokenizer.ggml.scores".into(),
            })?;
            check_len("tokenizer.ggml.scores", scores.len(), spec.tokens.len())?;
            merges_from_scores(&spec.tokens, scores, &vocab)
        }
    };
    let vocab: Vocab = vocab.into_iter().map(|(t, id)| (t.to_string(), id)).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| tokenizer_error("sentencepiece BPE", e))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
    let replace = Replace::new("▁", " ").map_err(|e| tokenizer_error("decoder", e))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(replace),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
        DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
    ])));
    Ok(tokenizer)
}

fn parse_merges(merges: &[&str]) -> Result<Vec<(String, String)>> {
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .filter(|(_, right)| !right.contains(' '))
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .ok_or_else(|| GgufError::InvalidMetadata {
                    key: "tokenizer.ggml.merges".into(),
                    reason: format!("merge {i} ({m:?}) is not two tokens separated by one space"),
                })
        })
        .collect()
}

/// transformers' `generate_merges(vocab, vocab_scores)`: every split of a token into two tokens of
/// the vocabulary, best score first (ties: longer left part, then longer right part, then the order
/// found), pairs within one token ordered by the ids of their parts.
fn merges_from_scores(tokens: &[&str], scores: &[f64], vocab: &HashMap<&str, u32>) -> Vec<(String, String)> {
    // `dict(zip(tokens, scores))`: a repeated token keeps its first position and its last score.
    let mut order: Vec<&str> = Vec::new();
    let mut score_of: HashMap<&str, f64> = HashMap::new();
    for (t, s) in tokens.iter().zip(scores) {
        if score_of.insert(t, *s).is_none() {
            order.push(t);
        }
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let score = score_of[token];
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(i, _)| token.split_at(i))
            .filter(|(l, r)| vocab.contains_key(l) && vocab.contains_key(r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab[l], vocab[r]));
        merges.extend(local);
    }
    // Python's stable `sorted(..., reverse=True)`: descending keys, equal keys keep their order.
    merges.sort_by(|a, b| {
        let key = |m: &(&str, &str, f64)| (m.2, m.0.chars().count(), m.1.chars().count());
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(kb.2.cmp(&ka.2))
    });
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

/// CONTROL tokens as special tokens, USER_DEFINED ones as plain added tokens, then the named
/// specials (BOS, EOS, UNK, PAD) not already among them.
fn add_special_tokens(tokenizer: &mut Tokenizer, spec: &Spec, byte_level: bool) -> Result<()> {
    let alphabet: Option<HashSet<char>> = byte_level.then(|| bytes_to_unicode().into_iter().collect());
    let spelled = |t: &str| {
        alphabet
            .as_ref()
            .is_none_or(|a| t.chars().all(|c| a.contains(&c)))
    };
    let typed = |wanted: i64| -> Vec<&str> {
        match &spec.token_types {
            Some(types) => spec
                .tokens
                .iter()
                .zip(types)
                .filter(|(_, ty)| **ty == wanted)
                .map(|(t, _)| *t)
                .collect(),
            None => Vec::new(),
        }
    };
    // In a byte-level vocabulary a CONTROL token outside the byte alphabet is a llama.cpp mislabel;
    // adding it would grow the vocabulary past the model's, so transformers skips it and so do we.
    let control: Vec<AddedToken> = typed(CONTROL)
        .into_iter()
        .filter(|t| spelled(t))
        .map(|t| AddedToken::from(t, true).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(control)
        .map_err(|e| tokenizer_error("control tokens", e))?;
    let vocab = tokenizer.get_vocab(true);
    let user: Vec<AddedToken> = typed(USER_DEFINED)
        .into_iter()
        .filter(|t| vocab.contains_key(*t))
        .map(|t| AddedToken::from(t, false).normalized(false))
        .collect();
    tokenizer
        .add_tokens(user)
        .map_err(|e| tokenizer_error("user-defined tokens", e))?;
    let added: HashSet<String> = tokenizer
        .get_added_tokens_decoder()
        .values()
        .map(|t| t.content.clone())
        .collect();
    let mut named = Vec::new();
    for (id, key) in spec.special_ids.iter().zip(SPECIAL_ID_KEYS) {
        let Some(id) = id else { continue };
        let token = token_at(spec, *id, key)?;
        if !added.contains(token) && !named.iter().any(|t: &AddedToken| t.content == token) {
            named.push(AddedToken::from(token, true).normalized(false));
        }
    }
    tokenizer
        .add_special_tokens(named)
        .map_err(|e| tokenizer_error("special tokens", e))?;
    Ok(())
}

/// `update_post_processor`: `[BOS] $A [EOS]` as the flags say, `$B` with type id 1.
fn post_processor(spec: &Spec) -> Result<TemplateProcessing> {
    let [bos, eos, _, _] = spec.special_ids;
    let bos = match (spec.add_bos, bos) {
        (true, Some(id)) => Some((token_at(spec, id, SPECIAL_ID_KEYS[0])?, id as u32)),
        _ => None,
    };
    let eos = match (spec.add_eos, eos) {
        (true, Some(id)) => Some((token_at(spec, id, SPECIAL_ID_KEYS[1])?, id as u32)),
        _ => None,
    };
    // Pieces as strings (`token:type_id`), as transformers writes them; one string per piece, so a
    // token with a space in it stays whole.
    let sequence = |seq: &str, type_id: u32| -> Vec<String> {
        let mut pieces = Vec::new();
        pieces.extend(bos.map(|(t, _)| format!("{t}:{type_id}")));
        pieces.push(format!("${seq}:{type_id}"));
        pieces.extend(eos.map(|(t, _)| format!("{t}:{type_id}")));
        pieces
    };
    let single = sequence("A", 0);
    let mut pair = single.clone();
    pair.extend(sequence("B", 1));
    let specials: Vec<SpecialToken> = bos
        .into_iter()
        .chain(eos)
        .map(|(t, id)| SpecialToken::from((t, id)))
        .collect();
    TemplateProcessing::builder()
        .try_single(single)
        .map_err(|e| tokenizer_error("post-processor template", e))?
        .try_pair(pair)
        .map_err(|e| tokenizer_error("post-processor template", e))?
        .special_tokens(specials)
        .build()
        .map_err(|e| tokenizer_error("post-processor", e))
}

fn token_at<'a>(spec: &Spec<'a>, id: u64, what: &'static str) -> Result<&'a str> {
    usize::try_from(id)
        .ok()
        .and_then(|i| spec.tokens.get(i).copied())
        .ok_or_else(|| GgufError::InvalidMetadata {
            key: what.into(),
            reason: format!(
                "token id {id} is outside the {}-token vocabulary",
                spec.tokens.len()
            ),
        })
}

fn check_len(key: &str, len: usize, tokens: usize) -> Result<()> {
    if len != tokens {
        return Err(GgufError::InvalidMetadata {
            key: key.into(),
            reason: format!("has {len} entries for {tokens} tokens"),
        });
    }
    Ok(())
}

fn tokenizer_error(what: &'static str, e: impl std::fmt::Display) -> GgufError {
    GgufError::Tokenizer {
        what,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t.iter().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn merges_from_scores_follow_transformers() {
        // generate_merges({"a":0,"b":1,"ab":2,"ba":3,"aba":4}, scores) in transformers 5.23 gives
        // [('a','b'), ('ab','a'), ('a','ba'), ('b','a')].
        let tokens = ["a", "b", "ab", "ba", "aba"];
        let scores = [0.0, 0.0, -1.0, -3.0, -2.0];
        let vocab: HashMap<&str, u32> = tokens.iter().enumerate().map(|(i, t)| (*t, i as u32)).collect();
        let m = merges_from_scores(&tokens, &scores, &vocab);
        let m: Vec<(&str, &str)> = m.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        assert_eq!(m, vec![("a", "b"), ("ab", "a"), ("a", "ba"), ("b", "a")]);
    }

    #[test]
    fn malformed_merges_are_errors() {
        assert!(parse_merges(&["a b"]).is_ok());
        for bad in ["ab", "a b c"] {
            let e = parse_merges(&["x y", bad]).unwrap_err().to_string();
            assert!(e.contains("merge 1"), "{e}");
        }
    }
}

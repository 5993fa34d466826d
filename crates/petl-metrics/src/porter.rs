//! The Porter stemmer as nltk runs it by default, which is how `rouge-score`
//! stems (`nltk.stem.porter.PorterStemmer()`, mode `NLTK_EXTENSIONS`).
//!
//! The algorithm is Porter (1980), "An algorithm for suffix stripping",
//! Program 14(3): 130–137, with the deviations nltk's default mode makes:
//!
//! - a table of irregular forms (`skies → sky`, `dying → die`, `news → news`, …)
//!   is consulted first;
//! - words of one or two characters are returned unchanged (Martin Porter's
//!   own implementations do the same);
//! - step 1a maps a four-letter `-ies` word to `-ie` (`dies → die`), step 1b maps
//!   `-ied` to `-ie`/`-i` the same way (`died → die`, `spied → spi`);
//! - the `*o` condition also holds for a two-letter vowel–consonant stem;
//! - step 1c turns `y` into `i` only after a consonant that is not the first
//!   letter (`happy → happi`, `enjoy → enjoy`, `sky → sky`);
//! - step 2 applies `alli → al` first and then runs step 2 again, uses
//!   `bli → ble` instead of the paper's `abli → able`, and adds `fulli → ful`
//!   and `logi → log` (whose condition counts the `l`);
//! - step 5b's `ll → l` measures the word without its last `l`.
//!
//! Letters are code points; anything but `a e i o u` (and `y` after a
//! vowel or at the start) is a consonant, digits and non-ASCII letters included,
//! exactly as nltk classifies them.

/// Stems `word` as `nltk.stem.porter.PorterStemmer().stem(word)` does.
///
/// The word is lowercased first (Unicode lowercasing, as Python's
/// `str.lower`).
///
/// ```
/// use petl_metrics::porter_stem;
///
/// assert_eq!(porter_stem("caresses"), "caress");
/// assert_eq!(porter_stem("relational"), "relat");
/// assert_eq!(porter_stem("generously"), "gener");
/// assert_eq!(porter_stem("Skies"), "sky"); // nltk's irregular forms
/// ```
pub fn porter_stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(stem) = irregular_form(&lower) {
        return stem.to_owned();
    }
    // nltk measures the word as given, not its lowercase form, for this rule.
    if word.chars().count() <= 2 {
        return lower;
    }
    let mut w: Vec<char> = lower.chars().collect();
    step1a(&mut w);
    step1b(&mut w);
    step1c(&mut w);
    step2(&mut w);
    step3(&mut w);
    step4(&mut w);
    step5a(&mut w);
    step5b(&mut w);
    w.into_iter().collect()
}

/// nltk's table of irregular forms, consulted before any rule.
fn irregular_form(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn is_vowel_letter(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Whether each letter is a consonant: `y` is one at the start or after a
/// vowel, and a vowel after a consonant.
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let consonant = if is_vowel_letter(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(consonant);
    }
    flags
}

fn is_consonant(w: &[char], i: usize) -> bool {
    consonant_flags(&w[..=i])[i]
}

/// Porter's m: the number of vowel-run → consonant-run transitions.
fn measure(stem: &[char]) -> usize {
    consonant_flags(stem).windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(stem: &[char]) -> bool {
    consonant_flags(stem).iter().any(|&c| !c)
}

/// Condition `*d`: the word ends with two equal consonants.
fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// Condition `*o`: consonant–vowel–consonant at the end, the last not `w`, `x`
/// or `y`; nltk also accepts a two-letter vowel–consonant word (any consonant).
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    if n >= 3 {
        let f = consonant_flags(w);
        if f[n - 3] && !f[n - 2] && f[n - 1] && !matches!(w[n - 1], 'w' | 'x' | 'y') {
            return true;
        }
    }
    n == 2 && {
        let f = consonant_flags(w);
        !f[0] && f[1]
    }
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let n = suffix.chars().count();
    w.len() >= n && w[w.len() - n..].iter().copied().eq(suffix.chars())
}

fn replace_suffix(w: &mut Vec<char>, suffix_len: usize, replacement: &str) {
    w.truncate(w.len() - suffix_len);
    w.extend(replacement.chars());
}

/// When a rule whose suffix matches may fire: given the stem (the word
/// without the suffix) and the whole word.
type Condition = fn(stem: &[char], word: &[char]) -> bool;

/// A suffix rule: replace `suffix` by `replacement` if `condition` holds.
struct Rule {
    suffix: &'static str,
    replacement: &'static str,
    condition: Condition,
}

const fn rule(suffix: &'static str, replacement: &'static str, condition: Condition) -> Rule {
    Rule {
        suffix,
        replacement,
        condition,
    }
}

fn always(_: &[char], _: &[char]) -> bool {
    true
}

fn m_gt_0(stem: &[char], _: &[char]) -> bool {
    measure(stem) > 0
}

fn m_gt_1(stem: &[char], _: &[char]) -> bool {
    measure(stem) > 1
}

/// Applies the first rule whose suffix matches; if its condition fails the
/// word is left alone (later rules are not tried), as in the paper.
fn apply_rules(w: &mut Vec<char>, rules: &[Rule]) {
    for r in rules {
        if ends_with(w, r.suffix) {
            let stem_len = w.len() - r.suffix.chars().count();
            if (r.condition)(&w[..stem_len], w) {
                replace_suffix(w, r.suffix.chars().count(), r.replacement);
            }
            return;
        }
    }
}

/// Step 1a: plurals (`caresses → caress`, `ponies → poni`, `cats → cat`).
fn step1a(w: &mut Vec<char>) {
    if ends_with(w, "ies") && w.len() == 4 {
        replace_suffix(w, 3, "ie");
        return;
    }
    const RULES: [Rule; 4] = [
        rule("sses", "ss", always),
        rule("ies", "i", always),
        rule("ss", "ss", always),
        rule("s", "", always),
    ];
    apply_rules(w, &RULES);
}

/// Step 1b: `-eed`, `-ed`, `-ing` and the tidying after them.
fn step1b(w: &mut Vec<char>) {
    if ends_with(w, "ied") {
        let replacement = if w.len() == 4 { "ie" } else { "i" };
        replace_suffix(w, 3, replacement);
        return;
    }
    if ends_with(w, "eed") {
        if measure(&w[..w.len() - 3]) > 0 {
            replace_suffix(w, 3, "ee");
        }
        return;
    }
    let removed = if ends_with(w, "ed") && contains_vowel(&w[..w.len() - 2]) {
        2
    } else if ends_with(w, "ing") && contains_vowel(&w[..w.len() - 3]) {
        3
    } else {
        return;
    };
    w.truncate(w.len() - removed);
    if ends_with(w, "at") || ends_with(w, "bl") || ends_with(w, "iz") {
        w.push('e');
    } else if ends_double_consonant(w) {
        if !matches!(w[w.len() - 1], 'l' | 's' | 'z') {
            w.pop();
        }
    } else if measure(w) == 1 && ends_cvc(w) {
        w.push('e');
    }
}

/// Step 1c: `y → i` after a consonant that is not the first letter.
fn step1c(w: &mut Vec<char>) {
    if ends_with(w, "y") {
        let stem = &w[..w.len() - 1];
        if stem.len() > 1 && is_consonant(stem, stem.len() - 1) {
            replace_suffix(w, 1, "i");
        }
    }
}

/// Step 2: double suffixes to single ones (`relational → relate`).
fn step2(w: &mut Vec<char>) {
    if ends_with(w, "alli") && measure(&w[..w.len() - 4]) > 0 {
        replace_suffix(w, 4, "al");
    }
    // `logi`'s condition measures the stem with the `l` kept, so that short
    // stems like `geo-` in `geologi` qualify.
    fn logi(_: &[char], word: &[char]) -> bool {
        measure(&word[..word.len() - 3]) > 0
    }
    const RULES: [Rule; 22] = [
        rule("ational", "ate", m_gt_0),
        rule("tional", "tion", m_gt_0),
        rule("enci", "ence", m_gt_0),
        rule("anci", "ance", m_gt_0),
        rule("izer", "ize", m_gt_0),
        rule("bli", "ble", m_gt_0),
        rule("alli", "al", m_gt_0),
        rule("entli", "ent", m_gt_0),
        rule("eli", "e", m_gt_0),
        rule("ousli", "ous", m_gt_0),
        rule("ization", "ize", m_gt_0),
        rule("ation", "ate", m_gt_0),
        rule("ator", "ate", m_gt_0),
        rule("alism", "al", m_gt_0),
        rule("iveness", "ive", m_gt_0),
        rule("fulness", "ful", m_gt_0),
        rule("ousness", "ous", m_gt_0),
        rule("aliti", "al", m_gt_0),
        rule("iviti", "ive", m_gt_0),
        rule("biliti", "ble", m_gt_0),
        rule("fulli", "ful", m_gt_0),
        rule("logi", "log", logi),
    ];
    apply_rules(w, &RULES);
}

/// Step 3: `-icate`, `-ative`, `-ful`, `-ness`, ….
fn step3(w: &mut Vec<char>) {
    const RULES: [Rule; 7] = [
        rule("icate", "ic", m_gt_0),
        rule("ative", "", m_gt_0),
        rule("alize", "al", m_gt_0),
        rule("iciti", "ic", m_gt_0),
        rule("ical", "ic", m_gt_0),
        rule("ful", "", m_gt_0),
        rule("ness", "", m_gt_0),
    ];
    apply_rules(w, &RULES);
}

/// Step 4: drop a suffix from a stem with m > 1.
fn step4(w: &mut Vec<char>) {
    fn ion(stem: &[char], _: &[char]) -> bool {
        measure(stem) > 1 && matches!(stem.last(), Some('s' | 't'))
    }
    const RULES: [Rule; 19] = [
        rule("al", "", m_gt_1),
        rule("ance", "", m_gt_1),
        rule("ence", "", m_gt_1),
        rule("er", "", m_gt_1),
        rule("ic", "", m_gt_1),
        rule("able", "", m_gt_1),
        rule("ible", "", m_gt_1),
        rule("ant", "", m_gt_1),
        rule("ement", "", m_gt_1),
        rule("ment", "", m_gt_1),
        rule("ent", "", m_gt_1),
        rule("ion", "", ion),
        rule("ou", "", m_gt_1),
        rule("ism", "", m_gt_1),
        rule("ate", "", m_gt_1),
        rule("iti", "", m_gt_1),
        rule("ous", "", m_gt_1),
        rule("ive", "", m_gt_1),
        rule("ize", "", m_gt_1),
    ];
    apply_rules(w, &RULES);
}

/// Step 5a: a final `e` goes if m > 1, or m = 1 and the stem is not `*o`.
///
/// Both conditions are tried (unlike a rule list, where the first matching
/// suffix decides), as the paper's examples require.
fn step5a(w: &mut Vec<char>) {
    if ends_with(w, "e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            w.pop();
        }
    }
}

/// Step 5b: `ll → l` when the word without its last `l` has m > 1.
fn step5b(w: &mut Vec<char>) {
    if ends_with(w, "ll") && measure(&w[..w.len() - 1]) > 1 {
        w.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn measure_matches_the_paper_examples() {
        for (word, m) in [
            ("tr", 0),
            ("ee", 0),
            ("tree", 0),
            ("y", 0),
            ("by", 0),
            ("trouble", 1),
            ("oats", 1),
            ("trees", 1),
            ("ivy", 1),
            ("troubles", 2),
            ("private", 2),
            ("oaten", 2),
            ("orrery", 2),
        ] {
            assert_eq!(measure(&chars(word)), m, "{word}");
        }
    }

    #[test]
    fn y_is_a_consonant_at_the_start_and_after_a_vowel() {
        // toy: t, y consonants; syzygy: s, z, g consonants.
        assert_eq!(consonant_flags(&chars("toy")), [true, false, true]);
        assert_eq!(
            consonant_flags(&chars("syzygy")),
            [true, false, true, false, true, false]
        );
        assert_eq!(consonant_flags(&chars("yyy")), [true, false, true]);
    }

    #[test]
    fn paper_examples() {
        for (word, stem) in [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"), // nltk: four-letter -ies → -ie
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("hopping", "hop"),
            ("filing", "file"),
            ("happy", "happi"),
            ("relational", "relat"),
            ("generalizations", "gener"),
            ("oscillators", "oscil"),
            ("controll", "control"),
            ("roll", "roll"),
        ] {
            assert_eq!(porter_stem(word), stem, "{word}");
        }
    }

    #[test]
    fn short_and_non_ascii_words() {
        assert_eq!(porter_stem(""), "");
        assert_eq!(porter_stem("Is"), "is");
        assert_eq!(porter_stem("ÉTÉS"), "été");
        assert_eq!(porter_stem("1990s"), "1990");
    }
}

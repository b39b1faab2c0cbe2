//! Product search for customers: typo-tolerant, prefix-matching, over SQLite FTS5.
//!
//! The index is four tables in a plain SQLite database the caller owns ([`SearchIndex::migrate`]
//! creates them; every name starts with `storefront_search_`):
//!
//! - `_fts`, an FTS5 table of the active products' normalised name and category (unicode61
//!   tokens with 1-, 2- and 3-character prefix indexes: `banan` is a prefix query, and the
//!   1-character index keeps `... 500 g` fast; a trigram tokenizer measured slower and larger,
//!   and corrects nothing on its own);
//! - `_docs`, the FTS row of each product id;
//! - `_vocab`, every distinct word of the indexed products with the number of products that
//!   have it;
//! - `_typos`, the vocabulary's deletion keys (SymSpell): each word under itself and every
//!   string made by deleting up to 1 character (words of up to 4 characters) or 2 (longer).
//!   Two words within edit distance *d* share a key made by at most *d* deletions from each,
//!   so the candidates for a typo are a few dozen indexed look-ups whatever the vocabulary's
//!   size, then checked with a bounded Damerau-Levenshtein (optimal string alignment)
//!   distance.
//!
//! Text is normalised the same way for products and queries ([`normalize`]): lower-cased,
//! common accents folded (`crème` = `creme`), apostrophes dropped (`lay's` = `lays`), anything
//! else that is not a letter or digit separates words, and digits are split from letters
//! (`500ml` = `500 ml`).
//!
//! A query is searched word by word. Each word matches the words of the vocabulary it begins
//! (an FTS5 prefix query; only whole words for short words other than the last, so `g` in
//! `1 g` does not match every word starting with g) and, when it is not itself a word of the
//! vocabulary, the vocabulary words within edit distance 1 (3-4 characters) or 2 (5-20
//! characters) of it, at most [`MAX_CORRECTIONS`] of them. The alternatives of a word are
//! ORed and the words ANDed. When nothing matches, the known words are corrected too (a typo
//! can be another real word: `silk` for `milk`), then words are dropped (those that match
//! nothing, then each one in turn). The FTS5 bm25 ranking of the candidates is then adjusted
//! in Rust: a word matched through a correction costs [`CORRECTION_PENALTY`] per edit, a
//! prefix match [`PREFIX_PENALTY`], a dropped word [`MISSING_PENALTY`]. bm25 scores every
//! product that matches, so a query that may match more than [`BROAD_MATCHES`] products (the
//! vocabulary's counts tell, before FTS5 runs: `s`, `ch`, the first keystrokes) takes the first
//! matches in the index instead, ordered by the penalties alone.
//!
//! Queries are customer input. No user text reaches FTS5 query syntax unquoted: every term is
//! a normalised word (letters and digits only) and is still quoted as an FTS5 string, so `"`,
//! `NEAR(`, `name:`, `*`, `^`, `-`, `AND`, `OR` are plain text. A query of more than
//! [`MAX_QUERY_CHARS`] characters or [`MAX_QUERY_WORDS`] words is refused with an error; a
//! query with no words at all (empty, blanks, punctuation) finds nothing: `Ok` with no hits,
//! so a search box that sends every keystroke needs no special case.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

/// The longest query searched, in characters; a longer one is [`SearchError::TooLong`].
pub const MAX_QUERY_CHARS: usize = 200;
/// The most words a query may have after normalisation; more is [`SearchError::TooManyWords`].
pub const MAX_QUERY_WORDS: usize = 8;
/// The most hits one search returns; a larger `limit` is lowered to this.
pub const MAX_LIMIT: usize = 100;
/// The most corrections tried for one word (closest first, then the most common).
pub const MAX_CORRECTIONS: usize = 8;
/// What one edit of a corrected word costs in the score.
pub const CORRECTION_PENALTY: f64 = 2.0;
/// What matching a longer word by its beginning costs in the score.
pub const PREFIX_PENALTY: f64 = 0.5;
/// What a query word that a hit does not match at all costs in the score.
pub const MISSING_PENALTY: f64 = 6.0;

/// Shorter words are never corrected (too many words are one edit from `ab`).
const MIN_CORRECTED_CHARS: usize = 3;
/// Longer words are never corrected (keys grow with the square of the length).
const MAX_CORRECTED_CHARS: usize = 20;
/// FTS5 candidates fetched per hit asked for, before the penalties re-rank them.
const CANDIDATES_PER_HIT: usize = 4;
const MIN_CANDIDATES: usize = 40;
/// A query that may match more products than this (`s`, `ch`: the first keystrokes) is not
/// ranked by bm25, which scores every match (about 1 ms per 1,000 products): its hits are the
/// first matches in the index, ordered by the penalties alone.
pub const BROAD_MATCHES: i64 = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS storefront_search_docs (
    doc INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE
);
CREATE VIRTUAL TABLE IF NOT EXISTS storefront_search_fts USING fts5(
    name,
    category,
    tokenize = \"unicode61 remove_diacritics 2 categories 'L* N* Co M*'\",
    prefix = '1 2 3'
);
CREATE TABLE IF NOT EXISTS storefront_search_vocab (
    word TEXT PRIMARY KEY NOT NULL,
    docs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storefront_search_typos (
    key TEXT NOT NULL,
    word TEXT NOT NULL,
    PRIMARY KEY (key, word)
) WITHOUT ROWID;
";

/// The best candidates by bm25 (name counts twice the category), with what re-ranking needs.
/// bm25 is computed from the doc-size table; only the candidates' content is read.
const SEARCH: &str = "
SELECT m.doc, m.bm25, f.name, f.category, d.product_id
FROM (
    SELECT rowid AS doc, bm25(storefront_search_fts, 1.0, 0.5) AS bm25
    FROM storefront_search_fts
    WHERE storefront_search_fts MATCH ?1
    ORDER BY bm25
    LIMIT ?2
) AS m
JOIN storefront_search_fts AS f ON f.rowid = m.doc
JOIN storefront_search_docs AS d ON d.doc = m.doc
ORDER BY m.bm25";

/// [`SEARCH`] for broad queries: the first matches, unranked (bm25 reported as 0).
const SEARCH_BROAD: &str = "
SELECT m.doc, 0.0, f.name, f.category, d.product_id
FROM (
    SELECT rowid AS doc
    FROM storefront_search_fts
    WHERE storefront_search_fts MATCH ?1
    LIMIT ?2
) AS m
JOIN storefront_search_fts AS f ON f.rowid = m.doc
JOIN storefront_search_docs AS d ON d.doc = m.doc";

/// A catalog product as the index sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedProduct {
    pub id: String,
    pub name: String,
    /// The category's name (searched too, weighing half the product name).
    pub category: String,
    /// Inactive products are not searchable; upserting one takes it out of the index.
    pub active: bool,
}

/// A product found, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub product_id: String,
    /// Higher is better; comparable only between the hits of one search.
    pub score: f64,
}

/// Why a search or an index update failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query is longer than {max} characters")]
    TooLong { max: usize },
    #[error("the query has {words} words; at most {max} are searched")]
    TooManyWords { words: usize, max: usize },
    #[error("search index database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The product search index, kept in a connection the caller owns (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchIndex;

impl SearchIndex {
    /// Creates the index's tables if they do not exist.
    pub fn migrate(conn: &Connection) -> Result<(), SearchError> {
        conn.execute_batch(SCHEMA)?;
        Ok(())
    }

    /// Adds or replaces products (by id); an inactive product is taken out. All or nothing:
    /// runs in a savepoint, inside the caller's transaction if there is one.
    pub fn upsert(conn: &Connection, products: &[IndexedProduct]) -> Result<(), SearchError> {
        in_savepoint(conn, || {
            for product in products {
                upsert_one(conn, product)?;
            }
            Ok(())
        })
    }

    /// Takes a product out of the index; false when it was not in it.
    pub fn remove(conn: &Connection, product_id: &str) -> Result<bool, SearchError> {
        in_savepoint(conn, || match indexed(conn, product_id)? {
            Some(old) => {
                unindex(conn, &old)?;
                Ok(true)
            }
            None => Ok(false),
        })
    }

    /// Merges the FTS5 index into one segment. Never needed for correct results, but worth
    /// it after a bulk build and now and then after many updates: on the bench's 50,000
    /// products, searches took about 1.5 times as long on the index as the build left it.
    pub fn optimize(conn: &Connection) -> Result<(), SearchError> {
        conn.execute(
            "INSERT INTO storefront_search_fts (storefront_search_fts) VALUES ('optimize')",
            [],
        )?;
        Ok(())
    }

    /// The active products that best match `query`, best first, at most `limit` (itself at
    /// most [`MAX_LIMIT`]). A query without words finds nothing; a query over the limits is
    /// an error (see the module docs).
    pub fn search(conn: &Connection, query: &str, limit: usize) -> Result<Vec<Hit>, SearchError> {
        let words = query_words(query)?;
        let limit = limit.min(MAX_LIMIT);
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let last = words.len() - 1;
        let mut groups = Vec::with_capacity(words.len());
        for (i, word) in words.into_iter().enumerate() {
            groups.push(Group::expand(conn, word, i == last)?);
        }
        let want = (limit * CANDIDATES_PER_HIT).max(MIN_CANDIDATES);
        let mut found = HashMap::new();

        // Every word: as typed, a word it begins, or a correction when it is no word at all.
        if groups.iter().all(Group::matches_something) {
            collect(conn, &groups.iter().collect::<Vec<_>>(), want, &mut found)?;
        }
        // A typo can make another real word ("silk milk").
        if found.is_empty() {
            let mut widened = false;
            for group in &mut groups {
                widened |= group.correct_known(conn)?;
            }
            if widened && groups.iter().all(Group::matches_something) {
                collect(conn, &groups.iter().collect::<Vec<_>>(), want, &mut found)?;
            }
        }
        // Fewer words: those that match something, then each of them left out in turn.
        if found.is_empty() && groups.len() > 1 {
            let matching: Vec<&Group> = groups
                .iter()
                .filter(|group| group.matches_something())
                .collect();
            if !matching.is_empty() && matching.len() < groups.len() {
                collect(conn, &matching, want, &mut found)?;
            }
            if found.is_empty() && matching.len() > 1 {
                for left_out in 0..matching.len() {
                    let fewer: Vec<&Group> = matching
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != left_out)
                        .map(|(_, group)| *group)
                        .collect();
                    collect(conn, &fewer, want, &mut found)?;
                }
            }
        }
        Ok(rank(&groups, found, limit))
    }
}

/// A query word and what it may match.
#[derive(Debug)]
struct Group {
    typed: String,
    /// The word is in the vocabulary as typed.
    known: bool,
    alternatives: Vec<Alternative>,
}

/// One way a query word can match: a vocabulary word, or every word it begins.
#[derive(Debug)]
struct Alternative {
    word: String,
    prefix: bool,
    penalty: f64,
    /// Products with the word (with a prefix: an upper bound of those with a word it begins).
    docs: i64,
}

impl Group {
    fn expand(conn: &Connection, typed: String, last: bool) -> Result<Group, SearchError> {
        let probe = probe(conn, &typed)?;
        let (known, begins_longer) = (probe.docs > 0, probe.begins_longer);
        let mut alternatives = Vec::new();
        if known || begins_longer {
            let short = typed.chars().count() < MIN_CORRECTED_CHARS;
            let prefix = begins_longer && (last || !known || !short);
            alternatives.push(Alternative {
                word: typed.clone(),
                prefix,
                penalty: 0.0,
                docs: if prefix {
                    probe.prefix_docs
                } else {
                    probe.docs
                },
            });
        }
        if !known {
            alternatives.extend(corrections(conn, &typed, begins_longer)?);
        }
        Ok(Group {
            typed,
            known,
            alternatives,
        })
    }

    /// Adds the corrections of a known word; true if there were any.
    fn correct_known(&mut self, conn: &Connection) -> Result<bool, SearchError> {
        if !self.known {
            return Ok(false);
        }
        let begins_longer = self.alternatives.iter().any(|a| a.prefix);
        let more = corrections(conn, &self.typed, begins_longer)?;
        let widened = !more.is_empty();
        self.alternatives.extend(more);
        Ok(widened)
    }

    fn matches_something(&self) -> bool {
        !self.alternatives.is_empty()
    }

    /// At most how many products match this word.
    fn estimate(&self) -> i64 {
        self.alternatives.iter().map(|a| a.docs).sum()
    }

    /// The FTS5 expression: the alternatives, each quoted, ORed.
    fn expression(&self) -> String {
        let terms: Vec<String> = self
            .alternatives
            .iter()
            .map(|a| {
                let term = quote(&a.word);
                if a.prefix { term + "*" } else { term }
            })
            .collect();
        format!("({})", terms.join(" OR "))
    }

    /// What the best match of this word among a product's words costs.
    fn penalty(&self, tokens: &[&str]) -> f64 {
        let mut best = MISSING_PENALTY;
        for alternative in &self.alternatives {
            for token in tokens {
                let cost = if *token == alternative.word {
                    alternative.penalty
                } else if alternative.prefix && token.starts_with(alternative.word.as_str()) {
                    alternative.penalty + PREFIX_PENALTY
                } else {
                    continue;
                };
                best = best.min(cost);
            }
        }
        best
    }
}

/// An FTS5 string: the text between double quotes, quotes doubled. Words are letters and
/// digits only; quoting is what keeps them text, whatever they spell (`NEAR`, `AND`).
fn quote(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\"\""))
}

/// Whether `word` is in the vocabulary, and whether a longer vocabulary word begins with it.
/// What the vocabulary has of a word.
#[derive(Debug, Default)]
struct Probe {
    /// Products with the word itself (0: not a word of the vocabulary).
    docs: i64,
    /// Whether a longer word begins with it.
    begins_longer: bool,
    /// Products with a word it begins (summed over the words, so an upper bound, and over
    /// the first [`PROBED_WORDS`] of them only).
    prefix_docs: i64,
}

/// How many vocabulary words a probe reads at most.
const PROBED_WORDS: i64 = 1_000;

/// Looks a word up in the vocabulary, with the words it begins.
fn probe(conn: &Connection, word: &str) -> Result<Probe, SearchError> {
    // U+10FFFF is not alphanumeric, so no word has it: every word beginning `word` sorts
    // before `word` followed by it.
    let mut statement = conn.prepare_cached(
        "SELECT word, docs FROM storefront_search_vocab
         WHERE word >= ?1 AND word < ?1 || char(1114111)
         LIMIT ?2",
    )?;
    let mut rows = statement.query(params![word, PROBED_WORDS])?;
    let mut probe = Probe::default();
    while let Some(row) = rows.next()? {
        let found: String = row.get(0)?;
        let docs: i64 = row.get(1)?;
        if found == word {
            probe.docs = docs;
        } else {
            probe.begins_longer = true;
        }
        probe.prefix_docs += docs;
    }
    Ok(probe)
}

/// The vocabulary words within the word's edit distance, closest and then most common first.
/// With `skip_longer`, words that begin with `typed` are left out (its prefix query has them).
fn corrections(
    conn: &Connection,
    typed: &str,
    skip_longer: bool,
) -> Result<Vec<Alternative>, SearchError> {
    let chars: Vec<char> = typed.chars().collect();
    if chars.len() < MIN_CORRECTED_CHARS
        || chars.len() > MAX_CORRECTED_CHARS
        || chars.iter().any(|c| c.is_numeric())
    {
        return Ok(Vec::new());
    }
    let max = max_distance(chars.len());
    let mut statement = conn.prepare_cached(
        "SELECT t.word, v.docs FROM storefront_search_typos AS t
         JOIN storefront_search_vocab AS v ON v.word = t.word
         WHERE t.key = ?1",
    )?;
    let mut seen = HashSet::new();
    let mut found: Vec<(usize, i64, String)> = Vec::new();
    for key in deletion_keys(&chars, max) {
        let mut rows = statement.query([key])?;
        while let Some(row) = rows.next()? {
            let word: String = row.get(0)?;
            if word == typed
                || (skip_longer && word.starts_with(typed))
                || !seen.insert(word.clone())
            {
                continue;
            }
            let candidate: Vec<char> = word.chars().collect();
            if let Some(distance) = edit_distance(&chars, &candidate, max) {
                found.push((distance, row.get(1)?, word));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    found.truncate(MAX_CORRECTIONS);
    Ok(found
        .into_iter()
        .map(|(distance, docs, word)| Alternative {
            word,
            prefix: false,
            // At most MAX_CORRECTED_CHARS + 2.
            penalty: CORRECTION_PENALTY * distance as f64,
            docs,
        })
        .collect())
}

/// How many edits a word of `chars` characters may be corrected by.
fn max_distance(chars: usize) -> usize {
    if chars <= 4 { 1 } else { 2 }
}

/// A product found by one of the FTS5 queries of a search.
#[derive(Debug)]
struct Candidate {
    bm25: f64,
    name: String,
    category: String,
    product_id: String,
}

/// Runs the AND of `groups` and adds its best `want` matches to `found`: by bm25, or the
/// first in the index when so many products may match that ranking them all would be slow
/// (see [`BROAD_MATCHES`]).
fn collect(
    conn: &Connection,
    groups: &[&Group],
    want: usize,
    found: &mut HashMap<i64, Candidate>,
) -> Result<(), SearchError> {
    let expression = groups
        .iter()
        .map(|group| group.expression())
        .collect::<Vec<_>>()
        .join(" AND ");
    let broad = groups
        .iter()
        .map(|group| group.estimate())
        .min()
        .is_some_and(|estimate| estimate > BROAD_MATCHES);
    let mut statement = conn.prepare_cached(if broad { SEARCH_BROAD } else { SEARCH })?;
    let mut rows = statement.query(params![expression, i64::try_from(want).unwrap_or(i64::MAX)])?;
    while let Some(row) = rows.next()? {
        let doc: i64 = row.get(0)?;
        let candidate = Candidate {
            bm25: row.get(1)?,
            name: row.get(2)?,
            category: row.get(3)?,
            product_id: row.get(4)?,
        };
        match found.get(&doc) {
            Some(kept) if kept.bm25 <= candidate.bm25 => {}
            _ => {
                found.insert(doc, candidate);
            }
        }
    }
    Ok(())
}

/// The candidates scored (bm25, lower is better in FTS5, less the penalties), best first.
fn rank(groups: &[Group], found: HashMap<i64, Candidate>, limit: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = found
        .into_values()
        .map(|candidate| {
            let tokens: Vec<&str> = candidate
                .name
                .split(' ')
                .chain(candidate.category.split(' '))
                .filter(|token| !token.is_empty())
                .collect();
            let penalty: f64 = groups.iter().map(|group| group.penalty(&tokens)).sum();
            Hit {
                product_id: candidate.product_id,
                score: -candidate.bm25 - penalty,
            }
        })
        .collect();
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    hits.truncate(limit);
    hits
}

/// The normalised words of a query, refusing one over the limits.
fn query_words(query: &str) -> Result<Vec<String>, SearchError> {
    // Four bytes at most per character: longer is too long without counting.
    if query.len() > MAX_QUERY_CHARS * 4 || query.chars().count() > MAX_QUERY_CHARS {
        return Err(SearchError::TooLong {
            max: MAX_QUERY_CHARS,
        });
    }
    let words = words(query);
    if words.len() > MAX_QUERY_WORDS {
        return Err(SearchError::TooManyWords {
            words: words.len(),
            max: MAX_QUERY_WORDS,
        });
    }
    Ok(words)
}

/// The index's form of a text: its words (see [`words`]) joined by single spaces.
pub fn normalize(text: &str) -> String {
    words(text).join(" ")
}

/// The words of a text, lower-cased with common accents folded; apostrophes are dropped,
/// whatever else is not a letter or a digit separates words, and so does a change between
/// digits and letters.
fn words(text: &str) -> Vec<String> {
    let mut split = Split::default();
    for c in text.chars() {
        for lower in c.to_lowercase() {
            match lower {
                '\'' | '\u{2019}' | '\u{02bc}' => {}
                // Combining diacritical marks (decomposed accents).
                '\u{0300}'..='\u{036f}' => {}
                _ => match fold(lower) {
                    Some(folded) => folded.chars().for_each(|f| split.push(f)),
                    None => split.push(lower),
                },
            }
        }
    }
    split.finish()
}

#[derive(Default)]
struct Split {
    words: Vec<String>,
    word: String,
    digits: bool,
}

impl Split {
    fn push(&mut self, c: char) {
        if !c.is_alphanumeric() {
            self.end_word();
            return;
        }
        let digit = c.is_numeric();
        if digit != self.digits {
            self.end_word();
        }
        self.digits = digit;
        self.word.push(c);
    }

    fn end_word(&mut self) {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.end_word();
        self.words
    }
}

/// Common accented Latin letters (lower case) without their accents.
fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'ĉ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ł' | 'ľ' | 'ļ' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ť' | 'ţ' | 'ț' => "t",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'þ' => "th",
        _ => return None,
    })
}

/// The restricted Damerau-Levenshtein (optimal string alignment) distance between `a` and
/// `b` when it is at most `max`: insertions, deletions, substitutions and transpositions of
/// adjacent characters cost 1. Stops as soon as a row exceeds `max`.
fn edit_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for (i, &ac) in a.iter().enumerate() {
        current[0] = i + 1;
        let mut row_min = current[0];
        for (j, &bc) in b.iter().enumerate() {
            let mut cost = (previous[j + 1] + 1)
                .min(current[j] + 1)
                .min(previous[j] + usize::from(ac != bc));
            if i > 0 && j > 0 && ac == b[j - 1] && a[i - 1] == bc {
                cost = cost.min(before[j - 1] + 1);
            }
            current[j + 1] = cost;
            row_min = row_min.min(cost);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    let distance = previous[b.len()];
    (distance <= max).then_some(distance)
}

/// The word itself and every string made by deleting up to `depth` of its characters.
fn deletion_keys(chars: &[char], depth: usize) -> Vec<String> {
    let mut keys: HashSet<String> = HashSet::new();
    keys.insert(chars.iter().collect());
    let mut frontier: Vec<Vec<char>> = vec![chars.to_vec()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for word in &frontier {
            for i in 0..word.len() {
                let mut shorter = word.clone();
                shorter.remove(i);
                if keys.insert(shorter.iter().collect()) {
                    next.push(shorter);
                }
            }
        }
        frontier = next;
    }
    keys.into_iter().collect()
}

/// The deletion keys a vocabulary word is filed under: deep enough for every query word it
/// is within [`max_distance`] of (a query word longer than a 4-character word needs at least
/// one of its edits to be a deletion on its own side, so 1 deletion here is enough).
fn vocabulary_keys(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() < MIN_CORRECTED_CHARS - 1
        || chars.len() > MAX_CORRECTED_CHARS + 2
        || chars.iter().any(|c| c.is_numeric())
    {
        return Vec::new();
    }
    deletion_keys(&chars, max_distance(chars.len()))
}

/// Runs `write` in a savepoint: all of it, or none of it.
fn in_savepoint<T>(
    conn: &Connection,
    write: impl FnOnce() -> Result<T, SearchError>,
) -> Result<T, SearchError> {
    conn.execute_batch("SAVEPOINT storefront_search")?;
    match write() {
        Ok(value) => {
            conn.execute_batch("RELEASE storefront_search")?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) =
                conn.execute_batch("ROLLBACK TO storefront_search; RELEASE storefront_search")
            {
                tracing::warn!(%rollback, %error, "storefront search: rolling back an update");
            }
            Err(error)
        }
    }
}

/// A product as it is in the index.
#[derive(Debug)]
struct Indexed {
    doc: i64,
    name: String,
    category: String,
}

fn indexed(conn: &Connection, product_id: &str) -> Result<Option<Indexed>, SearchError> {
    Ok(conn
        .prepare_cached(
            "SELECT d.doc, f.name, f.category FROM storefront_search_docs AS d
             JOIN storefront_search_fts AS f ON f.rowid = d.doc
             WHERE d.product_id = ?1",
        )?
        .query_row([product_id], |row| {
            Ok(Indexed {
                doc: row.get(0)?,
                name: row.get(1)?,
                category: row.get(2)?,
            })
        })
        .optional()?)
}

fn upsert_one(conn: &Connection, product: &IndexedProduct) -> Result<(), SearchError> {
    let name = normalize(&product.name);
    let category = normalize(&product.category);
    if let Some(old) = indexed(conn, &product.id)? {
        if product.active && old.name == name && old.category == category {
            return Ok(());
        }
        unindex(conn, &old)?;
    }
    if !product.active {
        return Ok(());
    }
    let doc: i64 = conn
        .prepare_cached(
            "INSERT INTO storefront_search_docs (product_id) VALUES (?1) RETURNING doc",
        )?
        .query_row([&product.id], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO storefront_search_fts (rowid, name, category) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![doc, name, category])?;
    for word in distinct_words(&name, &category) {
        let docs: i64 = conn
            .prepare_cached(
                "INSERT INTO storefront_search_vocab (word, docs) VALUES (?1, 1)
                 ON CONFLICT (word) DO UPDATE SET docs = docs + 1
                 RETURNING docs",
            )?
            .query_row([word], |row| row.get(0))?;
        if docs == 1 {
            let mut file = conn.prepare_cached(
                "INSERT OR IGNORE INTO storefront_search_typos (key, word) VALUES (?1, ?2)",
            )?;
            for key in vocabulary_keys(word) {
                file.execute(params![key, word])?;
            }
        }
    }
    Ok(())
}

fn unindex(conn: &Connection, old: &Indexed) -> Result<(), SearchError> {
    conn.prepare_cached("DELETE FROM storefront_search_fts WHERE rowid = ?1")?
        .execute([old.doc])?;
    conn.prepare_cached("DELETE FROM storefront_search_docs WHERE doc = ?1")?
        .execute([old.doc])?;
    for word in distinct_words(&old.name, &old.category) {
        let docs: Option<i64> = conn
            .prepare_cached(
                "UPDATE storefront_search_vocab SET docs = docs - 1 WHERE word = ?1
                 RETURNING docs",
            )?
            .query_row([word], |row| row.get(0))
            .optional()?;
        if docs.is_some_and(|docs| docs <= 0) {
            conn.prepare_cached("DELETE FROM storefront_search_vocab WHERE word = ?1")?
                .execute([word])?;
            let mut unfile = conn.prepare_cached(
                "DELETE FROM storefront_search_typos WHERE key = ?1 AND word = ?2",
            )?;
            for key in vocabulary_keys(word) {
                unfile.execute(params![key, word])?;
            }
        }
    }
    Ok(())
}

/// The distinct words of a normalised name and category.
fn distinct_words<'a>(name: &'a str, category: &'a str) -> HashSet<&'a str> {
    name.split(' ')
        .chain(category.split(' '))
        .filter(|word| !word.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CATALOG: &[(&str, &str, &str)] = &[
        ("choc-milk", "Amul Chocolate Milk 200 ml", "Dairy"),
        ("dark-choc", "Cadbury Dark Chocolate 80 g", "Chocolates"),
        ("toned-milk", "Amul Toned Milk 500 ml", "Dairy"),
        ("org-milk", "Akshayakalpa Organic Milk 1 l", "Dairy"),
        ("org-eggs", "Happy Hens Organic Eggs 6 pcs", "Eggs"),
        ("brown-eggs", "Farm Fresh Brown Eggs 12 pcs", "Eggs"),
        ("banana", "Robusta Banana 1 kg", "Fruits"),
        ("banana-chips", "Kerala Banana Chips 200 g", "Snacks"),
        ("bread", "Harvest Gold White Bread 400 g", "Bakery"),
        ("creme", "Crème Brûlée Cups 2 pcs", "Desserts"),
        ("lays", "Lay's Classic Salted Chips 52g", "Snacks"),
        ("apple-juice", "Tropicana Apple Juice 1 l", "Beverages"),
        ("orange-juice", "Tropicana Orange Juice 1 l", "Beverages"),
        ("paneer", "Amul Malai Paneer 200 g", "Dairy"),
        ("basmati", "India Gate Basmati Rice 5 kg", "Staples"),
        ("near-cola", "Near East Cola 750 ml", "Beverages"),
        ("doodh", "दूध Fresh 1 l", "Dairy"),
        ("silk", "Silk Saree Wash 500 ml", "Household"),
        ("circled", "Ⓐ Brand Tea 100 g", "Beverages"),
    ];

    fn product(id: &str, name: &str, category: &str) -> IndexedProduct {
        IndexedProduct {
            id: id.to_owned(),
            name: name.to_owned(),
            category: category.to_owned(),
            active: true,
        }
    }

    fn index() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        SearchIndex::migrate(&conn).unwrap();
        let products: Vec<IndexedProduct> = CATALOG
            .iter()
            .map(|(id, name, category)| product(id, name, category))
            .collect();
        SearchIndex::upsert(&conn, &products).unwrap();
        conn
    }

    fn ids(conn: &Connection, query: &str) -> Vec<String> {
        SearchIndex::search(conn, query, 10)
            .unwrap()
            .into_iter()
            .map(|hit| hit.product_id)
            .collect()
    }

    fn first(conn: &Connection, query: &str) -> Option<String> {
        ids(conn, query).into_iter().next()
    }

    #[test]
    fn fts5_is_compiled_in() {
        let conn = Connection::open_in_memory().unwrap();
        let used: i64 = conn
            .query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(used, 1);
        SearchIndex::migrate(&conn).unwrap();
        // Twice is fine.
        SearchIndex::migrate(&conn).unwrap();
    }

    #[test]
    fn a_typo_is_corrected() {
        let conn = index();
        let hits = ids(&conn, "choclate");
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert!(hits.contains(&"choc-milk".to_owned()));
        assert!(hits.contains(&"dark-choc".to_owned()));
        assert_eq!(first(&conn, "choclate milk").as_deref(), Some("choc-milk"));
        assert_eq!(first(&conn, "Orgnic Eggs").as_deref(), Some("org-eggs"));
        // A transposition in a short word, two edits in a long one.
        assert_eq!(first(&conn, "mlik organic").as_deref(), Some("org-milk"));
        assert_eq!(first(&conn, "basmtai rcie").as_deref(), Some("basmati"));
        assert_eq!(
            first(&conn, "tropicnaa orange").as_deref(),
            Some("orange-juice")
        );
    }

    #[test]
    fn a_real_word_typo_is_corrected_when_nothing_else_matches() {
        let conn = index();
        // "silk" is in the vocabulary; "toned silk" matches nothing as typed.
        assert_eq!(first(&conn, "toned silk").as_deref(), Some("toned-milk"));
    }

    #[test]
    fn a_prefix_finds_the_word() {
        let conn = index();
        assert_eq!(first(&conn, "banan").as_deref(), Some("banana"));
        assert_eq!(ids(&conn, "banan").len(), 2);
        assert_eq!(first(&conn, "banana chi").as_deref(), Some("banana-chips"));
        assert_eq!(first(&conn, "pan").as_deref(), Some("paneer"));
        assert_eq!(
            first(&conn, "tropicana app").as_deref(),
            Some("apple-juice")
        );
    }

    #[test]
    fn every_word_counts() {
        let conn = index();
        assert_eq!(first(&conn, "organic eggs").as_deref(), Some("org-eggs"));
        assert_eq!(first(&conn, "organic milk").as_deref(), Some("org-milk"));
        assert_eq!(
            first(&conn, "amul milk toned").as_deref(),
            Some("toned-milk")
        );
        let eggs = ids(&conn, "eggs");
        assert_eq!(eggs.len(), 2, "{eggs:?}");
        // A word that matches nothing is dropped rather than failing the search.
        assert_eq!(
            first(&conn, "amul paneer zzzzqx").as_deref(),
            Some("paneer")
        );
        // Words split from digits: "52g" is "52 g", "1kg" is "1 kg".
        assert_eq!(first(&conn, "salted chips 52 g").as_deref(), Some("lays"));
        assert_eq!(first(&conn, "banana 1kg").as_deref(), Some("banana"));
    }

    #[test]
    fn accents_and_apostrophes_fold() {
        let conn = index();
        assert_eq!(first(&conn, "creme brulee").as_deref(), Some("creme"));
        assert_eq!(first(&conn, "CRÈME").as_deref(), Some("creme"));
        assert_eq!(first(&conn, "bananà").as_deref(), Some("banana"));
        assert_eq!(first(&conn, "lays classic").as_deref(), Some("lays"));
        assert_eq!(first(&conn, "lay's").as_deref(), Some("lays"));
        assert_eq!(first(&conn, "दूध").as_deref(), Some("doodh"));
        assert_eq!(normalize("Crème  Brûlée, 500ml!"), "creme brulee 500 ml");
        // Decomposed: e + combining grave accent.
        assert_eq!(normalize("Cre\u{0300}me"), "creme");
    }

    #[test]
    fn query_syntax_is_text() {
        let conn = index();
        let all = CATALOG.len();
        for query in [
            "\"",
            "\"\"",
            "'",
            "NEAR(",
            "NEAR(milk eggs)",
            "name:",
            "name:milk",
            "category:*",
            "*",
            "milk*",
            "-",
            "-milk",
            "^milk",
            "AND OR",
            "milk AND OR NOT eggs",
            "OR",
            "NOT",
            "(",
            ")",
            "{name}: milk",
            "\"milk\" OR \"",
            "milk\0eggs",
            "ⓐⓑⓒ",
            "ⓐ",
            "Ⓐ brand",
            "%_%",
            "'; DROP TABLE storefront_search_docs; --",
        ] {
            let hits = SearchIndex::search(&conn, query, MAX_LIMIT)
                .unwrap_or_else(|e| panic!("{query:?}: {e}"));
            assert!(hits.len() < all, "{query:?} matched everything: {hits:?}");
        }
        assert!(ids(&conn, "\"").is_empty());
        assert!(ids(&conn, "*").is_empty());
        // "or" begins "organic" and "orange"; "and" is no word and is dropped.
        let mut or = ids(&conn, "AND OR");
        or.sort();
        assert_eq!(or, ["orange-juice", "org-eggs", "org-milk"]);
        assert_eq!(first(&conn, "\"banana").as_deref(), Some("banana"));
        assert_eq!(first(&conn, "banana\"*").as_deref(), Some("banana"));
        // "near" is a word like any other.
        assert_eq!(first(&conn, "NEAR(").as_deref(), Some("near-cola"));
        assert_eq!(first(&conn, "name:paneer").as_deref(), Some("paneer"));
        // The index is intact.
        assert_eq!(first(&conn, "paneer").as_deref(), Some("paneer"));
    }

    #[test]
    fn a_broad_query_is_answered_without_ranking_everything() {
        let conn = index();
        let many: Vec<IndexedProduct> = (0..BROAD_MATCHES + 100)
            .map(|i| product(&format!("s{i}"), &format!("Sunny Snack {i}"), "Snacks"))
            .collect();
        SearchIndex::upsert(&conn, &many).unwrap();
        let hits = SearchIndex::search(&conn, "s", 10).unwrap();
        assert_eq!(hits.len(), 10);
        assert_eq!(ids(&conn, "sunny snack").len(), 10);
        // A narrow word among broad ones is ranked as usual.
        assert_eq!(first(&conn, "sunny snack 4321").as_deref(), Some("s4321"));
        assert_eq!(first(&conn, "snack 4321").as_deref(), Some("s4321"));
        assert_eq!(first(&conn, "salted s").as_deref(), Some("lays"));
    }

    #[test]
    fn limits_are_enforced() {
        let conn = index();
        let long = "a".repeat(MAX_QUERY_CHARS + 1);
        assert!(matches!(
            SearchIndex::search(&conn, &long, 10),
            Err(SearchError::TooLong {
                max: MAX_QUERY_CHARS
            })
        ));
        let huge = "é".repeat(100_000);
        assert!(matches!(
            SearchIndex::search(&conn, &huge, 10),
            Err(SearchError::TooLong { .. })
        ));
        // At the limit is fine, even as one long word.
        assert!(
            SearchIndex::search(&conn, &"b".repeat(MAX_QUERY_CHARS), 10)
                .unwrap()
                .is_empty()
        );
        let many = "milk ".repeat(MAX_QUERY_WORDS + 1);
        assert!(matches!(
            SearchIndex::search(&conn, &many, 10),
            Err(SearchError::TooManyWords { words: 9, max: 8 })
        ));
        assert!(SearchIndex::search(&conn, &"milk ".repeat(MAX_QUERY_WORDS), 10).is_ok());
        // Nothing to search for is no hits.
        for empty in ["", "   ", "!!!", "\t\n"] {
            assert!(SearchIndex::search(&conn, empty, 10).unwrap().is_empty());
        }
        assert!(SearchIndex::search(&conn, "milk", 0).unwrap().is_empty());
        assert_eq!(SearchIndex::search(&conn, "milk", 1).unwrap().len(), 1);
        // Hits are ordered by score.
        let hits = SearchIndex::search(&conn, "milk", 10).unwrap();
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn inactive_products_are_not_found() {
        let conn = index();
        let mut retired = product("retired", "Quinoa Puffs 100 g", "Snacks");
        retired.active = false;
        SearchIndex::upsert(&conn, &[retired.clone()]).unwrap();
        assert!(ids(&conn, "quinoa").is_empty());
        retired.active = true;
        SearchIndex::upsert(&conn, &[retired.clone()]).unwrap();
        assert_eq!(ids(&conn, "quinoa"), ["retired"]);
        retired.active = false;
        SearchIndex::upsert(&conn, &[retired]).unwrap();
        assert!(ids(&conn, "quinoa").is_empty());
        assert!(ids(&conn, "quinao").is_empty());
    }

    #[test]
    fn upsert_replaces_and_remove_forgets() {
        let conn = index();
        SearchIndex::upsert(&conn, &[product("kiwi", "Zespri Kiwi 3 pcs", "Fruits")]).unwrap();
        assert_eq!(ids(&conn, "zespri"), ["kiwi"]);
        SearchIndex::upsert(
            &conn,
            &[product("kiwi", "Sungold Kiwifruit 3 pcs", "Fruits")],
        )
        .unwrap();
        assert!(ids(&conn, "zespri").is_empty());
        // The old word left the vocabulary: nothing to correct to.
        assert!(ids(&conn, "zesrpi").is_empty());
        assert_eq!(ids(&conn, "sungold"), ["kiwi"]);
        assert_eq!(ids(&conn, "sungodl kiwifriut"), ["kiwi"]);
        // Upserting the same product again changes nothing.
        SearchIndex::upsert(
            &conn,
            &[product("kiwi", "Sungold Kiwifruit 3 pcs", "Fruits")],
        )
        .unwrap();
        assert_eq!(ids(&conn, "sungold"), ["kiwi"]);
        let docs: i64 = conn
            .query_row(
                "SELECT docs FROM storefront_search_vocab WHERE word = 'sungold'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(docs, 1);

        assert!(SearchIndex::remove(&conn, "kiwi").unwrap());
        assert!(!SearchIndex::remove(&conn, "kiwi").unwrap());
        assert!(ids(&conn, "sungold").is_empty());
        let typos: i64 = conn
            .query_row(
                "SELECT count(*) FROM storefront_search_typos WHERE word = 'sungold'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(typos, 0);
        // Words other products still have stay.
        assert_eq!(ids(&conn, "fruits").len(), 1);
    }

    #[test]
    fn a_failed_upsert_changes_nothing() {
        let conn = index();
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON storefront_search_docs
             WHEN NEW.product_id = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let result = SearchIndex::upsert(
            &conn,
            &[
                product("good", "Saffron Strands 1 g", "Spices"),
                product("bad", "Vanilla Pods 2 pcs", "Spices"),
            ],
        );
        assert!(matches!(result, Err(SearchError::Db(_))));
        assert!(ids(&conn, "saffron").is_empty());
        assert!(ids(&conn, "spices").is_empty());
    }

    #[test]
    fn edit_distance_is_bounded_osa() {
        let d = |a: &str, b: &str, max: usize| {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            edit_distance(&a, &b, max)
        };
        assert_eq!(d("milk", "milk", 2), Some(0));
        assert_eq!(d("mlik", "milk", 1), Some(1));
        assert_eq!(d("choclate", "chocolate", 2), Some(1));
        assert_eq!(d("orgnic", "organic", 2), Some(1));
        assert_eq!(d("basmtai", "basmati", 2), Some(1));
        assert_eq!(d("kitten", "sitting", 3), Some(3));
        assert_eq!(d("kitten", "sitting", 2), None);
        assert_eq!(d("ab", "abcd", 1), None);
        assert_eq!(d("", "ab", 2), Some(2));
        assert_eq!(d("ca", "abc", 3), Some(3));
    }

    #[test]
    fn deletion_keys_meet_within_the_distance() {
        let words = [
            "milk",
            "organic",
            "chocolate",
            "banana",
            "tea",
            "eggs",
            "basmati",
        ];
        let typos = [
            "mlik",
            "milkk",
            "mil",
            "orgnic",
            "orgaincs",
            "choclate",
            "chcoolate",
            "bnaana",
            "banaan",
            "tae",
            "teaa",
            "egs",
            "eggz",
            "basmtai",
            "bsamati",
        ];
        for typo in typos {
            let typed: Vec<char> = typo.chars().collect();
            let max = max_distance(typed.len());
            let keys: HashSet<String> = deletion_keys(&typed, max).into_iter().collect();
            for word in words {
                let chars: Vec<char> = word.chars().collect();
                let within = edit_distance(&typed, &chars, max).is_some();
                let shared = vocabulary_keys(word).iter().any(|k| keys.contains(k));
                assert!(
                    !within || shared,
                    "{typo} -> {word}: within {max} but no key"
                );
            }
        }
    }
}

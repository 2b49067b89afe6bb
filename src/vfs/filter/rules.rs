//! Ordered include/exclude rules, and the flags and files they are read from, as rclone reads
//! them: `--include` then `--include-from`, `--exclude` then `--exclude-from`, `--filter` then
//! `--filter-from`, and a final exclude-everything rule when any include was given. The first
//! rule that matches decides; a path no rule matches is included.

use regex::Regex;
use std::io::{BufRead, BufReader, Read};

/// The rule flags of one group (paths, or metadata).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFlags {
    pub filter: Vec<String>,
    pub filter_from: Vec<String>,
    pub exclude: Vec<String>,
    pub exclude_from: Vec<String>,
    pub include: Vec<String>,
    pub include_from: Vec<String>,
}

impl RuleFlags {
    pub fn is_empty(&self) -> bool {
        self == &RuleFlags::default()
    }
}

#[derive(Debug, Default)]
pub struct Rules(Vec<(bool, Regex)>);

impl Rules {
    pub fn push(&mut self, include: bool, re: Regex) {
        // A rule after an identical one can never decide.
        if !self
            .0
            .iter()
            .any(|(i, r)| *i == include && r.as_str() == re.as_str())
        {
            self.0.push((include, re));
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `path` is included: the first rule matching it decides.
    pub fn include(&self, path: &str) -> bool {
        self.0
            .iter()
            .find(|(_, re)| re.is_match(path))
            .is_none_or(|(include, _)| *include)
    }

    /// Whether the first rule matching any of `items` includes.
    pub fn include_any(&self, items: &[String]) -> bool {
        self.0
            .iter()
            .find(|(_, re)| items.iter().any(|s| re.is_match(s)))
            .is_none_or(|(include, _)| *include)
    }
}

/// Where parsed rules go: `add(include, glob)`, and `clear()` for a `!` rule.
pub trait Sink {
    fn add(&mut self, include: bool, glob: &str) -> Result<(), String>;
    fn clear(&mut self);
}

/// Feeds the rules of `flags` to `sink` in rclone's order.
pub fn parse(flags: &RuleFlags, sink: &mut dyn Sink) -> Result<(), String> {
    let mut implicit_exclude = false;
    for glob in &flags.include {
        sink.add(true, glob)?;
        implicit_exclude = true;
    }
    for file in &flags.include_from {
        for_each_line(file, Lines::Rules, &mut |line| sink.add(true, line))?;
        implicit_exclude = true;
    }
    let mut any_exclude = false;
    for glob in &flags.exclude {
        sink.add(false, glob)?;
        any_exclude = true;
    }
    for file in &flags.exclude_from {
        for_each_line(file, Lines::Rules, &mut |line| sink.add(false, line))?;
        any_exclude = true;
    }
    if implicit_exclude && any_exclude {
        log::warn!(
            "using --filter is recommended instead of both --include and --exclude: \
             includes are applied first, whatever the order given"
        );
    }
    for rule in &flags.filter {
        add_rule(rule, sink)?;
    }
    for file in &flags.filter_from {
        for_each_line(file, Lines::Rules, &mut |line| add_rule(line, sink))?;
    }
    if implicit_exclude {
        sink.add(false, "/**")?;
    }
    Ok(())
}

/// One `--filter` rule: `+ glob`, `- glob`, or `!` (forget the rules so far).
fn add_rule(rule: &str, sink: &mut dyn Sink) -> Result<(), String> {
    if rule == "!" {
        sink.clear();
        return Ok(());
    }
    match (rule.strip_prefix("+ "), rule.strip_prefix("- ")) {
        (Some(glob), _) => sink.add(true, glob),
        (_, Some(glob)) => sink.add(false, glob),
        _ => Err(format!("malformed rule {rule:?}")),
    }
}

/// How a file's lines are read.
#[derive(Clone, Copy, PartialEq)]
pub enum Lines {
    /// Trimmed of spaces; blank lines and `#` or `;` comments skipped.
    Rules,
    /// Lines as they are (`--files-from-raw`).
    Raw,
    /// NUL-separated, as they are (`--files-from0`).
    Nul,
}

/// Calls `f` with each line of `path` (`-`: standard input).
pub fn for_each_line(
    path: &str,
    how: Lines,
    f: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    let input: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?)
    };
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let sep = if how == Lines::Nul { b'\0' } else { b'\n' };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(sep, &mut buf)
            .map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&sep) {
            buf.pop();
        }
        if how != Lines::Nul && buf.last() == Some(&b'\r') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf);
        let line = match how {
            Lines::Rules => {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                    continue;
                }
                t
            }
            Lines::Raw | Lines::Nul => &line,
        };
        f(line).map_err(|e| format!("{path}: {e}"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);

    impl Sink for Log {
        fn add(&mut self, include: bool, glob: &str) -> Result<(), String> {
            self.0
                .push(format!("{}{glob}", if include { '+' } else { '-' }));
            Ok(())
        }
        fn clear(&mut self) {
            self.0.push("!".into());
        }
    }

    #[test]
    fn flags_are_read_in_rclones_order_with_the_implicit_exclude_last() {
        let dir = std::env::temp_dir().join(format!("s3serve-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rules");
        std::fs::write(&file, "# comment\n\n ; another\n+ *.txt \r\n!\n- x\n").unwrap();
        let file = file.to_str().unwrap().to_string();
        let flags = RuleFlags {
            filter: vec!["- f".into()],
            filter_from: vec![file.clone()],
            exclude: vec!["e".into()],
            include: vec!["i".into()],
            include_from: vec![file],
            ..Default::default()
        };
        let mut log = Log::default();
        parse(&flags, &mut log).unwrap();
        let got: Vec<&str> = log.0.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            got,
            ["+i", "++ *.txt", "+!", "+- x", "-e", "-f", "+*.txt", "!", "-x", "-/**"]
        );
        let bad = RuleFlags {
            filter: vec!["*.txt".into()],
            ..Default::default()
        };
        assert!(parse(&bad, &mut Log::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn first_match_decides() {
        let mut rules = Rules::default();
        rules.push(true, Regex::new("a").unwrap());
        rules.push(false, Regex::new(".").unwrap());
        assert!(rules.include("xa"));
        assert!(!rules.include("b"));
        assert!(Rules::default().include("anything"));
    }
}

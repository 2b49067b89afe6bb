//! rclone's glob language, translated to regular expressions as rclone translates it, so that
//! every pattern matches exactly the paths it matches under rclone.
//!
//! `*` is any run of characters but `/`, `**` any run at all, `?` one character but `/`,
//! `[…]` a character class (passed through), `{a,b}` alternatives, `{{re}}` a regular
//! expression, and `\` escapes the next character. A pattern starting with `/` is anchored
//! at the root; any other matches at the start of any path segment. Every pattern matches up
//! to the end of the path.

use regex::Regex;

/// Compiles `glob`, anchored as a path rule. `ignore_case` matches letters in either case.
pub fn compile(glob: &str, ignore_case: bool) -> Result<Regex, String> {
    let source = translate(glob, ignore_case)?;
    Regex::new(&source).map_err(|e| format!("bad glob pattern {glob:?} (regexp {source:?}): {e}"))
}

/// The regular expression for `glob`.
fn translate(glob: &str, ignore_case: bool) -> Result<String, String> {
    let mut re = String::with_capacity(glob.len() * 2 + 8);
    if ignore_case {
        re.push_str("(?i)");
    }
    let glob_body = match glob.strip_prefix('/') {
        Some(rest) => {
            re.push('^');
            rest
        }
        None => {
            re.push_str("(^|/)");
            glob
        }
    };
    let mut t = Translation { re, stars: 0, glob };
    let mut braces = 0usize;
    let mut brackets = 0usize;
    let mut escaped = false;
    // Inside `{{ … }}`, and just after its closing `}}` (where more `}` belong to it).
    let mut in_regexp = false;
    let mut regexp_closed = false;
    let mut last = '\0';
    for c in glob_body.chars() {
        let before = std::mem::replace(&mut last, c);
        if escaped {
            t.re.push(c);
            escaped = false;
            continue;
        }
        if regexp_closed {
            if c == '}' {
                // The `}}` was the regexp's own `}` and the end: move the end one on.
                t.re.pop();
                t.re.push('}');
                t.re.push(')');
                continue;
            }
            regexp_closed = false;
        }
        if in_regexp {
            if c == '}' && before == '}' {
                in_regexp = false;
                regexp_closed = true;
                t.re.pop();
                t.re.push(')');
            } else {
                t.re.push(c);
            }
            continue;
        }
        if c != '*' {
            t.flush_stars()?;
        }
        if brackets > 0 {
            t.re.push(c);
            match c {
                '[' => brackets += 1,
                ']' => brackets -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '\\' => {
                t.re.push(c);
                escaped = true;
            }
            '*' => t.stars += 1,
            '?' => t.re.push_str("[^/]"),
            '[' => {
                t.re.push(c);
                brackets += 1;
            }
            ']' => return Err(format!("mismatched ']' in glob {glob:?}")),
            '{' if braces > 0 && before == '{' => {
                // `{{`: the `(` the first brace wrote opens the regexp.
                in_regexp = true;
                braces -= 1;
            }
            '{' => {
                braces += 1;
                t.re.push('(');
            }
            '}' if braces == 0 => {
                return Err(format!("mismatched '{{' and '}}' in glob {glob:?}"));
            }
            '}' => {
                t.re.push(')');
                braces -= 1;
            }
            ',' if braces > 0 => t.re.push('|'),
            '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                t.re.push('\\');
                t.re.push(c);
            }
            _ => t.re.push(c),
        }
    }
    t.flush_stars()?;
    if brackets > 0 {
        return Err(format!("mismatched '[' and ']' in glob {glob:?}"));
    }
    if braces != 0 {
        return Err(format!("mismatched '{{' and '}}' in glob {glob:?}"));
    }
    if in_regexp {
        return Err(format!("mismatched '{{{{' and '}}}}' in glob {glob:?}"));
    }
    t.re.push('$');
    Ok(t.re)
}

struct Translation<'a> {
    re: String,
    /// Stars seen in a row, not yet written.
    stars: usize,
    glob: &'a str,
}

impl Translation<'_> {
    fn flush_stars(&mut self) -> Result<(), String> {
        match std::mem::take(&mut self.stars) {
            0 => {}
            1 => self.re.push_str("[^/]*"),
            2 => self.re.push_str(".*"),
            _ => return Err(format!("too many stars in {:?}", self.glob)),
        }
        Ok(())
    }
}

/// The directory globs an include `glob` implies: every directory a matching file could lie
/// in must be entered. A glob too hard to take apart gives `/**` (every directory).
pub fn dir_globs(glob: &str) -> Vec<String> {
    if too_hard(glob) {
        log::info!("can't figure out directory filters from {glob:?}: looking in all directories");
        return vec!["/**".to_string()];
    }
    let mut glob = squash_slashes(glob);
    let mut out: Vec<String> = Vec::new();
    loop {
        let slash = glob.rfind('/');
        let stars = glob.rfind("**");
        let (cut, what) = match (slash, stars) {
            (s, Some(j)) if s.is_none_or(|i| j > i) => (j, "**"),
            (Some(i), _) => (i, ""),
            _ => {
                if out.is_empty() {
                    out.push("/**".to_string());
                }
                return out;
            }
        };
        glob.truncate(cut);
        let dir = format!("{glob}{what}/");
        if out.last() != Some(&dir) {
            out.push(dir);
        }
    }
}

/// Whether directory globs cannot be worked out from `glob`: it has alternatives holding
/// `**` or `/`, a `{{regexp}}`, or nested braces.
fn too_hard(glob: &str) -> bool {
    if glob.contains("{{") || glob.contains("}}") {
        return true;
    }
    // Each innermost `{…}` (one with no brace inside), and a `{` followed by another `{`
    // before any `}`.
    let bytes = glob.as_bytes();
    let mut open: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => {
                if open.is_some() {
                    return true;
                }
                open = Some(i);
            }
            b'}' => {
                if let Some(start) = open.take() {
                    let inside = &glob[start + 1..i];
                    if inside.contains("**") || inside.contains('/') {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    false
}

fn squash_slashes(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len());
    for c in glob.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_follow_rclone() {
        let cases = [
            ("potato", "(^|/)potato$"),
            ("/potato", "^potato$"),
            ("*.jpg", "(^|/)[^/]*\\.jpg$"),
            ("**.jpg", "(^|/).*\\.jpg$"),
            ("a?c", "(^|/)a[^/]c$"),
            ("[abc]x", "(^|/)[abc]x$"),
            ("[a[:alpha:]]", "(^|/)[a[:alpha:]]$"),
            ("{one,two}.txt", "(^|/)(one|two)\\.txt$"),
            ("a,b", "(^|/)a,b$"),
            ("\\*x", "(^|/)\\*x$"),
            ("a{{.*\\.jpe?g}}", "(^|/)a(.*\\.jpe?g)$"),
            ("{{a{2}}}", "(^|/)(a{2})$"),
            ("(a)+|^$", "(^|/)\\(a\\)\\+\\|\\^\\$$"),
            ("dir/", "(^|/)dir/$"),
        ];
        for (glob, want) in cases {
            assert_eq!(translate(glob, false).as_deref(), Ok(want), "{glob}");
        }
        assert_eq!(translate("a", true).as_deref(), Ok("(?i)(^|/)a$"));
        for bad in ["***", "a]", "[a", "{a", "a}", "{{a", "{{a}"] {
            assert!(compile(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let m = |glob: &str, path: &str| compile(glob, false).unwrap().is_match(path);
        assert!(m("*.jpg", "b/x/y.jpg"));
        assert!(!m("*.jpg", "b/x/y.jpgx"));
        assert!(m("/b/*.jpg", "b/y.jpg"));
        assert!(!m("/b/*.jpg", "b/x/y.jpg"));
        assert!(m("/b/**.jpg", "b/x/y.jpg"));
        assert!(m("x/y.jpg", "b/x/y.jpg"));
        assert!(!m("x/y.jpg", "b/ax/y.jpg"));
        assert!(m("?.txt", "b/a.txt"));
        assert!(!m("?.txt", "b/ab.txt"));
        assert!(compile("*.JPG", true).unwrap().is_match("b/x.jpg"));
    }

    #[test]
    fn directory_globs() {
        let d = |glob: &str| dir_globs(glob);
        assert_eq!(d("*.jpg"), ["/**"]);
        assert_eq!(d("/a/b/*.jpg"), ["/a/b/", "/a/", "/"]);
        assert_eq!(d("a/**/b"), ["a/**/", "a/"]);
        assert_eq!(d("a//b/c"), ["a/b/", "a/"]);
        assert_eq!(d("{a/b,c}/x"), ["/**"]);
        assert_eq!(d("{{a}}"), ["/**"]);
        assert_eq!(d("{a{b}}"), ["/**"]);
        assert_eq!(d("{a,b}/x"), ["{a,b}/"]);
    }
}

//! Naming what to serve the way rclone users already do: a local path, a remote from the
//! config file (`name:path`), or a connection string (`:s3,provider=Minio,endpoint=…:bucket`,
//! `name,option=value:path`). Options come, first found wins, from the connection string,
//! `RCLONE_CONFIG_<NAME>_<OPTION>`, `RCLONE_<TYPE>_<OPTION>`, then the config file, as in
//! rclone. This module only names and gathers: what the options mean is up to the backend.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A remote as written on the command line, before the config is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The remote's name; `None` for an on-the-fly backend (`:s3:`), whose `backend` is set.
    pub name: Option<String>,
    pub backend: Option<String>,
    /// `option=value` pairs from the connection string, in order.
    pub params: Params,
    /// What follows the first `:`.
    pub path: String,
}

/// A remote with its type and every option that applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// How errors name it: `name` or `:backend`.
    pub label: String,
    /// `s3`, `local`, `memory`, …
    pub kind: String,
    pub options: BTreeMap<String, String>,
    pub path: String,
}

impl Remote {
    pub fn get(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
}

/// A parsed rclone config file: sections in file order, each with its `key = value` lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub sections: Vec<(String, Vec<(String, String)>)>,
}

impl ConfigFile {
    pub fn parse(text: &str) -> ConfigFile {
        let mut file = ConfigFile::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                file.sections.push((name.trim().to_string(), Vec::new()));
            } else if let (Some((key, value)), Some((_, items))) =
                (line.split_once('='), file.sections.last_mut())
            {
                items.push((key.trim().to_string(), value.trim().to_string()));
            }
        }
        file
    }

    fn section(&self, name: &str) -> Option<&[(String, String)]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, items)| items.as_slice())
    }
}

/// Where the config file is: `--config`, else `$RCLONE_CONFIG`, else rclone's default place.
/// `None` when no file is to be read (`--config ""`, or no home directory).
pub fn config_path(flag: Option<&Path>, env: &HashMap<String, String>) -> Option<PathBuf> {
    let given = flag
        .map(Path::to_path_buf)
        .or_else(|| env.get("RCLONE_CONFIG").map(PathBuf::from));
    if let Some(p) = given {
        return (!p.as_os_str().is_empty()).then_some(p);
    }
    let base = match env.get("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env.get("HOME")?).join(".config"),
    };
    Some(base.join("rclone").join("rclone.conf"))
}

/// Whether `name` may name a remote: letters, digits, `_ - . + @` and spaces, not starting
/// with `-` or a space and not ending with a space (rclone's rule).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', ' '])
        && !name.ends_with(' ')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.+@ ".contains(c))
}

/// Reads `s` as a remote. `Ok(None)`: it is a local path (it has no `:`, a `/` comes before
/// the first `:` or `,`, or it starts with `/` or `.`). A name with other characters rclone
/// does not allow is an error, as in rclone.
pub fn parse_spec(s: &str) -> Result<Option<Spec>, String> {
    if s.starts_with('/') || s.starts_with('.') {
        return Ok(None);
    }
    let (on_the_fly, rest) = match s.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let name_end = rest.find([',', ':', '/', '\\']);
    let Some(name_end) = name_end.filter(|&i| !rest[i..].starts_with(['/', '\\'])) else {
        return match on_the_fly {
            true => Err(format!(
                "{s:?}: a connection string needs a `:` after the backend"
            )),
            false => Ok(None),
        };
    };
    let name = &rest[..name_end];
    if !valid_name(name) {
        return Err(format!(
            "{s:?}: a remote's name may hold only letters, digits, `_ - . + @` and spaces, \
             and may not start with `-` or a space"
        ));
    }
    let (params, path) = parse_params(&rest[name_end..]).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(Some(Spec {
        name: (!on_the_fly).then(|| name.to_string()),
        backend: on_the_fly.then(|| name.to_string()),
        params,
        path: path.to_string(),
    }))
}

/// Connection-string options, in order.
type Params = Vec<(String, String)>;

/// Reads `,k=v,k2='v 2':path` up to the first `:` outside quotes.
fn parse_params(s: &str) -> Result<(Params, &str), String> {
    let mut params = Vec::new();
    let mut rest = s;
    loop {
        match rest.chars().next() {
            Some(':') => return Ok((params, &rest[1..])),
            Some(',') => rest = &rest[1..],
            _ => return Err("a connection string needs a `:` before the path".into()),
        }
        let key_end = rest.find(['=', ',', ':']).unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err("an option in the connection string has no name".into());
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!(
                "option {key:?}: names may hold only `0-9 A-Z a-z _ .`"
            ));
        }
        rest = &rest[key_end..];
        let value = match rest.strip_prefix('=') {
            None => "true".to_string(),
            Some(after) => {
                let (value, left) = parse_value(after)?;
                rest = left;
                value
            }
        };
        params.push((key.to_string(), value));
    }
}

/// One option value: up to the next `,` or `:`, or quoted with `'` or `"` (the quote doubled
/// inside stands for itself).
fn parse_value(s: &str) -> Result<(String, &str), String> {
    let Some(quote) = s.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        let end = s.find([',', ':']).unwrap_or(s.len());
        return Ok((s[..end].to_string(), &s[end..]));
    };
    let mut value = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c != quote {
            value.push(c);
            continue;
        }
        let after = &s[1 + i + 1..];
        if after.starts_with(quote) {
            value.push(quote);
            chars.next();
        } else {
            return Ok((value, after));
        }
    }
    Err(format!("a value quoted with {quote} does not end"))
}

/// Gathers the remote `spec` names from the connection string, the environment and the
/// config `file`.
pub fn resolve(
    spec: &Spec,
    file: Option<&ConfigFile>,
    env: &HashMap<String, String>,
) -> Result<Remote, String> {
    let section = |name: &str| file.and_then(|f| f.section(name));
    let (label, kind, from_file, env_name) = match (&spec.name, &spec.backend) {
        (_, Some(backend)) => (format!(":{backend}"), backend.clone(), &[][..], None),
        (Some(name), None) => {
            let env_name = name.to_ascii_uppercase();
            let from_file = section(name).unwrap_or(&[]);
            let kind = env
                .get(&format!("RCLONE_CONFIG_{env_name}_TYPE"))
                .cloned()
                .or_else(|| {
                    from_file
                        .iter()
                        .find(|(k, _)| k == "type")
                        .map(|(_, v)| v.clone())
                });
            let Some(kind) = kind else {
                return Err(match section(name) {
                    Some(_) => format!("remote {name:?}: the config gives it no `type`"),
                    None => format!(
                        "remote {name:?} is not in the config file{} nor set by \
                         RCLONE_CONFIG_{env_name}_TYPE",
                        file.map_or(" (none was read)", |_| "")
                    ),
                });
            };
            (name.clone(), kind, from_file, Some(env_name))
        }
        (None, None) => unreachable!("a spec names a remote or a backend"),
    };
    // Lowest precedence first: each source overwrites what the ones before it gave.
    let mut options = BTreeMap::new();
    for (k, v) in from_file {
        options.insert(k.clone(), v.clone());
    }
    let type_prefix = format!("RCLONE_{}_", kind.to_ascii_uppercase());
    let config_prefix = env_name.map(|n| format!("RCLONE_CONFIG_{n}_"));
    let mut from_env: Vec<(usize, String, String)> = Vec::new();
    for (var, value) in env {
        if let Some(opt) = var.strip_prefix(&type_prefix) {
            from_env.push((0, opt.to_ascii_lowercase(), value.clone()));
        }
        if let Some(opt) = config_prefix
            .as_ref()
            .and_then(|p| var.strip_prefix(p.as_str()))
        {
            from_env.push((1, opt.to_ascii_lowercase(), value.clone()));
        }
    }
    from_env.sort();
    for (_, opt, value) in from_env {
        options.insert(opt, value);
    }
    for (k, v) in &spec.params {
        options.insert(k.clone(), v.clone());
    }
    options.remove("type");
    Ok(Remote {
        label,
        kind,
        options,
        path: spec.path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Spec {
        parse_spec(s).unwrap().unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn local_paths_are_not_remotes() {
        for s in ["/srv/data", "./a:b", "data", "../x", "a b/c", "dir/a:b"] {
            assert_eq!(parse_spec(s), Ok(None), "{s}");
        }
        for s in ["-x:y", "a*b:c", ":s3,bad-name=1:", ":s3/x:"] {
            assert!(parse_spec(s).is_err(), "{s}");
        }
    }

    #[test]
    fn named_remotes_and_connection_strings_split_as_rclone_does() {
        let s = spec("minio:bucket/prefix");
        assert_eq!(s.name.as_deref(), Some("minio"));
        assert_eq!((s.backend, s.path.as_str()), (None, "bucket/prefix"));
        let s = spec(":s3,provider=Minio,endpoint=http://127.0.0.1:9000:bucket/pre");
        assert_eq!(s.backend.as_deref(), Some("s3"));
        // An unquoted value stops at the first `:`, so a URL must be quoted.
        assert_eq!(s.params[1], ("endpoint".into(), "http".into()));
        let s = spec(":s3,provider=Minio,endpoint='http://127.0.0.1:9000':bucket/pre");
        assert_eq!(
            s.params[1],
            ("endpoint".into(), "http://127.0.0.1:9000".into())
        );
        assert_eq!(s.path, "bucket/pre");
        let s = spec("r,env_auth,acl=\"a,b\"\"c\":");
        assert_eq!(
            s.params,
            vec![
                ("env_auth".into(), "true".into()),
                ("acl".into(), "a,b\"c".into())
            ]
        );
        assert_eq!(s.path, "");
        assert_eq!(spec(":memory:").backend.as_deref(), Some("memory"));
        assert!(parse_spec(":s3,endpoint='x:").is_err());
        assert!(parse_spec(":s3").is_err());
    }

    #[test]
    fn options_take_rclone_precedence() {
        let file = ConfigFile::parse(
            "# comment\n[store]\ntype = s3\nregion = file\nendpoint = http://file\n\
             acl = private\n\n[other]\ntype = local\n",
        );
        let e = env(&[
            ("RCLONE_S3_REGION", "type-env"),
            ("RCLONE_S3_ACL", "type-env"),
            ("RCLONE_CONFIG_STORE_REGION", "remote-env"),
        ]);
        let r = resolve(&spec("store,acl=string:b"), Some(&file), &e).unwrap();
        assert_eq!(r.kind, "s3");
        assert_eq!(r.get("endpoint"), Some("http://file"));
        assert_eq!(r.get("region"), Some("remote-env"));
        assert_eq!(r.get("acl"), Some("string"));
        assert_eq!(r.get("type"), None);
        // RCLONE_<TYPE>_ options apply to on-the-fly remotes; remote variables do not.
        let r = resolve(&spec(":s3:b"), None, &e).unwrap();
        assert_eq!(
            (r.label.as_str(), r.get("region")),
            (":s3", Some("type-env"))
        );
    }

    #[test]
    fn a_remote_can_live_in_the_environment_alone() {
        let e = env(&[
            ("RCLONE_CONFIG_MYS3_TYPE", "s3"),
            ("RCLONE_CONFIG_MYS3_REGION", "r"),
        ]);
        for name in ["mys3:", "MYS3:"] {
            let r = resolve(&spec(name), None, &e).unwrap();
            assert_eq!((r.kind.as_str(), r.get("region")), ("s3", Some("r")));
        }
    }

    #[test]
    fn unknown_remotes_and_untyped_sections_are_named_in_the_error() {
        let file = ConfigFile::parse("[notype]\nregion = x\n");
        let e = resolve(&spec("nothere:"), Some(&file), &HashMap::new()).unwrap_err();
        assert!(
            e.contains("\"nothere\"") && e.contains("not in the config file"),
            "{e}"
        );
        let e = resolve(&spec("notype:"), Some(&file), &HashMap::new()).unwrap_err();
        assert!(e.contains("\"notype\"") && e.contains("type"), "{e}");
    }

    #[test]
    fn the_config_file_is_found_as_rclone_finds_it() {
        let e = env(&[("HOME", "/home/u")]);
        assert_eq!(
            config_path(None, &e),
            Some(PathBuf::from("/home/u/.config/rclone/rclone.conf"))
        );
        let e = env(&[("HOME", "/home/u"), ("RCLONE_CONFIG", "/etc/r.conf")]);
        assert_eq!(config_path(None, &e), Some(PathBuf::from("/etc/r.conf")));
        assert_eq!(
            config_path(Some(Path::new("/x.conf")), &e),
            Some(PathBuf::from("/x.conf"))
        );
        assert_eq!(config_path(Some(Path::new("")), &e), None);
    }
}

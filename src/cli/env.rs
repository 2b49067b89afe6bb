//! `RCLONE_*` environment variables: every flag can also be set as `RCLONE_<FLAG_NAME>`
//! (`--read-only` is `RCLONE_READ_ONLY`), as in rclone, so that a service unit can keep
//! secrets such as `RCLONE_AUTH_KEY` off the command line.
//!
//! rclone's rules: a variable sets its flag's starting value and the command line wins; the
//! variable of a repeatable flag is one CSV record (`'"id1,secret1","id2,secret2"'`) that
//! the command line adds to. A variable for a flag s3serve does not have is ignored and
//! reported, as rclone ignores those meant for its other commands, except a variable that
//! governs access: ignoring one of those would serve more openly than the user asked, so the
//! start stops instead.

use std::ffi::OsString;

use lexopt::Parser;

use super::{Args, CliError};

const PREFIX: &str = "RCLONE_";

/// Flags that decide who may use the server and that s3serve does not implement.
const GOVERNS_ACCESS: &[&str] = &["htpasswd", "user", "pass", "user-from-header"];

/// Repeatable flags, whose variable is a CSV list.
const REPEATABLE: &[&str] = &[
    "addr",
    "auth-key",
    "response-header",
    "exclude",
    "exclude-from",
    "exclude-if-present",
    "files-from",
    "files-from-raw",
    "files-from0",
    "filter",
    "filter-from",
    "include",
    "include-from",
    "metadata-exclude",
    "metadata-exclude-from",
    "metadata-filter",
    "metadata-filter-from",
    "metadata-include",
    "metadata-include-from",
];

/// Flags never taken from the environment: `--max-connections` is s3serve's cap on client
/// connections, while `RCLONE_MAX_CONNECTIONS` is rclone's cap on backend connections.
const NOT_FROM_ENV: &[&str] = &["max-connections", "help", "version"];

/// Applies the `RCLONE_*` variables of `env` to `args`, in name order.
pub(super) fn apply<E>(args: &mut Args, env: E) -> Result<(), CliError>
where
    E: IntoIterator<Item = (OsString, OsString)>,
{
    let mut vars: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let Some(flag) = flag_name(&name) else {
            continue;
        };
        // rclone looks each flag's variable up by its upper-case name only.
        let upper = !flag.bytes().any(|b| b.is_ascii_lowercase());
        let flag = flag.to_ascii_lowercase().replace('_', "-");
        let used = upper
            && !NOT_FROM_ENV.contains(&flag.as_str())
            && apply_one(args, &name, &flag, value)?;
        if used {
            args.env_used.push(name);
        } else {
            args.env_ignored.push(name);
        }
    }
    Ok(())
}

/// `RCLONE_READ_ONLY` → `READ_ONLY`. `None` for the remotes' own settings
/// (`RCLONE_CONFIG_<REMOTE>_<OPTION>`, `RCLONE_CONFIG_PASS`) and the backends' options
/// (`RCLONE_S3_<OPTION>`, `RCLONE_LOCAL_<OPTION>`), which are not flags: the remote takes
/// them (see [`super::remote`]).
fn flag_name(var: &str) -> Option<&str> {
    var.strip_prefix(PREFIX).filter(|rest| {
        !["CONFIG_", "S3_", "LOCAL_"]
            .iter()
            .any(|p| rest.starts_with(p))
    })
}

/// Sets one flag from its variable; `Ok(false)` when s3serve has no such flag.
fn apply_one(args: &mut Args, var: &str, flag: &str, value: OsString) -> Result<bool, CliError> {
    if GOVERNS_ACCESS.contains(&flag) {
        return Err(CliError(format!(
            "{var} is set, but s3serve has no --{flag} yet; it will not start with less \
             access control than asked for (unset {var} to go on)"
        )));
    }
    let value = value
        .into_string()
        .map_err(|_| CliError(format!("{var}: value is not valid UTF-8")))?;
    if flag == "verbose" {
        // rclone's count flag takes a number from its variable.
        args.verbose = value
            .parse()
            .map_err(|_| CliError(format!("{var}: expected a count, got {value:?}")))?;
        return Ok(true);
    }
    let items = if REPEATABLE.contains(&flag) {
        csv_record(&value).map_err(|e| CliError(format!("{var}: not a CSV list: {e}")))?
    } else {
        vec![value]
    };
    for item in items {
        match set_flag(args, flag, &item) {
            Ok(()) => {}
            // The flag is the same for every item, so this can only be the first.
            Err(None) => return Ok(false),
            Err(Some(e)) => return Err(from_variable(var, flag, e)),
        }
    }
    Ok(true)
}

/// Runs `--flag=value` through the command line's own parse arm; `Err(None)` when s3serve
/// has no such flag.
fn set_flag(args: &mut Args, flag: &str, value: &str) -> Result<(), Option<CliError>> {
    let long = format!("--{flag}");
    let mut parser = Parser::from_args([format!("{long}={value}")]);
    // Step over the flag itself; its value stays attached for the arm to take.
    parser.next().map_err(|e| Some(CliError(e.to_string())))?;
    match args.apply_long(&long, &mut parser) {
        Ok(true) => Ok(()),
        Ok(false) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// Names the variable in a flag's error.
fn from_variable(var: &str, flag: &str, CliError(message): CliError) -> CliError {
    let hint = if flag == "auth-key" {
        format!(
            "; {var} is a CSV list, so quote each pair: {var}='\"id1,secret1\",\"id2,secret2\"'"
        )
    } else {
        String::new()
    };
    CliError(format!("{var}: {message}{hint}"))
}

/// The first record of a CSV text, by the rules of Go's `encoding/csv` that rclone uses:
/// fields split on commas, a field in double quotes may hold commas and newlines and writes a
/// quote as `""`, and a quote anywhere else is an error. Empty text is an empty list.
pub(super) fn csv_record(text: &str) -> Result<Vec<String>, String> {
    let mut rest = text.trim_start_matches(['\r', '\n']);
    let mut fields = Vec::new();
    if rest.is_empty() {
        return Ok(fields);
    }
    loop {
        let (field, after) = match rest.strip_prefix('"') {
            Some(quoted) => quoted_field(quoted)?,
            None => bare_field(rest)?,
        };
        fields.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(fields),
        }
    }
}

/// A field without quotes, up to the next comma or the end of the line.
fn bare_field(text: &str) -> Result<(String, &str), String> {
    let end = text.find([',', '\n']).unwrap_or(text.len());
    let field = &text[..end];
    let field = field.strip_suffix('\r').unwrap_or(field);
    if field.contains('"') {
        return Err("a quote inside a field that does not start with one".into());
    }
    Ok((field.to_owned(), &text[end..]))
}

/// A quoted field, after its opening quote; returns the text after the closing quote.
fn quoted_field(mut text: &str) -> Result<(String, &str), String> {
    let mut field = String::new();
    loop {
        let quote = text
            .find('"')
            .ok_or("a quoted field has no closing quote")?;
        field.push_str(&text[..quote]);
        text = &text[quote + 1..];
        if let Some(after) = text.strip_prefix('"') {
            field.push('"');
            text = after;
            continue;
        }
        let at_end = text.is_empty() || text.starts_with([',', '\n']) || text == "\r";
        if at_end || text.starts_with("\r\n") {
            return Ok((field, text));
        }
        return Err("text after the closing quote of a field".into());
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_args_env, Args};
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Args, CliError> {
        let env = env.iter().map(|(n, v)| ((*n).into(), (*v).into()));
        parse_args_env(args.iter().copied(), env)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, s)| (a.to_string(), s.to_string()))
            .collect()
    }

    #[test]
    fn csv_follows_go_rules() {
        let ok = |s: &str| csv_record(s).unwrap();
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("a"), ["a"]);
        assert_eq!(ok("a,b"), ["a", "b"]);
        assert_eq!(ok("\"a,b\""), ["a,b"]);
        assert_eq!(ok("\"u1,p1\",\"u2,p2\""), ["u1,p1", "u2,p2"]);
        assert_eq!(ok("\"say \"\"hi\"\"\",x"), ["say \"hi\"", "x"]);
        assert_eq!(ok("a,,b,"), ["a", "", "b", ""]);
        assert_eq!(ok("\"a\nb\",c"), ["a\nb", "c"]);
        assert_eq!(ok("a,b\nc,d"), ["a", "b"]);
        assert_eq!(ok("\"a\"\r\n"), ["a"]);
        assert_eq!(ok("\n\na"), ["a"]);
        for bad in ["a\"b", "\"a", "\"a\"b", "\"a\", \"b\"", "a, \"b\""] {
            assert!(csv_record(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_key_variable_is_a_quoted_csv_list() {
        let one = parse(&["d"], &[("RCLONE_AUTH_KEY", "\"user,pass\"")]).unwrap();
        assert_eq!(one.auth_keys, pairs(&[("user", "pass")]));
        assert_eq!(one.env_used, ["RCLONE_AUTH_KEY"]);
        let two = parse(&["d"], &[("RCLONE_AUTH_KEY", "\"u1,p1\",\"u2,p2\"")]).unwrap();
        assert_eq!(two.auth_keys, pairs(&[("u1", "p1"), ("u2", "p2")]));
        // Unquoted, the list is two items that are not pairs: an error, as in rclone, and
        // one that shows no secret.
        let e = parse(&["d"], &[("RCLONE_AUTH_KEY", "user,s3cret")]).unwrap_err();
        assert!(
            e.0.starts_with("RCLONE_AUTH_KEY: --auth-key: expected"),
            "{e}"
        );
        assert!(
            e.0.contains("quote each pair") && !e.0.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn command_line_adds_to_lists_and_wins_for_values() {
        let env = [
            ("RCLONE_AUTH_KEY", "\"ak1,sk1\""),
            ("RCLONE_ADDR", ":9000,:9001"),
            ("RCLONE_ETAG_HASH", "SHA1"),
            ("RCLONE_READ_ONLY", "true"),
        ];
        let a = parse(
            &["--auth-key", "ak2,sk2", "--etag-hash", "sha256", "d"],
            &env,
        )
        .unwrap();
        assert_eq!(a.auth_keys, pairs(&[("ak1", "sk1"), ("ak2", "sk2")]));
        assert_eq!(a.addrs, [":9000", ":9001"]);
        assert_eq!(a.etag_hash, "SHA256");
        assert!(a.read_only);
        let b = parse(&["--read-only=false", "d"], &env).unwrap();
        assert!(!b.read_only);
        assert_eq!(b.etag_hash, "SHA1");
        // Without the variable, the default address stays.
        assert_eq!(parse(&["d"], &[]).unwrap().addrs, ["127.0.0.1:8080"]);
    }

    #[test]
    fn every_kind_of_flag_reads_its_variable() {
        let env = [
            ("RCLONE_DIR_CACHE_TIME", "1m"),
            ("RCLONE_UMASK", "002"),
            ("RCLONE_VERBOSE", "2"),
            ("RCLONE_QUIET", "false"),
            ("RCLONE_WORKERS", "3"),
            ("RCLONE_RESPONSE_HEADER", "\"X-A: 1\",\"X-B: 2\""),
            ("RCLONE_BASEURL", "/s3/"),
        ];
        let a = parse(&["-v", "d"], &env).unwrap();
        assert_eq!(a.dir_cache_time, std::time::Duration::from_secs(60));
        assert_eq!(a.umask, 0o002);
        assert_eq!(a.verbose, 3);
        assert!(!a.quiet);
        assert_eq!(a.workers, Some(3));
        assert_eq!(a.response_headers, ["X-A: 1", "X-B: 2"]);
        assert_eq!(a.baseurl, "s3");
        assert_eq!(a.env_used.len(), env.len());
        let e = parse(&["d"], &[("RCLONE_UMASK", "9")]).unwrap_err();
        assert_eq!(e.0, "RCLONE_UMASK: --umask: invalid file mode \"9\"");
        let e = parse(&["d"], &[("RCLONE_VERBOSE", "lots")]).unwrap_err();
        assert!(e.0.starts_with("RCLONE_VERBOSE: "), "{e}");
    }

    #[test]
    fn variables_for_missing_flags_are_ignored_and_reported() {
        let env = [
            ("RCLONE_VFS_READ_WAIT", "1s"),
            ("RCLONE_NO_SUCH_FLAG", "1"),
            ("RCLONE_MAX_CONNECTIONS", "4"),
            ("RCLONE_CONFIG_MYREMOTE_TYPE", "s3"),
            ("RCLONE_CONFIG_PASS", "secret"),
            ("RCLONE_read_only", "true"),
            ("HOME", "/root"),
        ];
        let a = parse(&["d"], &env).unwrap();
        assert_eq!(
            a.env_ignored,
            [
                "RCLONE_MAX_CONNECTIONS",
                "RCLONE_NO_SUCH_FLAG",
                "RCLONE_VFS_READ_WAIT",
                "RCLONE_read_only",
            ]
        );
        assert!(a.env_used.is_empty() && !a.read_only);
        assert_eq!(a.max_connections, 0);
    }

    #[test]
    fn variables_that_govern_access_stop_the_start() {
        for var in [
            "RCLONE_HTPASSWD",
            "RCLONE_USER",
            "RCLONE_PASS",
            "RCLONE_USER_FROM_HEADER",
        ] {
            let e = parse(&["--auth-key", "a,b", "d"], &[(var, "x")]).unwrap_err();
            assert!(e.0.starts_with(&format!("{var} is set")), "{e}");
        }
    }
}

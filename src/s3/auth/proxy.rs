//! `--auth-proxy PROGRAM`: rclone's protocol for learning, per access key ID, its secret and
//! the backend it maps to. The program gets `{"user": ID, "client_ip": IP}` on stdin (no
//! `client_ip` for a unix socket) and prints a JSON object of strings: `type` and the
//! backend's options, `_root`, `_obscure`, and `_secret_access_key`. An answer without a
//! secret refuses the key.
//!
//! Answers are kept per access key ID and client IP for the cache period (5 minutes), and
//! asked again after it even for a key in constant use, so that a revoked key stops within
//! the period. Concurrent first requests for one key run the program once. The program runs
//! with a timeout and is killed past it; it is always reaped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::json::{parse_json, Json};
use crate::vfs::cache::clock::{Clock, SystemClock};

/// How long an answer is used before the program is asked again.
pub const CACHE_TIME: Duration = Duration::from_secs(300);
/// How long the program may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of the program's output that is read.
const MAX_OUTPUT: u64 = 1 << 20;

/// What the program said about an access key ID.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub secret: String,
    /// The backend's type (`local`, `s3`, …).
    pub kind: String,
    pub root: String,
    /// The backend's options, without the `_`-prefixed ones and `type`.
    pub options: Vec<(String, String)>,
    /// A digest of the backend's description (see [`Answer::backend_id`]).
    backend: String,
}

impl Answer {
    /// A name for the backend this answer describes: answers that say the same share it.
    pub fn backend_id(&self) -> &str {
        &self.backend
    }
}

/// The digest of a backend's description, whatever the order of its options.
fn describe(kind: &str, root: &str, options: &[(String, String)]) -> String {
    let mut options = options.to_vec();
    options.sort();
    let text = format!("{kind:?} {root:?} {options:?}");
    crate::util::hex(&<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
}

/// Why an access key ID has no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The program answered, and gave no secret: the key is refused (403).
    NoSecret,
    /// The program failed, hung or printed something unreadable: the request cannot be
    /// checked now (503), and the log says why.
    Failed(String),
}

/// An answer, and whether it was asked of the program for this lookup.
pub struct Looked {
    pub answer: Result<Answer, Refusal>,
    pub asked: bool,
}

/// The kept answers, pruned of expired ones whenever they have doubled since the last
/// pruning: keys from many addresses, or made up by the thousand, cannot grow it forever.
#[derive(Default)]
struct KeptAnswers {
    map: HashMap<(String, String), Kept>,
    prune_at: usize,
}

impl KeptAnswers {
    fn insert(&mut self, key: (String, String), kept: Kept, now: Instant, period: Duration) {
        self.map.insert(key, kept);
        if self.map.len() >= self.prune_at {
            self.map
                .retain(|_, k| now.saturating_duration_since(k.at) < period);
            self.prune_at = (2 * self.map.len()).max(1024);
        }
    }
}

struct Kept {
    at: Instant,
    answer: Result<Answer, Refusal>,
}

/// One run of the program that concurrent first requests wait for.
#[derive(Default)]
struct Flight {
    done: Mutex<Option<Result<Answer, Refusal>>>,
    cv: Condvar,
}

pub struct AuthProxy {
    argv: Vec<String>,
    cache_time: Duration,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    kept: Mutex<KeptAnswers>,
    flights: Mutex<HashMap<(String, String), Arc<Flight>>>,
}

impl AuthProxy {
    /// `program` is split at whitespace into the command and its arguments, as rclone does.
    pub fn new(
        program: &str,
        cache_time: Duration,
        timeout: Duration,
    ) -> Result<AuthProxy, String> {
        AuthProxy::with_clock(program, cache_time, timeout, Arc::new(SystemClock))
    }

    /// As [`AuthProxy::new`], with the clock that ages answers given.
    pub fn with_clock(
        program: &str,
        cache_time: Duration,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<AuthProxy, String> {
        let argv: Vec<String> = program.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err("--auth-proxy: no program given".into());
        }
        Ok(AuthProxy {
            argv,
            cache_time,
            timeout,
            clock,
            kept: Default::default(),
            flights: Default::default(),
        })
    }

    /// The answer for `user` connecting from `ip`: from memory while it is younger than the
    /// cache period, unless `fresh` asks for the program's word now (a signature that did
    /// not match the kept secret may have been made with a rotated one).
    pub fn lookup(&self, user: &str, ip: Option<&str>, fresh: bool) -> Result<Answer, Refusal> {
        self.look(user, ip, fresh).answer
    }

    /// As [`AuthProxy::lookup`], saying whether the answer is the program's word of this
    /// moment (this call ran it, or waited for a run).
    pub fn look(&self, user: &str, ip: Option<&str>, fresh: bool) -> Looked {
        let kept = |answer| Looked {
            answer,
            asked: false,
        };
        let key = (user.to_string(), ip.unwrap_or_default().to_string());
        if let Some(answer) = self.kept_answer(&key).filter(|_| !fresh) {
            return kept(answer);
        }
        // One run per key at a time: the first asker runs it, the others wait for its answer.
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    // A run may have ended since the look above: its answer is kept first.
                    if let Some(answer) = self.kept_answer(&key).filter(|_| !fresh) {
                        return kept(answer);
                    }
                    let f = Arc::new(Flight::default());
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut done = flight.done.lock().unwrap_or_else(|p| p.into_inner());
            while done.is_none() {
                done = flight.cv.wait(done).unwrap_or_else(|p| p.into_inner());
            }
            return Looked {
                answer: done.clone().expect("checked above"),
                asked: true,
            };
        }
        let answer = self.ask(user, ip);
        if let Err(Refusal::Failed(why)) = &answer {
            log::error!("--auth-proxy for access key {user:?}: {why}");
        }
        // A failure is not kept: the next request asks again.
        if !matches!(answer, Err(Refusal::Failed(_))) {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.clock.now();
            let answer = answer.clone();
            kept.insert(key.clone(), Kept { at: now, answer }, now, self.cache_time);
        }
        *flight.done.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer.clone());
        flight.cv.notify_all();
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Looked {
            answer,
            asked: true,
        }
    }

    /// The kept answer for `key`, while it is younger than the cache period.
    fn kept_answer(&self, key: &(String, String)) -> Option<Result<Answer, Refusal>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.map
            .get(key)
            .filter(|k| self.clock.now().saturating_duration_since(k.at) < self.cache_time)
            .map(|k| k.answer.clone())
    }

    /// Runs the program once.
    fn ask(&self, user: &str, ip: Option<&str>) -> Result<Answer, Refusal> {
        let mut input = format!("{{\n\t\"user\": {}", json_string(user));
        if let Some(ip) = ip {
            input.push_str(&format!(",\n\t\"client_ip\": {}", json_string(ip)));
        }
        input.push_str("\n}\n");
        let fail = |why: String| Refusal::Failed(why);
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {:?}: {e}", self.argv[0])))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        // Writing, and reading both outputs, on threads of their own: a program that does
        // not read its input, or fills a pipe, cannot stall us past the timeout.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(MAX_OUTPUT).read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "{:?} did not answer within {}s and was killed",
                        self.argv[0],
                        self.timeout.as_secs_f64()
                    )));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("waiting for {:?}: {e}", self.argv[0])));
                }
            }
        };
        let _ = writer.join();
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        if !status.success() {
            return Err(fail(format!(
                "{:?} failed ({status}): {:?}",
                self.argv[0],
                String::from_utf8_lossy(&err).trim()
            )));
        }
        parse_answer(&out)
    }
}

/// Reads the program's output: a JSON object of strings.
pub fn parse_answer(out: &[u8]) -> Result<Answer, Refusal> {
    let garbage = || {
        Refusal::Failed(format!(
            "its output is not a JSON object of strings: {:?}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        ))
    };
    let text = std::str::from_utf8(out).map_err(|_| garbage())?;
    let Some(Json::Obj(fields)) = parse_json(text) else {
        return Err(garbage());
    };
    let mut strings = Vec::new();
    for (k, v) in fields {
        match v {
            Json::Str(s) => strings.push((k, s)),
            _ => return Err(garbage()),
        }
    }
    let take = |name: &str| {
        strings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let secret = take("_secret_access_key").unwrap_or_default();
    if secret.is_empty() {
        return Err(Refusal::NoSecret);
    }
    let kind = take("type").ok_or_else(|| Refusal::Failed("type not set in its answer".into()))?;
    let root =
        take("_root").ok_or_else(|| Refusal::Failed("_root not set in its answer".into()))?;
    let options: Vec<(String, String)> = strings
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && k != "type")
        .cloned()
        .collect();
    Ok(Answer {
        backend: describe(&kind, &root, &options),
        secret,
        kind,
        root,
        options,
    })
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A shell script as the program, in a fresh directory.
    fn program(body: &str) -> (PathBuf, String) {
        let dir =
            std::env::temp_dir().join(format!("s3serve-proxy-{}", crate::util::unique_token()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("proxy.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cmd = path.display().to_string();
        (dir, cmd)
    }

    const GOOD: &str = r#"{"type": "local", "_root": "/srv/u1", "_secret_access_key": "S1", "copy_links": "true"}"#;

    #[test]
    fn answers_are_read_and_refusals_told_apart() {
        let a = parse_answer(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (a.secret.as_str(), a.kind.as_str(), a.root.as_str()),
            ("S1", "local", "/srv/u1")
        );
        assert_eq!(a.options, [("copy_links".to_string(), "true".to_string())]);
        assert_eq!(
            parse_answer(br#"{"type": "local", "_root": ""}"#),
            Err(Refusal::NoSecret)
        );
        assert_eq!(
            parse_answer(br#"{"type": "local", "_root": "", "_secret_access_key": ""}"#),
            Err(Refusal::NoSecret)
        );
        assert!(matches!(parse_answer(b"not json"), Err(Refusal::Failed(_))));
        assert!(matches!(
            parse_answer(br#"{"_secret_access_key": 5}"#),
            Err(Refusal::Failed(_))
        ));
        assert!(matches!(
            parse_answer(br#"{"_secret_access_key": "s", "_root": ""}"#),
            Err(Refusal::Failed(_))
        ));
        // The same description gives the same backend, whatever the order.
        let b = parse_answer(
            br#"{"copy_links": "true", "_secret_access_key": "other", "_root": "/srv/u1", "type": "local"}"#,
        )
        .unwrap();
        assert_eq!(a.backend_id(), b.backend_id());
    }

    #[test]
    fn expired_answers_are_pruned_as_the_kept_ones_grow() {
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        let mut kept = KeptAnswers::default();
        let refused = || Kept {
            at: t0,
            answer: Err(Refusal::NoSecret),
        };
        for i in 0..1023 {
            kept.insert((format!("AK{i}"), "ip".into()), refused(), t0, period);
        }
        assert_eq!(kept.map.len(), 1023);
        // Past the period, the next insert that reaches the mark drops every expired one.
        let later = t0 + period + Duration::from_secs(1);
        let fresh = Kept {
            at: later,
            answer: Err(Refusal::NoSecret),
        };
        kept.insert(("NEW".into(), "ip".into()), fresh, later, period);
        assert_eq!(kept.map.len(), 1);
        assert!(kept.map.contains_key(&("NEW".into(), "ip".into())));
    }

    #[test]
    fn the_program_gets_the_user_and_ip_and_is_asked_again_after_the_period() {
        // The program records each input and answers with a secret naming the user.
        let (dir, cmd) = program(
            r#"cat >> "$(dirname "$0")/calls"; printf '\n' >> "$(dirname "$0")/calls"
echo '{"type": "local", "_root": "/x", "_secret_access_key": "S"}'"#,
        );
        let clock = Arc::new(crate::vfs::cache::clock::ManualClock::new());
        let p = AuthProxy::with_clock(&cmd, CACHE_TIME, TIMEOUT, clock.clone()).unwrap();
        assert_eq!(
            p.lookup("AK1", Some("10.0.0.1"), false).unwrap().secret,
            "S"
        );
        assert_eq!(
            p.lookup("AK1", Some("10.0.0.1"), false).unwrap().secret,
            "S"
        );
        let calls = || std::fs::read_to_string(dir.join("calls")).unwrap();
        assert_eq!(calls().matches("\"user\"").count(), 1, "{}", calls());
        assert!(
            calls().contains("\"user\": \"AK1\"")
                && calls().contains("\"client_ip\": \"10.0.0.1\"")
        );
        // No IP (a unix socket): no client_ip at all.
        p.lookup("AK2", None, false).unwrap();
        assert_eq!(calls().matches("client_ip").count(), 1);
        // Asked again once the period is over, or when asked to be fresh.
        clock.advance(CACHE_TIME - Duration::from_secs(1));
        p.lookup("AK1", Some("10.0.0.1"), false).unwrap();
        assert_eq!(
            calls().matches("\"AK1\"").count(),
            1,
            "still within the period"
        );
        clock.advance(Duration::from_secs(2));
        p.lookup("AK1", Some("10.0.0.1"), false).unwrap();
        p.lookup("AK1", Some("10.0.0.1"), true).unwrap();
        assert_eq!(calls().matches("\"AK1\"").count(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failing_hanging_or_babbling_program_fails_the_lookup_and_is_not_left_behind() {
        let (d1, crash) = program("echo boom >&2; exit 3");
        let p = AuthProxy::new(&crash, CACHE_TIME, TIMEOUT).unwrap();
        match p.lookup("AK", None, false) {
            Err(Refusal::Failed(why)) => assert!(why.contains("boom"), "{why}"),
            other => panic!("{other:?}"),
        }
        let (d2, hang) = program("exec sleep 30");
        let p = AuthProxy::new(&hang, CACHE_TIME, Duration::from_millis(200)).unwrap();
        let started = Instant::now();
        match p.lookup("AK", None, false) {
            Err(Refusal::Failed(why)) => assert!(why.contains("killed"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        let (d3, babble) = program("echo '{\"type\": ['");
        let p = AuthProxy::new(&babble, CACHE_TIME, TIMEOUT).unwrap();
        assert!(matches!(
            p.lookup("AK", None, false),
            Err(Refusal::Failed(_))
        ));
        for d in [d1, d2, d3] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn concurrent_first_requests_run_the_program_once() {
        let (dir, cmd) = program(&format!(
            r#"echo x >> "$(dirname "$0")/calls"; sleep 0.3
echo '{}'"#,
            GOOD
        ));
        let p = Arc::new(AuthProxy::new(&cmd, CACHE_TIME, TIMEOUT).unwrap());
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || p.lookup("NEW", Some("127.0.0.1"), false))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().unwrap().secret, "S1");
        }
        let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
        assert_eq!(calls.lines().count(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}

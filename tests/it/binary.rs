//! The `s3serve` binary as a user runs it: start-up lines, flag errors, signals.

use crate::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

fn spawn(args: &[&str]) -> (Child, SocketAddr, Vec<String>) {
    spawn_env(args, &[])
}

/// The binary, with no `RCLONE_*` variable but those given.
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s3serve"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RCLONE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command
}

pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr, Vec<String>) {
    let mut child = command(env)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "server exited: {lines:?}"
        );
        lines.push(line.clone());
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, addr, lines)
}

#[test]
fn start_up_logs_root_and_real_port_and_creates_the_directory() {
    let dir = TempDir::new();
    let root = dir.0.join("new/data");
    let (mut child, addr, lines) = spawn(&["--addr", "127.0.0.1:0", root.to_str().unwrap()]);
    assert_ne!(addr.port(), 0);
    assert!(root.is_dir());
    let all = lines.concat();
    assert!(
        all.contains(&format!("serving {}", root.display())),
        "{all}"
    );
    assert!(all.contains("anonymous"), "{all}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let dir = TempDir::new();
    let (mut child, addr, _) = spawn(&["--addr", "127.0.0.1:0", dir.0.to_str().unwrap()]);
    let r = raw_exchange(
        addr,
        b"PUT /bk1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 200);
    // The `100 Continue` says the request was accepted and its body is awaited.
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(
        b"PUT /bk1/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, true).status, 100);
    c.write_all(b"half-").unwrap();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    c.write_all(&[b'!'; 1995]).unwrap();
    let r = read_response(&mut reader, false);
    assert_eq!(r.status, 200);
    assert_eq!(std::fs::read(dir.0.join("bk1/k")).unwrap().len(), 2000);
    assert!(child.wait().unwrap().success());
}

#[test]
fn flag_errors_name_the_flag() {
    for (args, needle) in [
        (vec!["--bogus", "d"], "--bogus"),
        (vec!["--vfs-cache-mode", "most", "d"], "--vfs-cache-mode"),
        (vec!["--vfs-read-wait", "1s", "d"], "--vfs-read-wait"),
        (vec!["--etag-hash", "CRC", "d"], "--etag-hash"),
        (vec!["--umask", "9", "d"], "--umask"),
        (vec![], "PATH"),
    ] {
        let out = command(&[]).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_s3serve"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--auth-key"));
    let out = Command::new(env!("CARGO_BIN_EXE_s3serve"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("s3serve "));
}

#[test]
fn rclone_auth_key_variable_closes_the_server() {
    let dir = TempDir::new();
    let root = dir.0.to_str().unwrap();
    let env = [
        ("RCLONE_AUTH_KEY", "\"AKID,SECRET\""),
        ("RCLONE_VFS_READ_WAIT", "1s"),
    ];
    let (mut child, addr, lines) = spawn_env(&["--addr", "127.0.0.1:0", root], &env);
    let all = lines.concat();
    assert!(!all.contains("anonymous"), "{all}");
    assert!(all.contains("RCLONE_VFS_READ_WAIT"), "{all}");
    let r = raw_exchange(
        addr,
        b"PUT /open HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!((r.status, r.code()), (403, "AccessDenied".to_string()));
    assert!(!dir.0.join("open").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn rclone_variables_that_cannot_be_honoured_stop_the_start() {
    for (name, value, needle) in [
        ("RCLONE_AUTH_KEY", "AKID,hunter2", "quote each pair"),
        ("RCLONE_HTPASSWD", "/etc/htpasswd", "RCLONE_HTPASSWD is set"),
        // Honoured now: it takes the place of PATH, so a PATH beside it is refused.
        (
            "RCLONE_AUTH_PROXY",
            "/bin/proxy",
            "given with --auth-proxy, which takes none",
        ),
        ("RCLONE_READ_ONLY", "maybe", "RCLONE_READ_ONLY: --read-only"),
    ] {
        let out = command(&[(name, value)]).arg("d").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("hunter2"), "{name}: {err}");
    }
}

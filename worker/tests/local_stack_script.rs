//! `scripts/local-stack` with two checkouts on one machine (two state directories, two ports):
//! a port another checkout's stack holds is refused, not shared, and each `down` stops only the
//! moto its own `up` started, by pid. Each `up` here is the real one (moto, buckets, table,
//! queues, state machine); the stacks use ports of their own, beside any stack already running.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One checkout's view of the script: its own state directory (`TREEMUX_LOCAL_STACK_DIR`).
struct Checkout {
    state: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().expect("state directory"),
        }
    }

    /// Runs `scripts/local-stack ACTION`, with `TREEMUX_LOCAL_STACK_PORT` when `port` is given.
    fn run(&self, action: &str, port: Option<u16>) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-stack");
        let mut command = Command::new(script);
        command
            .arg(action)
            .env("TREEMUX_LOCAL_STACK_DIR", self.state.path())
            .env("TREEMUX_WORKER_BIN", env!("CARGO_BIN_EXE_treemux-worker"))
            .env_remove("TREEMUX_LOCAL_STACK_PORT");
        if let Some(port) = port {
            command.env("TREEMUX_LOCAL_STACK_PORT", port.to_string());
        }
        command.output().expect("scripts/local-stack runs")
    }

    /// Runs an action that must succeed; returns its stderr.
    fn ok(&self, action: &str, port: Option<u16>) -> String {
        let output = self.run(action, port);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "local-stack {action} (port {port:?}) failed: {stderr}"
        );
        stderr
    }

    /// The pid `up` recorded for the moto it started (`moto.pid`: PID PORT START).
    fn moto_pid(&self) -> Option<u32> {
        let record = std::fs::read_to_string(self.state.path().join("moto.pid")).ok()?;
        record.split_whitespace().next()?.parse().ok()
    }

    fn env_file(&self) -> PathBuf {
        self.state.path().join("env")
    }
}

impl Drop for Checkout {
    /// A failing test still leaves no moto behind: `down`, then SIGKILL if that did not stop it.
    fn drop(&mut self) {
        if let Some(pid) = self.moto_pid() {
            let _ = self.run("down", None);
            if running(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A port nothing listens on right now (the kernel's choice).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// True while process `pid` runs (an exited, unreaped process does not count).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// True when a stack answers on `port` and holds the buckets `up` created.
fn serves_stack(port: u16) -> bool {
    // moto lists every bucket on an unsigned GET of its root.
    Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("<Name>treemux-input</Name>"))
}

/// moto is installed where a local stack runs; elsewhere (no stack, no venv) the test skips.
fn moto_installed() -> bool {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/venv/bin/python");
    python.exists() || common::stack_available()
}

#[test]
fn two_checkouts_get_two_stacks_and_each_down_stops_only_its_own() {
    if !moto_installed() {
        common::skip("moto is not installed (scripts/local-stack up installs it)");
        return;
    }
    let (first, second) = (Checkout::new(), Checkout::new());
    let first_port = free_port();
    let second_port = loop {
        let port = free_port();
        if port != first_port {
            break port;
        }
    };

    first.ok("up", Some(first_port));
    let first_pid = first.moto_pid().expect("up records the moto it started");
    assert!(serves_stack(first_port), "the first stack does not answer");
    let env = std::fs::read_to_string(first.env_file()).expect("up writes the env file");
    assert!(
        env.contains(&format!(
            "TREEMUX_LOCAL_STACK_ENDPOINT=http://127.0.0.1:{first_port}\n"
        )),
        "the env file does not name the stack's endpoint for the tests:\n{env}"
    );

    // The second checkout asking for the first one's port is refused, told who holds it, and
    // starts nothing.
    let refused = second.run("up", Some(first_port));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a second stack was allowed on the first one's port: {stderr}"
    );
    assert!(
        stderr.contains(&format!("port {first_port} is in use by pid {first_pid}")),
        "the refusal does not name the port and its owner: {stderr}"
    );
    assert_eq!(second.moto_pid(), None, "a refused up recorded a moto");
    assert!(
        !second.env_file().exists(),
        "a refused up wrote an env file"
    );

    // Its `down` on that port has nothing of its own to stop, and stops nothing.
    second.ok("down", Some(first_port));
    assert!(
        running(first_pid) && serves_stack(first_port),
        "the second checkout's down stopped the first checkout's stack"
    );

    // On a port of its own it gets a stack of its own.
    second.ok("up", Some(second_port));
    let second_pid = second.moto_pid().expect("up records the moto it started");
    assert_ne!(first_pid, second_pid);
    assert!(
        serves_stack(second_port),
        "the second stack does not answer"
    );
    for (checkout, port) in [(&first, first_port), (&second, second_port)] {
        let status = checkout.run("status", None);
        assert!(
            String::from_utf8_lossy(&status.stdout)
                .starts_with(&format!("up at http://127.0.0.1:{port} ")),
            "status of the stack on port {port}: {}",
            String::from_utf8_lossy(&status.stdout)
        );
    }

    // Each down stops its own moto and leaves the other one serving.
    second.ok("down", None);
    assert!(!running(second_pid), "down left its own moto running");
    assert!(!serves_stack(second_port), "the second stack still answers");
    assert!(
        !second.env_file().exists(),
        "down left the env file of a stopped stack"
    );
    assert!(
        running(first_pid) && serves_stack(first_port),
        "the second checkout's down stopped the first checkout's stack"
    );
    first.ok("down", None);
    assert!(!running(first_pid), "down left its own moto running");
    assert!(!serves_stack(first_port), "the first stack still answers");
}

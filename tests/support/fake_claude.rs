//! A fake `claude` executable (POSIX `sh`, no python) for the daemon to spawn,
//! scripted per invocation and recording what it was given.
//!
//! [`FakeClaude::install`]`(dir)` writes the executable `dir/claude` and its
//! state directory `dir/claude.d/`:
//!
//! * `calls/<n>/` — one per invocation, `n` = 1, 2, … in start order (claimed
//!   with an atomic `mkdir`, so concurrent invocations get distinct numbers).
//!   Holds `argv` (NUL-separated, without argv[0]), `cwd` (`pwd -P`), `env0`
//!   (`env -0`), `pid`, `ppid`, `pgid`, `sid`, then `started` once those are
//!   complete; `stdin` (as read so far) and `stdin_eof` when stdin hit EOF;
//!   `signals` (`INT`/`TERM` lines, one per caught signal); `waiting` while
//!   blocked in [`Behaviour::wait_release`]; `hanging` once in
//!   [`Behaviour::hang`]; `exit` with the exit code when the fake exits by
//!   itself or through its INT/TERM handlers (never when SIGKILLed);
//!   `left` with the pids of the processes [`Behaviour::leave`] started,
//!   one a line, once they all run.
//! * `script/<n>/` — behaviour of invocation `n` ([`FakeClaude::script`]),
//!   falling back to `script/default/` ([`FakeClaude::script_default`],
//!   initially [`Behaviour::ok`]`(DEFAULT_SESSION_ID, DEFAULT_RESULT)`).
//! * `release/<n>` — created by [`FakeClaude::release`].
//!
//! One invocation does, in order: install signal handling (default: SIGTERM →
//! exit 143 without output, SIGINT → print a `result`/`error_during_execution`
//! line and exit 0, like real claude 2.1.197), record argv/cwd/env/ids, read
//! stdin to EOF, write `stdout` then `stderr`, start the processes to leave
//! behind (if asked), wait for release (if asked),
//! write `stdout_after_release`, close stdout (if asked), sleep (if asked),
//! hang (if asked), exit with `exit_code`.
//!
//! `claude --version` (the daemon's runtime probe) prints `2.1.197 (Claude
//! Code)` without counting an invocation; with `FAKE_CLAUDE_VERSION_TAG` set
//! in the environment it inherited, that value follows after a space, so a
//! test can tell which daemon process sent a `ready` frame.
//!
//! Blocking steps run as background children that the signal handlers kill,
//! so a SIGTERM to the fake's pid alone is acted on at once. Only `hang` and
//! `sleep` outlive their parent when it is SIGKILLed by pid (a 20 ms poll
//! `sleep` at most for `wait_release`), so kill the process group when it
//! matters. Dropping the [`FakeClaude`] SIGKILLs every invocation still alive
//! and every process left behind that still runs.
//!
//! POSIX sh cannot trap a signal that was already ignored when it started: if
//! the fake inherits an ignored SIGINT (e.g. everything was started in the
//! background of a non-interactive shell), SIGINT does nothing to it.
//!
//! ```ignore
//! let claude = FakeClaude::install(&home.bin_dir());
//! claude.script(1, Behaviour::ok("sid-1", "hi").events(&[text_delta("sid-1", "h")]));
//! claude.script(2, Behaviour::stale_session("sid-1"));
//! // ... daemon spawns `claude` from PATH ...
//! let calls = claude.wait_for_calls(1, Duration::from_secs(10)).await;
//! assert!(calls[0].stdin.contains("[meta]"));
//! assert_eq!(calls[0].arg_after("--output-format"), Some("stream-json"));
//! ```
//!
//! Include with `mod fake_claude;` from `tests/support/mod.rs`, or with
//! `#[path = "support/fake_claude.rs"] mod fake_claude;` from a test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Session id of the default stream (and of [`Behaviour::default_stream`]).
pub const DEFAULT_SESSION_ID: &str = "fa4ec1a0-de00-4000-8000-000000000001";
/// Final `result` text of the default stream.
pub const DEFAULT_RESULT: &str = "fake claude: done";
/// Interval of the wait helpers' file-system polling.
const POLL: Duration = Duration::from_millis(10);

// ──────────────────────────────────────────────────────────── behaviour ──

/// What one invocation does. Build with the chained methods; the fields are
/// public for inspection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Behaviour {
    /// Written to stdout right after stdin reached EOF.
    pub stdout: String,
    /// Written to stderr after `stdout`.
    pub stderr: String,
    /// Block (after `stdout`/`stderr`) until [`FakeClaude::release`]`(n)`.
    pub wait_release: bool,
    /// Written to stdout after the release.
    pub stdout_after_release: String,
    /// Close stdout (EOF for the reader) before sleeping/hanging/exiting.
    pub close_stdout: bool,
    /// Sleep this long before exiting (SIGTERM/SIGINT still act at once).
    pub sleep: Option<Duration>,
    /// Ignore SIGINT and SIGTERM from the start and never exit (only SIGKILL
    /// ends it), after doing everything above. Stdout stays open unless
    /// `close_stdout`.
    pub hang: bool,
    /// Ignore SIGINT only (SIGTERM still exits 143).
    pub ignore_int: bool,
    /// Exit code (0–255).
    pub exit_code: i32,
    /// Processes started (after `stdout`/`stderr`) and left running, in
    /// order; see [`Behaviour::leave`].
    pub leave: Vec<LeftBehind>,
}

/// A process the fake starts and leaves running: `sleep 1200` holding the
/// fake's stdout and stderr open, with SIGINT and SIGTERM ignored (only
/// SIGKILL ends it), its pid recorded in `calls/<n>/left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftBehind {
    /// A background child in the fake's process group.
    InGroup,
    /// Started with `setsid`: a new session and process group, out of the
    /// reach of a signal to the fake's group (needs util-linux `setsid`).
    NewSession,
}

impl Behaviour {
    /// Silent, exit 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// A successful run: `system/init` (with `session_id`), an assistant text
    /// message, `result/success` with `text`; exit 0.
    pub fn ok(session_id: &str, text: &str) -> Self {
        Self::new().events(&[
            init(session_id),
            assistant_text(session_id, text),
            result_success(session_id, text),
        ])
    }

    /// What the fake does when not scripted:
    /// `ok(DEFAULT_SESSION_ID, DEFAULT_RESULT)`.
    pub fn default_stream() -> Self {
        Self::ok(DEFAULT_SESSION_ID, DEFAULT_RESULT)
    }

    /// Real claude's `--resume <unknown id>` (fixture run3): no init, one
    /// `result/error_during_execution`, stderr
    /// `No conversation found with session ID: <id>`, exit 1.
    pub fn stale_session(session_id: &str) -> Self {
        let mut result = result_error(session_id, "error_during_execution");
        result["errors"] = json!([format!(
            "No conversation found with session ID: {session_id}"
        )]);
        Self::new()
            .events(&[result])
            .stderr(&format!(
                "No conversation found with session ID: {session_id}\n"
            ))
            .exit_code(1)
    }

    /// Append JSON events to `stdout`, one line each.
    pub fn events(mut self, events: &[Value]) -> Self {
        self.stdout.push_str(&jsonl(events));
        self
    }

    /// Append raw text to `stdout` (blank or non-JSON lines, partial lines…).
    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout.push_str(text);
        self
    }

    /// Append text to `stderr`.
    pub fn stderr(mut self, text: &str) -> Self {
        self.stderr.push_str(text);
        self
    }

    pub fn exit_code(mut self, code: i32) -> Self {
        assert!((0..=255).contains(&code), "exit code must be 0..=255");
        self.exit_code = code;
        self
    }

    pub fn sleep(mut self, d: Duration) -> Self {
        self.sleep = Some(d);
        self
    }

    pub fn wait_release(mut self) -> Self {
        self.wait_release = true;
        self
    }

    /// Append JSON events written after the release (implies `wait_release`).
    pub fn then_events(mut self, events: &[Value]) -> Self {
        self.wait_release = true;
        self.stdout_after_release.push_str(&jsonl(events));
        self
    }

    pub fn close_stdout(mut self) -> Self {
        self.close_stdout = true;
        self
    }

    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    pub fn ignore_int(mut self) -> Self {
        self.ignore_int = true;
        self
    }

    /// Start `kind` and leave it running (may be called several times).
    pub fn leave(mut self, kind: LeftBehind) -> Self {
        self.leave.push(kind);
        self
    }

    fn write_to(&self, dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("stdout"), &self.stdout).unwrap();
        fs::write(dir.join("stderr"), &self.stderr).unwrap();
        fs::write(dir.join("stdout_after"), &self.stdout_after_release).unwrap();
        fs::write(dir.join("exit_code"), self.exit_code.to_string()).unwrap();
        let leave: String = self
            .leave
            .iter()
            .map(|k| match k {
                LeftBehind::InGroup => "group\n",
                LeftBehind::NewSession => "session\n",
            })
            .collect();
        fs::write(dir.join("leave"), leave).unwrap();
        if let Some(d) = self.sleep {
            fs::write(dir.join("sleep"), format!("{:.3}", d.as_secs_f64())).unwrap();
        }
        for (flag, on) in [
            ("wait_release", self.wait_release),
            ("close_stdout", self.close_stdout),
            ("hang", self.hang),
            ("ignore_int", self.ignore_int),
        ] {
            if on {
                fs::write(dir.join(flag), "").unwrap();
            }
        }
    }
}

// ─────────────────────────────────────────────────────── stream builders ──
// Shapes follow the real claude 2.1.197 stream-json output in
// tests/fixtures/claude-code-2.1.197/ (trimmed to what matters).

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn short_id(prefix: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &hex[..24])
}

fn usage(input: u64, output: u64, cache_read: u64, cache_creation: u64) -> Value {
    json!({
        "input_tokens": input,
        "output_tokens": output,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
    })
}

/// `{"type":"system","subtype":"init","session_id":…}`.
pub fn init(session_id: &str) -> Value {
    json!({
        "type": "system",
        "subtype": "init",
        "cwd": "/home/user/project",
        "session_id": session_id,
        "tools": ["Bash", "Edit", "Read", "Write", "mcp__cloudagent__send_message"],
        "mcp_servers": [{ "name": "cloudagent", "status": "connected" }],
        "model": "claude-opus-4-8[1m]",
        "permissionMode": "default",
        "apiKeySource": "ANTHROPIC_API_KEY",
        "claude_code_version": "2.1.197",
        "output_style": "default",
        "uuid": uuid(),
    })
}

fn assistant(session_id: &str, content: Value) -> Value {
    json!({
        "type": "assistant",
        "message": {
            "id": short_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-8",
            "content": content,
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(1667, 1, 0, 0),
            "context_management": null,
        },
        "parent_tool_use_id": null,
        "session_id": session_id,
        "uuid": uuid(),
        "request_id": short_id("req_"),
    })
}

/// An `assistant` event with one text block.
pub fn assistant_text(session_id: &str, text: &str) -> Value {
    assistant(session_id, json!([{ "type": "text", "text": text }]))
}

/// An `assistant` event with one `tool_use` block (e.g.
/// `mcp__cloudagent__send_message`).
pub fn assistant_tool_use(session_id: &str, name: &str, input: Value) -> Value {
    assistant(
        session_id,
        json!([{ "type": "tool_use", "id": short_id("toolu_"), "name": name, "input": input }]),
    )
}

fn stream_event(session_id: &str, event: Value) -> Value {
    json!({
        "type": "stream_event",
        "event": event,
        "session_id": session_id,
        "parent_tool_use_id": null,
        "uuid": uuid(),
    })
}

/// `stream_event` / `message_start` with the given cache token counts.
pub fn message_start(session_id: &str, cache_read: u64, cache_creation: u64) -> Value {
    stream_event(
        session_id,
        json!({
            "type": "message_start",
            "message": {
                "id": short_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": "claude-opus-4-8",
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage(1667, 1, cache_read, cache_creation),
            },
        }),
    )
}

/// `stream_event` / `content_block_delta` / `text_delta` (what
/// `--include-partial-messages` streams).
pub fn text_delta(session_id: &str, text: &str) -> Value {
    stream_event(
        session_id,
        json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": { "type": "text_delta", "text": text },
        }),
    )
}

/// `{"type":"result","subtype":"success","is_error":false,"result":text,…}`.
pub fn result_success(session_id: &str, text: &str) -> Value {
    json!({
        "type": "result",
        "subtype": "success",
        "is_error": false,
        "api_error_status": null,
        "duration_ms": 178,
        "duration_api_ms": 67,
        "num_turns": 1,
        "result": text,
        "stop_reason": "end_turn",
        "session_id": session_id,
        "total_cost_usd": 0.01858,
        "usage": usage(3426, 58, 0, 0),
        "permission_denials": [],
        "terminal_reason": "completed",
        "uuid": uuid(),
    })
}

/// `{"type":"result","subtype":subtype,"is_error":true,…}` without `result`
/// text (e.g. `error_during_execution`, `error_max_turns`).
pub fn result_error(session_id: &str, subtype: &str) -> Value {
    json!({
        "type": "result",
        "subtype": subtype,
        "duration_ms": 0,
        "duration_api_ms": 0,
        "is_error": true,
        "num_turns": 0,
        "stop_reason": null,
        "session_id": session_id,
        "total_cost_usd": 0,
        "usage": usage(0, 0, 0, 0),
        "modelUsage": {},
        "permission_denials": [],
        "uuid": uuid(),
        "errors": [],
    })
}

/// Events as JSON lines, each ending with `\n`.
pub fn jsonl(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

// ───────────────────────────────────────────────────────────────── calls ──

/// What one invocation was given and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// Invocation number, 1-based.
    pub n: usize,
    /// `calls/<n>/`.
    pub dir: PathBuf,
    /// Arguments without argv[0].
    pub argv: Vec<String>,
    /// Physical cwd (`pwd -P`): compare with a canonicalized path.
    pub cwd: PathBuf,
    /// Stdin as read so far (complete when `stdin_eof`).
    pub stdin: String,
    /// The fake read stdin to EOF (the spawner closed it).
    pub stdin_eof: bool,
    pub env: BTreeMap<String, String>,
    pub pid: i32,
    pub ppid: i32,
    /// Process group id (equals `pid` when spawned as a group leader).
    pub pgid: i32,
    /// Session id (equals `pid` after `setsid`).
    pub sid: i32,
    /// Signals caught by the default handlers, in order (`"INT"`, `"TERM"`).
    pub signals: Vec<String>,
    /// Exit code when the fake exited by itself or via its handlers; `None`
    /// while running or when it was killed (SIGKILL, or an untrapped signal).
    pub exit_code: Option<i32>,
    /// Pids of the processes it left behind ([`Behaviour::leave`]), once
    /// they all run.
    pub left_behind: Vec<i32>,
}

impl Call {
    /// The process still exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        pid_alive(self.pid)
    }

    /// Whether `arg` is one of the arguments.
    pub fn has_arg(&self, arg: &str) -> bool {
        self.argv.iter().any(|a| a == arg)
    }

    /// The argument following the first `flag` (e.g. `--resume`).
    pub fn arg_after(&self, flag: &str) -> Option<&str> {
        let i = self.argv.iter().position(|a| a == flag)?;
        self.argv.get(i + 1).map(String::as_str)
    }

    /// Send a signal (`"TERM"`, `"INT"`, `"KILL"`, …) to the process.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid, sig);
    }

    /// The fake is blocked in [`Behaviour::wait_release`].
    pub fn is_waiting(&self) -> bool {
        self.dir.join("waiting").exists()
    }

    /// The fake reached [`Behaviour::hang`].
    pub fn is_hanging(&self) -> bool {
        self.dir.join("hanging").exists()
    }

    fn read(dir: &Path, n: usize) -> Option<Call> {
        if !dir.join("started").exists() {
            return None;
        }
        let text = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
        let num = |name: &str| text(name).trim().parse::<i32>().unwrap_or(-1);
        let argv_raw = text("argv");
        let argv = argv_raw
            .strip_suffix('\0')
            .map(|s| s.split('\0').map(String::from).collect())
            .unwrap_or_default();
        let env = if dir.join("env0").exists() {
            parse_env(text("env0").split('\0'))
        } else {
            parse_env(text("env").lines())
        };
        Some(Call {
            n,
            dir: dir.to_path_buf(),
            argv,
            cwd: PathBuf::from(text("cwd").trim_end_matches('\n')),
            stdin: text("stdin"),
            stdin_eof: dir.join("stdin_eof").exists(),
            env,
            pid: num("pid"),
            ppid: num("ppid"),
            pgid: num("pgid"),
            sid: num("sid"),
            signals: text("signals").lines().map(String::from).collect(),
            exit_code: dir
                .join("exit")
                .exists()
                .then(|| text("exit").trim().parse().ok())
                .flatten(),
            left_behind: text("left")
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
        })
    }
}

fn parse_env<'a>(entries: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    entries
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The process exists and is not a zombie (`/proc` on Linux, else `kill -0`).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .map(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
                .unwrap_or(false),
            Err(_) => false,
        }
    } else {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// `kill -<sig> <pid>` (a negative pid signals the process group).
pub fn send_signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), "--".into(), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

// ──────────────────────────────────────────────────────────── FakeClaude ──

/// Handle on an installed fake `claude`. Dropping it SIGKILLs the
/// invocations still alive (state files are left for the tempdir to remove).
pub struct FakeClaude {
    bin: PathBuf,
    state: PathBuf,
}

impl FakeClaude {
    /// Write the executable `dir/claude` and its state dir `dir/claude.d/`
    /// (replacing earlier ones). `dir` must exist.
    pub fn install(dir: &Path) -> FakeClaude {
        let bin = dir.join("claude");
        let state = dir.join("claude.d");
        let state_str = state.to_str().expect("fake claude: UTF-8 path").to_string();
        assert!(
            !state_str.contains('\''),
            "fake claude: path must not contain a single quote: {state_str}"
        );
        if state.exists() {
            fs::remove_dir_all(&state).unwrap();
        }
        for sub in ["calls", "script", "release"] {
            fs::create_dir_all(state.join(sub)).unwrap();
        }
        fs::write(
            state.join("int_result.jsonl"),
            jsonl(&[result_error(DEFAULT_SESSION_ID, "error_during_execution")]),
        )
        .unwrap();
        let fake = FakeClaude { bin, state };
        fake.script_default(Behaviour::default_stream());
        // Write under a temporary name and rename, so a concurrently
        // starting daemon never executes a half-written file.
        let tmp = dir.join(".claude.tmp");
        fs::write(&tmp, SCRIPT.replace("@STATE@", &state_str)).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        fs::rename(&tmp, &fake.bin).unwrap();
        fake
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.bin
    }

    /// The state dir (`calls/`, `script/`, `release/`).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Behaviour of invocation `n` (1-based). Set it before the invocation starts.
    pub fn script(&self, n: usize, behaviour: Behaviour) {
        assert!(n >= 1, "fake claude: invocations are numbered from 1");
        self.write_script(&n.to_string(), &behaviour);
    }

    /// Behaviour of every invocation without its own script.
    pub fn script_default(&self, behaviour: Behaviour) {
        self.write_script("default", &behaviour);
    }

    fn write_script(&self, name: &str, behaviour: &Behaviour) {
        let dir = self.state.join("script");
        let tmp = dir.join(format!(".tmp-{name}-{}", uuid()));
        behaviour.write_to(&tmp);
        let dest = dir.join(name);
        if dest.exists() {
            fs::remove_dir_all(&dest).unwrap();
        }
        fs::rename(&tmp, &dest).unwrap();
    }

    /// Let invocation `n` continue past [`Behaviour::wait_release`] (may be
    /// called before it gets there).
    pub fn release(&self, n: usize) {
        fs::write(self.state.join("release").join(n.to_string()), "").unwrap();
    }

    /// Every invocation that has started (argv/env/ids recorded), by `n`.
    pub fn calls(&self) -> Vec<Call> {
        let calls_dir = self.state.join("calls");
        let mut ns: Vec<usize> = fs::read_dir(&calls_dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ns.sort_unstable();
        ns.into_iter()
            .filter_map(|n| Call::read(&calls_dir.join(n.to_string()), n))
            .collect()
    }

    /// Invocation `n`, if it has started.
    pub fn call(&self, n: usize) -> Option<Call> {
        Call::read(&self.state.join("calls").join(n.to_string()), n)
    }

    /// Wait until at least `count` invocations have started; returns all.
    pub async fn wait_for_calls(&self, count: usize, timeout: Duration) -> Vec<Call> {
        self.wait_until(timeout, &format!("{count} invocation(s)"), |c| {
            c.len() >= count
        })
        .await
    }

    /// Wait until invocation `n` has exited by itself (has an exit code).
    pub async fn wait_for_exit(&self, n: usize, timeout: Duration) -> Call {
        self.wait_until(timeout, &format!("invocation {n} to exit"), |_| {
            self.call(n).is_some_and(|c| c.exit_code.is_some())
        })
        .await;
        self.call(n).unwrap()
    }

    /// Wait until invocation `n` has started and its process is gone (exited
    /// or killed, and reaped or a zombie).
    pub async fn wait_for_gone(&self, n: usize, timeout: Duration) -> Call {
        self.wait_until(timeout, &format!("invocation {n} to be gone"), |_| {
            self.call(n).is_some_and(|c| !c.is_alive())
        })
        .await;
        self.call(n).unwrap()
    }

    /// Poll (every 10 ms) until `cond(calls)` holds; returns the calls.
    /// Panics after `timeout`, naming `what`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&[Call]) -> bool,
    ) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if cond(&calls) {
                return calls;
            }
            if Instant::now() >= deadline {
                self.timeout_panic(timeout, what, &calls);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn timeout_panic(&self, timeout: Duration, what: &str, calls: &[Call]) -> ! {
        let summary: Vec<String> = calls
            .iter()
            .map(|c| {
                format!(
                    "  #{} pid {} alive {} stdin_eof {} exit {:?} signals {:?} argv {:?}",
                    c.n,
                    c.pid,
                    c.is_alive(),
                    c.stdin_eof,
                    c.exit_code,
                    c.signals,
                    c.argv
                )
            })
            .collect();
        panic!(
            "fake claude: timed out after {timeout:?} waiting for {what}; invocations:\n{}",
            if summary.is_empty() {
                "  (none)".to_string()
            } else {
                summary.join("\n")
            }
        );
    }

    /// SIGKILL every invocation still alive (its process group too when it
    /// leads one). Also done on drop.
    pub fn kill_all(&self) {
        for call in self.calls() {
            for pid in &call.left_behind {
                if pid_alive(*pid) && is_left_behind(*pid) {
                    send_signal(*pid, "KILL");
                }
            }
            if call.exit_code.is_some() || !call.is_alive() || !self.is_ours(call.pid) {
                continue;
            }
            if call.pgid == call.pid {
                send_signal(-call.pid, "KILL");
            }
            send_signal(call.pid, "KILL");
        }
    }

    /// Guard against pid reuse: the process runs our script (Linux only).
    fn is_ours(&self, pid: i32) -> bool {
        match fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(&*self.bin.to_string_lossy()),
            Err(_) => !Path::new("/proc/self/cmdline").exists(),
        }
    }
}

/// Guard against pid reuse: the process is `sleep 1200` (Linux only).
fn is_left_behind(pid: i32) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline == b"sleep\x001200\x00",
        Err(_) => !Path::new("/proc/self/cmdline").exists(),
    }
}

impl Drop for FakeClaude {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The fake itself. `@STATE@` is replaced by the state dir.
const SCRIPT: &str = r#"#!/bin/sh
# Fake `claude` written by tests/support/fake_claude.rs (rewritten on install).
D='@STATE@'
if [ -n "${PATH+x}" ]; then orig_path=$PATH; has_path=1; else has_path=; fi
PATH="${PATH:+$PATH:}/usr/bin:/bin"

[ -d "$D/calls" ] || { echo "fake claude: missing state dir $D/calls" >&2; exit 97; }
# Runtime detection probes the version: answer without counting a call
# (FAKE_CLAUDE_VERSION_TAG, when set, is appended after a space).
if [ "$#" -eq 1 ] && [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)${FAKE_CLAUDE_VERSION_TAG:+ $FAKE_CLAUDE_VERSION_TAG}"; exit 0; fi
n=1
while ! mkdir "$D/calls/$n" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -gt 100000 ]; then echo "fake claude: cannot claim a call number" >&2; exit 97; fi
done
C="$D/calls/$n"
S="$D/script/$n"
[ -d "$S" ] || S="$D/script/default"

reaped=
finish() {
  # Every background child is awaited before the next starts, so `$!` is the
  # only one that can still be running.
  if [ -n "$!" ] && [ "$!" != "$reaped" ]; then kill -9 "$!" 2>/dev/null; wait "$!" 2>/dev/null; fi
  echo "$1" > "$C/exit.tmp" && mv -f "$C/exit.tmp" "$C/exit"
  exit "$1"
}
on_term() { echo TERM >> "$C/signals"; finish 143; }
on_int() { echo INT >> "$C/signals"; cat "$D/int_result.jsonl" 2>/dev/null; finish 0; }
if [ -e "$S/hang" ]; then
  trap '' INT TERM
elif [ -e "$S/ignore_int" ]; then
  trap '' INT
  trap on_term TERM
else
  trap on_int INT
  trap on_term TERM
fi
# Run a command in the background and wait, so trapped signals act at once.
run() { "$@" & wait "$!"; reaped=$!; }

for a in "$@"; do printf '%s\0' "$a"; done > "$C/argv"
pwd -P > "$C/cwd"
if [ -n "$has_path" ]; then
  PATH=$orig_path /usr/bin/env -0 > "$C/env0" 2>/dev/null || { rm -f "$C/env0"; PATH=$orig_path /usr/bin/env > "$C/env"; }
else
  /usr/bin/env -u PATH -0 > "$C/env0" 2>/dev/null || { rm -f "$C/env0"; /usr/bin/env > "$C/env"; }
fi
echo $$ > "$C/pid"
echo "$PPID" > "$C/ppid"
if [ -r "/proc/$$/stat" ]; then
  stat=$(cat "/proc/$$/stat")
  set -- ${stat##*') '}
  echo "$3" > "$C/pgid"
  echo "$4" > "$C/sid"
else
  ps -o pgid= -p $$ | tr -d ' ' > "$C/pgid"
  ps -o sess= -p $$ 2>/dev/null | tr -d ' ' > "$C/sid"
fi
: > "$C/started"

# Read stdin to EOF (background jobs get /dev/null as stdin unless redirected).
exec 3<&0
cat <&3 > "$C/stdin" & wait "$!"; reaped=$!
exec 3<&-
: > "$C/stdin_eof"

run cat "$S/stdout"
run cat "$S/stderr" >&2
if [ -s "$S/leave" ]; then
  # One file per process, joined in the order of $S/leave: the processes
  # start concurrently, so a shared file would list them in any order.
  i=0
  while read -r kind; do
    i=$((i + 1))
    stay="trap '' INT TERM; echo \$\$ > '$C/left.$i.tmp'; mv '$C/left.$i.tmp' '$C/left.$i'; exec sleep 1200"
    case $kind in
      group) sh -c "$stay" & ;;
      session) setsid sh -c "$stay" & ;;
    esac
  done < "$S/leave"
  j=1
  while [ "$j" -le "$i" ]; do
    while [ ! -e "$C/left.$j" ]; do run sleep 0.01; done
    cat "$C/left.$j" >> "$C/left.tmp"
    j=$((j + 1))
  done
  run mv -f "$C/left.tmp" "$C/left"
fi
if [ -e "$S/wait_release" ]; then
  : > "$C/waiting"
  while [ ! -e "$D/release/$n" ]; do run sleep 0.02; done
  rm -f "$C/waiting"
fi
run cat "$S/stdout_after"
if [ -e "$S/close_stdout" ]; then exec 1>/dev/null; : > "$C/stdout_closed"; fi
if [ -s "$S/sleep" ]; then run sleep "$(cat "$S/sleep")"; fi
if [ -e "$S/hang" ]; then
  : > "$C/hanging"
  # Blocks in open(2) until someone opens the FIFO for writing: no child.
  mkfifo "$C/hang.fifo" && read -r _ < "$C/hang.fifo"
fi
code=0
if [ -s "$S/exit_code" ]; then code=$(cat "$S/exit_code"); fi
finish "$code"
"#;

//! The operator's side of the binary: exit codes of every command, signals
//! on an idle pipe, configuration problems all at once in plain words,
//! where the report and the dead letters go, and `gmv config
//! --show-origin`.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gmv() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gmv"));
    command.env("RUST_LOG", "warn").env_remove("GMV_CONFIG");
    command
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("gmv runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `events` generated records in `dir/name`.
fn generated(dir: &Path, name: &str, events: u64, clean: bool) -> PathBuf {
    let path = dir.join(name);
    let mut command = gmv();
    command
        .args(["generate", "--events", &events.to_string(), "-o"])
        .arg(&path);
    if clean {
        command.arg("--clean");
    }
    let output = run(&mut command);
    assert!(output.status.success(), "{}", stderr(&output));
    path
}

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gmv did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Feeds 1000 lines to `gmv run --input -`, keeps the pipe open, sends
/// `signal`; returns (exit code, seconds from the signal to the exit, the
/// report).
fn signal_an_idle_pipe(signal: &str) -> (Option<i32>, Duration, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", 1000, false);
    let report = dir.path().join("report.json");
    let mut child = gmv()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--input", "-", "--report"])
        .arg(&report)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmv run starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&std::fs::read(&events).expect("events"))
        .expect("fed");
    stdin.flush().expect("flushed");
    // The lines are read and handed on within the stream's linger (50 ms);
    // the pipe then stays open and idle.
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let code = wait_with_deadline(&mut child, Duration::from_secs(10));
    let elapsed = sent.elapsed();
    drop(stdin);
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).expect("JSON");
    (code, elapsed, report)
}

#[test]
fn sigint_on_an_idle_stdin_pipe_stops_at_once_with_the_report_of_what_was_read() {
    let (code, elapsed, report) = signal_an_idle_pipe("-INT");
    assert_eq!(code, Some(130));
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(report["accounting"]["consumed"], 1000);
}

#[test]
fn sigterm_on_an_idle_stdin_pipe_exits_143() {
    let (code, elapsed, report) = signal_an_idle_pipe("-TERM");
    assert_eq!(code, Some(143));
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(report["accounting"]["consumed"], 1000);
}

#[test]
fn usage_errors_exit_2_on_every_command() {
    for args in [
        vec!["run"],
        vec!["run", "--input", "x", "--workers", "four"],
        vec!["demo", "--events", "many"],
        vec!["generate", "--duplicate-share", "2", "-o", "/dev/null"],
        vec!["generate", "--merchants", "0", "-o", "/dev/null"],
        vec!["serve"],
        vec!["report"],
        vec!["config", "--colour"],
        vec!["completions", "tcsh"],
        vec!["conifg"],
    ] {
        let output = run(gmv().args(&args));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(gmv().arg("conifg"));
    assert!(stderr(&output).contains("'config'"), "{}", stderr(&output));
}

#[test]
fn configuration_errors_exit_2_on_every_command_that_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        vec!["run", "--input", "/nonexistent"],
        vec!["demo", "--no-http", "--no-kafka", "--events", "10"],
        vec!["generate", "--events", "10", "-o", "/dev/null"],
        vec!["serve", "--from-kafka", "127.0.0.1:1", "--once"],
        vec!["config"],
    ] {
        let output = run(gmv()
            .current_dir(dir.path())
            .args(&args)
            .env("GMV__ENGINE__TOP_N", "lots"));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("engine.top_n"), "{args:?}");
        // A flag's bad value is a configuration error too, naming the flag.
        let flag = match args[0] {
            "run" | "demo" => ["--publish-interval", "5"],
            "generate" | "serve" => ["--connect-timeout", "soon"],
            _ => continue,
        };
        let output = run(gmv().current_dir(dir.path()).args(&args).args(flag));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&format!("flag {}", flag[0])),
            "{args:?}"
        );
    }
    let output = run(gmv().arg("--config").arg(dir.path()).arg("config"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is a directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn runtime_failures_exit_1_on_every_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = generated(dir.path(), "events.jsonl", 1000, false);
    let missing_dir = dir.path().join("missing").join("out.json");
    let report = dir.path().join("report.json");
    let unreachable = ["--connect-timeout", "1s"];
    let cases: Vec<Vec<std::ffi::OsString>> = vec![
        args(&["run", "--input", "/nonexistent/events.jsonl"]),
        [
            args(&["run", "--progress", "never", "--input"]),
            vec![
                events.clone().into(),
                "--report".into(),
                missing_dir.clone().into(),
            ],
        ]
        .concat(),
        [args(&["run", "--kafka", "127.0.0.1:1"]), args(&unreachable)].concat(),
        [
            args(&[
                "demo",
                "--no-http",
                "--no-kafka",
                "--events",
                "1000",
                "--rate",
                "0",
            ]),
            vec!["--report".into(), missing_dir.clone().into()],
        ]
        .concat(),
        [
            args(&["generate", "--events", "10", "-o"]),
            vec![missing_dir.clone().into()],
        ]
        .concat(),
        [
            args(&["generate", "--events", "10", "--kafka", "127.0.0.1:1"]),
            args(&unreachable),
        ]
        .concat(),
        [
            args(&["serve", "--from-kafka", "127.0.0.1:1", "--once"]),
            args(&unreachable),
        ]
        .concat(),
    ];
    for case in &cases {
        let output = run(gmv().current_dir(dir.path()).args(case));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{case:?}: {}",
            stderr(&output)
        );
    }
    // The Kafka error once, on one line, with what to check.
    let output = run(gmv().current_dir(dir.path()).args(&cases[2]));
    let text = stderr(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("gmv: error:"))
        .expect("an error line");
    assert_eq!(
        line.matches("Broker transport failure").count(),
        1,
        "{line}"
    );
    assert!(line.contains("check"), "{line}");

    // gmv report: its input's problems are the user's (2), an output it
    // cannot write is a failure (1).
    let ran = run(gmv()
        .args(["run", "--progress", "never", "--input"])
        .arg(&events)
        .arg("--report")
        .arg(&report));
    assert!(ran.status.success(), "{}", stderr(&ran));
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").expect("written");
    let output = run(gmv()
        .args(["report", "--run"])
        .arg(&report)
        .arg("--out")
        .arg(blocker.join("out")));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let not_utf8 = dir.path().join("binary.json");
    std::fs::write(&not_utf8, b"\xff\xfe\x00{").expect("written");
    let bad_json = dir.path().join("bad.json");
    std::fs::write(&bad_json, "{\"gmv_cny\": ").expect("written");
    for input in [&not_utf8, &bad_json, &dir.path().to_path_buf()] {
        let output = run(gmv()
            .args(["report", "--run"])
            .arg(input)
            .arg("--out")
            .arg(dir.path().join("out")));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{input:?}: {}",
            stderr(&output)
        );
    }
}

fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
    list.iter().map(Into::into).collect()
}

#[test]
fn a_property_librdkafka_refuses_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[kafka.consumer]\n\"fetch.wait.max.msec\" = \"10\"\n",
    )
    .expect("written");
    let output = run(gmv().arg("--config").arg(&typo).arg("config"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("kafka.consumer.\"fetch.wait.max.msec\""),
        "{}",
        stderr(&output)
    );
    // A bad value is checked by the commands that make clients, before
    // they connect.
    let value = dir.path().join("value.toml");
    std::fs::write(&value, "[kafka.producer]\n\"linger.ms\" = \"soon\"\n").expect("written");
    let output = run(gmv().arg("--config").arg(&value).args([
        "run",
        "--kafka",
        "127.0.0.1:1",
        "--connect-timeout",
        "1s",
    ]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("linger.ms"), "{}", stderr(&output));
}

#[test]
fn every_command_documents_the_exit_codes() {
    for command in [
        "run",
        "demo",
        "generate",
        "serve",
        "report",
        "config",
        "completions",
    ] {
        let output = run(gmv().args([command, "--help"]));
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Exit codes: 0 done; 1"), "{command}: {help}");
    }
    let output = run(gmv().arg("--help"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Exit codes"));
}

#[test]
fn a_config_file_with_five_problems_lists_all_five_in_plain_words() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[engine]\ntop_n = \"many\"\nworkres = 2\n\
         [publish]\ninterval = \"5\"\n\
         [dedup]\nmax_ids = -3\n\
         [kafka.checkpoint]\nstore = \"s3\"\n",
    )
    .expect("written");
    let output = run(gmv().arg("--config").arg(&path).arg("config"));
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("(5 problems)"), "{text}");
    for key in [
        "engine.top_n",
        "engine.workres",
        "publish.interval",
        "dedup.max_ids",
        "kafka.checkpoint.store",
    ] {
        assert!(
            text.contains(&format!("`{key}` (file ")),
            "{key} in: {text}"
        );
    }
    assert!(text.contains("did you mean `workers`?"), "{text}");
    assert!(
        text.contains("\"5\" is not a duration; write it with a unit, e.g. \"500ms\""),
        "{text}"
    );
    for rust in [
        "alloc::",
        "expected usize",
        "usize",
        "&str",
        "String)",
        "struct ",
        "``",
    ] {
        assert!(!text.contains(rust), "{rust} in: {text}");
    }
}

#[test]
fn show_origin_names_the_environment_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gmv.toml");
    std::fs::write(&path, "[engine]\nworkers = 3\n").expect("written");
    let output = run(gmv()
        .arg("--config")
        .arg(&path)
        .args(["config", "--show-origin"])
        .env("GMV__ENGINE__TOP_N", "7"));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.contains(&format!(" {key} = ")))
            .unwrap_or_else(|| panic!("{key} not in {text}"))
            .to_owned()
    };
    assert!(
        line("engine.top_n").starts_with("environment GMV__ENGINE__TOP_N"),
        "{text}"
    );
    assert!(
        line("engine.workers").starts_with(&format!("file {}", path.display())),
        "{text}"
    );
    assert!(
        line("engine.max_event_bytes").starts_with("default"),
        "{text}"
    );

    // Plain `gmv config` shows [http] at its defaults, commented out.
    let output = run(gmv().arg("config"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("# [http]"), "{text}");
    assert!(text.contains("# bind = \"127.0.0.1:8080\""), "{text}");
}

#[test]
fn dead_letters_go_beside_the_report_only_when_there_are_some() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&work).expect("dir");
    std::fs::create_dir_all(&out).expect("dir");
    let events = generated(dir.path(), "events.jsonl", 20_000, false);
    let clean = generated(dir.path(), "clean.jsonl", 2_000, true);
    let run_on = |input: &Path, report: &str, extra: &[&str]| {
        let output = run(gmv()
            .current_dir(&work)
            .args(["run", "--progress", "never", "--input"])
            .arg(input)
            .arg("--report")
            .arg(out.join(report))
            .args(extra));
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .expect("dead letters")
            .lines()
            .count()
    };
    let output = run_on(&events, "run.json", &[]);
    let dead = out.join("run.dead-letters.jsonl");
    let kept = lines(&dead);
    assert!(kept > 0);
    assert!(stderr(&output).contains(&dead.display().to_string()));
    // A second run starts the file afresh; --append-dead-letters adds.
    run_on(&events, "run.json", &[]);
    assert_eq!(lines(&dead), kept);
    run_on(&events, "run.json", &["--append-dead-letters"]);
    assert_eq!(lines(&dead), 2 * kept);

    run_on(&clean, "clean.json", &[]);
    assert!(!out.join("clean.dead-letters.jsonl").exists());
    assert_eq!(
        std::fs::read_dir(&work).expect("work dir").count(),
        0,
        "nothing is written into the working directory"
    );
}

#[test]
fn the_report_goes_to_stdout_when_it_is_not_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clean = generated(dir.path(), "clean.jsonl", 2_000, true);
    let output = run(gmv()
        .current_dir(dir.path())
        .args(["run", "--progress", "never", "--input"])
        .arg(&clean));
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("the report on stdout");
    assert_eq!(report["accounting"]["consumed"], 2_000);
    assert!(!dir.path().join("clean.report.json").exists());
}

#[test]
fn generate_says_what_it_wrote() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.jsonl");
    let output = run(gmv()
        .args(["generate", "--events", "1000", "-o"])
        .arg(&path)
        .env("RUST_LOG", "info"));
    assert!(output.status.success());
    let bytes = std::fs::metadata(&path).expect("written").len();
    let text = stderr(&output);
    assert!(text.contains("wrote 1,000 records"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(bytes > 0);
}

#[test]
fn completions_are_generated_on_demand() {
    let output = run(gmv().args(["completions", "bash"]));
    assert!(output.status.success());
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(script.contains("_gmv"), "{script}");
    assert!(script.contains("--show-origin"));
}

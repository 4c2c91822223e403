//! Supervisor mode (`serve --supervise`, `lameduck::unix::Supervisor`) as
//! process tests of the demo server with real signals on loopback: the
//! supervisor's pid never changes while generations come and go under
//! load; failing generations roll back; a burst of SIGHUPs starts one
//! generation; a stop during a restart abandons it; systemd hears only the
//! supervisor; and, as PID 1 of a new pid namespace, it drains on SIGTERM,
//! restarts, and reaps every child, orphans included.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::load::{
    FAILING_SUCCESSORS, Install, LoadRun, install, pid_at, scratch_dir, wait_serving,
};
use lameduck_tests::process::{
    Demo, EVENTUALLY, NotifySocket, Signal, children_of, fds, has_exited, parse_stat, proc_state,
    send_signal, serve_binary, start_environment, wait_exited, zombies_of,
};

/// `generation N: pid P ready; ...` in a supervisor line: (N, P).
fn ready_generation(line: &str) -> (u64, u32) {
    let rest = line
        .split("supervisor: generation ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a generation line: {line:?}"));
    let (n, rest) = rest.split_once(": pid ").expect("a generation number");
    let pid = rest.split(' ').next().expect("a pid");
    (
        n.parse().expect("a number"),
        pid.parse().expect("a numeric pid"),
    )
}

/// The serving generation once the supervisor reported it ready.
fn first_generation(demo: &mut Demo) -> u32 {
    let line = demo.wait_stderr("; serving (supervisor pid ");
    ready_generation(&line).1
}

/// Waits until `parent`'s children (running, or zombies not reaped yet)
/// are exactly `expected`.
fn wait_children(parent: u32, expected: &[u32]) {
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    loop {
        let mut children = children_of(parent);
        children.sort_unstable();
        let mut wanted = expected.to_vec();
        wanted.sort_unstable();
        if children == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children of {parent}: {children:?} (zombies {:?}), expected {wanted:?}",
            zombies_of(parent)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One SIGHUP to the supervisor (`supervisor`: its pid as seen from
/// here); returns the new generation's pid (as the supervisor sees it)
/// once it is handed off to and new connections reach it.
fn restart(demo: &mut Demo, supervisor: u32, addr: SocketAddr, old: u32) -> u32 {
    let from = demo.stderr_seen.len();
    send_signal(supervisor, Signal::HUP);
    let line = demo.wait_stderr_from(from, "hands off and drains");
    let (_, new) = ready_generation(&line);
    assert!(
        line.ends_with(&format!("pid {new} ready; pid {old} hands off and drains")),
        "{line}"
    );
    wait_serving(addr, new);
    new
}

const RESTARTS: usize = 20;

/// Supervisor mode on the other runtimes, two threads each (`--supervise
/// --runtime R --threads 2`): 5 SIGHUPs under load lose nothing, the
/// supervisor keeps its pid, SIGTERM ends it with status 0.
#[test]
fn supervised_on_every_runtime_under_load() {
    let mut runtimes = vec!["smol-local"];
    if cfg!(feature = "compio") {
        runtimes.push("compio");
    }
    if cfg!(feature = "tokio") {
        runtimes.push("tokio");
    }
    for runtime in runtimes {
        let threads = if runtime == "smol-local" { "1" } else { "2" };
        let mut demo = Demo::start(&[
            "--supervise",
            "--runtime",
            runtime,
            "--threads",
            threads,
            "--listen",
            "127.0.0.1:0",
        ]);
        let supervisor = demo.pid();
        let addr = demo.tcp_addrs()[0];
        let mut current = first_generation(&mut demo);
        let run = LoadRun::start(addr);
        for _ in 0..5 {
            run.wait_slow_in_flight();
            current = restart(&mut demo, supervisor, addr, current);
            run.restarted();
        }
        let report = run.finish();
        report.assert_lossless(1);
        send_signal(supervisor, Signal::TERM);
        let (status, stderr) = demo.wait_exit();
        assert_eq!(status.code(), Some(0), "{runtime}: {stderr:?}");
    }
}

/// 20 SIGHUPs to the supervisor while keep-alive clients, clients with a
/// new connection per request, and slow requests run: no request fails or
/// is cut short, the supervisor's pid (the one this test started, the
/// first line's, the pid file's) stays the same, `/pid` changes every
/// time, every slow response comes from the generation its connection
/// reached (`X-Pid`), every generation drains cleanly, and none is left
/// unreaped.
#[test]
fn restart_under_load_keeps_the_supervisor_pid() {
    let started = Instant::now();
    let dir = scratch_dir("supervise-load");
    let pid_file = dir.join("serve.pid");
    let mut demo = Demo::start(&[
        "--supervise",
        "--listen",
        "127.0.0.1:0",
        "--grace",
        "30",
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let supervisor = demo.pid();
    assert_eq!(
        demo.generations,
        [supervisor],
        "the first line names the supervisor: {}",
        demo.first_line
    );
    let addr = demo.tcp_addrs()[0];
    let stable = supervisor.to_string();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), stable);
    let mut current = first_generation(&mut demo);
    assert_ne!(current, supervisor);
    assert_eq!(pid_at(addr).unwrap(), current);

    let run = LoadRun::start(addr);
    let mut pids = vec![current];
    for round in 1..=RESTARTS {
        run.wait_slow_in_flight();
        let new = restart(&mut demo, supervisor, addr, current);
        run.restarted();
        assert!(!pids.contains(&new), "round {round}: pid {new} again");
        pids.push(new);
        current = new;
        // The same supervisor, alive, the parent of the new generation;
        // the pid file unchanged.
        assert!(!has_exited(supervisor), "round {round}");
        assert_eq!(proc_state(new).map(|(_, ppid)| ppid), Some(supervisor));
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            stable,
            "round {round}: the pid file keeps the supervisor's pid"
        );
    }
    let report = run.finish();
    // Every previous generation drains and is reaped.
    for old in &pids[..RESTARTS] {
        wait_exited(*old);
    }
    wait_children(supervisor, &[current]);

    send_signal(supervisor, Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    report.assert_lossless(10);
    let lines: Vec<&String> = demo
        .stdout_seen
        .iter()
        .filter(|l| l.starts_with("listening on "))
        .collect();
    assert_eq!(
        lines,
        [&demo.first_line],
        "one first line, the supervisor's"
    );
    let drained = stderr
        .iter()
        .filter(|l| {
            l.as_str() == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"
        })
        .count();
    assert_eq!(
        drained,
        RESTARTS + 1,
        "every generation drains cleanly: {stderr:?}"
    );
    let handed = stderr
        .iter()
        .filter(|l| l.contains("serve: restart: pid ") && l.contains(" handed off to pid "))
        .count();
    assert_eq!(handed, RESTARTS, "each old generation was told: {stderr:?}");
    assert!(
        stderr.contains(&format!(
            "serve: supervisor: SIGTERM: forwarded to pid {current}"
        )),
        "{stderr:?}"
    );
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    assert!(!pid_file.exists(), "the supervisor removes its pid file");
    eprintln!(
        "supervisor restart under load: {RESTARTS} restarts, supervisor pid {supervisor} \
         throughout, {} responses, 0 failed, {} slow responses across a restart; {}; {:.1} s",
        report.total,
        report.across,
        report.per_kind.join("; "),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Generations that exit at once, never report ready, or cannot be
/// executed at all: each time the serving generation goes on (a
/// keep-alive connection to it included), the failed one is killed and
/// reaped (no zombie, no child left but the serving one), and a later
/// restart with a good executable succeeds.
#[test]
fn failing_generations_roll_back() {
    let dir = scratch_dir("supervise-failing");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command.args([
        "--supervise",
        "--listen",
        "127.0.0.1:0",
        "--ready-timeout",
        "1.5",
    ]);
    let mut demo = Demo::spawn(command);
    let supervisor = demo.pid();
    let addr = demo.tcp_addrs()[0];
    let serving = first_generation(&mut demo);
    let mut kept = Client::connect(addr).unwrap();
    assert_eq!(kept.get("/pid").unwrap().text(), serving.to_string());

    for (what, contents, expected) in FAILING_SUCCESSORS {
        install(&exe, contents);
        let from = demo.stderr_seen.len();
        let t0 = Instant::now();
        send_signal(supervisor, Signal::HUP);
        let line = demo.wait_stderr_from(from, "supervisor: restart failed: ");
        assert!(line.contains(expected), "{what}: {line}");
        assert!(
            line.ends_with("; the serving generation goes on"),
            "{what}: {line}"
        );
        if what == "never ready" {
            assert!(
                t0.elapsed() >= Duration::from_millis(1400),
                "{what}: too early"
            );
        }
        if let Some(started) = demo.stderr_seen[from..]
            .iter()
            .find(|l| l.contains("supervisor: generation ") && l.contains(" started;"))
        {
            let (_, child) = ready_generation(started);
            wait_exited(child);
        }
        // Reaped: the serving generation is the only child left.
        wait_children(supervisor, &[serving]);
        assert_eq!(pid_at(addr).unwrap(), serving, "{what}");
        assert_eq!(
            kept.get("/pid").unwrap().text(),
            serving.to_string(),
            "{what}"
        );
    }

    install(&exe, Install::Binary(&serve_binary()));
    let new = restart(&mut demo, supervisor, addr, serving);
    // The old keep-alive connection is closed by the old generation's drain.
    let (rest, _) = kept.read_until_closed().unwrap();
    assert!(rest.is_empty());
    wait_exited(serving);
    send_signal(supervisor, Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(has_exited(new));
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Twenty SIGHUPs at once to the supervisor: exactly one new generation
/// starts; the supervisor keeps no descriptor of the old generation or
/// its pipes; the generation gets the listener at 3, its readiness pipe at
/// 4 and its link at 5 (and the variables naming them); a SIGHUP to the
/// generation itself is refused.
#[test]
fn a_burst_of_sighups_gives_one_generation() {
    let mut demo = Demo::start(&["--supervise", "--listen", "127.0.0.1:0"]);
    let supervisor = demo.pid();
    let addr = demo.tcp_addrs()[0];
    let first = first_generation(&mut demo);
    let before = fds(supervisor);
    for _ in 0..20 {
        send_signal(supervisor, Signal::HUP);
    }
    let line = demo.wait_stderr("hands off and drains");
    let (generation, new) = ready_generation(&line);
    assert_eq!(generation, 2, "{line}");
    wait_serving(addr, new);
    demo.wait_stderr(&format!("supervisor: generation pid {first} exited"));

    let env = start_environment(new);
    let hand_off: Vec<&String> = env
        .iter()
        .filter(|e| e.starts_with("LISTEN_") || e.starts_with("LAMEDUCK_"))
        .collect();
    assert_eq!(
        hand_off,
        [
            // The supervisor's second generation.
            &"LAMEDUCK_GENERATION=2".to_owned(),
            &"LISTEN_FDS=1".to_owned(),
            &"LISTEN_FDNAMES=listen-0".to_owned(),
            &"LAMEDUCK_READY_FD=4".to_owned(),
            &"LAMEDUCK_SUPERVISOR_FD=5".to_owned(),
            &format!("LISTEN_PID={new}"),
        ]
    );
    let generation_fds = fds(new);
    assert!(
        generation_fds
            .iter()
            .any(|(n, t)| *n == 3 && t.starts_with("socket:")),
        "{generation_fds:?}"
    );
    assert!(
        generation_fds
            .iter()
            .any(|(n, t)| *n == 5 && t.starts_with("pipe:")),
        "the link is kept: {generation_fds:?}"
    );
    // The supervisor: its descriptors of before, plus the new link's write
    // end (the old one closed with the old generation's exit).
    let after = fds(supervisor);
    assert_eq!(after.len(), before.len(), "{before:?} then {after:?}");

    // A SIGHUP sent to the generation itself is refused (restarts are the
    // supervisor's); it goes on serving.
    send_signal(new, Signal::HUP);
    demo.wait_stderr(&format!(
        "serve: restart refused: this process is a supervised generation: restarts are its \
         supervisor's (send SIGHUP to pid {supervisor})"
    ));
    assert_eq!(pid_at(addr).unwrap(), new);

    send_signal(supervisor, Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let started = stderr
        .iter()
        .filter(|l| l.contains("supervisor: generation ") && l.contains(" started;"))
        .count();
    assert_eq!(started, 2, "generation 1 and one more: {stderr:#?}");
    assert!(zombies_of(supervisor).is_empty());
}

/// SIGTERM while a generation is starting: it is killed and reaped, the
/// serving one drains, and the supervisor exits 0.
#[test]
fn sigterm_during_a_restart_abandons_it() {
    let dir = scratch_dir("supervise-abandon");
    let exe = dir.join("serve");
    install(&exe, Install::Binary(&serve_binary()));
    let mut command = Command::new(&exe);
    command.args(["--supervise", "--listen", "127.0.0.1:0"]);
    let mut demo = Demo::spawn(command);
    let supervisor = demo.pid();
    let serving = first_generation(&mut demo);
    install(&exe, Install::Script("#!/bin/sh\nexec sleep 60\n", true));
    send_signal(supervisor, Signal::HUP);
    let started = demo.wait_stderr("supervisor: generation 2: pid ");
    let (_, child) = ready_generation(&started);
    send_signal(supervisor, Signal::TERM);
    demo.wait_stderr("supervisor: restart abandoned: ");
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(has_exited(child) && has_exited(serving));
    assert!(
        stderr.contains(&format!(
            "serve: supervisor: SIGTERM: forwarded to pid {serving}"
        )),
        "{stderr:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The supervisor killed outright (`SIGKILL`: no forwarding): its
/// generation sees the end of its link, drains and exits cleanly rather
/// than serve on unsupervised.
#[test]
fn a_generation_outliving_its_supervisor_drains() {
    let mut demo = Demo::start(&["--supervise", "--listen", "127.0.0.1:0"]);
    let supervisor = demo.pid();
    let serving = first_generation(&mut demo);
    send_signal(supervisor, Signal::KILL);
    demo.wait_stderr("serve: the supervisor is gone: draining");
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), None, "killed");
    wait_exited(serving);
    assert!(
        stderr
            .iter()
            .any(|l| l == "serve: done: drained, forced=0, hooks_cut_off=false, hijacked_open=0"),
        "{stderr:?}"
    );
}

/// Under systemd the supervisor is the main process: `READY=1` once
/// generation 1 is ready, `RELOADING=1` + `MONOTONIC_USEC` then `READY=1`
/// around a restart (no `MAINPID=`: it stays), `STOPPING=1` — all from the
/// supervisor's pid; the generations send nothing (`STATUS=` included).
#[test]
fn notify_comes_from_the_supervisor_only() {
    let dir = scratch_dir("supervise-notify");
    let notify = NotifySocket::bind(&dir);
    let mut command = Command::new(serve_binary());
    command
        .args(["--supervise", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify.path);
    let mut demo = Demo::spawn(command);
    let supervisor = demo.pid();
    let addr = demo.tcp_addrs()[0];
    assert_eq!(notify.next_protocol(), (supervisor, "READY=1".to_owned()));
    let serving = first_generation(&mut demo);
    let new = restart(&mut demo, supervisor, addr, serving);
    let (from, reloading) = notify.next_protocol();
    assert_eq!(from, supervisor);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(notify.next_protocol(), (supervisor, "READY=1".to_owned()));
    wait_exited(serving);
    send_signal(supervisor, Signal::TERM);
    assert_eq!(
        notify.next_protocol(),
        (supervisor, "STOPPING=1".to_owned())
    );
    let (status, _) = demo.wait_exit();
    assert_eq!(status.code(), Some(0));
    assert!(has_exited(new));
    assert_eq!(
        notify.rest_protocol(),
        Vec::<String>::new(),
        "nothing else was sent"
    );
    // STATUS= lines too come from the supervisor only.
    assert!(
        notify
            .take_skipped()
            .iter()
            .all(|(from, _)| *from == supervisor)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- PID 1 ----------------------------------------------------------------

/// Kills a pid namespace's init (and so the whole namespace) if the test
/// ends early.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !has_exited(self.0) {
            send_signal(self.0, Signal::KILL);
        }
    }
}

/// Whether `unshare --pid --fork --mount-proc` works here (root, and the
/// tool installed); if not, why.
fn unshare_works() -> Result<(), String> {
    match Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "unshare --pid --fork --mount-proc failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("unshare cannot be run: {e}")),
    }
}

/// The `NSpid:` line of `/proc/PID/status`: the pid in each namespace,
/// outermost first.
fn ns_pids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The supervisor as PID 1 of a new pid namespace (`unshare --pid --fork
/// --mount-proc`, as a container's init), like `docker run` and `docker
/// stop`: its first line says `pid=1`; 10 restarts under load lose
/// nothing; orphans re-parented to it are reaped; no zombie anywhere in the
/// namespace (its own `/proc`, read from inside); SIGTERM from outside
/// drains a request in flight and exits 0. Needs root: skipped, with a
/// message, where `unshare` is refused or missing.
#[test]
fn as_pid_1_in_a_new_pid_namespace() {
    if let Err(why) = unshare_works() {
        eprintln!("SKIPPED as_pid_1_in_a_new_pid_namespace: {why}");
        return;
    }
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(serve_binary())
        .args(["--supervise", "--listen", "127.0.0.1:0", "--grace", "10"]);
    let mut demo = Demo::spawn(command);
    assert_eq!(demo.generations, [1], "PID 1: {}", demo.first_line);
    // The supervisor as seen from here: unshare's only child.
    let children = children_of(demo.pid());
    assert_eq!(children.len(), 1, "{children:?}");
    let init = children[0];
    let _guard = KillOnDrop(init);
    assert_eq!(ns_pids(init), [init, 1]);
    let addr = demo.tcp_addrs()[0];
    let mut current = first_generation(&mut demo);

    let run = LoadRun::start(addr);
    for _ in 0..10 {
        run.wait_slow_in_flight();
        let new = restart(&mut demo, init, addr, current);
        run.restarted();
        assert_ne!(new, current);
        current = new;
    }
    let report = run.finish();
    report.assert_lossless(5);

    // Orphans: a shell inside the namespace starts three background
    // sleeps and exits; they are re-parented to PID 1, which reaps them.
    let orphans_before = demo
        .stderr_seen
        .iter()
        .filter(|l| l.contains("supervisor: reaped orphan pid "))
        .count();
    let nsenter = Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--mount", "--"])
        .args([
            "sh",
            "-c",
            "(sleep 0.1 &); (sleep 0.2 &); (sleep 0.3 &); exit 0",
        ])
        .stdin(Stdio::null())
        .status();
    let mut orphans = "not tested (nsenter unavailable)".to_owned();
    match nsenter {
        Ok(status) if status.success() => {
            let deadline = Instant::now() + EVENTUALLY;
            // One stderr line per pass; bounded by the deadline.
            while demo
                .stderr_seen
                .iter()
                .filter(|l| l.contains("supervisor: reaped orphan pid "))
                .count()
                < orphans_before + 3
            {
                assert!(Instant::now() < deadline, "orphans not reaped");
                let from = demo.stderr_seen.len();
                demo.wait_stderr_from(from, "supervisor: ");
            }
            orphans = "3 reaped".to_owned();
        }
        other => eprintln!("nsenter unavailable ({other:?}): orphans not tested"),
    }

    // No zombie in the namespace: every old generation gone, and its own
    // /proc, read from inside, shows no process in state Z.
    let deadline = Instant::now() + EVENTUALLY;
    // One look per pass; bounded by the deadline.
    while children_of(init).len() > 1 {
        assert!(
            Instant::now() < deadline,
            "children left: {:?}",
            children_of(init)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(zombies_of(init).is_empty(), "{:?}", zombies_of(init));
    let inside = Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--mount", "--"])
        .args(["sh", "-c", "cat /proc/[0-9]*/stat"])
        .stdin(Stdio::null())
        .output();
    let mut scanned = "not scanned (nsenter unavailable)".to_owned();
    if let Some(output) = inside.ok().filter(|o| o.status.success()) {
        let stats = String::from_utf8_lossy(&output.stdout);
        let processes: Vec<(u32, char, u32)> = stats.lines().filter_map(parse_stat).collect();
        scanned = format!("{} processes in its /proc, none a zombie", processes.len());
        assert!(
            processes.iter().any(|(pid, _, _)| *pid == 1),
            "the namespace's own /proc: {stats}"
        );
        let zombies: Vec<_> = processes.iter().filter(|(_, s, _)| *s == 'Z').collect();
        assert!(zombies.is_empty(), "zombies in the namespace: {zombies:?}");
    }

    // `docker stop`: SIGTERM to PID 1 from outside; a response in
    // progress completes.
    let mut slow = Client::connect(addr).unwrap();
    slow.send_get("/stream?chunks=3&ms=200").unwrap();
    slow.read_until_contains(b"chunk 0\n").unwrap();
    let from = demo.stderr_seen.len();
    send_signal(init, Signal::TERM);
    demo.wait_stderr_from(
        from,
        &format!("supervisor: SIGTERM: forwarded to pid {current}"),
    );
    let response = slow.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "chunk 0\nchunk 1\nchunk 2\n");
    assert_eq!(response.header("x-pid"), Some(current.to_string().as_str()));
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(has_exited(init));
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    eprintln!(
        "supervisor as PID 1: 10 restarts, {} responses, 0 failed; orphans: {orphans}; \
         namespace: {scanned}; {}",
        report.total,
        report.per_kind.join("; ")
    );
}

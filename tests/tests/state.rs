//! Restart state, as process tests of the demo server (`examples/serve`):
//! its `/hits` count travels to each successor (restart state) and keeps
//! counting across restarts under load; successors that refuse the
//! state, crash after taking it, or hang are rolled back and the old
//! process goes on with its own count; a UDP socket passed as state
//! reaches each successor and no descriptor leaks.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use lameduck_testkit::client::Client;
use lameduck_tests::load::{LoadRun, SwappableDemo, pid_at, wait_serving};
use lameduck_tests::process::{
    Demo, EVENTUALLY, Signal, children_of, fd_kinds, fds, has_exited, parse_first_line,
    send_signal, wait_exited, wait_fd_kinds, zombies_of,
};

/// `GET /hits` on `client`: the count, and the pid that answered.
fn hits(client: &mut Client) -> (u64, u32) {
    let response = client.get("/hits").unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let pid = response.header("x-pid").unwrap().parse().unwrap();
    (response.text().parse().unwrap(), pid)
}

fn hits_at(addr: SocketAddr) -> (u64, u32) {
    hits(&mut Client::connect(addr).unwrap())
}

/// The number after `key=` in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// One SIGHUP; returns the successor's pid once it is handed off to and
/// new connections reach it, and the count it took over.
fn restart(demo: &mut Demo, addrs: &[SocketAddr]) -> (u32, u64) {
    let old = demo.current();
    let from = demo.stderr_seen.len();
    send_signal(old, Signal::HUP);
    let (new_addrs, new) = parse_first_line(&demo.next_first_line());
    assert_eq!(new_addrs, addrs);
    demo.wait_stderr_from(from, &format!("pid {old} handed off to pid {new}"));
    let took = demo.wait_stderr_from(from, "took the restart state: hits=");
    wait_serving(addrs[0], new);
    (new, number_after(&took, "hits="))
}

const RESTARTS: usize = 10;

/// `/hits` keeps counting across 10 restarts under load: each successor
/// starts from at least the count its predecessor had answered before the
/// restart (its state is taken when the restart begins), and counts on
/// from there; no request of the load fails.
#[test]
fn hits_keep_counting_across_restarts_under_load() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--grace", "30"]);
    let addrs = demo.tcp_addrs();
    let run = LoadRun::start(addrs[0]);
    let (mut last, pid) = hits_at(addrs[0]);
    assert_eq!(pid, demo.pid());
    for round in 1..=RESTARTS {
        run.wait_slow_in_flight();
        let before = hits_at(addrs[0]).0;
        assert!(before > last, "round {round}: {before} after {last}");
        let (new, took) = restart(&mut demo, &addrs);
        run.restarted();
        assert!(
            took >= before,
            "round {round}: the successor took {took}, the predecessor had answered {before}"
        );
        let (after, pid) = hits_at(addrs[0]);
        assert_eq!(pid, new, "round {round}");
        assert!(after > took, "round {round}: {after} after taking {took}");
        last = after;
    }
    let report = run.finish();
    report.assert_lossless(10);
    let (end, _) = hits_at(addrs[0]);
    assert!(end > last);
    let current = demo.current();
    send_signal(current, Signal::TERM);
    wait_exited(current);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    eprintln!(
        "hits: {end} after {RESTARTS} restarts and {} load responses",
        report.total
    );
}

/// What a wrapper script makes the successor do, and what the old
/// process's report must say.
const STATE_FAULTS: [(&str, &str); 3] = [
    (
        "refuse-state",
        "refused the restart state (restart state version 1 is not one of 2..=2)",
    ),
    (
        "exit-after-state",
        "exited before it was ready (exit status: 3)",
    ),
    ("hang-after-state", "was not ready in time"),
];

/// Successors that refuse the state's version, exit after taking it, or
/// hang after taking it: each is killed, the restart rolled back, and the
/// old process answers `/hits` with its own count, exactly one more than
/// before (nothing was lost, nothing reset), with the descriptors it had
/// (the offered copies closed). Then a good successor takes the count on.
#[test]
fn failing_successors_leave_the_old_state_untouched() {
    let installed = SwappableDemo::new("state-faults");
    let dir = &installed.dir;
    let mut command = installed.command();
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--ready-timeout",
        "1.5",
        "--udp",
        "127.0.0.1:0",
    ]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let pid = demo.pid();
    let mut kept = Client::connect(addrs[0]).unwrap();
    let (mut count, served) = hits(&mut kept);
    assert_eq!(served, pid);
    let baseline = fd_kinds(&fds(pid));

    for (fault, expected) in STATE_FAULTS {
        installed.install_fault(fault);
        let from = demo.stderr_seen.len();
        send_signal(pid, Signal::HUP);
        let line = demo.wait_stderr_from(from, "restart failed: ");
        assert!(line.contains(expected), "{fault}: {line}");
        assert!(
            line.ends_with(&format!("still serving (pid {pid})")),
            "{fault}: {line}"
        );
        if fault != "refuse-state" {
            demo.wait_stderr_from(from, "took the restart state: hits=");
        }
        let child: u32 = demo.stderr_seen[from..]
            .iter()
            .find_map(|l| l.strip_prefix("serve: restart: successor pid "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{fault}: no successor pid in {:?}", demo.stderr_seen));
        wait_exited(child);
        assert!(zombies_of(pid).is_empty(), "{fault}");
        let deadline = Instant::now() + EVENTUALLY;
        // One look per pass; bounded by the deadline.
        while !children_of(pid).is_empty() {
            assert!(Instant::now() < deadline, "{fault}: children left");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Its own count, untouched: exactly the next one.
        let (now, served) = hits(&mut kept);
        assert_eq!(served, pid, "{fault}");
        assert_eq!(now, count + 1, "{fault}: the old count goes on");
        count = now;
        assert!(!has_exited(pid));
        wait_fd_kinds(pid, &baseline, fault);
    }

    installed.install_demo();
    let (new, took) = restart(&mut demo, &addrs);
    assert_eq!(
        took, count,
        "the successor takes the count the old process kept"
    );
    assert_eq!(pid_at(addrs[0]).unwrap(), new);
    send_signal(new, Signal::TERM);
    wait_exited(new);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    assert!(!stderr.iter().any(|l| l.contains("panicked")), "{stderr:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The inode of the UDP socket bound to `addr` (`/proc/net/udp`).
fn udp_inode(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str())).then(|| fields[9].to_owned())
        })
        .unwrap_or_else(|| panic!("{addr} ({local}) not in /proc/net/udp"))
}

/// Sends datagrams to `addr` until one is answered by `pid` (the
/// predecessor may answer a few until it stops serving).
fn wait_udp_answer(client: &UdpSocket, addr: SocketAddr, pid: u32) {
    let deadline = Instant::now() + EVENTUALLY;
    let mut buf = [0u8; 64];
    // One datagram per pass; bounded by the deadline.
    loop {
        client.send_to(b"pid?", addr).unwrap();
        if let Ok(n) = client.recv(&mut buf)
            && buf[..n] == *format!("pid={pid}").as_bytes()
        {
            return;
        }
        assert!(Instant::now() < deadline, "udp: pid {pid} never answered");
    }
}

/// `--udp`: the UDP socket is restart state. The same socket (same inode)
/// reaches every successor, which answers on it; each generation holds
/// the same descriptors (nothing passed along leaks, the channel and the
/// offered copies are closed).
#[test]
fn a_udp_socket_reaches_every_successor_and_nothing_leaks() {
    let mut demo = Demo::start(&["--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    let addrs = demo.tcp_addrs();
    let line = demo.wait_stderr("serve: udp on ");
    let udp: SocketAddr = line
        .strip_prefix("serve: udp on ")
        .unwrap()
        .parse()
        .unwrap();
    let inode = udp_inode(udp);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    wait_udp_answer(&client, udp, demo.pid());
    let mut generations: Vec<Vec<String>> = Vec::new();
    for round in 1..=4 {
        let old = demo.current();
        let (new, _) = restart(&mut demo, &addrs);
        wait_exited(old);
        wait_udp_answer(&client, udp, new);
        assert_eq!(udp_inode(udp), inode, "round {round}: the same socket");
        let held = fds(new);
        assert_eq!(
            held.iter()
                .filter(|(_, t)| *t == format!("socket:[{inode}]"))
                .count(),
            1,
            "round {round}: one copy of the UDP socket: {held:?}"
        );
        if let Some(previous) = generations.last() {
            wait_fd_kinds(new, previous, &format!("round {round}"));
        }
        generations.push(fd_kinds(&fds(new)));
    }
    eprintln!(
        "descriptors per generation: {:?}",
        generations.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let last = demo.current();
    send_signal(last, Signal::TERM);
    wait_exited(last);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
}

/// Supervisor mode: the supervisor asks the serving generation for its
/// state when it starts the next one, and passes it on: `/hits` and the
/// UDP socket travel between generations; a generation that refuses the
/// state is rolled back and the serving one keeps its count.
#[test]
fn supervised_generations_pass_the_state_on() {
    let installed = SwappableDemo::new("state-supervised");
    let dir = &installed.dir;
    let mut command = installed.command();
    command.args([
        "--supervise",
        "--listen",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--ready-timeout",
        "5",
    ]);
    let mut demo = Demo::spawn(command);
    let addrs = demo.tcp_addrs();
    let supervisor = demo.pid();
    let line = demo.wait_stderr("serve: udp on ");
    let udp: SocketAddr = line
        .strip_prefix("serve: udp on ")
        .unwrap()
        .parse()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (mut last, mut serving) = hits_at(addrs[0]);
    assert_ne!(serving, supervisor);
    wait_udp_answer(&client, udp, serving);
    for round in 1..=3 {
        let from = demo.stderr_seen.len();
        send_signal(supervisor, Signal::HUP);
        let line = demo.wait_stderr_from(from, "hands off and drains");
        let new: u32 = line
            .split(": pid ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        let took = demo.wait_stderr_from(from, "took the restart state: hits=");
        assert!(took.ends_with(", a UDP socket"), "{took}");
        let took = number_after(&took, "hits=");
        assert!(took >= last, "round {round}: took {took} after {last}");
        // The previous generation stops accepting once it reads the
        // supervisor's HANDOFF: until then a connection may reach it.
        let deadline = Instant::now() + EVENTUALLY;
        let now = loop {
            let (now, pid) = hits_at(addrs[0]);
            if pid == new {
                break now;
            }
            assert!(Instant::now() < deadline, "round {round}: {pid} answers");
        };
        assert!(now > took, "round {round}");
        wait_udp_answer(&client, udp, new);
        last = now;
        serving = new;
    }
    // A generation that refuses the state: rolled back.
    installed.install_fault("refuse-state");
    let from = demo.stderr_seen.len();
    send_signal(supervisor, Signal::HUP);
    let line = demo.wait_stderr_from(from, "restart failed");
    assert!(line.contains("refused the restart state"), "{line}");
    let mut kept = Client::connect(addrs[0]).unwrap();
    let (now, pid) = hits(&mut kept);
    assert_eq!(pid, serving);
    assert_eq!(now, last + 1, "the serving generation's count goes on");
    let (again, _) = hits(&mut kept);
    assert_eq!(again, now + 1);
    send_signal(supervisor, Signal::TERM);
    let (status, stderr) = demo.wait_exit();
    assert_eq!(status.code(), Some(0), "{stderr:?}");
    let _ = std::fs::remove_dir_all(dir);
}

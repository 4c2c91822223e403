//! Thread-per-core serving: keep-alive throughput of the demo with
//! `--threads 1` and `--threads 2` on the same runtime, side by side in
//! interleaved rounds (as the overhead section), with the CPU each server
//! and the whole machine kept busy, since wrk runs on the same CPUs: on a
//! 2-CPU machine, wrk takes much of one, and the second server thread has
//! only what is left.

use crate::overhead::{self, Plan};
use crate::proc::{Binaries, Kind, Setup};

/// The runs: per runtime, the demo on one thread and on two.
#[derive(Debug, Default)]
pub(crate) struct Result {
    pub(crate) runtimes: Vec<&'static str>,
    pub(crate) runs: overhead::Result,
    /// CPUs of this machine.
    pub(crate) cpus: usize,
}

pub(crate) fn run(bins: &Binaries, plan: &Plan, runtimes: &[&'static str]) -> Result {
    let groups: Vec<Vec<Setup>> = runtimes
        .iter()
        .map(|rt| vec![Setup::new(Kind::Demo, rt, 1), Setup::new(Kind::Demo, rt, 2)])
        .collect();
    Result {
        runtimes: runtimes.to_vec(),
        runs: overhead::rounds(bins, plan, &groups, "threads"),
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
    }
}

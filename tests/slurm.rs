//! `sweep slurm` against a real one-node Slurm cluster (Debian's `slurm-wlm` and `munge`)
//! that the test starts and stops, with the workers sharing the test PostgreSQL server.

mod common;

use common::experiments::MlpGrid;
use common::{Db, Workspace, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running `slurmctld` + `slurmd` pair, configured in a temporary directory; stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
}

fn run(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| {
        panic!("{what}: {e} (install Slurm: apt-get install -y slurm-wlm munge)")
    });
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new("/usr/sbin/slurmctld").exists() && Path::new("/usr/sbin/munged").exists(),
            "Slurm is not installed, and this test needs a real cluster: run \
             `apt-get install -y slurm-wlm munge` (the README's test command does it)"
        );
        // munge authenticates Slurm's messages: one key, one daemon for the machine.
        if !Path::new("/etc/munge/munge.key").exists() {
            run(Command::new("mungekey").arg("--create"), "mungekey");
            run(
                Command::new("chown").args(["munge:munge", "/etc/munge/munge.key"]),
                "chown",
            );
        }
        let munge_running = Command::new("pgrep")
            .args(["-x", "munged"])
            .output()
            .is_ok_and(|out| out.status.success());
        if !munge_running {
            std::fs::create_dir_all("/run/munge").unwrap();
            run(
                Command::new("chown").args(["munge:munge", "/run/munge"]),
                "chown",
            );
            run(
                Command::new("runuser").args(["-u", "munge", "--", "/usr/sbin/munged"]),
                "munged",
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::create_dir_all(d.join("spool")).unwrap();
        let host = run(&mut Command::new("hostname"), "hostname")
            .trim()
            .to_string();
        let conf = format!(
            "ClusterName=sweeptest\nSlurmctldHost={host}\nSlurmUser=root\n\
             SlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nReturnToService=2\n\
             SlurmdParameters=config_overrides\n\
             NodeName={host} CPUs=4 RealMemory=2000 State=UNKNOWN\n\
             PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            ctld = free_port(),
            slurmd = free_port(),
            d = d.display(),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let cluster = Cluster { dir };
        run(&mut cluster.command("/usr/sbin/slurmctld"), "slurmctld");
        run(&mut cluster.command("/usr/sbin/slurmd"), "slurmd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run(cluster.command("sinfo").args(["-h", "-o", "%t"]), "sinfo").contains("idle") {
            assert!(
                Instant::now() < deadline,
                "the Slurm node never became idle"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// A Slurm command (or `sweep`) that talks to this cluster.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", self.conf());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid_file in ["slurmd.pid", "slurmctld.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.path().join(pid_file)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// Six MLP trials of 60 epochs for the job array to share.
fn spread() -> String {
    MlpGrid::trials("spread", 6, 60).toml()
}

#[test]
fn a_slurm_job_array_of_workers_completes_the_sweep() {
    let cluster = Cluster::start();
    let ws = Workspace::on(Db::Postgres);
    let file = ws.experiment("spread.toml", &spread());
    let sweep = |extra: &[&str]| {
        let mut command = cluster.command(env!("CARGO_BIN_EXE_sweep"));
        command
            .current_dir(ws.dir.path())
            .args(["slurm", file.to_str().unwrap(), "--workers", "3"])
            .args([
                "--cpus-per-task",
                "1",
                "--idle-exit",
                "5",
                "--db",
                &ws.db_arg(),
            ])
            .arg("--data")
            .arg(ws.data())
            .args(extra)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let dry = sweep(&["--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("#SBATCH --array=0-2"),
        "{}",
        stdout(&dry)
    );
    assert!(ws.nothing_recorded(), "a dry run registers nothing");

    let out = sweep(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let job = stdout(&out).trim().to_string();
    assert!(job.parse::<u64>().is_ok(), "a job id: {job}");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queued = run(cluster.command("squeue").args(["-h", "-j", &job]), "squeue");
        if queued.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the job array did not finish: {queued}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let trials = ws.ls_json();
    let logs: Vec<String> = (0..3)
        .map(|task| {
            let log = ws.path(&format!("slurm/spread/slurm-{job}_{task}.out"));
            std::fs::read_to_string(&log).unwrap_or_else(|e| format!("{}: {e}", log.display()))
        })
        .collect();
    assert_eq!(trials.len(), 6, "{logs:#?}");
    assert!(
        trials.iter().all(|t| t["status"] == "done"),
        "{trials:#?}\n{logs:#?}"
    );
    let workers = ws.psql("SELECT count(DISTINCT split_part(owner, '/', 2)) FROM trials");
    assert_eq!(workers, "3", "trials from 3 workers: {logs:#?}");
}
